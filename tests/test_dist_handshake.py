"""The handshake and framing against a real erl: ping answered pong, a wrong
cookie refused both ways, messages both ways, ticks, garbage, the cookie file."""

from __future__ import annotations

import itertools
import os
import queue
import socket
import stat
import struct
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from otp import Atom, Pid
from otp.dist import _epmd, _handshake
from otp.dist._node import DistNode
from otp.dist._testing import Epmd, erl_args, new_cookie, require_erl, run_erl
from otp.testing import wait_until

pytestmark = pytest.mark.erlang

ERL = "e@127.0.0.1"
_names = itertools.count()


class World:
    """One epmd and one long-running erl node shared by this module's tests."""

    def __init__(self, epmd: Epmd, cookie: str, erl: subprocess.Popen[str]) -> None:
        self.epmd = epmd
        self.cookie = cookie
        self.erl = erl

    def node(self, cookie: str | None = None, **kw: Any) -> DistNode:
        name = f"py{os.getpid()}x{next(_names)}@127.0.0.1"
        return DistNode(name, cookie or self.cookie, epmd=self.epmd.port, **kw)

    def erl_eval(self, script: str, cookie: str | None = None, *extra: str) -> str:
        name = f"t{os.getpid()}x{next(_names)}@127.0.0.1"
        return run_erl(
            script, env=self.epmd.env, args=[*erl_args(name, cookie or self.cookie), *extra]
        )


