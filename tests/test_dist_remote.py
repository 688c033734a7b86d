"""Remote messaging: sends, calls and monitors between two Python nodes (each
its own OS process tree, the peer a separate program: tests/dist_peer.py) and
from Python to a real erl node; node loss seen as noconnection / nodedown."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from dist_helpers import Peer, erl_node

import otp
from behaviours import GenServer, Reply, gen_server
from otp.dist import _epmd, _handshake
from otp.dist._etf import EncodeError
from otp.dist._testing import Epmd

pytestmark = pytest.mark.erlang  # epmd comes with Erlang (no port mapper of our own yet)


class Doubler(GenServer):
    def init(self) -> None:
        return None

    def handle_call(self, request: Any, from_: Any, state: None) -> Any:
        match request:
            case ("double", n):
                return Reply(2 * n, state)


# erl's `echo`: {From, M} -> From ! {echoed, M, self()}.
ECHO = (
    "register(echo, spawn(fun Loop() -> receive {From, M} -> "
    "From ! {echoed, M, self()}, Loop() end end)),"
    'io:format("ready~n").'
)


def _echo_node(name: str, epmd: Epmd, cookie: str) -> contextlib.AbstractContextManager[Any]:
    """A real erl node with `echo`."""
    return erl_node(name, cookie, epmd, ECHO)


@pytest.fixture
def erl(epmd: Epmd, cookie: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    name = f"e{os.getpid()}@127.0.0.1"
    with _echo_node(name, epmd, cookie) as proc:
        yield name, proc


def _echo_back(peer_node: str) -> None:
    otp.send(("echo", peer_node), (otp.self_pid(), "from a child"))
    m = otp.receive(timeout=10)
    otp.send(otp.whereis("test_main"), ("child got", m))


def test_send_to_a_name_and_to_a_pid_on_another_python_node_and_back(
    local: str, peer: Peer
) -> None:
    otp.send(("echo", peer.name), (otp.self_pid(), "hello"))
    tag, m, echo_pid = otp.receive(timeout=10)
    assert (tag, m) == ("echoed", "hello")
    assert echo_pid.node == peer.name
    # By its Pid, in order: per-sender ordering holds end to end.
    for i in range(50):
        otp.send(echo_pid, (otp.self_pid(), i))
    assert [otp.receive(timeout=10)[1] for _ in range(50)] == list(range(50))
    # From any local process, not only the main program.
    otp.register("test_main", otp.self_pid())
    otp.spawn(_echo_back, peer.name)
    got = otp.receive(lambda m: m[0] == "child got", timeout=10)
    assert got[1][:2] == ("echoed", "from a child")
    assert otp.nodes() == [peer.name]


def test_a_value_outside_the_term_mapping_fails_in_the_sender(local: str, peer: Peer) -> None:
    with pytest.raises(EncodeError):
        otp.send(("echo", peer.name), (otp.self_pid(), {1, 2}))


def test_gen_server_call_to_a_python_gen_server_on_another_node_and_back(
    local: str, peer: Peer
) -> None:
    counter = ("counter", peer.name)
    assert gen_server.call(counter, ("add", 5)) == 5
    gen_server.cast(counter, ("set", 100))
    assert gen_server.call(counter, ("add", 1)) == 101
    # By Pid: the server's Pid and our own as the server saw it.
    server, caller = gen_server.call(counter, ("whoami",))
    assert server.node == peer.name and caller == otp.self_pid()
    assert gen_server.call(server, ("add", 0)) == 101
    # A reply made later (gen_server.reply from the server).
    assert gen_server.call(counter, ("later",)) == "replied later"
    # The peer's server calls a server of ours from inside its handle_call.
    Doubler.start(name="doubler")
    assert gen_server.call(counter, ("relay", ("doubler", local), ("double", 21)), 15) == 42
    n = 300
    t0 = time.perf_counter()
    for _ in range(n):
        gen_server.call(counter, ("add", 0))
    us = (time.perf_counter() - t0) / n * 1e6
    print(f"Python -> Python remote gen_server.call round trip: {us:.0f} us")
    gen_server.stop("doubler")


def test_a_remote_call_ends_at_once_when_the_server_crashes_or_is_not_there(
    local: str, peer: Peer
) -> None:
    with pytest.raises(otp.NoProc):
        gen_server.call(("nobody", peer.name), "hello", 10)
    t0 = time.monotonic()
    with pytest.raises(otp.CallExit) as e:
        gen_server.call(("counter", peer.name), ("crash",), 30)
    assert time.monotonic() - t0 < 20  # the DOWN ended it, not the timeout
    assert "asked to crash" in str(e.value.reason)


def test_a_killed_python_node_gives_nodedown_and_noconnection(local: str, peer: Peer) -> None:
    otp.send(("echo", peer.name), (otp.self_pid(), "hi"))
    echo_pid = otp.receive(timeout=10)[2]
    otp.monitor_node(peer.name)
    ref = otp.monitor(echo_pid)
    name_ref = otp.monitor(("counter", peer.name))
    # A call after the monitors: the peer has set them up once it answers
    # (one connection, handled in order).
    assert gen_server.call(("counter", peer.name), ("add", 0)) == 0
    os.kill(peer.proc.pid, signal.SIGKILL)  # the peer's main program: its node goes with it
    downs = {}
    for _ in range(2):
        m = otp.receive(lambda m: isinstance(m, otp.DOWN), timeout=30)
        downs[m.ref] = m
    # The peer's root SIGKILLs its whole node at once: a peer dist process
    # that outlives the monitored process by a moment reports "killed" first.
    assert downs[ref].reason in ("noconnection", "killed") and downs[ref].pid == echo_pid
    assert downs[name_ref].reason in ("noconnection", "killed")
    assert downs[name_ref].pid == ("counter", peer.name)
    assert otp.receive(lambda m: m == ("nodedown", peer.name), timeout=30)
    assert otp.nodes() == []


def test_monitor_node_of_an_unreachable_node_is_nodedown_at_once(local: str) -> None:
    otp.monitor_node("nobody@127.0.0.1")
    assert otp.receive(timeout=10) == ("nodedown", "nobody@127.0.0.1")
    ref = otp.monitor(("x", "nobody@127.0.0.1"))
    assert otp.receive(timeout=10) == otp.DOWN(ref, ("x", "nobody@127.0.0.1"), "noconnection")


def test_python_to_erl_send_call_and_rpc(local: str, erl: tuple[str, Any]) -> None:
    node, _ = erl
    otp.send(("echo", node), (otp.self_pid(), "hi"))
    tag, m, echo_pid = otp.receive(timeout=10)
    assert (tag, m) == ("echoed", "hi") and echo_pid.node == node
    otp.send(echo_pid, (otp.self_pid(), otp.Atom("again")))
    assert otp.receive(timeout=10)[1] == otp.Atom("again")
    assert otp.rpc.call(node, "lists", "reverse", [[1, 2, 3]]) == [3, 2, 1]
    assert otp.rpc.call(node, "erlang", "node", []) == otp.Atom(node)
    with pytest.raises(otp.rpc.BadRpc):
        otp.rpc.call(node, "no_such_module", "f", [])
    with pytest.raises(otp.NoProc):
        gen_server.call(("nobody", node), "hello", 10)
    n = 300
    t0 = time.perf_counter()
    for _ in range(n):
        otp.rpc.call(node, "erlang", "node", [])
    us = (time.perf_counter() - t0) / n * 1e6
    print(f"Python -> erl rpc:call (gen_server:call to rex) round trip: {us:.0f} us")


def _pending_rpc(node: str, main: otp.Pid) -> None:
    otp.send(main, "calling")
    try:
        otp.rpc.call(node, "timer", "sleep", [60000], timeout=60)
        otp.send(main, ("returned",))
    except otp.CallExit as e:
        otp.send(main, ("exit", e.reason))


def test_killing_the_erl_node_gives_noconnection_to_a_pending_call_and_a_monitor(
    local: str, erl: tuple[str, Any]
) -> None:
    node, proc = erl
    otp.send(("echo", node), (otp.self_pid(), "hi"))
    echo_pid = otp.receive(timeout=10)[2]
    ref = otp.monitor(echo_pid)
    otp.monitor_node(node)
    caller = otp.spawn(_pending_rpc, node, otp.self_pid())
    assert otp.receive(lambda m: m == "calling", timeout=10)
    proc.kill()
    assert otp.receive(lambda m: isinstance(m, tuple) and m[0] == "exit", timeout=30) == (
        "exit",
        "noconnection",
    )
    down = otp.receive(lambda m: isinstance(m, otp.DOWN), timeout=30)
    assert down == otp.DOWN(ref, echo_pid, "noconnection")
    assert otp.receive(lambda m: m == ("nodedown", node), timeout=30)
    mref = otp.monitor(caller)
    otp.receive(lambda m: isinstance(m, otp.DOWN) and m.ref == mref, timeout=10)


def test_a_pid_of_a_restarted_erl_node_is_stale_and_a_send_to_it_is_dropped(
    local: str, epmd: Epmd, cookie: str
) -> None:
    # As in Erlang: a Pid names a process of one incarnation of its node.
    # After the node restarts, the new `echo` has the same numbers but is
    # another Pid, and a message to the old one must not reach it.
    name = f"r{os.getpid()}@127.0.0.1"
    echoed = lambda m: type(m) is tuple and m[:1] == ("echoed",)  # noqa: E731
    with _echo_node(name, epmd, cookie) as proc:
        otp.monitor_node(name)
        otp.send(("echo", name), (otp.self_pid(), "first"))
        old = otp.receive(echoed, timeout=10)[2]
        proc.kill()
        assert otp.receive(lambda m: m == ("nodedown", name), timeout=30)
    with _echo_node(name, epmd, cookie):
        otp.send(("echo", name), (otp.self_pid(), "again"))
        new = otp.receive(echoed, timeout=10)[2]
        assert (new.id, new.serial) == (old.id, old.serial)  # what makes the test bite
        assert new.creation != old.creation and new != old
        otp.send(old, (otp.self_pid(), "to the old incarnation"))
        otp.send(new, (otp.self_pid(), "to the new one"))
        # One connection, one sender: had the first arrived, its echo would
        # come first.
        assert otp.receive(echoed, timeout=10)[1] == "to the new one"


def test_a_node_that_does_not_answer_holds_up_only_those_who_send_to_it(
    local: str, peer: Peer, epmd: Epmd
) -> None:
    # A "node" registered with epmd whose port accepts and then says nothing
    # (a host gone silent): connecting to it takes the whole handshake
    # timeout. Meanwhile every other remote call and send goes on, as with
    # Erlang's net_kernel: only what was sent to the silent node waits.
    silent = socket.create_server(("127.0.0.1", 0))
    reg = _epmd.register(f"silent{os.getpid()}", silent.getsockname()[1], epmd=epmd.port)
    try:
        stuck = otp.spawn(_send_to, f"silent{os.getpid()}@127.0.0.1")
        ref = otp.monitor(stuck)
        otp.receive(lambda m: type(m) is otp.DOWN and m.ref == ref, 10)  # its send is queued
        t0 = time.monotonic()
        for _ in range(5):
            assert gen_server.call(("counter", peer.name), ("add", 0), 3) == 0
        assert time.monotonic() - t0 < _handshake.HANDSHAKE_TIMEOUT / 2
    finally:
        reg.close()
        silent.close()


def _send_to(node: str) -> None:
    otp.send(("anyone", node), "hello?")


def test_no_down_arrives_after_a_remote_call_gave_up(local: str, peer: Peer, epmd: Epmd) -> None:
    # As gen:call's demonitor(Mref, [flush]): once a call has raised
    # CallTimeout, nothing of it reaches the caller's mailbox later, not
    # even the DOWN its monitor gets when the node turns out unreachable.
    silent = socket.create_server(("127.0.0.1", 0))
    reg = _epmd.register(f"mute{os.getpid()}", silent.getsockname()[1], epmd=epmd.port)
    try:
        with pytest.raises(otp.CallTimeout):
            gen_server.call(("anyone", f"mute{os.getpid()}@127.0.0.1"), "hello?", 0.3)
    finally:
        reg.close()
        silent.close()  # the connect attempt fails now: the monitor's DOWN is sent
    # A call of this process to another node goes after what it asked
    # before (its requests wait in order): when it returns, that is done.
    assert gen_server.call(("counter", peer.name), ("add", 0), 20) == 0
    with pytest.raises(otp.ReceiveTimeout):
        otp.receive(lambda m: isinstance(m, otp.DOWN), 0)


def test_a_send_to_a_node_that_does_not_answer_holds_up_nothing_else_of_its_sender(
    local: str, peer: Peer, epmd: Epmd
) -> None:
    # As Erlang buffers per connection: what this process sends to a node
    # being connected waits for that connection only; its calls to another
    # node, and to the same silent node's monitor after, keep their order
    # per node.
    silent = socket.create_server(("127.0.0.1", 0))
    reg = _epmd.register(f"deaf{os.getpid()}", silent.getsockname()[1], epmd=epmd.port)
    deaf = f"deaf{os.getpid()}@127.0.0.1"
    try:
        otp.send(("anyone", deaf), "hello?")
        ref = otp.monitor(("anyone", deaf))
        otp.demonitor(ref)
        t0 = time.monotonic()
        assert gen_server.call(("counter", peer.name), ("add", 0), 3) == 0
        assert time.monotonic() - t0 < _handshake.HANDSHAKE_TIMEOUT / 2
    finally:
        reg.close()
        silent.close()
    # The silent node's attempt fails: its monitor was removed before, so
    # no DOWN of it comes, and the sender is not held up any more.
    assert gen_server.call(("counter", peer.name), ("add", 0), 20) == 0
    with pytest.raises(otp.ReceiveTimeout):
        otp.receive(lambda m: isinstance(m, otp.DOWN), 0.2)
