"""A remote call monitors its server only while it runs (as gen:call does):
after the reply, the server's node holds no monitor of ours, whether the
reply came back through the connection or was given by a process of the
caller's own node (`gen_server.reply` to a `from_` handed over). Seen from
the real erl node, as an operator would: `process_info(P, monitored_by)`."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
from dist_helpers import erl_node

import otp
from behaviours import gen_server
from otp.dist import Atom
from otp.dist._testing import Epmd

pytestmark = pytest.mark.erlang

# `srv` answers {'$gen_call', From, <<"ping">>} itself and hands From of
# {'$gen_call', From, {<<"forward">>, To}} to To (a Python process) to
# answer (a Python str is an Erlang binary).
SERVER = (
    "register(srv, spawn(fun L() -> receive "
    "{'$gen_call', From, <<\"ping\">>} -> gen:reply(From, pong), L(); "
    "{'$gen_call', From, {<<\"forward\">>, To}} -> To ! {forward, From}, L() "
    "end end)),"
    'io:format("ready~n").'
)


@pytest.fixture
def erl(epmd: Epmd, cookie: str) -> Iterator[str]:
    name = f"m{os.getpid()}@127.0.0.1"
    with erl_node(name, cookie, epmd, SERVER):
        yield name


def _monitored_by(node: str) -> list[Any]:
    pid = otp.rpc.call(node, "erlang", "whereis", [Atom("srv")])
    _, who = otp.rpc.call(node, "erlang", "process_info", [pid, Atom("monitored_by")])
    return list(who)


def _no_monitors_left(node: str, deadline_s: float = 10.0) -> list[Any]:
    """Polls (the last DEMONITOR_P leaves lazily, within milliseconds)."""
    deadline = time.monotonic() + deadline_s
    while (who := _monitored_by(node)) and time.monotonic() < deadline:
        with contextlib.suppress(otp.ReceiveTimeout):
            otp.receive(lambda m: False, 0.01)  # a receive with a timeout, not a sleep
    return who


def _forwarder() -> None:
    # Answers, from this node, the calls erl's srv hands over.
    while True:
        m = otp.receive()
        if m == "stop":
            return
        _, from_ = m
        gen_server.reply(from_, "answered here")


def test_calls_answered_through_the_connection_leave_no_monitor(local: str, erl: str) -> None:
    for _ in range(30):
        assert gen_server.call(("srv", erl), "ping", 10) == "pong"
    assert _no_monitors_left(erl) == []


def test_calls_answered_by_a_process_of_the_callers_node_leave_no_monitor(
    local: str, erl: str
) -> None:
    fwd = otp.spawn(_forwarder)
    try:
        for _ in range(10):
            assert gen_server.call(("srv", erl), ("forward", fwd), 10) == "answered here"
        assert _no_monitors_left(erl) == []
        # Calls answered through the connection still work after.
        assert gen_server.call(("srv", erl), "ping", 10) == "pong"
    finally:
        ref = otp.monitor(fwd)
        otp.send(fwd, "stop")
        otp.receive(lambda m: isinstance(m, otp.DOWN) and m.ref == ref, 10)


def _monitors_and_ends(node: str, main: otp.Pid) -> None:
    otp.monitor(("srv", node))
    otp.send(main, ("monitoring", otp.self_pid()))


def _calls_forever(node: str, to: otp.Pid) -> None:
    gen_server.call(("srv", node), ("forward", to), None)


def test_the_monitors_of_a_process_that_ends_are_dropped_on_the_other_node(
    local: str, erl: str
) -> None:
    # Erlang removes a process's monitors when it ends: the other node is
    # told (DEMONITOR_P), whether the process ended normally holding one or
    # was SIGKILLed in the middle of a call.
    me = otp.self_pid()
    quiet = otp.spawn(_monitors_and_ends, erl, me)
    otp.receive(lambda m: m == ("monitoring", quiet), 10)
    assert _no_monitors_left(erl) == []
    sink = otp.spawn(otp.receive)  # takes the forwarded call and never answers
    caller = otp.spawn(_calls_forever, erl, sink)
    ref = otp.monitor(caller)
    deadline = time.monotonic() + 10
    while not _monitored_by(erl) and time.monotonic() < deadline:
        pass  # polled under a deadline, until the call's monitor is there
    assert _monitored_by(erl) == [caller]
    os.kill(caller.id, signal.SIGKILL)
    otp.receive(lambda m: isinstance(m, otp.DOWN) and m.ref == ref, 10)
    assert _no_monitors_left(erl) == []
    otp.exit(sink, "kill")
