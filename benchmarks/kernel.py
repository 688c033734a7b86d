"""Kernel figures: messages, spawning and memory of bare `otp` processes.

Every figure here talks to processes started with `otp.spawn` from the main
program (which reaches them through the node's root, as user code does), and
is measured next to the limit of `benchmarks.limit` in the same run.
"""

from __future__ import annotations

import time
from typing import Any

import psutil

import otp

from ._core import Config, Samples, Target, figure, interleave
from .limit import BIG, SMALL, ForkChild, FramedBaseline, fork_first_answer_ms, uss_mib, wait_idle

__all__ = ["EchoProcess"]

_COUNT = "$count"
_STOP = "$stop"


def _echo_loop() -> None:
    """An otp process that echoes `(sender, payload)` back to `sender`.

    `(sender, ("$count", n))` makes it take the next n messages without
    answering, then answer `("counted", n)` once (one-way throughput).
    """
    receive = otp.receive
    send = otp.send
    while True:
        sender, payload = receive()
        if type(payload) is tuple and payload[0] == _COUNT:
            n = payload[1]
            for _ in range(n):
                receive()
            send(sender, ("counted", n))
        elif payload == _STOP:
            send(sender, "bye")
            return
        else:
            send(sender, payload)


class EchoProcess:
    """The main program's handle on one `_echo_loop` process."""

    def __init__(self) -> None:
        self.me = otp.self_pid()  # starts the node if needed
        self.pid = otp.spawn(_echo_loop)
        self.rtt_us(SMALL, 1)  # connected and answering

    def rtt_us(self, payload: Any, n: int) -> float:
        """Mean µs per `otp.send` + `otp.receive` round trip, over `n`."""
        send, receive, pid = otp.send, otp.receive, self.pid
        msg = (self.me, payload)
        t0 = time.perf_counter()
        for _ in range(n):
            send(pid, msg)
            receive()
        return (time.perf_counter() - t0) / n * 1e6

    def oneway_per_s(self, payload: Any, n: int) -> float:
        """Messages per second: `n` sends, then one synchronising reply."""
        send, pid = otp.send, self.pid
        t0 = time.perf_counter()
        send(pid, (self.me, (_COUNT, n)))
        for _ in range(n):
            send(pid, payload)
        r = otp.receive()
        dt = time.perf_counter() - t0
        assert r == ("counted", n), r
        return n / dt

    def stop(self) -> None:
        ref = otp.monitor(self.pid)
        otp.send(self.pid, (self.me, _STOP))
        otp.receive(lambda m: type(m) is otp.DOWN and m.ref == ref, timeout=10)
        otp.receive(lambda m: m == "bye", timeout=0)


def _rtt_figure(cfg: Config, payload: Any) -> Samples:
    base = FramedBaseline()  # forked before the node starts: a plain copy
    try:
        echo = EchoProcess()
        try:
            return interleave(
                cfg, lambda n: echo.rtt_us(payload, n), lambda n: base.rtt_us(payload, n)
            )
        finally:
            echo.stop()
    finally:
        base.close()
        otp.node.stop()


@figure(
    "rtt",
    title="send/receive round trip, small",
    unit="us",
    group="kernel",
    limit="socketpair+pickle5 RTT, small",
    target=Target("ratio", "<=", 1.3),
)
def rtt(cfg: Config) -> Samples:
    """The main program sends `(self_pid, ("add", 1))` to an echo process and
    waits in `otp.receive` for the answer: µs per round trip. This is the floor
    under every `gen_server.call`, so it must stay within 1.3x of the bare
    socketpair ping-pong (the room DESIGN.md leaves for monitors, the mailbox
    and selective receive)."""
    return _rtt_figure(cfg, SMALL)


@figure(
    "rtt_100k",
    title="send/receive round trip, 100 KB",
    unit="us",
    group="kernel",
    limit="socketpair+pickle5 RTT, 100 KB",
)
def rtt_100k(cfg: Config) -> Samples:
    """As `rtt`, with 100 KB of bytes each way. No kernel target; its limit is
    the one the GenServer's 100 KB call (<= 1.5x) is judged against, and the
    otp value shows the cost of the runtime's big-frame path (large reads,
    writev, the reader's buffer handling)."""
    return _rtt_figure(cfg, BIG)


