"""otp: Erlang/OTP's process model for Python, one OS process per process.

Every process here is an OS process with its own memory: a crash, a leak or a
segfault ends that process only. Processes talk by messages over Unix
sockets, link and monitor each other, trap exits and register names, with
Erlang's semantics; `ps` shows them (`otp: ...` titles) and `kill -9` is a
fault they survive.

```python
import otp

def echo():
    while True:
        match otp.receive():
            case ("ping", sender):
                otp.send(sender, "pong")
            case "stop":
                return

pid = otp.spawn(echo)
otp.send(pid, ("ping", otp.self_pid()))
assert otp.receive(timeout=5) == "pong"
```

The behaviours (GenServer, Supervisor, GenStatem, GenEvent) live in the
`behaviours` package, built on this one.
"""

from __future__ import annotations

from . import application, debug, node, rpc
from ._api import (
    cancel_timer,
    is_process_alive,
    process_info,
    processes,
    register,
    registered,
    self_pid,
    send_after,
    spawn,
    spawn_link,
    spawn_monitor,
    unregister,
    whereis,
)
from ._exceptions import (
    AlreadyStarted,
    BadArg,
    BadReturn,
    CallError,
    CallExit,
    CallTimeout,
    Exit,
    HandlerError,
    NoProc,
    NotPicklable,
    OTPError,
    ProtocolError,
    ReceiveTimeout,
    StartError,
    SupervisorError,
)
from ._runtime import demonitor, exit, link, make_ref, monitor, receive, send, trap_exit, unlink
from ._terms import DOWN, EXIT, Crash, Pid, Ref, TimerRef
from ._trace import trace_id, tracing
from ._upgrade import upgrade

# After _terms and _runtime, which the codec imports (otp.dist: distribution).
from .dist._etf import Atom
from .dist._route import monitor_node, nodes

__all__ = [
    "DOWN",
    "EXIT",
    "AlreadyStarted",
    "Atom",
    "BadArg",
    "BadReturn",
    "CallError",
    "CallExit",
    "CallTimeout",
    "Crash",
    "Exit",
    "HandlerError",
    "NoProc",
    "NotPicklable",
    "OTPError",
    "Pid",
    "ProtocolError",
    "ReceiveTimeout",
    "Ref",
    "StartError",
    "SupervisorError",
    "TimerRef",
    "application",
    "cancel_timer",
    "debug",
    "demonitor",
    "exit",
    "is_process_alive",
    "link",
    "make_ref",
    "monitor",
    "monitor_node",
    "node",
    "nodes",
    "process_info",
    "processes",
    "receive",
    "register",
    "registered",
    "rpc",
    "self_pid",
    "send",
    "send_after",
    "spawn",
    "spawn_link",
    "spawn_monitor",
    "trace_id",
    "tracing",
    "trap_exit",
    "unlink",
    "unregister",
    "upgrade",
    "whereis",
]

for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type):
        try:
            _obj.__module__ = "otp"
        except (AttributeError, TypeError):
            pass
del _name, _obj
