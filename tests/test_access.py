"""Access: another OS user cannot talk to a node, and nothing it sends is
ever unpickled.

Two locks, each tested from a client running as `nobody` (a forked child of
this root test process that drops to nobody's uid and gid before touching
anything):

1. The runtime directory is private (0700, and so is the per-user directory
   above it): another user cannot even reach a process's socket, the root's
   spawn socket or the log socket, nor list the directory.
2. Should the directory be opened up (here on purpose, in a scratch node),
   every process checks its peer's uid (SO_PEERCRED) when it accepts, and
   closes a connection from another user unread: a HELLO followed by a
   pickle whose unpickling would create a file gets no WELCOME, and the file
   never appears. The node's root does the same on its spawn socket.

Also: a node refuses to start in a per-user directory others can enter.

These tests need root (to become nobody) and are skipped otherwise. The
same-user cases (garbage, a pickle before HELLO, a HELLO claiming another
pid, the 0700 modes) are in tests/test_kernel_security.py.
"""

from __future__ import annotations

import errno
import os
import pickle
import pwd
import shutil
import socket
import stat
import struct
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

import otp

pytestmark = [
    pytest.mark.skipif(
        os.geteuid() != 0, reason="needs root to run a client as another OS user (nobody)"
    ),
    # Forking this (threaded) test process to become nobody: Python 3.12
    # warns about fork in a threaded process; the child only makes syscalls.
    pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning"),
]

HDR = struct.Struct("<Q")
HELLO_BODY = struct.Struct("<qq")
MSG, HELLO, WELCOME = 0, 2, 3


def frame(kind: int, payload: bytes = b"") -> bytes:
    return HDR.pack((kind << 56) | len(payload)) + payload


def _touch(path: str) -> None:
    Path(path).write_text("unpickled!")


class Trap:
    """Creates a file when unpickled: proof that bytes were unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (_touch, (self.path,))


def agent() -> None:
    """Answers ("ping", sender) with "pong"."""
    while True:
        m = otp.receive()
        if type(m) is tuple and m[0] == "ping":
            otp.send(m[1], "pong")
        elif m == "stop":
            return


def ping(pid: otp.Pid) -> None:
    otp.send(pid, ("ping", otp.self_pid()))
    assert otp.receive(lambda m: m == "pong", 10) == "pong"


def end(pid: otp.Pid) -> None:
    ref = otp.monitor(pid)
    otp.send(pid, "stop")
    otp.receive(lambda m: type(m) is otp.DOWN and m.ref == ref, 10)


# ------------------------------------------------------- acting as nobody

NOBODY = pwd.getpwnam("nobody")


def as_nobody(fn: Callable[..., Any], *args: Any, become_nobody: bool = True) -> Any:
    """Run `fn(*args)` in a forked child that first becomes nobody; its result.

    With `become_nobody=False` the child stays this user: the control case.
    """
    r, w = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        try:
            os.close(r)
            if become_nobody:
                os.setgroups([])
                os.setgid(NOBODY.pw_gid)
                os.setuid(NOBODY.pw_uid)
            result: Any = ("ok", fn(*args))
        except BaseException as e:
            result = ("raised", repr(e))
        os.write(w, pickle.dumps(result))
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(child, 0)
    status, value = pickle.loads(data)
    assert status == "ok", value
    return value


def own_hello() -> bytes:
    """A HELLO that tells the truth: this OS process's own pid, as SO_PEERCRED
    reports it, so that nothing but the uid can be held against it."""
    return frame(HELLO, HELLO_BODY.pack(os.getpid(), 1))


def stranger_connects(path: str, data: bytes, hello: bool = False) -> tuple[str, Any]:
    """Connect to `path`, send `data` (after an honest HELLO if `hello`), read
    until the other side closes.

    ("no access", errno) if the connect is refused by file permissions;
    ("closed", bytes read) if the peer closed the connection; ("open", ...)
    if it was still open after 10 s.
    """
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10.0)
    try:
        s.connect(path)
    except PermissionError as e:
        return ("no access", e.errno)
    try:
        s.sendall((own_hello() if hello else b"") + data)
    except (BrokenPipeError, ConnectionResetError):
        pass
    got = b""
    try:
        while chunk := s.recv(65536):
            got += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        return ("open", got)
    finally:
        s.close()
    return ("closed", got)


def friend_is_welcomed(path: str) -> bytes:
    """Connect with an honest HELLO; the first frame answered (WELCOME)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10.0)
        s.connect(path)
        s.sendall(own_hello())
        return s.recv(8)


