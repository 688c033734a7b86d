"""Trace ids: one request followed across processes, in their log records.

The records are read where an operator reads them: in the main program's
loguru handlers, which the node's log collector feeds with every process's
records (otp._logging); `otp.node.flush_logs()` waits until what was sent
has been emitted.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from loguru import logger

import otp
from behaviours import (
    EventHandler,
    GenServer,
    GenStatem,
    NoReply,
    Reply,
    gen_event,
    gen_server,
    gen_statem,
)
from behaviours.gen_statem import Call, KeepState, ReplyTo
from otp._trace import TracedTag, new_trace_id, trace_id, tracing


class Backend(GenServer):
    """Logs what it handles and answers with the trace id it saw."""

    def handle_call(self, request: Any, from_: Any, state: Any) -> Any:
        logger.info(f"backend call {request}")
        if request == "crash":
            raise RuntimeError("backend crashed")
        return Reply(trace_id(), state)

    def handle_cast(self, msg: Any, state: Any) -> Any:
        logger.info(f"backend cast {msg}")
        return NoReply(state)


class Frontend(GenServer):
    """Calls and casts the backend while handling a call: the id goes onward."""

    def handle_call(self, request: Any, from_: Any, state: Any) -> Any:
        logger.info(f"frontend call {request}")
        gen_server.cast("trace_backend", ("seen", request))
        return Reply((trace_id(), gen_server.call("trace_backend", request)), state)


class Machine(GenStatem):
    """A GenStatem, whose loop does not read trace ids: casts must still be casts."""

    callback_mode = "handle_event_function"

    def init(self) -> Any:
        return "on", []

    def handle_event(self, event_type: Any, content: Any, state: Any, data: Any) -> Any:
        match event_type, content:
            case "cast", msg:
                return KeepState([*data, msg])
            case Call(from_), "casts":
                return KeepState(data, [ReplyTo(from_, data)])
        return KeepState(data)


@pytest.fixture
def records() -> Iterator[list[dict[str, Any]]]:
    out: list[dict[str, Any]] = []
    hid = logger.add(lambda m: out.append(m.record), level="INFO", format="{message}")
    try:
        yield out
    finally:
        logger.remove(hid)


def _by_message(records: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    return [r for r in records if r["message"].startswith(prefix)]


def test_a_trace_id_travels_with_calls_and_casts_and_onward_into_every_log(
    records: list[dict[str, Any]],
) -> None:
    Backend.start_link(name="trace_backend")
    front = Frontend.start_link(name="trace_frontend")
    with tracing("req-42") as tid:
        logger.info("main sends")
        assert gen_server.call(front, "order") == ("req-42", "req-42")
    assert tid == "req-42"
    assert otp.node.flush_logs()
    for prefix in (
        "main sends",
        "frontend call order",
        "backend cast ('seen', 'order')",
        "backend call order",
    ):
        (rec,) = _by_message(records, prefix)
        assert rec["extra"]["trace_id"] == "req-42", rec
    # The records came from three different OS processes.
    pids = {_by_message(records, p)[0]["process"].id for p in ("main", "frontend", "backend call")}
    assert len(pids) == 3
    otp.unlink(front)
    gen_server.stop(front)
    gen_server.stop("trace_backend")


def test_calls_outside_a_trace_carry_no_id(records: list[dict[str, Any]]) -> None:
    front = Frontend.start_link(name="trace_frontend")
    Backend.start_link(name="trace_backend")
    with tracing():
        gen_server.call(front, "traced")
    assert gen_server.call(front, "plain") == (None, None)
    assert otp.node.flush_logs()
    (rec,) = _by_message(records, "backend call plain")
    assert rec["extra"]["trace_id"] is None
    (rec,) = _by_message(records, "frontend call plain")
    assert rec["extra"]["trace_id"] is None
    gen_server.stop(front)
    gen_server.stop("trace_backend")


def test_the_crash_report_of_a_traced_call_carries_the_trace_id(
    records: list[dict[str, Any]],
) -> None:
    pid = Backend.start(name="trace_backend")
    with tracing("crashing-request"), pytest.raises(otp.CallExit):
        gen_server.call(pid, "crash")
    assert otp.node.flush_logs()
    (report,) = [r for r in records if r["message"].startswith("CRASH REPORT")]
    assert report["extra"]["trace_id"] == "crashing-request"
    assert "backend crashed" in report["message"]


def test_a_traced_cast_is_still_a_cast_for_a_loop_that_ignores_trace_ids() -> None:
    pid = Machine.start_link()
    with tracing("statem"):
        gen_statem.cast(pid, "first")
        # The call's from_ carries the id too: the reply must still arrive.
        assert gen_statem.call(pid, "casts") == ["first"]
    gen_statem.cast(pid, "second")
    assert gen_statem.call(pid, "casts") == ["first", "second"]
    otp.unlink(pid)
    gen_statem.stop(pid)


def test_system_calls_made_under_a_trace_are_answered() -> None:
    pid = Backend.start_link()
    with tracing():
        assert otp.debug.get_state(pid) is None
        otp.debug.suspend(pid)
        otp.debug.resume(pid)
        assert otp.debug.get_status(pid)["behaviour"] == "GenServer"
    otp.unlink(pid)
    gen_server.stop(pid)


def test_tracing_blocks_nest_and_restore_the_previous_id() -> None:
    assert trace_id() is None
    with tracing("outer"):
        assert trace_id() == "outer"
        with tracing() as inner:
            assert re.fullmatch(r"[0-9a-f]{16}", inner)
            assert trace_id() == inner
        assert trace_id() == "outer"
    assert trace_id() is None
    assert new_trace_id() != new_trace_id()
    with pytest.raises(TypeError):
        tracing("")


def test_a_traced_tag_compares_as_the_plain_tag_and_survives_pickling() -> None:
    import pickle

    tag = TracedTag("$gen_cast", "abc")
    assert tag == "$gen_cast" and hash(tag) == hash("$gen_cast")
    back = pickle.loads(pickle.dumps(("$x", tag), 5))[1]
    assert type(back) is TracedTag and back.trace_id == "abc" and back == "$gen_cast"


class TracedMachine(GenStatem):
    """Logs each event it handles, and calls the backend on a call."""

    callback_mode = "handle_event_function"

    def init(self) -> Any:
        return "on", None

    def handle_event(self, event_type: Any, content: Any, state: Any, data: Any) -> Any:
        logger.info(f"machine {event_type if isinstance(event_type, str) else 'call'} {content}")
        if isinstance(event_type, Call):
            return KeepState(data, [ReplyTo(event_type.from_, trace_id())])
        return KeepState(data)


class LogHandler(EventHandler):
    def init(self, args: Any) -> Any:
        return None

    def handle_event(self, event: Any, state: Any) -> Any:
        logger.info(f"handler event {event}")
        return state

    def handle_call(self, request: Any, state: Any) -> Any:
        logger.info(f"handler call {request}")
        return gen_event.Reply(trace_id(), state)


def test_gen_statem_and_gen_event_callbacks_run_under_the_trace_id(
    records: list[dict[str, Any]],
) -> None:
    machine = TracedMachine.start()
    mgr = gen_event.start()
    gen_event.add_handler(mgr, LogHandler, None)
    with tracing() as tid:
        assert gen_statem.call(machine, "hello") == tid
        gen_statem.cast(machine, "bye")
        assert gen_event.call(mgr, LogHandler, "ask") == tid
        gen_event.sync_notify(mgr, "ping")
    assert gen_statem.call(machine, "untraced") is None
    assert otp.node.flush_logs()
    for prefix in (
        "machine call hello",
        "machine cast bye",
        "handler call ask",
        "handler event ping",
    ):
        (rec,) = _by_message(records, prefix)
        assert rec["extra"]["trace_id"] == tid, prefix
    (rec,) = _by_message(records, "machine call untraced")
    assert rec["extra"]["trace_id"] is None
    gen_statem.stop(machine)
    gen_event.stop(mgr)
