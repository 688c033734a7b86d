"""Applications: start, stop and configure whole supervision trees by name.

An *application* (Erlang's, Elixir's) is a component with a supervision tree,
a configuration environment and the applications it depends on. You write
one as a `behaviours.Application` subclass (see that module for the
callbacks); this module runs them, as OTP's `application` module does.

```python
import otp

otp.application.start(Shop, env={"port": 8080})   # its dependencies first
otp.application.get_env("shop", "port")           # 8080, from any process
otp.application.which_applications()              # [("shop", "The shop.", 1), ...]
otp.application.stop(Shop)                        # its tree, then stop(state)
```

## Where things run

Each started application has an *application master*: a process (a
GenServer) that calls the application's `start`, is linked to the top
supervisor it returns, and on stop shuts that supervisor down and calls the
application's `stop(state)`. If the top supervisor ends by itself (too many
restarts), the application has stopped: its `stop(state)` runs too, and an
abnormal end is logged (OTP's *temporary* applications; the rest of the node
goes on).

`start` called from any process starts the application for the whole node:
it is not linked to the caller and outlives it (`Application.start_link`
links it, for a service whose life is the caller's: `otp run` uses it). The
master is registered as `"application_master:<name>"`.

## The environment

`get_env(app, key)` reads the application's environment from any process of
the node, including processes started before the application was: it is
kept in the node's private runtime directory, written atomically by the
master before the application's `start` runs (so the application's own
processes can read it in their `init`). It is the class's `env` dict,
updated by `start(..., env=...)` and `set_env`. For an application that is
not running, `get_env(AppClass, key)` reads the class's `env`, and
`get_env("name", key)` returns `default`.

## Dependencies

`applications = [Other, ...]` on the class: `start` first starts those not
running yet (recursively, in list order), and the application remembers
them. Stopping it stops them after it, in reverse order, unless another
running application needs them too. `stop(Other)` while an application that
depends on it runs stops that one first. So dependencies start first and
stop last.

Applications are identified by name: the class's `name` attribute, or the
class's `__name__`. Each function takes the class or the name (`start` also
takes `"package.module:Class"`).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import os
import pickle
import urllib.parse
from collections.abc import Iterator
from typing import Any

from . import _runtime
from ._exceptions import BadArg, NoProc, StartError
from ._terms import Pid

__all__ = [
    "get_all_env",
    "get_env",
    "set_env",
    "start",
    "stop",
    "which_applications",
]


# ------------------------------------------------------------ identifying


def _resolve(app: Any) -> type:
    """The Application class for `app` (a class or "package.module:Class")."""
    if isinstance(app, type):
        return app
    if isinstance(app, str) and ":" in app:
        modname, _, qualname = app.partition(":")
        obj: Any = importlib.import_module(modname)
        for part in qualname.split("."):
            obj = getattr(obj, part)
        if isinstance(obj, type):
            return obj
    raise BadArg(f"not an Application class or 'package.module:Class': {app!r}")


def app_name(app: Any) -> str:
    """An application's name: its class's `name`, or the class's `__name__`."""
    if isinstance(app, str):
        return app if ":" not in app else app_name(_resolve(app))
    if isinstance(app, type):
        return getattr(app, "name", None) or app.__name__
    raise BadArg(f"not an application: {app!r}")


# ---------------------------------------- the node-wide table, in the rundir
#
# One file per running application, `<rundir>/apps/<name>`: a pickled dict
# (name, env, master, top, requires, auto, description, vsn, started). Every
# process of the node reads it, whenever it was forked. Writes go through a
# temporary file and os.replace, so a reader sees the old entry or the new
# one, never half of one; read-modify-write (set_env) holds a lock.


def _dir() -> str:
    d = f"{_runtime.current().rundir}/apps"
    os.makedirs(d, mode=0o700, exist_ok=True)
    return d


def _path(name: str) -> str:
    return f"{_dir()}/{urllib.parse.quote(name, safe='')}"


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    fd = os.open(f"{_dir()}/.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _read(name: str) -> dict[str, Any] | None:
    """The entry of a running (or starting) application, or None.

    An entry whose master is dead (killed: it could not clean up) is stale:
    it is removed here.
    """
    path = _path(name)
    try:
        with open(path, "rb") as f:
            entry: dict[str, Any] = pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError):
        return None
    master = entry.get("master")
    if type(master) is Pid and not _runtime.is_alive(master):
        with contextlib.suppress(OSError):
            os.unlink(path)
        return None
    return entry


def _write(name: str, entry: dict[str, Any]) -> None:
    path = _path(name)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        pickle.dump(entry, f, protocol=5)
    os.replace(tmp, path)


def create_entry(name: str, entry: dict[str, Any]) -> bool:
    """Write a new application's entry (its master does, before the
    application's start runs); False if it is running already."""
    with _locked():
        if _read(name) is not None:
            return False
        _write(name, entry)
        return True


