"""Supervisor: starts children, watches them, restarts them by OTP's rules.

A supervisor is a process whose only job is to keep other processes (its
*children*) running. It starts them in a given order, learns of each death
from the OS (a child is a forked OS process whose parent is the supervisor,
so `pstree` shows the supervision tree), restarts what must be restarted,
and stops everything in reverse order when it stops. Supervisors nest: a
child may be a supervisor, and a supervisor that gives up (too many restarts)
ends with `"shutdown"`, which its own supervisor then handles.

This module is OTP's `supervisor.erl`, rule for rule: same strategies, same
restart types, same restart-intensity window, same shutdown protocol, same
error terms. Like OTP's, the supervisor is a GenServer underneath.

## Example

```python
from behaviours import ChildSpec, GenServer, Reply, SupFlags, Supervisor, supervisor

class Counter(GenServer):
    def init(self, start=0):
        return start
    def handle_call(self, request, from_, state):
        return Reply(state, state + 1)

class AppSup(Supervisor):
    def init(self, first):
        return SupFlags(strategy="one_for_one", intensity=3, period=5), [
            Counter.child_spec(first, id="counter"),
            ChildSpec(id="other", start=(Counter.start_link, (100,), {})),
        ]

sup = AppSup.start_link(0, name="app")      # blocks until every child started
supervisor.which_children(sup)              # [("other", <0.x.y>, ...), ("counter", ...)]
```

Without a subclass, as Elixir's `Supervisor.start_link/2`:

```python
sup = supervisor.start_link([Counter.child_spec(0, id="c")], strategy="one_for_one")
```

## The callback: `init(*args, **kwargs)`

Runs in the new supervisor process (which already traps exits). Returns
either:

- `(SupFlags(...), [ChildSpec(...), ...])`: the flags and the children,
  started left to right, each start returning before the next one is called.
  A `ChildSpec` may also be given as a dict with the same keys (OTP's map
  form); a `dict` may stand for the flags too.
- `Ignore()`: do not start; `start_link` returns None.

Anything else makes `start_link` raise `otp.StartError(("bad_return",
(cls, "init", value)))`.

## Flags (`SupFlags`)

- `strategy`:
  - `"one_for_one"` (default): only the child that died is restarted.
  - `"one_for_all"`: every other child is stopped (in reverse start order),
    then all are started again (in start order).
  - `"rest_for_one"`: the children started after the one that died are
    stopped (reverse order), then it and they are started again.
  - `"simple_one_for_one"`: exactly one spec, a template; children are added
    at run time with `start_child(sup, extra_args)`, all alike, and are
    stopped in parallel when the supervisor stops.
- `intensity` (default 1) and `period` (default 5): integers. If more than
  `intensity` restarts happen within `period` seconds (whole seconds of
  monotonic time, over the whole supervisor), the supervisor stops every
  child and exits with `"shutdown"`.
- `auto_shutdown`: `"never"` (default), `"any_significant"` or
  `"all_significant"`: shut the supervisor down (reason `"shutdown"`) when
  any / the last *significant* child ends by itself and is not restarted.

## Child specs (`ChildSpec`)

- `id`: any hashable value, unique among the supervisor's children.
- `start`: `(callable, args, kwargs)` or a zero-argument callable. It runs
  *in the supervisor's process*, must start the child linked to the caller
  and return its Pid (`MyServer.start_link` does), or None to be ignored.
  Raising `otp.StartError(reason)` (what a failing `start_link` raises)
  reports `reason`; any other exception reports an `otp.Crash`.
- `restart`: `"permanent"` (default: always restarted), `"transient"`
  (restarted unless it ended with `"normal"`, `"shutdown"` or
  `("shutdown", x)`), `"temporary"` (never restarted; its spec is forgotten
  as soon as it ends, however it ends).
- `shutdown`: how the child is stopped. Seconds (default 5.0 for a worker):
  the supervisor sends the exit signal `"shutdown"` and waits that long for
  the child to end, then SIGKILLs it. `"brutal_kill"`: SIGKILL at once.
  `"infinity"` (the default for `type="supervisor"`): wait as long as it
  takes, so a child supervisor can stop its own subtree. A child runs its
  own cleanup (`terminate`) only if it traps exits.
- `type`: `"worker"` (default) or `"supervisor"`.
- `significant`: see `auto_shutdown`; only for transient or temporary
  children.
- `modules`: the callback classes the child runs (for upgrades); derived
  from `start` when left None.
- `node`: start the child on another node (`"name@host"`, a Python node of
  this library) instead of this one. `start` then runs *there*, in a helper
  process, so it must be a function (or class method) of a module both nodes
  can import, and its arguments must be terms (otp.dist's mapping: ints,
  strs, tuples, lists, dicts...). The supervisor links to the child it
  started; the child is supervised as a local one: restarted when it dies
  (`kill -9` included) or when the node is lost (reason `"noconnection"`;
  a restart while the node is still unreachable fails, and counts toward
  the intensity), and stopped through exit signals (`"shutdown"`, then
  `"kill"`), since the supervisor is not its OS parent. A remote child's
  parent is the helper, not the supervisor: one that traps exits gets the
  supervisor's `"shutdown"` as an `EXIT` message, and is killed when its
  `shutdown` time is up. A plain process on any node (erl too) needs no
  `node`: `start=(otp.spawn_link, ("module:function", *args), {"node": n})`.

`GenServer.child_spec(*args, **opts)` and `Supervisor.child_spec(*args,
**opts)` build specs for `start_link(*args)` (the latter with
`type="supervisor"`, `shutdown="infinity"`).

## The API (any process may call it; calls wait as long as it takes)

- `which_children(sup)`: `[(id, pid | None | "restarting", type, modules)]`,
  the most recently started first (`id` is None under simple_one_for_one).
- `count_children(sup)`: `{"specs", "active", "supervisors", "workers"}`.
- `start_child(sup, spec)` (or `start_child(sup, extra_args)` under
  simple_one_for_one): the new child's Pid, or None if its start ignored.
- `terminate_child(sup, id_or_pid)`, `restart_child(sup, id)` (-> Pid),
  `delete_child(sup, id)`, `get_childspec(sup, id_or_pid)` (-> ChildSpec),
  `check_childspecs(specs)` (local; raises on the first bad spec).

Refusals raise `otp.SupervisorError(reason)` with OTP's reason terms:
`"not_found"`, `"running"`, `"restarting"`, `"already_present"`,
`("already_started", pid)`, `"simple_one_for_one"`, a spec error such as
`("invalid_restart_type", x)`, or `(reason, spec)` when a start failed. A
supervisor that does not exist raises `otp.NoProc`.

A child that fails to start while the supervisor starts makes `start_link`
raise `otp.StartError(("shutdown", ("failed_to_start_child", id, reason)))`,
after the children already started were stopped in reverse order. Bad flags
raise `StartError(("supervisor_data", err))`, bad specs
`StartError(("start_spec", err))`.

## Restarts that fail

If a restart's start fails, the child shows as `"restarting"` and the
supervisor tries again through a message to itself, so it keeps answering
calls (and can be stopped) between attempts. Every attempt counts against
the intensity, so a child that cannot start soon takes the supervisor down.

## Reports

Each of `child_terminated`, `start_error`, `shutdown_error` and
`reached_max_restart_intensity` is logged once, as a SUPERVISOR REPORT
through loguru, naming the supervisor, the child's id, Pid and OS pid, and
the reason. `otp.process_info(sup)` shows `behaviour="Supervisor"`, the
total `restarts` and `child_restarts` (current child Pid -> times its slot
was restarted); `otp.debug.get_status(sup)` lists the children with their
restart counts.

## When not to use a supervisor

A supervisor restarts processes; it cannot make a process that crashes on
its input succeed. Restarting helps with transient faults (a lost
connection, a corrupt state, a leak). Do not put a long computation or I/O
in a start function: it runs in the supervisor, which serves nothing else
meanwhile. And a child that must not lose its state on a crash needs that
state kept elsewhere: a restart begins from `init`.
"""

