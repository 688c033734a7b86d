"""The per-process runtime: mailbox, connections, links, monitors, signals, spawn.

Every OTP process is an OS process, and every OS process of a node holds one
`Process` object (module global `_proc`): the runtime half of that process.

Connections
-----------
Each process listens on a Unix stream socket in the node's private runtime
directory (`<rundir>/<ospid>.<serial>`). Processes talk over one connection
per pair, used in both directions: the first process that needs to reach the
other connects, sends HELLO (its Pid, checked against SO_PEERCRED), and the
acceptor answers WELCOME. A spawned child starts with a socketpair to its
spawner, so parent and child are connected from birth.

Messages between a pair travel on one connection, so they arrive in send
order (OTP's one ordering guarantee). If both sides connect at the same moment
there are two connections; each side keeps sending on the first one it had,
which keeps its own order.

Deaths
------
A process never closes a connection while it lives. When it ends gracefully it
sends EXITING(reason) on every connection, then `os._exit`s and the kernel
closes its sockets. A peer that sees the last of its connections to a process
close learns of that death from the OS: with the reason if EXITING came first,
as `"killed"` if not (SIGKILL, a segfault). That is how links and monitors
survive `kill -9`, with no polling.

Monitors are kept only by the monitoring side: the monitored process does not
need to know about them, since its EXITING goes to every connection. A
`gen_server.call` thus costs one frame out and one back, no monitor frames.

Links are kept on both sides (LINK / UNLINK frames), because each side must
act on the other's death.

Signals that would end a non-trapping process are noted when read and acted
on at the next `receive`: the I/O layer never raises into the middle of a
send. `exit(pid, "kill")` is SIGKILL itself, untrappable by construction.
"""

from __future__ import annotations

import collections
import errno
import fcntl
import functools
import heapq
import itertools
import mmap
import os
import pickle
import select
import signal
import socket
import struct
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, NamedTuple

from . import _codec
from ._codec import (
    EXIT,
    EXITING,
    HDR,
    HELLO,
    HELLO_BODY,
    INFO_REP,
    INFO_REQ,
    KIND_SHIFT,
    KINDS,
    LEN_MASK,
    LINK,
    MAX_FRAME,
    MSG,
    MSG_DILL,
    UNLINK,
    WELCOME,
)
from ._exceptions import BadArg, Exit, NoProc, NotPicklable, ReceiveTimeout
from ._log import log_crash, log_warning
from ._proc_os import is_os_process_running
from ._terms import DOWN, Crash, Pid, Ref, TimerRef, _AnsweredRef
from ._terms import EXIT as EXIT_MSG

NODE_NAME = "nonode@nohost"

READ_SIZE = 256 * 1024
# A frame larger than this is read straight into a buffer of its own size,
# instead of being accumulated from 256 KiB reads.
BIG_FRAME = 512 * 1024
# A process busy with its mailbox still looks at its sockets every this many
# receives, so exit signals and timers are not starved by a long queue.
POLL_EVERY = 64
# How long a terminating process tries to hand its EXITING frame to a peer
# whose socket buffer is full before giving up (the peer then sees "killed").
EXITING_DEADLINE = 2.0

_pack = HDR.pack
_unpack_from = HDR.unpack_from
_dumps = _codec.dumps
_loads = _codec.loads
_pdumps = pickle.dumps
_ploads = pickle.loads
_monotonic = time.monotonic
_os_read = os.read
_os_write = os.write
_os_readv = os.readv

_EPOLLIN = select.EPOLLIN
_EPOLLOUT = select.EPOLLOUT
_EPOLL_ERRHUP = select.EPOLLERR | select.EPOLLHUP

_proc: Process | None = None
_forking = False  # True while this runtime forks: the at-fork hook leaves fds alone

# Where the runtime keeps its descriptors: at or above FD_BASE (set by
# `set_fd_base` when the node starts, after the open-files limit was raised).
#
# Why a range: a forked child must close every descriptor of its parent's
# runtime (a peer learns of the parent's death only when the *last* holder of
# its socket is gone). A supervisor with thousands of children holds thousands
# of them, interleaved with the user's own files if they were allocated
# lowest-first; closing them one run at a time made each child's start O(n).
# Kept in one range above the user's descriptors, they close with one
# close_range(2) call per kept descriptor, whatever the parent's size; and the
# child does not even read the parent's tables (reading them incremented
# refcounts, i.e. copied pages the child then owned).
#
# The cost of the rule: a descriptor the *user* opened at or above FD_BASE (a
# process holding more than FD_BASE files of its own) is not inherited by the
# processes it spawns. A runtime descriptor that cannot be moved up (every
# number above the base taken) stays low and is tracked in Process.low_fds.
FD_BASE = 1024
_FD_END = 0x7FFFFFFF  # close_range's "to the end" (the kernel clamps it)


