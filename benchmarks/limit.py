"""The limit: what two Python processes do with no runtime between them.

The same definitions as `peers-bench/common.py` (baselines.md): a child made
with `os.fork`, reached over a `socket.socketpair`, messages as
`pickle.dumps(obj, 5)` frames behind a 4-byte length prefix, read through a
`BufferedReader`. The runtime's wire format is the same shape (an 8-byte
header instead of 4), so the ratio of a figure to this limit is the cost of
everything the runtime adds: mailbox, selective receive, links, monitors.

For spawning, the limit is a bare `os.fork` whose child answers on a pipe, and
the idle memory of such a child (spawn_cost.py).
"""

from __future__ import annotations

import os
import pickle
import socket
import struct
import time
from typing import Any

__all__ = [
    "BIG",
    "SMALL",
    "ForkChild",
    "FramedBaseline",
    "FramedSock",
    "fork_first_answer_ms",
    "uss_mib",
    "wait_idle",
]

#: The small message of every figure: a typical request.
SMALL = ("add", 1)
#: The large message: 100 KB of bytes.
BIG = b"x" * (100 * 1024)

_HDR = struct.Struct("!I")


class FramedSock:
    """Length-prefixed pickle-5 frames over a stream socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.rfile = sock.makefile("rb", buffering=256 * 1024)

    def send(self, obj: Any) -> None:
        data = pickle.dumps(obj, protocol=5)
        n = len(data)
        if n < 16384:
            self.sock.sendall(_HDR.pack(n) + data)
        else:
            self.sock.sendall(_HDR.pack(n))
            self.sock.sendall(data)

    def recv(self) -> Any:
        hdr = self.rfile.read(4)
        if len(hdr) < 4:
            raise EOFError
        (n,) = _HDR.unpack(hdr)
        data = self.rfile.read(n)
        if len(data) < n:
            raise EOFError
        return pickle.loads(data)

    def close(self) -> None:
        try:
            self.rfile.close()
        finally:
            self.sock.close()


def _echo_child(sock: socket.socket) -> None:
    fs = FramedSock(sock)
    try:
        while True:
            msg = fs.recv()
            if msg == "stop":
                fs.send("bye")
                break
            if isinstance(msg, tuple) and msg and msg[0] == "count":
                n = msg[1]
                for _ in range(n):
                    fs.recv()
                fs.send(("counted", n))
                continue
            fs.send(msg)
    except EOFError:
        pass
    os._exit(0)


class FramedBaseline:
    """A forked echo child reached over a socketpair with pickle-5 frames.

    Create it before anything starts threads or an otp node, so that the
    child is a plain copy of the benchmark process.
    """

    def __init__(self) -> None:
        a, b = socket.socketpair()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                a.close()
                _echo_child(b)
            finally:
                os._exit(0)
        b.close()
        self.pid = pid
        self.fs = FramedSock(a)

    def rtt_us(self, payload: Any, n: int) -> float:
        """Mean µs per send-then-receive of `payload`, over `n` round trips."""
        fs = self.fs
        t0 = time.perf_counter()
        for _ in range(n):
            fs.send(payload)
            fs.recv()
        return (time.perf_counter() - t0) / n * 1e6

    def oneway_per_s(self, payload: Any, n: int) -> float:
        """Messages per second for `n` sends followed by one synchronising reply."""
        fs = self.fs
        t0 = time.perf_counter()
        fs.send(("count", n))
        for _ in range(n):
            fs.send(payload)
        r = fs.recv()
        assert r == ("counted", n), r
        return n / (time.perf_counter() - t0)

    def close(self) -> None:
        try:
            self.fs.send("stop")
            self.fs.recv()
        except (OSError, EOFError):
            pass
        self.fs.close()
        os.waitpid(self.pid, 0)


class ForkChild:
    """A bare `os.fork` child that writes one byte on a pipe, then blocks
    reading another pipe until released: the limit of "spawn until first
    answer", and of an idle process's memory."""

    def __init__(self) -> None:
        r, w = os.pipe()
        r2, w2 = os.pipe()
        t0 = time.perf_counter()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                os.close(r)
                os.close(w2)
                os.write(w, b"r")
                os.read(r2, 1)
            finally:
                os._exit(0)
        os.close(w)
        os.close(r2)
        ok = os.read(r, 1) == b"r"
        self.first_answer_s = time.perf_counter() - t0
        os.close(r)
        assert ok, "the forked child did not answer"
        self.pid = pid
        self._release = w2

    def stop(self) -> None:
        os.write(self._release, b"s")
        os.close(self._release)
        os.waitpid(self.pid, 0)


def fork_first_answer_ms(n: int) -> float:
    """Mean ms from `os.fork` to the child's first byte read, over `n` children."""
    total = 0.0
    for _ in range(n):
        c = ForkChild()
        total += c.first_answer_s
        c.stop()
    return total / n * 1e3


def wait_idle(ospid: int, timeout: float = 1.0) -> None:
    """Wait until the process sleeps (blocked in a read or epoll_wait)."""
    import psutil

    proc = psutil.Process(ospid)
    deadline = time.monotonic() + timeout
    while proc.status() != psutil.STATUS_SLEEPING and time.monotonic() < deadline:
        time.sleep(0.001)


def uss_mib(ospid: int) -> float:
    """The process's USS (memory no other process shares), in MiB."""
    import psutil

    return float(psutil.Process(ospid).memory_full_info().uss) / 2**20
