"""Chaos under load: clients keep calling a supervised pool while its workers
are killed with SIGKILL at random, every 50 ms.

What is shown, with real processes and real `kill -9`:

- every call returns, within its timeout, either the right reply or one of
  the errors a call documents (`otp.CallExit`, `otp.NoProc`,
  `otp.CallTimeout`): no hang, no wrong reply, nothing unaccounted for;
- every kill is followed by exactly one restart, counted by the supervisor
  (`otp.process_info(sup)["restarts"]`, and per child in
  `otp.debug.get_status(sup)`) and reported once in the log;
- the restart intensity behaves as configured: a pool allowed 1000
  restarts in 5 s survives 20 kills a second; a pool allowed 3 gives up at
  the 4th kill, with reason "shutdown", and takes its workers with it.

The kills come from `otp.testing.Chaos`, the helper users get for their own
tests. The same scenario runs for 60 s, with its figures printed, in
`python -m benchmarks.soak`; the last test here runs that soak briefly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
import pytest
from loguru import logger

import otp
from behaviours import GenServer, Reply, Supervisor, SupFlags, gen_server, supervisor
from otp.testing import Chaos, wait_until

REPO = Path(__file__).resolve().parent.parent
WORKERS = [f"chaos_w{i}" for i in range(4)]
CALL_TIMEOUT = 5.0
# A call returns within its timeout; this much more is allowed for the
# caller's own scheduling on a loaded machine (measured around the call).
SCHEDULING_SLACK = 2.0
DOCUMENTED = ("CallExit", "NoProc", "CallTimeout")

# --------------------------------------------------------------- the pool


class PoolWorker(GenServer):
    """Answers `("echo", caller, n)` with `("echo", caller, n, worker_index)`."""

    def init(self, index: int) -> Any:
        return index

    def handle_call(self, request: Any, from_: Any, index: int) -> Any:
        _, caller, n = request
        return Reply(("echo", caller, n, index), index)


class Pool(Supervisor):
    def init(self, intensity: int, period: int) -> Any:
        return SupFlags(strategy="one_for_one", intensity=intensity, period=period), [
            PoolWorker.child_spec(i, id=name, name=name) for i, name in enumerate(WORKERS)
        ]


def client(parent: otp.Pid, seconds: float) -> None:
    """Call the workers round robin for `seconds`; report every outcome.

    Each request carries the caller and a sequence number, and a reply must
    echo both: a reply meant for another call would be counted "wrong".
    """
    me = otp.self_pid()
    outcomes: Counter[str] = Counter()
    unexpected: list[str] = []
    max_latency = 0.0
    n = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        n += 1
        t0 = time.monotonic()
        try:
            r = gen_server.call(WORKERS[n % len(WORKERS)], ("echo", me, n), CALL_TIMEOUT)
            kind = "reply" if r[:3] == ("echo", me, n) else "wrong"
        except otp.CallExit:
            kind = "CallExit"
        except otp.NoProc:
            kind = "NoProc"
        except otp.CallTimeout:
            kind = "CallTimeout"
        except Exception as e:
            kind = "unexpected"
            unexpected.append(repr(e))
        max_latency = max(max_latency, time.monotonic() - t0)
        outcomes[kind] += 1
    otp.send(parent, ("report", me, n, dict(outcomes), max_latency, unexpected[:5]))


# ----------------------------------------------------------------- helpers


def run_clients(count: int, seconds: float) -> list[tuple[Any, ...]]:
    """Start `count` clients; wait for each one's report (a hang fails here)."""
    me = otp.self_pid()
    # Monitored from birth: a client that ended early still has its DOWN
    # say how it ended (a monitor set later would only say "noproc").
    started = [otp.spawn_monitor(client, me, seconds) for _ in range(count)]
    reports = []
    for pid, ref in started:
        reports.append(
            otp.receive(
                lambda m, pid=pid: type(m) is tuple and m[:2] == ("report", pid),
                seconds + CALL_TIMEOUT + 30.0,
            )
        )
        down = otp.receive(lambda m, ref=ref: type(m) is otp.DOWN and m.ref == ref, 10.0)
        assert down.reason == "normal"
    return reports


def check_every_call_accounted_for(reports: list[tuple[Any, ...]]) -> Counter[str]:
    total: Counter[str] = Counter()
    for _, _pid, calls, outcomes, max_latency, unexpected in reports:
        assert sum(outcomes.values()) == calls, outcomes  # nothing silently lost
        assert not unexpected, unexpected
        assert set(outcomes) <= {"reply", *DOCUMENTED}, outcomes  # no "wrong" reply
        assert max_latency <= CALL_TIMEOUT + SCHEDULING_SLACK, max_latency
        total.update(outcomes)
    return total


def stop(sup: otp.Pid) -> Any:
    ref = otp.monitor(sup)
    otp.exit(sup, "shutdown")
    return otp.receive(lambda m: type(m) is otp.DOWN and m.ref == ref, 30.0).reason


