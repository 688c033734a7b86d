"""TLS distribution and listener safety, Python to Python on 127.0.0.1 (each
test on a private port mapper port, served by our own port mapper), and
with a real erl started with `-proto_dist inet_tls` (marked `erlang`).

What a user relies on: two nodes with certificates from one CA talk over
mutually verified TLS; an untrusted certificate, a missing one, a wrong
cookie or a plain-TCP peer is refused; garbage, truncated frames and absurd
lengths close that one connection and the node goes on serving the others;
a plain-TCP listener beyond loopback is refused before anything binds.
"""

from __future__ import annotations

import itertools
import os
import queue
import select
import socket
import ssl
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, wait_until
from dist_certs import Cert, Pki
from dist_helpers import start_program, stop_program

import otp
from behaviours import GenServer, Reply, gen_server
from otp import Atom, BadArg, Pid
from otp.dist import _epmd, _etf, _handshake, _node, _tls
from otp.dist._node import DistNode
from otp.dist._testing import Epmd, erl_args, free_port, new_cookie, require_erl

_names = itertools.count()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def certs(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Cert]:
    rogue = Pki(tmp_path_factory.mktemp("rogue"))
    return {
        "a": pki.issue("a"),
        "b": pki.issue("b"),
        "rogue": rogue.issue("rogue"),  # right shape, signed by a CA nobody trusts
        "elsewhere": pki.issue("elsewhere", "DNS:elsewhere.example"),  # wrong host
    }


class Cluster:
    """DistNodes of one test: a private port mapper port, one cookie; every
    node is stopped at the end. Each node answers `echo`: (pid, x) sent to
    it comes back to pid as ("echoed", x)."""

    def __init__(self, pki: Pki, certs: dict[str, Cert]) -> None:
        self.pki = pki
        self.certs = certs
        self.epmd = free_port()
        self.cookie = new_cookie()
        self.nodes: list[DistNode] = []
        self.inbox: dict[str, queue.Queue[Any]] = {}

    def tls(self, cert: str = "a", **kw: Any) -> _tls.TLS:
        c = self.certs[cert]
        return _tls.TLS(certfile=c.certfile, keyfile=c.keyfile, cafile=self.pki.cafile, **kw)

    def node(self, cert: str | None = "a", cookie: str | None = None, **kw: Any) -> DistNode:
        """A started node; `cert=None` for plain TCP."""
        name = f"n{os.getpid()}x{next(_names)}@127.0.0.1"
        tls = self.tls(cert) if cert is not None and "tls" not in kw else kw.pop("tls", None)
        n = DistNode(name, cookie or self.cookie, epmd=self.epmd, tls=tls, **kw)
        self.nodes.append(n)
        n.start()
        box: queue.Queue[Any] = queue.Queue()
        self.inbox[name] = box
        n.on_send = lambda to, msg: box.put(msg)
        n.register("echo", lambda sender, msg: n.send(msg[0], (Atom("echoed"), msg[1])))
        return n

    def roundtrip(self, frm: DistNode, to: Any, payload: Any = "ping") -> Any:
        frm.send(("echo", to.name), (Pid((frm.name, 7, 0)), payload))
        return self.inbox[frm.name].get(timeout=20)

    def stop(self) -> None:
        for n in reversed(self.nodes):
            n.stop()


@pytest.fixture
def cluster(pki: Pki, certs: dict[str, Cert]) -> Iterator[Cluster]:
    c = Cluster(pki, certs)
    try:
        yield c
    finally:
        c.stop()


def _closed_by_peer(s: Any, timeout: float = 20.0) -> bool:
    """Whether the other end closed `s` (EOF, a reset, or a TLS alert)."""
    s.settimeout(timeout)
    try:
        while True:
            if not s.recv(4096):
                return True
    except OSError:
        return True


# -- TLS between Python nodes ---------------------------------------------------


def test_two_tls_nodes_talk_over_mutually_verified_tls(cluster: Cluster) -> None:
    a = cluster.node("a")
    b = cluster.node("b")
    payload = ("big", b"\x00" * 1_000_000, 2**70)
    assert cluster.roundtrip(a, b, payload) == (Atom("echoed"), payload)
    assert cluster.roundtrip(b, a) == (Atom("echoed"), "ping")
    ca, cb = a.connections[b.name], b.connections[a.name]
    assert isinstance(ca.sock, _tls.TLSSocket) and isinstance(cb.sock, _tls.TLSSocket)
    assert ca.sock.version() in ("TLSv1.2", "TLSv1.3")

    def common_name(s: _tls.TLSSocket) -> str:
        return dict(x[0] for x in s.getpeercert()["subject"])["commonName"]  # type: ignore[no-any-return]

    # Mutual: each side verified the other's certificate.
    assert common_name(ca.sock) == "b"
    assert common_name(cb.sock) == "a"


