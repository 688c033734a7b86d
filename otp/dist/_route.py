"""The sending side of distribution: what the runtime calls, in the process
that sends, when a destination is on another node.

The runtime's own paths are untouched for local destinations: it calls in
here only where a local lookup already failed (`Process.send` found no
connection to a Pid of another node; `send`, `monitor` and the call
primitive were given `(name, node)` with a node other than this one).

Each function encodes with ETF *here*, in the sender (so a value outside the
term mapping raises `EncodeError` in the process that tried to send it),
and sends the node's dist process (`otp.dist._process`, registered as
`net_kernel`) a private envelope as an ordinary local message. On a node
that is not distributed there is no dist process: sends are dropped (as a
send to a dead Pid is), monitors and calls end at once with `"noconnection"`.

Links and exit signals take the same road: `otp.link(remote)` keeps the
caller's half of the link in its own table (as a local link) and asks the
dist process to hold the other half and send LINK; `otp.exit(remote, r)`
is an EXIT2. Whatever comes back (the link broke, an `exit` from there) the
dist process hands to the process as a `_runtime.DistSignal`.

Spawning by name
----------------
`otp.spawn("module:function", *args, node=...)` ends up in `spawn` below:
on another node it is a SPAWN_REQUEST, answered with the new Pid (erl's own
`spawn(Node, M, F, A)` does the same round trip); on this node, or with no
node, it is a local spawn of `run_mfa`. A process started for
`"module:function"` imports the module and calls the function; if either
does not exist it ends with Erlang's reason, `("undef", [(module, function,
args, [])])` (atoms as `Atom`). Starting one on a node that cannot be reached
gives, as in Erlang, a Pid that ends at once with `"noconnection"` (linked or
monitored if asked), not an exception.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any

from .. import _runtime
from .._exceptions import (
    BadArg,
    CallExit,
    CallTimeout,
    Exit,
    NoProc,
    OTPError,
    ReceiveTimeout,
    StartError,
)
from .._terms import DOWN, Pid, Ref, _AnsweredRef
from . import _etf
from ._etf import Atom

__all__ = [
    "call",
    "demonitor",
    "exit",
    "is_remote",
    "link",
    "monitor",
    "monitor_node",
    "nodedown",
    "nodes",
    "run_mfa",
    "send",
    "spawn",
    "start_on",
    "unlink",
]

DIST_NAME = "net_kernel"  # otp.dist._process.DIST_NAME (not imported: a cycle)

# Per OS process: (dist Pid, runtime directory, codec). Inherited by forked
# children, which is right: same node, same dist process. Checked on each use
# (see _dist), so a node stopped and started again is not mistaken for it.
_cached: tuple[Pid, str, _etf.Codec] | None = None
# Remote monitors this process holds (ref -> target), for demonitor.
_remote_mons: dict[Ref, Any] = {}
# node -> how many `monitor_node(node)` of this process are still owed a
# nodedown (the dist process keeps the same count; see dist_lost).
_node_watches: dict[str, int] = {}


def _forget_parents_monitors() -> None:
    # A forked child inherits this module's state: _cached is right for it
    # (same node, same dist process), but the monitors are its parent's; left
    # here, the child would be sent DOWNs for them (see dist_lost). Read
    # first, written only if needed: most processes hold none, and a write
    # would copy the page into every child.
    if _remote_mons:
        _remote_mons.clear()
    if _node_watches:
        _node_watches.clear()


os.register_at_fork(after_in_child=_forget_parents_monitors)
_default_codec = _etf.Codec()
_GEN_TAGS = {t: Atom(t) for t in ("$gen_call", "$gen_cast", "$system")}


class _SenderCodec(_etf.Codec):
    """The codec of a sending process: it never decodes, so it cannot learn
    other nodes' creations; it reads them from the links the dist process
    keeps in `<rundir>/dist-nodes/` (one readlink per remote Pid or Ref)."""

    def __init__(self, node: str, creation: int, rundir: str) -> None:
        super().__init__(node=node, creation=creation)
        self.dir = f"{rundir}/dist-nodes/"

    def _creation_of(self, node: str) -> int:
        if node == self.node:
            return self.creation
        try:
            return int(os.readlink(self.dir + node))
        except (OSError, ValueError):
            return 0


def is_remote(dest: Any) -> bool:
    """A Pid of another node, or `(name, node)` with another node."""
    t = type(dest)
    if t is Pid:
        return bool(dest[0] != _runtime.NODE_NAME)
    return t is tuple and len(dest) == 2 and type(dest[1]) is str and dest[1] != _runtime.NODE_NAME


def _dist(p: _runtime.Process) -> tuple[Pid, str, _etf.Codec] | None:
    """The dist process and the codec to encode for it; None if not distributed."""
    global _cached
    c = _cached
    # A live connection to it means it is alive (a dead peer's connection is
    # dropped when its end is seen): the common case costs one dict lookup.
    if c is not None and c[1] == p.rundir and c[0] in p.conns:
        return c
    pid = _runtime.lookup(p.rundir, DIST_NAME)
    if pid is None or (pid != p.pid and p.connect(pid) is None):
        return None
    try:
        with open(f"{p.rundir}/dist") as f:
            name, creation = f.read().split()[:2]
    except (OSError, ValueError):
        return None
    _cached = c = (pid, p.rundir, _SenderCodec(name, int(creation), p.rundir))
    return c


def _encode(d: tuple[Pid, str, _etf.Codec] | None, msg: Any) -> bytes:
    return (d[2] if d is not None else _default_codec).encode(msg)


def send(p: _runtime.Process, dest: Any, msg: Any) -> None:
    """`otp.send` to a remote Pid or `(name, node)`: never raises for an
    unreachable node (Erlang drops such a send); raises EncodeError for a
    message outside the term mapping."""
    d = _dist(p)
    if type(msg) is tuple and msg and isinstance(msg[0], str) and msg[0] in _GEN_TAGS:
        # OTP's protocol tags are atoms on the wire ({'$gen_cast', Msg}...);
        # a traced cast's tag (a str subclass equal to "$gen_cast") too.
        msg = (_GEN_TAGS[msg[0]], *msg[1:])
    data = _encode(d, msg)
    if d is not None:
        p.send(d[0], ("$dist_send", p.pid, dest, data))


def monitor(p: _runtime.Process, ref: Ref, target: Any) -> None:
    """Monitor a remote Pid or `(name, node)`: the dist process will send this
    process `DOWN(ref, target, reason)` (`"noconnection"` if the node is lost)."""
    d = _dist(p)
    if d is None:
        p.mailbox.append(DOWN(ref, target, "noconnection"))
        return
    _remote_mons[ref] = target
    p.send(d[0], ("$dist_monitor", p.pid, ref, target))


def demonitor(p: _runtime.Process, ref: Any) -> bool:
    """Drop a remote monitor; False if `ref` is not one this process holds.

    The dist process may have sent the monitor's DOWN before it reads this
    (the target ended, the node was found unreachable): that DOWN is dropped
    when it arrives (`Process.abandon`), so none comes after this returns."""
    if _remote_mons.pop(ref, None) is None:
        return False
    p.abandon(ref)
    d = _dist(p)
    if d is not None:
        p.send(d[0], ("$dist_demonitor", p.pid, ref))
    return True


def call(p: _runtime.Process, dest: Any, label: str, request: Any, timeout: float | None) -> Any:
    """The call primitive (otp/_call.py) for a target on another node.

    As Erlang's gen:do_call: monitor the target through the dist process
    (MONITOR_P), send `{label, {self, Ref}, request}` with the label as an atom
    (`'$gen_call'`), and wait for `{Ref, reply}` or the monitor's DOWN.

    Raises NoProc (nobody there), CallExit (the server ended during the call,
    or `"noconnection"`: the node is unreachable or was lost), CallTimeout.
    """
    ref = Ref((_runtime.NODE_NAME, p.pid.id, p.pid.serial, next(p.refs)))
    d = _dist(p)
    data = _encode(d, (Atom(label), (p.pid, ref), request))
    if d is None:
        raise CallExit("noconnection", (label, dest, request))
    mark = len(p.mailbox)
    _remote_mons[ref] = dest
    # Monitor and request in one envelope (one write here, one read there):
    # the dist process sends MONITOR_P before the request, so a target
    # already gone is noproc.
    p.send(d[0], ("$dist_gen_call", p.pid, ref, dest, data))
    try:
        m = p.await_reply(ref, timeout, mark)
    except ReceiveTimeout:
        p.abandon(ref)
        demonitor(p, ref)
        raise CallTimeout(f"no reply from {dest!r} within {timeout} s") from None
    except BaseException:
        demonitor(p, ref)
        raise
    if type(m) is DOWN:
        # The dist process dropped the monitor when it sent the DOWN.
        _remote_mons.pop(ref, None)
        if m.reason == "noproc":
            raise NoProc(dest, f"no process {dest!r}")
        raise CallExit(m.reason, (label, dest, request))
    if type(m[0]) is _AnsweredRef:
        # The reply came through the dist process, which dropped the
        # monitor before delivering it (_Router._answered).
        _remote_mons.pop(ref, None)
    else:
        demonitor(p, ref)
    return m[1]


def nodes(timeout: float = 5.0) -> list[str]:
    """The nodes this node is connected to ([] when not distributed)."""
    from .. import _call

    p = _runtime.current()
    d = _dist(p)
    if d is None:
        return []
    return _call.call(d[0], "$dist_call", ("nodes",), timeout)  # type: ignore[no-any-return]


def monitor_node(node: str, flag: bool = True) -> None:
    """`("nodedown", node)` to this process when the connection to `node` is
    lost (at once if it cannot be made); `flag=False` cancels."""
    p = _runtime.current()
    d = _dist(p)
    if d is None:
        if flag:
            p.send(p.pid, ("nodedown", node))
        return
    if flag:
        _node_watches[node] = _node_watches.get(node, 0) + 1
    else:
        _node_watches.pop(node, None)
    p.send(d[0], ("$dist_monitor_node", p.pid, node, bool(flag)))


def nodedown(p: _runtime.Process, node: str) -> None:
    """The dist process says `node` is lost to one `monitor_node(node)` of
    this process (a DistSignal, applied as it is read): the message, and one
    watch fewer."""
    n = _node_watches.get(node, 0)
    if n > 1:
        _node_watches[node] = n - 1
    else:
        _node_watches.pop(node, None)
    p.mailbox.append(("nodedown", node))


# -------------------------------------------------------- links and exits


def link(p: _runtime.Process, pid: Pid) -> None:
    """`otp.link` to another node's Pid; the caller already holds its half.

    The dist process sends LINK and keeps the node's half; if the link
    breaks (the remote process ends, the node is lost) it hands this process
    the exit signal. Not distributed, the link breaks at once with
    `"noconnection"`, as in Erlang.
    """
    d = _dist(p)
    if d is None:
        p.dist_signal(_runtime.DistSignal("exit", pid, "noconnection"))
        return
    p.send(d[0], ("$dist_link", p.pid, pid))


def unlink(p: _runtime.Process, pid: Pid) -> None:
    """`otp.unlink` of another node's Pid (the caller already dropped its half)."""
    d = _dist(p)
    if d is not None:
        p.send(d[0], ("$dist_unlink", p.pid, pid))


