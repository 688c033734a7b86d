"""Supervisor start: child order, init results, flag and spec checks, failures."""

from __future__ import annotations

from typing import Any

import psutil
import pytest
from test_supervisor_support import Refuser, Worker, failing_start, lines, stop_sup

import otp
from behaviours import ChildSpec, Ignore, Supervisor, SupFlags, supervisor
from otp.testing import wait_until


@pytest.fixture(autouse=True)
def _trap() -> None:
    # The test process is the supervisors' parent (start_link): trapping
    # exits turns their exit signals into messages instead of killing it.
    otp.trap_exit(True)


class Scripted(Supervisor):
    """init returns exactly what the test passes (OTP suite style)."""

    def init(self, result: Any) -> Any:
        return result


class Crashing(Supervisor):
    def init(self) -> Any:
        raise ValueError("no init today")


class Reporter(Supervisor):
    """Tells the test whether exits are trapped while init runs."""

    def init(self, test_pid: otp.Pid) -> Any:
        otp.send(test_pid, ("trapping", otp.process_info(otp.self_pid())["trap_exit"]))
        return SupFlags(), []


def _workers(log: str, *ids: str) -> list[ChildSpec]:
    return [Worker.child_spec(log, cid, id=cid) for cid in ids]


def test_children_start_left_to_right_and_which_children_lists_newest_first(tmp_path):
    log = str(tmp_path / "log")
    sup = Scripted.start_link((SupFlags(), _workers(log, "a", "b", "c")))
    assert lines(log) == ["start a", "start b", "start c"]
    kids = supervisor.which_children(sup)
    assert [k[0] for k in kids] == ["c", "b", "a"]
    assert all(type(k[1]) is otp.Pid and k[2] == "worker" and k[3] == [Worker] for k in kids)
    # Each child is a forked OS child of the supervisor: pstree shows the tree.
    assert all(psutil.Process(k[1].id).ppid() == sup.id for k in kids)
    assert stop_sup(sup) == "shutdown"


def test_supervisor_process_says_what_it_is(tmp_path):
    sup = Scripted.start_link((SupFlags(), []), name="named_sup")
    info = otp.process_info(sup)
    assert info["behaviour"] == "Supervisor"
    assert info["module"] == "Scripted"
    assert info["restarts"] == 0
    assert "named_sup Supervisor" in info["title"]
    assert otp.debug.get_status(sup)["behaviour"] == "Supervisor"
    assert stop_sup(sup) == "shutdown"


def test_init_runs_with_exits_already_trapped():
    sup = Reporter.start_link(otp.self_pid())
    assert otp.receive(lambda m: m[0] == "trapping", 10) == ("trapping", True)
    assert stop_sup(sup) == "shutdown"


def test_init_returning_ignore_makes_start_link_return_none():
    assert Scripted.start_link(Ignore()) is None


def test_init_returning_a_bad_value_raises_bad_return():
    with pytest.raises(otp.StartError) as e:
        Scripted.start_link("oops")
    assert e.value.reason == ("bad_return", (Scripted, "init", "oops"))


def test_init_raising_raises_start_error_with_the_crash():
    with pytest.raises(otp.StartError) as e:
        Crashing.start_link()
    assert e.value.reason == otp.Crash("ValueError", "no init today")


@pytest.mark.parametrize(
    ("flags", "error"),
    [
        (SupFlags(strategy="one_for_some"), ("invalid_strategy", "one_for_some")),
        (SupFlags(intensity=-1), ("invalid_intensity", -1)),
        (SupFlags(intensity=True), ("invalid_intensity", True)),
        (SupFlags(period=0), ("invalid_period", 0)),
        (SupFlags(period=1.5), ("invalid_period", 1.5)),
        (SupFlags(auto_shutdown="sometimes"), ("invalid_auto_shutdown", "sometimes")),
        ("flags", ("invalid_type", "flags")),
    ],
)
def test_invalid_flags_raise_supervisor_data(flags, error):
    with pytest.raises(otp.StartError) as e:
        Scripted.start_link((flags, []))
    assert e.value.reason == ("supervisor_data", error)


def test_flags_may_be_a_dict_and_unknown_keys_are_ignored(tmp_path):
    sup = Scripted.start_link(({"strategy": "one_for_all", "silly_flag": True}, []))
    assert otp.debug.get_status(sup)["strategy"] == "one_for_all"
    assert stop_sup(sup) == "shutdown"


