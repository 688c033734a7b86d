"""Restart types (permanent, transient, temporary), significant children and
auto_shutdown."""

from __future__ import annotations

from typing import Any

import pytest
from test_supervisor_support import Worker, stop_sup, wait_down, wait_lines

import otp
from behaviours import Supervisor, SupFlags, gen_server, supervisor
from otp.testing import wait_until


@pytest.fixture(autouse=True)
def _trap() -> None:
    otp.trap_exit(True)


class Two(Supervisor):
    """A plain worker `a`, then `x` with the restart type (and flags) given."""

    def init(
        self,
        log: str,
        restart: str,
        strategy: str = "one_for_one",
        auto_shutdown: str = "never",
        significant: bool = False,
    ) -> Any:
        return SupFlags(strategy=strategy, intensity=5, auto_shutdown=auto_shutdown), [
            Worker.child_spec(log, "a", id="a"),
            Worker.child_spec(log, "x", id="x", restart=restart, significant=significant),
        ]


def _kids(sup: otp.Pid) -> dict[Any, Any]:
    return {cid: pid for cid, pid, _, _ in supervisor.which_children(sup)}


@pytest.mark.parametrize("reason", ["normal", "shutdown", ("shutdown", "done")])
def test_a_transient_child_ending_cleanly_is_not_restarted_and_keeps_its_spec(tmp_path, reason):
    log = str(tmp_path / "log")
    sup = Two.start_link(log, "transient")
    gen_server.cast(_kids(sup)["x"], ("exit", reason))
    wait_lines(log, 3)
    wait_until(lambda: _kids(sup)["x"] is None, 10, "x to be recorded as stopped")
    assert otp.process_info(sup)["restarts"] == 0
    # The spec stays: restart_child brings it back.
    assert gen_server.call(supervisor.restart_child(sup, "x"), "ping") == "pong"
    assert stop_sup(sup) == "shutdown"


def test_a_transient_child_ending_abnormally_is_restarted(tmp_path):
    log = str(tmp_path / "log")
    sup = Two.start_link(log, "transient")
    gen_server.cast(_kids(sup)["x"], ("exit", ("error", 1)))
    assert wait_lines(log, 4)[2:] == ["stop x ('error', 1)", "start x"]
    assert stop_sup(sup) == "shutdown"


@pytest.mark.parametrize("reason", ["normal", "boom"])
def test_a_temporary_child_is_never_restarted_and_its_spec_is_forgotten(tmp_path, reason):
    log = str(tmp_path / "log")
    sup = Two.start_link(log, "temporary")
    gen_server.cast(_kids(sup)["x"], ("exit", reason))
    wait_lines(log, 3)
    wait_until(lambda: "x" not in _kids(sup), 10, "x's spec to be deleted")
    assert otp.process_info(sup)["restarts"] == 0
    with pytest.raises(otp.SupervisorError) as e:
        supervisor.restart_child(sup, "x")
    assert e.value.reason == "not_found"
    assert stop_sup(sup) == "shutdown"


def test_a_permanent_child_is_restarted_even_after_a_normal_exit(tmp_path):
    log = str(tmp_path / "log")
    sup = Two.start_link(log, "permanent")
    gen_server.cast(_kids(sup)["x"], ("exit", "normal"))
    assert wait_lines(log, 4)[2:] == ["stop x normal", "start x"]
    assert stop_sup(sup) == "shutdown"


def test_a_temporary_bystander_of_one_for_all_is_stopped_and_dropped(tmp_path):
    log = str(tmp_path / "log")
    sup = Two.start_link(log, "temporary", strategy="one_for_all")
    gen_server.cast(_kids(sup)["a"], ("exit", "boom"))
    assert wait_lines(log, 5)[2:] == ["stop a boom", "stop x shutdown", "start a"]
    assert list(_kids(sup)) == ["a"]
    assert stop_sup(sup) == "shutdown"


def test_any_significant_shuts_down_when_a_significant_child_ends_by_itself(tmp_path):
    log = str(tmp_path / "log")
    sup = Two.start_link(log, "transient", auto_shutdown="any_significant", significant=True)
    ref = otp.monitor(sup)
    gen_server.cast(_kids(sup)["x"], ("exit", "normal"))
    assert wait_down(ref) == "shutdown"
    assert wait_lines(log, 4)[2:] == ["stop x normal", "stop a shutdown"]


def test_a_significant_transient_child_that_crashes_is_restarted_not_shut_down(tmp_path):
    log = str(tmp_path / "log")
    sup = Two.start_link(log, "transient", auto_shutdown="any_significant", significant=True)
    gen_server.cast(_kids(sup)["x"], ("exit", "boom"))
    assert wait_lines(log, 4)[2:] == ["stop x boom", "start x"]
    assert otp.is_process_alive(sup)
    assert stop_sup(sup) == "shutdown"


def test_terminate_child_on_a_significant_child_does_not_shut_down(tmp_path):
    log = str(tmp_path / "log")
    sup = Two.start_link(log, "temporary", auto_shutdown="any_significant", significant=True)
    supervisor.terminate_child(sup, "x")
    assert list(_kids(sup)) == ["a"]
    assert stop_sup(sup) == "shutdown"


class Trio(Supervisor):
    def init(self, log: str) -> Any:
        return SupFlags(auto_shutdown="all_significant"), [
            Worker.child_spec(log, "a", id="a"),
            Worker.child_spec(log, "s1", id="s1", restart="transient", significant=True),
            Worker.child_spec(log, "s2", id="s2", restart="temporary", significant=True),
        ]


def test_all_significant_shuts_down_only_when_the_last_significant_child_ended(tmp_path):
    log = str(tmp_path / "log")
    sup = Trio.start_link(log)
    ref = otp.monitor(sup)
    gen_server.cast(_kids(sup)["s1"], ("exit", "normal"))
    wait_until(lambda: _kids(sup)["s1"] is None, 10, "s1 to be recorded as stopped")
    assert otp.is_process_alive(sup)
    gen_server.cast(_kids(sup)["s2"], ("exit", ("shutdown", "done")))
    assert wait_down(ref) == "shutdown"
    assert wait_lines(log, 6)[3:] == [
        "stop s1 normal",
        "stop s2 ('shutdown', 'done')",
        "stop a shutdown",
    ]


class Parent(Supervisor):
    def init(self, log: str) -> Any:
        return SupFlags(auto_shutdown="any_significant"), [
            Worker.child_spec(log, "p", id="p"),
            # Two's own init arguments go positionally: the keywords
            # restart/significant/id belong to the child spec.
            Two.child_spec(
                log,
                "transient",
                "one_for_one",
                "any_significant",
                True,
                id="two",
                restart="transient",
                significant=True,
            ),
        ]


def test_auto_shutdown_escalates_through_a_significant_child_supervisor(tmp_path):
    log = str(tmp_path / "log")
    top = Parent.start_link(log)
    ref = otp.monitor(top)
    two = _kids(top)["two"]
    spec = supervisor.get_childspec(top, "two")
    assert (spec.significant, spec.restart) == (True, "transient")
    gen_server.cast(_kids(two)["x"], ("exit", "normal"))
    assert wait_down(ref) == "shutdown"
    assert wait_lines(log, 6)[3:] == ["stop x normal", "stop a shutdown", "stop p shutdown"]