def update_entry(name: str, **changes: Any) -> None:
    """Change some keys of an entry, keeping the others (set_env may have
    changed the environment meanwhile: the application's own start may)."""
    with _locked():
        entry = _read(name)
        if entry is not None:
            entry.update(changes)
            _write(name, entry)


def remove_entry(name: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(_path(name))


def _entries() -> list[dict[str, Any]]:
    out = []
    for fname in os.listdir(_dir()):
        if fname.startswith(".") or fname.endswith(".tmp"):
            continue
        entry = _read(urllib.parse.unquote(fname))
        if entry is not None:
            out.append(entry)
    return out


# ------------------------------------------------------------------ the API


def start(
    app: Any,
    args: Any = None,
    *,
    env: dict[str, Any] | None = None,
    start_type: str = "normal",
    link: bool = False,
) -> Pid:
    """Start an application (its dependencies first); returns its top supervisor.

    `app` is an Application subclass or `"package.module:Class"`. `args` goes
    to the application's `start(start_type, args)` (default: the class's
    `start_args`). `env` updates the class's `env` for this run. With
    `link=True` the caller is linked to the application's master: the
    application stops when the caller ends (`Application.start_link`).

    Raises:
        otp.StartError: `("already_started", name)`; the application's
            start failed (`.reason`); a dependency failed to start (the
            dependencies this call started are stopped again).
        otp.BadArg: not an application; circular dependencies.
    """
    return _start(_resolve(app), args, env, start_type, link, ())


def _start(
    cls: type,
    args: Any,
    env: dict[str, Any] | None,
    start_type: str,
    link: bool,
    chain: tuple[str, ...],
) -> Pid:
    from behaviours import application as _app

    name = app_name(cls)
    if name in chain:
        raise BadArg(("circular_dependencies", (*chain, name)))
    if _read(name) is not None:
        raise StartError(("already_started", name))
    requires = [_resolve(d) for d in getattr(cls, "applications", ())]
    auto: list[str] = []
    try:
        for dep in requires:
            if _read(app_name(dep)) is None:
                _start(dep, None, None, start_type, False, (*chain, name))
                auto.append(app_name(dep))
        return _app.start_master(
            cls,
            name,
            getattr(cls, "start_args", None) if args is None else args,
            {**getattr(cls, "env", {}), **(env or {})},
            start_type,
            [app_name(d) for d in requires],
            auto,
            link,
        )
    except BaseException:
        for dep_name in reversed(auto):
            with contextlib.suppress(BadArg, NoProc):
                stop(dep_name)
        raise


def stop(app: Any, timeout: float | None = None) -> None:
    """Stop an application: the running applications that depend on it first,
    then its supervision tree and its `stop(state)`, then the dependencies it
    started that no other running application needs.

    Raises otp.BadArg `("not_started", name)` if it is not running.
    """
    from behaviours import gen_server

    name = app_name(app)
    entry = _read(name)
    if entry is None:
        raise BadArg(("not_started", name))
    for other in _entries():
        if name in other.get("requires", ()) and other["name"] != name:
            with contextlib.suppress(BadArg):
                stop(other["name"], timeout)
    try:
        gen_server.stop(entry["master"], "normal", timeout)
    except NoProc:
        pass  # stopped meanwhile (a dependent stopping its dependencies)


def stop_unneeded(names: list[str], timeout: float | None = None) -> None:
    """Stop the applications in `names`, in reverse order, unless another
    running application requires them (a master stopping its dependencies)."""
    for dep in reversed(names):
        if any(dep in e.get("requires", ()) for e in _entries()):
            continue
        with contextlib.suppress(BadArg, NoProc):
            stop(dep, timeout)


def get_env(app: Any, key: str, default: Any = None) -> Any:
    """The value of `key` in the application's environment, or `default`.

    Works from any process of the node. For an application that is not
    running: from the class's `env` if `app` is the class, else `default`.
    """
    env = get_all_env(app)
    return env.get(key, default)


def get_all_env(app: Any) -> dict[str, Any]:
    """The application's whole environment (a copy)."""
    entry = _read(app_name(app))
    if entry is not None:
        return dict(entry["env"])
    if isinstance(app, type) or (isinstance(app, str) and ":" in app):
        return dict(getattr(_resolve(app), "env", {}))
    return {}


def set_env(app: Any, key: str, value: Any) -> None:
    """Set `key` in a running application's environment, for the whole node.

    Raises otp.BadArg `("not_started", name)` if it is not running.
    """
    name = app_name(app)
    with _locked():
        entry = _read(name)
        if entry is None:
            raise BadArg(("not_started", name))
        entry["env"] = {**entry["env"], key: value}
        _write(name, entry)


def which_applications() -> list[tuple[str, str, Any]]:
    """The running applications, newest first: `(name, description, vsn)`.

    The description is the first line of the class's docstring.
    """
    running = [e for e in _entries() if e.get("top") is not None]
    running.sort(key=lambda e: e["started"], reverse=True)
    return [(e["name"], e["description"], e["vsn"]) for e in running]
