"""GenStatem: state machines with OTP's event, postpone and timeout model.

A GenStatem is a process (an OS process) that is always in one *state* and
carries *data*. Every message it gets becomes an *event*; a *state callback*
handles the event and returns what happens next: the next state and data,
plus *actions* (reply to a caller, postpone this event, insert an event,
start a timeout). The engine does the rest, exactly as OTP's `gen_statem`
does: the order of replies, the queue of postponed events, the state enter
calls, the three kinds of timeouts and their cancellation rules.

## Example

The door of OTP's user's guide: it opens with the right code and locks
itself again after a while (see `examples/code_lock.py` for the whole one).

```python
from behaviours import GenStatem, gen_statem
from behaviours.gen_statem import (
    Call, KeepState, KeepStateAndData, NextState, Postpone, ReplyTo, StateTimeout,
)


class Door(GenStatem):
    callback_mode = "state_functions"   # one method per state, named after it
    state_enter = True                  # call it with ("enter", old_state) on entry

    def init(self, code):
        return "locked", {"code": code, "typed": []}      # (state, data)

    def locked(self, event_type, content, data):
        match event_type, content:
            case "enter", _:
                return KeepState({**data, "typed": []})
            case "cast", ("button", digit):
                typed = [*data["typed"], digit][-len(data["code"]):]
                if typed == data["code"]:
                    return NextState("open", data)
                return KeepState({**data, "typed": typed})
            case Call(from_), "state":
                return KeepState(data, [ReplyTo(from_, "locked")])

    def open(self, event_type, content, data):
        match event_type, content:
            case "enter", _:
                return KeepState(data, [StateTimeout(10.0, "lock")])
            case "state_timeout", "lock":
                return NextState("locked", data)
            case "cast", ("button", _):
                return KeepStateAndData([Postpone()])   # retried once locked
            case Call(from_), "state":
                return KeepState(data, [ReplyTo(from_, "open")])


door = Door.start_link([1, 2, 3], name="door")
for digit in (1, 2, 3):
    gen_statem.cast("door", ("button", digit))
gen_statem.call("door", "state")        # -> "open"; "locked" again 10 s later
gen_statem.stop(door)
```

## Callback modes

- `callback_mode = "state_functions"` (the default): the state is a `str`
  and names the method that handles events in that state:
  `state_name(self, event_type, content, data)`. A state may not be named
  after a method of `GenStatem` itself (`init`, `terminate`, `handle_event`,
  `start_link`...): the machine stops with a `TypeError` crash if it is.
- `callback_mode = "handle_event_function"`: the state is any value (a
  tuple, a number...) and one method handles every event:
  `handle_event(self, event_type, content, state, data)`.
- `state_enter = True` adds *state enter calls* (below).

## Events

`event_type` says where the event comes from; `content` is its payload.

| event_type | content | from |
|---|---|---|
| `Call(from_)` | the request | `gen_statem.call` (answer: `ReplyTo(from_, x)`) |
| `"cast"` | the message | `gen_statem.cast` |
| `"info"` | the message | any other message (`otp.send`, `otp.EXIT`, `otp.DOWN`...) |
| `"internal"` | what you gave | only the `NextEvent` action |
| `"timeout"` | the content | the event timeout (`EventTimeout`) |
| `"state_timeout"` | the content | the state timeout (`StateTimeout`) |
| `("timeout", name)` | the content | a generic timeout (`GenericTimeout`) |
| `"enter"` | the previous state | a state enter call (below) |

`Call` is a class, so `match` picks the caller out: `case Call(from_), "get":`.

## What a state callback returns

- `NextState(state, data, actions=())`: go to `state` (a *state change* if
  it differs from the current one) with `data`.
- `KeepState(data, actions=())`: stay, with new data.
- `KeepStateAndData(actions=())`: stay, data unchanged.
- `RepeatState(data, actions=())`, `RepeatStateAndData(actions=())`: stay,
  but behave as if the state had been entered again: the state enter call
  runs again (postponed events are *not* retried: that needs a real change).
- `Stop(reason, data=None, replies=())`: every `ReplyTo` in `replies` is sent,
  then `terminate(reason, state, data)` runs and the process exits with
  `reason`. `data=None` keeps the current data.

`actions` is a list (or a single action):

- `ReplyTo(from_, value)`: answer a call. Sent at once, in list order.
- `Postpone()`: keep this event and retry it after the next *state change*
  (`Postpone(False)` undoes an earlier one in the same list).
- `NextEvent(event_type, content)`: handle this event next, before anything
  queued or still in the mailbox; several keep their list order. Usually
  `NextEvent("internal", x)`; any event type but `"enter"` is accepted.
- `EventTimeout(seconds, content)`, `StateTimeout(seconds, content)`,
  `GenericTimeout(name, seconds, content)`: see Timeouts.

For two options of the same kind in one transition, the last one wins (two
`StateTimeout`s: the second is started; `Postpone()` then `Postpone(False)`:
not postponed).

A value of any other type (including the None of a callback that falls
off its end) stops the machine with `("bad_return_from_state_function",
value)`; an action it does not know with
`("bad_action_from_state_function", action)`; a bad `ReplyTo` in
`Stop(replies=)` with `("bad_reply_action_from_state_function", action)`. A
caller waiting in `gen_statem.call` then gets `otp.CallExit` with that
reason at once. An exception raised in a callback ends the process with an
`otp.Crash` and a crash report (`raise otp.Exit(reason)` ends it with
`reason`); `terminate` runs in every one of these cases.

## The transition, step by step (OTP's order)

1. The actions run in list order; replies leave at once.
2. With `state_enter`, after a state change or a `RepeatState*` (and once for
   the initial state, with old state == state), the new state's callback is
   called with `("enter", old_state)`; its actions join the transition and
   step 1 repeats.
3. A postponed event is put aside. On a state change, the postponed events
   are queued again, oldest first, ahead of the events not yet handled.
4. `NextEvent` events go in front of everything queued, in list order.
5. Timeouts are started or cancelled (below).
6. The next queued event is handled; when none is left, the zero-time
   timeouts fire, then the mailbox is read.

`KeepState*` and `NextState` to the same state neither retry postponed events
nor make a state enter call.

## State enter calls

With `state_enter = True`, the callback of a state is called with event type
`"enter"` and the previous state as content each time the state is entered
(`state_name(self, "enter", old_state, data)`, or
`handle_event(self, "enter", old_state, state, data)`). The first one comes
right after `init`, with `old_state == state`. An enter call may not change
the state (`NextState(other, ...)` stops the machine with
`("bad_state_enter_return_from_state_function", result)`) nor use `Postpone`
or `NextEvent` (`("bad_state_enter_action_from_state_function", action)`);
replies and timeouts are allowed.

## Timeouts

Every timeout is a deadline in seconds that, if it passes, delivers an event
of its own type with `content`:

- `EventTimeout(seconds, content)`: cancelled by *any* event, including an
  inserted, a retried postponed or another timeout's event. "Nothing happened
  for `seconds`".
- `StateTimeout(seconds, content)`: cancelled by a state change (not by
  `KeepState`). "Spent `seconds` in this state".
- `GenericTimeout(name, seconds, content)`: as many as you like, one per
  `name` (a hashable value); they survive state changes.

Setting a timeout that is running restarts it with the new time and content.
`seconds=None` (or `"cancel"`, or `math.inf`) cancels it; `seconds="update"`
changes only its content (and if it was not running, its event is delivered
at once, as with 0). `seconds=0` starts no timer: the event is queued after
the events already queued (inserted or postponed), but before any message
still in the mailbox. `absolute=True` makes `seconds` a `time.monotonic()`
deadline. A cancelled timeout never fires, even if its time had already
passed.

`gen_statem.call(ref, request, timeout=5.0)`: after `timeout` seconds the
caller gets `otp.CallTimeout` and lives on; a reply that comes later is
dropped. `timeout=None` waits forever.

## init, terminate

- `init(*args, **kwargs)`, in the new process: `(state, data)` or `(state,
  data, actions)` (`Postpone` is ignored there, the rest is honoured; the
  actions run before any message is read). `Stop(reason)` makes start raise
  `otp.StartError(reason)`; `Ignore()` makes start return None. Anything
  else: `StartError(("bad_return_from_init", value))`. A crash: `StartError`
  with the `otp.Crash`. An unknown `callback_mode` fails the start with
  `("bad_return_from_callback_mode", mode)` before init runs.
- `terminate(reason, state, data)`: after `Stop`, a crash or bad value, a
  `gen_statem.stop`, and an exit signal from the parent *if the machine traps
  exits* (`otp.trap_exit(True)` in init: a GenStatem does not trap exits by
  itself). Not when the process is killed. If terminate raises, that becomes
  the exit reason.
- `code_change(old_vsn, state, data, extra)` returns `(state, data)`;
  `format_status(status)` shapes what `otp.debug.get_status` and crash
  reports show (keys `state`, `data`, `postponed`, `timeouts`).

## Debugging

`otp.debug.get_state(pid)` returns `(state, data)`; `replace_state(pid, fn)`
calls `fn((state, data))`, which must return a new `(state, data)` pair (no
state enter call, no retry of postponed events); `get_status`, `suspend`,
`resume`, `statistics` and `trace` work as for every behaviour. System
messages are served between events, once the queue of inserted and postponed
events is empty, as in OTP.

## When not to use a GenStatem

When the "states" are just flags in a GenServer's state and there is no
postponing, no per-state timeout and no state enter logic, a GenServer is
simpler. And an OS process costs about a millisecond to start and a
mebibyte of memory: use one for a runtime property (a protocol, a device, a
connection), not to organise code.
"""

