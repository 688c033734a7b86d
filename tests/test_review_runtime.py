"""Runtime bugs found in review, each pinned by a test written before its fix.

- A process whose exception cannot be printed (its __str__ raises) must still
  end as a crash with that exception's type; the failure to format it must
  not escape into the code that forked the process (the root's loop, or the
  spawner's own stack copied by fork).
- `exit(self(), "normal")` in a process that traps exits is a message
  `EXIT(self, "normal")`, as every other trapped signal (otp-semantics.md
  5.2), not the end of the process.
- `process_info` that timed out does not leave its late answer in the
  caller's mailbox.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

import otp
from otp import _runtime

# ------------------------------------------------------------ process bodies


class UnprintableError(Exception):
    """An exception whose message cannot be built: str() raises."""

    def __str__(self) -> str:
        raise RuntimeError("no message for you")


def raise_unprintable() -> None:
    raise UnprintableError()


def spawn_and_report(test: otp.Pid) -> None:
    """Spawn raise_unprintable from this OTP process (a direct fork) and tell
    the test the DOWN reason it got."""
    _pid, ref = otp.spawn_monitor(raise_unprintable)
    m = otp.receive(lambda m: type(m) is otp.DOWN and m.ref == ref, 30.0)
    otp.send(test, ("down", m.reason))


def trap_then_exit_self_normal(test: otp.Pid) -> None:
    otp.trap_exit(True)
    otp.exit(otp.self_pid(), "normal")
    otp.send(test, ("got", otp.receive(timeout=30.0)))


def exit_self_normal(test: otp.Pid) -> None:
    otp.exit(otp.self_pid(), "normal")
    otp.send(test, "after")  # never: the process ended in exit


def blocked_on_fifo(test: otp.Pid, fifo: str) -> None:
    """Busy outside `receive` (blocked on a FIFO) until the test writes it,
    then look at its sockets once (answering what came meanwhile) and say so."""
    with open(fifo) as f:
        f.read()
    with pytest.raises(otp.ReceiveTimeout):
        otp.receive(lambda m: False, 0)
    otp.send(test, "done")


def _down(ref: otp.Ref, timeout: float = 30.0) -> Any:
    return otp.receive(lambda m: type(m) is otp.DOWN and m.ref == ref, timeout)


# -------------------------------------------------------------------- tests


def test_an_unprintable_exception_ends_a_process_spawned_by_the_main_program_as_its_crash() -> None:
    _pid, ref = otp.spawn_monitor(raise_unprintable)
    reason = _down(ref).reason
    assert isinstance(reason, otp.Crash)
    assert reason.type == "UnprintableError"
    # The node is intact: its runtime directory is there and it still spawns.
    assert os.path.isdir(_runtime.current().rundir)
    _pid2, ref2 = otp.spawn_monitor(raise_unprintable)
    assert _down(ref2).reason.type == "UnprintableError"


def test_an_unprintable_exception_ends_a_process_spawned_by_a_process_as_its_crash() -> None:
    me = otp.self_pid()
    _spawner, ref = otp.spawn_monitor(spawn_and_report, me)
    m = otp.receive(lambda m: type(m) is tuple and m[0] == "down", 30.0)
    assert isinstance(m[1], otp.Crash)
    assert m[1].type == "UnprintableError"
    assert _down(ref).reason == "normal"


def test_exit_self_normal_while_trapping_is_an_exit_message() -> None:
    me = otp.self_pid()
    pid, ref = otp.spawn_monitor(trap_then_exit_self_normal, me)
    m = otp.receive(
        lambda m: (type(m) is tuple and m[0] == "got") or (type(m) is otp.DOWN and m.ref == ref),
        30.0,
    )
    assert m == ("got", otp.EXIT(pid, "normal"))
    assert _down(ref).reason == "normal"


def test_exit_self_normal_without_trapping_ends_the_process_normally() -> None:
    me = otp.self_pid()
    _pid, ref = otp.spawn_monitor(exit_self_normal, me)
    m = otp.receive(lambda m: m == "after" or (type(m) is otp.DOWN and m.ref == ref), 30.0)
    assert type(m) is otp.DOWN and m.reason == "normal"


def test_a_late_process_info_answer_is_dropped(tmp_path: Any) -> None:
    fifo = str(tmp_path / "gate")
    os.mkfifo(fifo)
    me = otp.self_pid()
    pid, ref = otp.spawn_monitor(blocked_on_fifo, me, fifo)
    info = otp.process_info(pid, timeout=0.3)  # it cannot answer: blocked
    assert info is not None and info["status"] == "running"
    fd = os.open(fifo, os.O_WRONLY)  # the process is in open(): this pairs
    os.close(fd)
    assert otp.receive(lambda m: m == "done", 30.0) == "done"
    assert _down(ref).reason == "normal"
    # The answer came before "done" (one connection, in order): had it been
    # kept, it would be queued now.
    with pytest.raises(otp.ReceiveTimeout):
        otp.receive(lambda m: type(m) is tuple and len(m) == 2 and isinstance(m[1], dict), 0)
