"""GenServer figures (issue 3): call, cast, a 100 KB call and start_link.

The server is a `GenServer` started with `start_link` from the main program,
as a user's would be, and every figure is measured next to the same limit as
the kernel's (two forked processes, a socketpair, pickle-5 frames) in the
same run. A `gen_server.call` does more than a bare send/receive: a local
monitor, a fresh tag, the `("$gen_call", (caller, tag), request)` envelope,
dispatch to `handle_call` and a `Reply`; the targets leave it 1.3x the limit.
"""

from __future__ import annotations

import time
from typing import Any

import otp
from behaviours import GenServer, NoReply, Reply, gen_server

from ._core import Config, Samples, Target, figure, interleave
from .limit import BIG, SMALL, FramedBaseline, fork_first_answer_ms

__all__ = ["Echo"]


class Echo(GenServer):
    """Answers a call with its request; counts casts."""

    def init(self) -> int:
        return 0

    def handle_call(self, request: Any, from_: Any, state: int) -> Any:
        if request == "count":
            return Reply(state, 0)
        return Reply(request, state)

    def handle_cast(self, msg: Any, state: int) -> Any:
        return NoReply(state + 1)


def _call_us(pid: otp.Pid, payload: Any, n: int) -> float:
    call = gen_server.call
    t0 = time.perf_counter()
    for _ in range(n):
        call(pid, payload)
    return (time.perf_counter() - t0) / n * 1e6


def _cast_per_s(pid: otp.Pid, n: int) -> float:
    cast = gen_server.cast
    t0 = time.perf_counter()
    for _ in range(n):
        cast(pid, SMALL)
    got = gen_server.call(pid, "count", timeout=60)
    dt = time.perf_counter() - t0
    assert got == n, (got, n)
    return n / dt


def _with_server(cfg: Config, fig: Any, limit: Any) -> Samples:
    base = FramedBaseline()  # forked before the node starts: a plain copy
    try:
        pid = Echo.start_link()
        try:
            return interleave(cfg, lambda n: fig(pid, n), lambda n: limit(base, n))
        finally:
            otp.unlink(pid)
            gen_server.stop(pid)
    finally:
        base.close()
        otp.node.stop()


@figure(
    "call",
    title="gen_server.call round trip, small",
    unit="us",
    group="gen_server",
    limit="socketpair+pickle5 RTT, small",
    target=Target("ratio", "<=", 1.3),
)
def call(cfg: Config) -> Samples:
    """`gen_server.call(pid, ("add", 1))` from the main program to a GenServer
    that replies with its request: µs per call. The limit is the bare
    socketpair ping-pong of the same tuple."""
    return _with_server(
        cfg, lambda pid, n: _call_us(pid, SMALL, n), lambda base, n: base.rtt_us(SMALL, n)
    )


@figure(
    "cast",
    title="gen_server.cast one-way throughput",
    unit="msg/s",
    group="gen_server",
    limit="socketpair+pickle5 one-way, small",
    target=Target("ratio", ">=", 0.5),
)
def cast(cfg: Config) -> Samples:
    """N `gen_server.cast(pid, ("add", 1))`, then one call that returns the
    count: casts per second, handled by `handle_cast`. The limit is the plain
    framed sender, one write per message."""
    return _with_server(cfg, _cast_per_s, lambda base, n: base.oneway_per_s(SMALL, n))


@figure(
    "call_100k",
    title="gen_server.call round trip, 100 KB",
    unit="us",
    group="gen_server",
    limit="socketpair+pickle5 RTT, 100 KB",
    target=Target("ratio", "<=", 1.5),
)
def call_100k(cfg: Config) -> Samples:
    """A call whose request is 100 KB of bytes, answered with the same 100 KB:
    µs per call, against the socketpair ping-pong of 100 KB each way."""
    return _with_server(
        cfg, lambda pid, n: _call_us(pid, BIG, n), lambda base, n: base.rtt_us(BIG, n)
    )


def _start_link_ms(n: int) -> float:
    total = 0.0
    for _ in range(n):
        t0 = time.perf_counter()
        pid = Echo.start_link()
        total += time.perf_counter() - t0
        otp.unlink(pid)
        gen_server.stop(pid)
    return total / n * 1e3


@figure(
    "start_link",
    title="GenServer start_link until init returned",
    unit="ms",
    group="gen_server",
    limit="os.fork + pipe, first byte",
    target=Target("value", "<=", 2.0),
)
def start_link(cfg: Config) -> Samples:
    """`Echo.start_link()` from the main program, until it returns (init has
    run in the new process and acknowledged): ms, mean over the servers of a
    repetition (each is stopped before the next starts). The limit is a bare
    `os.fork` whose child writes one byte on a pipe."""
    otp.self_pid()
    try:
        _start_link_ms(3)
        return interleave(cfg, _start_link_ms, fork_first_answer_ms)
    finally:
        otp.node.stop()


def _client(server: otp.Pid, payload: Any, parent: otp.Pid) -> None:
    """A caller that is itself an otp process: `(n)` -> n calls, then µs each."""
    call = gen_server.call
    while True:
        n = otp.receive()
        if n == "stop":
            return
        t0 = time.perf_counter()
        for _ in range(n):
            call(server, payload)
        otp.send(parent, (time.perf_counter() - t0) / n * 1e6)


@figure(
    "call_proc",
    title="gen_server.call round trip, small, caller is a process",
    unit="us",
    group="gen_server",
    limit="socketpair+pickle5 RTT, small",
    target=Target("ratio", "<=", 1.3),
)
def call_proc(cfg: Config) -> Samples:
    """As `call`, but the caller is an otp process (the usual caller in an OTP
    system), not the main program: the main program's Process takes a lock
    per operation so that its threads may share it, which an otp process,
    single-threaded by construction, does not pay."""
    base = FramedBaseline()
    try:
        server = Echo.start_link()
        client = otp.spawn(_client, server, SMALL, otp.self_pid())

        def measure(n: int) -> float:
            otp.send(client, n)
            return float(otp.receive(timeout=120))

        try:
            return interleave(cfg, measure, lambda n: base.rtt_us(SMALL, n))
        finally:
            otp.send(client, "stop")
            otp.unlink(server)
            gen_server.stop(server)
    finally:
        base.close()
        otp.node.stop()