# The shared erl: an `echo` process answering {From, M} with {echoed, M}.
ECHO = (
    "register(echo, spawn(fun Loop() -> receive {From, M} -> From ! {echoed, M}, Loop() end end)),"
    'io:format("ready~n"), receive after infinity -> ok end.'
)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    erl = require_erl()
    epmd = Epmd()
    cookie = new_cookie()
    with epmd.running():
        proc = subprocess.Popen(
            [erl, "-noshell", *erl_args(ERL, cookie), "-eval", ECHO],
            env=epmd.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
            yield World(epmd, cookie, proc)
        finally:
            proc.kill()
            proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()


def test_net_adm_ping_from_erl_answers_pong(world: World) -> None:
    with world.node() as py:
        out = world.erl_eval(
            f"io:format(\"~p ~p~n\", [net_adm:ping('{py.name}'), nodes(hidden)]), halt()."
        )
        assert out.split()[0] == "pong"
        assert py.name in out


def test_erl_with_a_wrong_cookie_is_refused(world: World) -> None:
    with world.node() as py:
        out = world.erl_eval(f"io:format(\"~p~n\", [net_adm:ping('{py.name}')]), halt().", "WRONG")
        assert out.split()[0] == "pang"
        assert wait_until(lambda: py.refused, 10)
        assert "cookie" in py.refused[0][1]
        assert py.nodes() == []


def test_a_python_node_with_a_wrong_cookie_cannot_connect_to_erl(world: World) -> None:
    with world.node(cookie="WRONG") as py, pytest.raises(_handshake.HandshakeError):
        py.connect(ERL)


def test_messages_cross_to_erl_and_back_with_their_terms(world: World) -> None:
    with world.node() as py:
        got: queue.Queue[tuple[Pid, Any]] = queue.Queue()
        py.on_send = lambda to, msg: got.put((to, msg))
        me = Pid((py.name, 4242, 2**40 + 5))
        term = (Atom("hi"), 2**100, -7, 1.5, "héllo", b"\x00\xff", [1, [2]], {Atom("k"): me})
        py.send(("echo", ERL), (me, term))
        to, msg = got.get(timeout=20)
        assert to == me
        assert msg == (Atom("echoed"), term)
        assert py.nodes() == [ERL]


def test_ticks_keep_a_quiet_connection_up(world: World) -> None:
    # Both sides tick every half second; the connection is idle for three
    # ticktimes and must still be up.
    with world.node(ticktime=2.0) as py:
        out = world.erl_eval(
            f"pong = net_adm:ping('{py.name}'), timer:sleep(6000),"
            f"io:format(\"~p~n\", [lists:member('{py.name}', nodes(hidden))]), halt().",
            None,
            "-kernel",
            "net_ticktime",
            "2",
        )
        assert out.split()[-1] == "true"


def test_a_malformed_handshake_closes_that_connection_only(world: World) -> None:
    with world.node() as py:
        for garbage in (b"\x00\x05hello", b"\xff\xff" + b"x" * 100, b"\x00\x03Nab", b""):
            s = socket.create_connection(("127.0.0.1", py.port), timeout=10)
            try:
                s.sendall(garbage)
                s.shutdown(socket.SHUT_WR)
                answer = s.recv(100)
            except OSError:  # already closed by the node (reset): as good
                answer = b""
            finally:
                s.close()
            assert answer == b""  # closed by the node, nothing answered
        out = world.erl_eval(f"io:format(\"~p~n\", [net_adm:ping('{py.name}')]), halt().")
        assert out.split()[0] == "pong"


def test_garbage_after_the_handshake_closes_that_connection_only(world: World) -> None:
    with world.node() as py:
        assert py.connect(ERL)
        c = py.connections[ERL]
        c.sock.sendall(struct.pack(">I", 5) + b"pjunk")  # erl drops us: a bad packet
        assert wait_until(lambda: ERL not in py.nodes(), 20)
        got: queue.Queue[Any] = queue.Queue()
        py.on_send = lambda to, msg: got.put(msg)
        py.send(("echo", ERL), (Pid((py.name, 1, 1)), "again"))
        assert got.get(timeout=20) == (Atom("echoed"), "again")


def test_the_cookie_file_is_created_owner_only_and_reused(tmp_path: Any) -> None:
    path = str(tmp_path / ".erlang.cookie")
    first = _handshake.load_cookie(path=path)
    assert len(first) == 20 and first.isalpha() and first.isupper()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o400
    assert _handshake.load_cookie(path=path) == first
    assert _handshake.load_cookie("GIVEN", path=path) == "GIVEN"
    os.chmod(path, 0o644)
    with pytest.raises(_handshake.HandshakeError, match="owner only"):
        _handshake.load_cookie(path=path)


# -- one connection per pair of nodes -------------------------------------------


def _echoing(node: DistNode) -> queue.Queue[Any]:
    """`echo` on `node` answers (pid, x) with ("echoed", x); what arrives for
    a Pid of `node` is put in the queue returned."""
    inbox: queue.Queue[Any] = queue.Queue()
    node.on_send = lambda to, msg: inbox.put(msg)
    node.register("echo", lambda sender, msg: node.send(msg[0], (Atom("echoed"), msg[1])))
    return inbox


def test_two_nodes_connecting_to_each_other_at_once_keep_one_connection(world: World) -> None:
    # Erlang's rule: the attempt of the node with the greater name goes on,
    # the other gives way (status nok / ok_simultaneous), so both sides keep
    # the same connection. Keeping both and closing the one the other side
    # kept lost both: nodedown on each side, links and monitors broken.
    for _ in range(8):
        a, b = world.node(), world.node()
        downs: list[str] = []
        with a, b:
            inbox_a, inbox_b = _echoing(a), _echoing(b)
            a.on_nodedown = b.on_nodedown = downs.append
            barrier = threading.Barrier(2)

            def send(frm: DistNode, to: DistNode, barrier: threading.Barrier = barrier) -> None:
                barrier.wait()
                frm.send(("echo", to.name), (Pid((frm.name, 7, 0)), frm.name))

            threads = [
                threading.Thread(target=send, args=(a, b)),
                threading.Thread(target=send, args=(b, a)),
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            assert inbox_a.get(timeout=20) == (Atom("echoed"), a.name)
            assert inbox_b.get(timeout=20) == (Atom("echoed"), b.name)
            # Another round trip each way, on what is left: one connection.
            a.send(("echo", b.name), (Pid((a.name, 7, 0)), "again"))
            assert inbox_a.get(timeout=20) == (Atom("echoed"), "again")
            assert a.nodes() == [b.name] and b.nodes() == [a.name]
            assert downs == []


def test_a_node_back_under_a_name_still_connected_replaces_the_stale_connection(
    world: World,
) -> None:
    # The peer still holds a connection to our name (our earlier run froze,
    # say): it answers our handshake `alive`, we say `true`, and it drops the
    # stale one: nodedown for it first, then the new one works. With erl and
    # between Python nodes.
    b = world.node()
    with b:
        _echoing(b)
        downs: list[str] = []
        b.on_nodedown = downs.append
        for peer_name, port in ((ERL, None), (b.name, b.port)):
            me = world.node()
            if port is None:
                found = _epmd.port_please("e", epmd=world.epmd.port)
                assert found is not None
                port = found[0]
            stale_sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            # A connection under our name that nobody reads or writes any more.
            _handshake.connect(stale_sock, me.name, world.cookie, 1)
            try:
                if peer_name == b.name:
                    assert wait_until(lambda me=me: b.nodes() == [me.name], 10)  # type: ignore[misc]
                with me:
                    inbox = _echoing(me)
                    me.send(("echo", peer_name), (Pid((me.name, 7, 0)), "back"))
                    assert inbox.get(timeout=20) == (Atom("echoed"), "back")
                    assert me.nodes() == [peer_name]
                    if peer_name == b.name:
                        assert downs == [me.name]  # the stale one, seen lost
                        assert b.nodes() == [me.name]
            finally:
                stale_sock.close()
