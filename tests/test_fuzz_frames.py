"""Fuzzing the frame decoder: whatever bytes arrive, in whatever pieces, the
runtime decodes exactly what a simple reference decoder says, never raises,
and closes a connection at its first bad header without reading on.

The decoder under test is the real one (`Process.on_readable`, which calls
`_parse`, `_read_big` and `_control`), fed through a real socketpair: the
bytes are written in pieces chosen by hypothesis and read by the runtime as
the kernel delivers them, so the fast path (one whole message per read),
frames split across reads, several frames per read and the big-frame path
(a payload of 512 KiB or more, read into a buffer of its own) are all taken.
The `Process` here is a bare runtime object in the test process, not a
started node: nothing is forked, and no other process is involved.

The reference decoder (`expected`) is written from the frame format alone
(otp/_codec.py): an 8-byte little-endian header, kind in the top byte,
payload length in the low 56 bits. A header with an unknown kind, a length
above MAX_FRAME, or (before the peer's HELLO) any kind but HELLO closes the
connection, and nothing after it is decoded. A message that fails to
unpickle is dropped; the connection carries on.

The bad-input cases that need a real peer process (garbage before HELLO, a
truncated frame, 2**62-byte headers, a HELLO claiming another OS pid) are in
tests/test_kernel_security.py; messages that fail to unpickle in a live
process in tests/test_kernel_bad_input.py.
"""

from __future__ import annotations

import itertools
import os
import pickle
import select
import socket
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import dill
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from otp import _codec, _runtime
from otp._runtime import BIG_FRAME, Conn, Process
from otp._terms import EXIT as EXIT_MSG
from otp._terms import Pid

HDR = struct.Struct("<Q")
HELLO_BODY = struct.Struct("<qq")
MSG, MSG_DILL, HELLO, WELCOME, LINK, UNLINK, EXIT, EXITING, INFO_REQ, INFO_REP = range(10)
KINDS = 10
MAX_FRAME = _codec.MAX_FRAME

PEER_OSPID = 4242  # the peer's OS pid as the socket reports it (SO_PEERCRED)
PEER = Pid((_runtime.NODE_NAME, PEER_OSPID, 77))
ME = Pid((_runtime.NODE_NAME, os.getpid(), 1))


# hypothesis' own failure report trips over a DeprecationWarning from
# mypy_extensions, which the suite turns into an error (filterwarnings=error):
# without this, a found bug would show as a pytest INTERNALERROR.
pytestmark = pytest.mark.filterwarnings(
    "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning"
)

# No example database: the test writes nothing into the checkout (.hypothesis).
FUZZ = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ------------------------------------------------------------- the stream


