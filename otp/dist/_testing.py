"""Test helpers for distribution: a real `erl`, a private epmd.

Tests that need Erlang call `require_erl()`: it skips with a clear reason
when `erl` is missing, and fails instead when `OTP_REQUIRE_ERLANG=1` (CI
installs Erlang, so a skip there would hide a broken install).

Every test gets its own epmd on a free private port (`Epmd`), so parallel
runs never share a port mapper; it is killed when the test is done.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

__all__ = ["Epmd", "erl_args", "free_port", "new_cookie", "require_erl", "run_erl"]


def require_erl() -> str:
    """The path of `erl` (and of `epmd` next to it), or skip/fail the test."""
    import pytest

    erl = shutil.which("erl")
    if erl and shutil.which("epmd"):
        return erl
    reason = (
        "needs a real Erlang/OTP: `erl` and `epmd` are not on PATH (apt-get install erlang-nox)"
    )
    if os.environ.get("OTP_REQUIRE_ERLANG") == "1":
        pytest.fail(reason + "; OTP_REQUIRE_ERLANG=1 forbids skipping")
    pytest.skip(reason)
    raise AssertionError("unreachable")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # type: ignore[no-any-return]


def new_cookie() -> str:
    """A fresh random cookie: tests never keep one in the repository."""
    return secrets.token_hex(16).upper()


def erl_args(name: str, cookie: str) -> list[str]:
    """Arguments of a distributed erl on loopback only: long name, given cookie."""
    return [
        "-name", name, "-setcookie", cookie,
        "-kernel", "inet_dist_use_interface", "{127,0,0,1}",
    ]  # fmt: skip


def run_erl(
    script: str,
    timeout: float = 30.0,
    env: dict[str, str] | None = None,
    args: list[str] | None = None,
) -> str:
    """Run `erl -noshell [args] -eval script` (which must end in `halt()`); its stdout."""
    erl = require_erl()
    r = subprocess.run(
        [erl, "-noshell", *(args or []), "-eval", script],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    if r.returncode != 0:
        raise AssertionError(f"erl failed ({r.returncode}): {r.stdout}\n{r.stderr}")
    return r.stdout


class Epmd:
    """An epmd of this test's own, on a private port of 127.0.0.1."""

    def __init__(self) -> None:
        require_erl()
        self.port = free_port()
        self.env = dict(os.environ, ERL_EPMD_PORT=str(self.port))

    def start(self) -> Epmd:
        # -daemon forks and returns; the port then answers within moments.
        subprocess.run(
            ["epmd", "-port", str(self.port), "-address", "127.0.0.1", "-daemon"],
            check=True,
            timeout=10,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)  # polling a port under a deadline, not synchronising a test

    def stop(self) -> None:
        # `-kill` refuses while a node is registered; callers stop nodes first.
        # `-stop` of every name first would be the alternative; kill is enough.
        for _ in range(50):
            r = subprocess.run(
                ["epmd", "-port", str(self.port), "-kill"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            if "Killed" in r.stdout or r.returncode != 0:
                return
            time.sleep(0.1)

    @contextlib.contextmanager
    def running(self) -> Iterator[Epmd]:
        self.start()
        try:
            yield self
        finally:
            self.stop()
