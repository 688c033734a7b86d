"""Kernel: links, monitors, exit signals and exit reasons (otp-semantics.md
section 5): link/unlink, trap_exit and EXIT messages, monitor/demonitor and
DOWN, "noproc", "normal" / "kill" / "killed", reasons propagating along a chain
of links, and deaths the OS reports (SIGKILL, a segfault)."""

from __future__ import annotations

import ctypes
import faulthandler
import os
import signal
import time
from typing import Any

import pytest

import otp

# ------------------------------------------------------------ process bodies


def agent(parent: otp.Pid) -> None:
    """A process driven by commands from the test.

    A command `(verb, *args)` is answered `("ok", self, result)`; EXIT and DOWN
    messages and anything unknown are forwarded as `("got", self, message)`.
    "link", "unlink" and "monitor" also ping their target over the connection they use:
    the target's pong to the test proves it has read the LINK (or accepted
    the connection), so a death that follows cannot overtake it.
    """
    me = otp.self_pid()
    while True:
        m = otp.receive()
        if type(m) in (otp.EXIT, otp.DOWN) or type(m) is not tuple or not m:
            otp.send(parent, ("got", me, m))
            continue
        verb, args = m[0], m[1:]
        result: Any = None
        if verb == "ping":
            result = "pong"
        elif verb == "link":
            otp.link(args[0])
            otp.send(args[0], ("ping",))
        elif verb == "unlink":
            otp.unlink(args[0])
            otp.send(args[0], ("ping",))
        elif verb == "trap":
            result = otp.trap_exit(args[0])
        elif verb == "monitor":
            result = otp.monitor(args[0])
            otp.send(args[0], ("ping",))
        elif verb == "exit":
            otp.exit(args[0], args[1])
        elif verb == "spawn_link_agent":
            result = otp.spawn_link(agent, parent)
        elif verb == "register":
            otp.register(args[0])
        elif verb == "raise":
            raise otp.Exit(args[0])
        elif verb == "crash":
            raise ValueError(args[0])
        elif verb == "quiet":
            faulthandler.disable()  # die of a SIGSEGV itself, without a dump
        elif verb == "segfault":
            faulthandler.disable()
            ctypes.string_at(0)
        elif verb == "return":
            return
        else:
            otp.send(parent, ("got", me, m))
            continue
        otp.send(parent, ("ok", me, result))


def returns_at_once() -> None:
    pass


def raises_exit(reason: Any) -> None:
    raise otp.Exit(reason)


def crashes(text: str) -> None:
    raise ValueError(text)


# ------------------------------------------------------------------ helpers


def start_agent() -> otp.Pid:
    return otp.spawn(agent, otp.self_pid())


def ask(pid: otp.Pid, *command: Any) -> Any:
    """Send a command to an agent and return its result."""
    otp.send(pid, command)
    m = otp.receive(lambda m: type(m) is tuple and len(m) == 3 and m[:2] == ("ok", pid), 5.0)
    return m[2]


def link(linker: otp.Pid, target: otp.Pid) -> None:
    """`linker` links to the agent `target`; returns once `target` has the link."""
    ask(linker, "link", target)
    otp.receive(lambda m: m == ("ok", target, "pong"), 5.0)


def monitor(watcher: otp.Pid, target: otp.Pid) -> otp.Ref:
    """`watcher` monitors the agent `target`; returns the monitor's Ref."""
    ref = ask(watcher, "monitor", target)
    otp.receive(lambda m: m == ("ok", target, "pong"), 5.0)
    return ref


def forwarded(pid: otp.Pid, timeout: float = 5.0) -> Any:
    """The next message the agent `pid` forwarded to us."""
    m = otp.receive(lambda m: type(m) is tuple and len(m) == 3 and m[:2] == ("got", pid), timeout)
    return m[2]


def down_of(ref: otp.Ref, timeout: float = 5.0) -> otp.DOWN:
    m = otp.receive(lambda m: type(m) is otp.DOWN and m.ref == ref, timeout)
    assert type(m) is otp.DOWN
    return m


def reason_of(ref: otp.Ref) -> Any:
    return down_of(ref).reason


def finish(*pids: otp.Pid) -> None:
    """End agents that are still alive (untrappably) and wait for their DOWNs."""
    for pid in pids:
        ref = otp.monitor(pid)
        otp.exit(pid, "kill")
        assert reason_of(ref) in ("killed", "noproc")


