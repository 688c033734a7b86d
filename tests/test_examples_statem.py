"""The GenStatem examples run as scripts, from the repository root, and exit 0.

Each runs in a subprocess of its own (its own node), as a user would run it:
`python examples/code_lock.py`. The output is checked line by line: the
examples are written so that what they print does not depend on timing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _run(example: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONPATH", None)  # the example must find the package by itself
    proc = subprocess.run(
        [sys.executable, f"examples/{example}"],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_code_lock_example_opens_relocks_and_retries_the_postponed_button() -> None:
    out = _run("code_lock.py").stdout.splitlines()
    assert out == [
        "Door started; the code has 4 digits",
        "Door locked",
        "Typing 9 1 2 3 4 (a wrong digit, then the code)",
        "Door unlocked",
        "Typing 7 while it is open: postponed until it locks",
        "Door locked again by its state timeout",
        "State 'locked', buttons typed so far [7]",
        "Door stopped",
    ]


def test_connection_example_serves_postponed_requests_once_connected() -> None:
    out = _run("connection.py").stdout.splitlines()
    assert out == [
        "request 'alpha' -> 'ALPHA'",
        "request 'beta' -> 'BETA'",
        "request 'gamma' -> 'GAMMA'",
        "The server drops the connection",
        "request 'delta' -> 'DELTA'",
        "state now: ('connected', 2)",
        "State changes, as the connection announced them:",
        "  'disconnected' -> 'disconnected'",
        "  'disconnected' -> 'connecting'",
        "  'connecting' -> 'disconnected'",
        "  'disconnected' -> 'connecting'",
        "  'connecting' -> ('connected', 1)",
        "  ('connected', 1) -> 'disconnected'",
        "  'disconnected' -> 'connecting'",
        "  'connecting' -> ('connected', 2)",
        "Stopped",
    ]
