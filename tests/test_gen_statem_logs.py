"""What a GenStatem logs: one crash report when it ends abnormally, none otherwise.

A machine logs (through loguru) from its *own* process, whose stderr a
`logger.add` in the test process would never see. So each test runs a small
script in a subprocess, with a node of its own, and reads that subprocess's
stderr. Each script waits for its machine's end (a monitor), so the report
is written before the script exits.
"""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

from conftest import run_program

PRELUDE = """
import otp
from behaviours import GenStatem, gen_statem
from behaviours.gen_statem import KeepStateAndData, Stop


class Machine(GenStatem):
    def init(self):
        return "idle", {"secret": "s3cr3t"}

    def idle(self, event_type, content, data):
        match content:
            case "crash":
                return 1 / 0
            case ("return", value):
                return value
        return KeepStateAndData()

    def format_status(self, status):
        return {**status, "data": {**status["data"], "secret": "***"}}


def wait_down(pid):
    ref = otp.monitor(pid)
    return otp.receive(lambda m: type(m) is otp.DOWN and m.ref == ref, timeout=10).reason
"""


def _run(body: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return run_program(PRELUDE + textwrap.dedent(body), tmp_path, timeout=50)


def test_an_exception_in_a_state_callback_writes_one_crash_report(tmp_path: Path) -> None:
    proc = _run(
        """
        pid = Machine.start(name="crasher")
        gen_statem.cast(pid, "crash")
        print(wait_down(pid))
        """,
        tmp_path,
    )
    assert proc.stdout.strip() == "Crash(ZeroDivisionError: division by zero)"
    err = proc.stderr
    assert err.count("CRASH REPORT") == 1, err
    assert "crasher" in err
    assert "behaviour: GenStatem" in err
    assert "('cast', 'crash')" in err  # the event being handled
    assert "'idle'" in err  # the state
    assert "ZeroDivisionError" in err
    assert "s3cr3t" not in err and "'***'" in err  # format_status shaped the report


def test_a_bad_return_writes_a_crash_report_with_the_reason(tmp_path: Path) -> None:
    proc = _run(
        """
        pid = Machine.start()
        gen_statem.cast(pid, ("return", "junk"))
        print(wait_down(pid))
        """,
        tmp_path,
    )
    assert proc.stdout.strip() == "('bad_return_from_state_function', 'junk')"
    assert proc.stderr.count("CRASH REPORT") == 1, proc.stderr
    assert "bad_return_from_state_function" in proc.stderr


def test_clean_stops_write_no_crash_report(tmp_path: Path) -> None:
    proc = _run(
        """
        for reason in ("normal", "shutdown", ("shutdown", "done")):
            pid = Machine.start()
            gen_statem.cast(pid, ("return", Stop(reason)))
            print(wait_down(pid))
        pid = Machine.start()
        gen_statem.stop(pid, reason="shutdown")
        print("stopped")
        """,
        tmp_path,
    )
    assert proc.stdout.splitlines() == ["normal", "shutdown", "('shutdown', 'done')", "stopped"]
    assert "CRASH REPORT" not in proc.stderr, proc.stderr
