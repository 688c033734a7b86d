"""Let an example run from a checkout (`python examples/x.py`) without installing."""

from __future__ import annotations

import os
import sys

try:
    import otp  # noqa: F401
except ImportError:  # pragma: no cover - depends on how the examples are run
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
