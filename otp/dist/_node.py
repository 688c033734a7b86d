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

What it answers by itself:

- `net_kernel` is a name that can be monitored (MONITOR_P to it is kept, not
  answered with noproc) and that answers `{is_auth, Node}` with `yes`: that is
  what `net_adm:ping` needs to return `pong` (distribution.md, pitfall 2).
- MONITOR_P to a name nobody holds is answered at once with MONITOR_P_EXIT
  `noproc`, as erl does.

What it hands on: SEND and REG_SEND to `handlers`, callables registered by
name (`register`) or for every Pid-addressed message (`on_send`). The bridge
into the runtime's processes is one such handler.

Limits of this version: every connection is plain TCP (no TLS yet); there is
no port mapper of our own when no epmd runs; links, EXIT and SPAWN_REQUEST
from peers are ignored.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from .._exceptions import OTPError
from .._terms import Pid, Ref
from . import _epmd, _etf, _handshake
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
REG_SEND_TT = 16
MONITOR_P = 19
DEMONITOR_P = 20
MONITOR_P_EXIT = 21
SEND_SENDER = 22
UNLINK_ID = 35
UNLINK_ID_ACK = 36

_EMPTY = Atom("")
_NOPROC = Atom("noproc")

Handler = Callable[[Any, Any], None]  # (sender Pid or None, message)


def _split(node: str) -> tuple[str, str]:
    alive, _, host = node.partition("@")
    if not alive or not host:
        raise OTPError(f"a node name is name@host: {node!r}")
    return alive, host


class DistNode:
    """The distributed side of one node (see the module docstring).

    Args:
        name: `alive@host`, e.g. `"py@127.0.0.1"` (long) or `"py@vm"` (short).
        cookie: the shared secret; None reads (or creates) `~/.erlang.cookie`.
        port: the listening port; 0 picks a free one.
        host: the address to listen on. Only loopback unless `allow_remote`:
            a cookie is no protection on an open network (distribution.md).
        epmd: epmd's port (default `ERL_EPMD_PORT` or 4369).
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
        allow_remote: bool = False,
        epmd: int | None = None,
        ticktime: float = 60.0,
    ) -> None:
        _split(name)
        if not allow_remote and host not in ("127.0.0.1", "::1", "localhost"):
            raise OTPError(
                f"listening on {host} without TLS exposes this node to anyone with the "
                "cookie: pass allow_remote=True to do it anyway"
            )
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
        self.refused: list[tuple[str, str]] = []  # (peer address, why): for tests and logs
        # ref -> (peer node, monitored name, monitoring Pid)
        self._monitors: dict[Ref, tuple[str, Any, Any]] = {}
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self._registration: _epmd.Registration | None = None

    # -- life cycle -------------------------------------------------------------

    def start(self) -> DistNode:
        """Listen, register with epmd, start accepting; returns self."""
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind((self.host if self.host != "localhost" else "127.0.0.1", self.port))
        lsock.listen(64)
        self._listener = lsock
        self.port = lsock.getsockname()[1]
        alive, _ = _split(self.name)
        try:
            self._registration = _epmd.register(alive, self.port, epmd=self.epmd)
        except BaseException:
            lsock.close()
            raise
        self.creation = self._registration.creation
        self.codec.creation = self.creation
        self._spawn(self._accept_loop, "dist-accept")
        self._spawn(self._tick_loop, "dist-tick")
        return self

    def stop(self) -> None:
        """Close every connection, unregister from epmd, stop the threads."""
        self._stopping.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
        with self._lock:
            conns = list(self.connections.values())
            self.connections.clear()
        for c in conns:
            c.close()
        if self._registration is not None:
            self._registration.close()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(5)

    def __enter__(self) -> DistNode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, fn: Callable[..., None], name: str, *args: Any) -> None:
        t = threading.Thread(target=fn, args=args, name=name, daemon=True)
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
        """The connection to `node`, opened (epmd lookup + handshake) if needed."""
        with self._lock:
            c = self.connections.get(node)
            if c is not None:
                return c
            alive, host = _split(node)
            found = _epmd.port_please(alive, host, epmd=self.epmd)
            if found is None:
                raise OTPError(f"epmd on {host} does not know {alive!r}")
            sock = socket.create_connection((host, found[0]), timeout=_handshake.HANDSHAKE_TIMEOUT)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                c = _handshake.connect(sock, self.name, self.cookie, self.creation)
            except BaseException:
                sock.close()
                raise
            # Register before the reader starts (distribution.md, pitfall 4):
            # an early reply must find this connection, not open a second one.
            self._add(c)
            return c

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
            old.close()
        if self.on_nodeup is not None:
            self.on_nodeup(c.peer, c.creation)
        self._spawn(self._read_loop, f"dist-read {c.peer}", c)

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                sock, addr = self._listener.accept()
            except OSError:
                return
            # The handshake runs in a thread of its own so that a slow or
            # silent peer cannot stall every other node's connection attempt.
            self._spawn(self._handshake_in, "dist-handshake", sock, addr)

    def _handshake_in(self, sock: socket.socket, addr: Any) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            c = _handshake.accept(sock, self.name, self.cookie, self.creation)
        except _handshake.HandshakeError as e:
            self.refused.append((str(addr), str(e)))
            sock.close()
            return
        if self._stopping.is_set():
            c.close()
            return
        self._add(c)

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
            # Acknowledge, as OTP 26 requires of every node (we hold no links yet).
            _, ident, sender, to = control
            c.send((UNLINK_ID_ACK, ident, to, sender))
        # LINK, EXIT, EXIT2, UNLINK_ID_ACK...: not handled by this version.

    @staticmethod
    def _answered_here(op: int, control: tuple[Any, ...]) -> bool:
        # net_kernel is this class's own (ping must work whatever the dist
        # process is doing), and so are UNLINK_ID acks (we hold no links yet).
        if op in (REG_SEND, REG_SEND_TT):
            return len(control) >= 4 and control[3] == "net_kernel"
        if op in (MONITOR_P, DEMONITOR_P):
            return len(control) >= 4 and control[2] == "net_kernel"
        return op == UNLINK_ID

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
