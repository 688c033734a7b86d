"""TLS distribution: the TCP connection between two nodes wrapped in TLS
before the distribution handshake, as Erlang's `inet_tls_dist` does.

```python
import otp

otp.node.start(
    name="app@host1.example.com",
    cookie=SECRET,
    tls=otp.node.TLS(certfile="node.pem", keyfile="node.key", cafile="ca.pem"),
    listen="0.0.0.0",          # reachable from other machines (TLS makes that allowed)
)
```

What happens on each connection (the same as `erl -proto_dist inet_tls`, so
Python and Erlang nodes configured with one CA talk to each other):

1. TCP connect; then a TLS handshake (TLS 1.2 or 1.3). Both sides present a
   certificate (*mutual* TLS): the accepting node refuses a peer without one
   (erl's `{fail_if_no_peer_cert, true}`), and each side checks the other's
   chain against `cafile` (`{verify, verify_peer}`).
2. The connecting side also checks that the server's certificate names the
   host of the node it asked for (`app@host1.example.com` needs a
   certificate for `host1.example.com`; `app@127.0.0.1` one with the IP
   address `127.0.0.1` in its subjectAltName), as erl does through SNI.
   For a node named by IP address, list the address twice, as `IP:` and as
   `DNS:`: Python checks the IP entry, erl checks the host as a DNS name
   (and refuses with `{bad_cert, hostname_check_failed}` without it).
   `TLS(check_hostname=False)` turns that off, e.g. for a cluster that
   shares one certificate.
3. Then the ordinary handshake (cookie challenge) runs *inside* TLS, with
   one difference on the wire: its packets have a 4-byte length prefix
   (`{packet, 4}`), not the 2-byte one of plain TCP (distribution.md,
   pitfall 1). After it, framing is the same as on plain TCP.

So a peer needs both a certificate signed by your CA and the cookie; a node
with the right cookie but an untrusted certificate is refused during TLS,
before it can say anything. A plain-TCP node cannot talk to a TLS node
(and the reverse): each sees bytes it cannot parse and closes. The port
mapper (epmd, or ours) stays plain TCP, as in Erlang: it only maps names to
ports.

Certificates for a real cluster (one CA, one key pair per machine; with
`openssl`; a certificate's subjectAltName must name the host part of the
node names it serves):

```sh
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \\
    -keyout ca.key -out ca.pem -days 3650 -subj "/CN=my cluster CA"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \\
    -keyout node.key -out node.csr -subj "/CN=host1.example.com"
openssl x509 -req -in node.csr -CA ca.pem -CAkey ca.key -CAcreateserial \\
    -out node.pem -days 825 -extfile <(printf \\
    "subjectAltName=DNS:host1.example.com\\nextendedKeyUsage=serverAuth,clientAuth")
```

and for erl nodes of the same cluster, a file given to
`erl -proto_dist inet_tls -ssl_dist_optfile FILE`:

```erlang
[{server, [{certfile, "node.pem"}, {keyfile, "node.key"}, {cacertfile, "ca.pem"},
           {verify, verify_peer}, {fail_if_no_peer_cert, true}]},
 {client, [{certfile, "node.pem"}, {keyfile, "node.key"}, {cacertfile, "ca.pem"},
           {verify, verify_peer}]}].
```

Keep `ca.key` off the nodes: whoever holds it can mint certificates your
cluster trusts.

Why a memory-BIO wrapper (`TLSSocket`) and not `ssl.SSLSocket`
----------------------------------------------------------------
A connection is read by one thread (its reader) while other threads write
to it (sends, ticks). OpenSSL forbids using one `SSL` object from two
threads at once, even one reading and one writing (openssl/openssl#20446),
and `SSLSocket` releases the GIL inside `SSL_read`, so a blocking reader and
a writer would be inside the same `SSL` object together. `TLSSocket` keeps
every OpenSSL call under a short lock and does the blocking socket I/O
outside it, so the reader can wait in `recv` while writers write.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import socket
import ssl
import threading
import time
from typing import Any

from .._exceptions import BadArg

__all__ = ["TLS", "TLSSocket", "check_listen", "is_loopback"]

# Plain-text bytes encrypted per OpenSSL call when sending: a large message
# is sent in slices, so it is never held twice (clear and encrypted) whole.
_SLICE = 256 * 1024
_RECV = 64 * 1024


@dataclasses.dataclass(frozen=True)
class TLS:
    """How a node authenticates itself and its peers over TLS distribution.

    Args:
        certfile: this node's certificate (PEM), optionally followed by the
            intermediate certificates of its chain. It is shown to peers
            both when this node accepts and when it connects.
        keyfile: the private key of `certfile` (PEM, unencrypted). Keep it
            readable by the node's user only.
        cafile: the certificate(s) of the CA(s) that sign the cluster's
            nodes (PEM). A peer whose certificate does not chain to one of
            these is refused.
        check_hostname: when connecting, require the peer's certificate to
            name the host part of its node name (as erl does). Default True.
    """

    certfile: str
    keyfile: str
    cafile: str
    check_hostname: bool = True

    def __post_init__(self) -> None:
        for field in ("certfile", "keyfile", "cafile"):
            value = getattr(self, field)
            if not isinstance(value, (str, os.PathLike)) or not str(value):
                raise BadArg(f"TLS({field}=...) must be a file path, not {value!r}")

    def _context(self, purpose: ssl.Purpose) -> ssl.SSLContext:
        server = purpose is ssl.Purpose.CLIENT_AUTH
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(os.fspath(self.certfile), os.fspath(self.keyfile))
            ctx.load_verify_locations(cafile=os.fspath(self.cafile))
        except (OSError, ssl.SSLError) as e:
            raise BadArg(
                f"TLS distribution: cannot load certfile={self.certfile!r}, "
                f"keyfile={self.keyfile!r}, cafile={self.cafile!r}: {e}"
            ) from None
        if not server:
            ctx.check_hostname = self.check_hostname
        # Mutual TLS: the accepting side demands a certificate from the peer
        # (erl's fail_if_no_peer_cert); both sides verify the chain.
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def server_context(self) -> ssl.SSLContext:
        """The context for connections this node accepts."""
        return self._context(ssl.Purpose.CLIENT_AUTH)

    def client_context(self) -> ssl.SSLContext:
        """The context for connections this node opens."""
        return self._context(ssl.Purpose.SERVER_AUTH)


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or a name) means this machine only.

    A name counts when every address it resolves to is a loopback address
    ("localhost", or a host name that /etc/hosts maps to 127.0.x.x). The
    empty string and wildcard addresses ("0.0.0.0", "::") are every interface,
    so they are not loopback.
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    if not host:
        return False
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    addrs = {str(info[4][0]) for info in infos}
    return bool(addrs) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addrs)


def check_listen(listen: str, tls: TLS | None, allow_plain_tcp: bool) -> None:
    """Refuse a distribution listener on a non-loopback address without TLS.

    Raises BadArg *before* anything binds: a plain-TCP listener on a network
    address lets anyone who can reach it and guesses or sniffs the cookie run
    code on this node (the cookie authenticates, it does not encrypt). TLS,
    or `allow_plain_tcp=True` for a network you trust, lifts the refusal.
    """
    if tls is not None or allow_plain_tcp or is_loopback(listen):
        return
    raise BadArg(
        f"refusing to listen for distribution on {listen!r} over plain TCP: the "
        "cookie authenticates but does not encrypt, so anyone on that network who "
        "learns it can run code here. Pass tls=otp.node.TLS(certfile=, keyfile=, "
        "cafile=) (recommended), or allow_plain_tcp=True for a network you trust "
        "completely, or listen on 127.0.0.1."
    )


class TLSSocket:
    """A TLS connection over a connected TCP socket, usable from two threads
    (one reading, others writing): the part of the socket interface the
    handshake and `_handshake.Connection` use (`sendall`, `recv`,
    `settimeout`, `shutdown`, `close`).

    Build it with `client` or `server`, which run the TLS handshake (under
    a deadline) and return it ready. Errors are `OSError`s (`ssl.SSLError`
    for TLS failures, such as an untrusted certificate).

    Locking (the ordering that matters): `_ssl` guards every OpenSSL call
    and is never held across blocking I/O. `_wlock` makes one thread at a
    time the *flusher*, the only one that moves encrypted bytes from the
    outgoing buffer to the socket, so records go out in the order OpenSSL
    made them. A reader that makes records while reading (a TLS 1.3 key
    update) becomes the flusher only if nobody is; otherwise the current
    flusher sends them: it releases `_wlock` only under `_ssl`, after seeing
    the buffer empty, so no record is ever left behind. A reader never
    *waits* for `_wlock`: a writer blocked on a full socket would then stop
    our reads, and two nodes doing that to each other would deadlock.
    """

    def __init__(
        self,
        raw: socket.socket,
        ctx: ssl.SSLContext,
        *,
        server_side: bool,
        server_hostname: str | None = None,
    ) -> None:
        self.raw = raw
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._obj = ctx.wrap_bio(
            self._in, self._out, server_side=server_side, server_hostname=server_hostname
        )
        self._ssl = threading.Lock()
        self._wlock = threading.Lock()

    # -- building -------------------------------------------------------------

    @classmethod
    def client(
        cls, raw: socket.socket, ctx: ssl.SSLContext, host: str, timeout: float
    ) -> TLSSocket:
        """Run the TLS handshake as the connecting side; `host` is the peer
        node's host part (checked against its certificate if the context
        says so)."""
        s = cls(raw, ctx, server_side=False, server_hostname=host)
        s._handshake(timeout)
        return s

    @classmethod
    def server(cls, raw: socket.socket, ctx: ssl.SSLContext, timeout: float) -> TLSSocket:
        """Run the TLS handshake as the accepting side."""
        s = cls(raw, ctx, server_side=True)
        s._handshake(timeout)
        return s

    def _handshake(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._obj.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                done = False
            except ssl.SSLError:
                # Send the alert OpenSSL queued (e.g. "unknown ca"), so the
                # peer learns why; then fail.
                self._send_pending_quietly()
                raise
            out = self._out.read()
            if out:
                self.raw.sendall(out)
            if done:
                self.raw.settimeout(None)
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the TLS handshake did not finish in time")
            self.raw.settimeout(left)
            data = self.raw.recv(_RECV)
            if not data:
                raise ConnectionResetError(
                    "the peer closed the connection during the TLS handshake"
                )
            self._in.write(data)

    def _send_pending_quietly(self) -> None:
        try:
            out = self._out.read()
            if out:
                self.raw.settimeout(1.0)
                self.raw.sendall(out)
        except OSError:
            pass

    # -- the socket interface -------------------------------------------------

    def sendall(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt and send all of `data` (records in order across threads)."""
        view = memoryview(data).cast("B")
        self._wlock.acquire()
        try:
            for i in range(0, max(len(view), 1), _SLICE):
                with self._ssl:
                    chunk = view[i : i + _SLICE]
                    if chunk:
                        self._obj.write(chunk)
                    out = self._out.read()
                if out:
                    self.raw.sendall(out)
        except BaseException:
            self._wlock.release()
            raise
        self._flush_and_release()

    def _flush_and_release(self) -> None:
        # Called with _wlock held: send what others queued meanwhile, and
        # give up the flusher's role only when the buffer is seen empty
        # under _ssl (see the class docstring).
        while True:
            with self._ssl:
                out = self._out.read()
                if not out:
                    self._wlock.release()
                    return
            try:
                self.raw.sendall(out)
            except BaseException:
                self._wlock.release()
                raise

    def recv(self, n: int) -> bytes:
        """Up to `n` decrypted bytes, blocking; b"" when the peer has closed."""
        while True:
            flush = False
            with self._ssl:
                try:
                    data: bytes | None = self._obj.read(n)
                except ssl.SSLWantReadError:
                    data = None
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    data = b""  # close_notify, or the TCP stream ended
                if self._out.pending and self._wlock.acquire(blocking=False):
                    flush = True
            if flush:
                self._flush_and_release()
            if data is not None:
                return data
            chunk = self.raw.recv(max(n, _RECV))
            with self._ssl:
                if chunk:
                    self._in.write(chunk)
                else:
                    self._in.write_eof()

    # -- for an event loop (otp/dist/_pump.py) ------------------------------------
    # The loop does the socket I/O itself, non-blocking, and uses these to
    # turn bytes into records and back. The caller keeps the order: `encrypt`
    # and `records` (whose output must go to the wire in the order it was
    # made) are called under the connection's own lock.

    def encrypt(self, data: bytes | bytearray | memoryview) -> bytes:
        """The TLS records for `data`, to be written to `raw` in this order."""
        with self._ssl:
            if len(data) <= _SLICE:
                self._obj.write(data)
            else:
                view = memoryview(data).cast("B")
                for i in range(0, len(view), _SLICE):
                    self._obj.write(view[i : i + _SLICE])
            return self._out.read()

    def decrypt(self, chunk: bytes | bytearray | memoryview, eof: bool = False) -> bytes | None:
        """Feed `chunk` (read from `raw`; `eof`: the TCP stream ended) and
        return the plaintext now whole: possibly b"" (a record not yet
        complete), possibly plaintext OpenSSL held from before (what the
        handshake read past its end), None once the peer has closed
        (close_notify, or the end of the stream). OpenSSL may have made
        records of its own meanwhile (a key update's answer): see `records`."""
        got = []
        with self._ssl:
            if chunk:
                self._in.write(chunk)
            if eof and not self._in.eof:
                self._in.write_eof()
            while True:
                try:
                    data = self._obj.read(_RECV)
                except ssl.SSLWantReadError:
                    break
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    return None
                if not data:
                    return None
                got.append(data)
                if not self._in.pending and not self._obj.pending():
                    break  # all read (and no SSLWantReadError to raise and catch)
        return got[0] if len(got) == 1 else b"".join(got)

    @property
    def has_records(self) -> bool:
        """Whether OpenSSL made records of its own that `records` would give
        (a hint, read without the lock: `records` is the answer)."""
        return bool(self._out.pending)

    def records(self) -> bytes:
        """Records OpenSSL made on its own (see `decrypt`), to write next."""
        with self._ssl:
            return self._out.read() if self._out.pending else b""

    def settimeout(self, timeout: float | None) -> None:
        self.raw.settimeout(timeout)

    def shutdown(self, how: int) -> None:
        # No close_notify: a writer may hold the flusher's role, blocked on a
        # full socket; the TCP shutdown wakes it and the reader alike, and
        # the peer sees the stream end (erl does not need the alert).
        self.raw.shutdown(how)

    def close(self) -> None:
        self.raw.close()

    def fileno(self) -> int:
        return self.raw.fileno()

    def getpeername(self) -> Any:
        return self.raw.getpeername()

    def getpeercert(self) -> Any:
        """The peer's certificate, as `ssl.SSLSocket.getpeercert` gives it."""
        with self._ssl:
            return self._obj.getpeercert()

    def version(self) -> str | None:
        """The TLS version in use, e.g. "TLSv1.3"."""
        with self._ssl:
            return self._obj.version()
