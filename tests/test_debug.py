"""otp.debug (Erlang's sys) on a GenServer: state, status, suspend, statistics.

The system messages behind these are answered by the shared gen layer
between two callbacks, so the other behaviours get the same. Trace output
goes to the server's stderr: `test_gen_server_logs.py` checks it from a
subprocess.
"""

from __future__ import annotations

from typing import Any

import pytest

import otp
from behaviours import GenServer, NoReply, Reply, gen_server

WAIT = 10.0


class Counter(GenServer):
    """State: an int plus a log of what it was sent, so order can be checked."""

    def init(self, start: int = 0, secret: str = "") -> Any:
        return {"n": start, "log": [], "secret": secret}

    def handle_call(self, request: Any, from_: Any, state: Any) -> Any:
        match request:
            case "get":
                return Reply(state["n"], state)
            case "log":
                return Reply(state["log"], state)
        return Reply(None, state)

    def handle_cast(self, msg: Any, state: Any) -> Any:
        state["n"] += 1
        state["log"].append(msg)
        return NoReply(state)

    def handle_info(self, msg: Any, state: Any) -> Any:
        state["log"].append(("info", msg))
        return NoReply(state)

    def format_status(self, status: dict[str, Any]) -> dict[str, Any]:
        state = status.get("state")
        if isinstance(state, dict) and state.get("secret"):
            status = {**status, "state": {**state, "secret": "***"}}
        return status


class Trapping(GenServer):
    def init(self, test: otp.Pid) -> Any:
        otp.trap_exit(True)
        return test

    def terminate(self, reason: Any, state: Any) -> None:
        otp.send(state, ("terminated", reason))


def _caller(test: otp.Pid, server: otp.Pid, tag: int) -> None:
    """Call the server from another process and report the answer."""
    otp.send(test, ("answered", tag, gen_server.call(server, "get", timeout=30)))


def _down(ref: otp.Ref) -> otp.DOWN:
    return otp.receive(lambda m: type(m) is otp.DOWN and m.ref == ref, timeout=WAIT)


def _boom(state: Any) -> Any:
    raise ZeroDivisionError("no")


# ================================================================== state


def test_get_state_returns_the_servers_state() -> None:
    pid = Counter.start_link(3, name="counter")
    assert otp.debug.get_state(pid) == {"n": 3, "log": [], "secret": ""}
    assert otp.debug.get_state("counter")["n"] == 3
    gen_server.stop(pid)


def test_replace_state_sets_the_state_the_callbacks_then_see() -> None:
    pid = Counter.start_link(3)
    new = otp.debug.replace_state(pid, lambda s: {**s, "n": s["n"] * 10})
    assert new["n"] == 30
    assert gen_server.call(pid, "get") == 30
    assert otp.debug.get_state(pid)["n"] == 30
    gen_server.stop(pid)


def test_replace_state_with_a_raising_function_leaves_the_state_unchanged() -> None:
    pid = Counter.start_link(3)
    with pytest.raises(otp.OTPError) as info:
        otp.debug.replace_state(pid, _boom)
    what, op, crash = info.value.args[0]
    assert (what, op) == ("callback_failed", "replace_state")
    assert isinstance(crash, otp.Crash) and crash.type == "ZeroDivisionError"
    assert otp.debug.get_state(pid)["n"] == 3
    assert gen_server.call(pid, "get") == 3  # the server lives on
    gen_server.stop(pid)


def test_get_status_describes_the_server_through_format_status() -> None:
    pid = Counter.start_link(1, secret="hunter2", name="status")
    status = otp.debug.get_status(pid)
    assert status["pid"] == pid
    assert status["name"] == "status"
    assert status["behaviour"] == "GenServer"
    assert status["module"] == "Counter"
    assert status["status"] == "running"
    assert status["parent"] == otp.self_pid()
    assert status["state"] == {"n": 1, "log": [], "secret": "***"}
    gen_server.stop(pid)


def test_get_status_of_an_unlinked_server_has_no_parent() -> None:
    pid = Counter.start()
    assert otp.debug.get_status(pid)["parent"] is None
    gen_server.stop(pid)


