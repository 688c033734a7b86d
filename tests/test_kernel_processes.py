"""Kernel: Pids and Refs, spawn / spawn_link / spawn_monitor, send, selective
receive and its timeouts, per-sender ordering, process titles, and code from
`__main__` (functions, classes, lambdas, closures) in a real script."""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

import otp
from otp import _runtime
from otp.testing import wait_until

REPO = str(Path(__file__).resolve().parent.parent)


# ------------------------------------------------------------ process bodies


def report(parent: otp.Pid, *args: Any, **kwargs: Any) -> None:
    """Tell `parent` what this process was given and who it is, then end."""
    otp.send(parent, ("report", otp.self_pid(), os.getpid(), args, kwargs))


def echo() -> None:
    """Answer ("ping", sender) with ("pong", self); end on "stop"."""
    while True:
        m = otp.receive()
        if m == "stop":
            return
        if type(m) is tuple and len(m) == 2 and m[0] == "ping":
            otp.send(m[1], ("pong", otp.self_pid()))


def emit(parent: otp.Pid, items: list[Any]) -> None:
    """Send every item to `parent`, in order, then end."""
    for item in items:
        otp.send(parent, item)


def emit_range(parent: otp.Pid, tag: int, n: int) -> None:
    for i in range(n):
        otp.send(parent, (tag, i))


def spawn_grandchild(parent: otp.Pid) -> None:
    """Spawn an echo process (forked by this process, not by the node's root),
    report it, and stay until told to stop."""
    child = otp.spawn(echo)
    otp.send(parent, ("grandchild", child))
    while otp.receive() != "stop":
        pass


# ------------------------------------------------------------------ helpers


def down_of(ref: otp.Ref, timeout: float = 5.0) -> otp.DOWN:
    m = otp.receive(lambda m: type(m) is otp.DOWN and m.ref == ref, timeout)
    assert type(m) is otp.DOWN
    return m


def stop(pid: otp.Pid) -> None:
    """Send "stop" and wait until the process is gone."""
    ref = otp.monitor(pid)
    otp.send(pid, "stop")
    assert down_of(ref).reason in ("normal", "noproc")


def ping(pid: otp.Pid) -> None:
    otp.send(pid, ("ping", otp.self_pid()))
    otp.receive(lambda m: m == ("pong", pid), 5.0)