def set_fd_base() -> None:
    """Choose FD_BASE for this node: 1024, or half the open-files limit when
    that is lower (so the runtime's range is never empty)."""
    global FD_BASE
    import resource

    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    FD_BASE = max(3, min(1024, soft // 2))


def high_fd(fd: int) -> int:
    """Move a runtime descriptor into the runtime's range (see FD_BASE): the
    new number, close-on-exec; or `fd` itself if it could not be moved."""
    if fd >= FD_BASE:
        return fd
    try:
        new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, FD_BASE)
    except OSError:
        return fd  # out of numbers above the base: the caller tracks it as low
    os.close(fd)
    return new


def high_socket(s: socket.socket) -> socket.socket:
    """`s`, its descriptor moved into the runtime's range."""
    fd = s.fileno()
    if fd >= FD_BASE:
        return s
    return socket.socket(s.family, s.type, 0, fileno=high_fd(s.detach()))


def close_high_range(keep: set[int]) -> None:
    """In a forked child: close every descriptor at or above FD_BASE except
    `keep`; one close_range(2) per kept descriptor in the range, plus one."""
    start = FD_BASE
    for k in sorted(k for k in keep if k >= FD_BASE):
        if k > start:
            os.closerange(start, k)
        start = max(start, k + 1)
    os.closerange(start, _FD_END)


class Conn:
    """One connection to a peer process (either side may have opened it)."""

    __slots__ = ("big", "bigkind", "bigpos", "buf", "cred_pid", "fd", "peer", "welcomed")

    def __init__(self, fd: int, peer: Pid | None, welcomed: bool, cred_pid: int = 0) -> None:
        self.fd = fd
        self.peer = peer
        self.welcomed = welcomed
        self.cred_pid = cred_pid
        self.buf = b""
        self.big: bytearray | None = None
        self.bigpos = 0
        self.bigkind = 0


class Process:
    """The runtime state of the current OS process."""

    def __init__(self, pid: Pid, rundir: str, lsock: socket.socket, is_main: bool) -> None:
        self.pid = pid
        self.rundir = rundir
        self.is_main = is_main
        self.mailbox: collections.deque[Any] = collections.deque()
        self.conns: dict[Pid, Conn] = {}  # the connection we send on, per peer
        self.peer_fds: dict[Pid, list[Conn]] = {}  # every open connection, per peer
        self.fds: dict[int, Conn] = {}
        self.dying: dict[Pid, Any] = {}  # reasons from EXITING frames, until the last EOF
        self.links: set[Pid] = set()
        self.monitors: dict[Ref, tuple[Pid, Any]] = {}
        self.mon_by_pid: dict[Pid, set[Ref]] = {}
        self.trap = False
        self.pending_exit: tuple[Any] | None = None
        self.deferred: list[tuple[Conn, bytes]] = []
        self.abandoned: dict[Ref, None] = {}
        self.writing: Conn | None = None
        self.timers: list[tuple[float, int, TimerRef]] = []
        self.timer_map: dict[TimerRef, tuple[float, Any, Any]] = {}
        self.children: dict[int, Pid] = {}  # forked by us: reaped by us
        self.reap_pending: set[int] = set()
        self.spawned: list[Pid] = []  # in start order (the main program stops them at exit)
        self.info: dict[str, Any] = {}  # labels set by upper layers (behaviour, name...)
        # The trace id of the request being handled (otp/_trace.py): calls and
        # casts made meanwhile carry it onward. None (the usual case) costs nothing.
        self.trace: str | None = None
        self.status = "running"
        self.msgs_in = 0
        self.msgs_out = 0
        self.since_poll = 0
        self.lifeline = -1
        self.sig_r = -1
        self.sig_w = -1
        self.zygote: socket.socket | None = None
        self.zlock = threading.Lock()
        # An anonymous mapping, not a bytearray: bytearray(n) zero-fills, so
        # every process would touch (and own) all 256 KiB at birth; a mapping
        # is zero pages until a read writes into it, usually the first one.
        self.rbuf = mmap.mmap(-1, READ_SIZE)
        self.rbufs = [self.rbuf]
        self.rview = memoryview(self.rbuf)
        self.spare: tuple[socket.socket, str] | None = None
        self.lsock = lsock
        self.lfd = lsock.fileno()
        self.ep = _high_epoll()
        self.ep.register(self.lfd, _EPOLLIN)
        # Runtime descriptors that could not be moved above FD_BASE (rare:
        # see high_fd); a forked child closes these one by one.
        self.low_fds: set[int] = set()
        self.refs = itertools.count(1)
        self.seq = itertools.count()
        self.uid = os.getuid()
        # The main program may have threads that all use this Process: its
        # entry points take a lock (see _wait_threaded). An OTP process is
        # single-threaded by construction and pays nothing for this.
        self.lock: threading.RLock | None = None
        self.cond: threading.Condition | None = None
        self.polling = False
        self.waiters = 0
        self.wake_r = -1
        self.wake_w = -1
        # Descriptors an upper layer polls through this process's epoll (the
        # dist process's TCP connections: otp/dist/_pump.py): fd -> callback
        # of the event mask, called wherever the runtime polls (see on_event).
        self.fd_hooks: dict[int, Callable[[int], None]] = {}
        if is_main:
            self.lock = threading.RLock()
            self.cond = threading.Condition(self.lock)
            for name in _GUARDED:
                setattr(self, name, _guarded(self.lock, getattr(self, name)))

    # ------------------------------------------------------------------ fds

    def runtime_fds(self) -> list[int]:
        """Every descriptor this runtime owns (for tests and diagnostics; a
        forked child closes them with `close_in_child`, without this list)."""
        fds = list(self.fds)
        fds.append(self.lfd)
        fds.append(self.ep.fileno())
        for fd in (self.sig_r, self.sig_w, self.wake_r, self.wake_w):
            if fd >= 0:
                fds.append(fd)
        if self.zygote is not None:
            fds.append(self.zygote.fileno())
        if self.spare is not None:
            fds.append(self.spare[0].fileno())
        return fds

    def close_in_child(self, keep: set[int]) -> None:
        """In a freshly forked child: close what the parent's runtime owned.

        The child must not hold the parent's sockets: a peer learns of the
        parent's death only when the *last* holder of its socket goes away.
        Constant work whatever the parent's size (see FD_BASE): the parent's
        connection table is not even read, so its pages stay shared.
        """
        low = {self.lfd, self.ep.fileno(), self.sig_r, self.sig_w, self.wake_r, self.wake_w}
        if self.zygote is not None:
            low.add(self.zygote.detach())
        if self.spare is not None:
            low.add(self.spare[0].detach())
        self.lsock.detach()
        # The epoll object would close its number when collected, by then
        # perhaps one of the child's own: close it through the object.
        self.ep.close()
        close_high_range(keep)
        low |= self.low_fds
        _close_fds(sorted(fd for fd in low if 0 <= fd < FD_BASE and fd not in keep))

    def add_conn(self, c: Conn) -> None:
        if c.fd < FD_BASE:
            c.fd = high_fd(c.fd)
            if c.fd < FD_BASE:
                self.low_fds.add(c.fd)
        self.fds[c.fd] = c
        self.ep.register(c.fd, _EPOLLIN)
        if c.peer is not None:
            self._add_peer_conn(c)

    def _add_peer_conn(self, c: Conn) -> None:
        peer = c.peer
        assert peer is not None
        lst = self.peer_fds.get(peer)
        if lst is None:
            self.peer_fds[peer] = [c]
            self.conns[peer] = c
        else:
            lst.append(c)

    def _drop_conn(self, c: Conn) -> None:
        fd = c.fd
        if self.fds.pop(fd, None) is None:
            return
        try:
            self.ep.unregister(fd)
        except OSError:
            pass
        if fd < FD_BASE:
            self.low_fds.discard(fd)
        os.close(fd)

    # ------------------------------------------------------------ connecting

    def connect(self, pid: Pid) -> Conn | None:
        """The connection to `pid`, opened if needed; None if it is not alive."""
        c = self.conns.get(pid)
        if c is not None:
            return c
        if pid.node != NODE_NAME:
            return None
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(sock_path(self.rundir, pid))
        except (FileNotFoundError, ConnectionRefusedError, OSError):
            s.close()
            return None
        s.setblocking(False)
        c = Conn(s.detach(), pid, welcomed=False)
        self.add_conn(c)
        self.write(c, _codec.frame(HELLO, HELLO_BODY.pack(self.pid.id, self.pid.serial)))
        return c

    def accept(self) -> None:
        while True:
            try:
                s, _ = self.lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE):
                    log_warning(f"{self.pid}: out of descriptors, connection refused")
                return
            try:
                cred = s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
                cpid, cuid, _gid = struct.unpack("3i", cred)
            except OSError:
                s.close()
                continue
            if cuid != self.uid:
                # Another OS user: nothing it sends is ever read, let alone unpickled.
                log_warning(f"{self.pid}: refused a connection from uid {cuid}")
                s.close()
                continue
            s.setblocking(False)
            self.add_conn(Conn(s.detach(), None, welcomed=True, cred_pid=cpid))

    # ---------------------------------------------------------------- writing

    def write(self, c: Conn, data: bytes) -> bool:
        """Write a whole frame; False if the peer is gone (the bytes are dropped)."""
        try:
            n = _os_write(c.fd, data)
        except BlockingIOError:
            n = 0
        except OSError:
            return False
        if n == len(data):
            return True
        return self._write_slow(c, memoryview(data)[n:])

    def writev(self, c: Conn, parts: list[Any]) -> bool:
        total = sum(len(p) for p in parts)
        try:
            n = os.writev(c.fd, parts)
        except BlockingIOError:
            n = 0
        except OSError:
            return False
        if n == total:
            return True
        rest = bytearray()
        for p in parts:
            rest += p
        return self._write_slow(c, memoryview(rest)[n:])

    def _write_slow(self, c: Conn, mv: memoryview, deadline: float | None = None) -> bool:
        """The socket buffer is full: wait until it drains, reading meanwhile.

        Reading while we wait is what keeps two processes that send each other
        large messages at the same moment from deadlocking: each one's reads
        make room for the other's writes. What is read is only queued (or
        noted, for signals); nothing here raises into the sender.
        """
        prev_writing = self.writing
        self.writing = c
        fd = c.fd
        try:
            self.ep.modify(fd, _EPOLLIN | _EPOLLOUT)
        except OSError:
            return False
        try:
            while mv:
                timeout = -1.0
                if deadline is not None:
                    timeout = deadline - _monotonic()
                    if timeout <= 0:
                        return False
                for efd, ev in self.ep.poll(timeout):
                    if efd == fd:
                        if ev & _EPOLLOUT:
                            try:
                                n = _os_write(fd, mv)
                            except BlockingIOError:
                                n = 0
                            except OSError:
                                return False
                            mv = mv[n:]
                            if not mv:
                                break
                        if ev & _EPOLLIN or (ev & _EPOLL_ERRHUP and fd in self.fds):
                            self.on_readable(c)
                            if fd not in self.fds:
                                return False
                    else:
                        self.on_event(efd, ev)
                if fd not in self.fds:
                    return False
            return True
        finally:
            self.writing = prev_writing
            if fd in self.fds:
                try:
                    self.ep.modify(fd, _EPOLLIN)
                except OSError:
                    pass

    def send(self, dest: Pid, msg: Any) -> None:
        c = self.conns.get(dest)
        if c is None and dest[0] != NODE_NAME:
            # A Pid of another node (cold path, checked only when there is no
            # connection): the dist process carries it, encoded as ETF by
            # otp/dist/_route.py, so it is not pickled here at all.
            self.msgs_out += 1
            _dist_route().send(self, dest, msg)
            return
        # The hot path: C pickle straight into a frame, one write syscall.
        try:
            payload = _pdumps(msg, 5)
            kind = MSG
        except Exception:
            kind, payload = _dumps(msg)
        # (The cheaper test first: for a small payload the scan; for a large
        # one the size of __main__ — scanning 100 KB cost ~40% of a call.)
        if self.is_main and (
            (b"__main__" in payload and _main_grew(self))
            if len(payload) < 8192
            else (_main_grew(self) and b"__main__" in payload)
        ):
            # Processes are forked from the root, a copy of the main program
            # taken when the node started: a class or function defined in
            # __main__ since then is unknown there, so what refers to
            # __main__ travels by value (dill) once __main__ has grown.
            kind, payload = MSG_DILL, _codec.dill_dumps(msg)
        self.msgs_out += 1
        if c is None:
            if dest == self.pid:
                self.mailbox.append(_loads(kind, payload))
                if self.lock is not None:
                    self._wake()
                return
            c = self.connect(dest)
            if c is None:
                return  # a dead Pid: dropped, as in Erlang
        n = len(payload)
        if n >= 65536:
            if n > MAX_FRAME:
                # The receiver would close the connection as garbage (and our
                # links through it would go deaf): refuse here, clearly.
                raise NotPicklable(
                    f"a {type(msg).__name__} message of {n} bytes pickled is over the "
                    f"{MAX_FRAME}-byte frame limit (OTP_MAX_FRAME)"
                )
            self.writev(c, [_pack((kind << KIND_SHIFT) | n), payload])
            return
        data = _pack((kind << KIND_SHIFT) | n) + payload
        try:
            if _os_write(c.fd, data) == len(data):
                return
        except BlockingIOError:
            pass
        except OSError:
            return
        self.write(c, data)  # partial or would block: the careful path

    def send_signal(self, dest: Pid, kind: int, payload: bytes = b"") -> bool:
        c = self.connect(dest)
        if c is None:
            return False
        if self.writing is c:
            self.deferred.append((c, _codec.frame(kind, payload)))
            return True
        return self.write(c, _codec.frame(kind, payload))

    # ---------------------------------------------------------------- reading

    def on_event(self, fd: int, ev: int) -> None:
        c = self.fds.get(fd)
        if c is not None:
            self.on_readable(c)
        elif fd == self.lfd:
            self.accept()
        elif fd == self.sig_r:
            self.reap()
        elif fd == self.wake_r:
            try:
                while os.read(fd, 512):
                    pass
            except BlockingIOError:
                pass
        elif fd == self.lifeline:
            # The node's root process is gone: so is the node.
            _hard_exit(1)
        elif fd in self.fd_hooks:
            # Here, not in a loop of the upper layer's own: _write_slow polls
            # too, and must not leave a hooked descriptor unread (the dist
            # process keeps reading the network while a local write waits).
            self.fd_hooks[fd](ev)

    def on_readable(self, c: Conn) -> None:
        if c.big is not None:
            self._read_big(c)
            return
        # Read into one reused buffer: a fresh 256 KiB bytes object per read
        # goes through mmap/munmap in glibc (it is above the mmap threshold),
        # which cost more than the rest of a small message's trip. A read
        # nested in _write_slow (self.writing set) must not reuse the buffer
        # an outer _parse may still be walking: it gets its own.
        try:
            if self.writing is None:
                n = _os_readv(c.fd, self.rbufs)
                data: Any = self.rview[:n]
            else:
                data = _os_read(c.fd, 65536)
                n = len(data)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            n = 0
        if not n:
            self.on_eof(c)
            return
        if c.buf:
            data = c.buf + bytes(data)
            c.buf = b""
        elif n > 8 and _unpack_from(data)[0] == n - 8 and c.peer is not None:
            # The common case: exactly one whole MSG frame (kind 0 leaves the
            # header equal to the payload length). Only once the peer has said
            # HELLO: before that, _parse closes the connection unread.
            try:
                m = _ploads(data[8:])
                if self.abandoned and self._is_late_reply(m):
                    return
                self.mailbox.append(m)
                self.msgs_in += 1
            except Exception as e:
                self._undecodable(c, e)
            return
        self._parse(c, data)

    def _parse(self, c: Conn, data: bytes) -> None:
        pos = 0
        end_data = len(data)
        mailbox = self.mailbox
        while end_data - pos >= 8:
            (h,) = _unpack_from(data, pos)
            kind = h >> KIND_SHIFT
            size = h & LEN_MASK
            if kind >= KINDS or size > MAX_FRAME or (c.peer is None and kind != HELLO):
                self._garbage(c, f"bad frame header kind={kind} size={size}")
                return
            start = pos + 8
            end = start + size
            if end > end_data:
                if size >= BIG_FRAME:
                    big = bytearray(size)
                    have = end_data - start
                    big[:have] = memoryview(data)[start:]
                    c.big = big
                    c.bigpos = have
                    c.bigkind = kind
                    return
                break
            if kind == MSG:
                try:
                    m = _loads(MSG, memoryview(data)[start:end])
                    if not (self.abandoned and self._is_late_reply(m)):
                        mailbox.append(m)
                    self.msgs_in += 1
                except Exception as e:
                    self._undecodable(c, e)
            else:
                self._control(c, kind, memoryview(data)[start:end])
                if c.fd not in self.fds:
                    return
            pos = end
        if pos < end_data:
            c.buf = bytes(data[pos:])  # the read buffer is reused: copy the tail

    def _read_big(self, c: Conn) -> None:
        big = c.big
        assert big is not None
        try:
            n = os.readv(c.fd, [memoryview(big)[c.bigpos :]])
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            n = 0
        if n == 0:
            c.big = None
            self.on_eof(c)
            return
        c.bigpos += n
        if c.bigpos == len(big):
            c.big = None
            if c.bigkind in (MSG, MSG_DILL):
                try:
                    m = _loads(c.bigkind, big)
                    if not (self.abandoned and self._is_late_reply(m)):
                        self.mailbox.append(m)
                    self.msgs_in += 1
                except Exception as e:
                    self._undecodable(c, e)
            else:
                self._control(c, c.bigkind, memoryview(big))

    def _undecodable(self, c: Conn, e: Exception) -> None:
        log_warning(
            f"{self.pid}: dropped a message from {c.peer} that cannot be "
            f"unpickled here: {type(e).__name__}: {e}"
        )

    def _garbage(self, c: Conn, why: str) -> None:
        log_warning(f"{self.pid}: closed a connection from {c.peer or 'unknown'}: {why}")
        self.on_eof(c, garbage=True)

    def _control(self, c: Conn, kind: int, payload: memoryview) -> None:
        peer = c.peer
        if kind == MSG_DILL:
            try:
                m = _loads(MSG_DILL, payload)
                if not (self.abandoned and self._is_late_reply(m)):
                    self.mailbox.append(m)
                self.msgs_in += 1
            except Exception as e:
                self._undecodable(c, e)
        elif kind == HELLO:
            if peer is not None or len(payload) != HELLO_BODY.size:
                self._garbage(c, "unexpected HELLO")
                return
            ospid, serial = HELLO_BODY.unpack(payload)
            if ospid != c.cred_pid:
                self._garbage(c, f"HELLO claims OS pid {ospid}, the socket says {c.cred_pid}")
                return
            c.peer = Pid((NODE_NAME, ospid, serial))
            self._add_peer_conn(c)
            self.write(c, _codec.frame(WELCOME))
        elif kind == WELCOME:
            c.welcomed = True
        elif kind == LINK:
            assert peer is not None
            self.links.add(peer)
        elif kind == UNLINK:
            assert peer is not None
            self.links.discard(peer)
        elif kind == EXIT:
            assert peer is not None
            try:
                reason = _loads(MSG, payload)
            except Exception as e:
                self._undecodable(c, e)
                return
            if type(reason) is DistSignal:
                # The dist process, on behalf of a process of another node
                # (otp/dist/_process.py): applied here, at read time, in
                # order with the frames around it, as a local LINK/EXIT is.
                self.dist_signal(reason)
                return
            self.exit_signal(peer, reason)
        elif kind == EXITING:
            assert peer is not None
            try:
                self.dying[peer] = _loads(MSG, payload)
            except Exception:
                self.dying[peer] = "killed"
        elif kind == INFO_REQ:
            # A request that does not unpickle is dropped like any undecodable
            # payload: an exception here would escape into the receive of
            # whatever code was running (found by tests/test_fuzz_frames.py).
            try:
                ref = _loads(MSG, payload)
            except Exception as e:
                self._undecodable(c, e)
                return
            data = _codec.frame(MSG, _dumps((ref, self.local_info()))[1])
            if self.writing is c:
                self.deferred.append((c, data))
            else:
                self.write(c, data)
        elif kind == INFO_REP:  # pragma: no cover - answers travel as MSG
            pass

    def on_eof(self, c: Conn, garbage: bool = False) -> None:
        self._drop_conn(c)
        c.buf = b""
        c.big = None
        peer = c.peer
        if peer is None:
            return
        lst = self.peer_fds.get(peer)
        if lst is None:
            return
        if c in lst:
            lst.remove(c)
        if self.conns.get(peer) is c:
            if lst:
                self.conns[peer] = lst[0]
            else:
                del self.conns[peer]
        if lst:
            return  # the peer is dead only when its last connection is gone
        del self.peer_fds[peer]
        if garbage:
            return
        reason = self.dying.pop(peer, None)
        if reason is None:
            # No EXITING came: the peer did not end gracefully (a graceful
            # end answers even connections still in its accept backlog, see
            # terminate). A connect that succeeded means it was alive then,
            # so this is a kill (SIGKILL, a segfault), never "noproc".
            reason = "killed"
            # Its socket file is gone before the DOWN is: the kernel may
            # close our connection before the dead process's listener, and a
            # send to its name after the DOWN must raise NoProc, not connect
            # to a listener that is still being torn down. (Only if it is
            # dead: a live process that dropped our connection, because we
            # sent it garbage, keeps its inbox.)
            if not is_os_process_running(peer[1]):
                try:
                    os.unlink(sock_path(self.rundir, peer))
                except OSError:
                    pass
        if peer.id in self.children:
            self.reap_pending.add(peer.id)
            self.reap()
        self.peer_down(peer, reason)

    def peer_down(self, peer: Pid, reason: Any) -> None:
        """`peer` ended with `reason`: fire our links and monitors on it."""
        refs = self.mon_by_pid.pop(peer, None)
        if refs:
            # r[1:], not r.ids: a call's monitor key is a plain tuple
            # (otp/_call.py sends its tag unpickled-cheap), not a Ref.
            for ref in sorted(refs, key=lambda r: r[1:]):
                obj = self.monitors.pop(ref, (None, peer))[1]
                self.mailbox.append(DOWN(ref, obj, reason))
        if peer in self.links:
            self.links.discard(peer)
            self.exit_signal(peer, reason, linked=True)
        route = sys.modules.get("otp.dist._route")
        if route is not None and route._cached is not None and route._cached[0] == peer:
            # The node's dist process ended (killed, or distribution
            # stopped): as a lost connection to every node, each link to
            # and monitor of another node's process breaks (otp/dist/_route.py).
            route.dist_lost(self)

    def exit_signal(self, sender: Pid, reason: Any, linked: bool = False) -> None:
        """An exit signal arrived (OTP semantics, otp-semantics.md section 5)."""
        if self.trap:
            self.mailbox.append(EXIT_MSG(sender, reason))
        elif reason == "normal" and sender != self.pid:
            return
        elif self.pending_exit is None:
            self.pending_exit = (reason,)

    def dist_signal(self, s: DistSignal) -> None:
        """A link, unlink or exit signal from `s.remote`, a process of another
        node, relayed by the dist process (which keeps the node's half of
        every link across nodes and tells us of ours)."""
        op, remote = s.op, s.remote
        if op == "link":
            self.links.add(remote)
        elif op == "unlink":
            self.links.discard(remote)
        elif op == "exit":
            # A link broke. Acted on only while we still hold the link: after
            # our own unlink, an EXIT already in flight is dropped (Erlang's
            # UNLINK_ID protocol guarantees the same).
            if remote in self.links:
                self.links.discard(remote)
                self.exit_signal(remote, s.reason, linked=True)
        elif op == "exit2":
            self.exit_signal(remote, s.reason)
        elif op == "nodedown":
            # `otp.monitor_node(s.reason)` fired: the message, counted.
            _dist_route().nodedown(self, s.reason)

    # -------------------------------------------------------------- receiving

    def wait(self, timeout: float | None) -> None:
        """Block until something arrives (or `timeout`); read what did."""
        if self.timers:
            due = self.timers[0][0] - _monotonic()
            if timeout is None or due < timeout:
                timeout = max(due, 0.0)
        if self.lock is not None:
            self._wait_threaded(timeout)
            return
        # Status is "waiting" until the events are handled: a process_info
        # request read here is answered by a process that was waiting.
        # (The event loop is inlined: this is every process's hot path.)
        self.status = "waiting"
        try:
            fds = self.fds
            for fd, ev in self.ep.poll(-1.0 if timeout is None else timeout):
                c = fds.get(fd)
                if c is not None:
                    self.on_readable(c)
                else:
                    self.on_event(fd, ev)
        finally:
            self.status = "running"
        if self.deferred or self.timers:
            self._after_events()

    def _handle_events(self, events: list[tuple[int, int]]) -> None:
        fds = self.fds
        for fd, ev in events:
            c = fds.get(fd)
            if c is not None:
                self.on_readable(c)
            else:
                self.on_event(fd, ev)

    def _after_events(self) -> None:
        if self.deferred:
            deferred, self.deferred = self.deferred, []
            for dc, data in deferred:
                if dc.fd in self.fds:
                    self.write(dc, data)
        if self.timers:
            self.fire_timers()

    def _wake(self) -> None:
        """Threads of the main program: a message was queued without any
        socket activity (a send to self). Wake the poller (through a pipe in
        its epoll) and the threads waiting to rescan the mailbox."""
        if self.wake_w < 0:
            self.wake_r, self.wake_w = _high_pipe()
            self.ep.register(self.wake_r, _EPOLLIN)
        try:
            os.write(self.wake_w, b"!")
        except BlockingIOError:
            pass  # already awake: the pipe is full of wake-ups
        assert self.cond is not None
        if self.waiters:
            self.cond.notify_all()

    def _wait_threaded(self, timeout: float | None) -> None:
        """`wait` in the main program, whose threads may share this Process.

        Called with `self.lock` held (every entry point of the main
        program's Process takes it). One thread at a time polls, *without*
        the lock, so the others can send meanwhile; the rest wait on the
        condition, and every poller wakes them all when it has read what came,
        so each rescans the mailbox for its own message (and one of them
        polls next). Reading and parsing always happen under the lock.
        """
        assert self.lock is not None and self.cond is not None
        if self.polling:
            self.waiters += 1
            try:
                self.cond.wait(timeout)
            finally:
                self.waiters -= 1
            return
        self.polling = True
        self.status = "waiting"
        try:
            saved = self.lock._release_save()  # type: ignore[attr-defined]
            try:
                events = self.ep.poll(-1.0 if timeout is None else timeout)
            finally:
                self.lock._acquire_restore(saved)  # type: ignore[attr-defined]
            self._handle_events(events)
        finally:
            self.status = "running"
            self.polling = False
            if self.waiters:  # notify_all costs ~0.3 us even with no waiter
                self.cond.notify_all()
        self._after_events()

    def receive_any(self, timeout: float | None) -> Any:
        """`receive(None, timeout)`, lean: what a behaviour's loop calls."""
        mb = self.mailbox
        if mb and self.pending_exit is None:
            self.since_poll += 1
            if self.since_poll < POLL_EVERY:
                return mb.popleft()
        elif not mb and timeout is None and self.lock is None:
            # An idle server: wait once, then take what came (the common
            # case), else fall back to the general loop.
            self.wait(None)
            if mb and self.pending_exit is None:
                return mb.popleft()
        return self.receive(None, timeout)

    def abandon(self, ref: Ref) -> None:
        """A call gave up on `ref`: drop its reply if it ever comes."""
        self.abandoned[ref] = None
        if len(self.abandoned) > 10000:
            del self.abandoned[next(iter(self.abandoned))]

    def _is_late_reply(self, m: Any) -> bool:
        """A reply to a call that already gave up, or the DOWN of a remote
        monitor already removed: dropped as it arrives.

        Only a message that arrives after the call gave up can be its late
        reply (one that came earlier was found by the call), so filtering at
        arrival is complete, and a long mailbox is never rescanned for it.
        The same holds for a remote monitor's DOWN: the dist process may have
        sent it before it read our demonitor (otp/dist/_route.py), and
        Erlang's demonitor promises that none comes after it returned.
        """
        t = type(m)
        if t is tuple and len(m) == 2 and _is_tag(m[0]) and m[0] in self.abandoned:
            del self.abandoned[m[0]]
            return True
        if t is DOWN and m[0] in self.abandoned:
            del self.abandoned[m[0]]
            return True
        return False

    def receive(
        self, match: Callable[[Any], bool] | None, timeout: float | None, start: int = 0
    ) -> Any:
        """Erlang's receive: the first message `match` accepts, in arrival order.

        `start` skips that many messages at the head of the mailbox: a caller
        that knows none of them can match (a call's reply cannot be older than
        its request) saves scanning a long queue again and again.
        """
        mb = self.mailbox
        deadline = None
        # With threads (main program only), another thread may remove an
        # older message meanwhile and shift every index: then always rescan.
        threaded = self.lock is not None
        scanned = 0 if threaded else start
        while True:
            if self.pending_exit is not None:
                self.die_from_signal()
            if threaded:
                scanned = 0
            if mb:
                self.since_poll += 1
                if self.since_poll >= POLL_EVERY:
                    self.since_poll = 0
                    self.wait(0)
                    if self.pending_exit is not None:
                        self.die_from_signal()
                if match is None:
                    return mb.popleft()
                n = len(mb)
                if scanned < n:
                    i = scanned
                    for m in itertools.islice(mb, scanned, None):
                        if match(m):
                            del mb[i]
                            return m
                        i += 1
                    scanned = n
            if timeout is None:
                self.wait(None)
                continue
            now = _monotonic()
            if deadline is None:
                deadline = now + timeout
            remaining = deadline - now
            if remaining <= 0:
                if timeout == 0 and deadline == now:
                    # timeout=0 still looks at what has already arrived.
                    self.wait(0)
                    deadline -= 1
                    continue
                raise ReceiveTimeout(f"no matching message within {timeout} s")
            self.wait(remaining)

    def await_reply(self, ref: Ref, timeout: float | None, start: int) -> Any:
        """`receive` specialised for a call: `(ref, reply)` or the DOWN of `ref`.

        The same semantics as receive(match, timeout, start), without a
        Python-level predicate per message: this is the caller's hot path.
        """
        mb = self.mailbox
        threaded = self.lock is not None  # see receive: indices may shift
        scanned = 0 if threaded else start
        deadline = None
        _tuple = tuple
        while True:
            if self.pending_exit is not None:
                self.die_from_signal()
            if threaded:
                scanned = 0
            n = len(mb)
            if scanned < n:
                i = scanned
                for m in itertools.islice(mb, scanned, None):
                    t = type(m)
                    if (t is _tuple and len(m) == 2 and m[0] == ref) or (t is DOWN and m[0] == ref):
                        del mb[i]
                        return m
                    i += 1
                scanned = n
            if timeout is None:
                self.wait(None)
                continue
            now = _monotonic()
            if deadline is None:
                deadline = now + timeout
            elif now >= deadline:
                raise ReceiveTimeout(f"no reply within {timeout} s")
            self.wait(max(deadline - now, 0.0))

    def die_from_signal(self) -> None:
        assert self.pending_exit is not None
        (reason,) = self.pending_exit
        if self.is_main:
            # The main program is a process too, but not one the runtime may
            # end behind the user's back: the signal surfaces as otp.Exit.
            self.pending_exit = None
            raise Exit(reason)
        self.terminate(reason)

    # ----------------------------------------------------------------- timers

    def send_after(self, seconds: float, dest: Any, msg: Any) -> TimerRef:
        tref = TimerRef((NODE_NAME, self.pid.id, self.pid.serial, next(self.refs)))
        deadline = _monotonic() + max(seconds, 0.0)
        _dumps(msg)  # an unpicklable message raises now, in the sender
        self.timer_map[tref] = (deadline, dest, msg)
        heapq.heappush(self.timers, (deadline, next(self.seq), tref))
        return tref

    def cancel_timer(self, tref: TimerRef) -> float | bool:
        entry = self.timer_map.pop(tref, None)
        if entry is None:
            return False
        return max(entry[0] - _monotonic(), 0.0)

    def fire_timers(self) -> None:
        now = _monotonic()
        timers = self.timers
        while timers and timers[0][0] <= now:
            _, _, tref = heapq.heappop(timers)
            entry = self.timer_map.pop(tref, None)
            if entry is None:
                continue
            dest = entry[1]
            try:
                if type(dest) is not Pid:
                    dest = resolve(dest)
                self.send(dest, entry[2])
            except NoProc:
                pass

    # ----------------------------------------------------------- introspection

    def local_info(self) -> dict[str, Any]:
        name = registered_name(self.pid)
        return {
            "pid": self.pid,
            "os_pid": os.getpid(),
            "registered_name": name,
            "status": self.status,
            "message_queue_len": len(self.mailbox),
            "links": sorted(self.links),
            "monitors": sorted({p for p, _ in self.monitors.values()}),
            "trap_exit": self.trap,
            "messages_in": self.msgs_in,
            "messages_out": self.msgs_out,
            **{k: v for k, v in self.info.items() if not k.startswith("_")},
        }

    # ---------------------------------------------------------------- reaping

    def ensure_sigchld(self) -> None:
        """Learn of our children's ends from SIGCHLD, through a wakeup pipe in epoll.

        One descriptor for all children: a pidfd per child would double the
        descriptors of a supervisor with 10,000 children.
        """
        if self.sig_r >= 0:
            return
        r, w = _high_pipe()
        self.sig_r, self.sig_w = r, w
        signal.signal(signal.SIGCHLD, _noop_handler)
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        self.ep.register(r, _EPOLLIN)

    def reap(self) -> None:
        if self.sig_r >= 0:
            try:
                while os.read(self.sig_r, 512):
                    pass
            except BlockingIOError:
                pass
        # SIGCHLD without a known death: a child died without our seeing its
        # connection close yet. Look at every child once (without marking the
        # live ones as pending: _reap_before_exit waits for pending ones).
        candidates = self.reap_pending or set(self.children)
        for ospid in list(candidates):
            try:
                done, _status = os.waitpid(ospid, os.WNOHANG)
            except ChildProcessError:
                done = ospid
            if done:
                self.reap_pending.discard(ospid)
                child = self.children.pop(ospid, None)
                if child is not None:
                    cleanup_dead(self.rundir, child)

    # ----------------------------------------------------------------- ending

    def _reap_before_exit(self, budget: float = 0.5) -> None:
        """Reap the children whose end we have seen (their sockets closed),
        so that a supervisor that kills a child and then exits leaves no
        zombie for the root to collect later. Their sockets closed in do_exit,
        so they become reapable within moments; the budget bounds the wait
        for one that closed its socket yet lives on."""
        deadline = _monotonic() + budget
        delay = 0.0005
        while self.reap_pending and _monotonic() < deadline:
            self.reap()
            if self.reap_pending:
                time.sleep(delay)
                delay = min(delay * 2, 0.02)

    def terminate(self, reason: Any) -> None:
        """End this process with `reason`: tell every peer, then leave.

        Order matters. The name and the socket path go first, so nobody new
        can reach a process that is about to vanish (they get noproc). Then
        EXITING goes out on every connection, after any message already sent
        on it. Sockets are left for the kernel to close at exit: it marks the
        process as exiting *before* closing them, so a peer that sees the close
        also sees the process as dead (is_process_alive is never stale).
        """
        try:
            unregister_pid(self.rundir, self.pid)
            for path in (sock_path(self.rundir, self.pid), self.spare and self.spare[1]):
                if path:
                    try:
                        os.unlink(path)
                    except OSError:
                        pass
            try:
                kind, payload = _dumps(reason)
                if kind != MSG:
                    raise NotPicklable("reason")
            except Exception:
                payload = _dumps(repr(reason))[1]
            frame = _codec.frame(EXITING, payload)
            # Connections still waiting in the accept backlog were made while
            # we were alive (our socket path is gone now, so no new ones come):
            # take them, so their owners learn our real reason too.
            self.accept()
            # Then close the listener ourselves, before any EXITING goes out:
            # left to the kernel's exit, it may close after the connections
            # (the kernel's order is not ours to choose), and a peer that saw
            # our EXITING and EOF could still connect through a socket file
            # that a spawner renamed into place after we had unlinked it.
            self.lsock.close()
            for peer in list(self.links):
                if peer not in self.conns:
                    self.connect(peer)
            deadline = _monotonic() + EXITING_DEADLINE
            for c in list(self.fds.values()):
                if c.fd not in self.fds:
                    continue
                try:
                    n = _os_write(c.fd, frame)
                except BlockingIOError:
                    n = 0
                except OSError:
                    continue
                if n < len(frame):
                    self._write_slow(c, memoryview(frame)[n:], deadline)
            self._reap_before_exit()
        finally:
            _hard_exit(0 if reason == "normal" else 1)


