"""examples/alarm_manager.py: runs as a program, prints what happens, exits 0."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_alarm_manager_example_removes_the_crashed_handler_and_keeps_counting() -> None:
    # Run as a user would, from the repository root: the example finds the
    # package itself. Its own node starts and stops inside the subprocess.
    r = subprocess.run(
        [sys.executable, "examples/alarm_manager.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "handlers (newest first): ['AlarmCounter', 'AlarmLog']" in out
    assert "  [CRITICAL] disk /var is 97% full\n" in out
    assert "  [WARNING] fan 2 slow\n" in out
    assert "told: AlarmLog was removed, reason ('EXIT', Crash(ValueError:" in out
    assert "handlers now: ['AlarmCounter']" in out
    counts = "{'critical': 2, 'info': 1, 'malformed': 1, 'warning': 2} (total 6)"
    assert f"the counter lives on: {counts}" in out
    assert "calling the removed AlarmLog: HandlerError 'bad_module'" in out
    assert out.rstrip().endswith("manager stopped; alive: False")
    # The crash was reported (on stderr), and nothing else went wrong.
    assert "gen_event handler AlarmLog crashed" in r.stderr
    assert "CRASH REPORT" not in r.stderr
