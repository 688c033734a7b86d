"""GenServer: a server process with a state, calls, casts and infos.

A GenServer is a process (an OS process) that keeps a state and answers
requests. You write the callbacks; the loop, the call protocol, the timeouts,
the termination and the debugging support come from here.

## Example

```python
from behaviours import GenServer, Reply, NoReply, gen_server

class Stack(GenServer):
    def init(self, items=()):
        return list(items)                       # the initial state

    def handle_call(self, request, from_, state):
        match request:
            case "pop":
                return Reply(state[0], state[1:])  # reply, new state
            case "peek":
                return Reply(state[0] if state else None, state)

    def handle_cast(self, msg, state):
        match msg:
            case ("push", item):
                return NoReply([item, *state])

pid = Stack.start_link(["hello"], name="stack")
gen_server.cast("stack", ("push", "world"))
gen_server.call("stack", "pop")          # -> "world"
gen_server.stop(pid)
```

## Client / server

`start_link` and `start` run in the caller and block until `init` has
returned in the new process. `call`, `cast` and `stop` run in any process;
the callbacks run in the server's own OS process, one message at a time.
The state lives there, in its own memory: a crash, a leak or a segfault in a
callback ends that process only.

## Callbacks and what they may return

- `init(*args, **kwargs)`: the initial state; or `Init(state, timeout=,
  continue_=)`; `Stop(reason)` (start raises `StartError(reason)`);
  `Ignore()` (start returns None). Raising makes start raise with the crash.
- `handle_call(request, from_, state)`: `Reply(reply, state)`,
  `NoReply(state)` (answer later with `gen_server.reply(from_, x)`, from any
  process), `Stop(reason, state, reply=x)` (terminate runs first, then the
  caller gets x), `Stop(reason, state)` (the caller gets `CallExit(reason)`).
- `handle_cast(msg, state)`, `handle_info(msg, state)`,
  `handle_continue(arg, state)`: `NoReply(state)` or `Stop(reason, state)`.
- `terminate(reason, state)`: runs when the server stops itself, when
  `gen_server.stop` is called, when a callback raises or returns a wrong
  value, and on an exit signal from its parent *if it traps exits*. It is not
  run when the process is killed, or when an exit signal ends a process that
  does not trap exits (as in OTP).
- `code_change(old_vsn, state, extra)`, `format_status(status)`: optional.

`Reply`/`NoReply`/`Init` take `timeout=` (seconds: if no message arrives in
time, `handle_info("timeout", state)` runs) and `continue_=` (run
`handle_continue(arg, state)` before any other message).

Any other return value stops the server with `("bad_return_value", value)`.
An exception in a callback ends the process with an `otp.Crash` and a crash
report; a caller waiting on that server gets `otp.CallExit` at once.

The defaults: `handle_info` logs the unexpected message and carries on;
`handle_call` and `handle_cast` stop the server with `("bad_call", request)`
and `("bad_cast", msg)` (as Elixir's); `terminate` does nothing.

## Timeouts

`gen_server.call(ref, request, timeout=5.0)`: after `timeout` seconds the
caller gets `otp.CallTimeout` and lives on; a reply that comes later is
dropped and never seen.

## When not to use a GenServer

An OS process costs about a millisecond to start and a mebibyte of memory,
and every message is pickled. Use one to model a runtime property (state
that must outlive a crash elsewhere, isolation, concurrency), never for code
organisation, and keep messages small: a process is not a way to move a
large array around fast.
"""

from __future__ import annotations

from typing import Any, ClassVar, NoReturn

import otp
from otp import _runtime, _upgrade
from otp._exceptions import Exit, ReceiveTimeout
from otp._log import log_warning
from otp._terms import EXIT, Crash, Pid, Ref

from . import _gen

__all__ = [
    "GenServer",
    "Ignore",
    "Init",
    "NoReply",
    "Reply",
    "Stop",
    "call",
    "cast",
    "reply",
    "start",
    "start_link",
    "stop",
]

_UNSET: Any = object()


class Reply:
    """From handle_call: answer `reply`, continue with `state`."""

    __slots__ = ("continue_", "reply", "state", "timeout")

    def __init__(
        self, reply: Any, state: Any, timeout: float | None = None, continue_: Any = _UNSET
    ) -> None:
        self.reply = reply
        self.state = state
        self.timeout = timeout
        self.continue_ = continue_

    def __repr__(self) -> str:
        return f"Reply({self.reply!r}, {self.state!r})"


class NoReply:
    """Continue with `state` (from handle_call: the reply comes later)."""

    __slots__ = ("continue_", "state", "timeout")

    def __init__(self, state: Any, timeout: float | None = None, continue_: Any = _UNSET) -> None:
        self.state = state
        self.timeout = timeout
        self.continue_ = continue_

    def __repr__(self) -> str:
        return f"NoReply({self.state!r})"


