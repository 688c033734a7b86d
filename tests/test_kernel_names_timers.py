"""Kernel: registered names (register, unregister, whereis, registered, send by
name), make_ref, send_after / cancel_timer, processes() and process_info()."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

import otp
from otp.testing import wait_until

# ------------------------------------------------------------ process bodies


def agent(parent: otp.Pid) -> None:
    """A process driven by commands: `(verb, *args)` is answered
    `("ok", self, result)`; anything else is forwarded as `("got", self, m)`."""
    me = otp.self_pid()
    while True:
        m = otp.receive()
        if type(m) is not tuple or not m or type(m) in (otp.EXIT, otp.DOWN):
            otp.send(parent, ("got", me, m))
            continue
        verb, args = m[0], m[1:]
        result: Any = None
        if verb == "ping":
            result = "pong"
        elif verb == "register":
            otp.register(args[0])
        elif verb == "whereis":
            result = otp.whereis(args[0])
        elif verb == "link":
            otp.link(args[0])
            otp.send(args[0], ("ping",))  # the target reads LINK before this
        elif verb == "monitor":
            result = otp.monitor(args[0])
        elif verb == "refs":
            result = [otp.make_ref() for _ in range(args[0])]
        elif verb == "send_after":
            result = otp.send_after(args[0], args[1], args[2])
        elif verb == "wait_for":
            # Selective receive: everything else stays queued meanwhile.
            result = otp.receive(lambda x, token=args[0]: x == token)
        elif verb == "return":
            return
        else:
            otp.send(parent, ("got", me, m))
            continue
        otp.send(parent, ("ok", me, result))


# ------------------------------------------------------------------ helpers


def start_agent() -> otp.Pid:
    return otp.spawn(agent, otp.self_pid())


def ask(pid: otp.Pid, *command: Any, timeout: float = 5.0) -> Any:
    otp.send(pid, command)
    m = otp.receive(lambda m: type(m) is tuple and len(m) == 3 and m[:2] == ("ok", pid), timeout)
    return m[2]


def forwarded(pid: otp.Pid, timeout: float = 5.0) -> Any:
    m = otp.receive(lambda m: type(m) is tuple and len(m) == 3 and m[:2] == ("got", pid), timeout)
    return m[2]


def down_of(ref: otp.Ref, timeout: float = 5.0) -> otp.DOWN:
    m = otp.receive(lambda m: type(m) is otp.DOWN and m.ref == ref, timeout)
    assert type(m) is otp.DOWN
    return m


def end(pid: otp.Pid, how: str = "return") -> Any:
    """End an agent: "return" (normal), "kill" (exit signal) or "sigkill"; its reason."""
    ref = otp.monitor(pid)
    if how == "return":
        otp.send(pid, ("return",))
    elif how == "kill":
        otp.exit(pid, "kill")
    else:
        os.kill(pid.id, signal.SIGKILL)
    return down_of(ref).reason


# -------------------------------------------------------------------- names


def test_register_whereis_registered_and_unregister() -> None:
    pid = start_agent()
    assert otp.whereis("svc") is None
    otp.register("svc", pid)
    assert otp.whereis("svc") == pid
    assert "svc" in otp.registered()
    assert otp.process_info(pid)["registered_name"] == "svc"

    otp.send("svc", ("ping",))  # send by name
    assert otp.receive(lambda m: m == ("ok", pid, "pong"), 5.0)

    otp.unregister("svc")
    assert otp.whereis("svc") is None
    assert "svc" not in otp.registered()
    with pytest.raises(otp.BadArg):
        otp.unregister("svc")
    end(pid)


def test_a_process_registers_itself_and_others_find_it() -> None:
    a, b = start_agent(), start_agent()
    ask(a, "register", "self_named")
    assert otp.whereis("self_named") == a
    assert ask(b, "whereis", "self_named") == a
    assert otp.registered() == ["self_named"]
    end(a)
    end(b)


def test_main_program_can_register_a_name() -> None:
    otp.register("the_main")
    assert otp.whereis("the_main") == otp.self_pid()
    otp.send("the_main", "to myself")
    assert otp.receive(timeout=5.0) == "to myself"


def test_one_name_per_process_and_a_taken_name_raises_badarg() -> None:
    a, b = start_agent(), start_agent()
    otp.register("first", a)
    with pytest.raises(otp.BadArg):
        otp.register("second", a)  # a already has a name
    with pytest.raises(otp.BadArg):
        otp.register("first", b)  # the name is taken
    assert otp.whereis("first") == a
    assert otp.whereis("second") is None
    assert issubclass(otp.BadArg, otp.OTPError)
    end(a)
    end(b)


def test_register_of_a_dead_pid_or_an_invalid_name_raises_badarg() -> None:
    pid = start_agent()
    end(pid)
    with pytest.raises(otp.BadArg):
        otp.register("ghost", pid)
    assert otp.whereis("ghost") is None
    with pytest.raises(otp.BadArg):
        otp.register("undefined", otp.self_pid())


@pytest.mark.parametrize("how", ["return", "kill", "sigkill"])
def test_a_name_is_freed_when_its_process_dies(how: str) -> None:
    pid = start_agent()
    otp.register("mortal", pid)
    end(pid, how)
    assert otp.whereis("mortal") is None
    assert "mortal" not in otp.registered()
    with pytest.raises(otp.NoProc):
        otp.send("mortal", "hello?")
    heir = start_agent()
    otp.register("mortal", heir)  # free for the taking
    assert otp.whereis("mortal") == heir
    end(heir)


def test_send_to_an_unregistered_name_raises_noproc() -> None:
    with pytest.raises(otp.NoProc):
        otp.send("no_such_name", "hello")


def test_send_to_a_dead_pid_is_silently_dropped() -> None:
    pid = start_agent()
    end(pid)
    otp.send(pid, "into the void")  # no exception, as in Erlang
    with pytest.raises(otp.ReceiveTimeout):
        otp.receive(timeout=0)


# --------------------------------------------------------------------- refs


def test_make_ref_is_unique_within_and_across_processes() -> None:
    mine = [otp.make_ref() for _ in range(10_000)]
    a, b = start_agent(), start_agent()
    theirs = ask(a, "refs", 1000) + ask(b, "refs", 1000)
    everything = mine + theirs
    assert len(set(everything)) == len(everything)
    end(a)
    end(b)


# ------------------------------------------------------------------- timers


def test_send_after_delivers_the_message_after_the_delay() -> None:
    start = time.monotonic()
    tref = otp.send_after(0.05, otp.self_pid(), "tick")
    assert isinstance(tref, otp.TimerRef)
    assert otp.receive(timeout=5.0) == "tick"
    assert time.monotonic() - start >= 0.045


def test_send_after_to_a_registered_name() -> None:
    pid = start_agent()
    otp.register("timed", pid)
    otp.send_after(0.01, "timed", "by name")
    assert forwarded(pid) == "by name"
    end(pid)


def test_timers_of_a_process_fire_while_it_waits_in_receive() -> None:
    pid = start_agent()
    ask(pid, "send_after", 0.02, pid, "own tick")
    assert forwarded(pid) == "own tick"
    end(pid)


def test_cancel_timer_returns_the_remaining_time_and_the_timer_never_fires() -> None:
    me = otp.self_pid()
    long = otp.send_after(10.0, me, "late")
    remaining = otp.cancel_timer(long)
    assert isinstance(remaining, float) and 9.0 < remaining <= 10.0
    assert otp.cancel_timer(long) is False  # already cancelled

    short = otp.send_after(0.01, me, "cancelled")
    assert otp.cancel_timer(short) is not False
    fired = otp.send_after(0.05, me, "fired")
    # Timers fire in deadline order: had "cancelled" fired, it would come first.
    assert otp.receive(timeout=5.0) == "fired"
    assert otp.cancel_timer(fired) is False  # already fired
    with pytest.raises(otp.ReceiveTimeout):
        otp.receive(timeout=0)


def test_send_after_of_an_unpicklable_message_raises_at_once() -> None:
    with pytest.raises(otp.NotPicklable):
        otp.send_after(0.01, otp.self_pid(), (x for x in ()))


# ------------------------------------------------------------ introspection


def test_processes_lists_the_live_processes_of_the_node() -> None:
    me = otp.self_pid()
    a, b = start_agent(), start_agent()
    listed = otp.processes()
    assert {me, a, b} <= set(listed)
    assert all(isinstance(p, otp.Pid) for p in listed)
    end(a)
    assert a not in otp.processes()
    assert b in otp.processes()
    end(b)


def test_process_info_reports_the_documented_keys() -> None:
    me = otp.self_pid()
    pid, peer, watched = start_agent(), start_agent(), start_agent()
    otp.register("inspected", pid)
    ask(pid, "link", peer)
    otp.receive(lambda m: m == ("ok", peer, "pong"), 5.0)
    ask(pid, "monitor", watched)

    info = otp.process_info(pid)
    assert info is not None
    for key in (
        "os_pid",
        "registered_name",
        "status",
        "message_queue_len",
        "links",
        "monitors",
        "memory",
    ):
        assert key in info, key
    assert info["os_pid"] == pid.id
    assert info["registered_name"] == "inspected"
    assert info["links"] == [peer]
    assert info["monitors"] == [watched]
    assert isinstance(info["memory"], int) and info["memory"] > 0
    assert info["message_queue_len"] == 0
    assert otp.process_info(peer)["registered_name"] is None
    assert otp.process_info(me)["os_pid"] == os.getpid()

    for p in (pid, peer, watched):
        end(p, "kill")


def test_process_info_shows_a_process_blocked_in_receive_as_waiting_with_its_queue() -> None:
    pid = start_agent()
    wait_until(lambda: otp.process_info(pid)["status"] == "waiting", 5.0, "status waiting")

    otp.send(pid, ("wait_for", "token"))
    for i in range(3):
        otp.send(pid, ("queued", i))
    wait_until(
        lambda: otp.process_info(pid)["message_queue_len"] == 3, 5.0, "three queued messages"
    )
    info = otp.process_info(pid)
    assert info["status"] == "waiting"

    otp.send(pid, "token")
    assert otp.receive(lambda m: m == ("ok", pid, "token"), 5.0)
    # The rejected messages stayed queued, in order, for the agent's next receives.
    assert [forwarded(pid) for _ in range(3)] == [("queued", 0), ("queued", 1), ("queued", 2)]
    end(pid)


def test_process_info_of_a_dead_pid_is_none() -> None:
    pid = start_agent()
    end(pid)
    assert otp.process_info(pid) is None
