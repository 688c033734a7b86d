"""The supervisor API: every call, and every error OTP gives for it."""

from __future__ import annotations

from typing import Any

import pytest
from test_supervisor_support import (
    Gate,
    Refuser,
    Worker,
    gated_start,
    lines,
    stop_sup,
    wait_down,
)

import otp
from behaviours import ChildSpec, Supervisor, SupFlags, gen_server, supervisor
from otp.testing import wait_until


@pytest.fixture(autouse=True)
def _trap() -> None:
    otp.trap_exit(True)


def _kids(sup: otp.Pid) -> list[tuple[Any, Any]]:
    return [(cid, pid) for cid, pid, _, _ in supervisor.which_children(sup)]


def _refused(fn: Any, *args: Any) -> Any:
    with pytest.raises(otp.SupervisorError) as e:
        fn(*args)
    return e.value.reason


def test_which_children_and_count_children_describe_every_child(tmp_path):
    log = str(tmp_path / "log")

    class_spec = Worker.child_spec(log, "w", id="w")
    sup_spec = Nested.child_spec(log, id="inner")
    sup = supervisor.start_link([class_spec, sup_spec, ChildSpec("idle", lambda: None)])
    kids = supervisor.which_children(sup)
    assert [(k[0], k[2]) for k in kids] == [
        ("idle", "worker"),
        ("inner", "supervisor"),
        ("w", "worker"),
    ]
    assert kids[0][1] is None and kids[1][3] == [Nested] and kids[2][3] == [Worker]
    assert supervisor.count_children(sup) == {
        "specs": 3,
        "active": 2,
        "supervisors": 1,
        "workers": 2,
    }
    assert stop_sup(sup) == "shutdown"


class Nested(Supervisor):
    def init(self, log: str) -> Any:
        return SupFlags(), [Worker.child_spec(log, "n", id="n")]


def test_start_child_adds_the_most_recently_started_child(tmp_path):
    log = str(tmp_path / "log")
    sup = supervisor.start_link([Worker.child_spec(log, "a", id="a")])
    b = supervisor.start_child(sup, Worker.child_spec(log, "b", id="b"))
    assert gen_server.call(b, "whoami") == "b"
    assert _kids(sup) == [("b", b), ("a", _kids(sup)[1][1])]
    # A dict spec (OTP's map form) works too.
    c = supervisor.start_child(sup, {"id": "c", "start": (Worker.start_link, (log, "c"), {})})
    assert _kids(sup)[0] == ("c", c)
    assert stop_sup(sup) == "shutdown"
    assert lines(log)[3:] == ["stop c shutdown", "stop b shutdown", "stop a shutdown"]


def test_start_child_errors(tmp_path):
    log = str(tmp_path / "log")
    sup = supervisor.start_link([Worker.child_spec(log, "a", id="a")])
    a = _kids(sup)[0][1]
    assert _refused(supervisor.start_child, sup, Worker.child_spec(log, "a2", id="a")) == (
        "already_started",
        a,
    )
    supervisor.terminate_child(sup, "a")
    assert (
        _refused(supervisor.start_child, sup, Worker.child_spec(log, "a2", id="a"))
        == "already_present"
    )
    assert _refused(supervisor.start_child, sup, {"id": "x"}) == "missing_start"
    spec = ChildSpec("x", (Worker.start_link, (log, "x"), {}), restart="often")
    assert _refused(supervisor.start_child, sup, spec) == ("invalid_restart_type", "often")
    bad = Refuser.child_spec(log, "r", id="r")
    reason, failed_spec = _refused(supervisor.start_child, sup, bad)
    assert reason == "no_way" and failed_spec.id == "r"
    assert [k[0] for k in _kids(sup)] == ["a"]  # nothing was added
    assert stop_sup(sup) == "shutdown"


def test_terminate_child_keeps_the_spec_and_restart_child_starts_it_again(tmp_path):
    log = str(tmp_path / "log")
    sup = supervisor.start_link([Worker.child_spec(log, "a", id="a")])
    supervisor.terminate_child(sup, "a")
    assert _kids(sup) == [("a", None)]
    supervisor.terminate_child(sup, "a")  # already stopped: still fine
    a = supervisor.restart_child(sup, "a")
    assert gen_server.call(a, "ping") == "pong"
    assert _refused(supervisor.restart_child, sup, "a") == "running"
    assert lines(log) == ["start a", "stop a shutdown", "start a"]
    assert stop_sup(sup) == "shutdown"


