"""GenEvent: an event manager with pluggable handlers.

An event manager is one process (one OS process) that receives events and
hands each of them to every *handler* installed in it. A handler is an
`EventHandler` subclass with a state of its own; handlers are added and
removed while the manager runs, and several handlers (or several instances
of one handler class) live side by side in one manager.

`GenEvent` is the manager: you do not subclass it. You subclass
`EventHandler`.

## Example

```python
from behaviours import EventHandler, Reply, gen_event

class Logger(EventHandler):
    def init(self, prefix):
        return {"prefix": prefix, "lines": []}          # the handler's state

    def handle_event(self, event, state):
        state["lines"].append(f"{state['prefix']}{event}")
        return state                                     # the new state

    def handle_call(self, request, state):
        match request:
            case "lines":
                return Reply(state["lines"], state)      # reply, new state

mgr = gen_event.start_link(name="alarms")
gen_event.add_handler(mgr, Logger, "alarm: ")
gen_event.notify("alarms", "disk full")                  # asynchronous
gen_event.sync_notify("alarms", "cpu hot")               # returns when handled
gen_event.call("alarms", Logger, "lines")   # -> ["alarm: disk full", "alarm: cpu hot"]
gen_event.stop(mgr)
```

## Handlers and their identity

A handler is named by its class, or by `(HandlerClass, id)` to run several
instances of one class (`add_handler(mgr, (Logger, "disk"), ...)`). The
same name is the address for `call`, `delete_handler` and `swap_handler`:
`Logger` and `(Logger, "disk")` are different handlers. Duplicates are not
checked, as in OTP: adding `Logger` twice installs two handlers, and
`call`/`delete_handler` then reach the newest one.

Handlers are kept **newest first**: `which_handlers` lists them in that
order, and every event is handed to them in that order.

## Callbacks and what they may return

Every callback runs in the manager's process, one event at a time.

- `init(args)`: returns the handler's state. Return `Stop(reason)` (the
  GenServer `Stop`) to refuse: `add_handler` raises `HandlerError(reason)`
  and the handler is not added. Raising refuses too, with reason
  `("EXIT", crash)`.
- `handle_event(event, state)` (from `notify`/`sync_notify`) and
  `handle_info(msg, state)` (any other message the manager receives):
  return the new state; or `RemoveHandler()` (the handler's
  `terminate("remove_handler", state)` runs and it is removed); or
  `SwapHandler(args1, state, NewHandler, args2)` (see swapping below).
- `handle_call(request, state)` (from `gen_event.call`): return
  `Reply(reply, new_state)`. This is the GenServer `Reply`, re-exported
  here as `gen_event.Reply` (its `timeout=`/`continue_=` are ignored). Or
  `RemoveHandler(reply=x)`, or `SwapHandler(..., reply=x)`: the caller
  gets `x`, then the handler is removed or swapped.
- `terminate(reason, state)`: runs when the handler leaves. Its return
  value is what `delete_handler` returns, and what a swap hands to the new
  handler. `reason` is the `args` of `delete_handler`/`swap_handler`,
  `"remove_handler"`, `"stop"` (the manager stops), `("stop", why)` (the
  process that supervised it died with `why`), or `("error", what)` (it
  crashed or returned a wrong value: `what` is `("EXIT", crash)` or the
  value).
- `code_change(old_vsn, state, extra)`: optional.

Any value is a valid state, `None` included, except the result types that
belong elsewhere (`Reply`, `NoReply`, `Stop`, `Init`, `Ignore` returned from
`handle_event`/`handle_info`, for instance). `handle_call` must return one
of its three results.

The defaults: `init(args)` keeps `args` as the state; `handle_event`
ignores the event; `handle_info` logs a warning and keeps the handler (as
OTP does for a handler without handle_info); `handle_call` raises (so a
`call` to a handler without one removes it); `terminate` returns None.

## A failing handler is removed alone

A handler that raises, or returns a wrong value, is removed: its
`terminate(("error", what), state)` runs, an error report is logged, and
the manager and the other handlers go on. When that happened in a `call`,
the caller gets `HandlerError(what)`. A raised `otp.Exit(reason)` counts as
a crash with `what = ("EXIT", reason)`: a handler cannot end the manager.

What is *not* isolated: every handler shares the manager's process. A
handler that blocks holds up every other handler and every event; one that
segfaults, calls `os._exit` or is killed takes the manager and all its
handlers with it.

## Supervised handlers

`add_sup_handler(mgr, handler, args)` links the calling process and the
manager, and ties the handler to the caller: whenever that handler leaves
the manager, the caller receives the message
`("gen_event_EXIT", handler, reason)`, with `reason`:

- `"normal"`: `delete_handler`, or the handler returned `RemoveHandler()`;
- `"shutdown"`: the manager stopped;
- `("swapped", NewHandler, pid)`: it was swapped; `pid` supervises the new
  handler;
- `("EXIT", crash)`: it raised; or the wrong value it returned.

If the supervising process ends (with reason `why`), its handlers are
removed with `terminate(("stop", why), state)`. As in OTP, the link stays
after the handler is removed (another handler may be supervised by the same
process), except that a manager that stops unlinks from the supervisors of
the handlers it still holds, so they are told by `gen_event_EXIT` and not
killed by the manager's exit.

## Swapping

`swap_handler(mgr, (Old, args1), (New, args2))` runs
`Old.terminate(args1, state)` and then `New.init((args2, result))`, where
`result` is what that terminate returned (`"error"` if `Old` was not
installed; `("EXIT", crash)` if it raised): the state moves from one
handler to the next. The new handler keeps the old one's supervisor;
`swap_sup_handler` makes the caller its supervisor instead. A handler can
swap itself from a callback by returning `SwapHandler(args1, state,
NewHandler, args2)`; the new handler then takes the old one's place in the
order.

## Errors

They are raised in the caller, mapping OTP's return values:

- `otp.HandlerError` (re-exported here): `.reason` is `"bad_module"`
  (`call` to a handler that is not installed), `"module_not_found"`
  (`delete_handler` of one), the reason an `init` refused with, or what a
  handler crashed with or wrongly returned during a `call`.
- `otp.NoProc`: no such manager. `notify` raises it only for a name nobody
  holds; a notify to a dead Pid is dropped, as a send is.
- `otp.CallTimeout`: `call` had no reply within its timeout (5 s by
  default); the caller lives on and a late reply is dropped. The other
  requests wait as long as it takes, as in OTP.
- `otp.CallExit`: the manager ended during the request.

## Stopping

`stop(mgr, reason="normal", timeout=None)` runs `terminate("stop", state)`
on every handler, newest first, sends `("gen_event_EXIT", h, "shutdown")`
to their supervisors, and ends the manager with `reason`. The manager traps
exits: when its parent (the process that `start_link`ed it, a supervisor)
ends, it stops the same way with the parent's reason.

## Debugging

`otp.debug` works on a manager: `get_state(mgr)` is the list of
`(handler, state)` pairs, newest first; `replace_state(mgr, fn)` calls
`fn((handler, state))` for every handler, and `fn` must return
`(handler, new_state)` for the same handler (all handlers are replaced, or
none); `get_status` adds `handlers`; `suspend`, `resume`, `statistics` and
`trace` work as for a GenServer.

## When not to use a GenEvent

Handlers share one process, so they share its failures and its speed: a
slow handler delays every other one. When subscribers must be isolated from
each other, give each one a process (a GenServer) and let the publisher
send to each: that is why Elixir deprecated its GenEvent. Use a manager for
what it is good at: small, quick handlers (logging, counting, alarms)
that are plugged in and out at run time.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar, NoReturn

import otp
from otp import _runtime, _upgrade
from otp._exceptions import BadArg, Exit, HandlerError
from otp._log import log_warning, logger
from otp._terms import EXIT, Crash, Pid, Ref

from . import _gen
from .gen_server import Ignore, Init, NoReply, Reply, Stop

__all__ = [
    "EventHandler",
    "GenEvent",
    "HandlerError",
    "RemoveHandler",
    "Reply",
    "Stop",
    "SwapHandler",
    "add_handler",
    "add_sup_handler",
    "call",
    "delete_handler",
    "notify",
    "start",
    "start_link",
    "stop",
    "swap_handler",
    "swap_sup_handler",
    "sync_notify",
    "which_handlers",
]

# The tag of a notify. Calls use the gen layer's "$gen_call"; any other
# message is an info for every handler.
_NOTIFY = "$gen_event_notify"


class RemoveHandler:
    """From handle_event/handle_info/handle_call: remove this handler.

    Its `terminate("remove_handler", state)` runs; a supervising process
    gets `("gen_event_EXIT", handler, "normal")`. From handle_call, the
    caller gets `reply`.
    """

    __slots__ = ("reply",)

    def __init__(self, reply: Any = None) -> None:
        self.reply = reply

    def __repr__(self) -> str:
        return "RemoveHandler()" if self.reply is None else f"RemoveHandler(reply={self.reply!r})"


class SwapHandler:
    """From a handler callback: replace this handler by `handler`.

    `terminate(args1, state)` runs on this handler, then
    `handler.init((args2, what_terminate_returned))`. The new handler takes
    this one's place in the order and keeps its supervisor. From
    handle_call, the caller gets `reply`.
    """

    __slots__ = ("args1", "args2", "handler", "reply", "state")

    def __init__(self, args1: Any, state: Any, handler: Any, args2: Any, reply: Any = None) -> None:
        self.args1 = args1
        self.state = state
        self.handler = handler
        self.args2 = args2
        self.reply = reply

    def __repr__(self) -> str:
        return f"SwapHandler({self.args1!r}, {self.state!r}, {self.handler!r}, {self.args2!r})"


# Results that belong to other callbacks or behaviours: returned as a state
# they are a bug in the handler, not a state.
_NOT_A_STATE = (Reply, NoReply, Stop, Init, Ignore)
_NOT_FROM_INIT = (*_NOT_A_STATE, RemoveHandler, SwapHandler)


class EventHandler:
    """Subclass it and write the callbacks; see the module documentation.

    An instance is made per installed handler, in the manager's process.
    """

    #: The code version, for `code_change`.
    vsn: ClassVar[Any] = 1

    def init(self, args: Any) -> Any:
        """The handler's initial state (default: `args`), or `Stop(reason)`."""
        return args

    def handle_event(self, event: Any, state: Any) -> Any:
        """An event from notify/sync_notify: the new state (default: ignore it)."""
        return state

    def handle_info(self, msg: Any, state: Any) -> Any:
        """Any other message the manager got: the new state (default: log it)."""
        log_warning(
            f"{type(self).__name__} in event manager {otp.self_pid()} "
            f"received unexpected message: {msg!r}"
        )
        return state

    def handle_call(self, request: Any, state: Any) -> Any:
        """A `gen_event.call`: `Reply(reply, state)`, `RemoveHandler(reply=)`..."""
        raise NotImplementedError(
            f"{type(self).__name__} was called with {request!r} but has no handle_call"
        )

    def terminate(self, reason: Any, state: Any) -> Any:
        """The handler leaves; the return value goes to delete_handler or a swap."""
        return None

    def code_change(self, old_vsn: Any, state: Any, extra: Any) -> Any:
        return state