def test_a_node_with_the_right_cookie_but_an_untrusted_certificate_is_refused(
    cluster: Cluster,
) -> None:
    a = cluster.node("a")
    rogue = cluster.node("rogue")
    with pytest.raises(_handshake.HandshakeError):
        rogue.connect(a.name)  # a refuses rogue's certificate
    assert wait_until(lambda: a.refused, 20)
    assert "certificate" in a.refused[-1][1].lower()
    with pytest.raises(_handshake.HandshakeError, match="certificate verify failed"):
        a.connect(rogue.name)  # and a does not trust rogue as a server either
    assert a.nodes() == [] and rogue.nodes() == []


def test_a_client_without_a_certificate_is_refused(cluster: Cluster) -> None:
    a = cluster.node("a")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cluster.pki.cafile)  # trusts a, shows no certificate
    raw = socket.create_connection(("127.0.0.1", a.port), timeout=20)
    try:
        # Under TLS 1.3 the client's side of the handshake may finish before
        # the server has checked it; the refusal then comes on first read.
        s = _tls.TLSSocket.client(raw, ctx, "127.0.0.1", 20)
        s.sendall(b"\x00\x00\x00\x01N")
        assert _closed_by_peer(s)
    except ssl.SSLError:
        pass  # refused during the handshake itself (TLS 1.2)
    finally:
        raw.close()
    assert wait_until(lambda: a.refused, 20)
    assert "certificate" in a.refused[-1][1].lower()
    assert a.nodes() == []


def test_plain_tcp_and_tls_nodes_cannot_connect_either_way(cluster: Cluster) -> None:
    secure = cluster.node("a")
    plain = cluster.node(None)
    with pytest.raises(_handshake.HandshakeError):
        plain.connect(secure.name)
    with pytest.raises(_handshake.HandshakeError):
        secure.connect(plain.name)
    assert wait_until(lambda: secure.refused and plain.refused, 20)
    assert secure.refused[-1][1].startswith("TLS")  # a plain 'N' is not a ClientHello
    assert secure.nodes() == [] and plain.nodes() == []
    # Both go on serving their own kind.
    assert cluster.roundtrip(cluster.node("b"), secure)[0] == "echoed"
    assert cluster.roundtrip(cluster.node(None), plain)[0] == "echoed"


def test_the_connecting_side_checks_that_the_certificate_names_the_peer_host(
    cluster: Cluster,
) -> None:
    # `elsewhere` has a certificate from the right CA, for another host: a
    # node that asked for <name>@127.0.0.1 does not accept it as that node.
    a = cluster.node("a")
    elsewhere = cluster.node("elsewhere")
    with pytest.raises(_handshake.HandshakeError, match="certificate verify failed"):
        a.connect(elsewhere.name)
    # A cluster sharing one certificate turns the check off explicitly.
    lenient = cluster.node(tls=cluster.tls("a", check_hostname=False))
    assert cluster.roundtrip(lenient, elsewhere)[0] == "echoed"


def test_tls_files_that_cannot_be_loaded_fail_start_before_anything_starts(
    cluster: Cluster, tmp_path: Path
) -> None:
    missing = _tls.TLS(
        certfile=str(tmp_path / "none.pem"), keyfile=str(tmp_path / "none.key"), cafile="x"
    )
    with pytest.raises(BadArg, match="cannot load"):
        otp.node.start(name=f"t{os.getpid()}@127.0.0.1", cookie="C", tls=missing, epmd=cluster.epmd)
    from otp import _runtime

    assert _runtime._proc is None  # the node was not started
    mismatched = _tls.TLS(
        certfile=cluster.certs["a"].certfile,
        keyfile=cluster.certs["b"].keyfile,  # another certificate's key
        cafile=cluster.pki.cafile,
    )
    with pytest.raises(BadArg, match="cannot load"):
        DistNode("x@127.0.0.1", "C", tls=mismatched, epmd=cluster.epmd).start()
    with pytest.raises(BadArg, match=r"otp\.node\.TLS"):
        otp.node.start(name=f"t{os.getpid()}@127.0.0.1", cookie="C", tls=("a", "b", "c"))


