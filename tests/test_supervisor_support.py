"""Children and helpers shared by the supervisor tests (this module has no tests).

Children record what happens to them in a log file, one line per event,
appended with O_APPEND: starts and stops under a supervisor are sequential
in real time (each waits for the previous one), so the file's line order
*is* the order of events, whatever process wrote each line. Tests wait for
the lines they expect with `wait_until`, then compare the whole sequence.
"""

from __future__ import annotations

import os
from typing import Any

import otp
from behaviours import GenServer, NoReply, Reply, Stop, gen_server, supervisor

__all__ = [
    "Gate",
    "Stubborn",
    "Worker",
    "ask",
    "failing_start",
    "gated_start",
    "lines",
    "note",
    "stop_sup",
    "stubborn",
    "wait_lines",
]


def note(log: str, line: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def lines(log: str) -> list[str]:
    try:
        with open(log) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def wait_lines(log: str, n: int, timeout: float = 30.0) -> list[str]:
    """The log once it has at least `n` lines."""
    from otp.testing import wait_until

    wait_until(lambda: len(lines(log)) >= n, timeout, f"{n} lines in {log}")
    return lines(log)


def _r(reason: Any) -> str:
    if isinstance(reason, otp.Crash):
        return f"crash:{reason.type}"
    return reason if isinstance(reason, str) else repr(reason)


class Worker(GenServer):
    """Logs `start <id>` in init and `stop <id> <reason>` in terminate.

    Traps exits (unless `trap=False`), so a supervisor's "shutdown" runs its
    terminate and shows in the log.
    """

    def init(self, log: str, cid: str, trap: bool = True) -> Any:
        if trap:
            otp.trap_exit(True)
        note(log, f"start {cid}")
        return (log, cid)

    def handle_call(self, request: Any, from_: Any, state: Any) -> Any:
        if request == "ping":
            return Reply("pong", state)
        if request == "whoami":
            return Reply(state[1], state)
        return Reply(("unknown", request), state)

    def handle_cast(self, msg: Any, state: Any) -> Any:
        # ("exit", reason): end with that reason, as a crash or a clean exit.
        return Stop(msg[1], state)

    def terminate(self, reason: Any, state: Any) -> None:
        note(state[0], f"stop {state[1]} {_r(reason)}")


class Refuser(GenServer):
    """A child whose init fails: its start_link raises StartError(reason)."""

    def init(self, log: str, cid: str, reason: Any = "no_way") -> Any:
        note(log, f"refuse {cid}")
        return Stop(reason)


def failing_start(log: str, cid: str) -> Any:
    """A start function that raises a plain exception (reported as a Crash)."""
    note(log, f"fail {cid}")
    raise RuntimeError(f"{cid} cannot start")


def stubborn(log: str, cid: str) -> None:
    """A plain process that traps exits and ignores them: only SIGKILL ends it."""
    otp.trap_exit(True)
    note(log, f"start {cid}")
    while True:
        msg = otp.receive()
        if isinstance(msg, otp.EXIT):
            note(log, f"ignored {cid} {_r(msg.reason)}")


class Stubborn(GenServer):
    """A GenServer whose terminate never returns (so shutdown must kill it)."""

    def init(self, log: str, cid: str) -> Any:
        otp.trap_exit(True)
        note(log, f"start {cid}")
        return (log, cid)

    def handle_call(self, request: Any, from_: Any, state: Any) -> Any:
        return Reply("pong", state)

    def terminate(self, reason: Any, state: Any) -> None:
        note(state[0], f"stalling {state[1]} {_r(reason)}")
        otp.receive(lambda m: m == "never")


class Gate(GenServer):
    """Decides each start attempt of `gated_start`.

    The first attempts get the `preset` verdicts at once; after that each
    attempt is held (the test is told `("attempt_held", n)`) until the test
    calls `("verdict", "ok" | "fail")`.
    """

    def init(self, test_pid: otp.Pid, preset: list[str]) -> Any:
        return {"test": test_pid, "preset": list(preset), "held": None, "n": 0}

    def handle_call(self, request: Any, from_: Any, st: Any) -> Any:
        if request == "attempt":
            st["n"] += 1
            if st["preset"]:
                return Reply(st["preset"].pop(0), st)
            st["held"] = from_
            otp.send(st["test"], ("attempt_held", st["n"]))
            return NoReply(st)
        _, verdict = request
        gen_server.reply(st["held"], verdict)
        st["held"] = None
        return Reply("ok", st)


def gated_start(gate: otp.Pid, log: str, cid: str) -> Any:
    """Start a Worker if the gate says so; runs in the supervisor's process."""
    if gen_server.call(gate, "attempt", None) == "fail":
        note(log, f"gate-failed {cid}")
        raise otp.StartError("gate_said_no")
    return Worker.start_link(log, cid)


def ask(sup: otp.Pid, fn_name: str, args: tuple[Any, ...], reply_to: otp.Pid) -> None:
    """Run one supervisor API call and send back ("answer", fn_name, result)."""
    try:
        result: Any = ("ok", getattr(supervisor, fn_name)(sup, *args))
    except otp.SupervisorError as e:
        result = ("error", e.reason)
    otp.send(reply_to, ("answer", fn_name, result))


def stop_sup(sup: otp.Pid, reason: Any = "shutdown", timeout: float = 30.0) -> Any:
    """Send the supervisor an exit signal (as its parent would) and wait until
    it is gone; returns its exit reason."""
    ref = otp.monitor(sup)
    otp.exit(sup, reason)
    down = otp.receive(lambda m: isinstance(m, otp.DOWN) and m.ref == ref, timeout)
    return down.reason


def wait_down(ref: otp.Ref, timeout: float = 30.0) -> Any:
    """The reason of the DOWN for monitor `ref`."""
    return otp.receive(lambda m: isinstance(m, otp.DOWN) and m.ref == ref, timeout).reason