from __future__ import annotations

import copy
import os
import time
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import otp
from otp import _runtime, _upgrade
from otp._exceptions import Exit, ReceiveTimeout, StartError, SupervisorError
from otp._log import is_clean_exit, logger
from otp._terms import DOWN, EXIT, Crash, Pid, Ref

from . import _gen, gen_server
from .gen_server import GenServer, Ignore, NoReply, Reply, Stop

__all__ = [
    "ChildSpec",
    "SupFlags",
    "Supervisor",
    "check_childspecs",
    "count_children",
    "delete_child",
    "get_childspec",
    "restart_child",
    "start_child",
    "start_link",
    "terminate_child",
    "which_children",
]

_STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one", "simple_one_for_one")
_RESTARTS = ("permanent", "transient", "temporary")
_AUTO_SHUTDOWN = ("never", "any_significant", "all_significant")
_TYPES = ("worker", "supervisor")


# ------------------------------------------------------------ public values


@dataclass
class SupFlags:
    """A supervisor's flags (OTP's `sup_flags()` map); see the module docs."""

    strategy: str = "one_for_one"
    intensity: int = 1
    period: int = 5
    auto_shutdown: str = "never"


@dataclass
class ChildSpec:
    """How to start, restart and stop one child; see the module docs.

    `shutdown=None` means the default by type: 5.0 seconds for a worker,
    `"infinity"` for a supervisor. Nothing is checked here: the supervisor
    checks a spec when it gets it and refuses a bad one with OTP's error
    term (`check_childspecs` does the same check locally).
    """

    id: Any
    start: Any
    restart: str = "permanent"
    shutdown: float | str | None = None
    type: str = "worker"
    significant: bool = False
    modules: Any = None
    node: str | None = None

    def __post_init__(self) -> None:
        if self.shutdown is None:
            self.shutdown = "infinity" if self.type == "supervisor" else 5.0


class Supervisor:
    """Subclass it and write `init`; see the module documentation."""

    #: The code version, for upgrades.
    vsn: ClassVar[Any] = 1

    def init(self, *args: Any, **kwargs: Any) -> Any:
        """Return `(SupFlags(...), [ChildSpec(...), ...])` or `Ignore()`."""
        raise NotImplementedError(f"{type(self).__name__} must define init()")

    @classmethod
    def start_link(cls, *args: Any, name: str | None = None, **kwargs: Any) -> Pid | None:
        """Start the supervisor linked to the caller, and every child.

        Blocks until init returned and every child started. `name` registers
        the supervisor (before init runs); the other arguments go to `init`.
        Returns the Pid, or None if init returned `Ignore()`.

        Raises:
            otp.AlreadyStarted: the name is taken.
            otp.StartError: init failed, returned a bad value, or a child
                failed to start (see the module docs for the reasons).
        """
        return _start(cls, args, kwargs, name, f"{name or cls.__name__} Supervisor")

    @classmethod
    def child_spec(cls, *args: Any, **opts: Any) -> ChildSpec:
        """A ChildSpec starting `cls.start_link(*args)` as a child supervisor.

        Keywords `id` (default: the class name), `restart`, `shutdown`
        (default `"infinity"`), `type` (default `"supervisor"`),
        `significant`, `modules` go to the spec; the rest to `init`.
        """
        opts.setdefault("type", "supervisor")
        return _gen.child_spec(cls, args, {}, **opts)  # type: ignore[no-any-return]


# --------------------------------------------------------------------- API


def start_link(
    children: Iterable[Any] | type[Supervisor],
    *args: Any,
    strategy: str = "one_for_one",
    intensity: int = 1,
    period: int = 5,
    auto_shutdown: str = "never",
    name: str | None = None,
    **kwargs: Any,
) -> Pid | None:
    """Start a supervisor of `children` (a list of specs) without a subclass.

    `supervisor.start_link(MySup, *args, name=...)` is also accepted, as
    OTP's `supervisor:start_link(Mod, Args)`: it is `MySup.start_link(...)`.
    The errors are those of `Supervisor.start_link`.
    """
    if isinstance(children, type) and issubclass(children, Supervisor):
        return _start(children, args, kwargs, name, f"{name or children.__name__} Supervisor")
    flags = SupFlags(strategy, intensity, period, auto_shutdown)
    return _start(
        _StaticSupervisor,
        (flags, list(children)),
        {},
        name,
        f"{name} Supervisor" if name else "Supervisor",
    )


def which_children(sup: Any) -> list[tuple[Any, Any, str, Any]]:
    """`[(id, pid | None | "restarting", type, modules)]`, most recently started first."""
    return _call(sup, ("which_children",))  # type: ignore[no-any-return]


def count_children(sup: Any) -> dict[str, int]:
    """`{"specs": n, "active": n, "supervisors": n, "workers": n}`.

    `active` counts the children alive now; `supervisors` and `workers`
    count specs (or, under simple_one_for_one, children) by type.
    """
    return _call(sup, ("count_children",))  # type: ignore[no-any-return]


def start_child(sup: Any, spec_or_args: Any = ()) -> Pid | None:
    """Add and start a child; returns its Pid (None if its start ignored).

    For simple_one_for_one, `spec_or_args` is a tuple or list of extra
    positional arguments appended to the template's args. Otherwise it is a
    ChildSpec (or a dict with its keys); the child becomes the most
    recently started one.

    Raises:
        otp.SupervisorError: `("already_started", pid)`, `"already_present"`
            (the id exists, not running), a spec error term, or
            `(reason, spec)` when the start failed (`reason` alone under
            simple_one_for_one).
    """
    return _call(sup, ("start_child", spec_or_args))  # type: ignore[no-any-return]


def terminate_child(sup: Any, id_or_pid: Any) -> None:
    """Stop a child by its shutdown rule; its spec is kept (unless temporary).

    Under simple_one_for_one, pass the child's Pid (a dead Pid is fine).

    Raises:
        otp.SupervisorError: `"not_found"`, or `"simple_one_for_one"` for an
            id given to a simple_one_for_one supervisor.
    """
    _call(sup, ("terminate_child", id_or_pid))