def child_terminated_reports(records: list[str]) -> list[str]:
    return [r for r in records if "SUPERVISOR REPORT" in r and "context: child_terminated" in r]


@pytest.fixture(autouse=True)
def _trap() -> None:
    # The pools are linked to the test process: their end must arrive as a
    # message, not kill the test.
    otp.trap_exit(True)


@pytest.fixture
def log_records() -> Any:
    records: list[str] = []
    handler = logger.add(lambda m: records.append(m.record["message"]), level="ERROR")
    yield records
    logger.remove(handler)


# ------------------------------------------------------------------- tests


@pytest.mark.slow
def test_calls_get_a_reply_or_a_documented_error_while_workers_are_killed_every_50_ms(
    log_records: list[str],
) -> None:
    sup = Pool.start_link(1000, 5)  # 20 kills a second stay far below the intensity
    first = {cid: pid for cid, pid, _, _ in supervisor.which_children(sup)}

    with Chaos(sup, interval=0.05, seed=9) as chaos:
        reports = run_clients(4, 10.0)

    # Every call: the right reply or a documented error, within its timeout.
    outcomes = check_every_call_accounted_for(reports)
    assert outcomes["reply"] > 0
    assert chaos.kills >= 10, (chaos.kills, chaos.ticks, chaos.skipped)

    # Every kill was followed by exactly one restart, and nothing else was.
    wait_until(
        lambda: otp.process_info(sup)["restarts"] == chaos.kills,
        30,
        f"{chaos.kills} restarts",
    )
    status = otp.debug.get_status(sup)
    per_child = Counter(cid for cid, _pid in chaos.victims)
    assert {c["id"]: c["restarts"] for c in status["children"]} == {
        cid: per_child[cid] for cid in WORKERS
    }
    # The pool survived (the intensity allows it) and every worker answers.
    assert otp.is_process_alive(sup)
    now = {cid: pid for cid, pid, _, _ in supervisor.which_children(sup)}
    for cid in WORKERS:
        assert isinstance(now[cid], otp.Pid)
        assert (now[cid] != first[cid]) == (per_child[cid] > 0)
        assert gen_server.call(cid, ("echo", otp.self_pid(), 0), 30)[:3] == (
            "echo",
            otp.self_pid(),
            0,
        )
    for _cid, pid in chaos.victims:
        assert not otp.is_process_alive(pid)

    # Each death reported once, as a SUPERVISOR REPORT naming the reason.
    assert otp.node.flush_logs(10)
    reports_logged = child_terminated_reports(log_records)
    assert len(reports_logged) == chaos.kills
    assert all("reason: 'killed'" in r for r in reports_logged)

    assert stop(sup) == "shutdown"


def test_kills_beyond_the_restart_intensity_take_the_pool_down_as_configured(
    log_records: list[str],
) -> None:
    sup = Pool.start_link(3, 3600)  # 3 restarts allowed in the hour
    ref = otp.monitor(sup)
    workers = [pid for _, pid, _, _ in supervisor.which_children(sup)]

    with Chaos(sup, interval=0.05, seed=3) as chaos:
        reports = run_clients(2, 2.0)
        down = otp.receive(lambda m: type(m) is otp.DOWN and m.ref == ref, 30.0)

    assert down.reason == "shutdown"
    assert chaos.supervisor_reason == "shutdown"
    # Three deaths were restarted; the fourth ended the pool. (Counted from
    # the supervisor's reports: a kill landing while the pool was already
    # shutting down would be one more kill, not one more restart.)
    assert chaos.kills >= 4, chaos.victims
    assert otp.node.flush_logs(10)
    assert len(child_terminated_reports(log_records)) == 4
    gave_up = [r for r in log_records if "reached_max_restart_intensity" in r]
    assert len(gave_up) == 1
    # The pool stopped its remaining workers before it ended: none is left.
    everyone = set(workers) | {pid for _, pid in chaos.victims}
    assert not any(otp.is_process_alive(pid) for pid in everyone)
    wait_until(lambda: not any(psutil.pid_exists(pid.id) for pid in everyone), 10, "workers reaped")
    # The clients never hung: each call got a reply, or NoProc/CallExit once
    # the pool was gone.
    outcomes = check_every_call_accounted_for(reports)
    assert outcomes["NoProc"] > 0
    otp.receive(lambda m: type(m) is otp.EXIT and m.pid == sup, 10.0)


@pytest.mark.slow
def test_the_soak_runs_and_writes_its_figures(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.soak", "--seconds", "3", "--out", str(out)],
        cwd=REPO,
        env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(out.read_text())
    for key in ("calls", "replies", "errors", "kills", "restarts", "latency_ms", "violations"):
        assert key in doc, key
    assert doc["restarts"] == doc["kills"] > 0
    assert doc["calls"] == doc["replies"] + sum(doc["errors"].values())
    assert doc["violations"] == []
    assert set(doc["latency_ms"]) >= {"p50", "p99", "max"}
    for label in ("calls made", "errors", "kills", "restarts", "p50", "p99"):
        assert label in proc.stdout, label
