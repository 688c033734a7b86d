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

Chaos: `Chaos(sup, interval=0.05)` runs a process that SIGKILLs a random
running worker of the supervisor `sup` every `interval` seconds, as
`kill -9` from a shell would, until stopped; it then reports how many it
killed. Use it to check that your service keeps its promises while its
workers die:

```python
from otp.testing import Chaos

def test_answers_while_workers_die(otp_node):
    sup = MyApp.start_link()
    with Chaos(sup, interval=0.05, seed=1) as chaos:
        for _ in range(1000):
            try:
                gen_server.call("worker1", "ping", timeout=2.0)
            except (otp.CallExit, otp.NoProc, otp.CallTimeout):
                pass                       # the documented errors of a call
    assert chaos.kills > 0
    wait_until(lambda: otp.process_info(sup)["restarts"] == chaos.kills)
```
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

__all__ = ["Chaos", "node_guard", "otp_kill", "otp_node", "otp_wait_restart", "wait_until"]


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


# ------------------------------------------------------------------- chaos

_TICK = "$chaos_tick"
_STOP = "$chaos_stop"
_REPORT = "$chaos_report"


def _chaos_monkey(
    parent: Any, sup: Any, interval: float, seed: Any, ids: Any, kill_supervisors: bool
) -> None:
    """The chaos process: every `interval`, SIGKILL one running child of `sup`.

    A kill counts only if the victim was running when the signal went and its
    DOWN then arrived: a Pid that which_children still lists but that is
    already dead (its EXIT not yet handled by the supervisor) is skipped, so
    `kills` is exactly the number of deaths the supervisor has to handle.
    Ticks keep a fixed cadence (start + n * interval), not "interval after
    the last kill", so a slow supervisor does not slow the chaos down.
    """
    import otp
    from behaviours import supervisor

    rng = random.Random(seed)
    me = otp.self_pid()
    sup_ref = otp.monitor(sup)
    kills: list[tuple[Any, Any]] = []
    ticks = skipped = 0
    sup_reason: Any = None
    start = time.monotonic()
    otp.send_after(interval, me, _TICK)

    def is_down(ref: Any) -> Callable[[Any], bool]:
        return lambda m: type(m) is otp.DOWN and m.ref == ref

    while True:
        m = otp.receive()
        if m == _STOP:
            break
        if type(m) is otp.DOWN and m.ref == sup_ref:
            sup_reason = m.reason
            break
        if m != _TICK:
            continue
        ticks += 1
        try:
            children = supervisor.which_children(sup)
        except (otp.NoProc, otp.CallExit):
            children = []  # the supervisor is ending: its DOWN comes next
        candidates = [
            (cid, pid)
            for cid, pid, ctype, _mods in children
            if type(pid) is otp.Pid
            and (kill_supervisors or ctype == "worker")
            and (ids is None or cid in ids)
        ]
        killed = False
        if candidates:
            cid, pid = rng.choice(candidates)
            ref = otp.monitor(pid)  # first: the DOWN cannot be missed
            if otp.is_process_alive(pid):
                try:
                    os.kill(pid.id, signal.SIGKILL)
                    killed = True
                except ProcessLookupError:
                    pass
            if killed:
                otp.receive(is_down(ref), timeout=30.0)
                kills.append((cid, pid))
            else:
                otp.demonitor(ref, flush=True)
        if not killed:
            skipped += 1
        # The next tick on the fixed cadence (at once if we are late).
        due = start + (ticks + 1) * interval - time.monotonic()
        otp.send_after(max(due, 0.0), me, _TICK)
    otp.send(
        parent,
        (_REPORT, me, {"kills": kills, "ticks": ticks, "skipped": skipped, "sup": sup_reason}),
    )


class Chaos:
    """SIGKILL a random running child of a supervisor every `interval` seconds.

    ```python
    with Chaos(sup, interval=0.05, seed=7) as chaos:
        ...                      # load the service meanwhile
    chaos.kills                  # how many children were killed
    ```

    The killing runs in a process of its own (started by `start()` or by
    entering the `with` block), so the caller is free to drive load. Only
    workers are killed unless `kill_supervisors=True`; `ids` limits the
    victims to those child ids. The chaos ends at `stop()` (or the end of the
    `with` block), or by itself when the supervisor ends (then
    `supervisor_reason` holds the supervisor's exit reason: with too many
    kills for its restart intensity, `"shutdown"`).

    After `stop()`:

    - `kills`: the number of children that were running and were killed;
    - `victims`: `(child_id, pid)` of each, in order;
    - `ticks`, `skipped`: the chances taken, and those with no running
      child to kill (e.g. all restarting);
    - `supervisor_reason`: None while the supervisor lived on.
    """

    def __init__(
        self,
        sup: Any,
        interval: float = 0.05,
        *,
        seed: Any = None,
        ids: Any = None,
        kill_supervisors: bool = False,
    ) -> None:
        self.sup = sup
        self.interval = interval
        self.seed = seed
        self.ids = None if ids is None else list(ids)
        self.kill_supervisors = kill_supervisors
        self.pid: Any = None
        self.kills = 0
        self.victims: list[tuple[Any, Any]] = []
        self.ticks = 0
        self.skipped = 0
        self.supervisor_reason: Any = None

    def start(self) -> Chaos:
        import otp

        if self.pid is not None:
            raise RuntimeError("this Chaos is already running")
        self.pid = otp.spawn(
            _chaos_monkey,
            otp.self_pid(),
            self.sup,
            self.interval,
            self.seed,
            self.ids,
            self.kill_supervisors,
        )
        return self

    def stop(self, timeout: float = 30.0) -> Chaos:
        """End the chaos and collect its figures (waits for the last kill's DOWN)."""
        import otp

        pid, self.pid = self.pid, None
        if pid is None:
            return self
        ref = otp.monitor(pid)
        otp.send(pid, _STOP)
        try:
            _, _, report = otp.receive(
                lambda m: type(m) is tuple and len(m) == 3 and m[0] == _REPORT and m[1] == pid,
                timeout,
            )
        except otp.ReceiveTimeout:
            otp.exit(pid, "kill")
            otp.receive(lambda m: type(m) is otp.DOWN and m.ref == ref, 10.0)
            raise AssertionError(f"the chaos process did not report within {timeout} s") from None
        otp.receive(lambda m: type(m) is otp.DOWN and m.ref == ref, timeout)
        self.victims = report["kills"]
        self.kills = len(self.victims)
        self.ticks = report["ticks"]
        self.skipped = report["skipped"]
        self.supervisor_reason = report["sup"]
        return self

    def __enter__(self) -> Chaos:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


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