def _is_tag(k: Any) -> bool:
    """A Ref, or the plain-tuple tag `(node, id, serial, n)` a call sends."""
    t = type(k)
    if t is Ref or t is _AnsweredRef:
        return True
    return (
        t is tuple
        and len(k) == 4
        and type(k[0]) is str
        and type(k[1]) is int
        and type(k[2]) is int
        and type(k[3]) is int
    )


#: The Process methods the main program's threads reach it through.
_GUARDED = (
    "send",
    "connect",
    "receive",
    "await_reply",
    "send_signal",
    "add_conn",
    "send_after",
    "cancel_timer",
    "abandon",
    "local_info",
    "write",
    "terminate",
)


def _guarded(lock: Any, fn: Callable[..., Any]) -> Callable[..., Any]:
    def locked(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return fn(*args, **kwargs)

    locked.__name__ = getattr(fn, "__name__", "locked")
    return locked


def main_locked(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run an API function under the main program's lock (see _wait_threaded).

    For functions that change several of the Process's tables in a row
    (monitor: connect, then register): another thread's poll must not handle
    the peer's death in between. In an OTP process it only costs the check.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        p = _proc
        if p is not None and p.lock is not None:
            with p.lock:
                return fn(*args, **kwargs)
        return fn(*args, **kwargs)

    return wrapper


def _main_grew(p: Process) -> bool:
    main = sys.modules.get("__main__")
    return main is not None and len(vars(main)) != p.info.get("_main_globals", -1)


def _noop_handler(signum: int, frame: Any) -> None:
    pass


def _hard_exit(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code)


def _high_epoll() -> select.epoll:
    """A new epoll object whose descriptor is in the runtime's range."""
    ep = select.epoll()
    fd = ep.fileno()
    if fd >= FD_BASE:
        return ep
    try:
        new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, FD_BASE)
    except OSError:
        return ep
    ep.close()
    return select.epoll.fromfd(new)


def _high_pipe() -> tuple[int, int]:
    """A non-blocking pipe whose ends are in the runtime's range."""
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    return high_fd(r), high_fd(w)


def _close_fds(fds: list[int]) -> None:
    """Close sorted descriptors, in runs (one close_range call per run)."""
    i = 0
    n = len(fds)
    while i < n:
        j = i
        while j + 1 < n and fds[j + 1] == fds[j] + 1:
            j += 1
        os.closerange(fds[i], fds[j] + 1)
        i = j + 1


# --------------------------------------------------------------------- paths


def sock_path(rundir: str, pid: Pid) -> str:
    return f"{rundir}/{pid.id}.{pid.serial}"


def _name_path(rundir: str, name: str) -> str:
    return f"{rundir}/names/{urllib.parse.quote(name, safe='')}"


def cleanup_dead(rundir: str, pid: Pid) -> None:
    """Remove what a dead process left in the runtime directory (it may have
    been killed before it could remove them itself)."""
    try:
        os.unlink(sock_path(rundir, pid))
    except OSError:
        pass
    # The spare listener it had bound for its next child, if any.
    prefix = f".new-{pid[1]}-"
    try:
        for entry in os.listdir(rundir):
            if entry.startswith(prefix):
                os.unlink(f"{rundir}/{entry}")
    except OSError:
        pass
    unregister_pid(rundir, pid)


# --------------------------------------------------------------------- names
#
# The registry is a directory of symlinks, name -> "<ospid>.<serial>": lookups
# are one readlink, no round trip to any process. Writes take a lock file, so
# that "is the holder dead? then replace it" is atomic.


class _NamesLock:
    def __init__(self, rundir: str) -> None:
        self.path = f"{rundir}/names.lock"

    def __enter__(self) -> None:
        import fcntl

        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: Any) -> None:
        os.close(self.fd)