class GenEvent:
    """The event manager. Not subclassed: handlers are `EventHandler`s.

    A namespace for starting managers, the same functions as the module's:
    `GenEvent.start_link(name=None)`, `GenEvent.start(name=None)`, and
    `GenEvent.child_spec(name=..., id=...)` for a supervisor.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        raise TypeError("GenEvent is not subclassed: write an EventHandler and add it")

    def __new__(cls, *args: Any, **kwargs: Any) -> GenEvent:
        raise TypeError("start a manager with gen_event.start_link()")

    @staticmethod
    def start_link(name: str | None = None) -> Pid:
        return start_link(name)

    @staticmethod
    def start(name: str | None = None) -> Pid:
        return start(name)

    @staticmethod
    def child_spec(**opts: Any) -> Any:
        """A supervisor ChildSpec starting `gen_event.start_link(name=...)`.

        Keywords `id` (default "GenEvent"), `restart`, `shutdown`, `type`,
        `significant`, `modules` go to the spec; `name` to start_link.
        `modules` defaults to "dynamic", as OTP asks of an event manager:
        its handler classes change while it runs.
        """
        opts.setdefault("modules", "dynamic")
        return _gen.child_spec(GenEvent, (), {}, **opts)


# ---------------------------------------------------------------- the API


def start_link(name: str | None = None) -> Pid:
    """Start a manager linked to the caller, with no handlers.

    `name` registers it (taken before it runs). The caller is its parent:
    when the caller ends, the manager stops with the same reason.

    Raises:
        otp.AlreadyStarted: the name is taken.
    """
    return _gen.start(  # type: ignore[return-value]
        _init_it, (), name=name, link=True, timeout=None, title=_title(name)
    )


def start(name: str | None = None) -> Pid:
    """As `start_link`, without the link (the manager has no parent)."""
    return _gen.start(  # type: ignore[return-value]
        _init_it, (), name=name, link=False, timeout=None, title=_title(name)
    )


def add_handler(manager: Any, handler: Any, args: Any) -> None:
    """Install `handler` (a class, or `(class, id)`): its `init(args)` runs.

    Raises:
        otp.HandlerError: init refused (`.reason`: its Stop reason, or
            `("EXIT", crash)` if it raised); the handler is not added.
        otp.NoProc: no such manager.
    """
    _check_handler(handler)
    _rpc(manager, ("add_handler", handler, args))


def add_sup_handler(manager: Any, handler: Any, args: Any) -> None:
    """As `add_handler`, supervised by the caller.

    The caller and the manager are linked; the caller receives
    `("gen_event_EXIT", handler, reason)` when the handler leaves, and the
    handler is removed (`terminate(("stop", why), state)`) if the caller
    ends.
    """
    _check_handler(handler)
    _rpc(manager, ("add_sup_handler", handler, args, otp.self_pid()))


def delete_handler(manager: Any, handler: Any, args: Any) -> Any:
    """Remove `handler`: returns what its `terminate(args, state)` returned.

    Raises:
        otp.HandlerError: `"module_not_found"` if no such handler is
            installed; `("EXIT", crash)` if terminate raised (the handler is
            removed all the same).
    """
    _check_handler(handler)
    return _rpc(manager, ("delete_handler", handler, args))


def swap_handler(manager: Any, old: tuple[Any, Any], new: tuple[Any, Any]) -> None:
    """Replace `old` by `new`: `old=(Old, args1)`, `new=(New, args2)`.

    `Old.terminate(args1, state)` runs, then `New.init((args2, result))`
    with what terminate returned (`"error"` if Old is not installed). New
    is added first in the order and keeps Old's supervisor.

    Raises:
        otp.HandlerError: New's init refused (Old is gone all the same).
    """
    _check_pair(old)
    _check_pair(new)
    _rpc(manager, ("swap_handler", old[0], old[1], new[0], new[1], None))


def swap_sup_handler(manager: Any, old: tuple[Any, Any], new: tuple[Any, Any]) -> None:
    """As `swap_handler`, and the caller supervises the new handler."""
    _check_pair(old)
    _check_pair(new)
    _rpc(manager, ("swap_handler", old[0], old[1], new[0], new[1], otp.self_pid()))


def notify(manager: Any, event: Any) -> None:
    """Hand `event` to every handler's `handle_event`; returns at once.

    Raises otp.NoProc for a name nobody holds (OTP's badarg); an event for a
    dead Pid is dropped.
    """
    otp.send(manager, (_NOTIFY, event))


def sync_notify(manager: Any, event: Any) -> None:
    """As `notify`, returning once every handler has handled `event`."""
    _rpc(manager, ("sync_notify", event))


def call(manager: Any, handler: Any, request: Any, timeout: float | None = 5.0) -> Any:
    """Call one handler's `handle_call(request, state)`; returns its reply.

    Raises:
        otp.HandlerError: `"bad_module"` (no such handler); `("EXIT", crash)`
            or the wrong value it returned (the handler was removed).
        otp.CallTimeout: no reply within `timeout` seconds (None: forever).
        otp.NoProc, otp.CallExit: no manager, or it ended during the call.
    """
    _check_handler(handler)
    return _rpc(manager, ("call", handler, request), timeout)


def which_handlers(manager: Any) -> list[Any]:
    """The installed handlers, newest first: classes and `(class, id)` pairs."""
    return _rpc(manager, ("which_handlers",))  # type: ignore[no-any-return]


def stop(manager: Any, reason: Any = "normal", timeout: float | None = None) -> None:
    """Stop the manager: every handler's `terminate("stop", state)` runs, newest
    first, supervisors get `"shutdown"`, and the manager exits with `reason`.

    Raises otp.NoProc (no such manager), otp.CallTimeout (it did not stop
    within `timeout` seconds).
    """
    _gen.stop(manager, reason, timeout)


def _rpc(manager: Any, request: tuple[Any, ...], timeout: float | None = None) -> Any:
    # OTP's gen_event:rpc waits forever (`infinity`): only `call` has a timeout.
    status, value = _gen.call(manager, request, timeout)
    if status == "ok":
        return value
    raise HandlerError(value)


def _check_handler(handler: Any) -> None:
    cls = handler[0] if type(handler) is tuple and len(handler) == 2 else handler
    if not (isinstance(cls, type) and issubclass(cls, EventHandler)):
        raise BadArg(f"not an EventHandler subclass or (subclass, id): {handler!r}")


def _check_pair(pair: Any) -> None:
    if type(pair) is not tuple or len(pair) != 2:
        raise BadArg(f"expected (handler, args), got {pair!r}")
    _check_handler(pair[0])


def _title(name: str | None) -> str:
    return f"{name} GenEvent" if name else "GenEvent"


# --------------------------------------------------------------- the manager

# A handler given as a bare class has no id: a sentinel, so that any value
# (None included) can be a user's id.
_NO_ID: Any = object()


def _split(handler: Any) -> tuple[Any, Any]:
    if type(handler) is tuple and len(handler) == 2:
        return handler[0], handler[1]
    return handler, _NO_ID


def _same_class(a: Any, b: Any) -> bool:
    # Classes travel by reference (module and name), so they are usually the
    # very same object here. A class pickled by value (dill: defined in a
    # function) is a new object per message, so the name decides.
    if a is b:
        return True
    try:
        return bool(a.__module__ == b.__module__ and a.__qualname__ == b.__qualname__)
    except AttributeError:
        return False


def _is_str(value: Any, *choices: str) -> bool:
    return isinstance(value, str) and value in choices


def _reportable(reason: Any) -> bool:
    """OTP's report_error: these reasons are not errors."""
    if _is_str(reason, "normal", "shutdown"):
        return False
    return not (type(reason) is tuple and len(reason) == 3 and _is_str(reason[0], "swapped"))


class _Handler:
    """One installed handler: OTP's #handler record."""

    __slots__ = ("cls", "id", "mod", "state", "sup")

    def __init__(self, cls: Any, id_: Any, sup: Pid | None) -> None:
        self.cls = cls
        self.id = id_
        self.mod: Any = None
        self.state: Any = None
        self.sup = sup  # the supervising process (add_sup_handler), or None

    def key(self) -> Any:
        return self.cls if self.id is _NO_ID else (self.cls, self.id)

    def matches(self, cls: Any, id_: Any) -> bool:
        if id_ is _NO_ID:
            if self.id is not _NO_ID:
                return False
        elif self.id is _NO_ID or not bool(self.id == id_):
            return False
        return _same_class(self.cls, cls)


def _apply(fn: Any, *args: Any) -> tuple[bool, Any]:
    """Run a handler callback: (True, result) or (False, ("EXIT", why)).

    OTP's `catch Mod:Fun(...)`. An otp.Exit raised by a handler is caught
    too: a handler cannot end the manager.
    """
    try:
        return True, fn(*args)
    except Exit as e:
        return False, ("EXIT", e.reason)
    except BaseException as e:
        return False, ("EXIT", Crash.from_exception(e))


class _Manager:
    """The manager process's side: the handler list, the loop, the dispatch."""

    def __init__(self, name: str | None, parent: Pid | None) -> None:
        self.name = name
        self.parent = parent
        self.handlers: list[_Handler] = []  # newest first
        self.sys = _gen.System("GenEvent", name, parent)
        self.last: Any = None

    # -- SystemHooks

    def sys_get_state(self) -> Any:
        return [(h.key(), h.state) for h in self.handlers]

    def sys_replace_state(self, fn: Any) -> Any:
        # Every new state is computed before any is stored: if fn raises or
        # returns the wrong handler for one of them, none is replaced.
        new = []
        for h in self.handlers:
            key = h.key()
            r = fn((key, h.state))
            if type(r) is not tuple or len(r) != 2 or not _same_key(r[0], key):
                raise BadArg(f"replace_state must return ({key!r}, new_state), got {r!r}")
            new.append(r[1])
        for h, state in zip(self.handlers, new, strict=True):
            h.state = state
        return self.sys_get_state()

    def sys_status(self) -> dict[str, Any]:
        return {"handlers": [h.key() for h in self.handlers], "state": self.sys_get_state()}

    def sys_terminate(self, reason: Any, from_: Any) -> NoReturn:
        self.terminate_server(reason)

    def sys_change_code(self, module: str, old_vsn: Any, extra: Any) -> bool:
        """Hot upgrade (otp/_upgrade.py): every handler whose class comes from
        `module` moves to the reloaded class, each through its own
        code_change(old_vsn, state, extra). All or none: if one raises, every
        handler keeps its old code and state."""
        hs = [h for h in self.handlers if _upgrade.uses(h.mod, module)]
        if not hs:
            return False
        states = _upgrade.change_callbacks(
            module,
            [h.mod for h in hs],
            old_vsn,
            lambda i, vsn: hs[i].mod.code_change(vsn, hs[i].state, extra),
        )
        for h, state in zip(hs, states, strict=True):
            h.state = state
            h.cls = type(h.mod)
        return True

    # -- the loop

    def loop(self) -> NoReturn:
        p = _runtime._proc
        assert p is not None
        receive = p.receive
        receive_any = p.receive_any
        sys_ = self.sys
        while True:
            # Suspended (otp.debug.suspend), only system messages and the
            # parent's EXIT are served (OTP's sys:suspend_loop): a parent must
            # still be able to stop a suspended manager. The others wait, in
            # order, until resume.
            msg = receive(sys_.suspended_match, None) if sys_.suspended else receive_any(None)
            self.last = msg
            if sys_.tracing:
                sys_.trace_in(msg)
            t = type(msg)
            if t is tuple:
                n = len(msg)
                if n == 2 and msg[0] == _NOTIFY:
                    self.notify(msg[1], "handle_event")
                    continue
                if n == 3:
                    tag = msg[0]
                    if tag == "$gen_call":
                        f = msg[1]
                        # A traced call (otp/_trace.py): the handlers run
                        # under its id, so their records and calls carry it.
                        self.p_trace(f[2] if len(f) > 2 else None)
                        try:
                            self.on_call((Pid(f[0]), f[1]), msg[2])
                        finally:
                            self.p_trace(None)
                        continue
                    if tag == "$system":
                        sys_.handle(msg[1], msg[2], self)
                        continue
            elif t is EXIT:
                if self.parent is not None and msg.pid == self.parent:
                    self.terminate_server(msg.reason)
                self.handle_exit(msg.pid, msg.reason)
                continue
            self.notify(msg, "handle_info")

    @staticmethod
    def p_trace(trace_id: Any) -> None:
        p = _runtime._proc
        if p is not None:
            p.trace = trace_id

    def on_call(self, from_: tuple[Pid, Ref], request: Any) -> None:
        op = request[0] if type(request) is tuple and request else None
        if op == "sync_notify":
            # Handled before the reply: the caller learns that every handler
            # has seen this event (and, by per-sender ordering, every event
            # it notified before).
            self.notify(request[1], "handle_event")
            result: Any = ("ok", None)
        elif op == "call":
            result = self.server_call(request[1], request[2])
        elif op == "add_handler":
            result = self.add_handler(request[1], request[2], None)
        elif op == "add_sup_handler":
            result = self.add_handler(request[1], request[2], request[3])
        elif op == "delete_handler":
            result = self.delete_handler(request[1], request[2])
        elif op == "swap_handler":
            result = self.swap_handler(*request[1:])
        elif op == "which_handlers":
            result = ("ok", [h.key() for h in self.handlers])
        else:
            result = ("error", ("unknown_request", request))
        _runtime._proc.send(from_[0], (from_[1], result))  # type: ignore[union-attr]
        if self.sys.tracing:
            self.sys.trace_out("replied", from_[0], result)

    # -- events

    def notify(self, event: Any, func: str) -> None:
        """OTP's server_notify: every handler, newest first; failures drop out."""
        kept = []
        for h in self.handlers:
            h2 = self.update(h, func, event)
            if h2 is not None:
                kept.append(h2)
        self.handlers = kept

    def update(self, h: _Handler, func: str, event: Any) -> _Handler | None:
        """One handler's handle_event/handle_info: the handler to keep, or None."""
        ok, r = _apply(getattr(h.mod, func), event, h.state)
        if ok:
            t = type(r)
            if t is RemoveHandler:
                self.do_terminate(h, "remove_handler", event, "normal")
                return None
            if t is SwapHandler:
                return self.do_swap(h, r, event)
            if t not in _NOT_A_STATE:
                h.state = r
                return h
        self.do_terminate(h, ("error", r), event, r)
        return None

    def server_call(self, handler: Any, request: Any) -> tuple[str, Any]:
        cls, id_ = _split(handler)
        i = self.find(cls, id_)
        if i < 0:
            return ("error", "bad_module")
        h = self.handlers[i]
        ok, r = _apply(h.mod.handle_call, request, h.state)
        if ok:
            t = type(r)
            if t is Reply:
                h.state = r.state
                return ("ok", r.reply)
            if t is RemoveHandler:
                self.do_terminate(h, "remove_handler", request, "normal")
                del self.handlers[i]
                return ("ok", r.reply)
            if t is SwapHandler:
                new = self.do_swap(h, r, request)
                # The new handler takes the old one's place (OTP's replace/3).
                if new is None:
                    del self.handlers[i]
                else:
                    self.handlers[i] = new
                return ("ok", r.reply)
        self.do_terminate(h, ("error", r), request, r)
        del self.handlers[i]
        return ("error", r)

    # -- adding, removing, swapping

    def find(self, cls: Any, id_: Any) -> int:
        """The index of the newest handler with that name, or -1."""
        for i, h in enumerate(self.handlers):
            if h.matches(cls, id_):
                return i
        return -1

    def init_handler(self, h: _Handler, args: Any) -> tuple[bool, Any]:
        """Make the handler's instance and run its init: (True, None) or
        (False, why)."""
        ok, r = _apply(_new_and_init, h.cls, args)
        if not ok:
            return False, r
        mod, state = r
        t = type(state)
        if t is Stop:
            return False, state.reason
        if t in _NOT_FROM_INIT:
            return False, ("bad_return_value", state)
        h.mod = mod
        h.state = state
        # Where otp.upgrade finds the processes that run a module's code (a
        # removed handler's module may linger: its upgrade is then a no-op).
        info = _runtime.current().info
        mods = info.setdefault("callback_modules", [])
        if type(mod).__module__ not in mods:
            mods.append(type(mod).__module__)
        return True, None

    def add_handler(self, handler: Any, args: Any, sup: Pid | None) -> tuple[str, Any]:
        cls, id_ = _split(handler)
        h = _Handler(cls, id_, sup)
        if sup is not None:
            # Linked before init runs, and left linked if init fails, as OTP
            # does (server_add_sup_handler). A supervisor that is already
            # dead shows up as an EXIT (we trap exits), which removes the
            # handler at once.
            otp.link(sup)
        ok, why = self.init_handler(h, args)
        if not ok:
            return ("error", why)
        self.handlers.insert(0, h)
        return ("ok", None)

    def delete_handler(self, handler: Any, args: Any) -> tuple[str, Any]:
        cls, id_ = _split(handler)
        i = self.find(cls, id_)
        if i < 0:
            return ("error", "module_not_found")
        h = self.handlers.pop(i)
        ok, res = self.do_terminate(h, args, "delete", "normal")
        return ("ok", res) if ok else ("error", res)

    def swap_handler(
        self, old: Any, args1: Any, new: Any, args2: Any, sup: Pid | None
    ) -> tuple[str, Any]:
        """OTP's server_swap_handler: `sup` is None for swap_handler, the
        caller for swap_sup_handler."""
        cls1, id1 = _split(old)
        i = self.find(cls1, id1)
        if i >= 0:
            h1 = self.handlers.pop(i)
            old_sup = h1.sup
            new_sup = sup if sup is not None else old_sup
            # A raising terminate hands ("EXIT", why) over, as OTP's catch does.
            _, state2 = self.do_terminate(h1, args1, "swapped", ("swapped", new, new_sup))
        else:
            state2, old_sup = "error", None
        return self.add_handler(new, (args2, state2), sup if sup is not None else old_sup)

    def do_swap(self, h1: _Handler, r: SwapHandler, last: Any) -> _Handler | None:
        """A swap asked for by a callback: the new handler (to put in the old
        one's place), or None if its init failed."""
        h1.state = r.state
        _, state2 = self.do_terminate(h1, r.args1, last, ("swapped", r.handler, h1.sup))
        cls2, id2 = _split(r.handler)
        h2 = _Handler(cls2, id2, h1.sup)
        ok, why = self.init_handler(h2, (r.args2, state2))
        if ok:
            return h2
        self.report_terminate(h2, why, state2, r.args2)
        return None

    def do_terminate(self, h: _Handler, args: Any, last: Any, reason: Any) -> tuple[bool, Any]:
        """Run terminate(args, state), report the removal (`reason` is what a
        supervisor is told), return (ok, terminate's result or ("EXIT", why))."""
        ok, res = _apply(h.mod.terminate, args, h.state)
        self.report_terminate(h, reason, h.state, last)
        return ok, res

    def report_terminate(self, h: _Handler, reason: Any, state: Any, last: Any) -> None:
        if _reportable(reason):
            self.report_error(h, reason, state, last)
        if h.sup is not None:
            _runtime._proc.send(h.sup, ("gen_event_EXIT", h.key(), reason))  # type: ignore[union-attr]

    def report_error(self, h: _Handler, reason: Any, state: Any, last: Any) -> None:
        """The error report for a handler removed by a failure (OTP's format)."""
        me = otp.self_pid()
        where = f"{self.name} {me}" if self.name else str(me)
        lines = [
            f"** gen_event handler {_key_repr(h.key())} crashed.",
            f"** Was installed in {where}",
            f"** Last event was: {last!r}",
            f"** When handler state == {state!r}",
            f"** Reason == {reason!r}",
        ]
        crash = reason[1] if type(reason) is tuple and len(reason) == 2 else reason
        if isinstance(crash, Crash) and crash.traceback:
            lines.append(crash.traceback.rstrip())
        logger.bind(otp_pid=str(me), os_pid=os.getpid()).error("\n".join(lines))

    # -- exits

    def handle_exit(self, pid: Pid, reason: Any) -> None:
        """An EXIT from someone other than the parent: first remove the
        handlers it supervised, then hand the EXIT to every handler that is
        left (any of them may care), as OTP's handle_exit."""
        kept = []
        for h in self.handlers:
            if h.sup == pid:
                self.do_terminate(
                    h, ("stop", reason), ("parent_terminated", (pid, reason)), "shutdown"
                )
            else:
                kept.append(h)
        self.handlers = kept
        self.notify(EXIT(pid, reason), "handle_info")

    def terminate_server(self, reason: Any) -> NoReturn:
        """Stop every handler (newest first), then exit with `reason`."""
        handlers, self.handlers = self.handlers, []
        states = [(h.key(), h.state) for h in handlers]
        for h in handlers:
            self.do_terminate(h, "stop", "stop", "shutdown")
        # Unlink the supervisors (not the parent): they were told by
        # gen_event_EXIT, and must not die of the manager's exit reason.
        # The UNLINK goes out on the same connection before our EXITING, so
        # it cannot be overtaken by the exit signal.
        for sup in {h.sup for h in handlers if h.sup is not None}:
            if sup != self.parent:
                otp.unlink(sup)
        _gen.report_terminate("GenEvent", self.name, reason, self.last, states)
        raise Exit(reason)


def _new_and_init(cls: Any, args: Any) -> tuple[Any, Any]:
    # Added after a hot upgrade of its module, it runs the new code (a
    # manager's copy of a module it ran no handler of may be the old one).
    mod = _upgrade.current(cls)()
    return mod, mod.init(args)


def _same_key(a: Any, b: Any) -> bool:
    ca, ia = _split(a)
    cb, ib = _split(b)
    if (ia is _NO_ID) != (ib is _NO_ID):
        return False
    return _same_class(ca, cb) and (ia is _NO_ID or bool(ia == ib))


def _key_repr(key: Any) -> str:
    if type(key) is tuple and len(key) == 2:
        return f"({getattr(key[0], '__qualname__', repr(key[0]))}, {key[1]!r})"
    return str(getattr(key, "__qualname__", None) or repr(key))


def _init_it(starter: Pid, ref: Ref, name: str | None) -> NoReturn:
    p = _runtime.current()
    # Trap exits before anything else: supervising processes and the parent
    # talk to the manager through EXIT messages, and one sent right after
    # the start must not kill it.
    otp.trap_exit(True)
    p.info["behaviour"] = "GenEvent"
    p.info["module"] = "gen_event"
    if name:
        p.info["name"] = name
    _gen.register_name(starter, ref, name)
    parent = starter if starter in p.links else None
    manager = _Manager(name, parent)
    _gen.init_ack(starter, ref, "ok", p.pid)
    manager.loop()