def dead_pid() -> otp.Pid:
    pid, ref = otp.spawn_monitor(returns_at_once)
    down_of(ref)
    return pid


# -------------------------------------------------------------- exit reasons


def test_a_process_that_returns_ends_normal() -> None:
    pid, ref = otp.spawn_monitor(returns_at_once)
    assert down_of(ref) == otp.DOWN(ref, pid, "normal")


@pytest.mark.parametrize("reason", ["shutdown", ("shutdown", "done"), "boom", {"any": ["term"]}])
def test_raise_exit_ends_the_process_with_that_reason(reason: Any) -> None:
    pid, ref = otp.spawn_monitor(raises_exit, reason)
    assert down_of(ref) == otp.DOWN(ref, pid, reason)


def test_an_uncaught_exception_ends_the_process_with_a_crash() -> None:
    pid, ref = otp.spawn_monitor(crashes, "bad input")
    down = down_of(ref)
    assert down.pid == pid
    reason = down.reason
    assert isinstance(reason, otp.Crash)
    assert reason == otp.Crash("ValueError", "bad input")  # compared by type and message
    assert reason != otp.Crash("ValueError", "other input")
    assert (reason.type, reason.message) == ("ValueError", "bad input")
    assert "ValueError: bad input" in reason.traceback
    assert isinstance(reason.exception, ValueError)


# -------------------------------------------------------------------- links


def test_link_carries_a_non_normal_reason_both_ways_and_kills_with_the_same_reason() -> None:
    for dying_side in ("target", "linker"):
        a, b = start_agent(), start_agent()
        link(b, a)
        ra, rb = otp.monitor(a), otp.monitor(b)
        otp.send(a if dying_side == "target" else b, ("raise", "boom"))
        assert reason_of(ra) == "boom"
        assert reason_of(rb) == "boom"


def test_link_is_idempotent_and_unlink_removes_it() -> None:
    a, b = start_agent(), start_agent()
    link(b, a)
    link(b, a)
    assert otp.process_info(b)["links"] == [a]
    assert otp.process_info(a)["links"] == [b]
    ask(b, "unlink", a)
    otp.receive(lambda m: m == ("ok", a, "pong"), 5.0)
    assert otp.process_info(b)["links"] == []
    assert otp.process_info(a)["links"] == []

    ra = otp.monitor(a)
    otp.send(a, ("raise", "boom"))
    assert reason_of(ra) == "boom"
    assert ask(b, "ping") == "pong"  # the former link had no effect
    finish(b)


def test_normal_exit_is_not_propagated_to_a_non_trapping_linked_process() -> None:
    a, b = start_agent(), start_agent()
    link(b, a)
    ra = otp.monitor(a)
    otp.send(a, ("return",))
    assert reason_of(ra) == "normal"
    assert ask(b, "ping") == "pong"
    finish(b)


def test_a_trapping_process_gets_exit_messages_for_every_reason_and_lives() -> None:
    for reason in ("normal", "boom", ("shutdown", 1)):
        a, b = start_agent(), start_agent()
        assert ask(b, "trap", True) is False
        link(b, a)
        otp.send(a, ("raise", reason))
        assert forwarded(b) == otp.EXIT(a, reason)
        assert ask(b, "ping") == "pong"
        assert ask(b, "trap", False) is True  # trap_exit returns the previous value
        finish(b)


def test_link_to_a_dead_pid_raises_noproc_unless_trapping() -> None:
    dead = dead_pid()
    with pytest.raises(otp.NoProc):
        otp.link(dead)
    assert otp.trap_exit(True) is False
    otp.link(dead)
    assert otp.receive(lambda m: type(m) is otp.EXIT, 5.0) == otp.EXIT(dead, "noproc")


def test_main_program_linked_to_a_dying_process_gets_otp_exit_when_not_trapping() -> None:
    pid = otp.spawn_link(agent, otp.self_pid())
    otp.send(pid, ("raise", "boom"))
    with pytest.raises(otp.Exit) as info:
        otp.receive(timeout=5.0)
    assert info.value.reason == "boom"
    assert not otp.is_process_alive(pid)


