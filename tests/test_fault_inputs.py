"""Bad input and bad timing that a server must survive, each with a test:

- a flood of casts to a slow server: what bounds memory (below);
- a call to a server that is being restarted: NoProc while the supervisor
  is still starting the new one, CallTimeout or the reply while the new one
  is in `init`, never a hang past the call's timeout;
- an `init` that hangs (blocked in a system call, never looking at its
  mailbox): the start timeout kills it, and the supervisor's start fails
  cleanly;
- a `terminate` that hangs the same way: killed after the child's shutdown
  timeout, reported, and the supervisor goes on stopping the others.

What bounds memory under a flood of casts, measured here:

- While a server is inside a callback it reads nothing. What its senders
  write stays in the kernel's socket buffer until that fills (Linux's
  default, net.core.wmem_default = 208 KiB, counted with per-write
  overhead: a few hundred small casts), then each sender *blocks* in `cast`:
  backpressure, and the server's memory does not move.
- A busy server reads its connections once every 64 messages it handles
  (its loop takes queued messages without a system call in between), and a
  read takes what is waiting: at most a socket buffer's worth per sender.
  So the kernel buffer also bounds how fast a backlog can move into the
  mailbox:
  - large messages (a few KiB and up: fewer than 64 fit in a buffer): each
    read brings fewer messages than were handled since the last one, the
    mailbox never builds up, and the senders are held back to the server's
    pace. 3000 casts of 8 KiB to a server spending 0.5 ms on each: its
    queue stayed under 20, its memory flat.
  - small messages (hundreds fit in a buffer): each read brings more than
    the 64 handled, so the backlog moves into the mailbox, which, as in
    Erlang, has no limit. 4000 casts of 100 bytes: about 3000 queued at the
    peak, memory grown by about their size. A server persistently slower
    than its senders grows by the small messages it has not handled yet.
  Bound the flow yourself when senders of small messages can outpace a
  server: calls instead of casts, or a credit scheme.

The other bad inputs (unpicklable and undecodable messages, garbage and
truncated frames, 2**62-byte headers, 100 MB messages, a million-message
flood) are in tests/test_kernel_bad_input.py, test_kernel_security.py and
test_kernel_volume.py; the frame decoder is fuzzed in test_fuzz_frames.py.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from loguru import logger

import otp
from behaviours import ChildSpec, GenServer, NoReply, Reply, gen_server, supervisor
from otp.testing import wait_until

# ------------------------------------------------------------ shared bits


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


def wait_for_line(log: str, prefix: str, timeout: float = 30.0) -> str:
    def find() -> str | None:
        return next((x for x in lines(log) if x.startswith(prefix)), None)

    return wait_until(find, timeout, f"{prefix!r} in the log")  # type: ignore[no-any-return]


def hang_forever() -> None:
    """Block in a system call, forever: a read of a pipe nobody writes to.

    The process never returns to its loop, so it never looks at its mailbox:
    only SIGKILL ends it.
    """
    r, _w = os.pipe()
    os.read(r, 1)


def open_gate(gate: str) -> None:
    """Release a process blocked reading the FIFO `gate`."""
    with open(gate, "w") as f:
        f.write("go")


def uss(pid: otp.Pid) -> int:
    return psutil.Process(pid.id).memory_full_info().uss  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def _trap() -> None:
    # Servers and supervisors here are linked to the test process; their
    # ends must arrive as messages.
    otp.trap_exit(True)


# ------------------------------------------------------------------ flood


class Sink(GenServer):
    """Counts `("m", i, payload)` casts and checks they come in order.

    `("block", fifo)` blocks the server in its callback until the FIFO is
    written; `work` is CPU time spent per message (a slow server that still
    reads between messages).
    """

    def init(self, work: float = 0.0) -> Any:
        return {"n": 0, "in_order": True, "work": work}

    def handle_cast(self, msg: Any, st: Any) -> Any:
        if msg[0] == "block":
            with open(msg[1]) as f:
                f.read()
            return NoReply(st)
        if msg[1] != st["n"]:
            st["in_order"] = False
        st["n"] += 1
        if st["work"]:
            end = time.perf_counter() + st["work"]
            while time.perf_counter() < end:
                pass
        return NoReply(st)

    def handle_call(self, request: Any, from_: Any, st: Any) -> Any:
        return Reply((st["n"], st["in_order"]), st)


def flooder(parent: otp.Pid, server: otp.Pid, n: int, size: int, every: int) -> None:
    """Cast `n` messages of `size` bytes; tell the parent every `every`."""
    payload = b"x" * size
    for i in range(n):
        gen_server.cast(server, ("m", i, payload))
        if i % every == 0:
            otp.send(parent, ("progress", i))
    otp.send(parent, ("flood_done", n))


def is_progress(m: Any) -> bool:
    return type(m) is tuple and len(m) == 2 and m[0] == "progress"


def test_a_flood_of_casts_to_a_server_stuck_in_a_callback_blocks_the_sender(
    tmp_path: Path,
) -> None:
    gate = str(tmp_path / "gate")
    os.mkfifo(gate)
    sink = Sink.start_link()
    assert gen_server.call(sink, "count") == (0, True)
    before = uss(sink)
    gen_server.cast(sink, ("block", gate))  # the server now reads nothing

    n = 50_000
    flood = otp.spawn(flooder, otp.self_pid(), sink, n, 100, 100)
    # Progress reports until they stop: the sender is blocked in a cast.
    last = -1
    while True:
        try:
            _, last = otp.receive(is_progress, 1.5)
        except otp.ReceiveTimeout:
            break
    assert 0 <= last < n - 100, last  # stopped early: only the kernel buffer's worth went
    assert psutil.Process(flood.id).status() == psutil.STATUS_SLEEPING  # blocked, not busy
    with pytest.raises(otp.ReceiveTimeout):
        otp.receive(is_progress, 0.5)  # and it stays blocked
    # The casts in flight are in the kernel, not in the server's memory.
    assert uss(sink) - before < 4 << 20

    open_gate(gate)
    otp.receive(lambda m: m == ("flood_done", n), 60)
    assert gen_server.call(sink, "count", 60) == (n, True)  # none lost, in order
    gen_server.stop(sink)


def kernel_buffer() -> int:
    """The default socket send buffer, in bytes (what a sender may have in flight)."""
    with open("/proc/sys/net/core/wmem_default") as f:
        return int(f.read())


def flood_a_slow_server(n: int, size: int) -> tuple[int, int]:
    """Flood a server that spends 0.5 ms per message; returns the peak of its
    mailbox length and of its memory (USS) growth, sampled while it works."""
    sink = Sink.start_link(0.0005)
    assert gen_server.call(sink, "count") == (0, True)
    before = uss(sink)
    otp.spawn(flooder, otp.self_pid(), sink, n, size, n)
    peak_growth = peak_queue = 0
    done = False
    samples_after = 5  # the backlog keeps the server busy after the flood ended
    while samples_after:
        if not done:
            try:
                otp.receive(lambda m: m == ("flood_done", n), 0.05)
                done = True
            except otp.ReceiveTimeout:
                pass
        else:
            samples_after -= 1
        peak_queue = max(peak_queue, otp.process_info(sink)["message_queue_len"])
        peak_growth = max(peak_growth, uss(sink) - before)
    assert gen_server.call(sink, "count", 60) == (n, True)  # none lost, in order
    gen_server.stop(sink)
    return peak_queue, peak_growth


def test_a_flood_of_large_casts_to_a_slow_server_is_held_back_by_the_kernel_buffer() -> None:
    # 3000 casts of 8 KiB (24 MiB): fewer than 64 of them fit in a socket
    # buffer, so each read between callbacks brings fewer messages than the
    # server handled since the last one. Its mailbox never builds up; the
    # sender waits for it.
    n, size = 3000, 8192
    peak_queue, peak_growth = flood_a_slow_server(n, size)
    assert peak_queue <= 2 * kernel_buffer() // size + 64, peak_queue
    assert peak_growth < 8 << 20, peak_growth


def test_a_flood_of_small_casts_to_a_slow_server_grows_its_mailbox_by_the_backlog() -> None:
    # 4000 casts of 100 bytes: hundreds fit in a socket buffer, so each read
    # brings more than the 64 handled since the last: the backlog moves into
    # the mailbox (as in Erlang: a mailbox has no limit). Memory grows by
    # about the backlog's size, and no more.
    n, size = 4000, 100
    peak_queue, peak_growth = flood_a_slow_server(n, size)
    assert peak_queue > 500, peak_queue  # far more than one kernel buffer's worth was read
    assert peak_growth <= 2 * peak_queue * (size + 300) + (8 << 20), (peak_growth, peak_queue)


# ------------------------------------------------- calls during a restart


class Target(GenServer):
    """Answers "ping". Its `init` blocks on the FIFO `gate` once `flag` exists
    (so only a restart is held, never the first start)."""

    def init(self, log: str, gate: str, flag: str) -> Any:
        if os.path.exists(flag):
            note(log, "init held")
            with open(gate) as f:
                f.read()
        note(log, f"init done {os.getpid()}")
        return None

    def handle_call(self, request: Any, from_: Any, state: Any) -> Any:
        return Reply("pong", state)


def gated_start(log: str, gate: str, flag: str, init_flag: str) -> otp.Pid:
    """The child's start function (it runs in the supervisor): blocks on the
    FIFO `gate` once `flag` exists, before starting the Target."""
    if os.path.exists(flag):
        note(log, "start held")
        with open(gate) as f:
            f.read()
    return Target.start_link(log, gate, init_flag, name="target")  # type: ignore[no-any-return]


def call_and_report(parent: otp.Pid, dest: Any, timeout: float) -> None:
    otp.send(parent, ("calling", otp.self_pid()))
    t0 = time.monotonic()
    try:
        result: Any = ("reply", gen_server.call(dest, "ping", timeout))
    except (otp.CallExit, otp.NoProc, otp.CallTimeout) as e:
        result = (type(e).__name__, None)
    otp.send(parent, ("called", otp.self_pid(), result, time.monotonic() - t0))


def kill(pid: otp.Pid) -> None:
    ref = otp.monitor(pid)
    os.kill(pid.id, signal.SIGKILL)
    otp.receive(lambda m: type(m) is otp.DOWN and m.ref == ref, 10)


def restart_setup(tmp_path: Path) -> tuple[str, str, str, str, otp.Pid]:
    log, gate = str(tmp_path / "log"), str(tmp_path / "gate")
    start_flag, init_flag = str(tmp_path / "hold_start"), str(tmp_path / "hold_init")
    os.mkfifo(gate)
    spec = ChildSpec("target", (gated_start, (log, gate, start_flag, init_flag), {}))
    sup = supervisor.start_link([spec])
    assert gen_server.call("target", "ping") == "pong"
    return log, gate, start_flag, init_flag, sup


def stop_sup(sup: otp.Pid) -> None:
    ref = otp.monitor(sup)
    otp.exit(sup, "shutdown")
    assert otp.receive(lambda m: type(m) is otp.DOWN and m.ref == ref, 30).reason == "shutdown"


def test_a_call_while_the_supervisor_is_still_starting_the_replacement_raises_noproc(
    tmp_path: Path,
) -> None:
    log, gate, start_flag, _init_flag, sup = restart_setup(tmp_path)
    old = otp.whereis("target")
    Path(start_flag).touch()
    kill(old)
    wait_for_line(log, "start held")  # the supervisor is inside the restart

    with pytest.raises(otp.NoProc):
        gen_server.call("target", "ping", 5.0)  # the name's holder is dead
    with pytest.raises(otp.NoProc):
        gen_server.call(old, "ping", 5.0)

    open_gate(gate)
    new = wait_until(lambda: otp.whereis("target") not in (None, old) and otp.whereis("target"))
    assert gen_server.call("target", "ping", 30) == "pong"
    assert gen_server.call(new, "ping", 30) == "pong"
    stop_sup(sup)


def test_a_call_while_the_replacement_is_in_init_times_out_or_gets_the_reply(
    tmp_path: Path,
) -> None:
    log, gate, _start_flag, init_flag, sup = restart_setup(tmp_path)
    old = otp.whereis("target")
    Path(init_flag).touch()
    kill(old)
    wait_for_line(log, "init held")  # registered (the name is taken before init)

    new = otp.whereis("target")
    assert new not in (None, old)
    # A short call times out: the server exists but does not serve yet.
    with pytest.raises(otp.CallTimeout):
        gen_server.call("target", "ping", 0.5)
    # A patient call waits for init to end, then gets the reply.
    me = otp.self_pid()
    caller = otp.spawn(call_and_report, me, "target", 30.0)
    otp.receive(lambda m: m == ("calling", caller), 30)
    # Asleep after saying so: blocked in the call, its request sent.
    wait_until(lambda: psutil.Process(caller.id).status() == psutil.STATUS_SLEEPING, 30, "the call")
    open_gate(gate)
    _, _, result, took = otp.receive(lambda m: type(m) is tuple and m[:2] == ("called", caller), 60)
    assert result == ("reply", "pong"), result
    assert took < 30.0
    stop_sup(sup)


# ------------------------------------------------------------- hangs


class Echo(GenServer):
    """Traps exits and logs its start and its terminate."""

    def init(self, log: str, name: str) -> Any:
        otp.trap_exit(True)
        note(log, f"start {name}")
        return (log, name)

    def handle_call(self, request: Any, from_: Any, st: Any) -> Any:
        return Reply(request, st)

    def terminate(self, reason: Any, st: Any) -> None:
        note(st[0], f"stop {st[1]} {reason}")


class HangsInInit(GenServer):
    def init(self, log: str) -> Any:
        note(log, f"init hangs {os.getpid()}")
        hang_forever()


class HangsInTerminate(GenServer):
    def init(self, log: str) -> Any:
        otp.trap_exit(True)
        note(log, f"start h {os.getpid()}")
        return log

    def terminate(self, reason: Any, log: str) -> None:
        note(log, f"terminate h {reason} {time.monotonic()}")
        hang_forever()


def test_an_init_that_hangs_is_killed_by_the_start_timeout_and_the_start_fails_cleanly(
    tmp_path: Path,
) -> None:
    log = str(tmp_path / "log")
    specs = [
        Echo.child_spec(log, "a", id="a"),
        HangsInInit.child_spec(log, id="h", name="hangs", timeout=0.5),
        Echo.child_spec(log, "z", id="z"),
    ]
    with pytest.raises(otp.StartError) as info:
        supervisor.start_link(specs)
    assert info.value.reason == ("shutdown", ("failed_to_start_child", "h", "timeout"))

    hung = int(wait_for_line(log, "init hangs").split()[2])
    # Killed and reaped: no process, no zombie, and its name is free again.
    wait_until(lambda: not psutil.pid_exists(hung), 10, "the hung init to be reaped")
    assert otp.whereis("hangs") is None
    # The child started before it was stopped; the one after never started.
    assert lines(log) == ["start a", f"init hangs {hung}", "stop a shutdown"]


def test_a_terminate_that_hangs_is_killed_after_the_shutdown_timeout(tmp_path: Path) -> None:
    log = str(tmp_path / "log")
    records: list[str] = []
    handler = logger.add(lambda m: records.append(m.record["message"]), level="ERROR")
    try:
        sup = supervisor.start_link(
            [
                Echo.child_spec(log, "a", id="a"),
                HangsInTerminate.child_spec(log, id="h", shutdown=0.5),
                Echo.child_spec(log, "z", id="z"),
            ]
        )
        hung = int(wait_for_line(log, "start h").split()[2])
        stop_sup(sup)
        stopped = time.monotonic()  # CLOCK_MONOTONIC: the same clock in every process
        otp.node.flush_logs(10)
    finally:
        logger.remove(handler)

    got = lines(log)
    # Reverse start order: z, then h (whose terminate hangs: killed), then a.
    assert got[:3] == ["start a", f"start h {hung}", "start z"]
    assert got[3] == "stop z shutdown"
    assert got[4].startswith("terminate h shutdown ")
    assert stopped - float(got[4].split()[3]) >= 0.45  # it was given its 0.5 s first
    assert got[5:] == ["stop a shutdown"]
    assert not psutil.pid_exists(hung)  # killed, and reaped by the supervisor
    # The supervisor reported the kill as a shutdown error of that child.
    errors = [r for r in records if "context: shutdown_error" in r]
    assert len(errors) == 1 and "reason: 'killed'" in errors[0] and "id='h'" in errors[0]
