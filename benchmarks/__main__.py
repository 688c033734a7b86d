"""`python -m benchmarks [--quick] [--only NAME] [--no-peers]`: see `benchmarks`."""

from __future__ import annotations

import sys

from ._driver import main

if __name__ == "__main__":
    sys.exit(main())
