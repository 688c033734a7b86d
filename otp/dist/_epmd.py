"""The epmd client: register this node's port, look up another node's.

epmd (the Erlang Port Mapper Daemon) maps a node's short name ("app" of
"app@host") to the TCP port its distribution listener accepts on. Each host
runs one, on port 4369 or `ERL_EPMD_PORT` when set (as `erl` reads it).

```python
reg = register("py", 40123)          # ALIVE2_REQ: kept open while registered
print(reg.creation)                   # this incarnation's number, for Pids
port = port_please("e", "127.0.0.1")  # PORT_PLEASE2_REQ -> 40321, or None
reg.close()                           # unregisters: epmd forgets the name
```

Registration lasts as long as the TCP connection that made it: epmd drops
the name when the socket closes, including when this process is killed, so
no stale entry survives a crash.

Every request is length-prefixed (2 bytes); replies are not. Requests and
replies follow the ERTS User's Guide, "Distribution Protocol", section
"EPMD Protocol".

When nothing listens on the port, the client raises `EpmdUnreachable`;
`otp.dist._node.DistNode` then starts a port mapper of its own
(`otp.dist._portmapper`), which speaks the same protocol, so these calls
work unchanged against either.
"""

from __future__ import annotations

import os
import socket
import struct

from .._exceptions import OTPError

__all__ = [
    "EpmdError",
    "EpmdUnreachable",
    "Registration",
    "epmd_port",
    "names",
    "port_please",
    "register",
]

DEFAULT_PORT = 4369
ALIVE2_REQ = 120
ALIVE2_RESP = 121
ALIVE2_X_RESP = 118
PORT_PLEASE2_REQ = 122
PORT2_RESP = 119
NAMES_REQ = 110

NODE_TYPE_HIDDEN = 72  # 'H': a hidden node, as C nodes are
NODE_TYPE_NORMAL = 77  # 'M': a normal Erlang node
PROTOCOL_TCP = 0
VERSION = 6  # handshake version 6 (OTP 23+); the only one we speak


class EpmdError(OTPError):
    """epmd refused a request or could not be reached."""


class EpmdUnreachable(EpmdError):
    """Nothing answers on the port mapper's port (no epmd runs there)."""


def epmd_port() -> int:
    """The epmd port: `ERL_EPMD_PORT` when set, else 4369 (what erl does)."""
    value = os.environ.get("ERL_EPMD_PORT")
    return int(value) if value else DEFAULT_PORT


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EpmdError("epmd closed the connection mid-reply")
        buf += chunk
    return bytes(buf)


def _connect(host: str, port: int | None, timeout: float) -> socket.socket:
    try:
        return socket.create_connection((host, port or epmd_port()), timeout=timeout)
    except OSError as e:
        raise EpmdUnreachable(f"no epmd on {host}:{port or epmd_port()}: {e}") from None


class Registration:
    """A node's registration with epmd: alive while this object's socket is open."""

    def __init__(self, sock: socket.socket, name: str, port: int, creation: int) -> None:
        self.sock = sock
        self.name = name
        self.port = port
        self.creation = creation

    def close(self) -> None:
        """Unregister (epmd forgets the name when the connection closes)."""
        # shutdown first: a thread blocked in recv on this socket (the
        # node's watcher of its registration) wakes up; close alone would
        # leave it blocked on Linux.
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> Registration:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def register(
    name: str,
    port: int,
    *,
    hidden: bool = True,
    host: str = "127.0.0.1",
    epmd: int | None = None,
    timeout: float = 5.0,
) -> Registration:
    """Register `name` (the part before `@`) as listening on `port` (ALIVE2_REQ).

    Returns the open Registration; its `creation` is the 32-bit incarnation
    number epmd assigned (ALIVE2_X_RESP), which the node puts in its Pids.
    Raises EpmdError if epmd is unreachable or the name is taken.
    """
    raw = name.encode("utf-8")
    body = (
        struct.pack(
            ">BHBBHHH",
            ALIVE2_REQ,
            port,
            NODE_TYPE_HIDDEN if hidden else NODE_TYPE_NORMAL,
            PROTOCOL_TCP,
            VERSION,
            VERSION,
            len(raw),
        )
        + raw
        + struct.pack(">H", 0)  # no "extra"
    )
    s = _connect(host, epmd, timeout)
    try:
        s.sendall(struct.pack(">H", len(body)) + body)
        tag, result = _recv_exact(s, 2)
        if tag == ALIVE2_X_RESP:
            (creation,) = struct.unpack(">I", _recv_exact(s, 4))
        elif tag == ALIVE2_RESP:
            (creation,) = struct.unpack(">H", _recv_exact(s, 2))
        else:
            raise EpmdError(f"unexpected epmd reply {tag} to ALIVE2_REQ")
        if result != 0:
            raise EpmdError(f"epmd refused to register {name!r} (result {result}): name taken?")
    except BaseException:
        s.close()
        raise
    # The registration lives as long as the socket: no timeout on it from now.
    s.settimeout(None)
    return Registration(s, name, port, creation)


def port_please(
    name: str, host: str = "127.0.0.1", *, epmd: int | None = None, timeout: float = 5.0
) -> tuple[int, int] | None:
    """The (port, highest handshake version) of node `name` on `host`, or None
    if epmd does not know it (PORT_PLEASE2_REQ)."""
    raw = name.encode("utf-8")
    s = _connect(host, epmd, timeout)
    try:
        s.sendall(struct.pack(">HB", len(raw) + 1, PORT_PLEASE2_REQ) + raw)
        tag, result = _recv_exact(s, 2)
        if tag != PORT2_RESP:
            raise EpmdError(f"unexpected epmd reply {tag} to PORT_PLEASE2_REQ")
        if result != 0:
            return None
        port, _ntype, _proto, high, _low = struct.unpack(">HBBHH", _recv_exact(s, 8))
        return port, high
    except OSError as e:
        raise EpmdError(f"epmd lookup of {name!r} failed: {e}") from None
    finally:
        s.close()


def names(
    host: str = "127.0.0.1", *, epmd: int | None = None, timeout: float = 5.0
) -> dict[str, int]:
    """Every name epmd knows, with its port (NAMES_REQ), as `epmd -names` prints them."""
    s = _connect(host, epmd, timeout)
    try:
        s.sendall(struct.pack(">HB", 1, NAMES_REQ))
        _recv_exact(s, 4)  # epmd's own port
        data = bytearray()
        while chunk := s.recv(4096):
            data += chunk
    except OSError as e:
        raise EpmdError(f"epmd names request failed: {e}") from None
    finally:
        s.close()
    out = {}
    for line in data.decode("utf-8", "replace").splitlines():
        # "name NAME at port PORT"
        parts = line.split()
        if len(parts) == 5 and parts[0] == "name" and parts[3] == "port":
            out[parts[1]] = int(parts[4])
    return out