class Stop:
    """Stop the server with `reason` (from init: start raises with it).

    From handle_call, `reply=` answers the caller after terminate has run.
    """

    __slots__ = ("reason", "reply", "state")

    def __init__(self, reason: Any, state: Any = None, reply: Any = _UNSET) -> None:
        self.reason = reason
        self.state = state
        self.reply = reply

    def __repr__(self) -> str:
        return f"Stop({self.reason!r})"


class Init:
    """From init: the state, plus a first timeout or a continue."""

    __slots__ = ("continue_", "state", "timeout")

    def __init__(self, state: Any, timeout: float | None = None, continue_: Any = _UNSET) -> None:
        self.state = state
        self.timeout = timeout
        self.continue_ = continue_


class Ignore:
    """From init: do not start (start returns None, the process exits normal)."""

    __slots__ = ()


class GenServer:
    """Subclass it and write the callbacks; see the module documentation."""

    #: The code version, for `code_change`.
    vsn: ClassVar[Any] = 1

    # ---- callbacks with OTP's (and Elixir's) defaults

    def init(self, *args: Any, **kwargs: Any) -> Any:
        return args[0] if len(args) == 1 and not kwargs else None

    def handle_call(self, request: Any, from_: tuple[Pid, Ref], state: Any) -> Any:
        return Stop(("bad_call", request), state)

    def handle_cast(self, msg: Any, state: Any) -> Any:
        return Stop(("bad_cast", msg), state)

    def handle_info(self, msg: Any, state: Any) -> Any:
        log_warning(f"{type(self).__name__} {otp.self_pid()} received unexpected message: {msg!r}")
        return NoReply(state)

    def handle_continue(self, arg: Any, state: Any) -> Any:
        raise NotImplementedError(
            f"{type(self).__name__} returned a continue but has no handle_continue"
        )

    def terminate(self, reason: Any, state: Any) -> Any:
        return None

    def code_change(self, old_vsn: Any, state: Any, extra: Any) -> Any:
        return state

    def format_status(self, status: dict[str, Any]) -> dict[str, Any]:
        """Shape what get_status and crash reports show (e.g. hide secrets)."""
        return status

    # ---- starting

    @classmethod
    def start_link(
        cls, *args: Any, name: str | None = None, timeout: float | None = None, **kwargs: Any
    ) -> Pid:
        """Start a server linked to the caller; blocks until init returned.

        `name` registers it (taken before init runs); `timeout` kills an init
        that takes longer. The other arguments go to `init`.
        """
        return start_link(cls, *args, name=name, timeout=timeout, **kwargs)

    @classmethod
    def start(
        cls, *args: Any, name: str | None = None, timeout: float | None = None, **kwargs: Any
    ) -> Pid:
        """As `start_link`, without the link."""
        return start(cls, *args, name=name, timeout=timeout, **kwargs)

    @classmethod
    def child_spec(cls, *args: Any, **opts: Any) -> Any:
        """A supervisor ChildSpec starting `cls.start_link(*args)`.

        Keywords `id`, `restart`, `shutdown`, `type`, `significant`, `modules`
        go to the spec; the rest to `init`.
        """
        return _gen.child_spec(cls, args, {}, **opts)


# ---------------------------------------------------------------- the API


def start_link(
    cls: type[GenServer],
    *args: Any,
    name: str | None = None,
    timeout: float | None = None,
    **kwargs: Any,
) -> Pid:
    """Start `cls` in a new process linked to the caller; block until its init returned.

    Args:
        cls: the GenServer subclass; `init(*args, **kwargs)` runs in the new
            process.
        name: register the server under this name (taken before init runs).
        timeout: seconds init may take (None: no limit); past it the
            process is killed.

    Returns the server's Pid (None if init returned `Ignore()`).

    Raises:
        otp.AlreadyStarted: `name` is taken (init never ran).
        otp.StartError: init raised, returned `Stop(reason)`, or timed out
            (`.reason` says which: the crash, the reason, or "timeout").
    """
    return _gen.start_callback(  # type: ignore[return-value]
        _init_it, "GenServer", cls, args, kwargs, name=name, link=True, timeout=timeout
    )


def start(
    cls: type[GenServer],
    *args: Any,
    name: str | None = None,
    timeout: float | None = None,
    **kwargs: Any,
) -> Pid:
    """`start_link` without the link: the server does not end with its caller."""
    return _gen.start_callback(  # type: ignore[return-value]
        _init_it, "GenServer", cls, args, kwargs, name=name, link=False, timeout=timeout
    )