def title_of(ospid: int) -> str:
    with open(f"/proc/{ospid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode().strip()


# -------------------------------------------------------------- Pid and Ref


def test_pid_is_hashable_picklable_comparable_and_printed_like_erlang() -> None:
    me = otp.self_pid()
    pid, ref = otp.spawn_monitor(report, me)
    _, reported_pid, ospid, _, _ = otp.receive(lambda m: m[0] == "report", 5.0)
    down_of(ref)

    assert isinstance(pid, otp.Pid)
    assert reported_pid == pid  # the child's self_pid is what spawn returned
    assert pid.id == ospid  # Pid.id is the OS pid
    assert me.id == os.getpid()  # the main program is a process too
    assert pid != me

    copy = pickle.loads(pickle.dumps(pid))
    assert copy == pid and hash(copy) == hash(pid) and type(copy) is otp.Pid
    assert {pid: "x"}[copy] == "x"
    assert len({pid, copy, me}) == 2

    assert re.fullmatch(r"<0\.\d+\.\d+>", repr(pid)), repr(pid)
    assert repr(pid).startswith(f"<0.{ospid}.")
    assert str(pid) == repr(pid)


def test_ref_is_hashable_picklable_comparable_and_printed_like_erlang() -> None:
    ref = otp.make_ref()
    other = otp.make_ref()
    assert isinstance(ref, otp.Ref)
    assert ref != other
    copy = pickle.loads(pickle.dumps(ref))
    assert copy == ref and hash(copy) == hash(ref) and type(copy) is otp.Ref
    assert {ref: 1}[copy] == 1
    assert re.fullmatch(r"#Ref<0(\.\d+)+>", repr(ref)), repr(ref)


def test_pid_and_ref_survive_a_trip_through_another_process() -> None:
    me = otp.self_pid()
    ref = otp.make_ref()
    _, mref = otp.spawn_monitor(emit, me, [("back", me, ref)])
    assert otp.receive(lambda m: m[0] == "back", 5.0) == ("back", me, ref)
    down_of(mref)


# ------------------------------------------------------------------- spawn


def test_spawn_runs_the_function_with_its_arguments_in_another_os_process() -> None:
    me = otp.self_pid()
    pid, ref = otp.spawn_monitor(report, me, 1, "two", three=[3])
    _, child, ospid, args, kwargs = otp.receive(lambda m: m[0] == "report", 5.0)
    assert child == pid
    assert ospid != os.getpid()
    assert args == (1, "two")
    assert kwargs == {"three": [3]}
    assert down_of(ref) == otp.DOWN(ref, pid, "normal")


def test_spawn_returns_at_once_and_the_pid_is_usable_before_the_child_runs() -> None:
    pid = otp.spawn(echo)
    assert otp.is_process_alive(pid)
    ping(pid)
    stop(pid)
    assert not otp.is_process_alive(pid)


def test_spawn_monitor_returns_pid_and_a_monitor_from_birth() -> None:
    pid, ref = otp.spawn_monitor(emit, otp.self_pid(), [])
    assert isinstance(ref, otp.Ref)
    assert down_of(ref) == otp.DOWN(ref, pid, "normal")


def test_spawn_link_links_the_child_to_the_caller_from_birth() -> None:
    otp.trap_exit(True)
    pid = otp.spawn_link(echo)
    assert otp.process_info(pid)["links"] == [otp.self_pid()]
    otp.send(pid, "stop")
    exit_msg = otp.receive(lambda m: type(m) is otp.EXIT, 5.0)
    assert exit_msg == otp.EXIT(pid, "normal")


# ---------------------------------------------------------- send / receive


def test_send_and_receive_between_main_program_and_a_process() -> None:
    pid = otp.spawn(echo)
    for _ in range(3):
        ping(pid)
    stop(pid)


def test_selective_receive_leaves_rejected_messages_queued_in_arrival_order() -> None:
    me = otp.self_pid()
    _, ref = otp.spawn_monitor(emit, me, list(range(1, 11)))
    down_of(ref)  # all ten were sent before the DOWN, on the same connection

    evens = [otp.receive(lambda m: type(m) is int and m % 2 == 0, 5.0) for _ in range(5)]
    assert evens == [2, 4, 6, 8, 10]
    with pytest.raises(otp.ReceiveTimeout):
        otp.receive(lambda m: m == "nothing like this", 0.05)
    assert [otp.receive(timeout=5.0) for _ in range(5)] == [1, 3, 5, 7, 9]


def test_receive_timeout_raises_receive_timeout() -> None:
    start = time.monotonic()
    with pytest.raises(otp.ReceiveTimeout):
        otp.receive(timeout=0.05)
    elapsed = time.monotonic() - start
    assert 0.04 <= elapsed < 2.0
    assert issubclass(otp.ReceiveTimeout, TimeoutError)
    assert issubclass(otp.ReceiveTimeout, otp.OTPError)


def test_receive_with_zero_timeout_polls_what_already_arrived() -> None:
    start = time.monotonic()
    with pytest.raises(otp.ReceiveTimeout):
        otp.receive(timeout=0)
    assert time.monotonic() - start < 0.5

    pid, ref = otp.spawn_monitor(emit, otp.self_pid(), ["already here"])
    # The child wrote its message before it ended: once it is dead, the bytes
    # wait in our socket, unread. timeout=0 must still see them.
    wait_until(lambda: not otp.is_process_alive(pid), 5.0, "the child to end")
    assert otp.receive(lambda m: m == "already here", 0) == "already here"
    down_of(ref)


def test_messages_from_one_sender_arrive_in_send_order() -> None:
    n = 20_000
    _, ref = otp.spawn_monitor(emit_range, otp.self_pid(), 0, n)
    got = [otp.receive(lambda m: type(m) is tuple and m[0] == 0, 10.0)[1] for _ in range(n)]
    assert got == list(range(n))
    down_of(ref)


def test_each_senders_messages_keep_their_order_when_several_senders_interleave() -> None:
    n = 3000
    me = otp.self_pid()
    refs = [otp.spawn_monitor(emit_range, me, tag, n)[1] for tag in range(3)]
    seen: dict[int, list[int]] = {0: [], 1: [], 2: []}
    for _ in range(3 * n):
        tag, i = otp.receive(lambda m: type(m) is tuple and len(m) == 2 and m[0] in seen, 10.0)
        seen[tag].append(i)
    for tag in seen:
        assert seen[tag] == list(range(n)), f"sender {tag} out of order"
    for ref in refs:
        down_of(ref)


# ------------------------------------------------------------------- titles


def test_every_process_title_starts_with_otp() -> None:
    me = otp.self_pid()
    pid = otp.spawn(echo)
    middle = otp.spawn(spawn_grandchild, me)
    _, grandchild = otp.receive(lambda m: type(m) is tuple and m[0] == "grandchild", 5.0)
    for p in (pid, grandchild):
        ping(p)  # the title is set before the function runs: it is set now

    for p in (pid, middle, grandchild):
        title = title_of(p.id)
        assert title.startswith("otp: "), title
        assert str(p) in title, title
    root = psutil.Process(pid.id).ppid()  # the node's root forked it
    assert title_of(root).startswith("otp: "), title_of(root)
    assert psutil.Process(grandchild.id).ppid() == middle.id  # the spawner is the OS parent

    stop(grandchild)
    stop(middle)
    stop(pid)


# ---------------------------------------------------- code from __main__

MAIN_SCRIPT = """
import os
import sys

sys.path.insert(0, {repo!r})
import otp


class Point:
    # A class of __main__, defined after `import otp`.
    def __init__(self, x, y):
        self.x, self.y = x, y

    def norm2(self):
        return self.x * self.x + self.y * self.y

    def __eq__(self, other):
        return type(other) is Point and (other.x, other.y) == (self.x, self.y)


def describe(parent):
    # A function of __main__: receives a Point, answers with what it sees.
    p = otp.receive(timeout=5)
    otp.send(parent, ("described", type(p).__name__, p.norm2(), p))


me = otp.self_pid()  # the node starts here


def late_function(parent, x):
    # Defined after the node started: its root process never saw it.
    otp.send(parent, ("late", x * 2))


def make_adder(n):
    def add(x):
        otp.send(me, ("closure", x + n))
    return add


pid = otp.spawn(describe, me)
otp.send(pid, Point(3, 4))
tag, name, norm2, back = otp.receive(timeout=5)
print(tag, name, norm2, back == Point(3, 4), type(back) is Point, flush=True)

otp.spawn(lambda: otp.send(me, ("lambda", os.getpid())))
tag, ospid = otp.receive(timeout=5)
print(tag, ospid != os.getpid(), flush=True)

otp.spawn(make_adder(10), 5)
print(*otp.receive(timeout=5), flush=True)

otp.spawn(late_function, me, 21)
print(*otp.receive(timeout=5), flush=True)

otp.spawn(lambda p: otp.send(me, ("arg", p.norm2())), Point(1, 2))
print(*otp.receive(timeout=5), flush=True)
"""

LATE_CLASS_SCRIPT = """
import sys

sys.path.insert(0, {repo!r})
import otp

me = otp.self_pid()  # the node starts here, before the class exists


class Late:
    def __init__(self, v):
        self.v = v


def relay(parent):
    m = otp.receive(timeout=2)
    otp.send(parent, ("relayed", type(m).__name__, m.v))


pid = otp.spawn(relay, me)
otp.send(pid, Late(7))
print(*otp.receive(timeout=2), flush=True)
"""


def run_script(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(source).format(repo=REPO))
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=40)


