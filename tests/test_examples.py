"""Every example runs, as a user would run it, and ends cleanly (issue 7)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_example(name: str, timeout: float = 60, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", name)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
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


def test_cluster_places_a_worker_on_another_node_restarts_it_there_and_erl_calls_it() -> None:
    # A private port mapper port: the example's fixed node names must not
    # meet another run's (or a real epmd's) on this machine.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = run_example("cluster.py", timeout=90, env=dict(os.environ, ERL_EPMD_PORT=str(port)))
    assert "add 2 by Pid -> 2" in out
    assert "add 3 by (name, node) -> 5" in out
    assert "the supervisor started" in out and "on workers@127.0.0.1" in out
    assert "the new counter starts from 0: add 1 -> 1" in out
    if shutil.which("erl") or os.environ.get("OTP_REQUIRE_ERLANG") == "1":
        assert "erl: add 5 -> 6, ping -> pong" in out
