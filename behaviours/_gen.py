"""The generic layer every behaviour shares (Erlang's `gen` and `proc_lib`).

It holds what is the same for GenServer, GenStatem, GenEvent and Supervisor:

- the synchronous start: spawn, take the name *before* init runs, wait for
  the new process's acknowledgement (or its death, or the start timeout);
- `call`, `cast`, `reply`, `stop` and name resolution;
- system messages, the protocol behind `otp.debug` (Erlang's `sys`):
  get_state, replace_state, get_status, suspend, resume, statistics, trace,
  terminate.

A behaviour module keeps only its own loop and callback dispatch. Its loop
hands every `("$system", from_, request)` message to `System.handle` with an
object implementing the `SystemHooks` methods.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NoReturn, Protocol

import otp
from otp import _call, _node, _runtime
from otp._exceptions import (
    AlreadyStarted,
    BadArg,
    CallExit,
    CallTimeout,
    Exit,
    NoProc,
    OTPError,
    ReceiveTimeout,
    StartError,
)
from otp._log import is_clean_exit, logger
from otp._terms import DOWN, Crash, Pid, Ref
from otp._trace import TracedTag

__all__ = [
    "SYSTEM",
    "System",
    "SystemHooks",
    "call",
    "cast",
    "child_spec",
    "init_ack",
    "init_fail",
    "reply",
    "start",
    "start_callback",
    "stop",
]

CALL = "$gen_call"
CAST = "$gen_cast"
SYSTEM = "$system"
ACK = "$ack"


# ------------------------------------------------------------------ start


def start(
    init_it: Callable[..., Any],
    init_args: tuple[Any, ...],
    *,
    name: str | None,
    link: bool,
    timeout: float | None,
    title: str,
) -> Pid | None:
    """Start a behaviour process and wait until its init has returned.

    `init_it(starter, ack_ref, name, *init_args)` runs in the new process. It
    must call `init_ack` (success or ignore) or `init_fail` exactly once.

    Returns the Pid, or None when init returned Ignore().

    Raises:
        AlreadyStarted: the name is taken (init never ran).
        StartError: init failed; `.reason` is the exit reason. With
            `timeout`, init did not return in time: the process was killed
            and the reason is "timeout".
    """
    p = _runtime._proc or _runtime.current()
    ref = otp.make_ref()
    pid = _node.spawn(init_it, (p.pid, ref, name, *init_args), {}, link=link, title=title)
    mon = otp.monitor(pid)

    def match(m: Any) -> bool:
        t = type(m)
        return (t is tuple and len(m) == 3 and m[0] == ACK and m[1] == ref) or (
            t is DOWN and m.ref == mon
        )

    try:
        msg = p.receive(match, timeout)
    except ReceiveTimeout:
        # As proc_lib's sync_wait: unlink, kill, and flush, so the starter
        # neither dies of the link nor keeps a stray EXIT.
        if link:
            otp.unlink(pid)
        otp.exit(pid, "kill")
        p.receive(lambda m: type(m) is DOWN and m.ref == mon, None)
        _flush_exit(p, pid)
        raise StartError("timeout", f"init did not return within {timeout} s") from None
    if type(msg) is DOWN:
        _flush_exit(p, pid)
        raise StartError(msg.reason)
    otp.demonitor(mon, flush=True)
    status, value = msg[2]
    if status == "ok":
        return pid
    if status == "ignore":
        _wait_down(p, pid, mon)
        return None
    if status == "already_started":
        _wait_down(p, pid, mon)
        raise AlreadyStarted(value)
    _wait_down(p, pid, mon)
    if isinstance(value, BaseException):
        raise value
    raise StartError(value)


def start_callback(
    init_it: Callable[..., Any],
    behaviour: str,
    cls: type,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    name: str | None,
    link: bool,
    timeout: float | None,
) -> Pid | None:
    """`start` for a behaviour driven by a callback class (GenServer,
    GenStatem): init_it receives `(cls, args, kwargs)`, and the process title
    says `<name or class> <behaviour>`."""
    return start(
        init_it,
        (cls, args, kwargs),
        name=name,
        link=link,
        timeout=timeout,
        title=f"{name or cls.__name__} {behaviour}",
    )


def _wait_down(p: _runtime.Process, pid: Pid, mon: Ref) -> None:
    """Failed starts are synchronous (as OTP 26's proc_lib:init_fail): start
    returns only after the failed process has exited."""
    ref = otp.monitor(pid)
    try:
        p.receive(lambda m: type(m) is DOWN and m.ref == ref, 10.0)
    except ReceiveTimeout:
        pass
    _flush_exit(p, pid)


def _flush_exit(p: _runtime.Process, pid: Pid) -> None:
    mb = p.mailbox
    for i, m in enumerate(mb):
        if type(m) is otp.EXIT and m.pid == pid:
            del mb[i]
            return


def init_ack(starter: Pid, ref: Ref, status: str, value: Any = None) -> None:
    """Tell the starter init is done: status "ok" (value: the Pid) or "ignore"."""
    _runtime.send(starter, (ACK, ref, (status, value)))


def init_fail(
    starter: Pid, ref: Ref, name: str | None, reason: Any, status: str = "error"
) -> NoReturn:
    """Init failed: free the name, unlink the starter, tell it, then exit.

    The order is OTP's: the name is unregistered *before* the starter hears
    of the failure, so a starter that retries at once does not get
    already_started. The link goes before the exit, so the starter gets the
    error as a value instead of dying of it.
    """
    p = _runtime.current()
    if name is not None and status != "already_started":
        try:
            _runtime.unregister(p.rundir, name)
        except BadArg:
            pass
    if starter in p.links:
        otp.unlink(starter)
    init_ack(starter, ref, status, reason)
    raise Exit("normal" if status in ("already_started", "ignore") else reason)


def register_name(starter: Pid, ref: Ref, name: str | None) -> None:
    """Take the name before init runs, or fail with already_started."""
    if name is None:
        return
    try:
        otp.register(name)
    except BadArg:
        holder = otp.whereis(name)
        init_fail(starter, ref, None, holder, status="already_started")


# ----------------------------------------------------------- the client side


def call(dest: Any, request: Any, timeout: float | None = 5.0) -> Any:
    """A synchronous request; see `gen_server.call`."""
    return _call.call(dest, CALL, request, timeout)


def cast(dest: Any, msg: Any) -> None:
    """Fire and forget; always returns None, even for a dead or unknown target."""
    p = _runtime._proc
    tr = None if p is None else p.trace
    try:
        # A traced cast's tag carries the trace id (otp/_trace.py) and still
        # equals CAST, so every loop takes it for a cast.
        otp.send(dest, (CAST if tr is None else TracedTag(CAST, tr), msg))
    except NoProc:
        pass


def reply(from_: tuple[Pid, Ref], value: Any) -> None:
    """Answer a call later (after NoReply), from any process."""
    _call.reply(from_, value)


def stop(dest: Any, reason: Any = "normal", timeout: float | None = None) -> None:
    """Stop a behaviour process synchronously: its terminate runs with `reason`.

    Returns once the process has exited with `reason`.

    Raises:
        NoProc: no such process.
        CallTimeout: it did not stop within `timeout` (it keeps running).
        CallExit: it exited with another reason (its terminate crashed).
    """
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout < 0):
        raise BadArg(f"invalid timeout: {timeout!r}")
    p = _runtime._proc or _runtime.current()
    pid = dest if type(dest) is Pid else otp.whereis(dest)
    if pid is None or not otp.is_process_alive(pid):
        raise NoProc(dest)
    mon = otp.monitor(pid)
    ref = otp.make_ref()
    otp.send(pid, (SYSTEM, (p.pid, ref), ("terminate", reason)))
    try:
        msg = p.receive(lambda m: type(m) is DOWN and m.ref == mon, timeout)
    except ReceiveTimeout:
        otp.demonitor(mon, flush=True)
        raise CallTimeout(f"{dest!r} did not stop within {timeout} s") from None
    _flush_exit(p, pid)
    if msg.reason == "noproc":
        raise NoProc(dest)
    if msg.reason != reason:
        raise CallExit(msg.reason, ("stop", dest, reason))


def system_call(dest: Any, request: Any, timeout: float | None = 5.0) -> Any:
    """A system message round trip (what otp.debug uses)."""
    status, value = _call.call(dest, SYSTEM, request, timeout)
    if status == "error":
        raise OTPError(value)
    return value


# ------------------------------------------------------- system messages


class SystemHooks(Protocol):
    """What a behaviour's loop gives the shared system-message handler."""

    def sys_get_state(self) -> Any: ...

    def sys_replace_state(self, fn: Callable[[Any], Any]) -> Any: ...

    def sys_status(self) -> dict[str, Any]: ...

    def sys_terminate(self, reason: Any, from_: tuple[Pid, Ref]) -> NoReturn: ...

    def sys_change_code(self, module: str, old_vsn: Any, extra: Any) -> bool: ...


class System:
    """The per-process state of the system-message protocol (Erlang's sys)."""

    def __init__(self, behaviour: str, name: str | None, parent: Pid | None) -> None:
        self.behaviour = behaviour
        self.name = name
        self.parent = parent
        self.suspended = False
        self.tracing = False
        self.started = time.time()
        self.calls = 0

    def trace_in(self, msg: Any) -> None:
        logger.bind(otp_pid=str(otp.self_pid())).info(f"{self.label()} got {msg!r}")

    def trace_out(self, what: str, dest: Any, msg: Any) -> None:
        logger.bind(otp_pid=str(otp.self_pid())).info(f"{self.label()} {what} {msg!r} to {dest}")

    def label(self) -> str:
        return f"{self.name or ''} {self.behaviour} {otp.self_pid()}".strip()

    def suspended_match(self, m: Any) -> bool:
        """What a suspended loop still takes: system messages, and its parent's EXIT.

        As OTP's sys:suspend_loop, which also receives `{'EXIT', Parent, R}`:
        a suspended process that traps exits must still obey its parent (a
        supervisor shutting it down), or the parent waits out its shutdown
        timeout and kills it, and terminate never runs.
        """
        return (type(m) is tuple and len(m) == 3 and m[0] == SYSTEM) or (
            type(m) is otp.EXIT and m.pid == self.parent
        )

    def handle(self, from_: tuple[Pid, Ref], request: Any, hooks: SystemHooks) -> None:
        """Answer one system message. Only `terminate` does not return."""
        op = request[0] if isinstance(request, tuple) and request else request
        try:
            if op == "get_state":
                value = hooks.sys_get_state()
            elif op == "replace_state":
                value = hooks.sys_replace_state(request[1])
            elif op == "get_status":
                value = {
                    "pid": otp.self_pid(),
                    "name": self.name,
                    "behaviour": self.behaviour,
                    "status": "suspended" if self.suspended else "running",
                    "parent": self.parent,
                    "tracing": self.tracing,
                    **hooks.sys_status(),
                }
            elif op == "suspend":
                self.suspended = True
                value = None
            elif op == "resume":
                self.suspended = False
                value = None
            elif op == "statistics":
                p = _runtime.current()
                value = {
                    "start_time": self.started,
                    "current_time": time.time(),
                    "messages_in": p.msgs_in,
                    "messages_out": p.msgs_out,
                    "message_queue_len": len(p.mailbox),
                }
            elif op == "trace":
                self.tracing = bool(request[1])
                value = None
            elif op == "terminate":
                hooks.sys_terminate(request[1], from_)
            elif op == "change_code":
                # Hot code upgrade (otp.upgrade, otp.debug.change_code): the
                # hook reloads the module and converts the state, or raises
                # having changed nothing; True if this process runs the module.
                value = hooks.sys_change_code(request[1], request[2], request[3])
            else:
                raise BadArg(f"unknown system request {request!r}")
        except Exit:
            raise
        except BaseException as e:
            _call.reply(from_, ("error", ("callback_failed", op, Crash.from_exception(e))))
            return
        _runtime.current().info["status"] = "suspended" if self.suspended else "running"
        _call.reply(from_, ("ok", value))


def is_system(m: Any) -> bool:
    return type(m) is tuple and len(m) == 3 and m[0] == SYSTEM


def report_terminate(
    behaviour: str, name: str | None, reason: Any, last_msg: Any, state: Any
) -> None:
    """The error report a behaviour writes when it ends abnormally (once)."""
    if is_clean_exit(reason):
        return
    p = _runtime.current()
    info = dict(p.info)
    info["behaviour"] = behaviour
    info["last_message"] = last_msg
    info["state"] = state
    from otp._log import log_crash

    log_crash(p.pid, name, reason, info)


def child_spec(cls: type[Any], args: tuple[Any, ...], kwargs: dict[str, Any], **opts: Any) -> Any:
    """`cls.child_spec(...)`: a ChildSpec that starts `cls.start_link(*args)`."""
    from .supervisor import ChildSpec

    spec_keys = ("id", "restart", "shutdown", "type", "significant", "modules")
    spec = {k: opts.pop(k) for k in spec_keys if k in opts}
    kwargs = {**kwargs, **opts}
    spec.setdefault("id", cls.__name__)
    spec.setdefault("modules", [cls])
    return ChildSpec(start=(cls.start_link, args, kwargs), **spec)


_ = (CallExit, CallTimeout, OTPError)
