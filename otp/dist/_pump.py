"""The dist process's own I/O on its TCP connections: read in its event loop,
written through a buffer per connection, no reader threads.

```python
pump = Pump(node, _runtime.current())   # in the dist process, before node.start()
node.pump = pump                        # DistNode._add hands it each connection
...
pump.flush()                            # the router, before each poll
```

Why not a reader thread per connection (what a bare `DistNode` uses): every
packet then cost two wake-ups, the reader's and then the dist process's main
thread's (through its wake-up pipe), and a GIL hand-off between them; with
one connection busy both ways, those hand-offs were most of a remote call's
500+ us (benchmarks/bench_dist.py).

How it works
------------
- A plain-TCP connection's socket goes into the dist process's epoll, with a
  callback in `Process.fd_hooks`. Wherever the runtime polls (its `wait`, and
  `_write_slow` while a local process is too slow to take what we send it),
  a readable connection is read at once and each whole packet is decoded and
  handed to `DistNode._dispatch`, which queues it for the router. So the
  network is always read: two nodes flooding each other cannot deadlock with
  each one blocked writing to the other, as they could with blocking writes
  and no reader.
- Writes (`Connection._write`) go into the connection's output buffer. The
  router flushes every buffer before it sleeps (`flush`): what one wake-up
  produced, such as a call's MONITOR_P and its message, leaves in one write
  and arrives in one read. What the socket does not take waits for EPOLLOUT.
  Another thread (the ticker) writes at once when nothing is queued before
  it. Every write happens under the connection's lock, so bytes reach the
  wire in the order of the `_write` calls: one sender's order is kept.
- Back-pressure: a connection with more than `BUSY_LIMIT` bytes waiting is
  *busy* (Erlang's `dist_buf_busy_limit`). The router then stops taking
  local messages (`drain`) until it is not: local senders block on their full
  sockets, as Erlang suspends a process sending to a busy distribution port,
  while the network is still read.
- Closing: `Connection.close` only shuts the socket down; the EOF that makes
  is read here, where the descriptor is unregistered and closed, and
  `DistNode._drop` tells the router (nodedown, noconnection). A descriptor
  closed elsewhere would silently leave the epoll, and the peer would never
  be seen to go.
- TLS connections are pumped the same way: their `TLSSocket` is a pair of
  memory BIOs, so the loop reads and writes the TCP socket itself and has
  it decrypt what it read and encrypt what it queues (under the
  connection's lock, so records leave in the order they were made). What
  the TLS handshake read past its own end is waiting inside OpenSSL, where
  no epoll can see it: `add` has the router read it first (`buffered`).
"""

from __future__ import annotations

import os
import select
import socket
import struct
import threading
import time
from typing import Any

from . import _etf, _handshake, _tls

__all__ = ["BUSY_LIMIT", "FLUSH_AT", "LAZY_DELAY", "Pump", "Pumped"]

#: Bytes waiting in one connection's buffer above which the router stops
#: taking local messages until it drains (Erlang's default busy limit).
BUSY_LIMIT = 1024 * 1024
#: Bytes queued by the router past which it writes at once instead of at
#: its next flush: a stream of casts then reaches the peer while the router
#: is still encoding the rest.
FLUSH_AT = 64 * 1024
#: The longest a control queued with `Pumped.send_later` waits for other
#: traffic to the same peer before it is written alone.
LAZY_DELAY = 0.005
#: How much one read takes from a socket.
READ_SIZE = 256 * 1024
# Consumed bytes at the front of an output buffer are cut off once there are
# this many (cutting after every partial write would copy a big message over
# and over).
_COMPACT = 1024 * 1024

_LEN = struct.Struct(">I")
_IN = select.EPOLLIN
_OUT = select.EPOLLOUT
_DONTWAIT = socket.MSG_DONTWAIT
_monotonic = time.monotonic


