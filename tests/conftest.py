"""Test harness: a fresh node per test, and no OS process may outlive its test.

Every test runs with a node of its own (started lazily by the first otp call,
stopped here). Before stopping it, the fixture lists the OS processes the
test left behind: any `otp: ` process still alive below this pytest process
(other than the node's root) fails the test, after being cleaned up. After
the stop, no zombie and no runtime directory may remain.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import psutil
import pytest

import otp
from otp import _runtime

sys.path.insert(0, os.path.dirname(__file__))


def otp_descendants() -> list[psutil.Process]:
    out = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                continue
            if " ".join(child.cmdline()).startswith("otp: "):
                out.append(child)
        except psutil.NoSuchProcess:
            continue
    return out


def wait_until(cond: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """Poll `cond` under a deadline (for facts no message announces)."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


@pytest.fixture(autouse=True)
def otp_node() -> Iterator[None]:
    assert _runtime._proc is None, "a previous test left its node running"
    yield
    p = _runtime._proc
    if p is None:
        left = [c for c in otp_descendants()]
        assert not left, f"processes outlived their node: {left}"
        return
    root = p.info.get("root_os_pid")
    leaked = []
    for c in otp_descendants():
        if c.pid != root:
            try:
                leaked.append(f"{c.pid} {' '.join(c.cmdline()).strip()}")
            except psutil.NoSuchProcess:
                pass
    rundir = p.rundir
    otp.node.stop(timeout=2.0)
    zombies = [c.pid for c in psutil.Process().children() if c.status() == psutil.STATUS_ZOMBIE]
    assert not leaked, f"the test left OS processes behind: {leaked}"
    assert not os.path.exists(rundir), f"runtime directory left behind: {rundir}"
    assert not zombies, f"zombie children left behind: {zombies}"
    left = otp_descendants()
    assert not left, f"processes outlived the node: {left}"