def dist_lost(p: _runtime.Process) -> None:
    """The node's dist process is gone (the runtime saw its end): every
    connection to another node went with it. So, as for a lost connection,
    each remote monitor of this process (calls in progress included) gets
    `DOWN(..., "noconnection")` and each link to another node's process
    breaks with `"noconnection"`. Without this they would wait forever: the
    dist process was the one to tell them."""
    global _cached
    _cached = None
    for ref, target in list(_remote_mons.items()):
        p.mailbox.append(DOWN(ref, target, "noconnection"))
    _remote_mons.clear()
    # Every node watched is lost to this node: one nodedown per
    # monitor_node still owed one, as the dist process would have sent.
    for node, n in list(_node_watches.items()):
        p.mailbox.extend([("nodedown", node)] * n)
    _node_watches.clear()
    for pid in [x for x in p.links if x[0] != _runtime.NODE_NAME]:
        p.links.discard(pid)
        p.exit_signal(pid, "noconnection", linked=True)


def exit(p: _runtime.Process, pid: Pid, reason: Any) -> None:
    """`otp.exit` to another node's Pid: an EXIT2 signal (`"kill"` kills
    there too). Dropped if the node cannot be reached, as in Erlang; raises
    EncodeError here for a reason outside the term mapping."""
    d = _dist(p)
    _encode(d, reason)  # fails in the sender, like a send
    if d is not None:
        p.send(d[0], ("$dist_exit", p.pid, pid, reason))