def test_debug_on_a_dead_pid_or_unknown_name_raises_noproc() -> None:
    pid = Counter.start()
    gen_server.stop(pid)
    with pytest.raises(otp.NoProc):
        otp.debug.get_state(pid)
    with pytest.raises(otp.NoProc):
        otp.debug.get_status("nobody")


# ======================================================== suspend / resume


def test_suspended_server_queues_calls_and_messages_and_loses_none() -> None:
    pid = Counter.start_link(0)
    otp.debug.suspend(pid)
    assert otp.debug.get_status(pid)["status"] == "suspended"
    # System messages are still served while suspended.
    assert otp.debug.get_state(pid)["n"] == 0
    # A call with a short timeout times out: nothing but system messages runs.
    with pytest.raises(otp.CallTimeout):
        gen_server.call(pid, "get", timeout=0.3)
    for i in range(50):
        gen_server.cast(pid, i)
    otp.send(pid, "plain message")
    callers = {otp.spawn_monitor(_caller, otp.self_pid(), pid, k) for k in range(3)}
    # None of the callers is answered while the server is suspended.
    with pytest.raises(otp.ReceiveTimeout):
        otp.receive(lambda m: m[0] == "answered", timeout=0.5)
    assert otp.debug.get_state(pid)["n"] == 0

    otp.debug.resume(pid)
    answered = {
        otp.receive(lambda m: type(m) is tuple and m[0] == "answered", timeout=WAIT)[1]
        for _ in range(3)
    }
    assert answered == {0, 1, 2}
    for _, ref in callers:
        assert _down(ref).reason == "normal"
    # Everything sent during the suspension ran after resume, in send order.
    assert gen_server.call(pid, "log") == [*range(50), ("info", "plain message")]
    assert gen_server.call(pid, "get") == 50
    assert otp.debug.get_status(pid)["status"] == "running"
    # The call that timed out was answered late, and that reply was dropped.
    with pytest.raises(otp.ReceiveTimeout):
        otp.receive(timeout=0.2)
    gen_server.stop(pid)


def test_a_suspended_server_can_still_be_stopped() -> None:
    pid = Counter.start()
    ref = otp.monitor(pid)
    otp.debug.suspend(pid)
    gen_server.stop(pid, "shutdown", timeout=WAIT)
    assert _down(ref).reason == "shutdown"


def test_a_suspended_server_that_traps_exits_still_obeys_its_parent() -> None:
    # As OTP's sys:suspend_loop: the parent's EXIT is taken while suspended,
    # so a supervisor can shut a suspended child down cleanly.
    otp.trap_exit(True)
    pid = Trapping.start_link(otp.self_pid())
    otp.debug.suspend(pid)
    otp.exit(pid, "shutdown")
    assert otp.receive(lambda m: m[0] == "terminated", timeout=WAIT) == ("terminated", "shutdown")
    exit_msg = otp.receive(lambda m: type(m) is otp.EXIT, timeout=WAIT)
    assert exit_msg == otp.EXIT(pid, "shutdown")


def test_resume_of_a_running_server_is_harmless() -> None:
    pid = Counter.start_link(0)
    otp.debug.resume(pid)
    gen_server.cast(pid, "x")
    assert gen_server.call(pid, "get") == 1
    gen_server.stop(pid)


# ============================================================= statistics


def test_statistics_counts_messages_in_and_out() -> None:
    pid = Counter.start_link(0)
    before = otp.debug.statistics(pid)
    assert set(before) >= {
        "start_time",
        "current_time",
        "messages_in",
        "messages_out",
        "message_queue_len",
    }
    assert before["start_time"] <= before["current_time"]
    for _ in range(5):
        gen_server.call(pid, "get")
    after = otp.debug.statistics(pid)
    assert after["messages_in"] >= before["messages_in"] + 5
    assert after["messages_out"] >= before["messages_out"] + 5
    assert after["message_queue_len"] == 0
    gen_server.stop(pid)


def test_trace_can_be_switched_on_and_off() -> None:
    pid = Counter.start_link(0)
    otp.debug.trace(pid, True)
    assert otp.debug.get_status(pid)["tracing"] is True
    assert gen_server.call(pid, "get") == 0
    otp.debug.trace(pid, False)
    assert otp.debug.get_status(pid)["tracing"] is False
    gen_server.stop(pid)