class Pumped:
    """One connection's I/O state, owned by its `Pump` (`Connection.pump`)."""

    __slots__ = (
        "c", "closed", "fd", "inbuf", "out", "plain", "pump", "queued", "sent", "sock",
        "tls", "want_out",
    )  # fmt: skip

    def __init__(self, pump: Pump, c: _handshake.Connection) -> None:
        self.pump = pump
        self.c = c
        # TLS: the socket I/O is ours, the records the TLSSocket's.
        self.tls: _tls.TLSSocket | None = c.sock if type(c.sock) is _tls.TLSSocket else None
        self.sock: socket.socket = c.sock if self.tls is None else self.tls.raw
        self.fd = self.sock.fileno()
        self.inbuf = bytearray()  # the start of a packet not yet whole
        self.out = bytearray()  # to write, from `sent` on
        # TLS: what was queued since the last flush, encrypted by that flush
        # into as few records as it takes (a call's DEMONITOR_P, MONITOR_P
        # and request: one record, one decryption there, not three).
        self.plain = bytearray()
        self.sent = 0
        self.want_out = False  # EPOLLOUT is armed
        self.queued = False  # in the pump's list for its next flush
        self.closed = False

    # -- writing --------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue `data` (Connection._write in pumped mode). On the router's
        thread it leaves at the next `Pump.flush`; on another, at once unless
        the router or EPOLLOUT will send it soon anyway.

        Whatever is queued stays covered: listed for the next flush
        (`queued`), or waiting for EPOLLOUT (`want_out`), or lazy (see
        `send_later`, flushed by its deadline at the latest)."""
        pump = self.pump
        with self.c._lock:
            if self.closed:
                raise BrokenPipeError(f"the connection to {self.c.peer} is closed")
            if self.tls is None:
                self.out += data
            else:
                self.plain += data  # encrypted by the flush, in this order
            if self.want_out:
                pass  # EPOLLOUT sends it, after what is already waiting
            elif threading.get_ident() != pump.thread:
                if not self.queued:
                    self._flush_locked()  # the router may be asleep
            elif self._waiting() > FLUSH_AT:
                self._flush_locked()  # a stream: let the peer start on it
            elif not self.queued:
                self.queued = True
                pump.dirty.append(self)
            if self._waiting() > BUSY_LIMIT:
                pump.busy = True

    def _waiting(self) -> int:
        """Bytes queued and not yet written (before encryption, for TLS)."""
        return len(self.out) - self.sent + len(self.plain)

    def send_later(self, control: Any) -> None:
        """Queue a control that need not leave at once (on the router's thread).

        A call's DEMONITOR_P, after its reply: it goes with the next packet to
        this peer (the next call's MONITOR_P, usually), or within LAZY_DELAY if
        none comes, so the peer reads it along with that call instead of
        waking for it alone. Its place in the order is where it was queued.
        """
        codec = self.c.codec or _etf._default
        body = b"p" + codec.encode(control)
        packet = _LEN.pack(len(body)) + body
        with self.c._lock:
            if self.closed:
                raise BrokenPipeError(f"the connection to {self.c.peer} is closed")
            if self.tls is None:
                self.out += packet
            else:
                self.plain += packet
            if not self.queued and not self.want_out:
                pump = self.pump
                if not pump.lazy:
                    pump.lazy_at = _monotonic() + LAZY_DELAY
                pump.lazy.append(self)

    def _flush_locked(self) -> None:
        """Write what the socket takes; arm or disarm EPOLLOUT. With c._lock."""
        out = self.out
        if self.plain:
            # Under the lock, as every write: records made in queue order.
            out += self.tls.encrypt(self.plain)  # type: ignore[union-attr]
            self.plain.clear()
        if len(out) > self.sent:
            try:
                with memoryview(out) as mv:
                    n = self.sock.send(mv[self.sent :], _DONTWAIT)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError:
                # The peer is gone: the read side sees it (EOF or an error)
                # and drops the connection; what was queued is lost with it.
                self._shutdown()
                return
            if n:
                self.sent += n
                self.c.last_sent = _monotonic()
        if self.sent == len(out):
            out.clear()
            self.sent = 0
        elif self.sent >= _COMPACT:
            del out[: self.sent]
            self.sent = 0
        want = bool(out)
        if want:
            self.pump.busy = self.pump.busy or len(out) - self.sent > BUSY_LIMIT
        if want != self.want_out:
            self.want_out = want
            try:
                self.pump.ep.modify(self.fd, _IN | _OUT if want else _IN)
            except OSError:
                pass  # already unregistered: the connection is being dropped

    def flush(self) -> None:
        with self.c._lock:
            if not self.closed:
                self._flush_locked()

    def _shutdown(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- reading --------------------------------------------------------------

    def on_event(self, ev: int) -> None:
        """The epoll callback (Process.fd_hooks)."""
        if ev & _OUT:
            self.flush()
        if ev & ~_OUT:  # EPOLLIN, EPOLLHUP, EPOLLERR: a read tells which
            self.read()

    def read(self) -> None:
        """Read what is there; dispatch every whole packet, in order."""
        if self.closed:
            return
        # Into the pump's one buffer, then copied out at the size read: a
        # recv(READ_SIZE) would malloc 256 KiB per read, which glibc serves
        # with mmap + mremap + munmap (three syscalls per packet) unless its
        # dynamic threshold happened to have risen in this process.
        rbuf = self.pump.rbuf
        try:
            n = self.sock.recv_into(rbuf, READ_SIZE, _DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            n = 0
        if self.tls is not None:
            self._take_tls(rbuf[:n], eof=not n)
            return
        data = rbuf[:n].tobytes()
        if not data:
            self.pump.drop(self)
            return
        self._take(data)

    def _take_tls(self, chunk: Any, eof: bool = False) -> None:
        """Decrypt what was read (or what OpenSSL held: `chunk` empty), then
        as for plain TCP. Garbage (not TLS, a bad record) drops the connection."""
        assert self.tls is not None
        try:
            data = self.tls.decrypt(chunk, eof)
        except (OSError, ValueError):
            self.pump.drop(self)
            return
        if self.tls.has_records:
            with self.c._lock:  # records of OpenSSL's own go out in turn
                if not self.closed:
                    self.out += self.tls.records()
                    self._flush_locked()
        if data is None:
            self.pump.drop(self)
        elif data:
            self._take(data)

    def _take(self, data: bytes) -> None:
        """Dispatch every whole packet of what was read, in order."""
        c = self.c
        c.last_recv = _monotonic()
        buf: Any
        if self.inbuf:
            self.inbuf += data
            buf = self.inbuf
        else:
            buf = data  # the common case: whole packets, parsed in place
        node = self.pump.node
        pos = 0
        end = len(buf)
        try:
            while end - pos >= 4:
                (n,) = _LEN.unpack_from(buf, pos)
                if n == 0:
                    pos += 4
                    # A tick. Answered unless we sent something lately (as
                    # DistNode._read_loop does).
                    if _monotonic() - c.last_sent > 1.0:
                        c.tick()
                    continue
                if n > _handshake.MAX_PACKET:
                    raise _etf.DecodeError(f"a distribution packet of {n} bytes")
                if end - pos - 4 < n:
                    break
                start = pos + 4
                pos = start + n
                packet = buf[start:pos]
                if type(packet) is not bytes:
                    packet = bytes(packet)  # decoded binaries must be bytes
                control, message = c.parse(packet)
                node._dispatch(c, control, message)
                if self.closed:
                    return
        except Exception:
            # Garbage from the peer (or a packet nothing here can take): the
            # connection is closed, as erl closes it; the node goes on.
            self.pump.drop(self)
            return
        if buf is self.inbuf:
            del buf[:pos]
        elif pos < end:
            self.inbuf = bytearray(buf[pos:])


class Pump:
    """The dist process's I/O on its plain-TCP connections (module docstring).

    Made on the dist process's main thread (the router's), whose loop calls
    `flush` before each poll and `drain` when `busy`.
    """

    def __init__(self, node: Any, p: Any) -> None:
        self.node = node  # the DistNode
        self.p = p  # the dist process's runtime Process
        self.ep = p.ep
        self.thread = threading.get_ident()
        self.conns: dict[int, Pumped] = {}  # fd -> state
        # TLS connections just added, whose first packets may already be
        # inside OpenSSL (see the module docstring): read by the router.
        self.buffered: list[Pumped] = []
        # What every read lands in first (Pumped.read): reads happen on this
        # thread only, one at a time.
        self.rbuf = memoryview(bytearray(READ_SIZE))
        self.dirty: list[Pumped] = []  # written on the router's thread since the last flush
        self.lazy: list[Pumped] = []  # holding controls sent with send_later
        self.lazy_at = 0.0  # when the oldest of those must leave
        self.busy = False  # some connection is over BUSY_LIMIT (set by writers)

    def add(self, c: _handshake.Connection) -> bool:
        """Take over `c`'s reading and writing (plain TCP or TLS; False for
        anything else, which then keeps a reader thread). Called from any
        thread (the handshake's), before the peer's first packet is read."""
        if type(c.sock) is not socket.socket and type(c.sock) is not _tls.TLSSocket:
            return False
        st = Pumped(self, c)
        c.pump = st
        self.conns[st.fd] = st
        # The hook before the registration: an event is never without one.
        self.p.fd_hooks[st.fd] = st.on_event
        self.ep.register(st.fd, _IN)
        if st.tls is not None:
            self.buffered.append(st)
            if threading.get_ident() != self.thread:
                try:
                    os.write(self.p.wake_w, b"!")  # the router reads it next
                except OSError:
                    pass  # the pipe is full: the router is awake anyway
        return True

    def read_buffered(self) -> None:
        """Read what OpenSSL holds for the TLS connections just added (on the
        router's thread, at the top of its loop)."""
        while self.buffered:
            st = self.buffered.pop(0)
            if not st.closed:
                st._take_tls(b"")

    def drop(self, st: Pumped) -> None:
        """The connection ended (EOF, error, garbage): forget it, close it,
        and let the node drop the peer (nodedown to the router)."""
        with st.c._lock:
            if st.closed:
                return
            st.closed = True
            st.out.clear()
            st.plain.clear()
            st.sent = 0
        self.p.fd_hooks.pop(st.fd, None)
        self.conns.pop(st.fd, None)
        try:
            self.ep.unregister(st.fd)
        except OSError:
            pass
        self.node._drop(st.c)
        st.sock.close()

    def flush(self) -> None:
        """Write what the router queued since the last flush."""
        dirty = self.dirty
        if not dirty:
            return
        self.dirty = []
        for st in dirty:
            with st.c._lock:
                st.queued = False
                if not st.closed:
                    st._flush_locked()

    def lazy_timeout(self) -> float | None:
        """How long the router may sleep before `flush_lazy` is due; None:
        nothing lazy is waiting."""
        if not self.lazy:
            return None
        return max(0.0, self.lazy_at - _monotonic())

    def flush_lazy(self) -> None:
        """Write the lazy controls (`Pumped.send_later`) once their delay is up."""
        if self.lazy and _monotonic() >= self.lazy_at:
            lazy, self.lazy = self.lazy, []
            for st in lazy:
                st.flush()

    def drain(self) -> None:
        """Wait, reading the network meanwhile, until no connection is over
        BUSY_LIMIT (local messages wait: that is the back-pressure)."""
        self.flush()
        while True:
            # A snapshot: a handshake thread may add a connection meanwhile.
            conns = list(self.conns.values())
            if not any(st._waiting() > BUSY_LIMIT for st in conns):
                self.busy = False
                return
            # A poll of our own over the connections only: the process's
            # epoll would also report its local sockets, which must wait.
            poller = select.poll()
            for st in conns:
                poller.register(st.fd, select.POLLIN | (select.POLLOUT if st.want_out else 0))
            for fd, ev in poller.poll(1000):
                ready = self.conns.get(fd)
                if ready is None:
                    continue
                st = ready
                if ev & select.POLLOUT:
                    st.flush()
                if ev & ~select.POLLOUT:
                    st.read()