def restart_child(sup: Any, child_id: Any) -> Pid | None:
    """Start again a child whose process is not running (after terminate_child).

    Raises:
        otp.SupervisorError: `"running"`, `"restarting"`, `"not_found"`,
            `"simple_one_for_one"`, or the start's failure reason.
    """
    return _call(sup, ("restart_child", child_id))  # type: ignore[no-any-return]


def delete_child(sup: Any, child_id: Any) -> None:
    """Forget the spec of a child that is not running.

    Raises:
        otp.SupervisorError: `"running"`, `"restarting"`, `"not_found"` or
            `"simple_one_for_one"`.
    """
    _call(sup, ("delete_child", child_id))


def get_childspec(sup: Any, id_or_pid: Any) -> ChildSpec:
    """The child's spec with every field filled in.

    Raises:
        otp.SupervisorError: `"not_found"`.
    """
    return _call(sup, ("get_childspec", id_or_pid))  # type: ignore[no-any-return]


def check_childspecs(specs: Any, auto_shutdown: str | None = None) -> None:
    """Check specs without a supervisor; returns None if they are all valid.

    With `auto_shutdown`, also check `significant` against it (as a
    supervisor with that flag would).

    Raises:
        otp.SupervisorError: the first error term, e.g.
            `("invalid_restart_type", "sometimes")`,
            `("duplicate_child_name", id)`, or `("badarg", x)` for an
            argument that is not a list.
    """
    if not isinstance(specs, (list, tuple)):
        raise SupervisorError(("badarg", specs))
    if auto_shutdown is not None and auto_shutdown not in _AUTO_SHUTDOWN:
        raise SupervisorError(("badarg", auto_shutdown))
    try:
        _check_startspec(specs, auto_shutdown)
    except _SpecError as e:
        raise SupervisorError(e.term) from None


def _call(sup: Any, request: tuple[Any, ...]) -> Any:
    # OTP: gen_server:call(Sup, Req, infinity). A start function may take as
    # long as it takes; the caller waits for the supervisor, not a clock.
    status, value = _gen.call(sup, request, None)
    if status == "error":
        raise SupervisorError(value)
    return value


def _start(
    cls: type[Supervisor],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    name: str | None,
    title: str,
) -> Pid | None:
    # The supervisor process runs gen_server's init_it with _SupervisorServer
    # as its callback class: one loop, one set of semantics, as OTP's
    # supervisor is a gen_server callback module.
    return _gen.start(
        gen_server._init_it,
        (_SupervisorServer, (cls, args, kwargs, name), {}),
        name=name,
        link=True,
        timeout=None,
        title=title,
    )


class _StaticSupervisor(Supervisor):
    """The callback class behind the function form of `start_link`."""

    def init(self, flags: SupFlags, children: list[Any]) -> Any:
        return flags, children


def _module_name(module: type[Supervisor]) -> str:
    return "Supervisor" if module is _StaticSupervisor else module.__qualname__


# ------------------------------------------------------------- validation


class _SpecError(Exception):
    """Carries an OTP error term out of the checks (OTP throws it)."""

    def __init__(self, term: Any) -> None:
        super().__init__(term)
        self.term = term


class _Restarting:
    """The pid slot of a child whose restart failed (OTP's `{restarting, Old}`).

    Equal by the old Pid: the try-again message carries it through a pickle
    round trip, and must still find the same entry.
    """

    __slots__ = ("old",)

    def __init__(self, old: Pid | None) -> None:
        self.old = old

    def __eq__(self, other: object) -> bool:
        return type(other) is _Restarting and other.old == self.old

    def __hash__(self) -> int:
        return hash(("restarting", self.old))

    def __repr__(self) -> str:
        return "restarting"


class _Child:
    """A checked spec plus what the supervisor knows of its process."""

    __slots__ = (
        "args",
        "fn",
        "id",
        "kwargs",
        "modules",
        "node",
        "pid",
        "restart",
        "restarts",
        "shutdown",
        "significant",
        "start",
        "type",
    )

    def __init__(
        self,
        cid: Any,
        start: Any,
        restart: str,
        shutdown: Any,
        ctype: str,
        significant: bool,
        modules: Any,
        node: str | None = None,
    ) -> None:
        self.id = cid
        self.start = start
        self.fn: Callable[..., Any]
        self.args: tuple[Any, ...]
        self.kwargs: dict[str, Any]
        if callable(start):
            self.fn, self.args, self.kwargs = start, (), {}
        else:
            self.fn, self.args, self.kwargs = start[0], tuple(start[1]), dict(start[2])
        self.node = node
        if node is not None:
            self.fn = _OnNode(node, self.fn)  # every start of this child runs there
        self.restart = restart
        self.shutdown = shutdown
        self.type = ctype
        self.significant = significant
        self.modules = modules
        self.pid: Pid | _Restarting | None = None
        self.restarts = 0

    def spec(self) -> ChildSpec:
        return ChildSpec(
            self.id,
            self.start,
            self.restart,
            self.shutdown,
            self.type,
            self.significant,
            self.modules,
            self.node,
        )

    def __repr__(self) -> str:
        return f"<child {self.id!r} {self.pid!r}>"


class _OnNode:
    """The start function of a spec with `node`: runs the spec's own start
    on that node and links the supervisor to the child (otp.dist._route's
    start_on). Called as any start function, in the supervisor's process."""

    __slots__ = ("fn", "node")

    def __init__(self, node: str, fn: Callable[..., Any]) -> None:
        self.node = node
        self.fn = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Pid | None:
        from otp.dist import _route

        return _route.start_on(self.node, self.fn, args, kwargs)

    def __repr__(self) -> str:
        return f"{_fn_name(self.fn)} on {self.node}"


def _code_module(obj: Any) -> str | None:
    """The module whose code a start function, class or function is."""
    if isinstance(obj, types.MethodType):
        obj = obj.__self__ if isinstance(obj.__self__, type) else obj.__func__
    if isinstance(obj, (type, types.FunctionType)):
        m = getattr(obj, "__module__", None)
        return m if isinstance(m, str) else None
    return None


def _code_modules(st: _State) -> list[str]:
    """The modules this supervisor runs code from (its callback module, its
    children's start functions, classes in their arguments, `modules`):
    what otp.upgrade looks for. The library's own modules are left out."""
    found = {_code_module(st.module)}
    for c in st.children.values():
        mods = c.modules if isinstance(c.modules, list) else []
        for obj in (c.fn, *c.args, *c.kwargs.values(), *mods):
            found.add(_code_module(obj))
    return sorted(
        m for m in found if m and not m.startswith(("otp.", "behaviours.")) and m != "otp"
    )


