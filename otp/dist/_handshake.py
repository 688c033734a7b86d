"""The distribution handshake (version 6) and the framing after it.

Two nodes that share a cookie open a connection like this (ERTS User's Guide,
"Distribution Protocol"; A connects, B accepts; every handshake packet has a
2-byte length prefix on plain TCP):

    A -> B  'N' flags(8) creation(4) nlen(2) name        send_name
    B -> A  's' "ok"                                     recv_status
    B -> A  'N' flags(8) challenge(4) creation(4) nlen(2) name
    A -> B  'r' challenge_A(4) md5(cookie ++ str(challenge_B))
    B -> A  'a' md5(cookie ++ str(challenge_A))

Under TLS distribution (`otp.dist._tls`) the same packets travel inside TLS
with a 4-byte length prefix instead (`packet=4`, as `inet_tls_dist` sets
`{packet, 4}`); everything else is identical.

Each side proves it knows the cookie without sending it; a wrong digest ends
the handshake (the cookie authenticates, it does not encrypt: see
distribution.md). We join as a *hidden* node (no DFLAG_PUBLISHED), which
keeps `global`'s sync protocol away, with OTP 25's mandatory flags plus
DFLAG_V4_NC and DFLAG_UNLINK_ID (mandatory from OTP 26).

After the handshake every packet has a 4-byte length. A zero-length packet
is a *tick* (keep-alive); any other is `'p'` (pass-through), a control term,
then, for message-carrying controls, the message term. `Connection` reads
and writes those.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from .._exceptions import OTPError
from . import _etf

__all__ = [
    "FLAGS",
    "MANDATORY",
    "Connection",
    "HandshakeError",
    "Simultaneous",
    "accept",
    "connect",
    "digest",
    "load_cookie",
]

# The control operations whose bytes repeat from one packet to the next:
# SEND, REG_SEND, SEND_SENDER (named in otp/dist/_node.py, which imports us).
_REPEATING = frozenset((2, 6, 22))

DFLAG_PUBLISHED = 0x01
DFLAG_EXTENDED_REFERENCES = 0x04
DFLAG_DIST_MONITOR = 0x08
DFLAG_FUN_TAGS = 0x10
DFLAG_DIST_MONITOR_NAME = 0x20
DFLAG_NEW_FUN_TAGS = 0x80
DFLAG_EXTENDED_PIDS_PORTS = 0x100
DFLAG_EXPORT_PTR_TAG = 0x200
DFLAG_BIT_BINARIES = 0x400
DFLAG_NEW_FLOATS = 0x800
DFLAG_UTF8_ATOMS = 0x10000
DFLAG_MAP_TAG = 0x20000
DFLAG_BIG_CREATION = 0x40000
DFLAG_HANDSHAKE_23 = 0x1000000
DFLAG_UNLINK_ID = 0x2000000
DFLAG_MANDATORY_25_DIGEST = 0x4000000
DFLAG_SPAWN = 0x1 << 32
DFLAG_V4_NC = 0x4 << 32

# OTP 25 refuses a peer without these (dist_util.erl, MANDATORY_DFLAGS_25).
MANDATORY = (
    DFLAG_EXTENDED_REFERENCES
    | DFLAG_FUN_TAGS
    | DFLAG_EXTENDED_PIDS_PORTS
    | DFLAG_UTF8_ATOMS
    | DFLAG_NEW_FUN_TAGS
    | DFLAG_BIG_CREATION
    | DFLAG_NEW_FLOATS
    | DFLAG_MAP_TAG
    | DFLAG_EXPORT_PTR_TAG
    | DFLAG_BIT_BINARIES
    | DFLAG_HANDSHAKE_23
)
# What we offer. No DFLAG_PUBLISHED (hidden), no atom cache and no fragments
# (so every packet is one whole 'p' message), no EXIT_PAYLOAD/SEND_SENDER/
# ALIAS: erl then uses the control forms every version understands.
FLAGS = (
    MANDATORY
    | DFLAG_MANDATORY_25_DIGEST
    | DFLAG_DIST_MONITOR
    | DFLAG_DIST_MONITOR_NAME
    | DFLAG_UNLINK_ID
    | DFLAG_V4_NC
    # SPAWN_REQUEST/SPAWN_REPLY (otp/dist/_process.py): without it erl's
    # spawn(Node, M, F, A) falls back to an older net_kernel protocol.
    | DFLAG_SPAWN
)

HANDSHAKE_TIMEOUT = 10.0
# A handshake packet is small (a name of at most 255 bytes plus fixed fields).
MAX_HANDSHAKE_PACKET = 2048
# A distribution packet larger than this closes the connection (an absurd
# length from a broken or hostile peer must not make us allocate it).
MAX_PACKET = 256 * 1024 * 1024

_name_msg = struct.Struct(">QII")  # flags, challenge|creation, creation (B's 'N')


class HandshakeError(OTPError):
    """The handshake failed (wrong cookie, refused name, malformed packet)."""


class Simultaneous(HandshakeError):
    """Both nodes were connecting to each other at once, and this attempt is
    the one that gives way (status `nok`): the other node's own attempt is
    under way and becomes the connection. Not an error of the peer's."""


