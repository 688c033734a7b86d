"""The dist process's own network I/O (otp/dist/_pump.py): no reader threads,
buffered writes, a call's DEMONITOR_P sent lazily; nothing lost, nothing
reordered, no deadlock when two nodes flood each other, and back-pressure on
local senders while a peer does not read."""

from __future__ import annotations

import os
import signal
from typing import Any

import psutil
import pytest
from conftest import wait_until
from dist_helpers import Peer

import otp
from behaviours import gen_server
from otp.dist._etf import Atom
from otp.dist._node import DistNode
from otp.dist._testing import Epmd

pytestmark = pytest.mark.erlang  # epmd comes with Erlang


def test_a_remote_call_leaves_no_monitor_on_the_server_node_once_it_returns(
    local: str, epmd: Epmd, cookie: str
) -> None:
    # The server's node is a bare DistNode in this test process: its
    # `_monitors` table is what our MONITOR_Ps and DEMONITOR_Ps change.
    bare = DistNode(f"bare{os.getpid()}@127.0.0.1", cookie, epmd=epmd.port)

    def answer(sender: Any, message: Any) -> None:
        match message:
            case ("$gen_call", (frm, tag), ("double", n)):
                bare.send(frm, (tag, 2 * n))

    bare.register("doubler", answer)
    bare.start()
    try:
        for i in range(20):
            assert gen_server.call(("doubler", bare.name), ("double", i), 10) == 2 * i
        # The last call's DEMONITOR_P is queued lazily (it would ride with a
        # next call): with no more traffic, it still leaves within moments.
        assert wait_until(lambda: not bare._monitors, 10)
        # The monitor worked while it was there: a call to a name nobody
        # holds is noproc (MONITOR_P_EXIT), not a timeout.
        with pytest.raises(otp.NoProc):
            gen_server.call(("nobody", bare.name), "hello", 10)
    finally:
        bare.stop()


def test_two_nodes_flooding_each_other_with_large_messages_lose_nothing_and_keep_order(
    local: str, peer: Peer
) -> None:
    # Each message goes to the peer's echo, which sends it straight back,
    # while we are still sending: both directions are full at once, and
    # this program reads nothing until it has sent everything. Neither dist
    # process may block on a write without reading (that would deadlock
    # two nodes that do it to each other).
    me = otp.self_pid()
    blob = bytes(range(256)) * 2048  # 512 KiB
    n = 40
    for i in range(n):
        otp.send(("echo", peer.name), (me, (i, blob)))
    got = [otp.receive(timeout=30) for _ in range(n)]
    assert [m[1][0] for m in got] == list(range(n))
    assert all(m[0] == "echoed" and m[1][1] == blob for m in got)


def _sender(peer: str, main: otp.Pid, tag: str, n: int) -> None:
    me = otp.self_pid()
    for i in range(n):
        otp.send(("echo", peer), (me, (tag, i)))
    got = [otp.receive(timeout=30)[1] for _ in range(n)]
    otp.send(main, (tag, got == [(tag, i) for i in range(n)]))


def test_bursts_from_several_senders_arrive_in_each_senders_order(local: str, peer: Peer) -> None:
    # The dist process frames what one round brings for a local process and
    # writes it at once: two senders' bursts interleave on the wire, and each
    # one's messages must still come back in its own order.
    me = otp.self_pid()
    for tag in ("a", "b", "c"):
        otp.spawn(_sender, peer.name, me, tag, 2000)
    results = dict(otp.receive(timeout=60) for _ in range(3))
    assert results == {"a": True, "b": True, "c": True}
    # And an atom from erl's point of view stays one on the way back.
    otp.send(("echo", peer.name), (me, Atom("ok")))
    assert otp.receive(timeout=10)[1] == Atom("ok")


