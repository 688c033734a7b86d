"""Debugging running processes: Erlang's `sys` module.

Every behaviour (GenServer, GenStatem, GenEvent, Supervisor) answers these
through the shared gen layer, between two callbacks, so what you see is
always a consistent state.

```python
otp.debug.get_state("counter")            # the server's state
otp.debug.replace_state("counter", lambda s: s + 1)
otp.debug.get_status("counter")           # pid, name, behaviour, status, state...
otp.debug.suspend("counter")              # only system messages are served...
otp.debug.resume("counter")               # ...until resumed; nothing is lost
otp.debug.statistics("counter")           # start time, messages in and out
otp.debug.trace("counter", True)          # log every message in and out
otp.debug.change_code("counter", "mymod", 1, None)   # hot upgrade (see otp.upgrade)
```

A `replace_state` function that raises leaves the state unchanged and raises
`otp.OTPError` in the caller.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import _call
from ._exceptions import OTPError

__all__ = [
    "change_code",
    "get_state",
    "get_status",
    "replace_state",
    "resume",
    "statistics",
    "suspend",
    "trace",
]

_SYSTEM = "$system"


def _sys(dest: Any, request: tuple[Any, ...], timeout: float | None) -> Any:
    status, value = _call.call(dest, _SYSTEM, request, timeout)
    if status == "error":
        raise OTPError(value)
    return value


def get_state(pid: Any, timeout: float | None = 5.0) -> Any:
    """The process's state (a GenStatem's is `(state, data)`)."""
    return _sys(pid, ("get_state",), timeout)


def replace_state(pid: Any, fn: Callable[[Any], Any], timeout: float | None = 5.0) -> Any:
    """Replace the state with `fn(state)`; returns the new state."""
    return _sys(pid, ("replace_state", fn), timeout)


def get_status(pid: Any, timeout: float | None = 5.0) -> dict[str, Any]:
    """A dict: pid, name, behaviour, status ("running"/"suspended"), parent,
    and the behaviour's own keys (state as its format_status shows it)."""
    return _sys(pid, ("get_status",), timeout)  # type: ignore[no-any-return]


def suspend(pid: Any, timeout: float | None = 5.0) -> None:
    """Serve only system messages until `resume`; other messages wait queued.

    As OTP's sys:suspend_loop, a suspended process that traps exits still
    obeys its parent's exit signal (its terminate runs).
    """
    _sys(pid, ("suspend",), timeout)


def resume(pid: Any, timeout: float | None = 5.0) -> None:
    """End a `suspend`: what queued up meanwhile is then handled, in arrival order.

    Harmless on a process that is not suspended.
    """
    _sys(pid, ("resume",), timeout)


def statistics(pid: Any, timeout: float | None = 5.0) -> dict[str, Any]:
    """start_time, current_time, messages_in, messages_out, message_queue_len."""
    return _sys(pid, ("statistics",), timeout)  # type: ignore[no-any-return]


def trace(pid: Any, on: bool, timeout: float | None = 5.0) -> None:
    """Log every message the process receives and every reply it sends."""
    _sys(pid, ("trace", on), timeout)


def change_code(
    pid: Any,
    module: Any,
    old_vsn: Any = None,
    extra: Any = None,
    timeout: float | None = 10.0,
) -> bool:
    """Move one process to the new code of `module` (Erlang's sys:change_code).

    Between two callbacks, the process reloads `module` (a module object or
    its dotted name) from disk, moves its callback object to the class of the
    same name, and calls `code_change(old_vsn, state, extra)` for the new
    state. `old_vsn=None` passes the `vsn` of the code it ran until now;
    `("down", vsn)` is a downgrade (see `otp.upgrade`, which does this for
    every process of the node, suspended first, with a report).

    Returns True, or False if the process runs no callbacks from `module`.
    If code_change raises, the process keeps its old code and state, and
    `otp.OTPError(("callback_failed", "change_code", crash))` is raised here.
    """
    from . import _upgrade

    return _upgrade.change_code(pid, module, old_vsn, extra, timeout)
