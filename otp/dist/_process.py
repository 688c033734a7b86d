"""The dist process: the one otp process of a node that owns its connections
to other nodes, and routes between them and the local processes.

```python
import otp

otp.node.start(name="py@127.0.0.1", cookie="SECRET")   # starts this process
otp.send(("counter", "e@127.0.0.1"), ("add", 5))      # goes through it
```

It is registered as `net_kernel` (as in Erlang, where that is the process
behind distribution) and runs a `DistNode` (listener, epmd registration, one
connection per peer node, ticks) in its own OS process. `otp.node.start`
starts it after the node's root: every process of the node is forked with
the node's distributed name already in place (`_runtime.NODE_NAME`), so the
Pids they make are the ones other nodes can address.

How a message crosses
---------------------
Outgoing: the runtime hands a destination that is not on this node to
`otp.dist._route` in the *sending* process, which encodes the message with ETF
(a value outside the term mapping fails there, in the sender) and sends this
process a private envelope, `("$dist_send", sender, dest, term_bytes)`, as an
ordinary local message. This process writes it to the peer's connection,
connecting on demand through epmd. The connecting happens in a thread of
its own (`_conn`): what a sender asks of that node meanwhile waits, in
order, and everything else goes on (its requests to other nodes included),
so a node that does not answer holds up only what is for it. One local connection from each sender to this process
and one TCP connection per peer keep each sender's order end to end.

Incoming: SEND and REG_SEND are delivered to the local Pid or name (looked
up once per round of the loop), in arrival order. A `gen_server:call` from a
peer is just such a message, `("$gen_call", (caller, tag), request)`: the
local server answers the remote caller itself, through the same outgoing
path.

Monitors across nodes
---------------------
- A local process monitoring a remote one (`otp.monitor`, every remote call):
  this process sends MONITOR_P and, on MONITOR_P_EXIT, sends the watcher
  `otp.DOWN(ref, target, reason)` as a plain message (what the call primitive
  waits for). When the connection drops, every such monitor gets
  `DOWN(..., "noconnection")`. When the watcher ends (SIGKILL included: this
  process monitors each watcher once), its monitors are removed there too
  (DEMONITOR_P), as Erlang removes a dead process's monitors.
- A peer monitoring a local process (MONITOR_P, e.g. before each
  `gen_server:call` from erl): this process monitors the local one and
  answers its DOWN with MONITOR_P_EXIT carrying the reason.
- `otp.monitor_node(node)`: `("nodedown", node)` when the connection drops
  (at once if it cannot be opened).

Links across nodes
------------------
A link has two halves, one per node. Each local party keeps its own half in
its runtime, as for a local link (so `link` is idempotent and
`process_info` shows it); this process keeps the node's half, the table
`local Pid -> remote Pids`, and *monitors* every local party while it has
any. So the end of a local process, however it ends, is seen here from the
OS (a SIGKILL closes its sockets without a reason: `"killed"`) and goes out
as EXIT to each remote party. The other way, what a peer says (LINK,
UNLINK_ID, EXIT from a broken link, EXIT2 from `exit/2`) is handed to the
local process as a `_runtime.DistSignal` inside an EXIT frame: its runtime
applies it at read time, in order with the messages around it, and acts on
a broken link only while it still holds that link (after its own unlink,
an EXIT in flight is dropped, which is what UNLINK_ID/UNLINK_ID_ACK
guarantee in Erlang). EXIT2 `kill` is SIGKILL here, as locally. When the
connection drops, every link over it breaks with `"noconnection"`.

Spawning across nodes
---------------------
Outgoing (`otp.spawn(..., node=n)`): SPAWN_REQUEST with this process as the
group leader; the SPAWN_REPLY goes back to the requester as
`("$spawn_reply", ref, pid | error)`, after this process has taken the
link's half (flag 1) and the monitor (flag 2, whose ref is the request's),
so they exist before anything from the new process can arrive. A lost
connection answers every pending request with `"noconnection"`.

Incoming (erl's `spawn(Node, M, F, A)`, or ours): a new process of this node
runs `_route.run_mfa` (import M, call F); the `link` and `monitor` options
are set up before SPAWN_REPLY is written, and nothing from the new process
is read before that. Who holds the cookie may run any code here, as with
erl (distribution.md).

I/O and threads: this process reads and writes its plain-TCP connections in
its own loop (`otp.dist._pump`: the sockets are in its epoll; what one round
of the loop writes to a peer leaves in one write, and incoming packets are
queued as they are read, even while a write to a slow local process waits).
A round delivers what came from the network, then the local messages, then
writes: to each local process one write for all its messages of the round
(`_deliver`), to each peer one write; TLS connections too (the pump
encrypts and decrypts). Other threads (the handshakes', the ticker's) queue
what they have and wake the poll through the wake-up pipe. Every otp call
happens on the main thread, which the runtime expects.
A remote call costs one envelope here (`$dist_gen_call`: MONITOR_P and the
request, written together) and nothing more from the caller: when the
reply passes through here, the call's monitor is dropped and its tag marked
(`_Router._answered`), and its DEMONITOR_P is queued lazily to go out with
the next packet to that peer (within `_pump.LAZY_DELAY` at worst), so the
peer reads it with the next call instead of waking for it alone. If this
process itself dies (the node's distribution is gone), each process's
runtime sees it and breaks its remote links and monitors with
`"noconnection"` (`otp.dist._route.dist_lost`).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import os
import pickle
import select
import struct
import threading
from typing import Any

from .. import _api, _codec, _node, _runtime
from .._exceptions import BadArg, OTPError
from .._runtime import DistSignal
from .._terms import DOWN, Pid, Ref, _AnsweredRef
from . import _etf, _pump, _route
from ._etf import Atom, EncodeError
from ._node import (
    DEMONITOR_P,
    EXIT,
    EXIT2,
    EXIT2_TT,
    EXIT_TT,
    LINK,
    MONITOR_P,
    MONITOR_P_EXIT,
    REG_SEND,
    REG_SEND_TT,
    SEND,
    SEND_SENDER,
    SEND_TT,
    SPAWN_REPLY,
    SPAWN_REPLY_TT,
    SPAWN_REQUEST,
    SPAWN_REQUEST_TT,
    UNLINK,
    UNLINK_ID,
    UNLINK_ID_ACK,
    DistNode,
)

__all__ = ["DIST_NAME", "start"]

#: The local name of the dist process (Erlang's process behind distribution).
DIST_NAME = "net_kernel"

_EMPTY = Atom("")
_LEN = struct.Struct(">I")
_HDR = _codec.HDR  # a local frame's header; a MSG frame's is its length
_pdumps = pickle.dumps
# Messages for local processes are batched (see _Router._deliver) up to this
# size; a bigger one goes through the runtime's send, which frames it alone.
_BATCH_MAX = 65536
_CONTROLS = 4096  # encoded controls kept (see _Router._send)
_GEN_TAGS = {t: t for t in ("$gen_call", "$gen_cast", "$system")}


def start(
    name: str,
    cookie: str | None = None,
    *,
    epmd: int | None = None,
    port: int = 0,
    ticktime: float = 60.0,
    timeout: float = 10.0,
    options: dict[str, Any] | None = None,
) -> Pid:
    """Spawn the dist process for node `name`; returns its Pid once it listens,
    is registered with epmd and holds the name `net_kernel`.

    The local node must carry `name` already (`otp.node.start(name=...)` does
    both). Raises OTPError if it could not start.
    """
    if name != _runtime.NODE_NAME:
        raise OTPError(
            f"the node is named {_runtime.NODE_NAME!r}, not {name!r}: start it with "
            "otp.node.start(name=...) before any other otp call"
        )
    me = _api.self_pid()
    # `options`: DistNode's listener keywords (tls, host, allow_plain_tcp),
    # passed through as they are (see otp.node.start).
    pid = _api.spawn(_main, name, cookie, epmd, port, ticktime, me, options)
    reply = _runtime.receive(
        lambda m: type(m) is tuple and len(m) == 3 and m[0] == "$dist_started" and m[1] == pid,
        timeout,
    )
    if reply[2][0] != "ok":
        raise OTPError(f"distribution did not start: {reply[2][1]}")
    return pid


def _main(
    name: str,
    cookie: str | None,
    epmd: int | None,
    port: int,
    ticktime: float,
    parent: Pid,
    options: dict[str, Any] | None = None,
) -> None:
    me = _api.self_pid()
    node = DistNode(name, cookie, epmd=epmd, port=port, ticktime=ticktime, **(options or {}))
    router = _Router(node)
    try:
        node.start()
        _api.register(DIST_NAME)
        p = _runtime.current()
        # Senders read our creation here to encode local Pids as erl expects
        # (otp/dist/_route.py); written before anyone can learn our Pid.
        tmp = f"{p.rundir}/.dist.tmp"
        with open(tmp, "w") as f:
            f.write(f"{name}\n{node.creation}\n{node.port}\n")
        os.replace(tmp, f"{p.rundir}/dist")
    except Exception as e:
        node.stop()
        _runtime.send(parent, ("$dist_started", me, ("error", f"{type(e).__name__}: {e}")))
        return
    _runtime.send(parent, ("$dist_started", me, ("ok", node.port)))
    try:
        router.run()
    finally:
        node.stop()  # pragma: no cover - the process ends by os._exit


class _Router:
    """The dist process's state: its DistNode and the monitors across it."""

    def __init__(self, node: DistNode) -> None:
        self.node = node
        self.name = node.name
        # Written by the reader threads, read by the main thread: a deque's
        # append and popleft are atomic, and the wake-up pipe ends the poll.
        self.work: collections.deque[tuple[Any, ...]] = collections.deque()
        # ref -> (peer node, local watcher, target as given): our MONITOR_Ps.
        self.out_mons: dict[Any, tuple[str, Pid, Any]] = {}
        # The remote calls in flight, a subset of out_mons: ref -> caller
        # (see _answered).
        self.calls: dict[Any, Pid] = {}
        # Connections being made in the background (see _conn), and the local
        # requests waiting for them: by sender, in order, and which senders
        # wait on which node. `unreachable`: nodes whose attempt just failed,
        # while their waiting requests are carried out.
        self.dialling: set[str] = set()
        self.parked: dict[tuple[Any, str], collections.deque[tuple[Any, ...]]] = {}
        self.parked_on: dict[str, list[Any]] = {}
        self.unreachable: set[str] = set()
        # The node of each parked monitor, by ref: its demonitor waits there too.
        self.parked_refs: dict[Any, str] = {}
        # The local processes holding monitors of other nodes' processes or
        # nodes, each monitored here once (see _watch): local Pid -> our
        # monitor's ref, and back.
        self.watched: dict[Pid, Any] = {}
        self.mon_watched: dict[Any, Pid] = {}
        # (peer node, peer's ref) -> local monitor ref; and the way back.
        self.in_mons: dict[tuple[str, Any], Any] = {}
        self.in_by_lref: dict[Any, tuple[str, Any, Any, Any]] = {}
        # node -> {watcher: number of monitor_node calls}
        self.node_watchers: dict[str, dict[Pid, int]] = {}
        # Links across nodes, the node's half: local Pid -> the remote Pids
        # linked to it. Each local party is monitored (link_mons) while it has
        # any, so its end is seen from the OS, SIGKILL included, and becomes
        # EXIT to each peer (see the module docstring).
        self.links: dict[Pid, set[Pid]] = {}
        self.link_mons: dict[Pid, Any] = {}
        self.mon_links: dict[Any, Pid] = {}
        # Our SPAWN_REQUESTs awaiting their SPAWN_REPLY: ref -> (node, requester).
        self.spawns: dict[Any, tuple[str, Pid]] = {}
        # Names looked up this round of the loop (see _whereis).
        self.names: dict[str, Pid | None] = {}
        # Frames for local processes, written at the end of the round (_deliver).
        self.outbox: dict[Any, list[bytes]] = {}
        # Encoded controls of the sends that repeat (see _send).
        self.controls: dict[Any, bytes] = {}
        self.unlink_ids = itertools.count(1)
        # The runtime drains `wake_r` when it polls (Process.on_event): the
        # reader threads write to it after queueing, so a poll never sleeps on
        # queued work. Made before the node listens: a peer may come at once.
        self.p = p = _runtime.current()
        p.wake_r, p.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        p.ep.register(p.wake_r, select.EPOLLIN)
        # Connections (plain TCP and TLS) are read and written by this
        # process's own loop (otp/dist/_pump.py), not by reader threads: one
        # wake-up per packet instead of two, and no GIL hand-off. Only other
        # threads' events (node down from a handshake, a ticker) still come
        # through `_queue`'s pipe.
        self.thread = threading.get_ident()
        self.pump = _pump.Pump(node, p)
        node.pump = self.pump
        node.on_signal = self._from_reader
        node.on_nodeup = self._nodeup
        node.on_nodedown = lambda peer: self._queue(("down", peer))

    # -- the reader threads' side ----------------------------------------------

    def _from_reader(self, peer: str, control: tuple[Any, ...], message: Any) -> None:
        self._queue(("sig", peer, control, message))

    def _nodeup(self, peer: str, creation: int) -> None:
        # Senders encode the peer's Pids and Refs with its creation (erl does
        # not take its own refs back with another one: a reply's tag would not
        # match). A symlink per node, replaced atomically, read by
        # otp/dist/_route.py; written before the peer's first message is read.
        d = f"{self.p.rundir}/dist-nodes"
        os.makedirs(d, mode=0o700, exist_ok=True)
        tmp = f"{d}/.{peer}.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(str(creation), tmp)
        os.replace(tmp, f"{d}/{peer}")

    def _queue(self, item: tuple[Any, ...]) -> None:
        self.work.append(item)
        if threading.get_ident() != self.thread:
            # From another thread: wake our poll. From our own
            # loop's read (the pump), the loop takes the work next anyway.
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(self.p.wake_w, b"!")

    # -- the main loop --------------------------------------------------------

    def run(self) -> None:
        p = self.p
        work = self.work
        mb = p.mailbox
        pump = self.pump
        while True:
            if pump.buffered:
                pump.read_buffered()  # a TLS connection's first packets
            while work:
                self._net(work.popleft())
            if p.pending_exit is not None:
                p.die_from_signal()
            while mb:
                if pump.busy:
                    # A peer's connection is over its busy limit: take no
                    # more local messages until it drains (back-pressure on
                    # local senders), reading the network meanwhile.
                    pump.drain()
                    if work:
                        break
                self._local(mb.popleft())
                if work:
                    break
            if not work and not mb:
                # What this round wrote leaves now: one write per peer node,
                # one per local process.
                self._flush_local()
                pump.flush()
                self.names.clear()
                if work or mb:
                    # The flush waited for a slow local process, and read
                    # the network and local sockets meanwhile (_write_slow):
                    # what came in is served now, not after the next wake-up
                    # (which, with every peer done sending, is only a tick
                    # away: 15 s of nothing delivered).
                    continue
                p.wait(pump.lazy_timeout())
                if pump.lazy:
                    pump.flush_lazy()

    # -- from the network -------------------------------------------------------

    def _net(self, item: tuple[Any, ...]) -> None:
        if item[0] == "down":
            self._nodedown(item[1])
            return
        if item[0] == "dialled":
            self._dialled(item[1], item[2])
            return
        _, peer, control, message = item
        op = control[0]
        if (
            type(message) is tuple
            and message
            and type(message[0]) is Atom
            and message[0] in _GEN_TAGS
        ):
            # {'$gen_call', ...} from a peer: the behaviours' loops take a
            # plain str tag (a str subclass there marks a traced cast).
            message = (_GEN_TAGS[message[0]], *message[1:])
        try:
            if op in (SEND, SEND_TT, SEND_SENDER):
                to = control[2]
                # Only to our own Pids: a misrouted Pid must not bounce back out.
                # A Pid of an earlier run of this node (another creation: a
                # 4-tuple, see otp/dist/_etf.py) names nobody now: dropped.
                if type(to) is Pid and to.node == self.name and len(to) == 3:
                    if (
                        self.calls
                        and type(message) is tuple
                        and len(message) == 2
                        and type(message[0]) is Ref
                        and message[0] in self.calls
                    ):
                        message = self._answered(to, message)
                    self._deliver(to, message)
                return
            if op in (REG_SEND, REG_SEND_TT):
                pid = self._whereis(str(control[3]))
                if pid is not None:
                    self._deliver(pid, message)
                return
            if self.outbox and op not in (MONITOR_P, DEMONITOR_P):
                # Whatever else may send to a local process (a DOWN, a link's
                # EXIT...) comes after the messages delivered before it.
                self._flush_local()
            if op == MONITOR_P:
                self._monitor_in(peer, control[1], control[2], control[3])
            elif op == DEMONITOR_P:
                lref = self.in_mons.pop((peer, control[3]), None)
                if lref is not None:
                    self.in_by_lref.pop(lref, None)
                    _runtime.demonitor(lref, flush=True)
            elif op == MONITOR_P_EXIT:
                self.calls.pop(control[3], None)
                entry = self.out_mons.pop(control[3], None)
                if entry is not None:
                    _runtime.send(entry[1], DOWN(control[3], entry[2], _local_reason(control[4])))
            elif op == LINK:
                self._link_in(control[1], control[2])
            elif op == UNLINK_ID:
                self._unlink_in(control[2], control[3])
                # Acked after the link is gone, as OTP 26 requires of a node.
                self._send_control(peer, (UNLINK_ID_ACK, control[1], control[3], control[2]))
            elif op == UNLINK:
                self._unlink_in(control[1], control[2])
            elif op in (EXIT, EXIT_TT):
                self._exit_in(control[1], control[2], control[-1])
            elif op in (EXIT2, EXIT2_TT):
                self._exit2_in(control[1], control[2], control[-1])
            elif op in (SPAWN_REQUEST, SPAWN_REQUEST_TT):
                self._spawn_in(peer, control, message)
            elif op in (SPAWN_REPLY, SPAWN_REPLY_TT):
                self._spawn_reply(control)
            # UNLINK_ID_ACK: nothing to do. Our unlink dropped both halves of
            # the link at once, and an EXIT still in flight finds no link.
            _ = UNLINK_ID_ACK
        except (IndexError, TypeError, ValueError):
            pass  # a malformed control from a peer: dropped, as erl would close

    def _monitor_in(self, peer: str, watcher: Any, target: Any, ref: Any) -> None:
        if type(target) is Atom:
            # By its Pid when the name is held (found once per round, and
            # the call's message that follows finds it again there).
            local: Any = self._whereis(str(target)) or str(target)
        elif type(target) is Pid and target.node == self.name:
            local = target
        else:
            self._send_control(peer, (MONITOR_P_EXIT, target, watcher, ref, Atom("noproc")))
            return
        try:
            lref = _runtime.monitor(local)
        except BadArg:
            return  # ourselves: this process never ends while the node is up
        # A target already gone gives a DOWN "noproc" in our mailbox: answered
        # as MONITOR_P_EXIT when it is read, after anything queued before.
        self.in_mons[(peer, ref)] = lref
        self.in_by_lref[lref] = (peer, watcher, target, ref)

    def _deliver(self, pid: Pid, message: Any) -> None:
        """A message from a peer to a local process: framed now, written with
        the others for the same process at the end of the round (one write,
        one wake-up for a burst of casts). Anything else this process sends to
        a local process goes after `_flush_local`: one sender's order holds."""
        p = self.p
        c = p.conns.get(pid)
        if c is None and pid != p.pid:
            c = p.connect(pid)
            if c is None:
                return  # a dead Pid: dropped, as in Erlang
        try:
            payload = _pdumps(message, 5)
        except Exception:
            payload = None
        if c is None or payload is None or len(payload) >= _BATCH_MAX:
            # To ourselves, what only dill takes, or a big one: the runtime's
            # own send (in order: what is queued goes first).
            self._flush_local()
            _runtime.send(pid, message)
            return
        frames = self.outbox.get(c)
        if frames is None:
            self.outbox[c] = [_HDR.pack(len(payload)), payload]
        else:
            frames += (_HDR.pack(len(payload)), payload)
        p.msgs_out += 1

    def _flush_local(self) -> None:
        """Write the messages `_deliver` framed: one write per local process."""
        outbox = self.outbox
        if not outbox:
            return
        self.outbox = {}
        p = self.p
        for c, frames in outbox.items():
            if c.fd in p.fds:
                p.write(c, b"".join(frames))

    def _whereis(self, name: str) -> Pid | None:
        """The Pid holding `name`, looked up at most once per round of the
        loop (a call's MONITOR_P and its message come in one read: one lookup
        for both). A round takes no input, so its lookups are as if made at
        one instant: a name registered or unregistered meanwhile is seen by
        the next round, as a message sent a moment later would see it."""
        try:
            return self.names[name]
        except KeyError:
            pid = self.names[name] = _runtime.lookup(self.p.rundir, name)
            return pid

    def _nodedown(self, peer: str) -> None:
        self._flush_local()
        for ref, (node, watcher, target) in list(self.out_mons.items()):
            if node == peer:
                del self.out_mons[ref]
                self.calls.pop(ref, None)
                _runtime.send(watcher, DOWN(ref, target, "noconnection"))
        for key in [k for k in self.in_mons if k[0] == peer]:
            lref = self.in_mons.pop(key)
            self.in_by_lref.pop(lref, None)
            _runtime.demonitor(lref, flush=True)
        for watcher, n in self.node_watchers.pop(peer, {}).items():
            for _ in range(n):
                self._nodedown_to(watcher, peer)
        # Every link over the lost connection breaks with "noconnection".
        for local, remotes in list(self.links.items()):
            for remote in [r for r in remotes if r.node == peer]:
                self._link_del(local, remote)
                self._signal(local, DistSignal("exit", remote, "noconnection"))
        for ref, (node, requester) in list(self.spawns.items()):
            if node == peer:
                del self.spawns[ref]
                _runtime.send(requester, ("$spawn_reply", ref, "noconnection"))

    # -- from local processes ---------------------------------------------------

    def _local(self, m: Any) -> None:
        if self.outbox:
            self._flush_local()  # what we do next may send to a local process
        t = type(m)
        if t is DOWN:
            self._local_down(m)
            return
        if t is not tuple or not m:
            return
        sender = m[1] if len(m) > 1 and type(m[1]) is Pid else None
        node = self._node_of(m) if self.parked else None
        if node is not None:
            parked = self.parked.get((sender, node))
            if parked is not None:
                # Behind what this sender asked of that node before, waiting
                # for the connection (its requests to other nodes go on).
                parked.append(m)
                self._note_parked_ref(m, node)
                return
        try:
            self._do_local(m)
        except _Park as p:
            # A connection to p.node is being made in the background: this
            # sender's requests to that node wait, in order; the rest goes on.
            self.parked[(sender, p.node)] = collections.deque([m])
            self.parked_on.setdefault(p.node, []).append(sender)
            self._note_parked_ref(m, p.node)

    def _node_of(self, m: tuple[Any, ...]) -> str | None:
        """The node a local request is for (None: none, or not known)."""
        tag = m[0]
        try:
            if tag == "$dist_send":
                return _dest_node(m[2])
            if tag in ("$dist_gen_call", "$dist_monitor"):
                return _dest_node(m[3])
            if tag == "$dist_demonitor":
                entry = self.out_mons.get(m[2])
                return entry[0] if entry is not None else self.parked_refs.get(m[2])
            if tag == "$dist_monitor_node":
                return str(m[2])
            if tag in ("$dist_link", "$dist_unlink", "$dist_exit"):
                return str(m[2].node)
            if tag == "$dist_spawn":
                return str(m[3])
            if tag == "io_request":
                return str(m[1].node)
        except (AttributeError, IndexError, TypeError):
            pass
        return None

    def _note_parked_ref(self, m: tuple[Any, ...], node: str) -> None:
        if m[0] in ("$dist_gen_call", "$dist_monitor") and len(m) > 2:
            self.parked_refs[m[2]] = node

    def _do_local(self, m: tuple[Any, ...]) -> None:
        """Carry out a local process's request. Raises `_Park` (from `_conn`,
        before any side effect) when it needs a connection still being made."""
        tag = m[0]
        if tag == "$dist_send" and len(m) == 4:
            self._send(m[1], m[2], m[3])
        elif tag == "$dist_gen_call" and len(m) == 5:
            # A remote call (otp/dist/_route.py's call): MONITOR_P, then the
            # request, queued together (they leave in one write).
            self._monitor_out(m[1], m[2], m[3])
            if m[2] in self.out_mons:
                self.calls[m[2]] = m[1]
            self._send(m[1], m[3], m[4])
        elif tag == "$dist_monitor" and len(m) == 4:
            self._monitor_out(m[1], m[2], m[3])
        elif tag == "$dist_demonitor" and len(m) == 3:
            self.calls.pop(m[2], None)
            self._demonitor_out(m[2])
        elif tag == "$dist_monitor_node" and len(m) == 4:
            self._monitor_node(m[1], m[2], m[3])
        elif tag == "$dist_link" and len(m) == 3:
            self._link_out(m[1], m[2])
        elif tag == "$dist_unlink" and len(m) == 3:
            if m[2] in self.links.get(m[1], ()):
                self._link_del(m[1], m[2])
                self._send_control(m[2].node, (UNLINK_ID, next(self.unlink_ids), m[1], m[2]))
        elif tag == "$dist_exit" and len(m) == 4:
            c = self._conn(m[2].node)
            if c is not None:
                self._write(c, (EXIT2, m[1], m[2], _reason(m[3])))
        elif tag == "$dist_spawn" and len(m) == 9:
            self._spawn_out(*m[1:])
        elif tag == "$dist_call" and len(m) == 3:
            # From the call primitive: (label, (caller, ref[, trace id]), request).
            _runtime.send(Pid(m[1][0]), (m[1][1], self._answer(m[2])))
        elif tag == "io_request" and len(m) == 4:
            # We are the group leader of rpc calls made from this node: answer
            # output requests so the remote function does not hang on them.
            reply = Atom("ok") if m[3][:1] == ("put_chars",) else (Atom("error"), Atom("enotsup"))
            self._send_term(m[1], (Atom("io_reply"), m[2], reply))

    def _answer(self, request: Any) -> Any:
        if request == ("nodes",):
            return self.node.nodes()
        if request == ("info",):
            return {"name": self.name, "creation": self.node.creation, "port": self.node.port}
        return ("error", "unknown_request")

    def _watch(self, watcher: Pid) -> None:
        """Monitor a local process that holds remote monitors, once, until it
        ends: as in Erlang, the monitors of a process that ends are removed,
        so the other nodes are told (DEMONITOR_P) instead of keeping them for
        a process that is gone. Kept while it lives (one dict lookup per
        call, none of the runtime's work)."""
        if watcher in self.watched or watcher == self.p.pid:
            return
        try:
            lref = _runtime.monitor(watcher)
        except BadArg:
            return
        # A process already gone gives DOWN "noproc", read after what it sent
        # (on the same connection): its monitors are dropped then.
        self.watched[watcher] = lref
        self.mon_watched[lref] = watcher

    def _watcher_down(self, watcher: Pid) -> None:
        del self.watched[watcher]
        # Everything it sent was read before its end (one connection, in
        # order): these are all the monitors it will ever hold.
        for ref in [r for r, e in self.out_mons.items() if e[1] == watcher]:
            self.calls.pop(ref, None)
            self._demonitor_out(ref)
        for node in list(self.node_watchers):
            w = self.node_watchers[node]
            if w.pop(watcher, None) is not None and not w:
                del self.node_watchers[node]

    def _local_down(self, m: DOWN) -> None:
        watcher = self.mon_watched.pop(m.ref, None)
        if watcher is not None:
            self._watcher_down(watcher)
            return
        local = self.mon_links.pop(m.ref, None)
        if local is not None:
            # A local party of links across nodes ended (however it ended:
            # a SIGKILL is "killed"): EXIT to each remote one.
            self.link_mons.pop(local, None)
            for remote in self.links.pop(local, ()):
                self._send_control(remote.node, (EXIT, local, remote, _reason(m.reason)))
            return
        entry = self.in_by_lref.pop(m.ref, None)
        if entry is None:
            return
        peer, watcher, target, ref = entry
        self.in_mons.pop((peer, ref), None)
        self._send_control(peer, (MONITOR_P_EXIT, target, watcher, ref, _reason(m.reason)))

    def _monitor_out(self, watcher: Pid, ref: Any, target: Any) -> None:
        node = target.node if type(target) is Pid else target[1]
        c = self._conn(node)
        if c is None:
            _runtime.send(watcher, DOWN(ref, target, "noconnection"))
            return
        to = target if type(target) is Pid else Atom(target[0])
        self.out_mons[ref] = (node, watcher, target)
        self._watch(watcher)
        try:
            c.send((MONITOR_P, watcher, to, ref))
        except OSError:
            c.close()  # its reader sees the close: nodedown, noconnection

    def _demonitor_out(self, ref: Any) -> None:
        entry = self.out_mons.pop(ref, None)
        if entry is not None:
            node, watcher, target = entry
            to = target if type(target) is Pid else Atom(target[0])
            # Lazily: after a call, it rides with the next call's packets (the
            # monitor is ours to forget already: a MONITOR_P_EXIT that crosses
            # it finds no entry and is dropped).
            self._send_control(node, (DEMONITOR_P, watcher, to, ref), later=True)

    def _answered(self, to: Pid, message: tuple[Any, Any]) -> tuple[Any, Any]:
        """A remote call's reply, `(ref, reply)`, on its way to the caller:
        the call is over, so its monitor goes now (DEMONITOR_P, lazily), and
        the caller is told so by the tag's type (`_AnsweredRef`) instead of
        sending `$dist_demonitor` back: one local message less per call.

        Ordering: the monitor is dropped *before* the reply is delivered, so
        a MONITOR_P_EXIT behind the reply (the server ended right after
        answering) finds no entry, and the caller never sees a DOWN for a
        call that returned. A reply that reaches the caller by another road
        (a process of this node answering for the server) carries a plain
        Ref; the caller then sends `$dist_demonitor` as before."""
        ref = message[0]
        if self.calls.get(ref) != to:
            return message  # the same Ref, to someone else: not the reply
        del self.calls[ref]
        self._demonitor_out(ref)
        return (_AnsweredRef(ref), message[1])

    def _monitor_node(self, watcher: Pid, node: str, flag: bool) -> None:
        if not flag:
            self.node_watchers.get(node, {}).pop(watcher, None)
            return
        if self._conn(node) is None:
            self._nodedown_to(watcher, node)
            return
        w = self.node_watchers.setdefault(node, {})
        w[watcher] = w.get(watcher, 0) + 1
        self._watch(watcher)

    def _nodedown_to(self, watcher: Pid, node: str) -> None:
        # As a signal, not a plain message: the watcher's runtime counts its
        # node monitors down as it reads them (otp/dist/_route.py), so that
        # if this process dies it knows which are still owed a nodedown.
        self._signal(watcher, DistSignal("nodedown", self.p.pid, node))

    # -- links and exit signals across nodes ----------------------------------

    def _signal(self, local: Pid, signal: DistSignal) -> None:
        """Hand `local` a signal from a remote process (Process.dist_signal)."""
        self.p.send_signal(local, _codec.EXIT, _codec.dumps(signal)[1])

    def _link_add(self, local: Pid, remote: Pid) -> bool:
        """Hold the node's half of a link; False for a link to ourselves."""
        remotes = self.links.get(local)
        if remotes is None:
            try:
                ref = _runtime.monitor(local)
            except BadArg:
                return False  # net_kernel: it never ends while the node is up
            # A local process already gone gives DOWN "noproc" at once, read
            # after what is queued: the peer then gets EXIT noproc, as erl
            # answers a LINK to a dead process.
            self.links[local] = remotes = set()
            self.link_mons[local] = ref
            self.mon_links[ref] = local
        remotes.add(remote)
        return True

    def _link_del(self, local: Pid, remote: Pid) -> None:
        remotes = self.links.get(local)
        if remotes is None:
            return
        remotes.discard(remote)
        if not remotes:
            del self.links[local]
            ref = self.link_mons.pop(local)
            del self.mon_links[ref]
            _runtime.demonitor(ref, flush=True)

    def _is_local(self, pid: Any) -> bool:
        return type(pid) is Pid and pid.node == self.name and pid != self.p.pid

    def _link_in(self, remote: Any, local: Any) -> None:
        """LINK from a peer's process to one of ours."""
        if type(remote) is Pid and self._is_local(local) and self._link_add(local, remote):
            self._signal(local, DistSignal("link", remote))

    def _unlink_in(self, remote: Any, local: Any) -> None:
        if remote in self.links.get(local, ()):
            self._link_del(local, remote)
            self._signal(local, DistSignal("unlink", remote))

    def _exit_in(self, remote: Any, local: Any, reason: Any) -> None:
        """EXIT: a link broke on the peer's side (its process ended)."""
        if remote in self.links.get(local, ()):
            self._link_del(local, remote)
            self._signal(local, DistSignal("exit", remote, _local_reason(reason)))

    def _exit2_in(self, remote: Any, local: Any, reason: Any) -> None:
        """EXIT2: `exit(Pid, Reason)` from a peer's process."""
        if type(remote) is not Pid or not self._is_local(local):
            return
        if reason == "kill":
            _runtime.exit(local, "kill")  # SIGKILL, untrappable, as locally
        else:
            self._signal(local, DistSignal("exit2", remote, _local_reason(reason)))

    def _link_out(self, local: Pid, remote: Pid) -> None:
        """`otp.link(remote)` from a local process (which holds its half)."""
        c = self._conn(remote.node)
        if c is None:
            # As erl: a link to a node that cannot be reached breaks at once.
            self._signal(local, DistSignal("exit", remote, "noconnection"))
            return
        if self._link_add(local, remote):
            self._write(c, (LINK, local, remote))

    # -- spawning across nodes ------------------------------------------------

    def _spawn_out(
        self,
        requester: Pid,
        ref: Any,
        node: str,
        module: str,
        function: str,
        arity: int,
        args: bytes,
        opts: tuple[str, ...],
    ) -> None:
        """A local process's `otp.spawn(..., node=node)`: SPAWN_REQUEST."""
        c = self._conn(node)
        if c is None:
            _runtime.send(requester, ("$spawn_reply", ref, "noconnection"))
            return
        self.spawns[ref] = (node, requester)
        # We are the group leader of what we start elsewhere (its output is
        # answered by _local's io_request branch, as for rpc calls).
        control = (
            SPAWN_REQUEST,
            ref,
            requester,
            self.p.pid,
            (Atom(module), Atom(function), arity),
            [Atom(o) for o in opts],
        )
        try:
            c.send_encoded(control, args)
        except OSError:
            c.close()  # its reader sees the close: nodedown answers the request

    def _spawn_reply(self, control: tuple[Any, ...]) -> None:
        _, ref, _to, flags, result = control[:5]
        entry = self.spawns.pop(ref, None)
        if entry is None:
            return
        node, requester = entry
        if type(result) is Pid:
            # Before the reply: the requester holds the link (and we its
            # monitor) before it can read anything else from the new process.
            if flags & 1 and self._link_add(requester, result):
                self._signal(requester, DistSignal("link", result))
            if flags & 2:
                self.out_mons[ref] = (node, requester, result)
                self._watch(requester)
            _runtime.send(requester, ("$spawn_reply", ref, result))
        else:
            _runtime.send(requester, ("$spawn_reply", ref, str(result)))

    def _spawn_in(self, peer: str, control: tuple[Any, ...], args: Any) -> None:
        """SPAWN_REQUEST from a peer (erl's `spawn(Node, M, F, A)` and ours):
        start `M:F(*A)` in a new process of this node (`_route.run_mfa`), with
        the link and monitor set up here before the reply goes out."""
        _, ref, requester, _group_leader, mfa, opts = control[:6]

        def reply(result: Any, flags: int = 0) -> None:
            self._send_control(peer, (SPAWN_REPLY, ref, requester, flags, result))

        if not (
            type(requester) is Pid
            and type(mfa) is tuple
            and len(mfa) == 3
            and type(mfa[0]) is Atom
            and type(mfa[1]) is Atom
            and type(args) is list
            and type(opts) is list
        ):
            reply(Atom("badarg"))
            return
        link = "link" in opts
        monitor = any(o == "monitor" or (type(o) is tuple and o[:1] == ("monitor",)) for o in opts)
        module, function = str(mfa[0]), str(mfa[1])
        try:
            pid = _node.spawn(
                _route.run_mfa,
                (module, function, tuple(args), {}, requester if link else None),
                {},
                False,
                f"{module}:{function}",
            )
        except (OSError, OTPError):
            reply(Atom("system_limit"))
            return
        flags = 0
        if link and self._link_add(pid, requester):
            flags |= 1
        if monitor:
            lref = _runtime.monitor(pid)
            self.in_mons[(peer, ref)] = lref
            self.in_by_lref[lref] = (peer, requester, pid, ref)
            flags |= 2
        # Sent now, before we read anything else: nothing the new process
        # does (its messages, its end) can reach the requester before this.
        reply(pid, flags)

    # -- writing to peers -----------------------------------------------------

    def _conn(self, node: str) -> Any:
        """The connection to `node`; None if it cannot be made.

        When there is none yet, it is made in a thread of its own (an epmd
        lookup, a TCP connect and a handshake can take seconds against a
        host that does not answer) and `_Park` is raised: the request that
        needed it waits, with every later one from the same sender for the
        same node (`_node_of`), and is carried out when the attempt ends
        (`_dialled`). As Erlang buffers per connection. Meanwhile this loop
        serves everything else: one dead node does not stall the others,
        as Erlang's net_kernel sets connections up in processes of their own.
        """
        c = self.node.connections.get(node)  # a dict read: the lock is for opening
        if c is not None:
            return c
        if node == self.name or node in self.unreachable:
            return None
        if node not in self.dialling:
            self.dialling.add(node)
            threading.Thread(
                target=self._dial, args=(node,), name=f"dist-connect {node}", daemon=True
            ).start()
        raise _Park(node)

    def _dial(self, node: str) -> None:
        # In its own thread: DistNode.connect registers the connection (and
        # the pump takes it) before the router hears of it.
        try:
            self.node.connect(node)
            ok = True
        except Exception:  # OSError, OTPError, a handshake refused...
            ok = False
        self._queue(("dialled", node, ok))

    def _dialled(self, node: str, ok: bool) -> None:
        """The attempt to connect to `node` ended: carry out the requests that
        waited for it, in each sender's order. Failed, they meet a node that
        cannot be reached (`_conn` is None for it meanwhile): sends dropped,
        monitors DOWN and links broken with noconnection, as in Erlang. The
        next request after tries again."""
        self.dialling.discard(node)
        senders = self.parked_on.pop(node, [])
        if not ok:
            self.unreachable.add(node)
        try:
            for sender in senders:
                self._unpark(sender, node)
        finally:
            self.unreachable.discard(node)

    def _unpark(self, sender: Any, node: str) -> None:
        q = self.parked.get((sender, node))
        while q:
            m = q[0]
            try:
                self._do_local(m)
            except _Park:
                # Connected and lost again before we got here: a new attempt
                # is under way; the rest waits for it.
                self.parked_on.setdefault(node, []).append(sender)
                return
            q.popleft()
            if m[0] in ("$dist_gen_call", "$dist_monitor") and len(m) > 2:
                self.parked_refs.pop(m[2], None)
        self.parked.pop((sender, node), None)

    def _send(self, sender: Pid, dest: Any, data: bytes) -> None:
        control: tuple[Any, ...]
        if type(dest) is Pid:
            node, control = dest.node, (SEND, _EMPTY, dest)
        else:
            node, control = dest[1], (REG_SEND, sender, _EMPTY, Atom(dest[0]))
        c = self._conn(node)
        if c is None:
            return  # unreachable: dropped, as Erlang drops a send to a down node
        try:
            if c.pump is None:
                c.send_encoded(control, data)  # not pumped: its own framing
                return
            # The same few controls repeat (one per sender and destination):
            # encoded once. A Pid's bytes carry its node's creation, so that
            # is part of the key (a restarted peer gets fresh bytes).
            codec = self.node.codec
            key = (control, codec.creations.get(node))
            ctl = self.controls.get(key)
            if ctl is None:
                if len(self.controls) >= _CONTROLS:
                    self.controls.clear()
                ctl = self.controls[key] = b"p" + codec.encode(control)
            c.pump.write(_LEN.pack(len(ctl) + len(data)) + ctl + data)
        except OSError:
            c.close()

    def _write(self, c: Any, control: tuple[Any, ...]) -> None:
        try:
            c.send(control)
        except OSError:
            c.close()  # its reader sees the close: nodedown, noconnection

    def _send_control(self, node: str, control: tuple[Any, ...], later: bool = False) -> None:
        with self.node._lock:
            c = self.node.connections.get(node)
        if c is not None:
            try:
                if later and c.pump is not None:
                    c.pump.send_later(control)  # otp/dist/_pump.py
                else:
                    c.send(control)
            except OSError:
                c.close()

    def _send_term(self, to: Any, message: Any) -> None:
        if type(to) is Pid and to.node != self.name:
            c = self._conn(to.node)
            if c is not None:
                with contextlib.suppress(OSError, EncodeError):
                    c.send((SEND, _EMPTY, to), message, has_message=True)