def _flooder(peer_node: str, main: otp.Pid, n: int, size: int) -> None:
    me = otp.self_pid()
    blob = bytes(range(256)) * (size // 256)
    for i in range(n):
        otp.send(("echo", peer_node), (me, (i, blob)))
        otp.send(main, ("sent", i))
    got = [otp.receive(timeout=60)[1] for _ in range(n)]
    otp.send(main, ("done", [g[0] for g in got] == list(range(n)), all(g[1] == blob for g in got)))


def test_a_stopped_peer_holds_local_senders_back_instead_of_filling_memory(
    local: str, peer: Peer
) -> None:
    # Erlang's busy distribution port: with the peer not reading (SIGSTOP),
    # the dist process keeps at most about BUSY_LIMIT queued and stops taking
    # local messages, so a local sender blocks in its send; nothing is lost,
    # and everything goes once the peer reads again.
    n, size = 200, 256 * 1024  # 50 MiB, far more than every buffer on the way
    assert gen_server.call(("counter", peer.name), ("add", 0), 10) == 0  # connected
    dist = otp.whereis("net_kernel")
    assert dist is not None
    rss_before = psutil.Process(dist.id).memory_info().rss
    main_proc = psutil.Process(peer.proc.pid)
    stopped = [main_proc, *main_proc.children(recursive=True)]
    for p in stopped:
        p.suspend()
    try:
        otp.spawn(_flooder, peer.name, otp.self_pid(), n, size)
        last = -1
        while True:  # until no progress for 2 s (under the test's timeout)
            try:
                last = otp.receive(lambda m: type(m) is tuple and m[0] == "sent", 2)[1]
            except otp.ReceiveTimeout:
                break
        assert last < n // 2, f"the sender got {last + 1} of {n} messages out past a stopped peer"
        grown = psutil.Process(dist.id).memory_info().rss - rss_before
        assert grown < 24 * 1024 * 1024, f"the dist process grew by {grown >> 20} MiB"
    finally:
        for p in stopped:
            p.resume()
    done = otp.receive(lambda m: type(m) is tuple and m[0] == "done", 60)
    assert done == ("done", True, True)


def _tcp_queues(ports: set[int]) -> list[tuple[int, int]]:
    """(tx_queue, rx_queue) of each loopback TCP socket with a local port in
    `ports` (/proc/net/tcp: both ends of a connection live on this machine)."""
    out = []
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) in ports:
                tx, rx = fields[4].split(":")
                out.append((int(tx, 16), int(rx, 16)))
    return out


def _counts_then_reports(main: otp.Pid, n: int) -> None:
    for _ in range(n):
        otp.receive()
    otp.send(main, ("all", n))


def test_what_arrives_while_a_slow_local_process_is_written_to_is_delivered_at_once(
    local: str, peer: Peer
) -> None:
    # The dist process writes to a local process whose socket is full (here
    # SIGSTOPped) and reads the network meanwhile. What it read then must be
    # delivered as soon as the write is done, not after the next packet or
    # tick wakes it (15 s later with every peer done sending: seen as a
    # stalled cast flood in benchmarks/bench_dist.py).
    me = otp.self_pid()
    n, blob = 300, b"x" * 16384  # ~5 MiB for the stopped one: far over a socket buffer
    slow = otp.spawn(_counts_then_reports, me, n)
    quick = otp.spawn(_counts_then_reports, me, 1)
    assert gen_server.call(("counter", peer.name), ("add", 0), 10) == 0  # connected
    dist = otp.whereis("net_kernel")
    assert dist is not None
    proc = psutil.Process(dist.id)
    conns = getattr(proc, "net_connections", proc.connections)("tcp")  # psutil < 6: connections
    ports = {c.laddr.port for c in conns if c.raddr} | {c.raddr.port for c in conns if c.raddr}
    os.kill(slow.id, signal.SIGSTOP)
    try:
        for _ in range(n):
            otp.send(("echo", peer.name), (slow, blob))  # echoed to `slow`
        otp.send(("echo", peer.name), (quick, "and me"))  # echoed to `quick`, last
        # Until the peer has sent everything and our dist process has read it
        # (its reads go on while it waits to write to `slow`).
        wait_until(lambda: all(q == (0, 0) for q in _tcp_queues(ports)), 20)
    finally:
        os.kill(slow.id, signal.SIGCONT)
    assert otp.receive(lambda m: m == ("all", n), 10)
    assert otp.receive(lambda m: m == ("all", 1), 5)
