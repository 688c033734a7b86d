"""Central logging, end to end: every process's records reach the main program.

Records are read where an operator reads them: from the loguru handlers the
main program configured (here, the pytest process: a list sink, a JSON file).
`otp.node.flush_logs()` waits until everything the node's processes sent has
been emitted there. Duplicates could only show up in sinks a child inherited
by fork (stderr, files), so that test runs a script in a subprocess and
counts lines in its stderr and in its log file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

import otp
from behaviours import (
    ChildSpec,
    GenServer,
    NoReply,
    Reply,
    Supervisor,
    SupFlags,
    gen_server,
    supervisor,
)
from otp.testing import wait_until

REPO = Path(__file__).resolve().parent.parent


def logs_then_returns(text: str) -> None:
    logger.warning(text)


def logs_then_is_killed(n: int) -> None:
    for i in range(n):
        logger.info(f"before the kill {i}")
    os.kill(os.getpid(), signal.SIGKILL)


def logs_then_crashes() -> None:
    logger.error("about to crash")
    raise ValueError("crashed right after logging")


class Chatty(GenServer):
    """Writes a lot to stdout and stderr in every callback, and answers."""

    def handle_call(self, request: Any, from_: Any, state: Any) -> Any:
        sys.stdout.write("x" * 100_000 + "\n")
        sys.stdout.flush()
        os.write(1, b"\x00\x01 raw bytes on fd 1 " * 1000)
        os.write(2, b"\xff\xfe raw bytes on fd 2 " * 1000)
        print("a line on stderr", file=sys.stderr)
        return Reply(("answer", request), state)


class Vault(GenServer):
    """Hides its secret from reports with format_status, and crashes on request."""

    def init(self) -> Any:
        return {"secret": "hunter2", "count": 41}

    def handle_cast(self, msg: Any, state: Any) -> Any:
        if msg == "crash":
            raise KeyError("vault exploded")
        return NoReply(state)

    def format_status(self, status: dict[str, Any]) -> dict[str, Any]:
        state = status.get("state")
        if isinstance(state, dict):
            status = {**status, "state": {**state, "secret": "***"}}
        return status


class Worker(GenServer):
    def handle_cast(self, msg: Any, state: Any) -> Any:
        raise RuntimeError("worker failed")


class OneWorker(Supervisor):
    def init(self) -> Any:
        return SupFlags(strategy="one_for_one", intensity=5, period=5), [
            ChildSpec(id="w", start=(Worker.start_link, (), {"name": "log_worker"})),
        ]


@pytest.fixture
def records() -> Iterator[list[dict[str, Any]]]:
    out: list[dict[str, Any]] = []
    hid = logger.add(lambda m: out.append(m.record), level=0, format="{message}")
    try:
        yield out
    finally:
        logger.remove(hid)


def _wait_down(pid: otp.Pid) -> Any:
    ref = otp.monitor(pid)
    return otp.receive(lambda m: type(m) is otp.DOWN and m.ref == ref, timeout=15).reason


def _messages(records: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    return [r for r in records if text in r["message"]]


def test_records_of_every_process_reach_the_main_programs_handlers_with_who_logged(
    records: list[dict[str, Any]],
) -> None:
    pid = otp.spawn(logs_then_returns, "from a plain process")
    _wait_down(pid)
    server = Vault.start_link(name="log_vault")
    otp.send(server, "unexpected")  # the default handle_info logs a warning
    gen_server.stop(server)
    otp.unlink(server)
    assert otp.node.flush_logs()
    (rec,) = _messages(records, "from a plain process")
    assert rec["extra"]["otp_pid"] == str(pid)
    assert rec["extra"]["os_pid"] == pid.id == rec["process"].id
    assert rec["extra"]["otp_name"] == "logs_then_returns"
    assert rec["function"] == "logs_then_returns" and rec["name"] == "test_logging"
    (rec,) = _messages(records, "received unexpected message: 'unexpected'")
    assert rec["extra"]["otp_pid"] == str(server) and rec["extra"]["os_pid"] == server.id
    assert rec["extra"]["otp_name"] == "log_vault GenServer"
    assert rec["level"].name == "WARNING"


def test_a_json_file_sink_of_the_main_program_gets_every_process_record(tmp_path: Path) -> None:
    path = tmp_path / "node.jsonl"
    hid = logger.add(path, serialize=True, level="INFO")
    try:
        pid = otp.spawn(logs_then_returns, "into the json file")
        _wait_down(pid)
        assert otp.node.flush_logs()
    finally:
        logger.remove(hid)
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    (rec,) = [x["record"] for x in lines if x["record"]["message"] == "into the json file"]
    assert rec["extra"]["otp_pid"] == str(pid)
    assert rec["extra"]["os_pid"] == pid.id
    assert rec["process"]["id"] == pid.id
    assert rec["level"]["name"] == "WARNING"


def test_records_are_not_duplicated_by_handlers_a_child_inherits(tmp_path: Path) -> None:
    # The main program's stderr handler and a file handler, both added before
    # the node starts, are inherited by fork: a child that kept them would
    # write its records there itself, on top of the forwarded copy.
    script = tmp_path / "script.py"
    log = tmp_path / "file.log"
    script.write_text(
        textwrap.dedent(
            f"""
            import otp
            from loguru import logger
            from behaviours import GenServer, Reply, gen_server

            logger.add({str(log)!r}, format="{{message}}")

            def child():
                logger.info("child-marker")

            class Server(GenServer):
                def handle_call(self, request, from_, state):
                    logger.info("server-marker")
                    return Reply(request, state)

            pid = otp.spawn(child)
            ref = otp.monitor(pid)
            otp.receive(lambda m: type(m) is otp.DOWN and m.ref == ref, timeout=15)
            server = Server.start()
            gen_server.call(server, "x")
            gen_server.stop(server)
            """
        )
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=40,
    )
    assert proc.returncode == 0, proc.stderr
    for marker in ("child-marker", "server-marker"):
        assert proc.stderr.count(marker) == 1, proc.stderr
        assert log.read_text().count(marker) == 1, log.read_text()


def test_no_record_is_lost_when_a_process_is_killed_right_after_logging(
    records: list[dict[str, Any]],
) -> None:
    pid = otp.spawn(logs_then_is_killed, 300)
    assert _wait_down(pid) == "killed"
    assert otp.node.flush_logs()
    got = [r["message"] for r in records if r["message"].startswith("before the kill")]
    assert got == [f"before the kill {i}" for i in range(300)]


def test_a_record_logged_right_before_a_crash_and_the_crash_report_both_arrive_once(
    records: list[dict[str, Any]],
) -> None:
    pid = otp.spawn(logs_then_crashes)
    reason = _wait_down(pid)
    assert isinstance(reason, otp.Crash)
    assert otp.node.flush_logs()
    assert len(_messages(records, "about to crash")) == 1
    (report,) = _messages(records, "CRASH REPORT")
    assert "crashed right after logging" in report["message"]
    assert report["extra"]["otp_pid"] == str(pid)


def test_output_written_by_a_callback_never_corrupts_a_message() -> None:
    pid = Chatty.start_link()
    for i in range(10):
        assert gen_server.call(pid, i, timeout=15) == ("answer", i)
    otp.unlink(pid)
    gen_server.stop(pid)


def test_a_crash_report_says_who_what_state_and_why_once(records: list[dict[str, Any]]) -> None:
    pid = Vault.start(name="log_vault")
    gen_server.cast(pid, "crash")
    assert isinstance(_wait_down(pid), otp.Crash)
    assert otp.node.flush_logs()
    (report,) = _messages(records, "CRASH REPORT")
    text = report["message"]
    assert f"process: log_vault {pid} (os pid {pid.id})" in text
    assert "behaviour: GenServer" in text
    assert "last message: ('$gen_cast', 'crash')" in text
    # The state as format_status shows it: the secret is hidden.
    assert "state: {'secret': '***', 'count': 41}" in text and "hunter2" not in text
    assert "exit reason: KeyError: 'vault exploded'" in text
    assert "Traceback (most recent call last)" in text and "in handle_cast" in text
    assert report["extra"]["otp_pid"] == str(pid) and report["extra"]["os_pid"] == pid.id
    assert report["level"].name == "ERROR"


def test_a_child_crash_gives_one_crash_report_and_one_supervisor_report(
    records: list[dict[str, Any]],
) -> None:
    sup = OneWorker.start_link()
    old = otp.whereis("log_worker")
    assert old is not None
    gen_server.cast(old, "boom")
    assert isinstance(_wait_down(old), otp.Crash)
    wait_until(lambda: otp.whereis("log_worker") not in (None, old), 15, "the restart")
    # The supervisor logs its report once the restart is done, before it
    # takes its next message: a call answered after it is a barrier.
    supervisor.which_children(sup)
    assert otp.node.flush_logs()
    (crash,) = _messages(records, "CRASH REPORT")
    assert "worker failed" in crash["message"]
    (sup_report,) = _messages(records, "SUPERVISOR REPORT")
    text = sup_report["message"]
    assert "context: child_terminated" in text
    assert "id='w'" in text and f"pid={old}" in text
    assert sup_report["extra"]["otp_pid"] == str(sup)
    otp.unlink(sup)
    gen_server.stop(sup, "shutdown")
