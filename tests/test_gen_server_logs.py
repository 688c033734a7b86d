"""What a GenServer logs: crash reports, unexpected messages, traces.

A server logs through loguru in its own OS process; the node carries the
records to the main program, whose handlers write them. Each test here runs
a small script in a subprocess, with a node of its own, and reads that
subprocess's stderr: what a user of the library sees, with no handler added
to this test process's loguru. Each script stops what it started and waits
for it (a monitor, `gen_server.stop`), and the node drains every record at
exit, so all the children's output is there when the script ends.
"""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

from conftest import run_program

PRELUDE = """
import otp
from behaviours import GenServer, NoReply, Reply, Stop, gen_server


class Server(GenServer):
    def handle_call(self, request, from_, state):
        return Reply(("echo", request), state)

    def handle_cast(self, msg, state):
        match msg:
            case "crash":
                raise ValueError("boom in cast")
            case ("stop", reason):
                return Stop(reason, state)
        return NoReply(state)


class BadInit(GenServer):
    def init(self):
        raise KeyError("init went wrong")


def wait_down(pid):
    ref = otp.monitor(pid)
    return otp.receive(lambda m: type(m) is otp.DOWN and m.ref == ref, timeout=10).reason
"""


def _run(body: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return run_program(PRELUDE + textwrap.dedent(body), tmp_path, timeout=40)


def test_a_crash_in_a_callback_writes_one_crash_report(tmp_path: Path) -> None:
    proc = _run(
        """
        pid = Server.start(7, name="crasher")
        gen_server.cast(pid, "crash")
        print(wait_down(pid))
        """,
        tmp_path,
    )
    assert proc.stdout.strip() == "Crash(ValueError: boom in cast)"
    err = proc.stderr
    assert err.count("CRASH REPORT") == 1, err
    assert "crasher" in err
    assert "behaviour: GenServer" in err
    assert "last message: ('$gen_cast', 'crash')" in err
    assert "state: 7" in err
    assert "exit reason: ValueError: boom in cast" in err
    assert "in handle_cast" in err  # the traceback


def test_a_crash_in_init_writes_a_crash_report(tmp_path: Path) -> None:
    proc = _run(
        """
        try:
            BadInit.start()
        except otp.StartError as e:
            print(e.reason)
        """,
        tmp_path,
    )
    assert proc.stdout.strip() == "Crash(KeyError: 'init went wrong')"
    assert proc.stderr.count("CRASH REPORT") == 1, proc.stderr
    assert "init went wrong" in proc.stderr


def test_clean_stops_write_no_crash_report(tmp_path: Path) -> None:
    proc = _run(
        """
        for reason in ("normal", "shutdown", ("shutdown", "done")):
            pid = Server.start(0)
            gen_server.cast(pid, ("stop", reason))
            print(wait_down(pid))
        pid = Server.start(0)
        gen_server.stop(pid, "shutdown")
        """,
        tmp_path,
    )
    assert proc.stdout.split("\n")[:3] == ["normal", "shutdown", "('shutdown', 'done')"]
    assert "CRASH REPORT" not in proc.stderr, proc.stderr


def test_an_abnormal_stop_writes_a_crash_report(tmp_path: Path) -> None:
    proc = _run(
        """
        pid = Server.start(0)
        gen_server.cast(pid, ("stop", "went_wrong"))
        print(wait_down(pid))
        """,
        tmp_path,
    )
    assert proc.stdout.strip() == "went_wrong"
    assert proc.stderr.count("CRASH REPORT") == 1, proc.stderr
    assert "exit reason: 'went_wrong'" in proc.stderr


def test_default_handle_info_logs_the_unexpected_message_and_carries_on(tmp_path: Path) -> None:
    proc = _run(
        """
        pid = Server.start(0)
        otp.send(pid, ("surprise", 42))
        print(gen_server.call(pid, "still here?"))
        gen_server.stop(pid)
        """,
        tmp_path,
    )
    assert proc.stdout.strip() == "('echo', 'still here?')"
    assert "received unexpected message: ('surprise', 42)" in proc.stderr, proc.stderr
    assert "CRASH REPORT" not in proc.stderr


def test_trace_logs_messages_in_and_replies_out_until_switched_off(tmp_path: Path) -> None:
    proc = _run(
        """
        pid = Server.start(0, name="traced")
        otp.debug.trace(pid, True)
        print(gen_server.call(pid, "while_tracing"))
        gen_server.cast(pid, "cast_while_tracing")
        otp.send(pid, "info_while_tracing")
        otp.debug.trace(pid, False)
        print(gen_server.call(pid, "after_tracing"))
        gen_server.stop(pid)
        """,
        tmp_path,
    )
    err = proc.stderr
    assert proc.stdout.split("\n")[:2] == ["('echo', 'while_tracing')", "('echo', 'after_tracing')"]
    got = [line for line in err.splitlines() if " got " in line]
    assert any("'while_tracing'" in line for line in got), err
    assert any("'cast_while_tracing'" in line for line in got), err
    assert any("'info_while_tracing'" in line for line in got), err
    assert any("replied ('echo', 'while_tracing')" in line for line in err.splitlines()), err
    assert all("traced GenServer" in line for line in got), err
    assert "after_tracing" not in err, err
