"""Kernel: messages that cannot travel. An unpicklable message raises
otp.NotPicklable in the sender and nothing reaches the receiver; a message
that cannot be unpickled in the receiver is dropped there with a logged
warning, and the receiver lives on."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

import pytest

import otp

# ------------------------------------------------------------ process bodies


def agent(parent: otp.Pid) -> None:
    """`(verb, *args)` is answered `("ok", self, result)`; anything else is
    forwarded to the parent as `("got", self, message)`."""
    me = otp.self_pid()
    while True:
        m = otp.receive()
        if type(m) is tuple and m and m[0] == "ping":
            otp.send(parent, ("ok", me, "pong"))
        elif type(m) is tuple and m and m[0] == "log_to":
            from loguru import logger

            logger.add(m[1], level="WARNING", format="{level} {message}")
            otp.send(parent, ("ok", me, None))
        elif m == ("return",):
            return
        else:
            otp.send(parent, ("got", me, m))


def _explode(text: str) -> Any:
    raise RuntimeError(text)


class Bomb:
    """Pickles fine; unpickling it raises (the receiver calls `_explode`)."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_explode, ("this cannot be rebuilt here",))


# ------------------------------------------------------------------ helpers


def start_agent() -> otp.Pid:
    return otp.spawn(agent, otp.self_pid())


def ping(pid: otp.Pid) -> None:
    otp.send(pid, ("ping",))
    otp.receive(lambda m: m == ("ok", pid, "pong"), 5.0)


def nothing_forwarded_by(pid: otp.Pid) -> bool:
    """True if `pid` forwarded nothing so far (call it after a ping: the pong
    came after anything the agent had received before it)."""
    try:
        otp.receive(lambda m: type(m) is tuple and len(m) == 3 and m[:2] == ("got", pid), 0)
    except otp.ReceiveTimeout:
        return True
    return False


def end(pid: otp.Pid) -> None:
    ref = otp.monitor(pid)
    otp.send(pid, ("return",))
    otp.receive(lambda m: type(m) is otp.DOWN and m.ref == ref, 5.0)


# ------------------------------------------------------------- unpicklable


def _generator() -> Any:
    yield 1


UNPICKLABLE = {
    # Both the C pickler and dill refuse these. (A threading.Lock is not
    # among them: dill sends a fresh lock.)
    "socket": lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM),
    "generator": _generator,
}


@pytest.mark.parametrize("kind", sorted(UNPICKLABLE))
def test_unpicklable_message_raises_not_picklable_in_the_sender_and_sends_nothing(
    kind: str,
) -> None:
    pid = start_agent()
    value = UNPICKLABLE[kind]()
    try:
        with pytest.raises(otp.NotPicklable) as info:
            otp.send(pid, ("carrying", value))
        assert type(value).__name__ in str(info.value)
        assert isinstance(info.value, TypeError) and isinstance(info.value, otp.OTPError)
        with pytest.raises(otp.NotPicklable):
            otp.send(pid, value)
    finally:
        if isinstance(value, socket.socket):
            value.close()
    ping(pid)  # the receiver is fine, and got nothing before the ping
    assert nothing_forwarded_by(pid)
    end(pid)


def test_a_threading_lock_is_sent_as_a_fresh_lock() -> None:
    pid = start_agent()
    otp.send(pid, ("lock", threading.Lock()))
    _, _, (tag, lock) = otp.receive(lambda m: type(m) is tuple and m[0] == "got", 5.0)
    assert tag == "lock" and lock.acquire(blocking=False)
    end(pid)


def test_spawn_with_an_unpicklable_argument_raises_and_starts_nothing() -> None:
    before = otp.processes()
    with pytest.raises(otp.NotPicklable):
        otp.spawn(agent, otp.self_pid(), _generator())
    assert otp.processes() == before


# --------------------------------------------------------- undecodable


def test_a_message_that_fails_to_unpickle_is_dropped_with_a_warning_and_the_receiver_lives(
    tmp_path: Path,
) -> None:
    log = tmp_path / "receiver.log"
    pid = start_agent()
    otp.send(pid, ("log_to", str(log)))
    otp.receive(lambda m: m == ("ok", pid, None), 5.0)

    otp.send(pid, Bomb())  # alone on the wire
    ping(pid)
    assert nothing_forwarded_by(pid)

    otp.send(pid, Bomb())  # followed at once by a good message: only the bomb goes
    otp.send(pid, "after the bomb")
    got = otp.receive(lambda m: type(m) is tuple and m[:2] == ("got", pid), 5.0)
    assert got[2] == "after the bomb"
    ping(pid)
    assert nothing_forwarded_by(pid)

    text = log.read_text()
    assert text.count("WARNING") == 2, text
    assert "RuntimeError" in text and "this cannot be rebuilt here" in text
    end(pid)