_START = (Worker.start_link, ("/dev/null", "x"), {})
_BAD_ARGS = (Worker.start_link, "args", {})


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        (ChildSpec("x", _START, restart="sometimes"), ("invalid_restart_type", "sometimes")),
        (ChildSpec("x", _START, shutdown=-1), ("invalid_shutdown", -1)),
        (ChildSpec("x", _START, shutdown="later"), ("invalid_shutdown", "later")),
        (ChildSpec("x", _START, type="manager"), ("invalid_child_type", "manager")),
        (ChildSpec("x", "not callable"), ("invalid_mfa", "not callable")),
        (
            ChildSpec("x", (Worker.start_link, "args", {})),
            ("invalid_mfa", (Worker.start_link, "args", {})),
        ),
        (ChildSpec("x", _START, modules="all"), ("invalid_modules", "all")),
        (
            ChildSpec("x", _START, restart="transient", significant="yes"),
            ("invalid_significant", "yes"),
        ),
        (
            ChildSpec("x", _START, restart="transient", significant=True),
            ("bad_combination", [("auto_shutdown", "never"), ("significant", True)]),
        ),
        ({"start": _START}, "missing_id"),
        ({"id": "x"}, "missing_start"),
        ("a child", ("invalid_child_spec", "a child")),
    ],
)
def test_invalid_child_specs_raise_start_spec(spec, error):
    with pytest.raises(otp.StartError) as e:
        Scripted.start_link((SupFlags(), [spec]))
    assert e.value.reason == ("start_spec", error)


def test_significant_permanent_child_is_a_bad_combination():
    spec = ChildSpec("x", _START, significant=True)
    with pytest.raises(otp.StartError) as e:
        Scripted.start_link((SupFlags(auto_shutdown="any_significant"), [spec]))
    assert e.value.reason == (
        "start_spec",
        ("bad_combination", [("restart", "permanent"), ("significant", True)]),
    )


def test_duplicate_ids_are_refused_before_anything_starts(tmp_path):
    log = str(tmp_path / "log")
    with pytest.raises(otp.StartError) as e:
        Scripted.start_link((SupFlags(), _workers(log, "a", "b", "a")))
    assert e.value.reason == ("start_spec", ("duplicate_child_name", "a"))
    assert lines(log) == []


def test_simple_one_for_one_needs_exactly_one_spec(tmp_path):
    specs = _workers(str(tmp_path / "log"), "a", "b")
    with pytest.raises(otp.StartError) as e:
        Scripted.start_link((SupFlags(strategy="simple_one_for_one"), specs))
    assert e.value.reason[0] == "bad_start_spec"
    assert [s.id for s in e.value.reason[1]] == ["a", "b"]


def test_a_child_failing_to_start_stops_the_started_ones_in_reverse_order(tmp_path):
    log = str(tmp_path / "log")
    specs = [
        *_workers(log, "a", "b"),
        Refuser.child_spec(log, "c", id="c"),
        *_workers(log, "d"),
    ]
    with pytest.raises(otp.StartError) as e:
        Scripted.start_link((SupFlags(), specs))
    assert e.value.reason == ("shutdown", ("failed_to_start_child", "c", "no_way"))
    # d never started; b stopped before a; all of it before start_link returned.
    assert lines(log) == [
        "start a",
        "start b",
        "refuse c",
        "stop b shutdown",
        "stop a shutdown",
    ]


def test_a_start_function_that_raises_fails_with_the_crash(tmp_path):
    log = str(tmp_path / "log")
    specs = [*_workers(log, "a"), ChildSpec("f", (failing_start, (log, "f"), {}))]
    with pytest.raises(otp.StartError) as e:
        Scripted.start_link((SupFlags(), specs))
    _, (what, cid, reason) = e.value.reason
    assert (what, cid) == ("failed_to_start_child", "f")
    assert reason == otp.Crash("RuntimeError", "f cannot start")
    assert lines(log) == ["start a", "fail f", "stop a shutdown"]


def test_a_start_function_returning_none_is_ignored_and_kept(tmp_path):
    log = str(tmp_path / "log")
    specs = [ChildSpec("n", lambda: None), ChildSpec("t", lambda: None, restart="temporary")]
    sup = Scripted.start_link((SupFlags(), [*specs, *_workers(log, "a")]))
    # An ignored temporary child is not kept; the others are, without a pid.
    assert [(k[0], k[1]) for k in supervisor.which_children(sup)][1:] == [("n", None)]
    assert stop_sup(sup) == "shutdown"


def test_the_name_is_taken_before_init_and_a_second_start_raises_already_started():
    sup = Scripted.start_link((SupFlags(), []), name="the_sup")
    assert otp.whereis("the_sup") == sup
    with pytest.raises(otp.AlreadyStarted) as e:
        Scripted.start_link((SupFlags(), []), name="the_sup")
    assert e.value.pid == sup
    assert stop_sup(sup) == "shutdown"
    wait_until(lambda: otp.whereis("the_sup") is None, 10, "the name to be freed")
