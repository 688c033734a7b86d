"""What a supervisor logs: one SUPERVISOR REPORT per event, naming the child.

A supervisor logs (through loguru) from its own process. So each test runs a
small script in a subprocess, with a node of its own, and reads that
subprocess's stderr; the script waits for its supervisor's end (a monitor),
so every report is written before it exits.
"""

from __future__ import annotations

import re
import subprocess
import textwrap
from pathlib import Path

from conftest import run_program

PRELUDE = """
import otp
from behaviours import ChildSpec, GenServer, Stop, supervisor, gen_server


class W(GenServer):
    def init(self):
        return None

    def handle_cast(self, msg, state):
        return Stop(msg, state)


def stubborn():
    otp.trap_exit(True)
    while True:
        otp.receive()


def refuse():
    raise otp.StartError("not_today")


def kids(sup):
    return {k[0]: k[1] for k in supervisor.which_children(sup)}


def wait_down(ref):
    return otp.receive(lambda m: type(m) is otp.DOWN and m.ref == ref, timeout=20).reason


otp.trap_exit(True)
"""


def _run(body: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return run_program(PRELUDE + textwrap.dedent(body), tmp_path, timeout=50, show_stdout=False)


def _reports(stderr: str) -> list[str]:
    return stderr.split("SUPERVISOR REPORT")[1:]


def test_each_restart_event_is_reported_once_with_the_child_and_the_reason(tmp_path):
    proc = _run(
        """
        sup = supervisor.start_link(
            [
                ChildSpec("w", (W.start_link, (), {})),
                ChildSpec("s", (otp.spawn_link, (stubborn,), {}), shutdown=0.2),
            ],
            intensity=1,
            period=30,
        )
        ref = otp.monitor(sup)
        first = kids(sup)["w"]
        print("first", first, first.id)
        gen_server.cast(first, "boom")
        while kids(sup)["w"] in (first, None, "restarting"):
            pass
        second = kids(sup)["w"]
        print("second", second, second.id)
        gen_server.cast(second, ("error", 42))
        print("down", wait_down(ref))
        """,
        tmp_path,
    )
    out = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    assert out["down"] == "shutdown"
    reports = _reports(proc.stderr)
    contexts = [re.search(r"context: (\w+)", r).group(1) for r in reports]
    # Two crashes, the second one too many; then s ignores its shutdown and
    # is killed, which is a shutdown error for a permanent child.
    assert contexts == ["child_terminated", "child_terminated", "shutdown", "shutdown_error"]
    first_pid, first_os = out["first"].split()
    assert f"id='w' pid={first_pid} os_pid={first_os}" in reports[0]
    assert "reason: 'boom'" in reports[0]
    assert "reason: ('error', 42)" in reports[1]
    assert "reason: 'reached_max_restart_intensity'" in reports[2]
    assert "id='s'" in reports[3] and "reason: 'killed'" in reports[3]
    assert all("supervisor: Supervisor <0." in r for r in reports)


def test_a_start_failure_is_reported_once_and_clean_exits_are_not(tmp_path):
    proc = _run(
        """
        try:
            supervisor.start_link([ChildSpec("w", (W.start_link, (), {})), ChildSpec("r", refuse)])
        except otp.StartError as e:
            print("error", e.reason)
        sup = supervisor.start_link(
            [ChildSpec("t", (W.start_link, (), {}), restart="transient")], name="quiet"
        )
        ref = otp.monitor(kids(sup)["t"])
        gen_server.cast(kids(sup)["t"], "normal")
        wait_down(ref)
        sup_ref = otp.monitor(sup)
        otp.exit(sup, "shutdown")
        print("down", wait_down(sup_ref))
        """,
        tmp_path,
    )
    out = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    assert out["error"] == "('shutdown', ('failed_to_start_child', 'r', 'not_today'))"
    assert out["down"] == "shutdown"
    reports = _reports(proc.stderr)
    assert len(reports) == 1
    assert "context: start_error" in reports[0]
    assert "reason: 'not_today'" in reports[0] and "id='r'" in reports[0]