def stranger_lists(path: str) -> tuple[str, Any]:
    try:
        return ("listed", os.listdir(path))
    except PermissionError as e:
        return ("no access", e.errno)


def stranger_sends_datagram(path: str) -> tuple[str, Any]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.sendto(b"{}", path)
    except PermissionError as e:
        return ("no access", e.errno)
    finally:
        s.close()
    return ("sent", None)


# ------------------------------------------------------------------- tests


def test_another_user_cannot_reach_any_socket_of_a_node_through_its_private_directory(
    tmp_path: Path,
) -> None:
    pid = otp.spawn(agent)
    ping(pid)
    rundir = otp.node.rundir()
    assert stat.S_IMODE(os.stat(rundir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(os.path.dirname(rundir)).st_mode) == 0o700
    trap = str(tmp_path / "unpickled")
    payload = frame(HELLO, HELLO_BODY.pack(pid.id, pid.serial)) + frame(
        MSG, pickle.dumps(Trap(trap), 5)
    )

    sock = os.path.join(rundir, f"{pid.id}.{pid.serial}")
    assert as_nobody(stranger_connects, sock, payload) == ("no access", errno.EACCES)
    zygote = os.path.join(rundir, "zygote")
    assert as_nobody(stranger_connects, zygote, frame(MSG, pickle.dumps(Trap(trap), 5))) == (
        "no access",
        errno.EACCES,
    )
    assert as_nobody(stranger_sends_datagram, os.path.join(rundir, "log")) == (
        "no access",
        errno.EACCES,
    )
    assert as_nobody(stranger_lists, rundir) == ("no access", errno.EACCES)

    assert not os.path.exists(trap)
    ping(pid)
    end(pid)


@pytest.fixture
def open_base() -> Iterator[str]:
    """A scratch directory for the node's per-user directory, that nobody can
    traverse (mode 0711; pytest's tmp_path is under a 0700 directory)."""
    d = tempfile.mkdtemp(prefix="otp-access-")
    os.chmod(d, 0o711)
    try:
        yield d
    finally:
        otp.node.stop()  # before its directory goes (the guard then finds no node)
        shutil.rmtree(d, ignore_errors=True)


def test_a_connection_from_another_user_is_closed_unread_even_when_the_socket_is_reachable(
    open_base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", open_base)
    warnings: list[str] = []
    handler = logger.add(lambda m: warnings.append(m.record["message"]), level="WARNING")
    try:
        pid = otp.spawn(agent)  # the node starts here, under open_base
        ping(pid)
        rundir = otp.node.rundir()
        assert rundir.startswith(open_base)
        # Open the way on purpose: the directories traversable, the sockets
        # connectable by anyone. Only the processes' own check is left.
        os.chmod(os.path.dirname(rundir), 0o711)
        os.chmod(rundir, 0o711)
        sock = os.path.join(rundir, f"{pid.id}.{pid.serial}")
        zygote = os.path.join(rundir, "zygote")
        os.chmod(sock, 0o777)
        os.chmod(zygote, 0o777)
        trap = os.path.join(open_base, "unpickled")  # nobody could not create it itself
        bomb = pickle.dumps(Trap(trap), 5)

        # The control: a process of this user with an honest HELLO is let in.
        assert as_nobody(friend_is_welcomed, sock, become_nobody=False) == frame(WELCOME)
        # nobody, with the same honest HELLO (only its uid differs), then a
        # message that would create a file: closed, nothing answered.
        assert as_nobody(stranger_connects, sock, frame(MSG, bomb), True) == ("closed", b"")
        # The root's spawn socket: a spawn request that would create a file.
        assert as_nobody(stranger_connects, zygote, frame(MSG, bomb)) == ("closed", b"")

        assert not os.path.exists(trap), "bytes from another user were unpickled"
        ping(pid)  # the process lives on, untouched
        assert otp.node.flush_logs(10)
        assert any(f"refused a connection from uid {NOBODY.pw_uid}" in w for w in warnings)
        end(pid)
    finally:
        logger.remove(handler)


def test_a_node_refuses_a_per_user_directory_others_can_enter(
    open_base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = os.path.join(open_base, "otp")
    os.mkdir(base, 0o700)
    os.chmod(base, 0o755)
    monkeypatch.setenv("XDG_RUNTIME_DIR", open_base)
    with pytest.raises(otp.OTPError, match="not a private directory"):
        otp.node.start()
    assert os.listdir(base) == []  # nothing was created in it
