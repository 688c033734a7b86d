"""Across nodes, the rest of the issue's list: gen_statem calls (from Python
and from erl) to a Python GenStatem on another node; a silent peer declared
down after the ticktime; seen from a real erl node, a Python node killed
with SIGKILL: `nodedown` and `noconnection`; and a Python cast handled by a
registered erl gen_server."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
from dist_helpers import Peer, agent_of, erl_node

import otp
from behaviours import gen_server, gen_statem
from otp import Atom
from otp.dist._testing import Epmd, erl_args, run_erl

pytestmark = pytest.mark.erlang  # epmd comes with Erlang


def test_gen_statem_call_to_a_python_gen_statem_on_another_node_from_python_and_erl(
    local: str, peer: Peer, epmd: Epmd, cookie: str
) -> None:
    assert gen_statem.call(("switch", peer.name), "flip", 10) == ("on", 1)
    assert gen_statem.call(("switch", peer.name), "flip", 10) == ("off", 2)
    out = run_erl(
        f"R = gen_statem:call({{switch, '{peer.name}'}}, flip), io:format(\"~p~n\", [R]), halt().",
        env=epmd.env,
        args=erl_args(f"t{os.getpid()}@127.0.0.1", cookie),
    )
    # erl's atom flip is Atom("flip") == "flip": the same clause answers it.
    assert out.strip() == '{<<"on">>,3}', out


@pytest.fixture
def quick_local(epmd: Epmd, cookie: str) -> Iterator[str]:
    """This test's node with a 2 s net_ticktime (Erlang's default is 60)."""
    name = f"py{os.getpid()}@127.0.0.1"
    otp.node.start(name=name, cookie=cookie, epmd=epmd.port, ticktime=2.0)
    try:
        yield name
    finally:
        otp.node.stop()


def test_a_silent_peer_is_declared_down_after_the_ticktime(quick_local: str, peer: Peer) -> None:
    assert gen_server.call(("counter", peer.name), ("add", 0), 10) == 0  # connected
    otp.monitor_node(peer.name)
    ref = otp.monitor(("counter", peer.name))
    # The whole peer node stops answering (SIGSTOP), its connection stays
    # open: only the missing ticks can tell.
    main = psutil.Process(peer.proc.pid)
    procs = [main, *main.children(recursive=True)]
    for p in procs:
        p.suspend()
    try:
        assert otp.receive(lambda m: m == ("nodedown", peer.name), timeout=30)
        down = otp.receive(lambda m: type(m) is otp.DOWN and m.ref == ref, timeout=10)
        assert down.reason == "noconnection"
        assert peer.name not in otp.nodes()
    finally:
        for p in procs:
            p.resume()


def test_erl_sees_nodedown_and_noconnection_when_a_python_node_is_killed(
    local: str, peer: Peer, epmd: Epmd, cookie: str
) -> None:
    erl_name = f"e{os.getpid()}@127.0.0.1"
    with erl_node(erl_name, cookie, epmd):
        agent = agent_of(erl_name)
        otp.send(("echo", peer.name), (otp.self_pid(), "hi"))
        echo_pid = otp.receive(lambda m: type(m) is tuple and m[0] == "echoed", timeout=10)[2]
        otp.send(agent, (Atom("monitor_node"), Atom(peer.name)))
        otp.receive(lambda m: m == ("monitoring", peer.name), timeout=10)
        otp.send(agent, (Atom("link"), echo_pid))
        otp.receive(lambda m: m == ("linked", echo_pid), timeout=10)
        os.kill(peer.proc.pid, signal.SIGKILL)  # its node's root takes the rest down
        seen: dict[str, Any] = {}
        while len(seen) < 2:
            m = otp.receive(lambda m: type(m) is tuple and m[0] == "got", timeout=30)[1]
            seen[m[0]] = m
        assert seen["nodedown"] == ("nodedown", peer.name)
        # A dist process that outlives the echo process by a moment reports
        # its end ("killed"); otherwise the connection's loss does.
        assert seen["EXIT"][1] == echo_pid
        assert seen["EXIT"][2] in ("noconnection", "killed")


def test_a_cast_to_a_registered_erl_gen_server_is_handled_there(
    local: str, epmd: Epmd, cookie: str
) -> None:
    # rex is a real gen_server of every erl node; its handle_cast of
    # {cast, M, F, A, GroupLeader} applies M:F(A) (what rpc:cast sends).
    # Here it makes erl's agent send us a word: the cast arrived as a cast.
    erl_name = f"e{os.getpid()}@127.0.0.1"
    with erl_node(erl_name, cookie, epmd):
        agent_of(erl_name)
        request = (
            Atom("cast"),
            Atom("erlang"),
            Atom("send"),
            [Atom("agent"), Atom("cast_arrived")],
            otp.self_pid(),
        )
        gen_server.cast(("rex", erl_name), request)
        assert otp.receive(lambda m: m == ("got", "cast_arrived"), timeout=10)
