"""Test harness: a fresh node per test, and no OS process may outlive its test.

Every test runs with a node of its own (started lazily by the first otp call,
stopped here). Before stopping it, the fixture lists the OS processes the
test left behind: any `otp: ` process still alive below this pytest process
(other than the node's root) fails the test, after being cleaned up. After
the stop, no zombie and no runtime directory may remain.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
from hypothesis import settings

from otp import _runtime
from otp.testing import _otp_descendants, node_guard
from otp.testing import wait_until as wait_until  # re-exported: tests import it from here

# The distribution tests' fixtures (epmd, cookie, local, peer).
pytest_plugins = ["dist_fixtures"]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

sys.path.insert(0, os.path.dirname(__file__))

# CI runs (CI=true) draw the same examples every time: a red CI must be
# reproducible. Locally, hypothesis explores new examples on each run.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


def otp_descendants() -> list[psutil.Process]:
    return _otp_descendants()


@pytest.fixture(autouse=True)
def otp_node() -> Iterator[None]:
    """Every test of this suite gets the plugin's guard (see otp.testing)."""
    assert _runtime._proc is None, "a previous test left its node running"
    yield from node_guard()


def run_program(
    source: str, tmp_path: Any, timeout: float = 50, show_stdout: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run `source` as a real program (its own main program and node), from
    the repository root; assert it exits 0 and return what it printed.

    For what only a whole program shows: its stderr (crash and supervisor
    reports), its exit, its node's end.
    """
    script = tmp_path / "script.py"
    script.write_text(source)
    env = dict(os.environ, PYTHONPATH=REPO, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, (proc.stdout if show_stdout else "") + proc.stderr
    return proc


class Lines:
    """A subprocess's stdout, read line by line under a deadline (for the
    whole-program tests that follow what a real program prints)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.stream = proc.stdout
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.stream, selectors.EVENT_READ)
        self.buf = b""

    def next(self, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sel.select(left):
                raise AssertionError(f"no line from the program within {timeout} s")
            chunk = os.read(self.stream.fileno(), 65536)
            if not chunk:
                raise AssertionError(f"the program ended early; got {self.buf!r}")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode()

    def words(self, name: str) -> list[str]:
        """The next line's words after `name`, which must be its first."""
        words = self.next().split()
        assert words[0] == name, words
        return words[1:]

    def close(self) -> None:
        self.sel.close()
