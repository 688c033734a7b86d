"""Application: a component with a supervision tree, a configuration and dependencies.

An application is what OTP (and Elixir's Mix) ships and starts as one unit:
its top supervisor and everything below it, its *environment* (the
configuration its processes read), and the applications it needs running
first. You write the callbacks; `otp.application` starts, stops and
configures it.

## Example

```python
import otp
from behaviours import Application, GenServer, Reply, SupFlags, Supervisor


class Greeter(GenServer):
    def init(self):
        # Read in the new process: the environment is node-wide.
        return otp.application.get_env("shop", "greeting", "hello")

    def handle_call(self, name, from_, greeting):
        return Reply(f"{greeting}, {name}", greeting)


class ShopSup(Supervisor):
    def init(self):
        return SupFlags(strategy="one_for_one"), [Greeter.child_spec(id="greeter")]


class Shop(Application):
    \"\"\"The shop.\"\"\"

    name = "shop"                       # default: the class name
    env = {"greeting": "hello"}         # the default environment
    applications = [Database]           # started first, stopped last

    def start(self, start_type, args):
        return ShopSup.start_link(name="shop_sup")   # the top supervisor

    def stop(self, state):
        print("the shop is closed")


otp.application.start(Shop, env={"greeting": "hi"})   # Database first, then Shop
otp.application.get_env("shop", "greeting")            # "hi", from any process
otp.application.stop(Shop)                             # Shop, then Database
```

As a service, from a shell: `otp run shop:Shop` (it calls `Shop.start_link()`;
SIGTERM or Ctrl-C stops the application, then its dependencies).

## Callbacks and what they may return

- `start(start_type, args)`: start the top supervisor *linked to the
  caller* (its `start_link`) and return its Pid, or `(pid, state)` to keep
  a state for `stop`. It runs in the application's master process (see
  `otp.application`). `start_type` is `"normal"`; `args` is what
  `otp.application.start(app, args)` was given, or the class's
  `start_args`. Raising, or returning anything else, makes
  `otp.application.start` raise `otp.StartError` (and nothing keeps
  running).
- `prep_stop(state)`: optional; called before the supervision tree is shut
  down; returns the state for `stop`.
- `stop(state)`: optional; called after the supervision tree has stopped
  (whether the application was stopped or its top supervisor ended by
  itself). Its return value is ignored; an exception in it is logged.

Class attributes:

- `name`: the application's name (default: the class's `__name__`).
- `env`: the default environment, a dict; `otp.application.start(app,
  env={...})` updates it for this run, `otp.application.set_env` later.
- `applications`: the Application classes (or `"package.module:Class"`
  strings) to run first.
- `start_args`: the default `args` for `start`.
- `vsn`: the version (shown by `which_applications`).

## When not to use it

An application is for a deployable unit with its own configuration and
lifecycle. A program with one supervision tree and no configuration needs
no Application: `otp run module:TopSupervisor` runs a supervisor as a
service too.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import otp
from otp import _runtime
from otp import application as _apps
from otp._exceptions import StartError
from otp._log import is_clean_exit, log_warning
from otp._terms import EXIT, Pid

from .gen_server import GenServer, NoReply, Reply, Stop

__all__ = ["Application"]


class Application:
    """Subclass it and write `start`; see the module documentation."""

    #: The application's name; None means the class's `__name__`.
    name: ClassVar[str | None] = None
    #: The default environment (`otp.application.get_env`).
    env: ClassVar[dict[str, Any]] = {}
    #: Applications started before this one and stopped after it.
    applications: ClassVar[list[Any]] = []
    #: The default `args` of `start`.
    start_args: ClassVar[Any] = None
    #: The code version.
    vsn: ClassVar[Any] = 1

    def start(self, start_type: str, args: Any) -> Any:
        """Start the top supervisor (linked) and return its Pid or (pid, state)."""
        raise NotImplementedError(f"{type(self).__name__} must define start()")

    def prep_stop(self, state: Any) -> Any:
        return state

    def stop(self, state: Any) -> Any:
        return None

    @classmethod
    def start_link(
        cls, args: Any = None, *, env: dict[str, Any] | None = None, start_type: str = "normal"
    ) -> Pid:
        """Start the application (dependencies first), linked to the caller,
        and return its top supervisor's Pid.

        The application stops when the caller ends (its master is linked to
        the caller, and runs the whole stop: tree, `stop(state)`, then the
        dependencies this start started). This is what `otp run
        module:MyApp` calls.
        """
        return _apps.start(cls, args, env=env, start_type=start_type, link=True)


# --------------------------------------------------------- the master


def _master_name(name: str) -> str:
    return f"application_master:{name}"


def start_master(
    cls: type[Application],
    name: str,
    args: Any,
    env: dict[str, Any],
    start_type: str,
    requires: list[str],
    auto: list[str],
    link: bool,
) -> Pid:
    """Start the application's master (which runs `cls().start`); returns the
    top supervisor's Pid. `auto`: the dependencies started for it."""
    start = _Master.start_link if link else _Master.start
    try:
        master = start(cls, name, args, env, start_type, requires, auto, name=_master_name(name))
    except otp.AlreadyStarted:
        raise StartError(("already_started", name)) from None
    from . import gen_server

    return gen_server.call(master, "top")  # type: ignore[no-any-return]