from __future__ import annotations

import collections
import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, NoReturn

from otp import _runtime, _upgrade
from otp._exceptions import BadArg, Exit
from otp._log import is_clean_exit
from otp._terms import EXIT, Crash, Pid, Ref

from . import _gen
from . import gen_server as _gen_server
from .gen_server import Ignore

__all__ = [
    "Call",
    "EventTimeout",
    "GenStatem",
    "GenericTimeout",
    "Ignore",
    "KeepState",
    "KeepStateAndData",
    "NextEvent",
    "NextState",
    "Postpone",
    "RepeatState",
    "RepeatStateAndData",
    "ReplyTo",
    "StateTimeout",
    "Stop",
    "call",
    "cast",
    "reply",
    "start",
    "start_link",
    "stop",
]

# The message a timeout's timer sends to its own machine: (TAG, id). The id
# is unique in the process, so a message whose id is no longer in the table
# belongs to a timer that was cancelled or restarted and is dropped.
_TIMEOUT_TAG = "$statem_timeout"

_MODES = ("state_functions", "handle_event_function")
_EVENT_TYPES = frozenset(("cast", "info", "internal", "timeout", "state_timeout"))


# ------------------------------------------------------------- event types


class Call:
    """The event type of a `gen_statem.call`: `from_` is the caller to answer.

    ```python
    match event_type, content:
        case Call(from_), "get":
            return KeepStateAndData([ReplyTo(from_, data)])
    ```
    """

    __slots__ = ("from_",)
    __match_args__ = ("from_",)

    def __init__(self, from_: tuple[Pid, Ref]) -> None:
        self.from_ = from_

    def __eq__(self, other: object) -> bool:
        return type(other) is Call and other.from_ == self.from_

    def __hash__(self) -> int:
        return hash(("call", self.from_))

    def __repr__(self) -> str:
        return f"Call({self.from_!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Call, (self.from_,))


