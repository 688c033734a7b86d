"""The sending side of distribution: what the runtime calls, in the process
that sends, when a destination is on another node.

The runtime's own paths are untouched for local destinations: it calls in
here only where a local lookup already failed (`Process.send` found no
connection to a Pid of another node; `send`, `monitor` and the call
primitive were given `(name, node)` with a node other than this one).

Each function encodes with ETF *here*, in the sender (so a value outside the
term mapping raises `EncodeError` in the process that tried to send it),
and sends the node's dist process (`otp.dist._process`, registered as
`net_kernel`) a private envelope as an ordinary local message. On a node
that is not distributed there is no dist process: sends are dropped (as a
send to a dead Pid is), monitors and calls end at once with `"noconnection"`.
"""

from __future__ import annotations

import os
from typing import Any

from .. import _runtime
from .._exceptions import CallExit, CallTimeout, NoProc, ReceiveTimeout
from .._terms import DOWN, Pid, Ref
from . import _etf
from ._etf import Atom

__all__ = ["call", "demonitor", "is_remote", "monitor", "monitor_node", "nodes", "send"]

DIST_NAME = "net_kernel"  # otp.dist._process.DIST_NAME (not imported: a cycle)

# Per OS process: (dist Pid, runtime directory, codec). Inherited by forked
# children, which is right: same node, same dist process. Checked on each use
# (see _dist), so a node stopped and started again is not mistaken for it.
_cached: tuple[Pid, str, _etf.Codec] | None = None
# Remote monitors this process holds (ref -> target), for demonitor.
_remote_mons: dict[Ref, Any] = {}
_default_codec = _etf.Codec()
_GEN_TAGS = {t: Atom(t) for t in ("$gen_call", "$gen_cast", "$system")}


class _SenderCodec(_etf.Codec):
    """The codec of a sending process: it never decodes, so it cannot learn
    other nodes' creations; it reads them from the links the dist process
    keeps in `<rundir>/dist-nodes/` (one readlink per remote Pid or Ref)."""

    def __init__(self, node: str, creation: int, rundir: str) -> None:
        super().__init__(node=node, creation=creation)
        self.dir = f"{rundir}/dist-nodes/"

    def _creation_of(self, node: str) -> int:
        if node == self.node:
            return self.creation
        try:
            return int(os.readlink(self.dir + node))
        except (OSError, ValueError):
            return 0


def is_remote(dest: Any) -> bool:
    """A Pid of another node, or `(name, node)` with another node."""
    t = type(dest)
    if t is Pid:
        return dest[0] != _runtime.NODE_NAME
    return t is tuple and len(dest) == 2 and type(dest[1]) is str and dest[1] != _runtime.NODE_NAME


def _dist(p: _runtime.Process) -> tuple[Pid, str, _etf.Codec] | None:
    """The dist process and the codec to encode for it; None if not distributed."""
    global _cached
    c = _cached
    # A live connection to it means it is alive (a dead peer's connection is
    # dropped when its end is seen): the common case costs one dict lookup.
    if c is not None and c[1] == p.rundir and c[0] in p.conns:
        return c
    pid = _runtime.lookup(p.rundir, DIST_NAME)
    if pid is None or (pid != p.pid and p.connect(pid) is None):
        return None
    try:
        with open(f"{p.rundir}/dist") as f:
            name, creation = f.read().split()[:2]
    except (OSError, ValueError):
        return None
    _cached = c = (pid, p.rundir, _SenderCodec(name, int(creation), p.rundir))
    return c


def _encode(d: tuple[Pid, str, _etf.Codec] | None, msg: Any) -> bytes:
    return (d[2] if d is not None else _default_codec).encode(msg)


def send(p: _runtime.Process, dest: Any, msg: Any) -> None:
    """`otp.send` to a remote Pid or `(name, node)`: never raises for an
    unreachable node (Erlang drops such a send); raises EncodeError for a
    message outside the term mapping."""
    d = _dist(p)
    if type(msg) is tuple and msg and isinstance(msg[0], str) and msg[0] in _GEN_TAGS:
        # OTP's protocol tags are atoms on the wire ({'$gen_cast', Msg}...);
        # a traced cast's tag (a str subclass equal to "$gen_cast") too.
        msg = (_GEN_TAGS[msg[0]], *msg[1:])
    data = _encode(d, msg)
    if d is not None:
        p.send(d[0], ("$dist_send", p.pid, dest, data))


def monitor(p: _runtime.Process, ref: Ref, target: Any) -> None:
    """Monitor a remote Pid or `(name, node)`: the dist process will send this
    process `DOWN(ref, target, reason)` (`"noconnection"` if the node is lost)."""
    d = _dist(p)
    if d is None:
        p.mailbox.append(DOWN(ref, target, "noconnection"))
        return
    _remote_mons[ref] = target
    p.send(d[0], ("$dist_monitor", p.pid, ref, target))


def demonitor(p: _runtime.Process, ref: Any) -> bool:
    """Drop a remote monitor; False if `ref` is not one this process holds."""
    if _remote_mons.pop(ref, None) is None:
        return False
    d = _dist(p)
    if d is not None:
        p.send(d[0], ("$dist_demonitor", p.pid, ref))
    return True


def call(p: _runtime.Process, dest: Any, label: str, request: Any, timeout: float | None) -> Any:
    """The call primitive (otp/_call.py) for a target on another node.

    As Erlang's gen:do_call: monitor the target through the dist process
    (MONITOR_P), send `{label, {self, Ref}, request}` with the label as an atom
    (`'$gen_call'`), and wait for `{Ref, reply}` or the monitor's DOWN.

    Raises NoProc (nobody there), CallExit (the server ended during the call,
    or `"noconnection"`: the node is unreachable or was lost), CallTimeout.
    """
    ref = Ref((_runtime.NODE_NAME, p.pid.id, p.pid.serial, next(p.refs)))
    d = _dist(p)
    data = _encode(d, (Atom(label), (p.pid, ref), request))
    if d is None:
        raise CallExit("noconnection", (label, dest, request))
    mark = len(p.mailbox)
    _remote_mons[ref] = dest
    # Monitor and request in one envelope (one write here, one read there):
    # the dist process sends MONITOR_P before the request, so a target
    # already gone is noproc.
    p.send(d[0], ("$dist_gen_call", p.pid, ref, dest, data))
    try:
        m = p.await_reply(ref, timeout, mark)
    except ReceiveTimeout:
        p.abandon(ref)
        raise CallTimeout(f"no reply from {dest!r} within {timeout} s") from None
    finally:
        demonitor(p, ref)
    if type(m) is DOWN:
        if m.reason == "noproc":
            raise NoProc(dest, f"no process {dest!r}")
        raise CallExit(m.reason, (label, dest, request))
    return m[1]


def nodes(timeout: float = 5.0) -> list[str]:
    """The nodes this node is connected to ([] when not distributed)."""
    from .. import _call

    p = _runtime.current()
    d = _dist(p)
    if d is None:
        return []
    return _call.call(d[0], "$dist_call", ("nodes",), timeout)  # type: ignore[no-any-return]


def monitor_node(node: str, flag: bool = True) -> None:
    """`("nodedown", node)` to this process when the connection to `node` is
    lost (at once if it cannot be made); `flag=False` cancels."""
    p = _runtime.current()
    d = _dist(p)
    if d is None:
        if flag:
            p.send(p.pid, ("nodedown", node))
        return
    p.send(d[0], ("$dist_monitor_node", p.pid, node, bool(flag)))
