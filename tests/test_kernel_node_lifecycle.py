"""Kernel: the node's life, seen from real programs run as subprocesses. At
interpreter exit, on SIGTERM and on SIGINT every process the program started
is stopped in reverse start order; when the program is killed with SIGKILL,
every process of its node is gone within a second and nothing is left
(no process, no zombie, no runtime directory). Also `with otp.node.Node()`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import Lines as _Lines
from conftest import run_program

import otp
from otp.testing import wait_until

REPO = str(Path(__file__).resolve().parent.parent)

# Each worker traps exits and, when the node stops it (EXIT "shutdown"),
# appends its index to a file: the file gives the stop order.
ORDERED_STOP_SCRIPT = """
import os
import sys

sys.path.insert(0, {repo!r})
import otp

OUT, MODE = sys.argv[1], sys.argv[2]


def worker(parent, index):
    otp.trap_exit(True)
    otp.send(parent, ("trapping", index))
    while True:
        m = otp.receive()
        if isinstance(m, otp.EXIT) and m.reason == "shutdown":
            with open(OUT, "a") as f:
                f.write(f"{{index}}\\n")
            return


def holder(parent):
    # A process that started a process of its own (not the main program's).
    child = otp.spawn(worker, parent, 99)
    otp.send(parent, ("grandchild", child.id))
    otp.receive()


me = otp.self_pid()
pids = [otp.spawn(worker, me, i) for i in range(4)]
for _ in pids:
    otp.receive(timeout=10)
h = otp.spawn(holder, me)
tag, g = otp.receive(lambda m: m[0] == "grandchild", timeout=10)
otp.receive(lambda m: m == ("trapping", 99), timeout=10)
print("pids", *[p.id for p in pids], h.id, g, flush=True)
print("rundir", otp.node.rundir(), flush=True)
if MODE == "exit":
    sys.exit(0)
print("ready", flush=True)
otp.receive()  # until a signal ends the program
"""

KILLED_SCRIPT = """
import os
import sys

sys.path.insert(0, {repo!r})
import otp


def idle():
    otp.receive()


def spawner(parent, depth):
    child = otp.spawn(spawner, parent, depth - 1) if depth else None
    otp.send(parent, ("up", os.getpid()))
    otp.receive()


me = otp.self_pid()
for _ in range(3):
    otp.spawn(idle)
otp.spawn(spawner, me, 2)  # three generations: spawner, its child, its grandchild
ospids = [otp.receive(timeout=10)[1] for _ in range(3)]
print("main", os.getpid(), flush=True)
print("pids", *ospids, flush=True)
print("rundir", otp.node.rundir(), flush=True)
print("ready", flush=True)
otp.receive()
"""

# Plays init for the killed program: a child subreaper that reaps everything
# orphaned below it (this machine's PID 1 does not reap orphans).
REAPER = """
import ctypes, os, sys
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
pid = os.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable] + sys.argv[1:])
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
"""


def write_script(tmp_path: Path, source: str) -> Path:
    script = tmp_path / "program.py"
    script.write_text(textwrap.dedent(source).format(repo=REPO))
    return script


class Lines(_Lines):
    def field(self, name: str) -> list[str]:
        return self.words(name)


def gone(ospid: int) -> bool:
    """Not running any more: reaped, or at least a zombie."""
    try:
        return psutil.Process(ospid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("how", ["exit", "sigterm", "sigint"])
def test_node_stops_every_process_in_reverse_start_order(how: str, tmp_path: Path) -> None:
    script = write_script(tmp_path, ORDERED_STOP_SCRIPT)
    out = tmp_path / "stopped.txt"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(out), how],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    lines = Lines(proc)
    try:
        ospids = [int(x) for x in lines.field("pids")]
        (rundir,) = lines.field("rundir")
        if how != "exit":
            assert lines.next() == "ready"
            proc.send_signal(signal.SIGTERM if how == "sigterm" else signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        lines.close()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()

    expected_rc = {"exit": 0, "sigterm": 128 + signal.SIGTERM, "sigint": -signal.SIGINT}
    assert proc.returncode == expected_rc[how], stderr.decode()
    stopped = out.read_text().split()
    # The four workers in reverse start order; the holder's child (99) was
    # not started by the program: it ends with the node, in no set order.
    assert [x for x in stopped if x != "99"] == ["3", "2", "1", "0"], stopped
    for ospid in ospids:  # all reaped: no process, no zombie
        assert not psutil.pid_exists(ospid), f"{ospid} outlived the program"
    assert not os.path.exists(rundir)


def test_main_program_killed_with_sigkill_takes_its_whole_node_down(tmp_path: Path) -> None:
    script = write_script(tmp_path, KILLED_SCRIPT)
    reaper = subprocess.Popen(
        [sys.executable, "-c", REAPER, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    lines = Lines(reaper)
    try:
        (main_pid,) = [int(x) for x in lines.field("main")]
        printed = {int(x) for x in lines.field("pids")}
        (rundir,) = lines.field("rundir")
        assert lines.next() == "ready"
        node = {p.pid for p in psutil.Process(main_pid).children(recursive=True)}
        assert printed <= node
        assert len(node) == 1 + 3 + 3  # the root, three idle processes, three spawners
        for ospid in node:
            cmdline = " ".join(psutil.Process(ospid).cmdline())
            assert cmdline.startswith("otp: "), cmdline

        os.kill(main_pid, signal.SIGKILL)  # a real kill -9 of the program
        start = time.monotonic()
        wait_until(lambda: all(gone(p) for p in node), 1.0, "every node process to end")
        elapsed = time.monotonic() - start

        reaper.communicate(timeout=10)  # it ends once it has reaped everything
    finally:
        lines.close()
        if reaper.poll() is None:
            reaper.kill()
            reaper.communicate()
    leftovers = [p for p in node | {main_pid} if psutil.pid_exists(p)]
    assert not leftovers, f"processes or zombies left: {leftovers}"
    assert not os.path.exists(rundir)
    assert elapsed < 1.0


def idle() -> None:
    otp.receive()


def test_node_context_manager_starts_and_stops_the_node() -> None:
    with otp.node.Node() as node:
        rundir = node.rundir
        assert os.path.isdir(rundir)
        pids = [otp.spawn(idle) for _ in range(3)]
        assert all(otp.is_process_alive(p) for p in pids)
    assert not os.path.exists(rundir)
    for p in pids:
        assert not psutil.pid_exists(p.id)


def test_a_subprocess_started_before_the_node_reads_eof_when_the_program_closes_its_stdin(
    tmp_path: Any,
) -> None:
    # The node's root is forked from the main program: it must not keep the
    # main program's end of the pipe open for the node's whole life.
    out = run_program(
        """
import subprocess
proc = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
import otp
otp.spawn(print, "a process of the node")  # the node runs
proc.stdin.close()
try:
    print("cat ended", proc.wait(timeout=20))
except subprocess.TimeoutExpired:
    proc.kill()
    print("cat still waits for EOF")
""",
        tmp_path,
    )
    assert "cat ended 0" in out.stdout
