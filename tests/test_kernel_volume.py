"""Kernel: volume. A 100 MB message makes the round trip intact; two processes
that send each other 10 MB at the same moment do not deadlock; a million small
messages from one process to another all arrive, in order."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pytest

import otp

# ------------------------------------------------------------ process bodies


def agent(parent: otp.Pid) -> None:
    """Commands `(verb, *args)`, answered `("ok", self, result)` to the parent."""
    me = otp.self_pid()
    while True:
        m = otp.receive()
        verb, args = m[0], m[1:]
        result: Any = None
        if verb == "echo":
            result = args[0]
        elif verb == "swap":
            # Send `size` bytes to `peer`, then take the peer's blob: when both
            # do it at once, both writes block until the other side reads.
            peer, size = args
            otp.send(peer, ("blob", me, os.urandom(1024) * (size // 1024)))
            _, sender, blob = otp.receive(lambda x: type(x) is tuple and x[0] == "blob", 30.0)
            result = (sender, len(blob), hashlib.sha256(blob).hexdigest())
        elif verb == "count":
            # Take `n` integers; check they come in order.
            n = args[0]
            in_order = True
            for i in range(n):
                if otp.receive() != i:
                    in_order = False
            result = (n, in_order)
        elif verb == "flood":
            dest, n = args
            send = otp.send
            for i in range(n):
                send(dest, i)
            result = n
        elif verb == "return":
            return
        otp.send(parent, ("ok", me, result))


# ------------------------------------------------------------------ helpers


def start_agent() -> otp.Pid:
    return otp.spawn(agent, otp.self_pid())


def reply_of(pid: otp.Pid, timeout: float = 30.0) -> Any:
    m = otp.receive(lambda m: type(m) is tuple and len(m) == 3 and m[:2] == ("ok", pid), timeout)
    return m[2]


def down_of(ref: otp.Ref, timeout: float = 10.0) -> otp.DOWN:
    m = otp.receive(lambda m: type(m) is otp.DOWN and m.ref == ref, timeout)
    assert type(m) is otp.DOWN
    return m


def end(*pids: otp.Pid) -> None:
    for pid in pids:
        ref = otp.monitor(pid)
        otp.send(pid, ("return",))
        down_of(ref)


# -------------------------------------------------------------------- tests


def test_a_100_mb_message_makes_the_round_trip_intact() -> None:
    pid = start_agent()
    payload = os.urandom(1 << 20) * 100
    otp.send(pid, ("echo", payload))
    back = reply_of(pid)
    assert len(back) == len(payload)
    assert back == payload
    end(pid)


def test_two_processes_sending_each_other_10_mb_at_once_do_not_deadlock() -> None:
    size = 10 << 20
    a, b = start_agent(), start_agent()
    otp.send(a, ("swap", b, size))
    otp.send(b, ("swap", a, size))
    sender_a, len_a, _ = reply_of(a)
    sender_b, len_b, _ = reply_of(b)
    assert (sender_a, len_a) == (b, size)
    assert (sender_b, len_b) == (a, size)
    end(a, b)


def test_main_program_and_a_process_sending_each_other_10_mb_at_once_do_not_deadlock() -> None:
    size = 10 << 20
    me = otp.self_pid()
    pid = start_agent()
    mine = os.urandom(1024) * (size // 1024)
    otp.send(pid, ("swap", me, size))
    otp.send(pid, ("blob", me, mine))  # blocks until the agent reads; we read its blob meanwhile
    _, sender, theirs = otp.receive(lambda m: type(m) is tuple and m[0] == "blob", 30.0)
    assert sender == pid and len(theirs) == size
    assert reply_of(pid) == (me, size, hashlib.sha256(mine).hexdigest())
    end(pid)


@pytest.mark.slow
def test_a_million_small_messages_all_arrive_in_order() -> None:
    n = 1_000_000
    receiver, sender = start_agent(), start_agent()
    otp.send(receiver, ("count", n))
    otp.send(sender, ("flood", receiver, n))
    assert reply_of(sender, 40.0) == n
    assert reply_of(receiver, 40.0) == (n, True)
    end(receiver, sender)
