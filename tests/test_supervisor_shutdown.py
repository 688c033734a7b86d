"""Stopping children: the shutdown protocol, kill -9 from outside, parent exits,
and restarts that fail (the supervisor keeps serving calls between attempts)."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import psutil
import pytest
from test_supervisor_support import (
    Gate,
    Stubborn,
    Worker,
    ask,
    gated_start,
    lines,
    stop_sup,
    stubborn,
    wait_down,
    wait_lines,
)

import otp
from behaviours import ChildSpec, Supervisor, SupFlags, gen_server, supervisor
from otp.testing import wait_until


@pytest.fixture(autouse=True)
def _trap() -> None:
    otp.trap_exit(True)


def _kids(sup: otp.Pid) -> dict[Any, Any]:
    return {cid: pid for cid, pid, _, _ in supervisor.which_children(sup)}


def test_a_child_that_ignores_shutdown_is_killed_after_its_timeout_and_reaped(tmp_path):
    log = str(tmp_path / "log")
    spec = ChildSpec("s", (otp.spawn_link, (stubborn, log, "s"), {}), shutdown=0.5)
    sup = supervisor.start_link([spec])
    s = _kids(sup)["s"]
    ref = otp.monitor(s)
    t0 = time.monotonic()
    supervisor.terminate_child(sup, "s")
    assert time.monotonic() - t0 >= 0.45  # it waited the shutdown time...
    assert wait_down(ref) == "killed"  # ...then SIGKILLed the child
    assert lines(log) == ["start s", "ignored s shutdown"]
    assert _kids(sup) == {"s": None}
    # The supervisor, its OS parent, reaped it: no zombie is left.
    wait_until(lambda: not psutil.pid_exists(s.id), 10, "the child to be reaped")
    assert stop_sup(sup) == "shutdown"


def test_a_child_whose_terminate_hangs_is_killed_when_the_supervisor_stops(tmp_path):
    log = str(tmp_path / "log")
    specs = [
        Worker.child_spec(log, "a", id="a"),
        Stubborn.child_spec(log, "s", id="s", shutdown=0.3),
    ]
    sup = supervisor.start_link(specs)
    assert stop_sup(sup) == "shutdown"
    # s is stopped first (reverse order), killed in its terminate, then a.
    assert lines(log) == ["start a", "start s", "stalling s shutdown", "stop a shutdown"]


def test_brutal_kill_kills_at_once_without_running_terminate(tmp_path):
    log = str(tmp_path / "log")
    sup = supervisor.start_link([Worker.child_spec(log, "b", id="b", shutdown="brutal_kill")])
    b = _kids(sup)["b"]
    ref = otp.monitor(b)
    supervisor.terminate_child(sup, "b")
    assert wait_down(ref) == "killed"
    assert lines(log) == ["start b"]  # a trapping child's terminate never ran
    assert stop_sup(sup) == "shutdown"


def test_a_cooperative_child_stops_with_shutdown_within_its_time(tmp_path):
    log = str(tmp_path / "log")
    sup = supervisor.start_link([Worker.child_spec(log, "w", id="w", shutdown="infinity")])
    w = _kids(sup)["w"]
    ref = otp.monitor(w)
    supervisor.terminate_child(sup, "w")
    assert wait_down(ref) == "shutdown"
    assert lines(log) == ["start w", "stop w shutdown"]
    assert stop_sup(sup) == "shutdown"


def test_an_exit_from_the_parent_stops_the_children_in_reverse_order_with_its_reason(tmp_path):
    log = str(tmp_path / "log")
    sup = supervisor.start_link([Worker.child_spec(log, c, id=c) for c in ("a", "b", "c")])
    assert stop_sup(sup, ("shutdown", "bye")) == ("shutdown", "bye")
    assert lines(log)[3:] == ["stop c shutdown", "stop b shutdown", "stop a shutdown"]


def test_an_exit_from_a_stranger_is_ignored(tmp_path):
    log = str(tmp_path / "log")
    sup = supervisor.start_link([Worker.child_spec(log, "a", id="a")])
    _stranger, ref = otp.spawn_monitor(otp.exit, sup, "go_away")
    assert wait_down(ref) == "normal"
    assert supervisor.count_children(sup)["active"] == 1
    assert stop_sup(sup) == "shutdown"


def test_a_child_killed_with_sigkill_is_restarted_and_answers(tmp_path):
    log = str(tmp_path / "log")
    sup = supervisor.start_link([Worker.child_spec(log, "w", id="w")])
    old = _kids(sup)["w"]
    os.kill(old.id, signal.SIGKILL)  # a real kill -9, from outside
    new = wait_until(
        lambda: _kids(sup)["w"] not in (old, None, "restarting") and _kids(sup)["w"], 30
    )
    assert gen_server.call(new, "ping") == "pong"
    assert psutil.Process(new.id).ppid() == sup.id
    # The killed process was reaped by its parent, the supervisor.
    wait_until(lambda: not psutil.pid_exists(old.id), 10, "the killed child to be reaped")
    assert otp.process_info(sup)["restarts"] == 1
    assert stop_sup(sup) == "shutdown"


class Pool(Supervisor):
    def init(self, log: str, shutdown: Any) -> Any:
        return SupFlags(strategy="simple_one_for_one"), [
            ChildSpec("s", (otp.spawn_link, (stubborn, log), {}), shutdown=shutdown)
        ]


def test_simple_one_for_one_children_are_stopped_in_parallel(tmp_path):
    log = str(tmp_path / "log")
    sup = Pool.start_link(log, 1.0)
    kids = [supervisor.start_child(sup, (f"s{i}",)) for i in range(6)]
    refs = [otp.monitor(k) for k in kids]
    t0 = time.monotonic()
    assert stop_sup(sup) == "shutdown"
    elapsed = time.monotonic() - t0
    # One shared 1 s deadline, then every child is killed: one by one would
    # take 6 s. (A generous bound: the machine is shared.)
    assert 0.9 <= elapsed < 4.5
    assert [wait_down(r) for r in refs] == ["killed"] * 6
    assert sorted(x for x in lines(log) if x.startswith("ignored")) == sorted(
        f"ignored s{i} shutdown" for i in range(6)
    )


def test_simple_one_for_one_brutal_kill_kills_every_child(tmp_path):
    log = str(tmp_path / "log")
    sup = Pool.start_link(log, "brutal_kill")
    kids = [supervisor.start_child(sup, (f"s{i}",)) for i in range(3)]
    refs = [otp.monitor(k) for k in kids]
    # Have each child answer us once, so our monitors' connections are
    # acknowledged before the kills (see the report: a monitor whose HELLO
    # was never answered reports "noproc" instead of "killed").
    assert all(otp.process_info(k) for k in kids)
    assert stop_sup(sup) == "shutdown"
    assert [wait_down(r) for r in refs] == ["killed"] * 3


def test_a_failed_restart_shows_restarting_and_the_supervisor_keeps_serving(tmp_path):
    log = str(tmp_path / "log")
    me = otp.self_pid()
    gate = Gate.start_link(me, ["ok"])  # the first start passes
    sup = supervisor.start_link(
        [ChildSpec("g", (gated_start, (gate, log, "g"), {}))], intensity=10, period=30
    )
    gen_server.cast(_kids(sup)["g"], ("exit", "boom"))
    assert otp.receive(lambda m: m[0] == "attempt_held", 30) == ("attempt_held", 2)
    # While the restart is held, four calls queue up at the supervisor...
    calls = [
        ("which_children", ()),
        ("count_children", ()),
        ("restart_child", ("g",)),
        ("delete_child", ("g",)),
    ]
    askers = [otp.spawn_monitor(ask, sup, fn, args, me)[1] for fn, args in calls]
    wait_until(lambda: otp.process_info(sup)["message_queue_len"] >= 4, 30, "the calls to queue up")
    # ...then the attempt fails: the retry goes behind them, so they are served.
    gen_server.call(gate, ("verdict", "fail"))
    answers = dict(otp.receive(lambda m: m[0] == "answer", 30)[1:] for _ in calls)
    assert answers["which_children"] == ("ok", [("g", "restarting", "worker", [gated_start])])
    assert answers["count_children"][1]["active"] == 0
    assert answers["restart_child"] == ("error", "restarting")
    assert answers["delete_child"] == ("error", "restarting")
    assert [wait_down(r) for r in askers] == ["normal"] * 4
    # The retry is held in its turn; let it through.
    assert otp.receive(lambda m: m[0] == "attempt_held", 30) == ("attempt_held", 3)
    gen_server.call(gate, ("verdict", "ok"))
    new = wait_until(lambda: type(_kids(sup)["g"]) is otp.Pid and _kids(sup)["g"], 30)
    assert gen_server.call(new, "ping") == "pong"
    assert wait_lines(log, 4) == ["start g", "stop g boom", "gate-failed g", "start g"]
    assert stop_sup(sup) == "shutdown"
    gen_server.stop(gate)


def test_a_child_that_keeps_failing_to_restart_takes_the_supervisor_down(tmp_path):
    log = str(tmp_path / "log")
    gate = Gate.start_link(otp.self_pid(), ["ok", "fail", "fail", "fail"])
    sup = supervisor.start_link(
        [Worker.child_spec(log, "a", id="a"), ChildSpec("g", (gated_start, (gate, log, "g"), {}))],
        intensity=2,
        period=30,
    )
    ref = otp.monitor(sup)
    gen_server.cast(_kids(sup)["g"], ("exit", "boom"))
    # Every attempt counts: the crash's restart and two retries fill the
    # intensity (2); the third attempt exceeds it.
    assert wait_down(ref) == "shutdown"
    assert lines(log) == [
        "start a",
        "start g",
        "stop g boom",
        "gate-failed g",
        "gate-failed g",
        "stop a shutdown",
    ]
    gen_server.stop(gate)
