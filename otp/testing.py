"""Testing code that uses otp, with pytest: a fresh node per test, no leaks.

The plugin is installed with the package (a `pytest11` entry point) and does
nothing until you enable it, in `setup.cfg`/`pytest.ini`:

```ini
[tool:pytest]
otp_isolation = true
```

or on the command line with `--otp-isolation`. Enabled, every test gets a
fresh node (started by its first otp call), and fails if it leaves an OS
process, a zombie or a runtime-directory entry behind: stop what you start.

Fixtures, available whether or not isolation is enabled:

- `otp_node`: a fresh node for one test (the same guard, explicitly).
- `otp_kill`: `otp_kill(pid)` SIGKILLs a process and waits until it is gone.
- `otp_wait_restart`: `otp_wait_restart(sup, child_id, old_pid)` waits until
  the supervisor runs a new process for the child, and returns its Pid.

And a helper for conditions no message announces: `wait_until(cond,
timeout=5.0)`.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

__all__ = ["node_guard", "otp_kill", "otp_node", "otp_wait_restart", "wait_until"]


def wait_until(cond: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """Poll `cond` under a deadline; returns its first true value."""
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


def _otp_descendants() -> list[Any]:
    import psutil

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


def node_guard() -> Iterator[None]:
    """Run one test with a fresh node; fail it if it leaks (a generator for fixtures)."""
    import psutil

    from . import _runtime, node

    if _runtime._proc is not None:
        node.stop(timeout=2.0)
    yield
    p = _runtime._proc
    if p is None:
        left = _otp_descendants()
        assert not left, f"processes outlived their node: {left}"
        return
    root = p.info.get("root_os_pid")
    leaked = []
    for c in _otp_descendants():
        if c.pid != root:
            try:
                leaked.append(f"{c.pid} {' '.join(c.cmdline()).strip()}")
            except psutil.NoSuchProcess:
                pass
    rundir = p.rundir
    node.stop(timeout=2.0)
    zombies = [c.pid for c in psutil.Process().children() if c.status() == psutil.STATUS_ZOMBIE]
    assert not leaked, f"the test left OS processes behind: {leaked}"
    assert not os.path.exists(rundir), f"runtime directory left behind: {rundir}"
    assert not zombies, f"zombie children left behind: {zombies}"
    left = _otp_descendants()
    assert not left, f"processes outlived the node: {left}"


@pytest.fixture
def otp_node() -> Iterator[None]:
    """A fresh node for this test; the test fails if it leaves a process behind."""
    yield from node_guard()


@pytest.fixture
def otp_kill() -> Callable[[Any], None]:
    """`otp_kill(pid)`: SIGKILL the process (a real kill -9) and wait for its end."""
    import otp

    def kill(pid: Any) -> None:
        ref = otp.monitor(pid)
        try:
            os.kill(pid.id, signal.SIGKILL)
        except ProcessLookupError:
            pass
        otp.receive(lambda m: isinstance(m, otp.DOWN) and m.ref == ref, timeout=10)

    return kill


@pytest.fixture
def otp_wait_restart() -> Callable[..., Any]:
    """`otp_wait_restart(sup, child_id, old_pid, timeout=10)`: the child's new Pid."""
    import otp
    from behaviours import supervisor

    def wait(sup: Any, child_id: Any, old_pid: Any, timeout: float = 10.0) -> Any:
        def new_pid() -> Any:
            for cid, pid, _type, _mods in supervisor.which_children(sup):
                if cid == child_id and isinstance(pid, otp.Pid) and pid != old_pid:
                    return pid
            return None

        return wait_until(new_pid, timeout, f"a restart of {child_id!r}")

    return wait


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "otp_isolation",
        "a fresh otp node per test, failing tests that leak",
        type="bool",
        default=False,
    )
    parser.addoption(
        "--otp-isolation",
        action="store_true",
        help="a fresh otp node per test, failing tests that leak",
    )


@pytest.fixture(autouse=True)
def _otp_isolation(request: pytest.FixtureRequest) -> Iterator[None]:
    config = request.config
    if config.getoption("--otp-isolation", False) or config.getini("otp_isolation"):
        yield from node_guard()
    else:
        yield