def _rebound(c: _Child, reload: Any) -> _Child:
    """A copy of `c` whose start function, arguments and modules are the
    reloaded module's namesakes (the same process and restart count)."""
    fn = reload.new_object(c.fn)
    args = tuple(reload.new_object(a) for a in c.args)
    kwargs = {k: reload.new_object(v) for k, v in c.kwargs.items()}
    start = (fn, args, kwargs) if type(c.start) is tuple else fn
    mods = c.modules
    if isinstance(mods, list):
        mods = [reload.new_object(m) for m in mods]
    n = _Child(c.id, start, c.restart, c.shutdown, c.type, c.significant, mods)
    n.pid, n.restarts = c.pid, c.restarts
    return n


def _check_flags(flags: Any) -> tuple[str, int, int, str]:
    if isinstance(flags, SupFlags):
        s, i, p, a = flags.strategy, flags.intensity, flags.period, flags.auto_shutdown
    elif isinstance(flags, dict):
        d = SupFlags()
        s = flags.get("strategy", d.strategy)
        i = flags.get("intensity", d.intensity)
        p = flags.get("period", d.period)
        a = flags.get("auto_shutdown", d.auto_shutdown)
    elif isinstance(flags, tuple) and len(flags) == 3:
        (s, i, p), a = flags, "never"  # OTP's legacy {Strategy, Intensity, Period}
    else:
        raise _SpecError(("invalid_type", flags))
    if s not in _STRATEGIES:
        raise _SpecError(("invalid_strategy", s))
    # bool is an int in Python, not in Erlang: True is not an intensity.
    if type(i) is not int or i < 0:
        raise _SpecError(("invalid_intensity", i))
    if type(p) is not int or p <= 0:
        raise _SpecError(("invalid_period", p))
    if a not in _AUTO_SHUTDOWN:
        raise _SpecError(("invalid_auto_shutdown", a))
    return s, i, p, a


def _default_modules(start: Any) -> list[Any]:
    fn = start if callable(start) else start[0]
    owner = getattr(fn, "__self__", None)
    return [owner] if isinstance(owner, type) else [fn]


def _check_childspec(spec: Any, auto_shutdown: str | None) -> _Child:
    """OTP's check_childspec, in its order: id, start, restart, significant,
    type, shutdown, modules. Raises _SpecError(term)."""
    if isinstance(spec, ChildSpec):
        d: dict[str, Any] = {
            "id": spec.id,
            "start": spec.start,
            "restart": spec.restart,
            "shutdown": spec.shutdown,
            "type": spec.type,
            "significant": spec.significant,
            "modules": spec.modules,
            "node": spec.node,
        }
    elif isinstance(spec, dict):
        if "id" not in spec:
            raise _SpecError("missing_id")
        if "start" not in spec:
            raise _SpecError("missing_start")
        d = dict(spec)
    else:
        raise _SpecError(("invalid_child_spec", spec))
    cid = d["id"]
    try:
        hash(cid)
    except TypeError:
        raise _SpecError(("invalid_child_spec", spec)) from None
    start = d["start"]
    if not callable(start) and not (
        type(start) is tuple
        and len(start) == 3
        and callable(start[0])
        and isinstance(start[1], (tuple, list))
        and isinstance(start[2], dict)
    ):
        raise _SpecError(("invalid_mfa", start))
    restart = d.get("restart", "permanent")
    if restart not in _RESTARTS:
        raise _SpecError(("invalid_restart_type", restart))
    significant = d.get("significant", False)
    if significant is True and auto_shutdown == "never":
        raise _SpecError(("bad_combination", [("auto_shutdown", "never"), ("significant", True)]))
    if significant is True and restart == "permanent":
        raise _SpecError(("bad_combination", [("restart", "permanent"), ("significant", True)]))
    if type(significant) is not bool:
        raise _SpecError(("invalid_significant", significant))
    ctype = d.get("type", "worker")
    if ctype not in _TYPES:
        raise _SpecError(("invalid_child_type", ctype))
    shutdown = d.get("shutdown")
    if shutdown is None:
        shutdown = "infinity" if ctype == "supervisor" else 5.0
    if not (
        shutdown in ("brutal_kill", "infinity")
        or ((type(shutdown) is int or type(shutdown) is float) and shutdown >= 0)
    ):
        raise _SpecError(("invalid_shutdown", shutdown))
    modules = d.get("modules")
    if modules is None:
        modules = _default_modules(start)
    elif modules != "dynamic" and not isinstance(modules, list):
        raise _SpecError(("invalid_modules", modules))
    node = d.get("node")
    if node is not None and not (isinstance(node, str) and "@" in node):
        raise _SpecError(("invalid_node", node))
    return _Child(cid, start, restart, shutdown, ctype, significant, modules, node)


def _check_startspec(specs: Iterable[Any], auto_shutdown: str | None) -> list[_Child]:
    children: list[_Child] = []
    seen: set[Any] = set()
    for spec in specs:
        c = _check_childspec(spec, auto_shutdown)
        if c.id in seen:
            # OTP's name for it, kept for compatibility (it means the id).
            raise _SpecError(("duplicate_child_name", c.id))
        seen.add(c.id)
        children.append(c)
    return children


def _start_reason(exc: BaseException) -> Any:
    if isinstance(exc, (StartError, Exit)):
        return exc.reason
    return Crash.from_exception(exc)


