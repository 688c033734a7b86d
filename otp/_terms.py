"""The values the runtime hands around: Pids, Refs, exit reasons, runtime messages.

They are shaped like Erlang's so that a later multi-machine transport (the
Erlang distribution protocol, where a pid is node + id + serial + creation)
maps onto them without a redesign.

A local Pid's `id` is the OS pid of its process, so `<0.4211.N>` can be
`kill -9 4211`-ed from a shell. `serial` is the process's start time in clock
ticks (field 22 of /proc/PID/stat): the OS pid may be reused after a process
dies, the pair (id, serial) never is.
"""

from __future__ import annotations

import pickle
import traceback as _tb
from typing import Any, NamedTuple

__all__ = ["DOWN", "EXIT", "Crash", "Pid", "Ref", "TimerRef"]

LOCAL_NODE = "nonode@nohost"


class Pid(tuple):  # type: ignore[type-arg]
    """A process identifier: `node`, `id` (the OS pid) and `serial` (its start time).

    Hashable, comparable, picklable; printed as Erlang prints one:
    `<0.4211.52133>` for a local process (node index 0).

    A Pid of another node read from the network is `(node, id, serial,
    creation)`; see `creation`.

    A Pid is a tuple subclass with no Python-level constructor or reducer, so
    pickling and unpickling one stays inside the C pickler: a call carries two
    of them (the caller's Pid, its Ref) and this is the hot path. Build one
    with `Pid.of(node, id, serial)`.
    """

    __slots__ = ()

    @staticmethod
    def of(node: str, id: int, serial: int) -> Pid:
        return Pid((node, id, serial))

    @property
    def node(self) -> str:
        return self[0]  # type: ignore[no-any-return]

    @property
    def id(self) -> int:
        return self[1]  # type: ignore[no-any-return]

    @property
    def serial(self) -> int:
        return self[2]  # type: ignore[no-any-return]

    @property
    def os_pid(self) -> int:
        """The OS pid of a local process (what `ps` shows and `kill` takes)."""
        return self[1]  # type: ignore[no-any-return]

    @property
    def creation(self) -> int:
        """The incarnation of the node a Pid of another node belongs to (0:
        this node's, or unknown). A Pid read from another node carries it as
        a fourth element, so a Pid of a node that has since restarted is not
        equal to the new node's Pid with the same numbers (as in Erlang)."""
        return self[3] if len(self) > 3 else 0

    def __repr__(self) -> str:
        index = 0 if self[0] == LOCAL_NODE or self[0] == _local_node_name() else 1
        return f"<{index}.{self[1]}.{self[2]}>"

    __str__ = __repr__


class Ref(tuple):  # type: ignore[type-arg]
    """A unique reference (Erlang's `make_ref()`), printed `#Ref<0.A.B.C>`.

    A tuple `(node, a, b, c)`, for the same reason a Pid is one.
    """

    __slots__ = ()

    @property
    def node(self) -> str:
        return self[0]  # type: ignore[no-any-return]

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(self[1:])

    @property
    def creation(self) -> int:
        """0 for a Ref of this node; a Ref read from another node keeps that
        node's incarnation (see `Pid.creation`)."""
        return 0

    def __repr__(self) -> str:
        return "#Ref<0." + ".".join(map(str, self[1:])) + ">"

    __str__ = __repr__


class _ForeignRef(Ref):
    """A Ref of another node, read from the network: `(node, *words,
    creation)`. Like a Pid of another node (`Pid.creation`), it keeps the
    incarnation of its node, so it is written back exactly as it came, and
    one of an earlier incarnation is not equal to a new one with the same
    words. Printed and compared as any Ref otherwise."""

    __slots__ = ()

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(self[1:-1])

    @property
    def creation(self) -> int:
        return self[-1]  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return "#Ref<0." + ".".join(map(str, self[1:-1])) + ">"

    __str__ = __repr__


class TimerRef(Ref):
    """A reference to a timer started by `otp.send_after`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "#TimerRef<0." + ".".join(map(str, self[1:])) + ">"

    __str__ = __repr__


class _AnsweredRef(Ref):
    """The tag of a remote call's reply as the dist process delivers it: the
    same Ref (equal, same hash), marking that the dist process has already
    dropped the call's monitor (otp/dist/_process.py, `_Router._answered`),
    so the caller need not ask it to. Only the call primitive sees it."""

    __slots__ = ()


class EXIT(NamedTuple):
    """The message a process that traps exits receives for an exit signal."""

    pid: Pid
    reason: Any


class DOWN(NamedTuple):
    """The message a monitor delivers once: the process `pid` ended with `reason`.

    `pid` is the monitored Pid, or `(name, node)` when the monitor was set on a
    registered name, as in Erlang.
    """

    ref: Ref
    pid: Any
    reason: Any


class Crash:
    """The exit reason of a process ended by an uncaught exception.

    Attributes:
        type: the exception's class name, e.g. `"ValueError"`.
        message: `str(exception)`.
        traceback: the formatted traceback, as text.
        exception: the exception itself where it pickles, else `None`.

    Two Crash values are equal when type and message are equal, so tests can
    compare exit reasons without matching tracebacks.
    """

    __slots__ = ("exception", "message", "traceback", "type")

    def __init__(
        self,
        type: str,
        message: str,
        traceback: str = "",
        exception: BaseException | None = None,
    ) -> None:
        self.type = type
        self.message = message
        self.traceback = traceback
        self.exception = exception

    @classmethod
    def from_exception(cls, exc: BaseException) -> Crash:
        """Build a Crash from a caught exception (call it inside the `except`)."""
        text = "".join(_tb.format_exception(type(exc), exc, exc.__traceback__))
        keep: BaseException | None = exc
        try:
            pickle.loads(pickle.dumps(exc, 5))
        except Exception:
            keep = None
        try:
            message = str(exc)
        except Exception:
            # An exception whose __str__ raises still ends its process as a
            # crash of its own type: raising here would escape the process's
            # last handler (tests/test_review_runtime.py).
            message = f"<unprintable {type(exc).__name__}>"
        return cls(type(exc).__name__, message, text, keep)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Crash, (self.type, self.message, self.traceback, self.exception))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Crash) and self.type == other.type and self.message == other.message
        )

    def __hash__(self) -> int:
        return hash((self.type, self.message))

    def __repr__(self) -> str:
        return f"Crash({self.type}: {self.message})"


def _local_node_name() -> str:
    # Late import: the node module imports this one.
    from . import _runtime

    return _runtime.NODE_NAME