def test_main_module_functions_classes_lambdas_and_closures_can_be_spawned_and_sent(
    tmp_path: Path,
) -> None:
    done = run_script(tmp_path, MAIN_SCRIPT)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "described Point 25 True True"
    assert lines[1] == "lambda True"
    assert lines[2] == "closure 15"
    assert lines[3] == "late 42"
    assert lines[4] == "arg 5"
    assert len(lines) == 5


def test_instance_of_main_class_defined_after_node_start_can_be_sent(tmp_path: Path) -> None:
    done = run_script(tmp_path, LATE_CLASS_SCRIPT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["relayed Late 7"]


# --------------------------- a child does not hold its parent's connections


def _sockets_of(ospid: int, lowest: int = 0) -> set[str]:
    out = set()
    for fd in os.listdir(f"/proc/{ospid}/fd"):
        if int(fd) < lowest:
            continue
        try:
            target = os.readlink(f"/proc/{ospid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            out.add(target)
    return out


def _hub(main: otp.Pid, n: int) -> None:
    # Connected to n processes (a send opens a connection), then a child.
    peers = [otp.spawn(echo) for _ in range(n)]
    for p in peers:
        otp.send(p, ("ping", otp.self_pid()))
        otp.receive(lambda m: type(m) is tuple and m[0] == "pong", 10)
    child = otp.spawn(echo)
    otp.send(child, ("ping", otp.self_pid()))
    otp.receive(lambda m: type(m) is tuple and m[0] == "pong", 10)
    # The runtime's own sockets only: those below FD_BASE are the program's
    # (the log socket every process inherits on purpose, say).
    mine = _sockets_of(os.getpid(), lowest=_runtime.FD_BASE)
    otp.send(main, ("hub", mine, child, peers))
    otp.receive(lambda m: m == "stop")
    for p in [*peers, child]:
        otp.send(p, "stop")


def test_a_child_holds_none_of_its_parents_sockets_however_many_it_has() -> None:
    # Were a parent's socket left open in its child, the parent's peers would
    # not see it die while the child lives (deaths are seen as closes).
    me = otp.self_pid()
    hub = otp.spawn(_hub, me, 40)
    _, hub_sockets, child, peers = otp.receive(lambda m: type(m) is tuple and m[0] == "hub", 30)
    try:
        assert len(hub_sockets) > 40
        child_sockets = _sockets_of(child.id)
        # The child's own: its inbox, and its connection to the hub (the
        # other end of which the hub holds: a different socket).
        assert not (child_sockets & hub_sockets), child_sockets & hub_sockets
    finally:
        mon = otp.monitor(hub)
        otp.send(hub, "stop")
        otp.receive(lambda m: type(m) is otp.DOWN and m.ref == mon, 10)
        for p in [*peers, child]:
            wait_until(lambda p=p: not otp.is_process_alive(p), timeout=10)
