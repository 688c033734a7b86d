"""Request and reply between processes: the primitive under every `call`.

This is Erlang's `gen:do_call`, and knows nothing of behaviours:

1. monitor the server (locally: no frame is sent, the connection is the
   monitor), so that a death during the call is seen at once, not at the
   timeout;
2. send `(label, (caller, ref), request)`;
3. wait for `(ref, reply)` or the monitor's DOWN, scanning only the messages
   that arrived after the request was sent (nothing older can be the reply);
4. on timeout, remember the ref as abandoned: a late `(ref, reply)` is then
   dropped by the runtime and never shows up in the caller's mailbox.
"""

from __future__ import annotations

from typing import Any

# _trace is imported for its side effect too: it installs the loguru patcher
# that puts the trace id in every record, before any process is forked.
from . import _runtime, _trace  # noqa: F401
from ._exceptions import BadArg, CallExit, CallTimeout, NoProc, ReceiveTimeout
from ._terms import DOWN, Pid, Ref

__all__ = ["call", "reply"]

# The class's own methods: `call` holds the main program's lock for the whole
# call already, so the per-method lock wrappers of a threaded main program
# (Process._GUARDED) would only cost time here.
_send = _runtime.Process.send
_await_reply = _runtime.Process.await_reply


def call(dest: Any, label: str, request: Any, timeout: float | None = 5.0) -> Any:
    p = _runtime._proc
    if p is not None and p.lock is not None:
        # The main program: its threads may call at once (see
        # Process._wait_threaded); the monitor's registration and the wait
        # for the reply must not interleave with another thread's poll.
        with p.lock:
            return _call(dest, label, request, timeout)
    return _call(dest, label, request, timeout)


def _call(dest: Any, label: str, request: Any, timeout: float | None) -> Any:
    """Send `(label, (self, ref), request)` to `dest` and wait for its reply.

    Raises:
        NoProc: `dest` is a dead Pid or a name nobody holds.
        CallTimeout: no reply within `timeout` seconds (None: wait forever).
        CallExit: the server ended during the call (`.reason` is why), or the
            caller called itself (`"calling_self"`).
    """
    p = _runtime._proc or _runtime.current()
    if type(dest) is Pid:
        pid = dest
    else:
        if type(dest) is tuple and _runtime._dist_route().is_remote(dest):
            # {Name, Node} on another node (distribution: otp/dist/_route.py).
            return _runtime._dist_route().call(p, dest, label, request, timeout)
        try:
            pid = _runtime.resolve(dest)
        except NoProc:
            raise NoProc(dest, f"no process registered as {dest!r}") from None
    if pid == p.pid:
        raise CallExit("calling_self", (label, dest, request))
    if timeout is not None and timeout < 0:
        raise BadArg(f"invalid timeout: {timeout!r}")
    c = p.conns.get(pid)
    if c is None:
        c = p.connect(pid)
        if c is None:
            if pid[0] != _runtime.NODE_NAME:
                # A Pid of another node (distribution: otp/dist/_route.py).
                return _runtime._dist_route().call(p, pid, label, request, timeout)
            raise NoProc(dest)
    # The caller and the tag travel as plain tuples: a Pid or Ref instance
    # costs the C pickler ~1 us each to verify its class, a plain tuple
    # nothing. The tag is opaque to the server; the server's loop turns the
    # caller back into a Pid for its callbacks.
    # Typed Any: the runtime's tables are annotated with Ref, and take this
    # plain-tuple stand-in too (see _runtime._is_tag).
    ref: Any = (_runtime.NODE_NAME, p.pid[1], p.pid[2], next(p.refs))
    # The local monitor: registered before the request leaves, so a death
    # after the send cannot be missed.
    p.monitors[ref] = (pid, pid)
    refs = p.mon_by_pid.get(pid)
    if refs is None:
        p.mon_by_pid[pid] = refs = set()
    refs.add(ref)
    mark = len(p.mailbox)
    try:
        tr = p.trace
        if tr is None:
            _send(p, pid, (label, (tuple(p.pid), ref), request))
        else:
            # A traced call (otp/_trace.py): the id rides in from_, whose
            # first two items are all any loop reads to reply.
            _send(p, pid, (label, (tuple(p.pid), ref, tr), request))
        try:
            m = _await_reply(p, ref, timeout, mark)
        except ReceiveTimeout:
            p.abandon(ref)
            raise CallTimeout(f"no reply from {dest!r} within {timeout} s") from None
    finally:
        _drop_monitor(p, pid, ref)
    if type(m) is DOWN:
        raise CallExit(m.reason, (label, dest, request))
    return m[1]


def _drop_monitor(p: _runtime.Process, pid: Pid, ref: Any) -> None:
    if p.monitors.pop(ref, None) is not None:
        refs = p.mon_by_pid.get(pid)
        if refs is not None:
            # An empty set is kept: the next call to the same server reuses it.
            refs.discard(ref)


def reply(from_: tuple[Pid, Ref], value: Any) -> None:
    """Answer a call: `from_` is the (caller, ref) pair the server was given."""
    p = _runtime._proc or _runtime.current()
    # Indexed, not unpacked: a traced call's from_ has a third item, the id.
    pid = from_[0]
    ref = from_[1]
    if type(pid) is not Pid:
        pid = Pid(pid)
    p.send(pid, (ref, value))