def _parse_target(target: str) -> Pid | None:
    try:
        a, b = target.split(".")
        return Pid((NODE_NAME, int(a), int(b)))
    except ValueError:
        return None


def lookup(rundir: str, name: str) -> Pid | None:
    """The Pid a name points to (alive or not), or None."""
    try:
        return _parse_target(os.readlink(_name_path(rundir, name)))
    except OSError:
        return None


def register(rundir: str, name: str, pid: Pid) -> None:
    if not isinstance(name, str) or not name or name == "undefined":
        raise BadArg(f"invalid name: {name!r}")
    path = _name_path(rundir, name)
    with _NamesLock(rundir):
        if not is_alive(pid):
            raise BadArg(f"cannot register {name!r}: {pid} is not alive")
        current = lookup(rundir, name)
        if current is not None:
            if is_alive(current):
                raise BadArg(f"name {name!r} is already registered to {current}")
            os.unlink(path)
        if registered_name(pid) is not None:
            raise BadArg(f"{pid} already has a registered name")
        os.symlink(f"{pid.id}.{pid.serial}", path)


def unregister(rundir: str, name: str) -> None:
    path = _name_path(rundir, name)
    with _NamesLock(rundir):
        current = lookup(rundir, name)
        if current is None or not is_alive(current):
            if current is not None:
                os.unlink(path)
            raise BadArg(f"name {name!r} is not registered")
        os.unlink(path)


