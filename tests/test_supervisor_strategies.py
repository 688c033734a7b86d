"""Restart strategies: exactly which children stop and start, and in what order."""

from __future__ import annotations

from typing import Any

import pytest
from test_supervisor_support import Worker, stop_sup, wait_lines

import otp
from behaviours import Supervisor, SupFlags, gen_server, supervisor


@pytest.fixture(autouse=True)
def _trap() -> None:
    otp.trap_exit(True)


class Abc(Supervisor):
    """Three logging workers a, b, c under the given strategy."""

    def init(self, log: str, strategy: str, intensity: int = 5) -> Any:
        children = [Worker.child_spec(log, cid, id=cid) for cid in ("a", "b", "c")]
        return SupFlags(strategy=strategy, intensity=intensity, period=30), children


def _pids(sup: otp.Pid) -> dict[str, otp.Pid]:
    return {cid: pid for cid, pid, _, _ in supervisor.which_children(sup)}


def _crash(sup: otp.Pid, cid: str, reason: Any = "boom") -> None:
    gen_server.cast(_pids(sup)[cid], ("exit", reason))


STARTED = ["start a", "start b", "start c"]


def test_one_for_one_restarts_only_the_child_that_died(tmp_path):
    log = str(tmp_path / "log")
    sup = Abc.start_link(log, "one_for_one")
    before = _pids(sup)
    _crash(sup, "b")
    assert wait_lines(log, 5)[3:] == ["stop b boom", "start b"]
    after = _pids(sup)
    assert after["a"] == before["a"] and after["c"] == before["c"]
    assert after["b"] != before["b"]
    assert gen_server.call(after["b"], "ping") == "pong"
    assert stop_sup(sup) == "shutdown"
    assert wait_lines(log, 8)[5:] == ["stop c shutdown", "stop b shutdown", "stop a shutdown"]


def test_one_for_all_stops_the_others_in_reverse_order_then_starts_all_in_order(tmp_path):
    log = str(tmp_path / "log")
    sup = Abc.start_link(log, "one_for_all")
    before = _pids(sup)
    _crash(sup, "b")
    assert wait_lines(log, 9)[3:] == [
        "stop b boom",
        "stop c shutdown",
        "stop a shutdown",
        *STARTED,
    ]
    after = _pids(sup)
    assert all(after[k] != before[k] for k in "abc")
    # A one_for_all round is one restart, however many children it restarts.
    assert otp.process_info(sup)["restarts"] == 1
    assert stop_sup(sup) == "shutdown"


def test_rest_for_one_restarts_the_dead_child_and_those_started_after_it(tmp_path):
    log = str(tmp_path / "log")
    sup = Abc.start_link(log, "rest_for_one")
    before = _pids(sup)
    _crash(sup, "b")
    assert wait_lines(log, 7)[3:] == ["stop b boom", "stop c shutdown", "start b", "start c"]
    after = _pids(sup)
    assert after["a"] == before["a"]
    assert after["b"] != before["b"] and after["c"] != before["c"]
    assert stop_sup(sup) == "shutdown"


def test_rest_for_one_on_the_last_child_restarts_only_it(tmp_path):
    log = str(tmp_path / "log")
    sup = Abc.start_link(log, "rest_for_one")
    _crash(sup, "c")
    assert wait_lines(log, 5)[3:] == ["stop c boom", "start c"]
    assert stop_sup(sup) == "shutdown"


def test_a_restarted_child_keeps_its_place_in_which_children(tmp_path):
    log = str(tmp_path / "log")
    sup = Abc.start_link(log, "one_for_one")
    _crash(sup, "a")
    wait_lines(log, 5)
    assert [k[0] for k in supervisor.which_children(sup)] == ["c", "b", "a"]
    counts = {c["id"]: c["restarts"] for c in otp.debug.get_status(sup)["children"]}
    assert counts == {"a": 1, "b": 0, "c": 0}
    assert otp.process_info(sup)["child_restarts"] == {_pids(sup)["a"]: 1}
    assert stop_sup(sup) == "shutdown"


class Pool(Supervisor):
    def init(self, log: str) -> Any:
        return SupFlags(strategy="simple_one_for_one", intensity=5), [
            Worker.child_spec(log, id="worker")
        ]


def test_simple_one_for_one_restarts_a_dynamic_child_with_its_own_arguments(tmp_path):
    log = str(tmp_path / "log")
    sup = Pool.start_link(log)
    assert supervisor.which_children(sup) == []
    x = supervisor.start_child(sup, ("x",))
    y = supervisor.start_child(sup, ["y"])
    assert gen_server.call(x, "whoami") == "x"
    gen_server.cast(x, ("exit", "boom"))
    assert wait_lines(log, 4) == ["start x", "start y", "stop x boom", "start x"]
    kids = supervisor.which_children(sup)
    assert len(kids) == 2 and all(k[0] is None and k[2] == "worker" for k in kids)
    new_x = next(k[1] for k in kids if k[1] != y)
    assert new_x != x and gen_server.call(new_x, "whoami") == "x"
    assert stop_sup(sup) == "shutdown"
    assert sorted(wait_lines(log, 6)[4:]) == ["stop x shutdown", "stop y shutdown"]