class _State:
    __slots__ = ("app", "auto", "name", "state", "top")

    def __init__(self, app: Application, name: str, top: Pid, state: Any, auto: list[str]) -> None:
        self.app = app
        self.name = name
        self.top = top
        self.state = state
        self.auto = auto

    def __repr__(self) -> str:
        return f"<application {self.name} top={self.top}>"


class _Master(GenServer):
    """OTP's application master: starts the application, watches its top
    supervisor, and stops it (tree, then `stop(state)`, then dependencies)."""

    def init(
        self,
        cls: type[Application],
        name: str,
        args: Any,
        env: dict[str, Any],
        start_type: str,
        requires: list[str],
        auto: list[str],
    ) -> Any:
        # Trap exits: the top supervisor's end, and the caller's (start_link)
        # or the node's shutdown signal, are messages to act on.
        otp.trap_exit(True)
        info = _runtime.current().info
        info["application"] = name
        # Where otp.upgrade finds the processes that run a module's code: the
        # master runs the application class's start, prep_stop and stop.
        info["callback_modules"] = [cls.__module__]
        doc = (cls.__doc__ or "").strip()
        entry = {
            "name": name,
            "env": env,
            "master": otp.self_pid(),
            "top": None,  # None while starting: which_applications skips it
            "requires": requires,
            "auto": auto,
            "description": doc.splitlines()[0] if doc else "",
            "vsn": getattr(cls, "vsn", None),
            "module": f"{cls.__module__}:{cls.__qualname__}",
            "started": time.time_ns(),
        }
        # The environment is written before start runs: the application's
        # own processes read it in their init.
        if not _apps.create_entry(name, entry):
            return Stop(("already_started", name))
        app = cls()
        try:
            r = app.start(start_type, args)
        except BaseException as e:
            _apps.remove_entry(name)
            if isinstance(e, otp.Exit):
                return Stop(e.reason)
            raise
        if type(r) is Pid:
            top, state = r, None
        elif type(r) is tuple and len(r) == 2 and type(r[0]) is Pid:
            top, state = r
        else:
            _apps.remove_entry(name)
            return Stop(("bad_return", (cls, "start", r)))
        if top not in _runtime.current().links:
            otp.link(top)  # started without a link: the master must see its end
        _apps.update_entry(name, top=top)
        return _State(app, name, top, state, auto)

    def handle_call(self, request: Any, from_: Any, st: _State) -> Any:
        if request == "top":
            return Reply(st.top, st)
        return Reply(("error", ("unknown_request", request)), st)

    def handle_info(self, msg: Any, st: _State) -> Any:
        if type(msg) is EXIT:
            if msg.pid == st.top:
                # The tree ended by itself (too many restarts...): the
                # application has stopped (OTP's temporary application).
                if not is_clean_exit(msg.reason):
                    log_warning(f"application {st.name} exited: {msg.reason!r}")
                st.top = None  # type: ignore[assignment]
                return Stop(msg.reason, st)
            # The node's shutdown signal (we are not linked to the caller
            # unless started by start_link: then it is our parent, handled
            # before this by the GenServer loop).
            return Stop(msg.reason, st)
        return NoReply(st)

    def _sys_change_code(self, module: str, old_vsn: Any, extra: Any, st: Any) -> tuple[bool, Any]:
        """Hot upgrade of the application's module (otp.upgrade): the
        application object moves to the reloaded class, so its prep_stop and
        stop run the new code. Its state is kept as it is (OTP's applications
        have no code_change either). Called by the GenServer loop's hook."""
        from otp import _upgrade

        if not isinstance(st, _State) or not _upgrade.uses(st.app, module):
            return False, st
        _upgrade.change_callbacks(module, [st.app], old_vsn, lambda _i, _vsn: None)
        return True, st

    def terminate(self, reason: Any, st: Any) -> None:
        if not isinstance(st, _State):
            return
        try:
            state = st.app.prep_stop(st.state)
        except Exception as e:
            log_warning(f"application {st.name}: prep_stop raised {e!r}")
            state = st.state
        if st.top is not None and otp.is_process_alive(st.top):
            _shutdown(st.top)
        try:
            st.app.stop(state)
        except Exception as e:
            log_warning(f"application {st.name}: stop raised {e!r}")
        # Gone from the table before the dependencies stop: they check that
        # no running application needs them any more.
        _apps.remove_entry(st.name)
        _apps.stop_unneeded(st.auto)


def _shutdown(top: Pid) -> None:
    """Stop the top supervisor as its own supervisor would: "shutdown", and
    wait (a supervisor's shutdown is "infinity": it stops its own children
    in bounded time)."""
    otp.unlink(top)
    mon = otp.monitor(top)
    otp.exit(top, "shutdown")
    otp.receive(lambda m: type(m) is otp.DOWN and m.ref == mon)
    # A late EXIT from the link is not expected (unlinked before the exit),
    # but one sent before the unlink may be queued: drop it.
    p = _runtime.current()
    for i, m in enumerate(p.mailbox):
        if type(m) is EXIT and m.pid == top:
            del p.mailbox[i]
            break