def names_of(rundir: str) -> dict[str, Pid]:
    out = {}
    try:
        entries = os.listdir(f"{rundir}/names")
    except OSError:
        return {}
    for q in entries:
        pid = lookup(rundir, urllib.parse.unquote(q))
        if pid is not None:
            out[urllib.parse.unquote(q)] = pid
    return out


def unregister_pid(rundir: str, pid: Pid) -> None:
    """Free every name held by `pid` (a process ending, or its reaper)."""
    held = [n for n, p in names_of(rundir).items() if p == pid]
    if not held:
        return
    with _NamesLock(rundir):
        for name in held:
            if lookup(rundir, name) == pid:
                try:
                    os.unlink(_name_path(rundir, name))
                except OSError:
                    pass


def registered_name(pid: Pid) -> str | None:
    p = _proc
    if p is None:
        return None
    for n, holder in names_of(p.rundir).items():
        if holder == pid:
            return n
    return None


# -------------------------------------------------------- the public surface


def current() -> Process:
    p = _proc
    if p is None:
        from . import _node

        p = _node.ensure_started()
    return p


def is_alive(pid: Pid) -> bool:
    """A local process is alive while its socket file exists (its identity:
    the serial is in the name, so a reused OS pid is a different file) and
    its OS process runs and has not begun to exit.

    The kernel flags a process as exiting at the very start of do_exit,
    before it closes the process's descriptors, and peers learn of a death
    from those closes: so once a DOWN was delivered this reads False.
    """
    p = _proc
    if p is not None and pid == p.pid:
        return True
    if pid[0] != NODE_NAME or p is None:
        return False
    if not os.path.exists(f"{p.rundir}/{pid[1]}.{pid[2]}"):
        return False
    return is_os_process_running(pid[1])


