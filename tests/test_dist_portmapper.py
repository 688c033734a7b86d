"""Our own port mapper: started by the first node that finds no epmd, found
by the others, taken over when its node stops; it speaks epmd's protocol to
our client, to `epmd -names` and to a real `erl -sname` (marked `erlang`).

Every test uses a private port (never 4369) where no epmd runs.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import queue
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import REPO, wait_until
from dist_helpers import start_program, stop_program

import otp
from behaviours import GenServer, Reply, gen_server
from otp import Atom, Pid
from otp.dist import _epmd, _portmapper
from otp.dist._node import DistNode
from otp.dist._testing import free_port, new_cookie, require_erl

_names = itertools.count()
HERE = os.path.dirname(os.path.abspath(__file__))


def _names_or_none(port: int) -> dict[str, int] | None:
    try:
        return _epmd.names(epmd=port)
    except _epmd.EpmdError:
        return None


class Host:
    """DistNodes of one test sharing a private port mapper port; all
    stopped at the end. Each answers `echo` with ("echoed", x)."""

    def __init__(self) -> None:
        self.epmd = free_port()
        self.cookie = new_cookie()
        self.nodes: list[DistNode] = []
        self.inbox: dict[str, queue.Queue[Any]] = {}

    def node(self, alive: str | None = None, *, start: bool = True, **kw: Any) -> DistNode:
        name = f"{alive or 'p'}{os.getpid()}x{next(_names)}@127.0.0.1"
        n = DistNode(name, self.cookie, epmd=self.epmd, **kw)
        self.nodes.append(n)
        box: queue.Queue[Any] = queue.Queue()
        self.inbox[name] = box
        n.on_send = lambda to, msg: box.put(msg)
        n.register("echo", lambda sender, msg: n.send(msg[0], (Atom("echoed"), msg[1])))
        return n.start() if start else n

    def roundtrip(self, frm: DistNode, to: DistNode, payload: Any = "ping") -> Any:
        frm.send(("echo", to.name), (Pid((frm.name, 7, 0)), payload))
        return self.inbox[frm.name].get(timeout=20)

    def stop(self) -> None:
        for n in reversed(self.nodes):
            n.stop()


@pytest.fixture
def host() -> Iterator[Host]:
    h = Host()
    try:
        yield h
    finally:
        h.stop()


def _alive(n: DistNode) -> str:
    return n.name.split("@")[0]


def test_without_epmd_the_first_node_starts_a_port_mapper_and_the_others_find_it(
    host: Host,
) -> None:
    assert _names_or_none(host.epmd) is None  # nothing there yet
    a = host.node()
    b = host.node()
    assert a.mapper is not None and b.mapper is None  # one mapper, a's
    assert _epmd.names(epmd=host.epmd) == {_alive(a): a.port, _alive(b): b.port}
    assert _epmd.port_please(_alive(b), epmd=host.epmd) == (b.port, 6)
    assert host.roundtrip(a, b) == (Atom("echoed"), "ping")
    assert host.roundtrip(b, a) == (Atom("echoed"), "ping")
    # It listens on loopback only: no TLS and no opt-in asked for more.
    assert a.mapper.addresses and all(addr.startswith("127.") for addr in a.mapper.addresses)


def test_when_the_owner_stops_the_other_nodes_take_over_and_keep_working(host: Host) -> None:
    owner = host.node()
    b = host.node()
    c = host.node()
    creations = (b.creation, c.creation)
    assert host.roundtrip(b, c)[0] == "echoed"
    owner.stop()
    # b and c register again, one of them running the mapper now.
    expected = {_alive(b): b.port, _alive(c): c.port}
    assert wait_until(lambda: _names_or_none(host.epmd) == expected, 20)
    assert (b.mapper is None) != (c.mapper is None)
    assert (b.creation, c.creation) == creations  # the same incarnations
    # A node started now finds both, and the open b-c connection never broke.
    d = host.node()
    assert host.roundtrip(d, b)[0] == "echoed"
    assert host.roundtrip(d, c)[0] == "echoed"
    assert host.roundtrip(b, c, "still")[1] == "still"
    # And again when the new owner stops: the last two carry on.
    new_owner, other = (b, c) if b.mapper is not None else (c, b)
    new_owner.stop()
    expected = {_alive(other): other.port, _alive(d): d.port}
    assert wait_until(lambda: _names_or_none(host.epmd) == expected, 20)
    e = host.node()
    assert host.roundtrip(e, other)[0] == "echoed"
    assert host.roundtrip(e, d)[0] == "echoed"


def test_nodes_starting_at_once_share_one_port_mapper(host: Host) -> None:
    nodes = [host.node(start=False) for _ in range(4)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(nodes))

    def start(n: DistNode) -> None:
        barrier.wait()
        try:
            n.start()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=start, args=(n,)) for n in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert sum(n.mapper is not None for n in nodes) == 1
    assert _epmd.names(epmd=host.epmd) == {_alive(n): n.port for n in nodes}


def test_the_port_mapper_speaks_the_epmd_protocol(host: Host) -> None:
    with _portmapper.PortMapper(port=host.epmd) as mapper:
        assert _epmd.port_please("nobody", epmd=host.epmd) is None
        with _epmd.register("one", 40001, epmd=host.epmd) as reg:
            assert reg.creation >= 4  # a 32-bit creation (ALIVE2_X_RESP); 0-3 are reserved
            assert _epmd.port_please("one", epmd=host.epmd) == (40001, 6)
            with pytest.raises(_epmd.EpmdError, match="taken"):
                _epmd.register("one", 40002, epmd=host.epmd)
            assert mapper.names() == {"one": 40001}
            assert _epmd.names(epmd=host.epmd) == {"one": 40001}
        # Registration lasts as long as its connection.
        assert wait_until(lambda: _epmd.names(epmd=host.epmd) == {}, 20)
        with _epmd.register("one", 40003, epmd=host.epmd) as again:
            assert again.creation != reg.creation  # a new incarnation
        # An old client (highest version 5) gets the 16-bit reply, creation 1-3.
        name = b"old"
        body = struct.pack(">BHBBHHH", 120, 40004, 77, 0, 5, 5, len(name)) + name + b"\0\0"
        with socket.create_connection(("127.0.0.1", host.epmd), timeout=10) as s:
            s.sendall(struct.pack(">H", len(body)) + body)
            tag, result, creation = struct.unpack(">BBH", _recv(s, 4))
            assert (tag, result) == (_epmd.ALIVE2_RESP, 0) and 1 <= creation <= 3
        # `epmd -kill` is refused: the mapper lives as long as its node.
        with socket.create_connection(("127.0.0.1", host.epmd), timeout=10) as s:
            s.sendall(struct.pack(">HB", 1, 107))
            assert _recv(s, 2) == b"NO"


def _recv(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        assert chunk, "closed early"
        buf += chunk
    return buf


def _closed(s: socket.socket) -> bool:
    s.settimeout(20)
    try:
        while s.recv(4096):
            pass
    except OSError:
        pass
    return True


def test_malformed_requests_close_that_connection_only(host: Host) -> None:
    a = host.node()
    assert a.mapper is not None
    before = {_alive(a): a.port}
    for garbage in (
        struct.pack(">H", 0xFFFF) + b"x" * 100,  # longer than any request
        struct.pack(">H", 0),  # empty
        struct.pack(">H", 3) + b"\x99ab",  # no such request
        struct.pack(">H", 5) + b"\x78\x00",  # an ALIVE2_REQ cut short by the close
        struct.pack(">H", 1) + b"\x6e" + b"extra bytes",  # a request, then more
        struct.pack(">H", 4) + bytes([122]) + b"\xff\xfe\x00",  # a name that is not UTF-8
    ):
        with socket.create_connection(("127.0.0.1", host.epmd), timeout=10) as s:
            s.sendall(garbage)
            s.shutdown(socket.SHUT_WR)
            assert _closed(s)
    # A silent client holds nothing up: the mapper serves others meanwhile,
    # and the registrations above are intact.
    silent = socket.create_connection(("127.0.0.1", host.epmd), timeout=10)
    try:
        assert _epmd.names(epmd=host.epmd) == before
        b = host.node()
        assert host.roundtrip(b, a)[0] == "echoed"
    finally:
        silent.close()


def test_a_client_that_never_finishes_its_request_is_dropped(host: Host) -> None:
    with _portmapper.PortMapper(port=host.epmd, idle_timeout=0.5):
        s = socket.create_connection(("127.0.0.1", host.epmd), timeout=10)
        try:
            s.sendall(struct.pack(">H", 10) + b"\x7a")  # 1 byte of 10, then silence
            assert _closed(s)
        finally:
            s.close()


def test_a_python_node_started_with_otp_node_start_runs_the_mapper_and_is_found(
    host: Host,
) -> None:
    me = f"py{os.getpid()}@127.0.0.1"
    otp.node.start(name=me, cookie=host.cookie, epmd=host.epmd)
    try:

        def echo() -> None:
            while True:
                sender, m = otp.receive()
                otp.send(sender, ("echoed", m))

        otp.register("echo", otp.spawn(echo))
        other = host.node()  # registers with the mapper of the node above
        assert other.mapper is None
        assert set(_epmd.names(epmd=host.epmd)) == {me.split("@")[0], _alive(other)}
        other.send(("echo", me), (Pid((other.name, 7, 0)), "hi"))
        assert host.inbox[other.name].get(timeout=20) == ("echoed", "hi")
    finally:
        otp.node.stop()
    # Its mapper went with it; `other` took over.
    assert wait_until(lambda: _names_or_none(host.epmd) == {_alive(other): other.port}, 20)


# -- whole nodes, one stopping --------------------------------------------------

PEER = os.path.join(HERE, "dist_peer.py")


class Doubler(GenServer):
    def init(self) -> None:
        return None

    def handle_call(self, request: Any, from_: Any, state: None) -> Any:
        return Reply(2 * request[1], state)


@pytest.fixture
def peers(host: Host) -> Iterator[Callable[[str], subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []

    def start(name: str) -> subprocess.Popen[str]:
        argv = [sys.executable, PEER, name, host.cookie, str(host.epmd)]
        proc = start_program(argv, dict(os.environ, PYTHONPATH=REPO))
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        stop_program(proc)


@pytest.mark.parametrize("how", ["stopped", "killed"])
def test_two_python_nodes_keep_working_when_the_one_running_the_mapper_goes(
    host: Host, peers: Callable[[str], subprocess.Popen[str]], how: str
) -> None:
    first = f"first{os.getpid()}@127.0.0.1"
    proc = peers(first)  # no epmd: this peer starts the port mapper
    me = f"py{os.getpid()}@127.0.0.1"
    otp.node.start(name=me, cookie=host.cookie, epmd=host.epmd)
    try:
        Doubler.start(name="doubler")
        assert gen_server.call(("counter", first), ("add", 2), 20.0) == 2
        # The mapper's owner goes; this node takes over. kill -9 of its main
        # program: its node's root kills the whole node, the OS closes its
        # sockets, and that is all the other nodes see.
        if how == "killed":
            os.kill(proc.pid, signal.SIGKILL)
        stop_program(proc)
        alone = {me.split("@")[0]}
        assert wait_until(lambda: set(_names_or_none(host.epmd) or ()) == alone, 20)
        second = f"second{os.getpid()}@127.0.0.1"
        peers(second)  # registers with this node's mapper now
        assert gen_server.call(("counter", second), ("add", 5), 20.0) == 5
        # ...and finds this node through it to call back.
        relay = ("relay", ("doubler", me), ("double", 21))
        assert gen_server.call(("counter", second), relay, 20.0) == 42
    finally:
        otp.node.stop()


# -- with a real erl ----------------------------------------------------------------


@pytest.mark.erlang
def test_erl_registers_with_our_port_mapper_and_pings_a_python_node(host: Host) -> None:
    require_erl()
    short = socket.gethostname().split(".")[0]
    try:
        addr = socket.gethostbyname(short)
    except OSError:
        pytest.skip(f"the host name {short!r} does not resolve")
    if not ipaddress.ip_address(addr).is_loopback:
        # Short names are looked up by host name; tests listen on loopback only.
        pytest.skip(f"the host name {short!r} resolves to {addr}, not to a loopback address")
    # A short-named node listens where its host name points (a loopback
    # address on a developer machine or CI runner).
    py = DistNode(f"py{os.getpid()}@{short}", host.cookie, epmd=host.epmd, host=addr)
    host.nodes.append(py)
    py.start()
    assert py.mapper is not None
    erl_name = f"x{os.getpid()}"
    script = (
        "{ok, Names} = net_adm:names(),"
        'io:format("~p~n~p~n", [lists:sort(Names), net_adm:ping(\'' + py.name + "')]),"
        "io:get_line(''), halt()."
    )
    env = dict(os.environ, ERL_EPMD_PORT=str(host.epmd))
    args = [
        require_erl(), "-noshell", "-sname", erl_name, "-setcookie", host.cookie,
        "-start_epmd", "false", "-eval", script,
    ]  # fmt: skip
    proc = subprocess.Popen(
        args,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready
        names = proc.stdout.readline().strip()
        pong = proc.stdout.readline().strip()
        assert f'{{"{_alive(py)}",{py.port}}}' in names and f'"{erl_name}"' in names
        assert pong == "pong"
        assert py.nodes() == [f"{erl_name}@{short}"]
        # erl's registration is in our mapper, as `epmd -names` (the real
        # epmd's client) shows too.
        assert erl_name in _epmd.names(epmd=host.epmd)
        shown = subprocess.run(
            ["epmd", "-port", str(host.epmd), "-names"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
        assert f"name {erl_name} at port" in shown
        assert f"name {_alive(py)} at port {py.port}" in shown
    finally:
        stop_program(proc)
    assert wait_until(lambda: erl_name not in _epmd.names(epmd=host.epmd), 20)
