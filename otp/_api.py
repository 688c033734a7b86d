"""The process API (Erlang's `erlang` module, the parts that make sense here)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from . import _node, _runtime
from ._exceptions import BadArg, NoProc, ReceiveTimeout
from ._runtime import current, names_of, registered_name
from ._terms import Pid, Ref, TimerRef

__all__ = [
    "cancel_timer",
    "is_process_alive",
    "process_info",
    "processes",
    "register",
    "registered",
    "self_pid",
    "send_after",
    "spawn",
    "spawn_link",
    "spawn_monitor",
    "unregister",
    "whereis",
]


def spawn(fn: Callable[..., Any] | str, *args: Any, **kwargs: Any) -> Pid:
    """Run `fn(*args, **kwargs)` in a new OS process; returns its Pid at once.

    The process ends `"normal"` when `fn` returns, with `reason` when it raises
    `otp.Exit(reason)`, and with an `otp.Crash` (and a crash report) when it
    raises anything else. `fn` may be a lambda or a closure: what the C
    pickler refuses travels by dill.

    `fn` may also be `"module:function"` (the new process imports the module;
    if the function does not exist it ends with Erlang's `("undef", ...)`).
    `node="name@host"` starts it on another node (a reserved keyword: it never
    reaches `fn`): Python or erl, by SPAWN_REQUEST, e.g.
    `otp.spawn("timer:sleep", 1000, node="e@host")`; the arguments travel as
    terms, positionally, and this waits for the other node's answer. A node
    that cannot be reached gives a Pid that ends at once with
    `"noconnection"`, as in Erlang (see otp/dist/_route.py).
    """
    if isinstance(fn, str) or "node" in kwargs:
        return _spawn_by_name(fn, args, kwargs, link=False, monitor=False)  # type: ignore[no-any-return]
    return _node.spawn(fn, args, kwargs)


def spawn_link(fn: Callable[..., Any] | str, *args: Any, **kwargs: Any) -> Pid:
    """`spawn`, linked to the caller from birth (no window in which a death is
    missed); with `node=`, linked across nodes."""
    if isinstance(fn, str) or "node" in kwargs:
        return _spawn_by_name(fn, args, kwargs, link=True, monitor=False)  # type: ignore[no-any-return]
    return _node.spawn(fn, args, kwargs, link=True)


def spawn_monitor(fn: Callable[..., Any] | str, *args: Any, **kwargs: Any) -> tuple[Pid, Ref]:
    """`spawn`, monitored by the caller from birth; returns (pid, ref)."""
    if isinstance(fn, str) or "node" in kwargs:
        return _spawn_by_name(fn, args, kwargs, link=False, monitor=True)  # type: ignore[no-any-return]
    pid = _node.spawn(fn, args, kwargs)
    return pid, _runtime.monitor(pid)


def _spawn_by_name(
    fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any], *, link: bool, monitor: bool
) -> Any:
    """The cold path of the spawns: `"module:function"`, or `node=` given."""
    node = kwargs.pop("node", None)
    if (node is None or node == _runtime.NODE_NAME) and not isinstance(fn, str):
        pid = _node.spawn(fn, args, kwargs, link=link)
        return (pid, _runtime.monitor(pid)) if monitor else pid
    from .dist import _route

    return _route.spawn(fn, args, kwargs, node, link=link, monitor=monitor)


def self_pid() -> Pid:
    """The calling process's Pid (the main program is a process too)."""
    return (_runtime._proc or current()).pid


def is_process_alive(pid: Pid) -> bool:
    """True while `pid` runs. False as soon as a DOWN for it could have been seen."""
    current()
    return _runtime.is_alive(pid)


def register(name: str, pid: Pid | None = None) -> None:
    """Register `name` for `pid` (default: the caller). One name per process.

    Raises BadArg if the name is taken, the process already has a name, or
    the process is dead. The name is freed when the process ends, however
    it ends.
    """
    p = current()
    _runtime.register(p.rundir, name, pid or p.pid)


def unregister(name: str) -> None:
    """Free `name`; BadArg if it is not registered."""
    _runtime.unregister(current().rundir, name)


def whereis(name: str) -> Pid | None:
    """The live process registered as `name`, or None."""
    pid = _runtime.lookup(current().rundir, name)
    if pid is None or not _runtime.is_alive(pid):
        return None
    return pid


def registered() -> list[str]:
    """Every name registered on this node to a live process, sorted."""
    return sorted(n for n, pid in names_of(current().rundir).items() if _runtime.is_alive(pid))


def processes() -> list[Pid]:
    """Every live process of this node (the main program included), sorted."""
    p = current()
    out = []
    for entry in os.listdir(p.rundir):
        pid = _runtime._parse_target(entry)
        if pid is not None and _runtime.is_alive(pid):
            out.append(pid)
    return sorted(out)


def send_after(seconds: float, dest: Any, msg: Any) -> TimerRef:
    """Send `msg` to `dest` (a Pid or a name) after `seconds`; returns a TimerRef.

    The timer belongs to the calling process and fires while it waits in
    `receive` (every behaviour's loop does); it dies with that process.
    """
    return current().send_after(seconds, dest, msg)


def cancel_timer(tref: TimerRef) -> float | bool:
    """Cancel a timer: the seconds it had left, or False if it already fired."""
    return current().cancel_timer(tref)


def process_info(pid: Pid, timeout: float = 1.0) -> dict[str, Any] | None:
    """What is known of a live process, or None if it is not alive.

    Keys: `pid`, `os_pid`, `registered_name`, `status` ("waiting" in receive,
    "running", "suspended"...), `message_queue_len`, `links`, `monitors`,
    `trap_exit`, `messages_in`, `messages_out`, `memory` (USS in bytes, from
    psutil), `rss`, `parent`, `initial_call`, `behaviour` (set by behaviours),
    `title`. The runtime of the process answers the queue, links and monitors;
    a process busy in a long callback answers late, and after `timeout` the
    OS-level keys come alone with status "running".
    """
    p = current()
    if type(pid) is not Pid:
        raise BadArg(f"not a Pid: {pid!r}")
    if not _runtime.is_alive(pid):
        return None
    if pid == p.pid:
        info = p.local_info()
    else:
        ref = _runtime.make_ref()
        from ._codec import INFO_REQ, MSG, dumps

        if not p.send_signal(pid, INFO_REQ, dumps(ref)[1]):
            return None
        _ = MSG
        try:
            _, info = p.receive(lambda m: type(m) is tuple and len(m) == 2 and m[0] == ref, timeout)
        except ReceiveTimeout:
            # The answer may still come: drop it then, as a call's late reply,
            # rather than leave it in the caller's mailbox.
            p.abandon(ref)
            info = {
                "pid": pid,
                "os_pid": pid.id,
                "status": "running",
                "registered_name": registered_name(pid),
            }
    try:
        import psutil

        proc = psutil.Process(pid.id)
        with proc.oneshot():
            mem = proc.memory_full_info()
            info["memory"] = mem.uss
            info["rss"] = mem.rss
            info["title"] = " ".join(proc.cmdline()).strip()
            info["cpu_times"] = tuple(proc.cpu_times())[:2]
    except Exception:
        if not _runtime.is_alive(pid):
            return None
    return info


_ = NoProc