def _dest_node(dest: Any) -> str:
    return str(dest.node) if type(dest) is Pid else str(dest[1])


class _Park(Exception):
    """Raised by `_Router._conn`: the request needs a connection to `node`
    that is still being made."""

    def __init__(self, node: str) -> None:
        super().__init__(node)
        self.node = node


def _local_reason(reason: Any) -> Any:
    """An exit reason from a peer, as a local one reads: `killed`, not
    `Atom('killed')` (equal either way, Atom being a str; this is for the
    reports and logs that show it), and `("shutdown", x)` for {shutdown, X}.
    The reverse of `_reason`."""
    if type(reason) is Atom:
        return str(reason)
    if type(reason) is tuple and reason and type(reason[0]) is Atom:
        return (str(reason[0]), *reason[1:])
    return reason


def _reason(reason: Any) -> Any:
    # Exit reasons become atoms where Erlang has them as atoms ("normal",
    # "shutdown", "noproc"...), and so does the tag of a tagged tuple
    # (("shutdown", x) is {shutdown, X}); a reason with no term form (a
    # Crash) travels as its text. Atom == str: Python peers see no change.
    if type(reason) is str:
        return Atom(reason)
    if type(reason) is tuple and reason and type(reason[0]) is str:
        reason = (Atom(reason[0]), *reason[1:])
    try:
        _etf.encode(reason)
        return reason
    except EncodeError:
        return repr(reason)
