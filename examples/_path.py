"""Run an example from a checkout (`python examples/x.py`) against the code beside it.

When the examples sit in a checkout (the `otp` package is next to this
folder), that copy comes first on sys.path, before any installed one.
"""

from __future__ import annotations

import os
import sys

_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.exists(os.path.join(_root, "otp", "__init__.py")) and _root not in sys.path:
    sys.path.insert(0, _root)
