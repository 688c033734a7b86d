"""Our own epmd: the port mapper a distributed node starts when none runs.

A distributed node needs a port mapper on its host: other nodes ask it for
the node's port by name. Erlang ships one, `epmd`; a host without Erlang has
none. So when `otp.node.start(name=...)` finds nothing listening on the
port mapper's port (`ERL_EPMD_PORT`, else 4369), its dist process starts a
`PortMapper` on that port and registers through it. It speaks the epmd
protocol (ERTS User's Guide, "EPMD Protocol") as `epmd` does, so `erl` and
`epmd -names` use it like the real one:

- `ALIVE2_REQ` -> `ALIVE2_X_RESP` (or `ALIVE2_RESP` for a peer whose highest
  handshake version is below 6): registers a name for as long as that TCP
  connection stays open. Accepted from this host only, as epmd does.
- `PORT_PLEASE2_REQ` -> `PORT2_RESP`: a name's port, type and versions.
- `NAMES_REQ`: the mapper's port, then `name N at port P` lines.
- `KILL_REQ` (`epmd -kill`) is always answered "NO" (epmd says it while
  names are registered, and ours always has its own node's): its lifetime
  is its node's (below). Anything else closes the connection.

```python
mapper = PortMapper(port=4369).start()   # OSError if the port is taken
mapper.names()                           # {"app": 40123, ...}
mapper.stop()
```

Who owns it, and what happens when its node stops
-------------------------------------------------
epmd is a daemon that outlives every node. Ours is a thread of one node's
dist process, because nothing a node starts may outlive it (its processes
are its OS children, stopped with it). So:

1. The first node on a host that finds no port mapper starts one; every
   later node (Python or erl) registers with it. If two nodes start at
   once, one binds the port and the other, refused, registers with it.
2. Each Python node watches its registration connection. When the owner
   stops (or is killed: the OS closes its sockets), every registration
   connection ends; each surviving Python node then re-registers, starting
   a mapper of its own if nobody has yet (again, one wins the port, the
   rest register with the winner). A node keeps its creation across that:
   it is the same incarnation, only the directory changed.
3. While that happens (milliseconds), lookups of those nodes fail, so a
   connection *opened* in that instant fails like any unreachable node;
   connections already open are untouched (the mapper is only consulted
   to open one).
4. An `erl` node registered with our mapper does not re-register (erl
   never does: it treats its epmd as permanent), so it is no longer found
   by name once the owning node stops. On a host that runs `erl` nodes
   next to Python ones, run the real `epmd` (`epmd -daemon`, or the
   `epmd.socket` systemd unit) and ours is never started.

Binding: loopback only (127.0.0.1, plus any loopback address the host's
own name resolves to, e.g. Debian's 127.0.1.1), unless the node listens on
a network address (TLS, or `allow_plain_tcp=True`): then that address too,
so that other machines can look its nodes up.

One thread, one `selectors` loop (epoll) for the listening sockets and every
connection, as epmd's own select loop; requests are tiny and answered at
once. Limits, as epmd's: a request longer than 1 KiB closes its connection,
a connection that has not completed a request within 10 s is closed, and
beyond 1024 connections new ones are refused.
"""

from __future__ import annotations

import contextlib
import ipaddress
import secrets
import selectors
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

from ._epmd import (
    ALIVE2_REQ,
    ALIVE2_RESP,
    ALIVE2_X_RESP,
    NAMES_REQ,
    PORT2_RESP,
    PORT_PLEASE2_REQ,
    epmd_port,
)

__all__ = ["PortMapper", "default_addresses"]

KILL_REQ = 107  # 'k'
MAX_REQUEST = 1024  # epmd's INBUF_SIZE: longer requests are refused
MAX_CONNECTIONS = 1024
IDLE_TIMEOUT = 10.0  # seconds a connection may take to send its request
MAX_NAME = 255  # characters in a node's alive part (epmd's limit)


def default_addresses(listen: str | None = None) -> list[str]:
    """The addresses the mapper binds: loopback, plus `listen` when the node
    listens on a network address (the wildcard "0.0.0.0" covers loopback)."""
    if listen in ("0.0.0.0", ""):
        return ["0.0.0.0"]
    addrs = ["127.0.0.1"]
    # A short node name (`app@myhost`) is looked up at `myhost`: when
    # /etc/hosts maps that to another loopback address (127.0.1.1 on Debian),
    # erl asks there, so listen there too.
    with contextlib.suppress(OSError):
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            a = str(info[4][0])
            if ipaddress.ip_address(a).is_loopback and a not in addrs:
                addrs.append(a)
    if listen and listen not in addrs and ":" not in listen:
        with contextlib.suppress(ValueError):
            if not ipaddress.ip_address(listen).is_loopback:
                addrs.append(listen)
    return addrs