# ---------------------------------------------------------------- results


@dataclass(slots=True)
class NextState:
    """Go to `state` with `data`; a state change if `state` differs."""

    state: Any
    data: Any
    actions: Any = ()


@dataclass(slots=True)
class KeepState:
    """Stay in the current state with new `data`."""

    data: Any
    actions: Any = ()


@dataclass(slots=True)
class KeepStateAndData:
    """Stay, data unchanged; only run `actions`."""

    actions: Any = ()


@dataclass(slots=True)
class RepeatState:
    """Stay with new `data`, and make the state enter call again."""

    data: Any
    actions: Any = ()


@dataclass(slots=True)
class RepeatStateAndData:
    """Stay, data unchanged, and make the state enter call again."""

    actions: Any = ()


@dataclass(slots=True)
class Stop:
    """Stop: send every `ReplyTo` in `replies`, run terminate, exit with `reason`.

    `data=None` keeps the current data. From `init`, `Stop(reason)` makes the
    start raise `otp.StartError(reason)`.
    """

    reason: Any
    data: Any = None
    replies: Any = ()


# ---------------------------------------------------------------- actions


@dataclass(slots=True)
class ReplyTo:
    """Answer the call `from_` with `value`, at once (OTP's `{reply,From,Value}`)."""

    from_: tuple[Pid, Ref]
    value: Any


@dataclass(slots=True)
class Postpone:
    """Retry the current event after the next state change (`False`: don't)."""

    postpone: bool = True


@dataclass(slots=True)
class NextEvent:
    """Handle `(event_type, content)` next, before queued events and messages."""

    type: Any
    content: Any = None


@dataclass(slots=True)
class EventTimeout:
    """A `"timeout"` event after `seconds` unless another event comes first.

    `seconds`: a number (0: queued at once), None/"cancel" to cancel,
    "update" to change only the content. `absolute`: `seconds` is a
    `time.monotonic()` deadline.
    """

    seconds: Any
    content: Any = None
    absolute: bool = field(default=False, kw_only=True)


@dataclass(slots=True)
class StateTimeout:
    """A `"state_timeout"` event after `seconds` unless the state changes first.

    `seconds` as for `EventTimeout`.
    """

    seconds: Any
    content: Any = None
    absolute: bool = field(default=False, kw_only=True)


@dataclass(slots=True)
class GenericTimeout:
    """A `("timeout", name)` event after `seconds`; survives state changes.

    `name` must be hashable; `seconds` as for `EventTimeout`.
    """

    name: Any
    seconds: Any
    content: Any = None
    absolute: bool = field(default=False, kw_only=True)


