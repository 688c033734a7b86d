"""Hot code upgrade: a running process moves to a module's new code, state and all.

Erlang keeps two versions of a module and lets each process take the new one
over at a point it controls (`sys:change_code`, driven by the release
handler). Here every process is an OS process with its own copy of every
module, so an upgrade happens *inside each process that runs the module*:

1. every process running callbacks from the module is suspended
   (`otp.debug.suspend`: it serves only system messages; everything else
   waits in its mailbox, in order, nothing lost);
2. each of them, between two callbacks, reloads the module from disk
   (`importlib.reload`), moves its callback object to the class of the same
   name in the reloaded module, and calls `code_change` to turn the old state
   into the new one;
3. every one of them is resumed, and handles what queued up meanwhile with
   the new code.

The Pid, the OS process, the mailbox, the links and the monitors stay.

## Example

```python
import otp
import counter                       # a module with a GenServer `Counter`

pid = counter.Counter.start_link(name="counter")
# ... write the new version of counter.py to disk, then:
report = otp.upgrade(counter)        # or otp.upgrade("counter")
report["upgraded"]                   # [pid]: it now runs the new Counter
report["failed"]                     # {}: {pid: reason} for those that kept the old code
```

The new class decides how the old state becomes the new one:

```python
class Counter(GenServer):
    vsn = 2                                          # was 1

    def code_change(self, old_vsn, state, extra):
        if old_vsn == 1:                             # v1 kept an int
            return {"count": state, "history": []}   # v2 keeps a dict
        if old_vsn == ("down", 1):                   # going back to v1
            return state["count"]
        return state
```

## What code_change receives

- `old_vsn`: on an upgrade, the `vsn` class attribute of the code the
  process ran until now; on a downgrade (`otp.upgrade(m, downgrade=True)`),
  `("down", vsn)` with the `vsn` of the (older) code it goes back to, as in
  OTP. For a downgrade, as OTP's release handler does, `code_change` of the
  code being *left* is called (it is the one that knows both shapes), then
  the process moves to the reloaded (older) class.
- GenServer and GenEvent handlers: `code_change(old_vsn, state, extra)`
  returns the new state (each handler of a GenEvent manager separately).
- GenStatem: `code_change(old_vsn, state, data, extra)` returns
  `(state, data)`.
- Supervisor: as OTP's, its `init` is called again and the new child specs
  replace the old ones (running children keep running; a new spec's child is
  started at its next restart, as in OTP). A supervisor whose children are
  started by the module also switches their start functions to the new code,
  so a child restarted after the upgrade runs the new code.

## When code_change raises

That process keeps running its old code and its old state: its callback
object goes back to the old class and the module's namespace in that process
is put back as it was before the reload (a reload mutates the module object
in place; the old namespace is kept aside for that). The report lists it
under `"failed"` with the reason; the other processes are upgraded
regardless (each process is upgraded, or not, on its own).

## What is not changed

- Objects in the state that are instances of the module's classes keep their
  old class until `code_change` converts them.
- Other references to the module's old functions and classes (a name bound
  with `from counter import helper` in another module, a bound method kept
  in a variable) still point to the old code: only the module itself and the
  callback objects move. A class must keep its `__slots__` layout across
  versions (Python refuses to change the class of an object otherwise).
- The calling process: it is never upgraded as a callback process (it would
  have to answer itself); its own copy of the module is reloaded so the
  processes it starts from now on run the new code.
- A reload runs the module's top-level code again, in every process that
  reloads it: keep it free of side effects (starting processes, opening
  files), as for any module that may be reloaded.
- A plain process (`otp.spawn(fn)`) is not a behaviour: it answers no system
  messages and is never upgraded; behaviours started after the upgrade, even
  from an old copy of the class, run the new code.

## Reload and bytecode caches

Reload reads the source from disk. Python's `.pyc` cache is keyed on the
source file's modification time (whole seconds) and size, so a new version
written within the same second with the same size could be taken for the old
one: each reload therefore drops the module's `.pyc` first.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import types
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ._exceptions import BadArg, CallError, NoProc, OTPError
from ._terms import Pid

__all__ = ["change_code", "upgrade"]

#: The old_vsn that means "the vsn of the code the process runs now". A
#: string, so it survives the pickle round trip of a system message.
AUTO = "$current_vsn"

#: How long discovery waits for one process to describe itself.
_INFO_TIMEOUT = 2.0


# ------------------------------------------- code generations, node-wide
#
# Every process holds its own copy of every module, and forks give children
# their parent's copy. Processes the main program spawns are forked by the
# node's root process, which never takes part in an upgrade: without more,
# a server started after an upgrade would run the code of the day the node
# started. So an upgrade counts, in the runtime directory, a generation per
# module (`code/<module>`), and every behaviour, as it starts, takes the
# current generation of its callback class's module (`current`): it reloads
# the module if its copy is older. `_gens` is what this process's copy is;
# a fork inherits it with the modules themselves.

_gens: dict[str, int] = {}


def _gen_path(name: str) -> str | None:
    from . import _runtime

    p = _runtime._proc
    if p is None:
        return None
    return f"{p.rundir}/code/{urllib.parse.quote(name, safe='')}"


def _read_gen(name: str) -> int | None:
    from . import _runtime

    p = _runtime._proc
    # Every behaviour process asks this as it starts: when no upgrade ever
    # happened on this node there is no code directory, and one access(2)
    # says so without quoting a name or raising (each of which touched
    # pages a new process then owned: ~0.1 MiB of its USS).
    if p is None or not os.access(f"{p.rundir}/code", os.F_OK):
        return None
    path = _gen_path(name)
    if path is None:
        return None
    try:
        with open(path) as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def _bump_gen(name: str) -> int:
    """A new generation of `name`, for the whole node (before any process
    reloads it: each stamps its copy with it)."""
    import fcntl

    from . import _runtime

    rundir = _runtime.current().rundir
    os.makedirs(f"{rundir}/code", mode=0o700, exist_ok=True)
    fd = os.open(f"{rundir}/code/.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        gen = (_read_gen(name) or 0) + 1
        path = _gen_path(name)
        assert path is not None
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(str(gen))
        os.replace(tmp, path)  # readers see the old number or the new, never half
    finally:
        os.close(fd)
    return gen


def current(cls: Any) -> Any:
    """`cls`, or its namesake in the current generation of its module.

    Behaviours call it as they start, in the new process: if an upgrade of
    the class's module happened since this process's copy was loaded, the
    module is reloaded here first. Anything that goes wrong keeps `cls`.
    """
    name = getattr(cls, "__module__", None)
    if not isinstance(name, str) or name not in sys.modules:
        return cls
    gen = _read_gen(name)
    if gen is None or _gens.get(name) == gen:
        return cls
    try:
        # The bytecode was rewritten by the upgrade's first reload already.
        return Reload(name, forget_bytecode=False).new_class(cls)
    except Exception:
        return cls


# ----------------------------------------------------- inside one process


def _is_down(old_vsn: Any) -> bool:
    return type(old_vsn) is tuple and len(old_vsn) == 2 and old_vsn[0] == "down"


def _forget_bytecode(module: types.ModuleType) -> None:
    # A .pyc is trusted when the source's mtime (whole seconds) and size
    # match; a new version written in the same second with the same size
    # (vsn = 1 -> vsn = 2) would be read back as the old code.
    cached = getattr(module, "__cached__", None)
    if cached:
        try:
            os.unlink(cached)
        except OSError:
            pass


class Reload:
    """One reload of a module in this process, which can be undone.

    `importlib.reload` re-executes the module's source *in the same module
    object*: the old classes and functions still exist (whoever holds them
    keeps them) but their globals are now the new namespace. Keeping a copy of
    the old namespace lets a failed upgrade put everything back, and lets a
    downgrade run the old (newer) code with its own globals.
    """

    def __init__(self, name: str, forget_bytecode: bool = True) -> None:
        module = sys.modules.get(name)
        if module is None:
            raise BadArg(f"module {name!r} is not loaded in this process")
        self.module = module
        self.old_ns = dict(vars(module))
        self.gen_before = _gens.get(name)
        if forget_bytecode:
            _forget_bytecode(module)
        importlib.invalidate_caches()
        try:
            importlib.reload(module)
        except BaseException:
            # A syntax error leaves the namespace as it was; an exception
            # raised halfway through the module's code leaves it half new.
            self.restore()
            raise
        self.new_ns = dict(vars(module))
        gen = _read_gen(name)
        if gen is not None:
            _gens[name] = gen

    def _install(self, ns: dict[str, Any]) -> None:
        # Update then delete, never clear: the namespace is never empty, not
        # even for an instant (a thread of the runtime may read it).
        d = vars(self.module)
        d.update(ns)
        for k in [k for k in d if k not in ns]:
            del d[k]

    def restore(self) -> None:
        """Put the module back as it was before the reload."""
        self._install(self.old_ns)
        name = self.module.__name__
        if self.gen_before is None:
            _gens.pop(name, None)
        else:
            _gens[name] = self.gen_before

    @contextlib.contextmanager
    def old_code(self) -> Iterator[None]:
        """Run the old code with its own globals (for a downgrade)."""
        self._install(self.old_ns)
        try:
            yield
        finally:
            self._install(self.new_ns)

    def new_class(self, old_cls: type) -> type:
        """The class of the same (qualified) name in the reloaded module."""
        parts = old_cls.__qualname__.split(".")
        obj: Any = self.new_ns.get(parts[0])
        for part in parts[1:]:
            obj = getattr(obj, part, None)
        if not isinstance(obj, type):
            raise LookupError(
                f"the reloaded module {self.module.__name__} has no class {old_cls.__qualname__}"
            )
        return obj

    def new_object(self, old: Any) -> Any:
        """A class or function of the old module -> its namesake in the new one
        (anything else unchanged)."""
        if isinstance(old, (type, types.FunctionType)):
            if getattr(old, "__module__", None) != self.module.__name__:
                return old
            parts = old.__qualname__.split(".")
            obj: Any = self.new_ns.get(parts[0])
            for part in parts[1:]:
                obj = getattr(obj, part, None)
            return old if obj is None else obj
        if isinstance(old, types.MethodType) and isinstance(old.__self__, type):
            owner = self.new_object(old.__self__)
            return getattr(owner, old.__name__, old) if owner is not old.__self__ else old
        return old


def resolve_vsn(old_vsn: Any, old_cls: type, new_cls: type) -> Any:
    """What code_change receives: AUTO stands for the running code's vsn."""
    if old_vsn == AUTO:
        return getattr(old_cls, "vsn", None)
    if _is_down(old_vsn) and old_vsn[1] == AUTO:
        return ("down", getattr(new_cls, "vsn", None))
    return old_vsn