def new_serial() -> int:
    """The serial for a new process: the monotonic clock in milliseconds.

    (OS pid, serial) never repeats within a node: an OS pid is reused only
    after the pid space wrapped, far more than a millisecond later.
    """
    return time.monotonic_ns() // 1_000_000


def resolve(dest: Any) -> Pid:
    """A Pid for a send destination: a Pid, or a registered name."""
    if type(dest) is Pid:
        return dest
    if isinstance(dest, str):
        pid = lookup(current().rundir, dest)
        if pid is None:
            raise NoProc(dest, f"no process registered as {dest!r}")
        return pid
    if type(dest) is tuple and len(dest) == 2 and dest[1] == NODE_NAME:
        return resolve(dest[0])  # Erlang's {Name, node()}: a local name
    raise BadArg(f"not a Pid or a registered name: {dest!r}")


def send(dest: Any, msg: Any) -> None:
    """Send `msg` to `dest` and return at once (Erlang's `Dest ! Msg`).

    Args:
        dest: a Pid, a registered name, or `(name, node)`.
        msg: any value that pickles (dill is tried for what the C pickler
            refuses). Messages from one sender to one receiver arrive in the
            order they were sent.

    A message to a dead Pid is dropped silently, as in Erlang: use a monitor
    to learn of a death.

    Raises:
        NoProc: `dest` is a name that no live process holds.
        BadArg: `dest` is neither a Pid nor a name.
        NotPicklable: `msg` cannot be serialised (raised in the sender).
    """
    p = _proc or current()
    if type(dest) is not Pid:
        if type(dest) is tuple and _dist_route().is_remote(dest):
            # {Name, Node} on another node: the dist process carries it.
            _dist_route().send(p, dest, msg)
            return
        pid = resolve(dest)
        if pid != p.pid and pid not in p.conns and p.connect(pid) is None:
            raise NoProc(dest, f"no process registered as {dest!r}")
        dest = pid
    p.send(dest, msg)