def test_restart_child_reports_a_failed_start(tmp_path):
    log = str(tmp_path / "log")
    gate = Gate.start_link(otp.self_pid(), ["ok", "fail"])
    sup = supervisor.start_link([ChildSpec("g", (gated_start, (gate, log, "g"), {}))])
    supervisor.terminate_child(sup, "g")
    assert _refused(supervisor.restart_child, sup, "g") == "gate_said_no"
    assert _kids(sup) == [("g", None)]
    assert stop_sup(sup) == "shutdown"
    gen_server.stop(gate)


def test_an_ignored_child_is_kept_without_a_pid_unless_temporary(tmp_path):
    sup = supervisor.start_link([])
    assert supervisor.start_child(sup, ChildSpec("i", lambda: None)) is None
    assert supervisor.start_child(sup, ChildSpec("t", lambda: None, "temporary")) is None
    assert _kids(sup) == [("i", None)]
    assert supervisor.restart_child(sup, "i") is None
    supervisor.delete_child(sup, "i")
    assert _kids(sup) == []
    assert stop_sup(sup) == "shutdown"


def test_delete_child_forgets_only_a_stopped_child(tmp_path):
    log = str(tmp_path / "log")
    sup = supervisor.start_link([Worker.child_spec(log, "a", id="a")])
    assert _refused(supervisor.delete_child, sup, "a") == "running"
    supervisor.terminate_child(sup, "a")
    supervisor.delete_child(sup, "a")
    assert _kids(sup) == []
    assert _refused(supervisor.delete_child, sup, "a") == "not_found"
    assert stop_sup(sup) == "shutdown"


def test_unknown_ids_are_not_found(tmp_path):
    sup = supervisor.start_link([])
    for fn in (
        supervisor.terminate_child,
        supervisor.restart_child,
        supervisor.delete_child,
        supervisor.get_childspec,
    ):
        assert _refused(fn, sup, "ghost") == "not_found"
    # A Pid is not an id for a supervisor other than simple_one_for_one.
    assert _refused(supervisor.terminate_child, sup, otp.self_pid()) == "not_found"
    assert stop_sup(sup) == "shutdown"


def test_terminate_child_deletes_a_temporary_childs_spec(tmp_path):
    log = str(tmp_path / "log")
    sup = supervisor.start_link([Worker.child_spec(log, "t", id="t", restart="temporary")])
    supervisor.terminate_child(sup, "t")
    assert _kids(sup) == []
    assert stop_sup(sup) == "shutdown"


def test_get_childspec_returns_every_field(tmp_path):
    log = str(tmp_path / "log")
    sup = supervisor.start_link(
        [Worker.child_spec(log, "a", id="a"), Nested.child_spec(log, id="n", restart="transient")]
    )
    a = supervisor.get_childspec(sup, "a")
    assert a == ChildSpec(
        "a", (Worker.start_link, (log, "a"), {}), "permanent", 5.0, "worker", False, [Worker]
    )
    n = supervisor.get_childspec(sup, "n")
    assert (n.type, n.shutdown, n.restart, n.modules) == (
        "supervisor",
        "infinity",
        "transient",
        [Nested],
    )
    assert stop_sup(sup) == "shutdown"


class Pool(Supervisor):
    def init(self, log: str) -> Any:
        return SupFlags(strategy="simple_one_for_one"), [
            Worker.child_spec(log, id="worker", restart="transient")
        ]