def change_callbacks(
    module: str,
    objs: Sequence[Any],
    old_vsn: Any,
    convert: Callable[[int, Any], Any],
) -> list[Any]:
    """In a behaviour process: reload `module`, move each of `objs` (callback
    objects whose class comes from it) to the new class, and return
    `[convert(i, vsn) for each]`, the new states.

    All or nothing: if anything raises (the reload, a missing class,
    `convert`), every object gets its old class back, the module its old
    namespace, and the exception propagates (an `otp.Exit` raised by
    code_change becomes an OTPError: a failed upgrade must not end the
    process).
    """
    from ._exceptions import Exit

    reload = Reload(module)
    old_classes = [type(o) for o in objs]
    moved: list[int] = []
    try:
        new_classes = [reload.new_class(c) for c in old_classes]
        down = _is_down(old_vsn)
        results = []
        for i, (o, old_cls, new_cls) in enumerate(zip(objs, old_classes, new_classes, strict=True)):
            vsn = resolve_vsn(old_vsn, old_cls, new_cls)
            if down:
                # OTP's downgrade: the code being left converts its state
                # back (it knows both shapes), then the older code is taken.
                with reload.old_code():
                    results.append(convert(i, vsn))
                o.__class__ = new_cls
                moved.append(i)
            else:
                o.__class__ = new_cls
                moved.append(i)
                results.append(convert(i, vsn))
    except BaseException as e:
        for i in moved:
            objs[i].__class__ = old_classes[i]
        reload.restore()
        if isinstance(e, Exit):
            raise OTPError(("EXIT", e.reason)) from None
        raise
    return results