# -- whole nodes over TLS -------------------------------------------------------

PEER = """
import sys
import otp
from behaviours import GenServer, Reply, gen_server

class Counter(GenServer):
    def init(self):
        return 0
    def handle_call(self, request, from_, state):
        match request:
            case ("add", n):
                return Reply(state + n, state + n)
            case ("relay", dest, req):
                return Reply(gen_server.call(tuple(dest), req, 10.0), state)

def echo():
    while True:
        frm, m = otp.receive()
        otp.send(frm, ("echoed", m))

name, cookie, epmd, certfile, keyfile, cafile = sys.argv[1:]
tls = otp.node.TLS(certfile=certfile, keyfile=keyfile, cafile=cafile)
otp.node.start(name=name, cookie=cookie, epmd=int(epmd), tls=tls)
Counter.start(name="counter")
otp.register("echo", otp.spawn(echo))
print("ready", flush=True)
sys.stdin.read()
otp.node.stop()
"""


class Doubler(GenServer):
    def init(self) -> None:
        return None

    def handle_call(self, request: Any, from_: Any, state: None) -> Any:
        return Reply(2 * request[1], state)


@pytest.fixture
def peer_program(cluster: Cluster) -> Iterator[Callable[[str, str], str]]:
    procs: list[subprocess.Popen[str]] = []

    def start(name: str, cert: str) -> str:
        c = cluster.certs[cert]
        args = [name, cluster.cookie, str(cluster.epmd), c.certfile, c.keyfile, cluster.pki.cafile]
        procs.append(
            start_program([sys.executable, "-c", PEER, *args], dict(os.environ, PYTHONPATH=REPO))
        )
        return name

    yield start
    for proc in procs:
        stop_program(proc)


def test_whole_python_nodes_call_each_other_over_tls(
    cluster: Cluster, peer_program: Callable[[str, str], str]
) -> None:
    peer = peer_program(f"peer{os.getpid()}@127.0.0.1", "b")
    me = f"py{os.getpid()}@127.0.0.1"
    otp.node.start(name=me, cookie=cluster.cookie, epmd=cluster.epmd, tls=cluster.tls("a"))
    try:
        Doubler.start(name="doubler")
        assert gen_server.call(("counter", peer), ("add", 5), 20.0) == 5
        # The peer calls back into this node, over the same TLS connection.
        assert gen_server.call(("counter", peer), ("relay", ("doubler", me), ("x", 21)), 20.0) == 42
        assert otp.nodes() == [peer]
    finally:
        otp.node.stop()


def test_tls_nodes_flooding_each_other_with_large_messages_lose_nothing_and_keep_order(
    cluster: Cluster, peer_program: Callable[[str, str], str]
) -> None:
    # As tests/test_dist_pump.py over plain TCP: both directions full at
    # once, each record written in order by whichever thread made it.
    peer = peer_program(f"peer{os.getpid()}@127.0.0.1", "b")
    otp.node.start(
        name=f"py{os.getpid()}@127.0.0.1", cookie=cluster.cookie, epmd=cluster.epmd,
        tls=cluster.tls("a"),
    )  # fmt: skip
    try:
        me = otp.self_pid()
        blob = bytes(range(256)) * 2048  # 512 KiB, several TLS records each
        n = 30
        for i in range(n):
            otp.send(("echo", peer), (me, (i, blob)))
        got = [otp.receive(timeout=30) for _ in range(n)]
        assert [m[1][0] for m in got] == list(range(n))
        assert all(m[0] == "echoed" and m[1][1] == blob for m in got)
    finally:
        otp.node.stop()


# -- listener safety, over plain TCP and over TLS ---------------------------------


