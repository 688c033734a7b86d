"""A distributed node's connection owner: listener, epmd registration, one
connection per peer node, ticks, and the control messages it answers itself.

```python
node = DistNode("py@127.0.0.1", cookie="SECRET").start()
node.register("echo", lambda sender, msg: node.send(sender, msg))
...                     # erl: net_adm:ping('py@127.0.0.1') -> pong
node.stop()
```

Threads, not processes: one acceptor, one reader per connection, one ticker.
Every packet a connection reads is dispatched in its reader thread, in
arrival order, so one peer's messages are seen in the order it sent them.
With a `pump` (the dist process's `otp.dist._pump.Pump`), connections
(plain TCP and TLS) have no reader thread: that event loop reads them, in
order too, and buffers their writes.

One connection per pair of nodes, as net_kernel keeps it (`connect`): a
handshake under way with a node, ours or its, is waited for rather than
doubled; when two nodes connect to each other at once, the attempt of the
greater name wins on both sides (the handshake's `nok` / `ok_simultaneous`);
and a node that comes back under a name we still hold a connection for
(`alive`, answered `true`) replaces it, the stale one being lost first
(nodedown), as any lost connection.

What it answers by itself:

- `net_kernel` is a name that can be monitored (MONITOR_P to it is kept, not
  answered with noproc) and that answers `{is_auth, Node}` with `yes`: that is
  what `net_adm:ping` needs to return `pong` (distribution.md, pitfall 2).
- MONITOR_P to a name nobody holds is answered at once with MONITOR_P_EXIT
  `noproc`, as erl does.

What it hands on: SEND and REG_SEND to `handlers`, callables registered by
name (`register`) or for every Pid-addressed message (`on_send`). The bridge
into the runtime's processes is one such handler.

Listening, and who may connect
------------------------------
The listener binds `host` (127.0.0.1 by default). A non-loopback address
over plain TCP is refused at construction, before anything binds, unless
`tls` is given (every connection then runs TLS first, with mutual
certificate checks: `otp.dist._tls`) or `allow_plain_tcp=True` says the
network is trusted. Every accepted connection gets its handshake in a
thread of its own under a deadline (`_handshake.HANDSHAKE_TIMEOUT`), at
most `MAX_PENDING` at once: a silent, slow or malformed peer is dropped
without holding up the others, and a wrong cookie, an untrusted
certificate, a bad packet or an absurd length closes that connection only
(`refused` keeps the last reasons, for logs and tests).

The port mapper
---------------
`start` registers the node's name and port with epmd. When nothing listens
on epmd's port, it starts a port mapper of its own in this process
(`otp.dist._portmapper`, whose docstring explains the lifetime) and
registers there. A thread watches the registration: if the mapper goes
away (its owning node stopped), the node registers again, starting a
mapper itself if no other node has yet.

Links, exit signals (LINK, UNLINK_ID, EXIT, EXIT2) and SPAWN_REQUEST /
SPAWN_REPLY go to `on_signal`: the dist process handles them
(`otp.dist._process`); a bare DistNode ignores them.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from .._exceptions import OTPError
from .._terms import Pid, Ref
from . import _epmd, _etf, _handshake, _portmapper, _tls
from ._etf import Atom

__all__ = ["DistNode"]

# Control message opcodes (ERTS User's Guide, "Distribution Protocol").
LINK = 1
SEND = 2
EXIT = 3
UNLINK = 4
REG_SEND = 6
EXIT2 = 8
SEND_TT = 12
EXIT_TT = 13
REG_SEND_TT = 16
EXIT2_TT = 18
MONITOR_P = 19
DEMONITOR_P = 20
MONITOR_P_EXIT = 21
SEND_SENDER = 22
SPAWN_REQUEST = 29
SPAWN_REQUEST_TT = 30
SPAWN_REPLY = 31
SPAWN_REPLY_TT = 32
UNLINK_ID = 35
UNLINK_ID_ACK = 36

_EMPTY = Atom("")
_NOPROC = Atom("noproc")

Handler = Callable[[Any, Any], None]  # (sender Pid or None, message)

# Handshakes in progress at once; beyond, new connections are closed at once
# (erl bounds its pending TLS accepts the same way): a flood of silent
# connections cannot make a thread each.
MAX_PENDING = 64
# How long `start` keeps trying to register when port mappers come and go
# (two nodes racing to start one, an owner stopping at that moment).
REGISTER_DEADLINE = 10.0


def _split(node: str) -> tuple[str, str]:
    alive, _, host = node.partition("@")
    if not alive or not host:
        raise OTPError(f"a node name is name@host: {node!r}")
    return alive, host


class _Attempt:
    """A handshake under way with `peer`: ours ("out") or its ("in")."""

    __slots__ = ("direction", "peer")

    def __init__(self, direction: str, peer: str) -> None:
        self.direction = direction
        self.peer = peer


class DistNode:
    """The distributed side of one node (see the module docstring).

    Args:
        name: `alive@host`, e.g. `"py@127.0.0.1"` (long) or `"py@vm"` (short).
        cookie: the shared secret; None reads (or creates) `~/.erlang.cookie`.
        port: the listening port; 0 picks a free one.
        host: the address to listen on. Loopback unless `tls` is given or
            `allow_plain_tcp`: a cookie is no protection on an open network
            (distribution.md). "0.0.0.0" is every interface.
        allow_plain_tcp: allow a non-loopback `host` without TLS.
        tls: an `otp.dist._tls.TLS`: every connection, both ways, runs TLS
            (mutual certificates, checked against its `cafile`) before the
            handshake, as erl's `inet_tls_dist`.
        epmd: epmd's port (default `ERL_EPMD_PORT` or 4369).
        portmapper: start a port mapper of our own when no epmd answers.
        ticktime: `net_ticktime` in seconds: a tick is sent after a quarter of
            it without traffic, and a peer silent for all of it is dropped.
    """

    def __init__(
        self,
        name: str,
        cookie: str | None = None,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        allow_plain_tcp: bool = False,
        tls: _tls.TLS | None = None,
        epmd: int | None = None,
        portmapper: bool = True,
        ticktime: float = 60.0,
    ) -> None:
        _split(name)
        # Before anything binds (a refused configuration must never be
        # reachable, not even for a moment).
        _tls.check_listen(host, tls, allow_plain_tcp)
        self.tls = tls
        self.portmapper = portmapper
        self.mapper: _portmapper.PortMapper | None = None  # ours, if we started one
        self.name = name
        self.cookie = _handshake.load_cookie(cookie)
        self.host = host
        self.port = port
        self.epmd = epmd
        self.ticktime = ticktime
        self.creation = 0
        self.codec = _etf.Codec(node=name)
        self.connections: dict[str, _handshake.Connection] = {}
        self.handlers: dict[str, Handler] = {}
        self.on_send: Callable[[Pid, Any], None] | None = None
        # REG_SEND to a name without a handler: (sender, name, message).
        self.on_reg_send: Callable[[Any, str, Any], None] | None = None
        # Whether a name is held here (MONITOR_P to it is kept, not noproc).
        self.name_exists: Callable[[str], bool] = lambda name: False
        self.on_nodedown: Callable[[str], None] | None = None
        # A connection is up: (peer node, peer's creation). Called before its
        # reader starts, so before anything the peer sends is dispatched.
        self.on_nodeup: Callable[[str, int], None] | None = None
        # Every control message this class does not answer itself (it keeps
        # net_kernel's is_auth and monitors, and UNLINK_ID acks): (peer node,
        # control, message). When set, `handlers`, `on_send` and
        # `on_reg_send` are not used: the dist process routes everything.
        self.on_signal: Callable[[str, tuple[Any, ...], Any], None] | None = None
        # An event loop that reads and writes plain-TCP connections itself
        # (the dist process's `otp.dist._pump.Pump`); None: a reader thread
        # per connection.
        self.pump: Any = None
        # (peer address, why) of the last refused connections: for tests and
        # logs; bounded, since anyone who can connect can add to it.
        self.refused: collections.deque[tuple[str, str]] = collections.deque(maxlen=100)
        # ref -> (peer node, monitored name, monitoring Pid)
        self._monitors: dict[Ref, tuple[str, Any, Any]] = {}
        self._lock = threading.RLock()
        # Handshakes under way, by peer node: ours ("out") or the peer's
        # ("in"), at most one each (see connect). Waiters for a connection
        # sleep on _changed, told when one is added or an attempt ends.
        self._attempts: dict[str, _Attempt] = {}
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self._registration: _epmd.Registration | None = None
        self._epmd_lock = threading.Lock()  # _registration and mapper vs stop()
        self._pending = threading.BoundedSemaphore(MAX_PENDING)
        self._server_ctx: Any = None
        self._client_ctx: Any = None

    # -- life cycle -------------------------------------------------------------

    def start(self) -> DistNode:
        """Listen, register with epmd (or our own port mapper), start
        accepting; returns self."""
        if self.tls is not None:
            # Loaded first: a missing or mismatched file is an error before
            # anything listens.
            self._server_ctx = self.tls.server_context()
            self._client_ctx = self.tls.client_context()
        host = "127.0.0.1" if self.host == "localhost" else self.host
        lsock = socket.socket(
            socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM
        )
        try:
            lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            lsock.bind((host, self.port))
            lsock.listen(128)
            self._listener = lsock
            self.port = lsock.getsockname()[1]
            self._registration = self._register()
        except BaseException:
            lsock.close()
            self._stop_mapper()
            raise
        self.creation = self._registration.creation
        self.codec.creation = self.creation
        self._spawn(self._accept_loop, "dist-accept")
        self._spawn(self._tick_loop, "dist-tick")
        self._spawn(self._epmd_watch, "dist-epmd")
        return self

    def stop(self) -> None:
        """Close every connection, unregister from epmd, stop our port
        mapper if we run one (the other nodes registered with it take over:
        see `otp.dist._portmapper`), stop the threads."""
        self._stopping.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
        with self._changed:
            conns = list(self.connections.values())
            self.connections.clear()
            self._changed.notify_all()  # a connect waiting for a handshake gives up
        for c in conns:
            c.close()
        # Under _epmd_lock: the watcher never installs a registration or a
        # mapper once _stopping is set, so nothing is left registered.
        with self._epmd_lock:
            reg, self._registration = self._registration, None
        if reg is not None:
            reg.close()
        self._stop_mapper()
        for t in list(self._threads):
            if t is not threading.current_thread():
                t.join(5)

    def _stop_mapper(self) -> None:
        with self._epmd_lock:
            mapper, self.mapper = self.mapper, None
        if mapper is not None:
            mapper.stop()

    # -- the port mapper ------------------------------------------------------------

    def _register(self) -> _epmd.Registration:
        """Register with the port mapper, starting ours if none answers.

        Two nodes may find no mapper at the same moment: one binds the port,
        the other's bind fails (EADDRINUSE) and it registers with the winner
        on its next try.
        """
        alive, _ = _split(self.name)
        deadline = time.monotonic() + REGISTER_DEADLINE
        delay = 0.01
        while True:
            try:
                return _epmd.register(alive, self.port, epmd=self.epmd)
            except _epmd.EpmdUnreachable:
                if not self.portmapper or self.mapper is not None:
                    raise
                if self._start_mapper():
                    continue
                if time.monotonic() > deadline:
                    raise
            # Another mapper is starting (or stopping) right now: retry soon.
            # Not a test's synchronisation: a bounded retry in the library.
            if self._stopping.wait(delay):
                raise _epmd.EpmdError("the node is stopping")
            delay = min(delay * 2, 0.5)

    def _start_mapper(self) -> bool:
        """Start our port mapper; False if another one holds the port."""
        mapper = _portmapper.PortMapper(
            port=self.epmd,
            addresses=_portmapper.default_addresses(
                None if _tls.is_loopback(self.host) else self.host
            ),
        )
        try:
            mapper.start()
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return False
            raise
        with self._epmd_lock:
            if not self._stopping.is_set():
                self.mapper = mapper
                return True
        mapper.stop()
        return False

    def _epmd_watch(self) -> None:
        """Register again whenever the registration ends (see the module
        docstring). The name stays with the same creation: this is the same
        incarnation of the node, only the mapper changed."""
        while not self._stopping.is_set():
            reg = self._registration
            if reg is None:
                return
            try:
                data = reg.sock.recv(64)
            except OSError:
                data = b""
            if data or self._stopping.is_set():
                continue  # a port mapper never speaks after its reply: ignored
            reg.close()
            # Ours, if we ran it, has failed: the next _register starts one.
            self._stop_mapper()
            delay = 0.01
            while not self._stopping.is_set():
                try:
                    new = self._register()
                except (OSError, OTPError):
                    # E.g. the old mapper closed our request while it stopped,
                    # or a name still held by a real epmd: try again, backing
                    # off (a bounded retry in the library, not a test's sleep).
                    if self._stopping.wait(delay):
                        return
                    delay = min(delay * 2, 1.0)
                    continue
                with self._epmd_lock:
                    if not self._stopping.is_set():
                        self._registration = new
                        new = None  # type: ignore[assignment]
                if new is not None:
                    new.close()
                break

    def __enter__(self) -> DistNode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, fn: Callable[..., None], name: str, *args: Any) -> None:
        t = threading.Thread(target=fn, args=args, name=name, daemon=True)
        # Forget finished threads (one per handshake and per connection ever
        # made): a long-lived node must not keep a list that only grows.
        self._threads = [x for x in self._threads if x.is_alive()]
        self._threads.append(t)
        t.start()

    # -- public calls -----------------------------------------------------------

    def register(self, name: str, handler: Handler) -> None:
        """Messages sent to `{name, this_node}` go to `handler(sender, message)`."""
        self.handlers[name] = handler

    def nodes(self) -> list[str]:
        with self._lock:
            return sorted(self.connections)

    def connect(self, node: str) -> _handshake.Connection:
        """The connection to `node`, opened (epmd lookup + handshake) if needed.

        One connection per pair of nodes, as Erlang's net_kernel keeps it:
        - While a handshake with `node` is under way (another thread's, or
          `node` connecting to us), wait for it instead of starting another.
        - When both nodes connect to each other at once, the attempt of the
          node with the greater name wins, on both sides, by the handshake's
          status: the other side answers ours `nok` (we then wait for its
          attempt, which we answer `ok_simultaneous`). Two connections kept
          and each side closing the one the other kept would lose both
          (nodedown, and every link and monitor over it broken).
        """
        deadline = time.monotonic() + 2 * _handshake.HANDSHAKE_TIMEOUT
        with self._changed:
            while True:
                c = self.connections.get(node)
                if c is not None:
                    return c
                if self._stopping.is_set():
                    raise OTPError(f"no connection to {node}: this node is stopping")
                if node not in self._attempts:
                    break
                if not self._changed.wait(max(0.0, deadline - time.monotonic())):
                    raise OTPError(f"no connection to {node}: a handshake under way did not end")
            mine = self._attempts[node] = _Attempt("out", node)
        c = None
        try:
            c = self._dial(node, mine)
        except _handshake.Simultaneous:
            pass  # `node`'s own attempt is the one: waited for below
        except BaseException:
            with self._changed:
                if self._attempts.get(node) is mine:
                    del self._attempts[node]
                self._changed.notify_all()
            raise
        with self._changed:
            won = self._attempts.get(node) is mine
            if won:
                del self._attempts[node]
            if c is not None and won:
                # Register before the reader starts (distribution.md, pitfall
                # 4): an early reply must find this connection, not open a
                # second one. Waiters are told after.
                self._add(c)
                self._changed.notify_all()
                return c
            self._changed.notify_all()
        if c is not None:
            c.close()  # we answered `node`'s attempt ok_simultaneous: that one stays
        with self._changed:
            self._changed.wait_for(
                lambda: node in self.connections or self._stopping.is_set(),
                max(0.0, deadline - time.monotonic()),
            )
            c = self.connections.get(node)
        if c is None:
            raise OTPError(f"no connection to {node} after a simultaneous connect")
        return c

    def _dial(self, node: str, attempt: _Attempt) -> _handshake.Connection:
        """epmd lookup, TCP connect, TLS if configured, handshake (no lock held)."""
        alive, host = _split(node)
        found = _epmd.port_please(alive, host, epmd=self.epmd)
        if found is None:
            raise OTPError(f"epmd on {host} does not know {alive!r}")
        sock = socket.create_connection((host, found[0]), timeout=_handshake.HANDSHAKE_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def still_ours() -> bool:
            # Asked when `node` holds a connection to us: go on unless our
            # attempt was superseded meanwhile (we gave way to its attempt).
            return self._attempts.get(node) is attempt

        try:
            if self._client_ctx is None:
                return _handshake.connect(
                    sock, self.name, self.cookie, self.creation, alive=still_ours
                )
            return self._connect_tls(sock, node, host, still_ours)
        except BaseException:
            sock.close()
            raise

    def _status_for(self, peer: str, attempt: list[_Attempt]) -> str:
        """What to answer `peer`'s send_name with (Erlang's rule, see connect);
        the attempt it starts, if any, is put in `attempt`."""
        with self._changed:
            current = self._attempts.get(peer)
            if current is None:
                # Connected already: the peer tells whether that connection
                # is a stale one to replace (alive: true) or its attempt is
                # one it gave up (false).
                answer = "alive" if peer in self.connections else "ok"
            elif current.direction == "out" and peer > self.name:
                answer = "ok_simultaneous"  # ours gives way: connect sees it lost
            else:
                return "nok"  # ours goes on (or the peer is already connecting)
            attempt.append(_Attempt("in", peer))
            self._attempts[peer] = attempt[0]
            return answer

    def _connect_tls(
        self, sock: socket.socket, node: str, host: str, alive: Callable[[], bool]
    ) -> _handshake.Connection:
        try:
            tsock = _tls.TLSSocket.client(
                sock, self._client_ctx, host, _handshake.HANDSHAKE_TIMEOUT
            )
        except OSError as e:
            raise _handshake.HandshakeError(f"TLS with {node} failed: {e}") from None
        # inet_tls_dist runs the handshake with {packet, 4} (distribution.md,
        # pitfall 1).
        return _handshake.connect(
            tsock, self.name, self.cookie, self.creation, packet=4, alive=alive
        )

    def send(self, dest: Any, message: Any) -> None:
        """Send to a remote Pid, or to `(name, node)`."""
        if type(dest) is Pid:
            self.connect(dest.node).send((SEND, _EMPTY, dest), message, has_message=True)
        elif type(dest) is tuple and len(dest) == 2:
            name, node = dest
            self.connect(node).send(
                (REG_SEND, self.pid, _EMPTY, Atom(name)), message, has_message=True
            )
        else:
            raise OTPError(f"not a remote destination: {dest!r}")

    @property
    def pid(self) -> Pid:
        """The Pid this node's messages are sent from (its net_kernel stand-in)."""
        return Pid((self.name, 1, 0))

    # -- connections ------------------------------------------------------------

    def _add(self, c: _handshake.Connection) -> None:
        c.codec = self.codec
        with self._lock:
            old = self.connections.get(c.peer)
            self.connections[c.peer] = c
        if old is not None:
            # A stale connection replaced (the peer restarted and said so:
            # alive, true): it is lost as any other, nodedown and all, before
            # the new one is read (so links and monitors of the earlier run
            # break with noconnection first). Its own reader then finds it
            # replaced and stays quiet.
            old.close()
            for ref, (node, _, _) in list(self._monitors.items()):
                if node == c.peer:
                    self._monitors.pop(ref, None)
            if self.on_nodedown is not None and not self._stopping.is_set():
                self.on_nodedown(c.peer)
        if self.on_nodeup is not None:
            self.on_nodeup(c.peer, c.creation)
        if self.pump is not None and self.pump.add(c):
            return  # read in the dist process's own loop (otp/dist/_pump.py)
        self._spawn(self._read_loop, f"dist-read {c.peer}", c)

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                sock, addr = self._listener.accept()
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Out of descriptors: keep listening (a flood must not
                    # stop the node accepting for good); wait a little.
                    if self._stopping.wait(0.1):
                        return
                    continue
                return
            if not self._pending.acquire(blocking=False):
                self.refused.append((str(addr), "too many handshakes in progress"))
                sock.close()
                continue
            # The handshake runs in a thread of its own so that a slow or
            # silent peer cannot stall every other node's connection attempt.
            self._spawn(self._handshake_in, "dist-handshake", sock, addr)

    def _handshake_in(self, sock: socket.socket, addr: Any) -> None:
        attempt: list[_Attempt] = []  # the peer's attempt, once it has said its name
        c = None
        try:
            c = self._accept_one(sock, addr, attempt)
            if c is not None and self._stopping.is_set():
                c.close()
                c = None
        finally:
            self._pending.release()
            with self._changed:
                if attempt and self._attempts.get(attempt[0].peer) is attempt[0]:
                    del self._attempts[attempt[0].peer]
                if c is not None:
                    self._add(c)  # registered before the waiters look again
                self._changed.notify_all()

    def _accept_one(
        self, sock: socket.socket, addr: Any, attempt: list[_Attempt]
    ) -> _handshake.Connection | None:
        """TLS (if configured), then the handshake; None if refused (closed)."""

        def status(peer: str) -> str:
            return self._status_for(peer, attempt)

        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._server_ctx is None:
                return _handshake.accept(sock, self.name, self.cookie, self.creation, status=status)
            try:
                tsock = _tls.TLSSocket.server(sock, self._server_ctx, _handshake.HANDSHAKE_TIMEOUT)
            except OSError as e:
                # A plain-TCP node, an untrusted or missing certificate, or
                # garbage: refused before any distribution byte is read.
                raise _handshake.HandshakeError(f"TLS: {e}") from None
            return _handshake.accept(
                tsock, self.name, self.cookie, self.creation, packet=4, status=status
            )
        except _handshake.Simultaneous:
            # We were connecting to that node too, and ours goes on: not a
            # refusal of anything wrong.
            with contextlib.suppress(OSError):
                sock.close()
            return None
        except (_handshake.HandshakeError, OSError) as e:
            self.refused.append((str(addr), str(e)))
            with contextlib.suppress(OSError):
                sock.close()
            return None

    def _read_loop(self, c: _handshake.Connection) -> None:
        try:
            while True:
                packet = c.recv()
                if packet is None:
                    # A tick. Answer it unless we sent something lately: erl
                    # needs traffic from us, and two Python nodes must not
                    # bounce one tick between them forever.
                    if time.monotonic() - c.last_sent > 1.0:
                        c.tick()
                    continue
                self._dispatch(c, *packet)
        except (OSError, ConnectionError, _etf.DecodeError):
            pass
        finally:
            self._drop(c)

    def _drop(self, c: _handshake.Connection) -> None:
        with self._lock:
            if self.connections.get(c.peer) is c:
                del self.connections[c.peer]
            else:
                c = None  # type: ignore[assignment]
        if c is None:
            return
        c.close()
        for ref, (node, _, _) in list(self._monitors.items()):
            if node == c.peer:
                self._monitors.pop(ref, None)
        if self.on_nodedown is not None and not self._stopping.is_set():
            self.on_nodedown(c.peer)

    def _tick_loop(self) -> None:
        interval = self.ticktime / 4
        while not self._stopping.wait(interval / 2):
            now = time.monotonic()
            with self._lock:
                conns = list(self.connections.values())
            for c in conns:
                try:
                    if now - c.last_recv > self.ticktime:
                        c.close()  # silent peer: its reader sees the close and drops it
                    elif now - c.last_sent >= interval:
                        c.tick()
                except OSError:
                    c.close()

    # -- control messages ---------------------------------------------------------

    def _dispatch(self, c: _handshake.Connection, control: Any, message: Any) -> None:
        if type(control) is not tuple or not control or type(control[0]) is not int:
            raise _etf.DecodeError(f"not a control message: {control!r}")
        op = control[0]
        if self.on_signal is not None and not self._answered_here(op, control):
            self.on_signal(c.peer, control, message)
            return
        if op in (REG_SEND, REG_SEND_TT):
            _, sender, _, name = control[:4]
            self._reg_send(c, sender, str(name), message)
        elif op in (SEND, SEND_TT, SEND_SENDER):
            to = control[2]
            if self.on_send is not None and type(to) is Pid:
                self.on_send(to, message)
        elif op == MONITOR_P:
            _, sender, target, ref = control
            if type(target) is Atom and (
                target == "net_kernel" or target in self.handlers or self.name_exists(target)
            ):
                self._monitors[ref] = (c.peer, target, sender)
            else:
                c.send((MONITOR_P_EXIT, target, sender, ref, _NOPROC))
        elif op == DEMONITOR_P:
            self._monitors.pop(control[3], None)
        elif op == UNLINK_ID:
            # Acknowledge, as OTP 26 requires of every node. (A bare DistNode
            # holds no links; with the dist process, on_signal gets it: it
            # drops the link, then acks.)
            _, ident, sender, to = control
            c.send((UNLINK_ID_ACK, ident, to, sender))
        # LINK, EXIT, EXIT2, SPAWN_REQUEST...: only the dist process (on_signal)
        # handles them (otp/dist/_process.py).

    @staticmethod
    def _answered_here(op: int, control: tuple[Any, ...]) -> bool:
        # net_kernel is this class's own: ping must work whatever the dist
        # process is doing.
        if op in (REG_SEND, REG_SEND_TT):
            return len(control) >= 4 and control[3] == "net_kernel"
        if op in (MONITOR_P, DEMONITOR_P):
            return len(control) >= 4 and control[2] == "net_kernel"
        return False

    def _reg_send(self, c: _handshake.Connection, sender: Any, name: str, message: Any) -> None:
        if name == "net_kernel":
            # {'$gen_call', {From, Tag}, {is_auth, Node}} from net_adm:ping.
            match message:
                case ("$gen_call", (Pid() as frm, tag), ("is_auth", _)):
                    # Reply to the caller's pid; the tag ([alias|Ref] since
                    # OTP 24) goes back as it came (distribution.md, pitfall 3).
                    c.send((SEND, _EMPTY, frm), (tag, Atom("yes")), has_message=True)
            return
        handler = self.handlers.get(name)
        if handler is not None:
            handler(sender, message)
        elif self.on_reg_send is not None:
            self.on_reg_send(sender, name, message)

    def monitor_exit(self, name: str, watcher: Any, reason: Any) -> None:
        """Tell every peer monitor of `name` held by `watcher` that it ended
        with `reason` (MONITOR_P_EXIT), and forget those monitors."""
        for ref, (node, target, who) in list(self._monitors.items()):
            if target == name and who == watcher:
                self._monitors.pop(ref, None)
                with self._lock:
                    c = self.connections.get(node)
                if c is not None:
                    c.send((MONITOR_P_EXIT, Atom(name), watcher, ref, reason))