def uses(obj: Any, module: str) -> bool:
    """Does this callback object run code from `module`?"""
    return type(obj).__module__ == module


# ------------------------------------------------------- the client side


def module_name(module: Any) -> str:
    if isinstance(module, types.ModuleType):
        return module.__name__
    if isinstance(module, str) and module:
        return module
    raise BadArg(f"not a module or a module name: {module!r}")


def _old_vsn_arg(old_vsn: Any) -> Any:
    if old_vsn is None:
        return AUTO
    if _is_down(old_vsn) and old_vsn[1] is None:
        return ("down", AUTO)
    return old_vsn


def change_code(
    pid: Any, module: Any, old_vsn: Any = None, extra: Any = None, timeout: float | None = 10.0
) -> bool:
    """See `otp.debug.change_code`."""
    from . import debug

    name = module_name(module)
    return bool(debug._sys(pid, ("change_code", name, _old_vsn_arg(old_vsn), extra), timeout))


def _check_here(name: str) -> None:
    """Reload the module in the caller (or compile it, if the caller never
    imported it), before any process is touched.

    A new version that does not even compile or import fails here, with its
    own exception, and nothing is changed anywhere. A caller that has the
    module loaded keeps the new code: what it starts from now on runs it.
    """
    if name in sys.modules:
        Reload(name)
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise BadArg(f"no module named {name!r}")
    get_code = getattr(spec.loader, "get_code", None)
    if get_code is not None:
        get_code(name)


