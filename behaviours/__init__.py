"""behaviours: OTP's behaviours on top of the `otp` runtime.

- `GenServer` (`gen_server`): a server process with a state.
- `Supervisor` (`supervisor`): starts, watches and restarts children by OTP's rules.
- `GenStatem` (`gen_statem`): state machines with OTP's event and timeout model.
- `GenEvent` (`gen_event`): an event manager with pluggable handlers.
- `Application` (`application`): a supervision tree with its configuration
  and dependencies, run by `otp.application`.

Each runs in its own OS process; all share one generic layer (start, call,
reply, stop, system messages for `otp.debug`).
"""

from __future__ import annotations

from . import application, gen_event, gen_server, gen_statem, supervisor
from .application import Application
from .gen_event import EventHandler, GenEvent
from .gen_server import GenServer, Ignore, Init, NoReply, Reply, Stop
from .gen_statem import GenStatem
from .supervisor import ChildSpec, Supervisor, SupFlags

__all__ = [
    "Application",
    "ChildSpec",
    "EventHandler",
    "GenEvent",
    "GenServer",
    "GenStatem",
    "Ignore",
    "Init",
    "NoReply",
    "Reply",
    "Stop",
    "SupFlags",
    "Supervisor",
    "application",
    "gen_event",
    "gen_server",
    "gen_statem",
    "supervisor",
]
