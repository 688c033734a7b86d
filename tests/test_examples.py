"""Every example runs, as a user would run it, and ends cleanly (issue 7)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_example(name: str, timeout: float = 60) -> str:
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", name)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    assert proc.returncode == 0, f"{name} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_ping_pong_bounces_three_times_and_pong_ends_normal() -> None:
    out = run_example("ping_pong.py")
    assert out.count("Ping received pong") == 3
    assert "pong ended: normal" in out


def test_factorial_server_answers_calls() -> None:
    out = run_example("factorial_server.py")
    assert "20! = 2432902008176640000" in out
    assert "served: 3" in out


def test_kv_service_answers_over_tcp() -> None:
    out = run_example("kv_service.py")
    assert "GET -> hello" in out
    assert "STATS -> {'hits': 2, 'misses': 0}" in out


@pytest.mark.slow
def test_demo_keeps_answering_while_workers_are_killed_and_stops_cleanly() -> None:
    out = run_example("demo.py", timeout=30)
    assert out.count("restarted") == 6  # rest_for_one: 1 + 2 + 3 restarts
    assert "processes left: []" in out
    assert "(data survived)" in out
