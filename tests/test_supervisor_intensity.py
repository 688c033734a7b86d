"""Restart intensity: the sliding window, giving up with "shutdown", escalation."""

from __future__ import annotations

from typing import Any

import pytest
from test_supervisor_support import Worker, stop_sup, wait_down, wait_lines

import otp
from behaviours import Supervisor, SupFlags, gen_server, supervisor
from behaviours import supervisor as supervisor_module


@pytest.fixture(autouse=True)
def _trap() -> None:
    otp.trap_exit(True)


class Abc(Supervisor):
    def init(self, log: str, intensity: int) -> Any:
        children = [Worker.child_spec(log, cid, id=cid) for cid in ("a", "b", "c")]
        return SupFlags(intensity=intensity, period=30), children


def _pid(sup: otp.Pid, cid: str) -> otp.Pid:
    return next(p for i, p, _, _ in supervisor.which_children(sup) if i == cid)


def test_one_restart_too_many_stops_every_child_in_reverse_order_and_exits_shutdown(tmp_path):
    log = str(tmp_path / "log")
    sup = Abc.start_link(log, 1)
    ref = otp.monitor(sup)
    gen_server.cast(_pid(sup, "b"), ("exit", "boom"))
    wait_lines(log, 5)  # the first restart is within the intensity
    gen_server.cast(_pid(sup, "b"), ("exit", "boom"))
    assert wait_down(ref) == "shutdown"
    # The dead child is not stopped again; the others go in reverse order.
    assert wait_lines(log, 8)[3:] == [
        "stop b boom",
        "start b",
        "stop b boom",
        "stop c shutdown",
        "stop a shutdown",
    ]


def test_intensity_zero_gives_up_at_the_first_restart(tmp_path):
    log = str(tmp_path / "log")
    sup = Abc.start_link(log, 0)
    ref = otp.monitor(sup)
    gen_server.cast(_pid(sup, "a"), ("exit", "boom"))
    assert wait_down(ref) == "shutdown"
    assert wait_lines(log, 6)[3:] == ["stop a boom", "stop c shutdown", "stop b shutdown"]


def test_the_count_is_over_the_whole_supervisor_not_per_child(tmp_path):
    log = str(tmp_path / "log")
    sup = Abc.start_link(log, 1)
    ref = otp.monitor(sup)
    gen_server.cast(_pid(sup, "a"), ("exit", "boom"))
    wait_lines(log, 5)
    gen_server.cast(_pid(sup, "c"), ("exit", "boom"))
    assert wait_down(ref) == "shutdown"


class Inner(Supervisor):
    def init(self, log: str) -> Any:
        return SupFlags(intensity=0), [Worker.child_spec(log, "w", id="w")]


class Outer(Supervisor):
    def init(self, log: str) -> Any:
        return SupFlags(intensity=1, period=30), [
            Worker.child_spec(log, "first", id="first"),
            Inner.child_spec(log, id="inner"),
        ]


def test_a_child_supervisor_that_gives_up_is_restarted_then_escalates(tmp_path):
    log = str(tmp_path / "log")
    top = Outer.start_link(log)
    ref = otp.monitor(top)
    spec = supervisor.get_childspec(top, "inner")
    assert (spec.type, spec.shutdown) == ("supervisor", "infinity")
    inner = _pid(top, "inner")
    gen_server.cast(_pid(inner, "w"), ("exit", "boom"))
    # inner gives up (intensity 0) with "shutdown"; top restarts it (1 of 1).
    assert wait_lines(log, 4)[2:] == ["stop w boom", "start w"]
    inner2 = _pid(top, "inner")
    assert inner2 != inner and otp.process_info(top)["restarts"] == 1
    gen_server.cast(_pid(inner2, "w"), ("exit", "boom"))
    # inner gives up again: top's second restart exceeds its intensity.
    assert wait_down(ref) == "shutdown"
    assert wait_lines(log, 6)[4:] == ["stop w boom", "stop first shutdown"]


def test_stopping_the_top_supervisor_stops_the_whole_tree_depth_first(tmp_path):
    log = str(tmp_path / "log")
    top = Outer.start_link(log)
    assert stop_sup(top) == "shutdown"
    assert wait_lines(log, 4)[2:] == ["stop w shutdown", "stop first shutdown"]


class _Clock:
    def __init__(self) -> None:
        self.now = 1000

    def monotonic_ns(self) -> int:
        return self.now * 1_000_000_000


def test_restarts_older_than_the_period_leave_the_window(monkeypatch):
    # The window logic alone, on a fake clock: no process, no waiting.
    clock = _Clock()
    monkeypatch.setattr(supervisor_module, "time", clock)
    st = supervisor_module._State(None, Abc, (), "one_for_one", 2, 5, "never")
    server = supervisor_module._SupervisorServer()
    assert server._add_restart(st) and server._add_restart(st)  # 2 at t=1000
    clock.now = 1005  # still inside: T >= Now - Period
    assert not server._add_restart(st)
    clock.now = 1011  # everything before 1006 has left the window
    assert server._add_restart(st) and server._add_restart(st)
    assert not server._add_restart(st)
    assert st.restarts == [1011, 1011, 1011]
