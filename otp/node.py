"""The local node: started on first use, or explicitly.

```python
import otp

otp.node.start()          # optional: the first otp call starts it
...
otp.node.stop()           # optional: runs at interpreter exit, SIGTERM and SIGINT

with otp.node.Node() as node:   # a node for a block, e.g. a test
    ...

otp.node.start(name="py@127.0.0.1", cookie="SECRET")   # a distributed node
otp.send(("counter", "e@127.0.0.1"), ("add", 5))       # to another node
```

A name with an `@` (`alive@host`, as Erlang's long and short names) makes the
node distributed: it joins as a hidden node over the Erlang distribution
protocol (otp.dist), so Python nodes and `erl`/`iex` nodes reach its
processes and it reaches theirs. The name is fixed when the node starts, before
its first process is forked, so call `start` before any other otp call: every
process of the node then makes Pids that carry the name. A name without `@`
is only a label.

At exit every process the main program started is stopped in reverse start
order (exit signal "shutdown", then SIGKILL after `timeout`), then every
process left. If the main program is killed with SIGKILL, the node's root
process sees it and SIGKILLs the whole node within milliseconds.
"""

from __future__ import annotations

from typing import Any

from . import _runtime
from ._exceptions import BadArg, OTPError
from ._node import Node, ensure_started
from ._node import start as _start
from ._node import stop as _stop

__all__ = ["Node", "flush_logs", "rundir", "start", "stop"]

_DEFAULT_NAME = _runtime.NODE_NAME
_distributed = False


def start(
    name: str | None = None,
    cookie: str | None = None,
    tls: Any = None,
    port: int | None = None,
    *,
    epmd: int | None = None,
) -> Any:
    """Start the local node. Raises OTPError if it is already started.

    Args:
        name: `alive@host` makes the node distributed (e.g. `"app@127.0.0.1"`
            or `"app@myhost"`); any other name is a label.
        cookie: the shared secret of the cluster; None reads (or creates)
            `~/.erlang.cookie`, as erl does.
        tls: TLS distribution: not implemented yet (raises OTPError).
        port: the distribution port to listen on (None: any free port).
        epmd: the port of epmd (None: `ERL_EPMD_PORT`, else 4369).

    Raises:
        OTPError: already started, or distribution could not start (no epmd
            running, the name is taken...); the node is then not started.
    """
    global _distributed
    if name is None or "@" not in name:
        if cookie is not None or tls is not None or port is not None or epmd is not None:
            raise BadArg(f"a distributed node needs a name alive@host, not {name!r}")
        return _start(name)
    if tls is not None:
        raise OTPError("TLS distribution is not implemented yet (issue 12)")
    from .dist import _process

    proc = _start(name)  # sets the node's name before the root forks
    _distributed = True
    try:
        _process.start(name, cookie, epmd=epmd, port=port or 0)
    except BaseException:
        stop()
        raise
    return proc


def stop(timeout: float = 5.0) -> None:
    """Stop the node (see the module docstring); a distributed node leaves
    its cluster (peers see `nodedown`) and the name returns to the default."""
    global _distributed
    try:
        _stop(timeout)
    finally:
        if _distributed:
            # The next node of this program (a test's) must not inherit it.
            _runtime.NODE_NAME = _DEFAULT_NAME
            _distributed = False


def rundir() -> str:
    """The node's private runtime directory (mode 0700)."""
    return ensure_started().rundir


def flush_logs(timeout: float = 5.0) -> bool:
    """Wait until every log record already sent by the node's processes has
    gone through the main program's loguru handlers (see otp._logging)."""
    from . import _node

    c = _node._collector
    return True if c is None else c.flush(timeout)
