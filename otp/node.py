"""The local node: started on first use, or explicitly.

```python
import otp

otp.node.start()          # optional: the first otp call starts it
...
otp.node.stop()           # optional: runs at interpreter exit, SIGTERM and SIGINT

with otp.node.Node() as node:   # a node for a block, e.g. a test
    ...
```

At exit every process the main program started is stopped in reverse start
order (exit signal "shutdown", then SIGKILL after `timeout`), then every
process left. If the main program is killed with SIGKILL, the node's root
process sees it and SIGKILLs the whole node within milliseconds.
"""

from __future__ import annotations

from typing import Any

from ._node import Node, ensure_started, stop
from ._node import start as _start

__all__ = ["Node", "flush_logs", "rundir", "start", "stop"]


def start(name: str | None = None) -> Any:
    """Start the local node. Raises OTPError if it is already started."""
    return _start(name)


def rundir() -> str:
    """The node's private runtime directory (mode 0700)."""
    return ensure_started().rundir


def flush_logs(timeout: float = 5.0) -> bool:
    """Wait until every log record already sent by the node's processes has
    gone through the main program's loguru handlers (see otp._logging)."""
    from . import _node

    c = _node._collector
    return True if c is None else c.flush(timeout)
