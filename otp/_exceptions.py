"""Every error the library raises, in one tree.

```
OTPError                      the root: catch it to catch anything this library raises
├── NoProc                    no such process: a dead Pid, or a name nobody holds
├── ReceiveTimeout            otp.receive(timeout=...) expired (also a TimeoutError)
├── CallError                 a synchronous request to a process failed
│   ├── CallTimeout           no reply within the timeout (also a TimeoutError)
│   └── CallExit              the server ended during the call; `.reason` says how
├── StartError                a process could not be started; `.reason` says why
│   ├── AlreadyStarted        the name is taken; `.pid` holds it
│   └── BadReturn             a callback returned a value of the wrong shape
├── NotPicklable              a message (or spawn argument) cannot be serialised
├── BadArg                    a call's argument is wrong (Erlang's badarg)
├── SupervisorError           a supervisor API call was refused; `.reason` is OTP's
├── HandlerError              an event manager refused a handler request; `.reason` is OTP's
└── ProtocolError             garbage on a connection (closes that connection only)
```

`otp.Exit` is deliberately *not* in the tree: it is not an error but the way a
process ends itself with a reason (`raise otp.Exit("shutdown")`), like
`SystemExit`. It derives from `BaseException` so that a callback's
`except Exception:` does not swallow a deliberate exit.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AlreadyStarted",
    "BadArg",
    "BadReturn",
    "CallError",
    "CallExit",
    "CallTimeout",
    "Exit",
    "HandlerError",
    "NoProc",
    "NotPicklable",
    "OTPError",
    "ProtocolError",
    "ReceiveTimeout",
    "StartError",
    "SupervisorError",
]


class OTPError(Exception):
    """The root of every exception this library raises."""


class NoProc(OTPError):
    """Raised when the target process does not exist.

    `send` raises it for a name nobody has registered (sending to a dead Pid is
    silently dropped, as in Erlang); `call` raises it for a dead Pid too.
    """

    def __init__(self, target: Any = None, message: str | None = None) -> None:
        self.target = target
        super().__init__(message or f"no process: {target!r}")


class ReceiveTimeout(OTPError, TimeoutError):
    """Raised by `otp.receive` when no matching message arrived in time."""


class CallError(OTPError):
    """A synchronous call (`gen_server.call` and friends) failed."""


class CallTimeout(CallError, TimeoutError):
    """No reply arrived within the call's timeout.

    The caller lives on. A reply that arrives later is dropped by the runtime
    and never shows up in the caller's mailbox.
    """


class CallExit(CallError):
    """The server ended while the call was in flight; `reason` is its exit reason.

    Raised at once when the server dies, not at the timeout.
    """

    def __init__(self, reason: Any, context: Any = None) -> None:
        self.reason = reason
        self.context = context
        super().__init__(f"server exited: {reason!r}" + (f" in {context!r}" if context else ""))


class StartError(OTPError):
    """A process or behaviour could not be started; `reason` is the exit reason."""

    def __init__(self, reason: Any, message: str | None = None) -> None:
        self.reason = reason
        super().__init__(message or f"start failed: {reason!r}")


class AlreadyStarted(StartError):
    """The name is already registered; `pid` is the process holding it."""

    def __init__(self, pid: Any) -> None:
        self.pid = pid
        super().__init__(("already_started", pid), f"already started: {pid!r}")


class BadReturn(StartError):
    """A callback returned a value of the wrong shape; `value` is that value."""

    def __init__(self, value: Any, reason: Any = None) -> None:
        self.value = value
        super().__init__(
            reason if reason is not None else ("bad_return_value", value),
            f"bad return value: {value!r}",
        )


class NotPicklable(OTPError, TypeError):
    """A value cannot be serialised to cross into another process.

    Raised in the sender; nothing was sent, the receiver sees nothing.
    """


class BadArg(OTPError, ValueError):
    """An argument was refused, as Erlang's `badarg` (a taken name, a dead Pid...)."""


class SupervisorError(OTPError):
    """A supervisor refused a request; `reason` is OTP's error term.

    For example `("already_started", pid)`, `"already_present"`, `"not_found"`,
    `"running"`, `"restarting"`, `"simple_one_for_one"`.
    """

    def __init__(self, reason: Any) -> None:
        self.reason = reason
        super().__init__(f"supervisor error: {reason!r}")


class HandlerError(OTPError):
    """An event manager (`gen_event`) refused a request about a handler.

    `reason` is OTP's error term: `"bad_module"` (`call` to a handler that
    is not installed), `"module_not_found"` (`delete_handler` of one),
    `("EXIT", crash)` (the handler raised; it was removed), a handler's bad
    return value (it was removed), or the reason its `init` refused with.
    """

    # Added for behaviours.gen_event: OTP returns these as {error, Reason}
    # values; the Python API raises them in the caller instead.
    def __init__(self, reason: Any) -> None:
        self.reason = reason
        super().__init__(f"event handler error: {reason!r}")


class ProtocolError(OTPError):
    """A connection carried bytes that are not a valid frame; it is closed."""


class Exit(BaseException):
    """Raise to end the current process with `reason` (Erlang's `exit(Reason)`).

    ```python
    def worker():
        raise otp.Exit(("shutdown", "done"))
    ```
    Links and monitors see exactly `reason`.
    """

    def __init__(self, reason: Any = "normal") -> None:
        self.reason = reason
        super().__init__(reason)