@dataclass
class _Node:
    name: str
    port: int
    node_type: int
    protocol: int
    high: int
    low: int
    extra: bytes


@dataclass
class _Conn:
    sock: socket.socket
    local_peer: bool
    opened: float
    buf: bytearray = field(default_factory=bytearray)
    registered: str | None = None  # the name this connection holds


class PortMapper:
    """An epmd-compatible port mapper run by a thread (see the module docstring).

    Args:
        port: the port to listen on (None: `ERL_EPMD_PORT`, else 4369).
        addresses: the addresses to bind (default: `default_addresses()`).
        idle_timeout: seconds a connection may take to complete its request.
    """

    def __init__(
        self,
        port: int | None = None,
        addresses: list[str] | None = None,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        self.port = port or epmd_port()
        self.addresses = addresses or default_addresses()
        self.idle_timeout = idle_timeout
        self._nodes: dict[str, _Node] = {}
        self._creations: dict[str, int] = {}  # last creation given to each name
        self._conns: dict[int, _Conn] = {}
        self._lock = threading.Lock()  # guards _nodes for readers in other threads
        self._listeners: list[socket.socket] = []
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- life cycle -------------------------------------------------------------

    def start(self) -> PortMapper:
        """Bind every address and start serving; returns self.

        Raises OSError (EADDRINUSE) if another port mapper holds the port:
        nothing stays bound then.
        """
        try:
            for addr in self.addresses:
                family = socket.AF_INET6 if ":" in addr else socket.AF_INET
                s = socket.socket(family, socket.SOCK_STREAM)
                self._listeners.append(s)
                # SO_REUSEADDR: the port is free to bind again at once after a
                # previous mapper's connections linger in TIME_WAIT. Linux still
                # lets only one socket *listen* on the address, so two mappers
                # can never both hold it.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((addr, self.port))
                s.listen(128)
                s.setblocking(False)
        except BaseException:
            self._close_all()
            raise
        for s in self._listeners:
            self._sel.register(s, selectors.EVENT_READ, "listen")
        self._wake_r.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread = threading.Thread(target=self._loop, name="dist-portmapper", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: every registration ends (its holders see the close)."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self._thread is None:
            self._close_all()
            return
        with contextlib.suppress(OSError):
            self._wake_w.send(b"!")
        if self._thread is not threading.current_thread():
            self._thread.join(5)

    def names(self) -> dict[str, int]:
        """Every registered name with its port."""
        with self._lock:
            return {n.name: n.port for n in self._nodes.values()}

    def __enter__(self) -> PortMapper:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _close_all(self) -> None:
        # Listeners first: the nodes registered here re-register as soon as
        # their connection ends, and should find the port already free (to
        # take it over), not a listener about to close on them.
        for s in self._listeners:
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(s)
            s.close()
        self._listeners.clear()
        for c in list(self._conns.values()):
            self._close(c)
        with contextlib.suppress(OSError):
            self._sel.close()
        self._wake_r.close()
        self._wake_w.close()

    # -- the loop -----------------------------------------------------------------

    def _loop(self) -> None:
        try:
            while not self._stopping.is_set():
                for key, _ in self._sel.select(timeout=self.idle_timeout / 4):
                    if key.data == "listen":
                        self._accept(key.fileobj)  # type: ignore[arg-type]
                    elif key.data == "wake":
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(64)
                    else:
                        self._readable(key.data)
                self._sweep()
        finally:
            self._close_all()

    def _accept(self, lsock: socket.socket) -> None:
        try:
            sock, peer = lsock.accept()
        except OSError:
            return
        if len(self._conns) >= MAX_CONNECTIONS:
            sock.close()
            return
        sock.setblocking(False)
        c = _Conn(sock, _local_peer(sock, peer), time.monotonic())
        self._conns[sock.fileno()] = c
        self._sel.register(sock, selectors.EVENT_READ, c)

    def _sweep(self) -> None:
        now = time.monotonic()
        for c in list(self._conns.values()):
            if c.registered is None and now - c.opened > self.idle_timeout:
                self._close(c)

    def _close(self, c: _Conn) -> None:
        if self._conns.pop(c.sock.fileno(), None) is None:
            return
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(c.sock)
        if c.registered is not None:
            # The registration lasts as long as its connection: a node that
            # stops, or is killed, is forgotten here.
            with self._lock:
                self._nodes.pop(c.registered, None)
        c.sock.close()

    def _readable(self, c: _Conn) -> None:
        try:
            data = c.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close(c)
            return
        if c.registered is not None:
            return  # a registered node has nothing more to say: ignored, as epmd
        c.buf += data
        if len(c.buf) < 2:
            return
        (n,) = struct.unpack_from(">H", c.buf)
        if n < 1 or n + 2 > MAX_REQUEST or len(c.buf) > n + 2:
            self._close(c)  # an absurd length, or bytes past the request
            return
        if len(c.buf) == n + 2:
            keep = self._request(c, bytes(c.buf[2:]))
            c.buf.clear()
            if not keep:
                self._close(c)

    # -- requests -------------------------------------------------------------------

    def _request(self, c: _Conn, req: bytes) -> bool:
        """Answer one request; True to keep the connection (a registration)."""
        op = req[0]
        if op == ALIVE2_REQ:
            return self._alive2(c, req)
        if op == PORT_PLEASE2_REQ:
            self._port_please(c, req[1:])
        elif op == NAMES_REQ:
            with self._lock:
                lines = "".join(f"name {n.name} at port {n.port}\n" for n in self._nodes.values())
            self._reply(c, struct.pack(">I", self.port) + lines.encode("utf-8"))
        elif op == KILL_REQ and c.local_peer:
            self._reply(c, b"NO")
        return False

    def _alive2(self, c: _Conn, req: bytes) -> bool:
        if not c.local_peer:
            return False  # only nodes of this host register (epmd's rule)
        if len(req) <= 13:
            return False
        port, node_type, protocol, high, low, nlen = struct.unpack_from(">HBBHHH", req, 1)
        raw = req[11 : 11 + nlen]
        if len(raw) != nlen or 13 + nlen > len(req):
            return False
        (elen,) = struct.unpack_from(">H", req, 11 + nlen)
        extra = req[13 + nlen : 13 + nlen + elen]
        if len(extra) != elen:
            return False
        name = _valid_name(raw)
        with self._lock:
            ok = name is not None and name not in self._nodes
            if ok:
                assert name is not None
                self._nodes[name] = _Node(name, port, node_type, protocol, high, low, extra)
        if ok:
            assert name is not None
            creation = self._next_creation(name)
            c.registered = name
        else:
            creation = 99  # what epmd sends with a refusal
        result = 0 if ok else 1
        if high >= 6:
            self._reply(c, struct.pack(">BBI", ALIVE2_X_RESP, result, creation))
        else:
            self._reply(c, struct.pack(">BBH", ALIVE2_RESP, result, creation % 3 + 1))
        return ok and c.sock.fileno() in self._conns

    def _next_creation(self, name: str) -> int:
        # A fresh random creation per name, then +1 on each re-registration
        # (epmd counts up from its last one): a restarted node never gets
        # the creation its previous incarnation had, so stale Pids of the
        # old one are not mistaken for the new one's. 0-3 are reserved.
        last = self._creations.get(name)
        if last is None:
            creation = 4 + secrets.randbelow(2**32 - 4)
        else:
            creation = last + 1 if last < 2**32 - 1 else 4
        self._creations[name] = creation
        return creation

    def _port_please(self, c: _Conn, raw: bytes) -> None:
        if raw.endswith(b"\0"):
            raw = raw[:-1]  # erl's older clients add a NUL; epmd strips it
        name = _valid_name(raw)
        with self._lock:
            n = self._nodes.get(name) if name is not None else None
        if n is None:
            self._reply(c, struct.pack(">BB", PORT2_RESP, 1))
            return
        nraw = n.name.encode("utf-8")
        self._reply(
            c,
            struct.pack(
                ">BBHBBHHH",
                PORT2_RESP,
                0,
                n.port,
                n.node_type,
                n.protocol,
                n.high,
                n.low,
                len(nraw),
            )
            + nraw
            + struct.pack(">H", len(n.extra))
            + n.extra,
        )

    def _reply(self, c: _Conn, data: bytes) -> None:
        # Replies are small and the socket's send buffer empty: one send.
        # If the peer is not reading (a full buffer), it loses its answer and
        # its connection rather than stall the loop every node depends on.
        try:
            if c.sock.send(data) == len(data):
                return
        except OSError:
            pass
        self._close(c)


def _valid_name(raw: bytes) -> str | None:
    if not raw or b"\0" in raw:
        return None
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return name if len(name) <= MAX_NAME else None


def _local_peer(sock: socket.socket, peer: object) -> bool:
    # epmd's conn_local_peer_check: a loopback peer, or one connecting from
    # the very address it connected to (a node of this host using its
    # network address).
    try:
        addr = str(peer[0])  # type: ignore[index]
        if ipaddress.ip_address(addr.split("%")[0]).is_loopback:
            return True
        return addr == str(sock.getsockname()[0])
    except (OSError, ValueError, IndexError, TypeError):
        return False