# ---------------------------------------------------------------- spawning


def _mfa(fn: Any) -> tuple[str, str]:
    """`"module:function"` (or an importable function) as (module, function)."""
    if isinstance(fn, str):
        mod, _, fun = fn.partition(":")
        if mod and fun:
            return mod, fun
        raise BadArg(f"expected 'module:function', not {fn!r}")
    owner = getattr(fn, "__self__", None)
    module: Any
    qualname: Any
    if isinstance(owner, type):
        # A class method (`Worker.start_link`): named through the class it is
        # bound to, not the base class that defines it.
        module, qualname = owner.__module__, f"{owner.__qualname__}.{fn.__name__}"
    else:
        module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if (
        not callable(fn)
        or not isinstance(module, str)
        or not isinstance(qualname, str)
        or module == "__main__"
        or "<" in qualname
    ):
        # A lambda, a closure or __main__'s code has no name another node
        # can import: only code both nodes have can start there.
        raise BadArg(
            f"{fn!r} cannot be started on another node: give 'module:function' "
            "or a function of an importable module"
        )
    return module, qualname


def _resolve(module: str, function: str) -> Callable[..., Any] | None:
    """The function `module:function` names (a dotted path inside the
    module, such as `Counter.start`, is fine), or None if there is none."""
    try:
        obj: Any = importlib.import_module(module)
    except ModuleNotFoundError as e:
        # Only a missing *module* is undef; a module that fails to import one
        # of its own dependencies is a crash, with its traceback.
        if e.name is not None and (module == e.name or module.startswith(e.name + ".")):
            return None
        raise
    for part in function.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj if callable(obj) else None