class Trap:
    """Unpickling it creates a directory: proof that bytes were unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (self.path,))


@dataclass
class Frame:
    """One frame as sent: `header_len` is what the header claims (it may lie)."""

    kind: int
    payload: bytes
    header_len: int

    def encode(self) -> bytes:
        return HDR.pack((self.kind << 56) | self.header_len) + self.payload


def frame(kind: int, payload: bytes = b"") -> Frame:
    return Frame(kind, payload, len(payload))


values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20) | st.binary(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4).map(tuple)
        | st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)

# b"\xff" is not a pickle opcode: unpickling fails at the first byte, before
# any opcode could import or call anything.
undecodable = st.binary(max_size=30).map(lambda b: b"\xff" + b)


@st.composite
def big_message(draw: Any) -> Frame:
    """A message at or above BIG_FRAME, the size read into a buffer of its own."""
    size = draw(st.integers(BIG_FRAME - 64, BIG_FRAME + 100_000))
    return frame(MSG, pickle.dumps(b"B" * size, 5))


def good_frames() -> st.SearchStrategy[Frame]:
    """Valid frames after HELLO: messages, control frames, undecodable payloads."""
    return st.one_of(
        values.map(lambda v: frame(MSG, pickle.dumps(v, 5))),
        values.map(lambda v: frame(MSG, pickle.dumps(v, 2))),
        undecodable.map(lambda b: frame(MSG, b)),
        values.map(lambda v: frame(MSG_DILL, dill.dumps(v))),
        undecodable.map(lambda b: frame(MSG_DILL, b)),
        st.just(frame(WELCOME)),
        st.just(frame(LINK)),
        st.just(frame(UNLINK)),
        values.map(lambda v: frame(EXIT, pickle.dumps(v, 5))),
        undecodable.map(lambda b: frame(EXIT, b)),
        values.map(lambda v: frame(EXITING, pickle.dumps(v, 5))),
        undecodable.map(lambda b: frame(EXITING, b)),
        st.integers(0, 2**31).map(lambda n: frame(INFO_REQ, pickle.dumps(("ref", n), 5))),
        undecodable.map(lambda b: frame(INFO_REQ, b)),
        st.binary(max_size=20).map(lambda b: frame(INFO_REP, b)),
        big_message(),
    )


def bad_frames() -> st.SearchStrategy[Frame]:
    """Headers the decoder must refuse, and raw garbage."""
    return st.one_of(
        st.integers(KINDS, 255).map(lambda k: Frame(k, b"", 0)),
        st.integers(MAX_FRAME + 1, 2**56 - 1).map(lambda n: Frame(MSG, b"", n)),
        # Raw bytes whose first header has an unknown kind (a random header
        # could otherwise claim up to MAX_FRAME bytes, which the runtime
        # would allocate: that is allowed, and not what this test is about).
        st.tuples(st.integers(KINDS, 255), st.binary(min_size=7, max_size=64)).map(
            lambda t: Frame(-1, t[1][:7] + bytes([t[0]]) + t[1][7:], -1)
        ),
        st.just(frame(HELLO, HELLO_BODY.pack(PEER_OSPID, 77))),  # a second HELLO
        st.binary(max_size=15).map(lambda b: frame(HELLO, b)),  # a HELLO of the wrong size
    )


@dataclass
class Case:
    greeted: bool  # the connection starts with the peer known (a connector / spawn socketpair)
    welcomed: bool
    frames: list[Frame]
    truncate: int  # bytes cut off the end of the stream (a truncated last frame)
    cuts: list[int] = field(default_factory=list)  # write boundaries, as fractions * 1000

    def stream(self) -> bytes:
        data = b"".join(f.encode() if f.kind >= 0 else f.payload for f in self.frames)
        return data[: max(len(data) - self.truncate, 0)]


@st.composite
def cases(draw: Any) -> Case:
    greeted = draw(st.booleans())
    frames: list[Frame] = []
    if not greeted:
        hello = draw(
            st.sampled_from(
                [
                    frame(HELLO, HELLO_BODY.pack(PEER_OSPID, 77)),  # valid
                    frame(HELLO, HELLO_BODY.pack(PEER_OSPID + 1, 77)),  # another OS pid
                    None,  # no HELLO: whatever comes first must close the connection
                ]
            )
        )
        if hello is not None:
            frames.append(hello)
    frames += draw(st.lists(good_frames(), max_size=12))
    if draw(st.booleans()):
        frames.insert(draw(st.integers(0, len(frames))), draw(bad_frames()))
    return Case(
        greeted=greeted,
        # An accepted connection counts as welcomed (the acceptor answered);
        # a connector's is welcomed when the peer's WELCOME arrives.
        welcomed=not greeted or draw(st.booleans()),
        frames=frames,
        truncate=draw(st.sampled_from([0, 0, 0, 1, 3, 8, 9])),
        cuts=draw(st.lists(st.integers(1, 999), max_size=8)),
    )


# ------------------------------------------------------ the reference decoder


@dataclass
class Outcome:
    mailbox: list[Any] = field(default_factory=list)
    links: set[Pid] = field(default_factory=set)
    welcomed: bool = False
    closed_as_garbage: bool = False
    replies: list[tuple[int, Any]] = field(default_factory=list)  # frames written back


def _try_loads(kind: int, payload: bytes) -> tuple[bool, Any]:
    try:
        return True, (pickle.loads(payload) if kind != MSG_DILL else dill.loads(payload))
    except Exception:
        return False, None


def expected(case: Case) -> Outcome:
    data = case.stream()
    out = Outcome(welcomed=case.welcomed)
    peer = PEER if case.greeted else None
    dying: Any = None
    pos = 0
    while len(data) - pos >= 8:
        (h,) = HDR.unpack_from(data, pos)
        kind, size = h >> 56, h & (2**56 - 1)
        if kind >= KINDS or size > MAX_FRAME or (peer is None and kind != HELLO):
            out.closed_as_garbage = True
            break
        end = pos + 8 + size
        if end > len(data):
            break  # truncated: dropped at the EOF
        payload = data[pos + 8 : end]
        pos = end
        if kind in (MSG, MSG_DILL):
            ok, value = _try_loads(kind, payload)
            if ok:
                out.mailbox.append(value)
        elif kind == HELLO:
            if peer is not None or len(payload) != HELLO_BODY.size:
                out.closed_as_garbage = True
                break
            ospid, serial = HELLO_BODY.unpack(payload)
            if ospid != PEER_OSPID:
                out.closed_as_garbage = True
                break
            peer = Pid((_runtime.NODE_NAME, ospid, serial))
            out.replies.append((WELCOME, None))
        elif kind == WELCOME:
            out.welcomed = True
        elif kind == LINK:
            out.links.add(peer)
        elif kind == UNLINK:
            out.links.discard(peer)
        elif kind == EXIT:
            ok, reason = _try_loads(MSG, payload)
            if ok:  # the test process traps exits: the signal becomes a message
                out.mailbox.append(EXIT_MSG(peer, reason))
        elif kind == EXITING:
            ok, reason = _try_loads(MSG, payload)
            dying = reason if ok else "killed"
        elif kind == INFO_REQ:
            ok, ref = _try_loads(MSG, payload)
            if ok:
                out.replies.append((MSG, ref))
    if not out.closed_as_garbage and peer is not None and peer in out.links:
        # The connection ended: the peer is dead, and its link fires, with
        # the reason of its EXITING frame, or "killed" if none came.
        reason = dying if dying is not None else "killed"
        out.mailbox.append(EXIT_MSG(peer, reason))
        out.links.discard(peer)
    return out


# --------------------------------------------------------- the real decoder


@pytest.fixture(scope="module")
def rundir() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="otp-fuzz-") as d:
        yield d


def _pump(p: Process, c: Conn) -> None:
    """Let the runtime read whatever is waiting on the connection."""
    # poll, not select: the runtime's descriptors are numbered from FD_BASE
    # (1024) up, out of select's range.
    while c.fd in p.fds:
        poller = select.poll()
        poller.register(c.fd, select.POLLIN)
        if not poller.poll(0):
            break
        p.on_readable(c)


def _frames_written_back(sock: socket.socket) -> list[tuple[int, Any]]:
    data = b""
    while True:
        try:
            chunk = sock.recv(1 << 16)
        except (BlockingIOError, ConnectionResetError):
            break
        if not chunk:
            break
        data += chunk
    out = []
    pos = 0
    while len(data) - pos >= 8:
        (h,) = HDR.unpack_from(data, pos)
        kind, size = h >> 56, h & (2**56 - 1)
        payload = data[pos + 8 : pos + 8 + size]
        pos += 8 + size
        if kind == MSG:
            ref, info = pickle.loads(payload)
            assert info["pid"] == ME
            out.append((MSG, ref))
        else:
            out.append((kind, None))
    return out


def actual(case: Case, rundir: str) -> Outcome:
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mine, theirs = socket.socketpair()
    p = Process(ME, rundir, lsock, is_main=False)
    try:
        p.trap = True
        c = Conn(
            mine.detach(),
            PEER if case.greeted else None,
            welcomed=case.welcomed,
            cred_pid=PEER_OSPID,
        )
        p.add_conn(c)
        theirs.setblocking(False)
        data = case.stream()
        bounds = sorted({len(data) * k // 1000 for k in case.cuts} | {0, len(data)})
        for lo, hi in itertools.pairwise(bounds):
            view = memoryview(data)[lo:hi]
            while view and c.fd in p.fds:
                try:
                    n = theirs.send(view)
                except BlockingIOError:
                    n = 0
                except (BrokenPipeError, ConnectionResetError):
                    break  # closed as garbage: the rest is never read
                view = view[n:]
                _pump(p, c)
            _pump(p, c)
        # Closed before our end said EOF: the runtime refused something.
        closed_early = c.fd not in p.fds
        theirs.shutdown(socket.SHUT_WR)
        _pump(p, c)
        assert c.fd not in p.fds, "the connection outlived its EOF"
        return Outcome(
            mailbox=list(p.mailbox),
            links=set(p.links),
            welcomed=c.welcomed,
            closed_as_garbage=closed_early,
            replies=_frames_written_back(theirs),
        )
    finally:
        theirs.close()
        p.ep.close()
        lsock.close()


# ------------------------------------------------------------------- tests


@settings(FUZZ, max_examples=500)
@given(case=cases())
# Found by this test: an INFO_REQ (process_info) whose payload does not
# unpickle raised out of the decoder into the receiving process's code.
@example(case=Case(greeted=True, welcomed=True, frames=[frame(INFO_REQ, b"\xff")], truncate=0))
def test_the_decoder_agrees_with_the_reference_whatever_the_bytes_and_their_split(
    case: Case, rundir: str
) -> None:
    want = expected(case)
    got = actual(case, rundir)
    assert got.closed_as_garbage == want.closed_as_garbage
    assert got.mailbox == want.mailbox
    assert got.links == want.links
    assert got.replies == want.replies
    assert got.welcomed == want.welcomed


@settings(FUZZ, max_examples=100)
@given(
    first=st.sampled_from([MSG, MSG_DILL, WELCOME, LINK, UNLINK, EXIT, EXITING, INFO_REQ]),
    value=values,
)
def test_nothing_is_unpickled_before_hello(first: int, value: Any, rundir: str) -> None:
    marker = os.path.join(rundir, "unpickled")
    payload = pickle.dumps((Trap(marker), value), 5)
    case = Case(greeted=False, welcomed=True, frames=[frame(first, payload)], truncate=0)
    got = actual(case, rundir)
    assert not os.path.exists(marker), "bytes from a peer that never said HELLO were unpickled"
    assert got.closed_as_garbage
    assert got.mailbox == [] and got.replies == []