_route_mod: Any = None


def _dist_route() -> Any:
    """otp.dist._route, imported late (it imports this module): the hooks
    above call it only for destinations on other nodes. Kept once imported:
    an import statement per remote send cost a trip through importlib."""
    global _route_mod
    if _route_mod is None:
        from .dist import _route

        _route_mod = _route
    return _route_mod


class DistSignal(NamedTuple):
    """A signal from a process of another node, as the dist process hands it
    to a local one (pickled in an EXIT frame; see `Process.dist_signal`).

    `op` is "link" (`remote` linked to us), "unlink", "exit" (a link to
    `remote` broke with `reason`), "exit2" (`remote` called `otp.exit`) or
    "nodedown" (node `reason`, watched with `otp.monitor_node`, is lost;
    `remote` is the dist process).
    """

    op: str
    remote: Pid
    reason: Any = None


def make_ref() -> Ref:
    """A reference unique within the node (Erlang's `make_ref()`).

    Use it to tag a request so that its answer can be matched in `receive`:
    `ref = otp.make_ref(); otp.send(pid, (ref, req)); otp.receive(lambda m:
    m[0] == ref)`.
    """
    p = _proc or current()
    return Ref((NODE_NAME, p.pid.id, p.pid.serial, next(p.refs)))


@main_locked
def link(pid: Pid) -> None:
    """Link the caller and `pid`: when either ends, the other gets an exit signal.

    Links are bidirectional and idempotent; linking to yourself does nothing.
    A process that does not trap exits dies of a linked process's abnormal
    end (with the same reason); one that traps gets `EXIT(pid, reason)`.
    Prefer `spawn_link` to `spawn` + `link`: there is no window in which the
    new process could die unseen.

    Raises:
        NoProc: `pid` is not alive and the caller does not trap exits (a
            trapping caller gets `EXIT(pid, "noproc")` instead).
    """
    p = current()
    if pid == p.pid:
        return
    if pid in p.links:
        return
    if type(pid) is Pid and pid[0] != NODE_NAME:
        # Another node's process (cold path): the dist process holds the
        # link's other half and tells us if it breaks (otp/dist/_route.py).
        p.links.add(pid)
        _dist_route().link(p, pid)
        return
    if p.connect(pid) is None:
        if p.trap:
            p.mailbox.append(EXIT_MSG(pid, "noproc"))
            return
        raise NoProc(pid, f"cannot link to {pid}: no such process")
    p.links.add(pid)
    p.send_signal(pid, LINK)