def digest(challenge: int, cookie: str) -> bytes:
    """MD5(cookie ++ decimal(challenge)): the proof of knowing the cookie."""
    return hashlib.md5(cookie.encode("utf-8") + str(challenge).encode("ascii")).digest()


def load_cookie(cookie: str | None = None, path: str | None = None) -> str:
    """The cookie: `cookie` when given, else `~/.erlang.cookie`, as erl reads it.

    A missing file is created with 20 random uppercase letters and mode 0400,
    as erl does; an existing one readable by group or others is refused
    (erl refuses it too: anyone who reads the cookie can run code here).
    """
    if cookie is not None:
        if not cookie:
            raise HandshakeError("an empty cookie")
        return cookie
    path = path or os.path.expanduser("~/.erlang.cookie")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
    except FileExistsError:
        st = os.stat(path)
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise HandshakeError(f"{path} must be accessible by its owner only") from None
        with open(path, encoding="utf-8") as f:
            value = f.read().strip()
        if not value:
            raise HandshakeError(f"{path} is empty") from None
        return value
    value = "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(20))
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(value)
    return value


def _recv_exact(s: Any, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise HandshakeError("the peer closed the connection during the handshake")
        buf += chunk
    return bytes(buf)


_LENGTH = {2: struct.Struct(">H"), 4: struct.Struct(">I")}


def _recv_packet(s: Any, packet: int = 2) -> bytes:
    (n,) = _LENGTH[packet].unpack(_recv_exact(s, packet))
    # Checked before reading the body: an absurd length from a hostile peer
    # (4 GiB under TLS's 4-byte prefix) must not make us wait for or buffer it.
    if n == 0 or n > MAX_HANDSHAKE_PACKET:
        raise HandshakeError(f"a handshake packet of {n} bytes")
    return _recv_exact(s, n)


def _send_packet(s: Any, data: bytes, packet: int = 2) -> None:
    s.sendall(_LENGTH[packet].pack(len(data)) + data)


def _check_flags(flags: int, peer: str) -> None:
    missing = MANDATORY & ~flags
    if missing:
        raise HandshakeError(f"{peer} lacks mandatory distribution flags {missing:#x}")


def _parse_name(data: bytes, off: int) -> str:
    (n,) = struct.unpack_from(">H", data, off)
    raw = data[off + 2 : off + 2 + n]
    if len(raw) != n or not n or b"@" not in raw:
        raise HandshakeError("a malformed node name in the handshake")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise HandshakeError("a node name that is not UTF-8") from None


def connect(
    sock: Any,
    name: str,
    cookie: str,
    creation: int,
    flags: int = FLAGS,
    *,
    packet: int = 2,
    alive: Callable[[], bool] | None = None,
) -> Connection:
    """Run the handshake as the connecting side (A) on a connected socket
    (a `socket.socket`, or a `_tls.TLSSocket` with `packet=4`).

    The peer answers `alive` when it still holds a connection to our name:
    `alive()` says whether to go on (true: that connection is a stale one,
    e.g. of an earlier run of this node, and the peer drops it) or not
    (false: this attempt was superseded meanwhile; it ends with
    `Simultaneous`). Without `alive`, we go on."""
    sock.settimeout(HANDSHAKE_TIMEOUT)
    try:
        raw = name.encode("utf-8")
        _send_packet(sock, b"N" + struct.pack(">QIH", flags, creation, len(raw)) + raw, packet)
        status = _recv_packet(sock, packet)
        if status[:1] != b"s":
            raise HandshakeError(f"expected a status, got {status[:1]!r}")
        if status[1:] == b"nok":
            raise Simultaneous(f"{status!r}: the peer's own connection attempt goes on")
        if status[1:] == b"alive":
            go_on = True if alive is None else alive()
            _send_packet(sock, b"strue" if go_on else b"sfalse", packet)
            if not go_on:
                raise Simultaneous("the peer is connected to us already: this attempt ends")
            status = b"sok"
        if status[1:] not in (b"ok", b"ok_simultaneous"):
            raise HandshakeError(
                f"the peer refused the connection: {status[1:].decode(errors='replace')}"
            )
        ch = _recv_packet(sock, packet)
        if ch[:1] != b"N" or len(ch) < 1 + _name_msg.size + 2:
            raise HandshakeError("expected the peer's challenge ('N')")
        pflags, pchallenge, pcreation = _name_msg.unpack_from(ch, 1)
        peer = _parse_name(ch, 1 + _name_msg.size)
        _check_flags(pflags, peer)
        mine = secrets.randbits(32)
        _send_packet(sock, b"r" + struct.pack(">I", mine) + digest(pchallenge, cookie), packet)
        ack = _recv_packet(sock, packet)
        if ack[:1] != b"a" or len(ack) != 17:
            raise HandshakeError("expected the challenge ack ('a')")
        if not secrets.compare_digest(ack[1:], digest(mine, cookie)):
            raise HandshakeError(f"{peer} does not know our cookie")
    except (OSError, struct.error) as e:
        raise HandshakeError(f"handshake failed: {e}") from None
    sock.settimeout(None)
    return Connection(sock, peer, pflags, pcreation)


def accept(
    sock: Any,
    name: str,
    cookie: str,
    creation: int,
    flags: int = FLAGS,
    *,
    packet: int = 2,
    status: Callable[[str], str] | None = None,
) -> Connection:
    """Run the handshake as the accepting side (B) on an accepted socket
    (a `socket.socket`, or a `_tls.TLSSocket` with `packet=4`).

    The cookie check happens here: a peer whose digest is wrong is refused
    and the socket closed by the caller; it never gets a Connection.

    `status(peer)` says what to answer the peer's name with: "ok",
    "ok_simultaneous" (we were connecting to it too, and give way), "nok"
    (we were, and ours goes on: this attempt ends with `Simultaneous`) or
    "alive" (we hold a connection to that name: the peer says whether to go
    on and replace it, or to end this attempt).
    """
    sock.settimeout(HANDSHAKE_TIMEOUT)
    try:
        first = _recv_packet(sock, packet)
        if first[:1] != b"N" or len(first) < 1 + 12 + 2:
            # 'n' is the version 5 handshake (OTP < 23): not spoken here.
            raise HandshakeError(f"expected send_name ('N'), got {first[:1]!r}")
        pflags, pcreation = struct.unpack_from(">QI", first, 1)
        peer = _parse_name(first, 13)
        _check_flags(pflags, peer)
        answer = "ok" if status is None else status(peer)
        _send_packet(sock, b"s" + answer.encode("ascii"), packet)
        if answer == "nok":
            raise Simultaneous(f"{peer} is being connected to from here: its attempt gives way")
        if answer == "alive":
            said = _recv_packet(sock, packet)
            if said == b"sfalse":
                raise Simultaneous(f"{peer} is connected already and ends its new attempt")
            if said != b"strue":
                raise HandshakeError(f"expected true or false after alive, got {said[:16]!r}")
        mine = secrets.randbits(32)
        raw = name.encode("utf-8")
        _send_packet(
            sock,
            b"N" + _name_msg.pack(flags, mine, creation) + struct.pack(">H", len(raw)) + raw,
            packet,
        )
        reply = _recv_packet(sock, packet)
        if reply[:1] != b"r" or len(reply) != 21:
            raise HandshakeError("expected the challenge reply ('r')")
        (pchallenge,) = struct.unpack_from(">I", reply, 1)
        if not secrets.compare_digest(reply[5:], digest(mine, cookie)):
            raise HandshakeError(f"{peer} does not know our cookie: connection refused")
        _send_packet(sock, b"a" + digest(pchallenge, cookie), packet)
    except (OSError, struct.error) as e:
        raise HandshakeError(f"handshake failed: {e}") from None
    sock.settimeout(None)
    return Connection(sock, peer, pflags, pcreation)


class Connection:
    """One established connection to a peer node: the framing after the handshake.

    `recv()` returns `None` for a tick, else `(control, message)` (message
    is `None` for controls that carry none). `send(control, message)` writes
    one packet; `tick()` a keep-alive. Sends are serialised by a lock, so
    a reader thread can answer ticks while another thread sends.
    """

    TICK = b"\0\0\0\0"

    def __init__(self, sock: Any, peer: str, flags: int, creation: int) -> None:
        self.sock = sock
        self.peer = peer
        self.flags = flags
        self.creation = creation
        self.codec: _etf.Codec | None = None
        self.last_sent = time.monotonic()
        self.last_recv = time.monotonic()
        self._lock = threading.Lock()
        # Set when an event loop owns this connection's I/O (the dist
        # process's: otp/dist/_pump.py): writes are then queued there, never
        # blocking, and `close` leaves the descriptor to it.
        self.pump: Any = None
        # (bytes, term) of the last SEND-like control read (see parse).
        self._last_control: tuple[bytes, Any] | None = None

    def send(self, control: Any, message: Any = None, *, has_message: bool = False) -> None:
        codec = self.codec or _etf._default
        body = b"p" + codec.encode(control)
        if has_message or message is not None:
            body += codec.encode(message)
        self._write(struct.pack(">I", len(body)) + body)

    def send_encoded(self, control: Any, message: bytes) -> None:
        """Like `send`, with the message already encoded (`term_to_binary`
        bytes, version byte included): the local sender encodes it, so a
        value outside the term mapping fails there, not here."""
        codec = self.codec or _etf._default
        body = b"p" + codec.encode(control) + message
        self._write(struct.pack(">I", len(body)) + body)

    def tick(self) -> None:
        self._write(self.TICK)

    def _write(self, data: bytes) -> None:
        if self.pump is not None:
            self.pump.write(data)
            return
        with self._lock:
            self.sock.sendall(data)
            self.last_sent = time.monotonic()

    def recv(self) -> tuple[Any, Any] | None:
        """The next packet, blocking. Raises ConnectionError when the peer is gone
        and `_etf.DecodeError` (a ProtocolError) on garbage: close on either."""
        (n,) = struct.unpack(">I", self._recv_exact(4))
        self.last_recv = time.monotonic()
        if n == 0:
            return None
        if n > MAX_PACKET:
            raise _etf.DecodeError(f"a distribution packet of {n} bytes")
        data = self._recv_exact(n)
        return self.parse(data)

    def parse(self, data: bytes) -> tuple[Any, Any]:
        if data[:1] != b"p":
            raise _etf.DecodeError(f"unexpected distribution header {data[:1]!r}")
        codec = self.codec or _etf._default
        # The control of a send repeats byte for byte while one sender sends
        # to one destination (a stream of casts, each call's request and
        # reply): kept decoded, it is recognised by its bytes. An ETF term is
        # self-delimiting, so the same leading bytes are the same term.
        last = self._last_control
        if last is not None and data.startswith(last[0], 1):
            control = last[1]
            end = 1 + len(last[0])
        else:
            control, end = codec.decode_from(data, 1)
            if type(control) is tuple and control and control[0] in _REPEATING:
                self._last_control = (data[1:end], control)
        message = None
        if end < len(data):
            message, end = codec.decode_from(data, end)
            if end != len(data):
                raise _etf.DecodeError("bytes after the message")
        return control, message

    def _recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(min(n - len(buf), 1 << 20))
            if not chunk:
                raise ConnectionError(f"{self.peer} closed the connection")
            buf += chunk
        return bytes(buf)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        if self.pump is not None:
            # The pump reads the EOF this makes, then unregisters and closes
            # the descriptor and drops the peer: closed here, it would leave
            # the epoll unseen and the peer would never be dropped.
            return
        self.sock.close()