def test_exit_reason_propagates_along_a_chain_of_links() -> None:
    first = start_agent()
    chain = [first]
    for _ in range(4):
        chain.append(ask(chain[-1], "spawn_link_agent"))
    refs = [otp.monitor(pid) for pid in chain]

    otp.send(chain[-1], ("raise", ("chain", "broken")))
    for pid, ref in zip(chain, refs, strict=True):
        assert down_of(ref) == otp.DOWN(ref, pid, ("chain", "broken"))


def test_a_trapping_process_stops_the_propagation_along_a_chain() -> None:
    first = start_agent()
    ask(first, "trap", True)
    chain = [first]
    for _ in range(3):
        chain.append(ask(chain[-1], "spawn_link_agent"))
    refs = [otp.monitor(pid) for pid in chain[1:]]

    otp.send(chain[2], ("raise", "boom"))  # in the middle: spreads both ways
    for ref in refs:
        assert reason_of(ref) == "boom"
    assert forwarded(first) == otp.EXIT(chain[1], "boom")
    assert ask(first, "ping") == "pong"
    finish(first)


# ------------------------------------------------------------- exit signals


def test_exit_signal_normal_is_ignored_by_a_non_trapping_process() -> None:
    pid = start_agent()
    otp.exit(pid, "normal")
    assert ask(pid, "ping") == "pong"
    finish(pid)


def test_exit_signal_with_another_reason_ends_a_non_trapping_process_with_it() -> None:
    pid = start_agent()
    ref = otp.monitor(pid)
    otp.exit(pid, "shutdown")
    assert down_of(ref) == otp.DOWN(ref, pid, "shutdown")


def test_exit_signals_become_exit_messages_for_a_trapping_process() -> None:
    me = otp.self_pid()
    pid = start_agent()
    ask(pid, "trap", True)
    for reason in ("normal", "shutdown", ("shutdown", "x"), "boom"):
        otp.exit(pid, reason)
        assert forwarded(pid) == otp.EXIT(me, reason)
    # The sender of the signal is who the EXIT names.
    other = start_agent()
    ask(other, "exit", pid, "from other")
    assert forwarded(pid) == otp.EXIT(other, "from other")
    assert ask(pid, "ping") == "pong"
    finish(pid, other)


def test_exit_self_normal_ends_the_caller() -> None:
    pid = start_agent()
    ref = otp.monitor(pid)
    otp.send(pid, ("exit", pid, "normal"))
    assert reason_of(ref) == "normal"


def test_kill_is_untrappable_and_seen_as_killed() -> None:
    victim = start_agent()
    ask(victim, "trap", True)
    watcher = start_agent()  # trapping, linked: gets EXIT killed
    ask(watcher, "trap", True)
    link(watcher, victim)
    bystander = start_agent()  # not trapping, linked: dies killed
    link(bystander, victim)
    rv, rb = otp.monitor(victim), otp.monitor(bystander)

    otp.exit(victim, "kill")
    assert down_of(rv) == otp.DOWN(rv, victim, "killed")
    assert forwarded(watcher) == otp.EXIT(victim, "killed")
    assert reason_of(rb) == "killed"
    finish(watcher)


def test_a_process_that_exits_with_reason_kill_propagates_a_trappable_kill() -> None:
    # Erlang's exit(kill) from the process itself: links see `kill`, which
    # is an ordinary, trappable reason there (otp-semantics.md 5.2).
    a, b = start_agent(), start_agent()
    ask(b, "trap", True)
    link(b, a)
    ra = otp.monitor(a)
    otp.send(a, ("raise", "kill"))
    assert reason_of(ra) == "kill"
    assert forwarded(b) == otp.EXIT(a, "kill")
    assert ask(b, "ping") == "pong"
    finish(b)


# ----------------------------------------------------------------- monitors


def test_monitor_delivers_one_down_per_monitor() -> None:
    pid = start_agent()
    r1, r2 = otp.monitor(pid), otp.monitor(pid)
    assert r1 != r2
    otp.send(pid, ("raise", "bye"))
    assert down_of(r1) == otp.DOWN(r1, pid, "bye")
    assert down_of(r2) == otp.DOWN(r2, pid, "bye")
    with pytest.raises(otp.ReceiveTimeout):
        otp.receive(lambda m: type(m) is otp.DOWN, 0.05)


