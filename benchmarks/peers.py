"""Peer figures: the actor libraries a user would otherwise pick, same limit.

They do not depend on this project's code; they are here so that every table
shows where `otp` stands against them in the same run, on the same machine.
Each peer is optional (the `bench` extra in setup.cfg): when it is not
installed its figures are skipped with a note.

Thespian's multiprocess bases are the closest peers (one OS process per
actor); Pykka runs actors as threads of one process, so it pays no IPC at all
and is the bar for "how cheap can an ask be in Python". Thespian's TCP base
listens on loopback only (THESPIAN_BASE_IPADDR=127.0.0.1, set by the driver
and here), on a port picked free by the kernel.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from typing import Any

from ._core import Config, Samples, figure, interleave
from .limit import SMALL, FramedBaseline

__all__: list[str] = []

_LIMIT = "socketpair+pickle5 RTT, small"


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _peer_vs_limit(cfg: Config, start: Callable[[], tuple[Callable[[int], float], Any]]) -> Samples:
    """Fork the limit first (before any peer starts threads or processes),
    then start the peer; `start` returns (rtt_us(n), stop())."""
    base = FramedBaseline()
    try:
        t0 = time.perf_counter()
        rtt_us, stop = start()
        setup_s = time.perf_counter() - t0
        try:
            out = interleave(cfg, rtt_us, lambda n: base.rtt_us(SMALL, n))
            out.extra["setup_s"] = setup_s
            return out
        finally:
            stop()
    finally:
        base.close()


def _thespian(cfg: Config, base_name: str) -> Samples:
    os.environ["THESPIAN_BASE_IPADDR"] = "127.0.0.1"

    def start() -> tuple[Callable[[int], float], Any]:
        from thespian.actors import ActorSystem

        from ._thespian_actors import Echo

        caps: dict[str, Any] = {}
        if base_name == "multiprocTCPBase":
            caps = {"Admin Port": _free_loopback_port()}
        asys = ActorSystem(base_name, caps, transientUnique=True)
        try:
            echo = asys.createActor(Echo)
            assert asys.ask(echo, SMALL, 10) == SMALL
        except BaseException:
            asys.shutdown()
            raise

        def rtt_us(n: int) -> float:
            ask = asys.ask
            t0 = time.perf_counter()
            for _ in range(n):
                if ask(echo, SMALL, 10) is None:
                    raise TimeoutError("Thespian ask timed out")
            return (time.perf_counter() - t0) / n * 1e6

        return rtt_us, asys.shutdown

    return _peer_vs_limit(cfg, start)


@figure(
    "thespian_queue_ask",
    title="peer: Thespian multiprocQueueBase ask",
    unit="us",
    group="peers",
    limit=_LIMIT,
    requires=("thespian",),
)
def thespian_queue_ask(cfg: Config) -> Samples:
    """`ActorSystem.ask(echo, ("add", 1))` against an Echo actor in its own OS
    process, Thespian's multiprocessing-queue transport: µs per round trip.
    The closest peer by design (one OS process per actor); baselines.md
    measured 35x the limit pinned."""
    return _thespian(cfg, "multiprocQueueBase")


@figure(
    "thespian_tcp_ask",
    title="peer: Thespian multiprocTCPBase ask",
    unit="us",
    group="peers",
    limit=_LIMIT,
    requires=("thespian",),
)
def thespian_tcp_ask(cfg: Config) -> Samples:
    """As `thespian_queue_ask`, over Thespian's TCP transport on loopback (the
    base its docs recommend for production; it restarts actors in ms where
    the queue base takes 2 s). baselines.md: 75x the limit pinned."""
    return _thespian(cfg, "multiprocTCPBase")


@figure(
    "pykka_ask",
    title="peer: Pykka ThreadingActor ask",
    unit="us",
    group="peers",
    limit=_LIMIT,
    requires=("pykka",),
)
def pykka_ask(cfg: Config) -> Samples:
    """`ActorRef.ask(("add", 1))` to a Pykka ThreadingActor that returns it:
    µs per round trip between two threads of one process (no serialisation,
    no isolation). The best Python peer for latency: 1.4x the limit pinned in
    baselines.md, so it is the figure `gen_server.call` has to be near."""

    def start() -> tuple[Callable[[int], float], Any]:
        import pykka

        class Echo(pykka.ThreadingActor):  # type: ignore[misc]
            def on_receive(self, message: Any) -> Any:
                return message

        ref = Echo.start()

        def rtt_us(n: int) -> float:
            ask = ref.ask
            t0 = time.perf_counter()
            for _ in range(n):
                ask(SMALL)
            return (time.perf_counter() - t0) / n * 1e6

        return rtt_us, pykka.ActorRegistry.stop_all

    return _peer_vs_limit(cfg, start)