def test_simple_one_for_one_api(tmp_path):
    log = str(tmp_path / "log")
    sup = Pool.start_link(log)
    x = supervisor.start_child(sup, ("x",))
    y = supervisor.start_child(sup, ("y",))
    assert [k[1] for k in supervisor.which_children(sup)] == [y, x]
    assert supervisor.count_children(sup) == {
        "specs": 1,
        "active": 2,
        "supervisors": 0,
        "workers": 2,
    }
    assert supervisor.get_childspec(sup, x).id == "worker"
    assert _refused(supervisor.terminate_child, sup, "worker") == "simple_one_for_one"
    assert _refused(supervisor.restart_child, sup, "worker") == "simple_one_for_one"
    assert _refused(supervisor.delete_child, sup, "worker") == "simple_one_for_one"
    # A live process that is not a child is left alone.
    assert _refused(supervisor.terminate_child, sup, otp.self_pid()) == "not_found"
    ref = otp.monitor(x)
    supervisor.terminate_child(sup, x)
    assert wait_down(ref) == "shutdown"
    supervisor.terminate_child(sup, x)  # a dead Pid: fine
    assert [k[1] for k in supervisor.which_children(sup)] == [y]
    # A transient child ending normally is gone (dynamic children keep no spec).
    gen_server.cast(y, ("exit", "normal"))
    ref = otp.monitor(y)
    wait_down(ref)
    wait_until(lambda: supervisor.which_children(sup) == [], 10, "y to be forgotten")
    assert stop_sup(sup) == "shutdown"


def test_simple_one_for_one_start_failure_is_the_bare_reason(tmp_path):
    class_log = str(tmp_path / "log")
    sup = supervisor.start_link(
        [Refuser.child_spec(class_log, id="r")], strategy="simple_one_for_one"
    )
    assert _refused(supervisor.start_child, sup, ("r1",)) == "no_way"
    assert supervisor.which_children(sup) == []
    assert stop_sup(sup) == "shutdown"


def test_function_form_takes_flags_and_a_name(tmp_path):
    log = str(tmp_path / "log")
    sup = supervisor.start_link(
        [Worker.child_spec(log, c, id=c) for c in ("a", "b")],
        strategy="one_for_all",
        intensity=2,
        period=10,
        name="fn_sup",
    )
    assert otp.whereis("fn_sup") == sup
    status = otp.debug.get_status("fn_sup")
    assert (status["strategy"], status["intensity"], status["period"]) == ("one_for_all", 2, 10)
    assert "fn_sup Supervisor" in otp.process_info(sup)["title"]
    assert [k[0] for k in supervisor.which_children("fn_sup")] == ["b", "a"]
    assert stop_sup(sup) == "shutdown"


def test_start_link_of_a_module_with_arguments(tmp_path):
    log = str(tmp_path / "log")
    sup = supervisor.start_link(Nested, log)
    assert [k[0] for k in supervisor.which_children(sup)] == ["n"]
    assert stop_sup(sup) == "shutdown"


def test_check_childspecs(tmp_path):
    good = [Worker.child_spec("/dev/null", "a", id="a")]
    assert supervisor.check_childspecs(good) is None
    bad = ChildSpec("b", (Worker.start_link, (), {}), type="boss")
    with pytest.raises(otp.SupervisorError) as e:
        supervisor.check_childspecs([*good, bad])
    assert e.value.reason == ("invalid_child_type", "boss")
    with pytest.raises(otp.SupervisorError) as e:
        supervisor.check_childspecs([*good, *good])
    assert e.value.reason == ("duplicate_child_name", "a")
    with pytest.raises(otp.SupervisorError) as e:
        supervisor.check_childspecs("specs")
    assert e.value.reason == ("badarg", "specs")
    significant = ChildSpec("s", (Worker.start_link, (), {}), "transient", significant=True)
    assert supervisor.check_childspecs([significant]) is None
    with pytest.raises(otp.SupervisorError) as e:
        supervisor.check_childspecs([significant], "never")
    assert e.value.reason[0] == "bad_combination"


def test_calls_to_a_supervisor_that_is_gone_raise_noproc(tmp_path):
    sup = supervisor.start_link([])
    assert stop_sup(sup) == "shutdown"
    with pytest.raises(otp.NoProc):
        supervisor.which_children(sup)
    with pytest.raises(otp.NoProc):
        supervisor.count_children("no_such_sup")


def test_gen_server_stop_stops_the_supervisor_and_its_children(tmp_path):
    log = str(tmp_path / "log")
    sup = supervisor.start_link([Worker.child_spec(log, c, id=c) for c in ("a", "b")])
    gen_server.stop(sup, "shutdown")
    assert lines(log)[2:] == ["stop b shutdown", "stop a shutdown"]