@main_locked
def unlink(pid: Pid) -> None:
    """Remove the link between the caller and `pid` (nothing if there is none).

    Once it returns, `pid`'s end no longer affects the caller; an `EXIT`
    from it that arrived before may still be queued (as in Erlang).
    """
    p = current()
    if pid in p.links:
        p.links.discard(pid)
        if pid[0] != NODE_NAME:
            _dist_route().unlink(p, pid)  # another node's: otp/dist/_route.py
        else:
            p.send_signal(pid, UNLINK)


@main_locked
def monitor(target: Any) -> Ref:
    """Watch `target` (a Pid or a registered name); returns the monitor's Ref.

    Exactly one `DOWN(ref, obj, reason)` arrives when the target ends, where
    `obj` is the Pid, or `(name, node)` for a name. A dead Pid or an unknown
    name gives an immediate `DOWN` with reason `"noproc"`. Monitors are
    one-way and stack: each call is a new monitor. Cancel with `demonitor`.

    Raises:
        BadArg: `target` is the calling process itself.
    """
    p = current()
    ref = Ref((NODE_NAME, p.pid.id, p.pid.serial, next(p.refs)))
    if type(target) is Pid:
        pid: Pid | None = target
        obj: Any = target
    else:
        obj = (target, NODE_NAME)
        if type(target) is tuple and len(target) == 2 and target[1] == NODE_NAME:
            obj, target = target, target[0]  # {Name, node()}: a local name
        pid = lookup(p.rundir, target) if isinstance(target, str) else None
    if pid is None or pid == p.pid or p.connect(pid) is None:
        if pid == p.pid:
            raise BadArg("a process cannot monitor itself here")
        if _dist_route().is_remote(target):
            # Another node's Pid or {Name, Node} (cold path): the dist
            # process monitors it and sends us the DOWN (otp/dist/_route.py).
            _dist_route().monitor(p, ref, target)
            return ref
        p.mailbox.append(DOWN(ref, obj, "noproc"))
        return ref
    p.monitors[ref] = (pid, obj)
    p.mon_by_pid.setdefault(pid, set()).add(ref)
    return ref


@main_locked
def demonitor(ref: Ref, flush: bool = False) -> bool:
    """Cancel the monitor `ref`; True if it was still active.

    Args:
        ref: what `monitor` returned.
        flush: also remove its `DOWN` if one is already in the mailbox.
    """
    p = current()
    entry = p.monitors.pop(ref, None)
    if entry is not None:
        refs = p.mon_by_pid.get(entry[0])
        if refs is not None:
            refs.discard(ref)
            if not refs:
                del p.mon_by_pid[entry[0]]
    remote = entry is None and _dist_route().demonitor(p, ref)  # otp/dist/_route.py
    if flush:
        mb = p.mailbox
        for i, m in enumerate(mb):
            if type(m) is DOWN and m.ref == ref:
                del mb[i]
                break
    return entry is not None or remote


@main_locked
def exit(pid: Any, reason: Any) -> None:
    """Send an exit signal with `reason` to `pid` (a Pid or a registered name).

    What it does to the receiver (otp-semantics.md 5.2): `"kill"` ends it
    with `"killed"`, always (it is SIGKILL); if it traps exits, any other
    reason becomes the message `EXIT(sender, reason)`; if not, `"normal"` is
    ignored (unless sent to yourself: you end `"normal"`) and any other
    reason ends it with that reason. Sent to yourself from the main program,
    the signal surfaces as `otp.Exit` at the next `receive`.

    Raises:
        NoProc: `pid` is a name nobody holds.
        NotPicklable: `reason` does not pickle without dill.
    """
    p = current()
    pid = resolve(pid)
    if pid[0] != NODE_NAME:
        # Another node's process: EXIT2 through the dist process ("kill"
        # too: the other node kills it). Raises EncodeError for a reason
        # outside the term mapping (otp/dist/_route.py).
        _dist_route().exit(p, pid, reason)
        return
    if pid == p.pid:
        if reason == "kill":
            p.pending_exit = ("killed",)
        else:
            # "normal" too: exit_signal ends a non-trapping process that sent
            # it to itself, and makes it a message for a trapping one, as
            # every other trapped signal (otp-semantics.md 5.2).
            p.exit_signal(pid, reason)
        if p.pending_exit is not None and not p.is_main:
            p.die_from_signal()
        return
    if reason == "kill":
        # Untrappable by construction: the OS does it. Links and monitors of
        # the victim see "killed" (its sockets close without an EXITING).
        if is_alive(pid):
            try:
                os.kill(pid.id, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return
    kind, payload = _dumps(reason)
    if kind != MSG:
        raise NotPicklable(f"exit reason must pickle without dill: {reason!r}")
    p.send_signal(pid, EXIT, payload)


@main_locked
def trap_exit(flag: bool) -> bool:
    """Set whether the caller traps exits; returns the previous setting.

    A trapping process receives exit signals (from links and `exit`) as
    `EXIT(pid, reason)` messages instead of dying of them; `"kill"` still
    kills. Supervisors and servers that must run cleanup trap exits.
    """
    p = current()
    old = p.trap
    p.trap = bool(flag)
    return old


def receive(match: Callable[[Any], bool] | None = None, timeout: float | None = None) -> Any:
    """Take the first message `match` accepts, in arrival order (Erlang's receive).

    Args:
        match: a predicate; messages it rejects stay queued, in order, for
            a later receive. None takes the oldest message.
        timeout: seconds to wait for a matching message; None waits
            forever; 0 only looks at what has already arrived.

    Raises:
        ReceiveTimeout: nothing matched within `timeout`.
        Exit: in the main program only, an exit signal that would have ended
            a process (the main program is not ended behind your back).
    """
    p = _proc or current()
    return p.receive(match, timeout)


def crash_reason(exc: BaseException) -> Any:
    if isinstance(exc, Exit):
        return exc.reason
    return Crash.from_exception(exc)


def run_process_body(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Run a process's function and end the process with the right reason."""
    p = _proc
    assert p is not None
    try:
        fn(*args, **kwargs)
        reason: Any = "normal"
    except Exit as e:
        reason = e.reason
    except BaseException as e:
        reason = Crash.from_exception(e)
        log_crash(p.pid, p.info.get("name"), reason, p.info)
    p.terminate(reason)


__all__ = [
    "NODE_NAME",
    "Process",
    "crash_reason",
    "current",
    "demonitor",
    "exit",
    "is_alive",
    "link",
    "make_ref",
    "monitor",
    "receive",
    "resolve",
    "send",
    "trap_exit",
    "unlink",
]