def call(server: Any, request: Any, timeout: float | None = 5.0) -> Any:
    """Send `request` and wait for the reply (default 5 s; None waits forever).

    Raises otp.NoProc (dead Pid, unknown name), otp.CallTimeout (the caller
    lives on; a late reply is dropped), otp.CallExit (the server ended during
    the call: at once, with its reason; or you called yourself).
    """
    return _gen.call(server, request, timeout)


def cast(server: Any, msg: Any) -> None:
    """Send `msg` to `handle_cast`; always returns None."""
    _gen.cast(server, msg)


def reply(from_: tuple[Pid, Ref], value: Any) -> None:
    """Answer a call that handle_call left with NoReply (from any process)."""
    _gen.reply(from_, value)


def stop(server: Any, reason: Any = "normal", timeout: float | None = None) -> None:
    """Stop the server: terminate(reason) runs, then it exits with `reason`."""
    _gen.stop(server, reason, timeout)


# ---------------------------------------------------------------- the loop


class _Server:
    """The server process's side: the loop and the callback dispatch."""

    def __init__(self, mod: GenServer, state: Any, name: str | None, parent: Pid | None) -> None:
        self.mod = mod
        self.state = state
        self.name = name
        self.parent = parent
        self.sys = _gen.System("GenServer", name, parent)
        self.last: Any = None

    # -- SystemHooks

    def sys_get_state(self) -> Any:
        return self.state

    def sys_replace_state(self, fn: Any) -> Any:
        self.state = fn(self.state)
        return self.state

    def sys_status(self) -> dict[str, Any]:
        status = {"state": self.state, "module": type(self.mod).__name__}
        return self.mod.format_status(status)

    def sys_terminate(self, reason: Any, from_: Any) -> NoReturn:
        self.terminate(reason, None)

    def sys_change_code(self, module: str, old_vsn: Any, extra: Any) -> bool:
        """Hot upgrade (otp/_upgrade.py): the callback object moves to the
        reloaded class and code_change(old_vsn, state, extra) gives the new
        state; if anything raises, nothing changed."""
        # A callback running other modules' code (the supervisor: its user
        # module, its children's start functions) upgrades them its own way.
        own = getattr(self.mod, "_sys_change_code", None)
        if own is not None:
            changed, self.state = own(module, old_vsn, extra, self.state)
            return bool(changed)
        if not _upgrade.uses(self.mod, module):
            return False
        state = self.state
        (self.state,) = _upgrade.change_callbacks(
            module, [self.mod], old_vsn, lambda _i, vsn: self.mod.code_change(vsn, state, extra)
        )
        return True

    # -- the loop

    def loop(self, timeout: float | None, cont: Any) -> NoReturn:
        p = _runtime._proc
        assert p is not None
        receive = p.receive
        receive_any = p.receive_any
        mod = self.mod
        sys_ = self.sys
        while True:
            if cont is not _UNSET:
                arg, cont = cont, _UNSET
                r = self.dispatch(mod.handle_continue, arg)
                timeout, cont = self.noreply(r, ("continue", arg))
                continue
            if sys_.suspended:
                # System messages, and the parent's EXIT: it must still be
                # able to stop a suspended server (handled below).
                msg = receive(sys_.suspended_match, None)
            elif timeout is None:
                msg = receive_any(None)
            else:
                try:
                    msg = receive_any(timeout)
                except ReceiveTimeout:
                    msg = "timeout"
            self.last = msg
            if sys_.tracing:
                sys_.trace_in(msg)
            t = type(msg)
            if t is tuple and len(msg) == 3:
                tag = msg[0]
                if tag == "$gen_call":
                    f = msg[1]
                    if len(f) == 2:
                        timeout, cont = self.on_call((Pid(f[0]), f[1]), msg[2])
                    else:  # a traced call: f[2] is the trace id (otp/_trace.py)
                        timeout, cont = self.traced(f[2], self.on_call, (Pid(f[0]), f[1]), msg[2])
                    continue
                if tag == "$system":
                    sys_.handle(msg[1], msg[2], self)
                    continue
            elif t is tuple and len(msg) == 2 and msg[0] == "$gen_cast":
                if type(msg[0]) is not str:  # a traced cast: its tag holds the id
                    timeout, cont = self.traced(msg[0].trace_id, self.on_cast, msg)
                    continue
                r = self.dispatch(mod.handle_cast, msg[1])
                timeout, cont = self.noreply(r, msg)
                continue
            elif t is EXIT and msg.pid == self.parent and p.trap:
                # The parent (a supervisor, the starter) ends us: terminate
                # runs, as OTP does for a server that traps exits.
                self.terminate(msg.reason, msg)
            r = self.dispatch(mod.handle_info, msg)
            timeout, cont = self.noreply(r, msg)

    def traced(self, trace_id: str, handle: Any, *args: Any) -> tuple[float | None, Any]:
        """Handle a traced request with the process's trace id set to its id.

        So the callback's log records carry it, and so do the calls and casts
        it makes (otp/_trace.py). Restored after, also when the callback ends
        the server: the crash report is logged before, under the id.
        """
        p = _runtime._proc
        assert p is not None
        old = p.trace
        p.trace = trace_id
        try:
            return handle(*args)  # type: ignore[no-any-return]
        finally:
            p.trace = old

    def on_cast(self, msg: Any) -> tuple[float | None, Any]:
        return self.noreply(self.dispatch(self.mod.handle_cast, msg[1]), msg)

    def dispatch(self, fn: Any, arg: Any) -> Any:
        try:
            return fn(arg, self.state)
        except Exit as e:
            self.terminate(e.reason, self.last)
        except BaseException as e:
            self.terminate(Crash.from_exception(e), self.last, crashed=True)

    def on_call(self, from_: tuple[Pid, Ref], request: Any) -> tuple[float | None, Any]:
        try:
            r = self.mod.handle_call(request, from_, self.state)
        except Exit as e:
            self.terminate(e.reason, self.last)
        except BaseException as e:
            self.terminate(Crash.from_exception(e), self.last, crashed=True)
        t = type(r)
        if t is Reply:
            self.state = r.state
            _runtime._proc.send(from_[0], (from_[1], r.reply))  # type: ignore[union-attr]
            if self.sys.tracing:
                self.sys.trace_out("replied", from_[0], r.reply)
            return r.timeout, r.continue_
        if t is NoReply:
            self.state = r.state
            return r.timeout, r.continue_
        if t is Stop:
            self.state = r.state
            self.terminate(r.reason, self.last, reply_to=from_, reply=r.reply)
        self.terminate(("bad_return_value", r), self.last)

    def noreply(self, r: Any, msg: Any) -> tuple[float | None, Any]:
        t = type(r)
        if t is NoReply:
            self.state = r.state
            return r.timeout, r.continue_
        if t is Stop:
            self.state = r.state
            self.terminate(r.reason, msg)
        self.terminate(("bad_return_value", r), msg)

    def terminate(
        self,
        reason: Any,
        last: Any,
        reply_to: Any = None,
        reply: Any = _UNSET,
        crashed: bool = False,
    ) -> NoReturn:
        """Run terminate(reason, state), report, answer a pending stop reply, exit.

        terminate's own crash replaces the reason (test terminate_crash_format).
        """
        try:
            self.mod.terminate(reason, self.state)
        except Exit as e:
            reason = e.reason
        except BaseException as e:
            reason = Crash.from_exception(e)
        status = self.mod.format_status({"state": self.state, "message": last, "reason": reason})
        _gen.report_terminate(
            "GenServer", self.name, reason, status.get("message"), status.get("state")
        )
        if reply_to is not None and reply is not _UNSET:
            _gen.reply(reply_to, reply)
        raise Exit(reason)


