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

otp.node.start(name="app@host1.example.com", cookie=SECRET,     # across machines:
               tls=otp.node.TLS(certfile="node.pem", keyfile="node.key",
                                cafile="ca.pem"),
               listen="0.0.0.0")
```

A distributed node listens on 127.0.0.1 unless `listen` says otherwise, and
refuses a network address over plain TCP (the cookie authenticates, it does
not encrypt) unless `tls` is given, which is the way across machines (see
otp.dist._tls: mutual TLS as erl's `inet_tls_dist`, so erl nodes with the
same CA join), or `allow_plain_tcp=True` names the risk. When no epmd runs
on the host, the node starts a port mapper of its own (otp.dist._portmapper).

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
from ._exceptions import BadArg
from ._node import Node, ensure_started
from ._node import start as _start
from ._node import stop as _stop
from .dist._tls import TLS, check_listen

__all__ = ["TLS", "Node", "flush_logs", "rundir", "start", "stop"]

_DEFAULT_NAME = _runtime.NODE_NAME
_distributed = False


def start(
    name: str | None = None,
    cookie: str | None = None,
    tls: Any = None,
    port: int | None = None,
    *,
    epmd: int | None = None,
    listen: str = "127.0.0.1",
    allow_plain_tcp: bool = False,
    ticktime: float = 60.0,
) -> Any:
    """Start the local node. Raises OTPError if it is already started.

    Args:
        name: `alive@host` makes the node distributed (e.g. `"app@127.0.0.1"`
            or `"app@myhost"`); any other name is a label.
        cookie: the shared secret of the cluster; None reads (or creates)
            `~/.erlang.cookie`, as erl does.
        tls: `otp.node.TLS(certfile=, keyfile=, cafile=)`: every connection
            to and from other nodes runs over mutual TLS, as erl's
            `-proto_dist inet_tls` (see otp.dist._tls). None: plain TCP.
        port: the distribution port to listen on (None: any free port).
        epmd: the port of epmd (None: `ERL_EPMD_PORT`, else 4369). When
            nothing answers there, the node runs a port mapper of its own.
        listen: the address the distribution listener binds: "127.0.0.1"
            (default: this machine only), "0.0.0.0" (every interface) or one
            interface's address.
        allow_plain_tcp: allow a non-loopback `listen` without `tls` (for a
            network you trust completely).
        ticktime: Erlang's `net_ticktime`, in seconds: a connection that
            stays silent this long (no tick, no message) is declared down
            (`nodedown`, `"noconnection"`); a tick goes out every quarter of
            it. Use the same value on every node of a cluster.

    Raises:
        BadArg: a non-loopback `listen` without `tls` or `allow_plain_tcp`,
            or TLS files that cannot be loaded; raised before anything
            starts or binds.
        OTPError: already started, or distribution could not start (the
            name is taken, the port is in use...); the node is then not
            started.
    """
    global _distributed
    if name is None or "@" not in name:
        if cookie is not None or tls is not None or port is not None or epmd is not None:
            # (ticktime has a default, so it cannot be told apart: ignored.)
            raise BadArg(f"a distributed node needs a name alive@host, not {name!r}")
        return _start(name)
    # Checked here, in the caller, before the node forks anything: a refused
    # listener or unreadable certificates are the caller's error to see, and
    # nothing may have listened on the network even for a moment.
    if tls is not None:
        if not isinstance(tls, TLS):
            raise BadArg(f"tls must be an otp.node.TLS(certfile=, keyfile=, cafile=), not {tls!r}")
        tls.server_context()
        tls.client_context()
    check_listen(listen, tls, allow_plain_tcp)
    from .dist import _process

    proc = _start(name)  # sets the node's name before the root forks
    _distributed = True
    options = {"tls": tls, "host": listen, "allow_plain_tcp": allow_plain_tcp}
    try:
        _process.start(name, cookie, epmd=epmd, port=port or 0, ticktime=ticktime, options=options)
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