_TIMEOUT_ACTIONS = (EventTimeout, StateTimeout, GenericTimeout)


# --------------------------------------------------------------- the class


class GenStatem:
    """Subclass it and write the callbacks; see the module documentation."""

    #: "state_functions" (one method per state) or "handle_event_function".
    callback_mode: ClassVar[str] = "state_functions"
    #: Call the state callback with ("enter", old_state) on each state entry.
    state_enter: ClassVar[bool] = False
    #: The code version, for `code_change`.
    vsn: ClassVar[Any] = 1

    # ---- callbacks

    def init(self, *args: Any, **kwargs: Any) -> Any:
        """Return `(state, data)` or `(state, data, actions)`; see the module docs."""
        raise NotImplementedError(f"{type(self).__name__} must define init")

    def handle_event(self, event_type: Any, content: Any, state: Any, data: Any) -> Any:
        """The state callback in "handle_event_function" mode."""
        raise NotImplementedError(
            f"{type(self).__name__} uses callback_mode 'handle_event_function' "
            "but has no handle_event"
        )

    def terminate(self, reason: Any, state: Any, data: Any) -> Any:
        return None

    def code_change(self, old_vsn: Any, state: Any, data: Any, extra: Any) -> Any:
        return state, data

    def format_status(self, status: dict[str, Any]) -> dict[str, Any]:
        """Shape what get_status and crash reports show (e.g. hide secrets)."""
        return status

    # ---- starting

    @classmethod
    def start_link(
        cls, *args: Any, name: str | None = None, timeout: float | None = None, **kwargs: Any
    ) -> Pid:
        """Start a machine linked to the caller; blocks until init returned.

        `name` registers it (taken before init runs); `timeout` kills an init
        that takes longer. The other arguments go to `init`. Returns the Pid
        (None if init returned `Ignore()`).
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


# The names a "state_functions" state may not have: calling them as a state
# callback would run a GenStatem method instead (OTP has the same trap with
# a state named `terminate`).
_RESERVED = frozenset(n for n in dir(GenStatem) if not n.startswith("_"))


# ---------------------------------------------------------------- the API


def start_link(
    cls: type[GenStatem],
    *args: Any,
    name: str | None = None,
    timeout: float | None = None,
    **kwargs: Any,
) -> Pid:
    """Start `cls` linked to the caller; see `GenStatem.start_link`."""
    return _gen.start_callback(  # type: ignore[return-value]
        _init_it, "GenStatem", cls, args, kwargs, name=name, link=True, timeout=timeout
    )


def start(
    cls: type[GenStatem],
    *args: Any,
    name: str | None = None,
    timeout: float | None = None,
    **kwargs: Any,
) -> Pid:
    """Start `cls` without a link; see `GenStatem.start_link`."""
    return _gen.start_callback(  # type: ignore[return-value]
        _init_it, "GenStatem", cls, args, kwargs, name=name, link=False, timeout=timeout
    )


def call(ref: Any, request: Any, timeout: float | None = 5.0) -> Any:
    """Send `request` as a `Call(from_)` event and wait for the reply.

    `timeout` in seconds (None waits forever). Raises otp.NoProc (dead Pid,
    unknown name), otp.CallTimeout (the caller lives on; a late reply is
    dropped), otp.CallExit (the machine ended during the call, with its
    reason, at once).
    """
    return _gen.call(ref, request, timeout)


def cast(ref: Any, msg: Any) -> None:
    """Send `msg` as a `"cast"` event; always returns None."""
    _gen.cast(ref, msg)


def reply(from_: tuple[Pid, Ref], value: Any) -> None:
    """Answer a call from anywhere (the machine itself, or another process)."""
    _gen.reply(from_, value)


def stop(ref: Any, reason: Any = "normal", timeout: float | None = None) -> None:
    """Stop the machine: terminate(reason, state, data) runs, then it exits.

    Raises otp.NoProc, otp.CallTimeout (it did not stop in time), or
    otp.CallExit (it exited with another reason: its terminate crashed).
    """
    _gen.stop(ref, reason, timeout)


# ---------------------------------------------------------------- the loop


def _is_from(f: Any) -> bool:
    return type(f) is tuple and len(f) == 2 and isinstance(f[0], Pid)


def _is_event_type(t: Any) -> bool:
    """What NextEvent may insert: every event type but "enter"."""
    tt = type(t)
    if tt is str:
        return t in _EVENT_TYPES
    if tt is Call:
        return _is_from(t.from_)
    return tt is tuple and len(t) == 2 and t[0] == "timeout" and _hashable(t[1])


def _hashable(x: Any) -> bool:
    try:
        hash(x)
    except TypeError:
        return False
    return True


def _timeout_spec(a: Any) -> tuple[Any, str, float, Any] | None:
    """Normalise a timeout action: (key, how, delay, content), or None if bad.

    `how` is "cancel", "update", "zero" or "start" (with `delay` seconds).
    """
    t = type(a)
    if t is EventTimeout:
        key: Any = "timeout"
    elif t is StateTimeout:
        key = "state_timeout"
    else:
        if not _hashable(a.name):
            return None
        key = ("timeout", a.name)
    s = a.seconds
    if s is None or (type(s) is str and s == "cancel"):
        return key, "cancel", 0.0, None
    if type(s) is str and s == "update":
        return key, "update", 0.0, a.content
    if type(s) not in (int, float) or s != s:  # bool, str, NaN...
        return None
    if s == math.inf:
        return key, "cancel", 0.0, None  # OTP's infinity
    if a.absolute is True:
        # A deadline already passed still goes through a timer (OTP's
        # start_timer with {abs,true}): it is a message, not a zero timeout.
        return key, "start", max(s - time.monotonic(), 0.0), a.content
    if a.absolute is not False or s < 0:
        return None
    if s == 0:
        return key, "zero", 0.0, a.content
    return key, "start", float(s), a.content


class _Trans:
    """The options one transition collects from its actions (OTP's loop args)."""

    __slots__ = ("next_events", "postpone", "timeouts")

    def __init__(self) -> None:
        self.postpone = False
        self.next_events: list[tuple[Any, Any]] = []
        self.timeouts: list[tuple[Any, str, float, Any]] = []


class _Machine:
    """The machine process's side: the event loop and the transitions.

    Engine state, as OTP's #state{}:
    - `queue`: events to handle before reading the mailbox (inserted ones and
      retried postponed ones), next first;
    - `postponed`: events put aside until the next state change, oldest first;
    - `timers`: timeout type -> [id, TimerRef, content]; id 0 (and no
      TimerRef) marks a zero-time timeout waiting in `t0q`;
    - `t0q`: zero-time timeouts, in order: they fire once `queue` is empty.
    """

    def __init__(
        self, mod: GenStatem, state: Any, data: Any, name: str | None, parent: Pid | None
    ) -> None:
        self.mod = mod
        self.state = state
        self.data = data
        self.name = name
        self.parent = parent
        self.by_handle_event = type(mod).callback_mode == "handle_event_function"
        self.state_enter = bool(type(mod).state_enter)
        self.queue: collections.deque[tuple[Any, Any]] = collections.deque()
        self.postponed: list[tuple[Any, Any]] = []
        self.timers: dict[Any, list[Any]] = {}
        self.timer_ids: dict[int, Any] = {}
        self.t0q: list[Any] = []
        self.ids = itertools.count(1)
        self.fns: dict[Any, Any] = {}
        self.sys = _gen.System("GenStatem", name, parent)
        self.event: Any = None  # the event being handled, for crash reports
        p = _runtime._proc
        assert p is not None
        self.p = p

    # -- SystemHooks

    def sys_get_state(self) -> Any:
        return (self.state, self.data)

    def sys_replace_state(self, fn: Any) -> Any:
        new = fn((self.state, self.data))
        if type(new) is not tuple or len(new) != 2:
            raise BadArg(f"replace_state must return a (state, data) pair, got {new!r}")
        self.state, self.data = new
        return new

    def sys_status(self) -> dict[str, Any]:
        s = self._format_status({})
        return {
            "module": type(self.mod).__name__,
            "callback_mode": type(self.mod).callback_mode,
            "state_enter": self.state_enter,
            "state": (s.get("state"), s.get("data")),
            "postponed": s.get("postponed"),
            "timeouts": s.get("timeouts"),
        }

    def sys_terminate(self, reason: Any, from_: Any) -> NoReturn:
        self.event = None
        self.terminate(reason)

    def sys_change_code(self, module: str, old_vsn: Any, extra: Any) -> bool:
        """Hot upgrade (otp/_upgrade.py): the callback object moves to the
        reloaded class; code_change(old_vsn, state, data, extra) returns the
        new (state, data). If anything raises, nothing changed."""
        if not _upgrade.uses(self.mod, module):
            return False

        def convert(_i: int, vsn: Any) -> Any:
            r = self.mod.code_change(vsn, self.state, self.data, extra)
            if type(r) is not tuple or len(r) != 2:
                raise BadArg(f"code_change must return (state, data), got {r!r}")
            if type(self.mod).callback_mode not in _MODES:
                raise BadArg(f"bad callback_mode {type(self.mod).callback_mode!r}")
            return r

        ((self.state, self.data),) = _upgrade.change_callbacks(module, [self.mod], old_vsn, convert)
        # The cached state functions are the old class's; the new version
        # may also have another callback mode.
        self.fns.clear()
        self.by_handle_event = type(self.mod).callback_mode == "handle_event_function"
        self.state_enter = bool(type(self.mod).state_enter)
        return True

    # -- the loop

    def loop(self) -> NoReturn:
        queue = self.queue
        while True:
            if queue:
                ev = queue.popleft()
            elif self.t0q:
                # Zero-time timeouts fire after every queued event and before
                # the mailbox is read (OTP's loop_done).
                key = self.t0q.pop(0)
                ev = (key, self.timers.pop(key)[2])
            else:
                ev = self.receive()
            self.event = ev
            state, data = self.state, self.data
            r = self.callback(ev[0], ev[1], state, data)
            ns, nd, actions, enter = self.result(r, state, data, True)
            self.transition(ev, ns, nd, actions, enter)

    def receive(self) -> tuple[Any, Any]:
        """Read the mailbox until a message makes an event."""
        p = self.p
        sys_ = self.sys
        receive_any = p.receive_any
        while True:
            msg = p.receive(self.suspended_match, None) if sys_.suspended else receive_any(None)
            if sys_.tracing:
                sys_.trace_in(msg)
            t = type(msg)
            if t is tuple:
                n = len(msg)
                if n == 3:
                    tag = msg[0]
                    if tag == "$gen_call":
                        f = msg[1]
                        # A traced call (otp/_trace.py) carries its id as a
                        # third item of from_: the machine handles this event,
                        # and what it inserts or sets off, under that id.
                        p.trace = f[2] if len(f) > 2 else None
                        return (Call((Pid(f[0]), f[1])), msg[2])
                    if tag == "$system":
                        sys_.handle(msg[1], msg[2], self)
                        continue
                elif n == 2:
                    tag = msg[0]
                    if tag == "$gen_cast":
                        # A traced cast's tag is a str holding the id.
                        p.trace = getattr(tag, "trace_id", None)
                        return ("cast", msg[1])
                    if tag == _TIMEOUT_TAG and type(msg[1]) is int:
                        key = self.timer_ids.pop(msg[1], None)
                        if key is None:
                            continue  # a cancelled timer's late message
                        return (key, self.timers.pop(key)[2])
            elif t is EXIT and msg.pid == self.parent and p.trap:
                # The parent (a supervisor, the starter) ends us: terminate
                # runs, as OTP does for a machine that traps exits.
                self.event = ("info", msg)
                self.terminate(msg.reason)
            p.trace = None
            return ("info", msg)

    def suspended_match(self, m: Any) -> bool:
        """What a suspended machine still takes: system messages, its parent's EXIT.

        As OTP's sys:suspend_loop: a suspended machine that traps exits must
        still obey its parent (a supervisor shutting it down).
        """
        return _gen.is_system(m) or (type(m) is EXIT and m.pid == self.parent)

    def callback(self, event_type: Any, content: Any, state: Any, data: Any) -> Any:
        """Call the state callback; an exception ends the machine."""
        try:
            if self.by_handle_event:
                return self.mod.handle_event(event_type, content, state, data)
            fn = self.fns.get(state) if type(state) is str else None
            if fn is None:
                fn = self.state_function(state)
            return fn(event_type, content, data)
        except Exit as e:
            self.terminate(e.reason)
        except BaseException as e:
            self.terminate(Crash.from_exception(e))

    def state_function(self, state: Any) -> Any:
        name = type(self.mod).__name__
        if type(state) is not str:
            raise TypeError(f"{name}: in 'state_functions' mode a state is a str, got {state!r}")
        if state in _RESERVED or state.startswith("__"):
            raise TypeError(f"{name}: state {state!r} collides with a GenStatem method")
        fn = getattr(self.mod, state, None)
        if fn is None or not callable(fn):
            raise AttributeError(f"{name} has no state function for state {state!r}")
        self.fns[state] = fn
        return fn

    def result(self, r: Any, state: Any, data: Any, state_call: bool) -> tuple[Any, Any, Any, bool]:
        """Read a callback's result: (next state, next data, actions, enter?).

        `state`/`data` are what the callback was called with. `enter` says
        whether a state enter call is due (a change of state, or a repeat).
        """
        t = type(r)
        if t is NextState:
            ns = r.state
            if ns is state or ns == state:
                return ns, r.data, r.actions, False
            if state_call:
                return ns, r.data, r.actions, True
            self.terminate(("bad_state_enter_return_from_state_function", r), (state, data))
        if t is KeepState:
            return state, r.data, r.actions, False
        if t is KeepStateAndData:
            return state, data, r.actions, False
        if t is RepeatState:
            return state, r.data, r.actions, True
        if t is RepeatStateAndData:
            return state, data, r.actions, True
        if t is Stop:
            sd = (state, data if r.data is None else r.data)
            if r.replies:
                replies = r.replies if type(r.replies) in (list, tuple) else (r.replies,)
                # OTP's stop_and_reply: every reply leaves before terminate runs.
                for a in replies:
                    if type(a) is not ReplyTo or not _is_from(a.from_):
                        self.terminate(("bad_reply_action_from_state_function", a), sd)
                    self.reply(a)
            self.terminate(r.reason, sd)
        self.terminate(("bad_return_from_state_function", r), (state, data))

    def transition(self, ev: Any, ns: Any, nd: Any, actions: Any, enter: bool) -> None:
        """The state transition of OTP's gen_statem, in its order (see module docs).

        `ev` is the event just handled (None for the initial transition).
        """
        tr = _Trans()
        state_call = True
        while True:
            if actions:
                self.actions(actions, tr, state_call, ns, nd)
            if not (enter and self.state_enter):
                break
            # The state enter call: the new state's callback, told the state
            # we come from (the one before this whole transition, even after
            # a RepeatState from an enter call). Its actions join `tr`.
            r = self.callback("enter", self.state, ns, nd)
            state_call = False
            ns, nd, actions, enter = self.result(r, ns, nd, False)
        if tr.postpone and ev is not None:
            self.postponed.append(ev)
        old = self.state
        if ns is old or ns == old:
            # Any event cancels the event timeout.
            if "timeout" in self.timers:
                self.cancel("timeout")
        else:
            # A state change: the postponed events are retried, oldest first,
            # ahead of the events not yet handled...
            if self.postponed:
                self.queue.extendleft(reversed(self.postponed))
                self.postponed = []
            # ...and the state timeout (and the event timeout) end.
            if "state_timeout" in self.timers:
                self.cancel("state_timeout")
            if "timeout" in self.timers:
                self.cancel("timeout")
        self.state, self.data = ns, nd
        # Timeouts after the cancellations above: one set by this transition
        # belongs to the new state.
        if tr.timeouts:
            self.start_timeouts(tr.timeouts)
        # Inserted events go in front of everything, retried postponed ones
        # included, keeping their list order.
        if tr.next_events:
            self.queue.extendleft(reversed(tr.next_events))

    def actions(self, actions: Any, tr: _Trans, state_call: bool, ns: Any, nd: Any) -> None:
        """Run the actions in list order: replies now, options into `tr`."""
        if type(actions) not in (list, tuple):
            actions = (actions,)
        for a in actions:
            t = type(a)
            if t is ReplyTo:
                if not _is_from(a.from_):
                    self.terminate(("bad_action_from_state_function", a), (ns, nd))
                self.reply(a)
            elif t is Postpone:
                if a.postpone and not state_call:
                    self.terminate(("bad_state_enter_action_from_state_function", a), (ns, nd))
                tr.postpone = bool(a.postpone)
            elif t is NextEvent:
                if not state_call:
                    self.terminate(("bad_state_enter_action_from_state_function", a), (ns, nd))
                if not _is_event_type(a.type):
                    self.terminate(("bad_action_from_state_function", a), (ns, nd))
                tr.next_events.append((a.type, a.content))
            elif t in _TIMEOUT_ACTIONS:
                spec = _timeout_spec(a)
                if spec is None:
                    self.terminate(("bad_action_from_state_function", a), (ns, nd))
                tr.timeouts.append(spec)
            elif (t is int or t is float) and a >= 0:
                # OTP's bare Time action: an event timeout with Time as content.
                spec = _timeout_spec(EventTimeout(a, a))
                if spec is None:
                    self.terminate(("bad_action_from_state_function", a), (ns, nd))
                tr.timeouts.append(spec)
            else:
                self.terminate(("bad_action_from_state_function", a), (ns, nd))

    def reply(self, a: ReplyTo) -> None:
        _gen.reply(a.from_, a.value)
        if self.sys.tracing:
            self.sys.trace_out("replied", a.from_[0], a.value)

    # -- timeouts

    def start_timeouts(self, specs: list[tuple[Any, str, float, Any]]) -> None:
        """Start, restart, update or cancel timeouts; the last of each type wins.

        As OTP's loop_timeouts: walk the list backwards and skip a type seen
        already; zero-time ones join `t0q` in their list order, behind the
        zero-time ones already waiting.
        """
        seen: set[Any] = set()
        zero: list[Any] = []
        timers = self.timers
        for key, how, delay, content in reversed(specs):
            if key in seen:
                continue
            seen.add(key)
            if how == "cancel":
                self.cancel(key)
            elif how == "update":
                entry = timers.get(key)
                if entry is not None:
                    entry[2] = content
                else:
                    # Not running: delivered as if it had been set to 0.
                    timers[key] = [0, None, content]
                    zero.append(key)
            elif how == "zero":
                self.cancel(key)
                timers[key] = [0, None, content]
                zero.append(key)
            else:
                self.cancel(key)
                n = next(self.ids)
                p = self.p
                tref = p.send_after(delay, p.pid, (_TIMEOUT_TAG, n))
                timers[key] = [n, tref, content]
                self.timer_ids[n] = key
        if zero:
            zero.reverse()
            self.t0q.extend(zero)

    def cancel(self, key: Any) -> None:
        """Stop a timeout so that its event is never delivered."""
        entry = self.timers.pop(key, None)
        if entry is None:
            return
        n = entry[0]
        if n == 0:
            self.t0q.remove(key)
            return
        del self.timer_ids[n]
        if self.p.cancel_timer(entry[1]) is False:
            # It fired already and its message sits in the mailbox: take it
            # out, as OTP's cancel_timer does. (The loop would drop it anyway,
            # its id being gone; this keeps the queue length honest.)
            mb = self.p.mailbox
            for i, m in enumerate(mb):
                if type(m) is tuple and len(m) == 2 and m[1] == n and m[0] == _TIMEOUT_TAG:
                    del mb[i]
                    break

    # -- the end

    def _format_status(self, extra: dict[str, Any]) -> dict[str, Any]:
        status = {
            "state": self.state,
            "data": self.data,
            "postponed": list(self.postponed),
            "timeouts": [(k, e[2]) for k, e in self.timers.items()],
            **extra,
        }
        try:
            return self.mod.format_status(status)
        except BaseException:
            return status

    def terminate(self, reason: Any, state_data: tuple[Any, Any] | None = None) -> NoReturn:
        """Run terminate(reason, state, data), report, and exit with `reason`.

        `state_data` is what terminate sees when it is not the committed
        state and data (a bad result or action: what the callback returned,
        as OTP does). terminate's own crash replaces the reason.
        """
        state, data = state_data if state_data is not None else (self.state, self.data)
        self.state, self.data = state, data
        try:
            self.mod.terminate(reason, state, data)
        except Exit as e:
            reason = e.reason
        except BaseException as e:
            reason = Crash.from_exception(e)
        if not is_clean_exit(reason):
            status = self._format_status(
                {"reason": reason, "event": self.event, "queue": list(self.queue)}
            )
            _gen.report_terminate(
                "GenStatem",
                self.name,
                reason,
                status.get("event"),
                (status.get("state"), status.get("data")),
            )
        raise Exit(reason)


def _init_it(
    starter: Pid,
    ref: Ref,
    name: str | None,
    cls: type[GenStatem],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> NoReturn:
    # Started after a hot upgrade of its module, it runs the new code, even
    # if forked from a process that holds the old copy (otp/_upgrade.py).
    cls = _upgrade.current(cls)
    p = _runtime.current()
    p.info["behaviour"] = "GenStatem"
    p.info["module"] = cls.__qualname__
    # Where otp.upgrade finds the processes that run a module's code.
    p.info["callback_modules"] = [cls.__module__]
    if name:
        p.info["name"] = name
    _gen.register_name(starter, ref, name)
    parent = starter if starter in p.links else None
    mode = getattr(cls, "callback_mode", None)
    if mode not in _MODES:
        _gen.init_fail(starter, ref, name, ("bad_return_from_callback_mode", mode))
    mod = cls()
    try:
        r = mod.init(*args, **kwargs)
    except Exit as e:
        _gen.init_fail(starter, ref, name, e.reason)
    except BaseException as e:
        crash = Crash.from_exception(e)
        _gen.report_terminate("GenStatem", name, crash, None, None)
        _gen.init_fail(starter, ref, name, crash)
    t = type(r)
    if t is tuple and len(r) in (2, 3):
        state, data = r[0], r[1]
        actions = r[2] if len(r) == 3 else ()
    elif t is Stop or t is _gen_server.Stop:
        _gen.init_fail(starter, ref, name, r.reason)
    elif t is Ignore:
        _gen.init_fail(starter, ref, name, None, status="ignore")
    else:
        reason = ("bad_return_from_init", r)
        _gen.report_terminate("GenStatem", name, reason, None, None)
        _gen.init_fail(starter, ref, name, reason)
    m = _Machine(mod, state, data, name, parent)
    _gen.init_ack(starter, ref, "ok", p.pid)
    # OTP's enter/8: init's actions run as a transition from the state to
    # itself, with a state enter call (old state == state) and postpone
    # ignored, before the first message is read.
    m.transition(None, state, data, actions, True)
    m.loop()