@pytest.fixture(params=["tcp", "tls"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _raw_connect(cluster: Cluster, node: DistNode | int, transport: str) -> Any:
    """A connection to `node` (or a port) speaking nothing yet, TLS already
    done if `transport` is "tls" (with a trusted certificate)."""
    port = node if isinstance(node, int) else node.port
    raw = socket.create_connection(("127.0.0.1", port), timeout=20)
    if transport == "tcp":
        return raw
    return _tls.TLSSocket.client(raw, cluster.tls("b").client_context(), "127.0.0.1", 20)


def _port_of(cluster: Cluster, node: str) -> int:
    """The port `node` listens on, as the port mapper says."""
    found = _epmd.port_please(node.split("@")[0], epmd=cluster.epmd)
    assert found is not None
    return found[0]


def _cert(transport: str, name: str = "a") -> str | None:
    return name if transport == "tls" else None


def test_a_wrong_cookie_is_refused_during_the_handshake(cluster: Cluster, transport: str) -> None:
    a = cluster.node(_cert(transport))
    wrong = cluster.node(_cert(transport, "b"), cookie="WRONG")
    with pytest.raises(_handshake.HandshakeError):
        wrong.connect(a.name)
    assert wait_until(lambda: a.refused, 20)
    assert "cookie" in a.refused[-1][1]
    assert a.nodes() == [] and wrong.nodes() == []


def test_malformed_handshakes_close_that_connection_only(cluster: Cluster, transport: str) -> None:
    a = cluster.node(_cert(transport))
    header = ">H" if transport == "tcp" else ">I"  # {packet, 4} under TLS
    garbage = [
        struct.pack(header, 5) + b"hello",  # not a send_name
        struct.pack(header, 0xFFFF if transport == "tcp" else 0xFFFFFFFF),  # absurd length
        struct.pack(header, 3) + b"Nab",  # a send_name cut short
        struct.pack(header, 100) + b"N" * 10,  # a packet truncated by the close
        b"",  # nothing at all
    ]
    for data in garbage:
        s = _raw_connect(cluster, a, transport)
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            assert _closed_by_peer(s)
        finally:
            s.close()
    if transport == "tls":
        # Not even TLS: closed before any distribution byte is read.
        s = socket.create_connection(("127.0.0.1", a.port), timeout=20)
        s.sendall(b"\x00\x10N" + b"\x00" * 16)
        assert _closed_by_peer(s)
        s.close()
    assert wait_until(lambda: len(a.refused) >= len(garbage), 20)
    assert a.nodes() == []
    assert cluster.roundtrip(cluster.node(_cert(transport, "b")), a)[0] == "echoed"


def test_bad_frames_after_the_handshake_close_that_connection_only(
    cluster: Cluster, transport: str
) -> None:
    a = cluster.node(_cert(transport))
    friend = cluster.node(_cert(transport, "b"))
    assert cluster.roundtrip(friend, a)[0] == "echoed"
    frames = [
        struct.pack(">I", 0xFFFFFFFF),  # an absurd length: never allocated
        struct.pack(">I", 100) + b"p" + b"\x83" * 10,  # truncated by the close
        struct.pack(">I", 5) + b"pjunk",  # not a term
        struct.pack(">I", 5) + b"xxxxx",  # not a pass-through packet
    ]
    for i, frame in enumerate(frames):
        evil = f"evil{i}@127.0.0.1"
        s = _raw_connect(cluster, a, transport)
        c = _handshake.connect(s, evil, cluster.cookie, 5, packet=2 if transport == "tcp" else 4)
        assert wait_until(lambda evil=evil: evil in a.nodes(), 20)  # type: ignore[misc]
        c.sock.sendall(frame)
        c.sock.shutdown(socket.SHUT_WR)
        assert wait_until(lambda evil=evil: evil not in a.nodes(), 20)  # type: ignore[misc]
        c.close()
    # The other connection never noticed.
    assert a.nodes() == [friend.name]
    assert cluster.roundtrip(friend, a, "still here") == (Atom("echoed"), "still here")


def test_silent_connections_do_not_hold_up_other_nodes(
    cluster: Cluster, transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_node, "MAX_PENDING", 4)
    a = cluster.node(_cert(transport))
    silent = [socket.create_connection(("127.0.0.1", a.port), timeout=20) for _ in range(3)]
    try:
        # Three handshakes wait on silent peers; another node still gets in.
        assert cluster.roundtrip(cluster.node(_cert(transport, "b")), a)[0] == "echoed"
        # Past the bound, a connection is closed at once (no thread each).
        silent.append(socket.create_connection(("127.0.0.1", a.port), timeout=20))
        flood = socket.create_connection(("127.0.0.1", a.port), timeout=20)
        silent.append(flood)
        assert _closed_by_peer(flood)
        assert any("too many" in why for _, why in a.refused)
    finally:
        before = len(a.refused)
        for s in silent:
            s.close()
    # Their handshakes end with their sockets (each refused: the peer closed);
    # then the node accepts again.
    assert wait_until(lambda: len(a.refused) >= before + 4, 20)
    assert cluster.roundtrip(cluster.node(_cert(transport, "b")), a)[0] == "echoed"


def test_a_plain_tcp_listener_beyond_loopback_is_refused_before_binding(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    bound: list[Any] = []
    real_bind = socket.socket.bind

    def spy(self: socket.socket, address: Any) -> None:
        bound.append(address)
        real_bind(self, address)

    monkeypatch.setattr(socket.socket, "bind", spy)
    with pytest.raises(BadArg, match="allow_plain_tcp=True"):
        otp.node.start(name=f"t{os.getpid()}@127.0.0.1", cookie="C", listen="0.0.0.0")
    from otp import _runtime

    assert _runtime._proc is None  # nothing started, so nothing forked or listened
    with pytest.raises(BadArg, match="plain TCP"):
        DistNode("x@127.0.0.1", "C", host="0.0.0.0", epmd=cluster.epmd)
    with pytest.raises(BadArg):
        DistNode("x@127.0.0.1", "C", host="", epmd=cluster.epmd)  # "" is every interface too
    assert bound == []


def test_tls_or_an_explicit_opt_in_allow_a_listener_beyond_loopback(cluster: Cluster) -> None:
    # The guard only: these nodes are built, not started, so nothing binds
    # beyond 127.0.0.1 in a test.
    _tls.check_listen("0.0.0.0", cluster.tls(), False)
    _tls.check_listen("0.0.0.0", None, True)
    DistNode("x@127.0.0.1", "C", host="0.0.0.0", tls=cluster.tls(), epmd=cluster.epmd)
    DistNode("x@127.0.0.1", "C", host="0.0.0.0", allow_plain_tcp=True, epmd=cluster.epmd)
    for local in ("127.0.0.1", "localhost", "::1", "127.0.1.1"):
        _tls.check_listen(local, None, False)


# -- with a real erl over inet_tls -------------------------------------------------

ERL_ECHO = (
    "register(echo, spawn(fun Loop() -> receive {From, M} -> "
    "From ! {echoed, M}, Loop() end end)),"
    "io:format(\"~p~n\", [net_adm:ping('{py}')]), receive after infinity -> ok end."
)


def _erl_tls(epmd: Epmd, name: str, cookie: str, optfile: str, script: str) -> Any:
    args = [
        require_erl(), "-noshell", "-proto_dist", "inet_tls", "-ssl_dist_optfile", optfile,
        *erl_args(name, cookie), "-start_epmd", "false", "-eval", script,
    ]  # fmt: skip
    return subprocess.Popen(
        args,
        env=epmd.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _first_line(proc: Any, timeout: float = 30) -> str:
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "erl printed nothing"
    return str(proc.stdout.readline()).strip()


@pytest.mark.erlang
def test_erl_over_inet_tls_and_a_python_node_talk_both_ways(
    cluster: Cluster, tmp_path: Path
) -> None:
    require_erl()
    with Epmd().running() as epmd:
        cluster.epmd = epmd.port
        py = cluster.node("a")
        erl_name = f"e{os.getpid()}@127.0.0.1"
        conf = cluster.pki.erl_optfile(cluster.certs["b"])
        proc = _erl_tls(epmd, erl_name, cluster.cookie, conf, ERL_ECHO.replace("{py}", py.name))
        try:
            assert _first_line(proc) == "pong"  # erl -> Python, over TLS
            assert py.nodes() == [erl_name]
            c = py.connections[erl_name]
            assert isinstance(c.sock, _tls.TLSSocket)
            assert dict(x[0] for x in c.sock.getpeercert()["subject"])["commonName"] == "b"
            # Python -> erl's echo and back, on that connection.
            assert cluster.roundtrip(py, _Named(erl_name), "hi") == (Atom("echoed"), "hi")
        finally:
            proc.kill()
            proc.wait(10)
            assert proc.stdout is not None
            proc.stdout.close()
        assert wait_until(lambda: py.nodes() == [], 20)
        # An erl whose certificate our CA did not sign gets pang, and we refuse it.
        rogue_pki = Pki(tmp_path / "rogue-erl")
        conf = rogue_pki.erl_optfile(rogue_pki.issue("rogue-erl"))
        rogue = _erl_tls(
            epmd, f"r{os.getpid()}@127.0.0.1", cluster.cookie, conf,
            f"io:format(\"~p~n\", [net_adm:ping('{py.name}')]), halt().",
        )  # fmt: skip
        try:
            assert _first_line(rogue) == "pang"
            assert py.nodes() == []
            assert any(why.startswith("TLS") for _, why in py.refused)
        finally:
            rogue.kill()
            rogue.wait(10)
            assert rogue.stdout is not None
            rogue.stdout.close()
        py.stop()  # before this test's epmd is killed


class _Named:
    """Stands for a peer node in `Cluster.roundtrip` (only its name is used)."""

    def __init__(self, name: str) -> None:
        self.name = name


class _Pipelining:
    """A TLSSocket that sends `extra` in the same TLS record as the
    handshake's challenge reply (before the ack): so the accepting node's
    handshake reads the first distribution packet along with its own last
    message, and that packet waits inside OpenSSL, where no poll sees it."""

    def __init__(self, sock: _tls.TLSSocket, extra: bytes) -> None:
        self.sock = sock
        self.extra = extra

    def sendall(self, data: bytes) -> None:
        if data[4:5] == b"r":  # {packet, 4}: the challenge reply
            data = data + self.extra
        self.sock.sendall(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


def test_a_packet_read_with_the_tls_handshake_is_delivered_at_once(cluster: Cluster) -> None:
    me = f"py{os.getpid()}@127.0.0.1"
    otp.node.start(name=me, cookie=cluster.cookie, epmd=cluster.epmd, tls=cluster.tls("a"))
    try:
        otp.register("inbox", otp.self_pid())
        stranger = f"early{os.getpid()}@127.0.0.1"
        codec = _etf.Codec(node=stranger, creation=1)
        body = b"p" + codec.encode((6, Pid((stranger, 1, 0)), Atom(""), Atom("inbox")))
        body += codec.encode("early")
        tls = _raw_connect(cluster, _port_of(cluster, me), "tls")
        c = _handshake.connect(
            _Pipelining(tls, struct.pack(">I", len(body)) + body),
            stranger,
            cluster.cookie,
            1,
            packet=4,
        )
        try:
            # Nothing more is sent: only the node's reading what OpenSSL holds
            # delivers it.
            assert otp.receive(lambda m: m == "early", 10) == "early"
        finally:
            c.sock.close()
    finally:
        otp.node.stop()


def test_garbage_on_a_tls_connection_of_a_whole_node_closes_that_connection_only(
    cluster: Cluster, peer_program: Callable[[str, str], str]
) -> None:
    # The node's dist process reads its TLS connections in its own loop
    # (otp/dist/_pump.py): garbage inside the records, or bytes that are not
    # TLS records at all, drop that connection and nothing else.
    peer = peer_program(f"peer{os.getpid()}@127.0.0.1", "b")
    me = f"py{os.getpid()}@127.0.0.1"
    otp.node.start(name=me, cookie=cluster.cookie, epmd=cluster.epmd, tls=cluster.tls("a"))
    try:
        assert gen_server.call(("counter", peer), ("add", 1), 20.0) == 1
        port = _port_of(cluster, me)
        # (inside TLS or straight onto the TCP stream, the bytes, then close?)
        bad: list[tuple[str, bytes, bool]] = [
            ("record", struct.pack(">I", 0xFFFFFFFF), False),  # an absurd length
            ("record", struct.pack(">I", 5) + b"pjunk", False),  # not a term
            ("record", struct.pack(">I", 100) + b"p" + b"\x83" * 10, True),  # cut by the close
            ("raw", b"\x17\x03\x03\x00\x20" + b"\x00" * 32, False),  # fails to decrypt
            ("raw", b"GET / HTTP/1.0\r\n\r\n", False),  # not TLS at all
        ]
        for i, (how, data, then_close) in enumerate(bad):
            evil = f"evil{i}x{os.getpid()}@127.0.0.1"
            tls = _raw_connect(cluster, port, "tls")
            raw = tls.raw
            c = _handshake.connect(tls, evil, cluster.cookie, 5, packet=4)
            assert wait_until(lambda evil=evil: evil in otp.nodes(), 20)  # type: ignore[misc]
            if how == "record":
                tls.sendall(data)
            else:
                raw.sendall(data)
            if then_close:
                raw.shutdown(socket.SHUT_WR)  # the end that cuts the packet short
            assert wait_until(lambda evil=evil: evil not in otp.nodes(), 20)  # type: ignore[misc]
            c.sock.close()
        assert otp.nodes() == [peer]
        assert gen_server.call(("counter", peer), ("add", 1), 20.0) == 2
    finally:
        otp.node.stop()