def _init_it(
    starter: Pid,
    ref: Ref,
    name: str | None,
    cls: type[GenServer],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> NoReturn:
    # Started after a hot upgrade of its module, it runs the new code, even
    # if forked from a process that holds the old copy (otp/_upgrade.py).
    cls = _upgrade.current(cls)
    p = _runtime.current()
    p.info["behaviour"] = "GenServer"
    p.info["module"] = cls.__qualname__
    # Where otp.upgrade finds the processes that run a module's code.
    p.info["callback_modules"] = [cls.__module__]
    if name:
        p.info["name"] = name
    _gen.register_name(starter, ref, name)
    parent = starter if starter in p.links else None
    mod = cls()
    try:
        r = mod.init(*args, **kwargs)
    except Exit as e:
        _gen.init_fail(starter, ref, name, e.reason)
    except BaseException as e:
        crash = Crash.from_exception(e)
        _gen.report_terminate("GenServer", name, crash, None, None)
        _gen.init_fail(starter, ref, name, crash)
    timeout: float | None = None
    cont: Any = _UNSET
    t = type(r)
    if t is Init:
        state, timeout, cont = r.state, r.timeout, r.continue_
    elif t is Stop:
        _gen.init_fail(starter, ref, name, r.reason)
    elif t is Ignore:
        _gen.init_fail(starter, ref, name, None, status="ignore")
    elif t in (Reply, NoReply):
        _gen.init_fail(starter, ref, name, ("bad_return_value", r))
    else:
        state = r
    server = _Server(mod, state, name, parent)
    _gen.init_ack(starter, ref, "ok", p.pid)
    server.loop(timeout, cont)