def _undef(module: str, function: str, args: Any) -> Any:
    """Erlang's exit reason for a function that does not exist."""
    return (Atom("undef"), [(Atom(module), Atom(function), list(args), [])])


def run_mfa(
    module: str,
    function: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    link_to: Pid | None = None,
) -> Any:
    """The body of a process started for `"module:function"` (locally, or by a
    SPAWN_REQUEST from another node). `link_to` is the remote requester of a
    linked spawn: its half is ours from the first instruction, before any
    signal from it can be read."""
    p = _runtime.current()
    if link_to is not None:
        p.links.add(link_to)
    p.info["initial_call"] = f"{module}:{function}"
    fn = _resolve(module, function)
    if fn is None:
        reason = _undef(module, function, args)
        from .._log import log_crash

        log_crash(p.pid, None, reason, p.info)
        raise Exit(reason)
    return fn(*args, **kwargs)


def _crasher(node: str, module: str, function: str, args: Any) -> None:
    from .._log import log_warning

    # Erlang's erts_internal:crasher: the stand-in for a process that could
    # not be started on a node that cannot be reached.
    log_warning(f"** Can not start {module}:{function},{list(args)!r} on {node} **")
    raise Exit("noconnection")


def spawn(
    fn: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    node: Any = None,
    *,
    link: bool = False,
    monitor: bool = False,
) -> Any:
    """`otp.spawn(fn, *args, node=...)` (and `spawn_link`, `spawn_monitor`).

    `fn` is `"module:function"`, or a function of an importable module. On
    another node: a SPAWN_REQUEST with the `link`/`monitor` options (set up
    there, from the new process's first instruction), answered with the new
    Pid before anything else from it can arrive; this blocks until that
    answer, as Erlang's `spawn/4` does. Returns the Pid, or `(pid, ref)` when
    `monitor`.

    Raises:
        BadArg: `fn` or `node` is not usable, or keyword arguments were
            given for another node (arguments travel as terms, positionally).
        EncodeError: an argument is outside the term mapping.
        OTPError: the other node refused (e.g. `"system_limit"`).
    """
    from .. import _node

    p = _runtime.current()
    module, function = _mfa(fn)
    if node is None or node == _runtime.NODE_NAME:
        pid = _node.spawn(
            run_mfa, (module, function, tuple(args), dict(kwargs)), {}, link, f"{module}:{function}"
        )
        return (pid, _runtime.monitor(pid)) if monitor else pid
    if not isinstance(node, str) or "@" not in node:
        raise BadArg(f"not a node name (alive@host): {node!r}")
    if kwargs:
        raise BadArg("keyword arguments do not travel to another node: pass them positionally")
    ref = Ref((_runtime.NODE_NAME, p.pid.id, p.pid.serial, next(p.refs)))
    d = _dist(p)
    data = _encode(d, list(args))
    if d is None:
        result: Any = "noconnection"
    else:
        opts = (("link",) if link else ()) + (("monitor",) if monitor else ())
        mark = len(p.mailbox)
        p.send(d[0], ("$dist_spawn", p.pid, ref, node, module, function, len(args), data, opts))
        # The dist process answers every request: with the peer's reply, or
        # "noconnection" when the node cannot be reached or is lost first.
        # A linked spawn's link is already ours when this arrives.
        result = p.receive(
            lambda m: type(m) is tuple and len(m) == 3 and m[0] == "$spawn_reply" and m[1] == ref,
            None,
            mark,
        )[2]
    if type(result) is Pid:
        if monitor:
            _remote_mons[ref] = result
            return result, ref
        return result
    if result == "noconnection":
        pid = _node.spawn(_crasher, (node, module, function, tuple(args)), {}, link, "crasher")
        return (pid, _runtime.monitor(pid)) if monitor else pid
    if result in ("badopt", "badarg"):
        raise BadArg(f"{node} refused to spawn {module}:{function}: {result}")
    raise OTPError(f"{node} could not spawn {module}:{function}: {result}")