@figure(
    "oneway",
    title="one-way throughput, small",
    unit="msg/s",
    group="kernel",
    limit="socketpair+pickle5 one-way, small",
    target=Target("ratio", ">=", 0.5),
)
def oneway(cfg: Config) -> Samples:
    """The main program sends N `("add", 1)` messages with `otp.send`, then
    waits for one synchronising reply from the echo process, which took them
    all with `otp.receive`: messages per second. This is what a stream of
    casts can reach; the limit is the plain framed sender (one write per
    message, no coalescing), and the target is half of it."""
    base = FramedBaseline()
    try:
        echo = EchoProcess()
        try:
            return interleave(
                cfg, lambda n: echo.oneway_per_s(SMALL, n), lambda n: base.oneway_per_s(SMALL, n)
            )
        finally:
            echo.stop()
    finally:
        base.close()
        otp.node.stop()


def _first_answer(parent: otp.Pid) -> None:
    """Answer the spawner once, then idle in `otp.receive` until any message."""
    otp.send(parent, "ready")
    otp.receive()


def _spawn_answering() -> tuple[otp.Pid, float]:
    """Spawn `_first_answer`; returns its Pid and seconds until "ready" arrived."""
    me = otp.self_pid()
    t0 = time.perf_counter()
    pid = otp.spawn(_first_answer, me)
    m = otp.receive(timeout=10)
    dt = time.perf_counter() - t0
    assert m == "ready", m
    return pid, dt


def _stop_answering(pid: otp.Pid) -> None:
    ref = otp.monitor(pid)
    otp.send(pid, "stop")
    otp.receive(lambda m: type(m) is otp.DOWN and m.ref == ref, timeout=10)


def _spawn_first_answer_ms(n: int) -> float:
    total = 0.0
    for _ in range(n):
        pid, dt = _spawn_answering()
        total += dt
        _stop_answering(pid)
    return total / n * 1e3


@figure(
    "spawn",
    title="spawn until first answer",
    unit="ms",
    group="kernel",
    limit="os.fork + pipe, first byte",
    target=Target("value", "<=", 2.0),
)
def spawn(cfg: Config) -> Samples:
    """Time from `otp.spawn` in the main program to the child's first message
    received there (mean over the children of a repetition; each is stopped
    before the next starts). It covers the request to the node's root, the
    fork, the child's runtime setup, the descriptor passed back and the first
    message. Every `start_link` and every restart pays it. The limit is a bare
    `os.fork` whose child writes one byte on a pipe."""
    otp.self_pid()  # the node's start is not part of any spawn
    try:
        _spawn_first_answer_ms(3)  # warm: the root's first fork, imports
        return interleave(cfg, _spawn_first_answer_ms, fork_first_answer_ms)
    finally:
        otp.node.stop()


@figure(
    "idle_uss",
    title="idle process USS",
    unit="MiB",
    group="kernel",
    limit="os.fork child USS",
    target=Target("value", "<=", 2.0),
)
def idle_uss(cfg: Config) -> Samples:
    """USS (psutil `memory_full_info().uss`: the pages no other process
    shares) of a process spawned with `otp.spawn` that answered once and sleeps
    in `otp.receive`. 10,000 processes per node is a goal, so what one idle
    process costs is what matters. The limit is the USS of a bare `os.fork`
    child blocked in `os.read`. One child of each per repetition."""
    otp.self_pid()
    values: list[float] = []
    limits: list[float] = []
    rss: list[float] = []
    try:
        _stop_answering(_spawn_answering()[0])
        for rep in range(cfg.reps):
            for side in ("otp", "limit") if rep % 2 == 0 else ("limit", "otp"):
                if side == "otp":
                    pid, _ = _spawn_answering()
                    wait_idle(pid.os_pid)
                    time.sleep(0.02)
                    values.append(uss_mib(pid.os_pid))
                    rss.append(psutil.Process(pid.os_pid).memory_info().rss / 2**20)
                    _stop_answering(pid)
                else:
                    c = ForkChild()
                    wait_idle(c.pid)
                    time.sleep(0.02)
                    limits.append(uss_mib(c.pid))
                    c.stop()
        return Samples(values, limits, {"rss_mib": rss})
    finally:
        otp.node.stop()