def _run_start(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[bool, Any]:
    """OTP's do_start_child_i: (True, Pid | None) or (False, reason).

    Like OTP's `catch apply(M, F, A)`, everything the start raises is caught:
    a failing start is data, never the supervisor's own crash.
    """
    try:
        r = fn(*args, **kwargs)
    except BaseException as e:
        return False, _start_reason(e)
    if r is None or type(r) is Pid:
        return True, r
    return False, r  # OTP: any other value X is {error, X}


# ------------------------------------------------------------------- state


class _State:
    """The supervisor's GenServer state (OTP's #state record)."""

    def __init__(
        self,
        name: str | None,
        module: type[Supervisor],
        args: Any,
        strategy: str,
        intensity: int,
        period: int,
        auto_shutdown: str,
    ) -> None:
        self.name = name
        self.module = module
        self.args = args
        self.strategy = strategy
        self.intensity = intensity
        self.period = period
        self.auto_shutdown = auto_shutdown
        # Ids in *start* order (OTP keeps them reversed): stop iterates it
        # backwards, start forwards, which_children shows it reversed.
        self.ids: list[Any] = []
        self.children: dict[Any, _Child] = {}
        self.restarts: list[int] = []  # timestamps inside the window, newest first
        self.total_restarts = 0
        # simple_one_for_one: Pid (or _Restarting) -> the args it was started with.
        self.dyn: dict[Any, tuple[Any, ...]] = {}
        self.dyn_restarting = 0
        self.dyn_counts: dict[Any, int] = {}  # restarts per dynamic slot (non-zero only)

    @property
    def simple(self) -> bool:
        return self.strategy == "simple_one_for_one"

    def template(self) -> _Child:
        return self.children[self.ids[0]]

    def label(self) -> str:
        return self.name or _module_name(self.module)

    def __repr__(self) -> str:
        n = len(self.dyn) if self.simple else len(self.ids)
        return f"<supervisor state {self.label()} {self.strategy} children={n}>"


# ------------------------------------------------------ the server process


class _SupervisorServer(GenServer):
    """The supervisor process: supervisor.erl's gen_server callbacks."""

    def __init__(self) -> None:
        self._reports: list[str] = []

    # Reports are written when a callback is done, not where they arise: a
    # child_terminated report is logged after the restart it announces, so
    # logging is off the restart's critical path (OTP's logger is
    # asynchronous too). Each is still logged exactly once, in order.

    def init(self, *args: Any) -> Any:
        try:
            return self._init(*args)
        finally:
            self._flush_reports()

    def handle_call(self, request: Any, from_: Any, st: _State) -> Any:
        try:
            return self._handle_call(request, st)
        finally:
            self._flush_reports()

    def handle_cast(self, msg: Any, st: _State) -> Any:
        try:
            return self._handle_cast(msg, st)
        finally:
            self._flush_reports()

    def handle_info(self, msg: Any, st: _State) -> Any:
        try:
            return self._handle_info(msg, st)
        finally:
            self._flush_reports()

    def terminate(self, reason: Any, st: Any) -> None:
        try:
            self._terminate(st)
        finally:
            self._flush_reports()

    def _flush_reports(self) -> None:
        reports, self._reports = self._reports, []
        if reports:
            log = logger.bind(otp_pid=str(otp.self_pid()), os_pid=os.getpid())
            for text in reports:
                log.error(text)

    # ---- init

    def _init(
        self,
        module: type[Supervisor],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        name: str | None,
    ) -> Any:
        # Trap exits before the user's init runs (as OTP): a child linked
        # during init must not take the supervisor down with it.
        otp.trap_exit(True)
        info = _runtime.current().info
        info["behaviour"] = "Supervisor"
        info["module"] = _module_name(module)
        info["restarts"] = 0
        info["child_restarts"] = {}
        # Started after a hot upgrade of its module: the new code, even if
        # forked from a process holding the old copy (otp/_upgrade.py).
        module = _upgrade.current(module)
        r = module().init(*args, **kwargs)
        if type(r) is Ignore:
            return r
        if not (type(r) is tuple and len(r) == 2 and isinstance(r[1], (list, tuple))):
            return Stop(("bad_return", (module, "init", r)))
        try:
            strategy, intensity, period, auto_shutdown = _check_flags(r[0])
        except _SpecError as e:
            return Stop(("supervisor_data", e.term))
        st = _State(name, module, args, strategy, intensity, period, auto_shutdown)
        st.kwargs = kwargs  # type: ignore[attr-defined]  # init runs again on an upgrade
        if st.simple:
            if len(r[1]) != 1:
                return Stop(("bad_start_spec", list(r[1])))
            try:
                (template,) = _check_startspec(r[1], auto_shutdown)
            except _SpecError as e:
                return Stop(("start_spec", e.term))
            st.ids = [template.id]
            st.children = {template.id: template}
            info["callback_modules"] = _code_modules(st)  # for otp.upgrade
            return st
        try:
            children = _check_startspec(r[1], auto_shutdown)
        except _SpecError as e:
            return Stop(("start_spec", e.term))
        st.ids = [c.id for c in children]
        st.children = {c.id: c for c in children}
        failed = self._start_children(list(st.ids), st)
        if failed is not None:
            # The ones already started stop in reverse start order, before
            # start_link hears of the failure.
            self._terminate_children(list(st.ids), st)
            return Stop(("shutdown", failed))
        info["callback_modules"] = _code_modules(st)  # for otp.upgrade
        return st

    # ---- the API, served one call at a time

    def _handle_call(self, request: Any, st: _State) -> Any:
        op = request[0] if type(request) is tuple and request else None
        try:
            if op == "which_children":
                value: Any = self._which_children(st)
            elif op == "count_children":
                value = self._count_children(st)
            elif op == "start_child":
                value = self._api_start_child(request[1], st)
            elif op == "terminate_child":
                self._api_terminate_child(request[1], st)
                value = None
            elif op == "restart_child":
                value = self._api_restart_child(request[1], st)
            elif op == "delete_child":
                self._api_delete_child(request[1], st)
                value = None
            elif op == "get_childspec":
                value = self._api_get_childspec(request[1], st)
            else:
                return Stop(("bad_call", request), st)
        except _SpecError as e:
            return Reply(("error", e.term), st)
        if op not in ("which_children", "count_children", "get_childspec"):
            self._publish(st)
        return Reply(("ok", value), st)

    def _find(self, cid: Any, st: _State) -> _Child | None:
        try:
            return st.children.get(cid)
        except TypeError:  # an unhashable id is nobody's id
            return None

    def _api_start_child(self, arg: Any, st: _State) -> Pid | None:
        if st.simple:
            if not isinstance(arg, (tuple, list)):
                raise _SpecError(("badarg", arg))
            t = st.template()
            args = (*t.args, *arg)
            ok, res = _run_start(t.fn, args, t.kwargs)
            if not ok:
                raise _SpecError(res)
            if res is not None:
                st.dyn[res] = args
            return res  # type: ignore[no-any-return]
        c = _check_childspec(arg, st.auto_shutdown)
        old = self._find(c.id, st)
        if old is not None:
            if type(old.pid) is Pid:
                raise _SpecError(("already_started", old.pid))
            raise _SpecError("already_present")
        ok, res = _run_start(c.fn, c.args, c.kwargs)
        if not ok:
            if type(res) is tuple and len(res) == 2 and res[0] == "already_started":
                raise _SpecError(res)  # unwrapped, as the latest OTP
            raise _SpecError((res, c.spec()))
        if res is None and c.restart == "temporary":
            return None  # an ignored temporary child is not kept
        c.pid = res
        st.ids.append(c.id)  # the most recently started child
        st.children[c.id] = c
        return res  # type: ignore[no-any-return]

    def _api_terminate_child(self, arg: Any, st: _State) -> None:
        if st.simple:
            if type(arg) is not Pid:
                raise _SpecError("simple_one_for_one")
            if arg in st.dyn:
                self._do_terminate(st.template(), arg, st)
                self._dyn_erase(arg, st)
            elif _Restarting(arg) in st.dyn:
                self._dyn_erase(_Restarting(arg), st)
            elif _runtime.is_alive(arg):
                raise _SpecError("not_found")  # alive, but not ours: left alone
            return
        c = self._find(arg, st)
        if c is None:
            raise _SpecError("not_found")
        if type(c.pid) is Pid:
            self._do_terminate(c, c.pid, st)
        self._del_child(c, st)

    def _stopped_child(self, cid: Any, st: _State) -> _Child:
        """The child `cid` if its process is not running, else OTP's error
        term (restart_child and delete_child refuse the same cases)."""
        if st.simple:
            raise _SpecError("simple_one_for_one")
        c = self._find(cid, st)
        if c is None:
            raise _SpecError("not_found")
        if type(c.pid) is _Restarting:
            raise _SpecError("restarting")
        if c.pid is not None:
            raise _SpecError("running")
        return c

    def _api_restart_child(self, cid: Any, st: _State) -> Pid | None:
        c = self._stopped_child(cid, st)
        ok, res = _run_start(c.fn, c.args, c.kwargs)
        if not ok:
            raise _SpecError(res)
        c.pid = res
        return res  # type: ignore[no-any-return]

    def _api_delete_child(self, cid: Any, st: _State) -> None:
        self._remove(self._stopped_child(cid, st), st)

    def _api_get_childspec(self, arg: Any, st: _State) -> ChildSpec:
        if st.simple:
            if type(arg) is Pid and (
                arg in st.dyn or _Restarting(arg) in st.dyn or not _runtime.is_alive(arg)
            ):
                return st.template().spec()
            raise _SpecError("not_found")
        c = self._find(arg, st)
        if c is None:
            raise _SpecError("not_found")
        return c.spec()

    def _which_children(self, st: _State) -> list[tuple[Any, Any, str, Any]]:
        if st.simple:
            t = st.template()
            return [
                (None, k if type(k) is Pid else "restarting", t.type, t.modules)
                for k in reversed(st.dyn)
            ]
        out = []
        for cid in reversed(st.ids):
            c = st.children[cid]
            out.append(
                (cid, "restarting" if type(c.pid) is _Restarting else c.pid, c.type, c.modules)
            )
        return out

    def _count_children(self, st: _State) -> dict[str, int]:
        if st.simple:
            size = len(st.dyn)
            sup = st.template().type == "supervisor"
            return {
                "specs": 1,
                "active": size - st.dyn_restarting,
                "supervisors": size if sup else 0,
                "workers": 0 if sup else size,
            }
        counts = {"specs": 0, "active": 0, "supervisors": 0, "workers": 0}
        for c in st.children.values():
            counts["specs"] += 1
            counts["supervisors" if c.type == "supervisor" else "workers"] += 1
            pid = c.pid
            # A child on another node is alive until its EXIT comes over the link.
            if type(pid) is Pid and (pid.node != _runtime.NODE_NAME or _runtime.is_alive(pid)):
                counts["active"] += 1
        return counts

    # ---- restarts

    def _handle_cast(self, msg: Any, st: _State) -> Any:
        if type(msg) is tuple and len(msg) == 2 and msg[0] == "try_again_restart":
            key = msg[1]
            if st.simple:
                if type(key) is _Restarting and key in st.dyn:
                    return self._outcome(self._restart_dyn(key, st), st)
            else:
                c = self._find(key, st)
                if c is not None and type(c.pid) is _Restarting:
                    return self._outcome(self._restart(c, st), st)
            return NoReply(st)
        _log_unexpected(msg)
        return NoReply(st)

    def _handle_info(self, msg: Any, st: _State) -> Any:
        if type(msg) is EXIT:
            pid, reason = msg.pid, msg.reason
            if st.simple:
                if pid in st.dyn:
                    return self._outcome(self._do_restart_dyn(reason, pid, st), st)
                return NoReply(st)
            for c in st.children.values():
                if c.pid == pid:
                    return self._outcome(self._do_restart(reason, c, st), st)
            return NoReply(st)  # not (or no longer) a child: OTP ignores it
        _log_unexpected(msg)
        return NoReply(st)

    def _outcome(self, result: str, st: _State) -> Any:
        self._publish(st)
        if result == "shutdown":
            return Stop("shutdown", st)  # terminate stops the children
        return NoReply(st)

    def _do_restart(self, reason: Any, c: _Child, st: _State) -> str:
        """OTP's do_restart: the restart-type table."""
        if c.restart == "permanent":
            self._report("child_terminated", reason, c, c.pid, st)
            return self._restart(c, st)
        if is_clean_exit(reason):  # normal, shutdown, ("shutdown", _)
            self._del_child(c, st)
            return self._auto_shutdown(c, st)
        self._report("child_terminated", reason, c, c.pid, st)
        if c.restart == "transient":
            return self._restart(c, st)
        self._del_child(c, st)  # temporary
        return self._auto_shutdown(c, st)

    def _do_restart_dyn(self, reason: Any, key: Any, st: _State) -> str:
        t = st.template()
        if t.restart == "permanent":
            self._report("child_terminated", reason, t, key, st)
            return self._restart_dyn(key, st)
        if is_clean_exit(reason):
            self._dyn_erase(key, st)
            return self._auto_shutdown(t, st)
        self._report("child_terminated", reason, t, key, st)
        if t.restart == "transient":
            return self._restart_dyn(key, st)
        self._dyn_erase(key, st)
        return self._auto_shutdown(t, st)

    def _auto_shutdown(self, c: _Child, st: _State) -> str:
        if st.auto_shutdown == "never" or not c.significant:
            return "ok"
        if st.auto_shutdown == "any_significant":
            return "shutdown"
        if st.simple:
            return "ok" if st.dyn else "shutdown"
        for other in st.children.values():
            if other.significant and other.pid is not None:
                return "ok"
        return "shutdown"

    def _add_restart(self, st: _State) -> bool:
        """OTP's add_restart: a sliding window of whole monotonic seconds.

        A restart at T is still in the window at Now if T >= Now - Period;
        up to `intensity` restarts fit, the next one ends the supervisor.
        """
        now = time.monotonic_ns() // 1_000_000_000
        threshold = now - st.period
        kept = [now]
        for t in st.restarts:  # newest first: stop at the first one out
            if t < threshold:
                break
            kept.append(t)
        st.restarts = kept
        return len(kept) <= st.intensity

    def _restart(self, c: _Child, st: _State) -> str:
        if not self._add_restart(st):
            self._report("shutdown", "reached_max_restart_intensity", c, c.pid, st)
            self._del_child(c, st)
            return "shutdown"
        st.total_restarts += 1
        if st.strategy == "one_for_one":
            again = self._restart_one(c, st)
        elif st.strategy == "rest_for_one":
            i = st.ids.index(c.id)
            old = c.pid
            c.pid = None  # OTP's split_child: the dead one is not stopped again
            again = self._restart_multiple(c, old, st.ids[i:], st)
        else:  # one_for_all
            old = c.pid
            if c.restart == "temporary":
                self._remove(c, st)
            else:
                c.pid = None
            again = self._restart_multiple(c, old, list(st.ids), st)
        if again is not None:
            # Leave control to the loop before trying again, so that the
            # calls already queued (a terminate_child, a stop) are served
            # first: the message goes to the end of our own mailbox.
            _gen.cast(otp.self_pid(), ("try_again_restart", again))
        return "ok"

    def _restart_one(self, c: _Child, st: _State) -> Any:
        old = c.pid
        ok, res = _run_start(c.fn, c.args, c.kwargs)
        if ok:
            c.pid = res
            c.restarts += 1
            return None
        c.pid = old if isinstance(old, _Restarting) else _Restarting(old)
        self._report("start_error", res, c, None, st)
        return c.id

    def _restart_multiple(self, c: _Child, old: Any, ids: list[Any], st: _State) -> Any:
        """Stop `ids` in reverse start order, then start them in start order."""
        self._terminate_children(ids, st)
        for cid in [i for i in ids if i in st.children]:
            child = st.children[cid]
            ok, res = _run_start(child.fn, child.args, child.kwargs)
            if ok:
                if res is None and child.restart == "temporary":
                    self._remove(child, st)
                else:
                    child.pid = res
                    child.restarts += 1
                continue
            self._report("start_error", res, child, None, st)
            if cid == c.id:
                child.pid = old if type(old) is _Restarting else _Restarting(old)
            else:
                child.pid = _Restarting(None)
            return cid
        return None

    def _restart_dyn(self, key: Any, st: _State) -> str:
        t = st.template()
        if not self._add_restart(st):
            self._report("shutdown", "reached_max_restart_intensity", t, key, st)
            self._dyn_erase(key, st)
            return "shutdown"
        st.total_restarts += 1
        args = st.dyn.pop(key)
        count = st.dyn_counts.pop(key, 0)
        if type(key) is _Restarting:
            st.dyn_restarting -= 1
        ok, res = _run_start(t.fn, args, t.kwargs)
        if ok:
            if res is not None:
                st.dyn[res] = args
                st.dyn_counts[res] = count + 1
            return "ok"
        rkey = key if type(key) is _Restarting else _Restarting(key)
        st.dyn[rkey] = args
        st.dyn_counts[rkey] = count
        st.dyn_restarting += 1
        self._report("start_error", res, t, None, st)
        _gen.cast(otp.self_pid(), ("try_again_restart", rkey))
        return "ok"

    # ---- bookkeeping

    def _remove(self, c: _Child, st: _State) -> None:
        st.ids.remove(c.id)
        del st.children[c.id]

    def _del_child(self, c: _Child, st: _State) -> None:
        """OTP's del_child: a temporary child's spec goes; others keep it."""
        if c.restart == "temporary":
            if c.id in st.children:
                self._remove(c, st)
        else:
            c.pid = None

    def _dyn_erase(self, key: Any, st: _State) -> None:
        if st.dyn.pop(key, None) is not None and type(key) is _Restarting:
            st.dyn_restarting -= 1
        st.dyn_counts.pop(key, None)

    def _publish(self, st: _State) -> None:
        """Expose the restart counts in process_info (for `otp ps`)."""
        info = _runtime.current().info
        info["restarts"] = st.total_restarts
        info["callback_modules"] = _code_modules(st)  # for otp.upgrade
        if st.simple:
            info["child_restarts"] = {k: n for k, n in st.dyn_counts.items() if type(k) is Pid}
        else:
            info["child_restarts"] = {
                c.pid: c.restarts for c in st.children.values() if c.restarts and type(c.pid) is Pid
            }

    # ---- stopping children

    def _start_children(self, ids: list[Any], st: _State) -> Any:
        """Start `ids` left to right; the failure term of the first that fails."""
        for cid in ids:
            c = st.children[cid]
            ok, res = _run_start(c.fn, c.args, c.kwargs)
            if ok:
                if res is None and c.restart == "temporary":
                    self._remove(c, st)
                else:
                    c.pid = res
                continue
            self._report("start_error", res, c, None, st)
            return ("failed_to_start_child", cid, res)
        return None

    def _terminate_children(self, ids: list[Any], st: _State) -> None:
        """Stop `ids` one by one in reverse start order, each dead before the next."""
        for cid in reversed(ids):
            c = st.children.get(cid)
            if c is None:
                continue
            if type(c.pid) is Pid:
                self._do_terminate(c, c.pid, st)
            if c.restart == "temporary":
                self._remove(c, st)
            else:
                c.pid = None

    def _do_terminate(self, c: _Child, pid: Pid, st: _State) -> None:
        reason = _shutdown(pid, c.shutdown)
        if not _shutdown_ok(reason, c):
            self._report("shutdown_error", reason, c, pid, st)

    def _terminate(self, st: Any) -> None:
        if not isinstance(st, _State):
            return
        if st.simple:
            self._terminate_dynamic_children(st)
        else:
            self._terminate_children(list(st.ids), st)

    def _terminate_dynamic_children(self, st: _State) -> None:
        """Stop every dynamic child at once, then wait for them all (OTP).

        One deadline for all: whoever is still alive when it passes is
        killed. EXIT messages are consumed as they come, so that waiting for
        10,000 DOWNs never rescans a mailbox full of EXITs.
        """
        t = st.template()
        p = _runtime.current()
        pending: dict[Ref, Pid] = {}
        brutal = t.shutdown == "brutal_kill"
        for key in st.dyn:
            if type(key) is Pid:
                pending[otp.monitor(key)] = key
                otp.exit(key, "kill" if brutal else "shutdown")
        pids = set(pending.values())
        exits: dict[Pid, Any] = {}
        downs: dict[Pid, Any] = {}
        deadline = None
        if not brutal and t.shutdown != "infinity":
            deadline = time.monotonic() + float(t.shutdown)

        def match(m: Any) -> bool:
            tm = type(m)
            return (tm is DOWN and m.ref in pending) or (tm is EXIT and m.pid in pids)

        while pending:
            timeout = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            try:
                m = p.receive(match, timeout)
            except ReceiveTimeout:
                for pid in pending.values():
                    otp.exit(pid, "kill")
                deadline = None
                continue
            if type(m) is EXIT:
                exits[m.pid] = m.reason
            else:
                downs[pending.pop(m.ref)] = m.reason
        # unlink_flush for all: an EXIT says more than a DOWN's "noproc".
        for pid in pids:
            otp.unlink(pid)
        mb = p.mailbox
        if mb:
            kept = []
            for m in mb:
                if type(m) is EXIT and m.pid in pids:
                    exits[m.pid] = m.reason
                else:
                    kept.append(m)
            mb.clear()
            mb.extend(kept)
        errors: dict[Any, list[Pid]] = {}
        for pid, down in downs.items():
            reason = exits.get(pid, down)
            if not _shutdown_ok(reason, t):
                errors.setdefault(_hashable(reason), []).append(pid)
        for reason, failed in errors.items():
            self._report("shutdown_error", reason, t, failed, st)
        st.dyn.clear()
        st.dyn_counts.clear()
        st.dyn_restarting = 0

    # ---- hot code upgrade (otp/_upgrade.py)

    def _sys_change_code(self, module: str, old_vsn: Any, extra: Any, st: Any) -> tuple[bool, Any]:
        """Move what this supervisor runs from `module` to its new code; the
        GenServer loop's change_code hook calls it. Returns (changed, state).

        - Its callback module, as OTP's supervisor code_change: `init` runs
          again in the new code and its child specs replace the old ones. A
          running child keeps its process under its new spec; a new id is
          added but not started (it starts at its next restart, or with
          restart_child, as in OTP); an id the new init no longer returns is
          kept as it was. The flags may change, but not to or from
          simple_one_for_one. An `Ignore()` from init keeps everything.
        - Its children's start functions, arguments and `modules`: a class
          or function of `module` is swapped for its namesake in the new
          code, so a child restarted from now on runs the new code (in OTP
          code is per node; here each supervisor holds its own copy).

        All or nothing: if anything raises, the state and the module stay
        as they were.
        """
        if not isinstance(st, _State) or module not in _code_modules(st):
            return False, st
        reload = _upgrade.Reload(module)
        try:
            new = self._upgraded_state(reload, st)
        except BaseException:
            reload.restore()
            raise
        _runtime.current().info["callback_modules"] = _code_modules(new)
        return True, new

    def _upgraded_state(self, reload: Any, st: _State) -> _State:
        new = copy.copy(st)
        children = {cid: _rebound(c, reload) for cid, c in st.children.items()}
        new.children, new.ids = children, list(st.ids)
        new.module = reload.new_object(st.module)
        if new.module is st.module:
            return new
        r = new.module().init(*st.args, **getattr(st, "kwargs", {}))
        if type(r) is Ignore:
            return new
        if not (type(r) is tuple and len(r) == 2 and isinstance(r[1], (list, tuple))):
            raise SupervisorError(("bad_return", (new.module, "init", r)))
        try:
            strategy, intensity, period, auto_shutdown = _check_flags(r[0])
            specs = _check_startspec(r[1], auto_shutdown)
        except _SpecError as e:
            raise SupervisorError(e.term) from None
        if (strategy == "simple_one_for_one") != st.simple:
            raise SupervisorError(("bad_strategy_change", st.strategy, strategy))
        new.strategy, new.intensity, new.period = strategy, intensity, period
        new.auto_shutdown = auto_shutdown
        if new.simple:
            if len(specs) != 1:
                raise SupervisorError(("bad_start_spec", list(r[1])))
            new.ids, new.children = [specs[0].id], {specs[0].id: specs[0]}
            return new
        # OTP's update_childspec: the new specs in their order, each keeping
        # the process (and restart count) of the old child of that id, then
        # the old children the new specs do not name, in their order.
        ids, db = [], {}
        for c in specs:
            old = children.get(c.id)
            if old is not None:
                c.pid, c.restarts = old.pid, old.restarts
            ids.append(c.id)
            db[c.id] = c
        for cid in st.ids:
            if cid not in db:
                ids.append(cid)
                db[cid] = children[cid]
        new.ids, new.children = ids, db
        return new

    # ---- reports and status

    def _report(self, context: str, reason: Any, c: _Child, pid: Any, st: _State) -> None:
        """A SUPERVISOR REPORT (OTP's ?report_error), logged once."""
        me = otp.self_pid()
        if isinstance(pid, list):
            shown = ", ".join(str(x) for x in pid[:5]) + (" ..." if len(pid) > 5 else "")
            who = f"{len(pid)} children: {shown}"
        elif type(pid) is Pid:
            who = f"pid={pid} os_pid={pid.id}"
        else:
            who = f"pid={pid!r}"
        short = f"{reason.type}: {reason.message}" if isinstance(reason, Crash) else repr(reason)
        lines = [
            "SUPERVISOR REPORT",
            f"    supervisor: {st.label()} {me} (os pid {os.getpid()})",
            f"    context: {context}",
            f"    reason: {short}",
            f"    offender: id={c.id!r} {who} restart={c.restart} shutdown={c.shutdown!r} "
            f"type={c.type} start={_fn_name(c.fn)}",
        ]
        if isinstance(reason, Crash) and reason.traceback:
            lines.append(reason.traceback.rstrip())
        self._reports.append("\n".join(lines))

    def format_status(self, status: dict[str, Any]) -> dict[str, Any]:
        st = status.get("state")
        if not isinstance(st, _State) or "reason" in status:
            return status
        children: list[dict[str, Any]]
        if st.simple:
            t = st.template()
            children = [
                {
                    "id": None,
                    "pid": k if type(k) is Pid else "restarting",
                    "type": t.type,
                    "restarts": st.dyn_counts.get(k, 0),
                }
                for k in reversed(st.dyn)
            ]
        else:
            children = [
                {
                    "id": cid,
                    "pid": "restarting" if type(c.pid) is _Restarting else c.pid,
                    "type": c.type,
                    "restarts": c.restarts,
                }
                for cid in reversed(st.ids)
                for c in (st.children[cid],)
            ]
        # These keys override the GenServer ones in get_status.
        return {
            **status,
            "behaviour": "Supervisor",
            "module": _module_name(st.module),
            "strategy": st.strategy,
            "intensity": st.intensity,
            "period": st.period,
            "auto_shutdown": st.auto_shutdown,
            "restarts": st.total_restarts,
            "children": children,
        }


# ------------------------------------------------------ the shutdown protocol


def _shutdown(pid: Pid, shutdown: Any) -> Any:
    """Stop one child and wait for it: OTP's shutdown/1. Returns its exit reason.

    The monitor comes first: a "naughty" child that unlinks itself from us
    still has its DOWN delivered, so we cannot hang waiting for an EXIT
    that never comes. The link stays while we wait and goes after the DOWN,
    and the EXIT it produced is flushed then (it holds the real reason when
    the child was already dead and the DOWN says "noproc").
    """
    p = _runtime.current()
    ref = otp.monitor(pid)

    def is_down(m: Any) -> bool:
        return type(m) is DOWN and m.ref == ref

    if shutdown == "brutal_kill":
        otp.exit(pid, "kill")  # SIGKILL: untrappable
        down = p.receive(is_down, None)
    else:
        otp.exit(pid, "shutdown")
        try:
            down = p.receive(is_down, None if shutdown == "infinity" else float(shutdown))
        except ReceiveTimeout:
            otp.exit(pid, "kill")
            down = p.receive(is_down, None)
    return _unlink_flush(p, pid, down.reason)


def _unlink_flush(p: _runtime.Process, pid: Pid, default: Any) -> Any:
    otp.unlink(pid)
    mb = p.mailbox
    for i, m in enumerate(mb):
        if type(m) is EXIT and m.pid == pid:
            del mb[i]
            return m.reason
    return default


def _shutdown_ok(reason: Any, c: _Child) -> bool:
    """The reasons a stop may end with without a shutdown_error report."""
    if c.shutdown == "brutal_kill" and reason == "killed":
        return True
    if reason == "shutdown":
        return True
    if c.restart == "permanent":
        return False
    return reason == "normal" or (
        type(reason) is tuple and len(reason) == 2 and reason[0] == "shutdown"
    )


def _fn_name(fn: Any) -> str:
    owner = getattr(fn, "__self__", None)
    name = getattr(fn, "__name__", None)
    if isinstance(owner, type) and name:
        return f"{owner.__qualname__}.{name}"  # MyServer.start_link, not GenServer.start_link
    return str(getattr(fn, "__qualname__", None) or repr(fn))


def _hashable(reason: Any) -> Any:
    try:
        hash(reason)
        return reason
    except TypeError:
        return repr(reason)


def _log_unexpected(msg: Any) -> None:
    logger.bind(otp_pid=str(otp.self_pid()), os_pid=os.getpid()).error(
        f"Supervisor received unexpected message: {msg!r}"
    )