def start_on(node: str, fn: Any, args: Any, kwargs: dict[str, Any]) -> Pid | None:
    """Run a start function (`MyServer.start_link`...) on another Python node
    and link the caller to the process it started: a supervisor's child
    spec with `node=` (behaviours/supervisor.py).

    A helper process on `node` runs `fn(*args, **kwargs)`, unlinks itself
    from the new process, sends its Pid back and ends; the caller links to
    it. If the child dies before the link is made, the link gives the caller
    `EXIT(pid, "noproc")`, which a supervisor treats as any other death.
    Returns the Pid, or None if the start ignored.

    Raises:
        StartError: the start failed (its reason), or `"noconnection"`.
    """
    p = _runtime.current()
    module, function = _mfa(fn)
    tag = _runtime.make_ref()
    _, mon = spawn(
        "otp.dist._route:_start_here",
        (p.pid, tag, module, function, list(args), dict(kwargs)),
        {},
        node,
        monitor=True,
    )

    def is_down(m: Any) -> bool:
        return type(m) is DOWN and m.ref == mon

    m = p.receive(
        lambda m: (
            (type(m) is tuple and len(m) == 3 and m[0] == "$started" and m[1] == tag) or is_down(m)
        ),
        None,
    )
    if type(m) is not DOWN:
        # The helper ends right after answering: take its DOWN (it follows
        # the answer on the same path), so none is left in our mailbox.
        p.receive(is_down, None)
    _remote_mons.pop(mon, None)
    if type(m) is DOWN:
        raise StartError(m.reason)
    status, value = m[2]
    if status == "ok":
        if type(value) is Pid:
            _runtime.link(value)
            return value
        return None
    raise StartError(value)


def _start_here(
    caller: Pid, tag: Ref, module: str, function: str, args: list[Any], kwargs: dict[str, Any]
) -> None:
    """`start_on`'s helper, in a process of the child's node."""
    fn = _resolve(module, function)
    if fn is None:
        result: Any = ("error", _undef(module, function, args))
    else:
        try:
            pid = fn(*args, **kwargs)
        except StartError as e:
            result = ("error", e.reason)
        except Exception as e:
            result = ("error", repr(e))
        else:
            if pid is None or type(pid) is Pid:
                # Unlinked before we end: our normal exit must not reach a
                # child that traps exits (it would take us for its parent).
                if pid is not None:
                    _runtime.unlink(pid)
                result = ("ok", pid)
            else:
                result = ("error", pid)
    try:
        _runtime.send(caller, ("$started", tag, result))
    except _etf.EncodeError:
        _runtime.send(caller, ("$started", tag, ("error", repr(result[1]))))