def users(name: str, timeout: float = _INFO_TIMEOUT) -> tuple[list[Pid], list[Pid]]:
    """The processes of this node that run callbacks from module `name`, and
    those that did not answer in time (busy in a long callback, or not
    reading their mailbox), which may run it too.

    Every behaviour lists the modules its callbacks come from in its process
    info (`callback_modules`); the caller is left out.
    """
    from . import _api

    me = _api.self_pid()
    found: list[Pid] = []
    silent: list[Pid] = []
    for pid in _api.processes():
        if pid == me:
            continue
        info = _api.process_info(pid, timeout=timeout)
        if info is None:
            continue
        if "trap_exit" not in info:
            # Only the OS-level keys came back: its runtime did not answer.
            silent.append(pid)
        elif name in info.get("callback_modules", ()):
            found.append(pid)
    return found, silent


def _reason(e: BaseException) -> Any:
    if isinstance(e, OTPError) and len(e.args) == 1 and not isinstance(e, CallError):
        return e.args[0]
    if isinstance(e, NoProc):
        return "noproc"
    reason = getattr(e, "reason", None)
    return reason if reason is not None else repr(e)


def upgrade(
    module: Any, extra: Any = None, *, downgrade: bool = False, timeout: float | None = 10.0
) -> dict[str, Any]:
    """Upgrade every process of this node that runs callbacks from `module`.

    `module` is a module object or its dotted name. Each such process is
    suspended, reloads the module, moves to the new class and converts its
    state with `code_change(old_vsn, state, extra)` (see the module docs for
    GenStatem, GenEvent and Supervisor), then all are resumed. Processes
    started by anyone, anywhere in the node, are found (each behaviour lists
    its callback modules in `otp.process_info`).

    `downgrade=True` goes back to an older version written over the module
    file: `code_change` of the code being left gets `("down", vsn)`.
    `timeout` bounds each step for each process (a `code_change` that takes
    longer is reported as failed; the process is resumed anyway).

    Returns a report, a dict:

    - `"upgraded"`: the Pids now running the new code;
    - `"failed"`: `{pid: reason}` for the processes that kept their old code
      and state (their `code_change` raised, the new module lacks their
      class, the process ended meanwhile...); `reason` is
      `("callback_failed", "change_code", crash)` for an exception;
    - `"unanswered"`: processes that did not describe themselves in time
      (busy in a long callback): they may run the module and were not
      upgraded; call again, or use `otp.debug.change_code` on them.

    Raises the new code's own exception (SyntaxError, ImportError...) if it
    does not import in the calling process: then nothing was changed.
    """
    from . import debug

    name = module_name(module)
    _check_here(name)
    _bump_gen(name)
    if name in sys.modules:
        _gens[name] = _read_gen(name)  # type: ignore[assignment]  # reloaded just above
    targets, silent = users(name)
    old_vsn = ("down", AUTO) if downgrade else AUTO
    upgraded: list[Pid] = []
    failed: dict[Pid, Any] = {}
    suspended: list[Pid] = []
    try:
        # All are suspended before any changes code: no process runs the new
        # code while another one it talks to still runs the old (the release
        # handler's order).
        for pid in targets:
            try:
                debug.suspend(pid, timeout)
            except OTPError as e:
                if not isinstance(e, (NoProc, CallError)) or _api_alive(pid):
                    failed[pid] = _reason(e)
                continue
            suspended.append(pid)
        for pid in suspended:
            try:
                if change_code(pid, name, old_vsn, extra, timeout):
                    upgraded.append(pid)
            except OTPError as e:
                failed[pid] = _reason(e)
    finally:
        for pid in suspended:
            try:
                debug.resume(pid, timeout)
            except OTPError:
                pass  # ended meanwhile
    return {"upgraded": upgraded, "failed": failed, "unanswered": silent}


def _api_alive(pid: Pid) -> bool:
    from . import _api

    return _api.is_process_alive(pid)
