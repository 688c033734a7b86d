"""Kernel: what a stranger on a process's socket can and cannot do. The runtime
directory is private (0700); a connection that does not start with a valid
HELLO, or sends garbage, a truncated frame or a header claiming 2**62 bytes,
is closed, nothing on it is unpickled, and the process lives on; a HELLO
claiming another OS pid than the socket's peer is refused."""

from __future__ import annotations

import os
import pickle
import socket
import stat
import struct
from pathlib import Path
from typing import Any

import pytest

import otp

HDR = struct.Struct("<Q")  # 8-byte little-endian header: kind << 56 | length
HELLO_BODY = struct.Struct("<qq")  # the connector's OS pid and serial
MSG, HELLO, WELCOME = 0, 2, 3


def frame(kind: int, payload: bytes = b"", length: int | None = None) -> bytes:
    return HDR.pack((kind << 56) | (len(payload) if length is None else length)) + payload


# ------------------------------------------------------------ process bodies


def agent(parent: otp.Pid) -> None:
    """Answers ("ping",) with ("ok", self, "pong"); forwards anything else."""
    me = otp.self_pid()
    while True:
        m = otp.receive()
        if m == ("ping",):
            otp.send(parent, ("ok", me, "pong"))
        elif m == ("return",):
            return
        else:
            otp.send(parent, ("got", me, m))


def _touch(path: str) -> None:
    Path(path).write_text("unpickled!")


class Trap:
    """Creates a file when unpickled: proof that bytes were unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (_touch, (self.path,))


# ------------------------------------------------------------------ helpers


def start_agent() -> otp.Pid:
    return otp.spawn(agent, otp.self_pid())


def ping(pid: otp.Pid) -> None:
    otp.send(pid, ("ping",))
    otp.receive(lambda m: m == ("ok", pid, "pong"), 5.0)


def end(pid: otp.Pid) -> None:
    ref = otp.monitor(pid)
    otp.send(pid, ("return",))
    otp.receive(lambda m: type(m) is otp.DOWN and m.ref == ref, 5.0)


def raw_connect(pid: otp.Pid) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5.0)
    s.connect(os.path.join(otp.node.rundir(), f"{pid.id}.{pid.serial}"))
    return s


def send_quietly(s: socket.socket, data: bytes) -> None:
    try:
        s.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass  # closed already: what the test expects anyway


def closed_by_peer(s: socket.socket) -> bytes:
    """Read until the process closes the connection; returns what it sent first.
    Fails (socket timeout) if the connection stays open."""
    got = b""
    try:
        while chunk := s.recv(65536):
            got += chunk
    except ConnectionResetError:
        pass
    return got


# -------------------------------------------------------------------- tests


def test_runtime_directory_is_private() -> None:
    rundir = otp.node.rundir()
    for path in (rundir, os.path.dirname(rundir), os.path.join(rundir, "names")):
        st = os.stat(path)
        assert stat.S_IMODE(st.st_mode) == 0o700, (path, oct(st.st_mode))
        assert st.st_uid == os.getuid()


def _trap_payload(tmp_path: Path) -> bytes:
    return pickle.dumps(Trap(str(tmp_path / "unpickled")), 5)


GARBAGE: dict[str, Any] = {
    "message_before_hello": lambda tmp: frame(MSG, _trap_payload(tmp)),
    "two_messages_before_hello": lambda tmp: frame(MSG, _trap_payload(tmp)) * 2,
    "garbage_bytes": lambda tmp: bytes(range(256)) * 4,
    "header_claiming_2_62_bytes": lambda tmp: frame(HELLO, length=2**62),
    "message_header_claiming_2_62_bytes": lambda tmp: frame(MSG, length=2**62),
}


@pytest.mark.parametrize("case", sorted(GARBAGE))
def test_a_connection_with_bad_first_bytes_is_closed_and_the_process_lives(
    case: str, tmp_path: Path
) -> None:
    pid = start_agent()
    with raw_connect(pid) as s:
        send_quietly(s, GARBAGE[case](tmp_path))
        assert closed_by_peer(s) == b""
    assert not (tmp_path / "unpickled").exists(), "bytes from a stranger were unpickled"
    ping(pid)
    end(pid)


def test_a_truncated_frame_is_dropped_when_its_connection_ends() -> None:
    pid = start_agent()
    with raw_connect(pid) as s:
        s.sendall(frame(HELLO, length=HELLO_BODY.size) + b"\x01\x02\x03")
        s.shutdown(socket.SHUT_WR)
        assert closed_by_peer(s) == b""
    ping(pid)
    end(pid)


def test_a_hello_claiming_another_os_pid_is_refused() -> None:
    pid, other = start_agent(), start_agent()
    with raw_connect(pid) as s:
        s.sendall(frame(HELLO, HELLO_BODY.pack(other.id, other.serial)))
        # The process may have read the HELLO and closed already: then this send
        # fails with EPIPE, which is the refusal the test is about.
        send_quietly(s, frame(MSG, pickle.dumps("impostor", 5)))
        assert closed_by_peer(s) == b""  # no WELCOME
    ping(pid)  # alive, and the impostor's message never arrived before the pong
    with pytest.raises(otp.ReceiveTimeout):
        otp.receive(lambda m: type(m) is tuple and m[:2] == ("got", pid), 0)
    end(pid)
    end(other)


def test_after_a_valid_hello_a_header_claiming_2_62_bytes_closes_the_connection() -> None:
    pid = start_agent()
    me = otp.self_pid()  # this test process is the main program: the socket says so
    with raw_connect(pid) as s:
        s.sendall(frame(HELLO, HELLO_BODY.pack(me.id, me.serial)))
        welcome = s.recv(8)
        assert welcome == frame(WELCOME)
        send_quietly(s, frame(MSG, length=2**62))
        assert closed_by_peer(s) == b""
    ping(pid)
    end(pid)