def test_demonitor_removes_the_monitor_and_flush_removes_a_delivered_down() -> None:
    pid = start_agent()
    r1, r2, r3 = otp.monitor(pid), otp.monitor(pid), otp.monitor(pid)
    assert otp.demonitor(r1) is True
    otp.exit(pid, "kill")
    assert down_of(r3).reason == "killed"
    # r2's DOWN came with r3's and waits in the mailbox; r1 had none.
    assert otp.process_info(otp.self_pid())["message_queue_len"] == 1
    otp.demonitor(r2, flush=True)
    assert otp.process_info(otp.self_pid())["message_queue_len"] == 0
    with pytest.raises(otp.ReceiveTimeout):
        otp.receive(lambda m: type(m) is otp.DOWN, 0)


def test_demonitor_before_the_death_means_no_down() -> None:
    pid = start_agent()
    ref = otp.monitor(pid)
    assert otp.demonitor(ref, flush=True) is True
    keep = otp.monitor(pid)
    otp.send(pid, ("raise", "bye"))
    assert reason_of(keep) == "bye"
    with pytest.raises(otp.ReceiveTimeout):
        otp.receive(lambda m: type(m) is otp.DOWN and m.ref == ref, 0)


def test_monitor_of_a_dead_pid_gives_a_noproc_down() -> None:
    dead = dead_pid()
    ref = otp.monitor(dead)
    assert down_of(ref) == otp.DOWN(ref, dead, "noproc")


def test_monitor_of_an_unknown_name_gives_a_noproc_down_naming_name_and_node() -> None:
    ref = otp.monitor("nobody_has_this_name")
    node = otp.self_pid().node
    assert down_of(ref) == otp.DOWN(ref, ("nobody_has_this_name", node), "noproc")


def test_monitor_by_name_reports_name_and_node_in_the_down() -> None:
    pid = start_agent()
    otp.register("watched", pid)
    ref = otp.monitor("watched")
    otp.send(pid, ("raise", "bye"))
    assert down_of(ref) == otp.DOWN(ref, ("watched", otp.self_pid().node), "bye")


def test_a_process_monitors_another_and_gets_its_down() -> None:
    watcher, target = start_agent(), start_agent()
    ref = monitor(watcher, target)
    otp.send(target, ("raise", "bye"))
    assert forwarded(watcher) == otp.DOWN(ref, target, "bye")
    finish(watcher)


# ------------------------------------------------ deaths the OS reports


def _os_death(how: str, victim: otp.Pid) -> None:
    if how == "sigkill":
        os.kill(victim.id, signal.SIGKILL)
    elif how == "sigsegv":
        ask(victim, "quiet")
        os.kill(victim.id, signal.SIGSEGV)
    else:
        otp.send(victim, ("segfault",))


@pytest.mark.parametrize("how", ["sigkill", "sigsegv", "null_pointer"])
def test_death_by_signal_is_seen_by_links_and_monitors_as_killed(how: str) -> None:
    me = otp.self_pid()
    otp.trap_exit(True)
    victim = otp.spawn_link(agent, me)
    ask(victim, "ping")  # running its function: a segfault is its own
    watcher = start_agent()
    ask(watcher, "trap", True)
    link(watcher, victim)
    bystander = start_agent()
    link(bystander, victim)
    rv, rb = otp.monitor(victim), otp.monitor(bystander)

    start = time.monotonic()
    _os_death(how, victim)
    down = down_of(rv)
    elapsed = time.monotonic() - start
    assert not otp.is_process_alive(victim)  # as soon as the DOWN is in
    assert down == otp.DOWN(rv, victim, "killed")
    assert elapsed < 1.0, f"the death took {elapsed:.3f} s to be seen"  # expected: ~1 ms
    assert otp.receive(lambda m: type(m) is otp.EXIT, 5.0) == otp.EXIT(victim, "killed")
    assert forwarded(watcher) == otp.EXIT(victim, "killed")
    assert reason_of(rb) == "killed"
    finish(watcher)


def test_is_process_alive_is_false_once_the_down_is_received() -> None:
    for _ in range(20):
        pid = start_agent()
        ref = otp.monitor(pid)
        assert otp.is_process_alive(pid)
        otp.send(pid, ("return",))
        down_of(ref)
        assert not otp.is_process_alive(pid)
