"""GenServer against API.md and otp-semantics.md section 2.

Every server here is a real OS process. The servers report what they do to
the test process by message (they are given its Pid in `init`), so the tests
wait on messages, monitors and replies, never on sleeps. A server that a test
means to crash or kill is started unlinked (`start`), so its death does not
take the test process with it; a linked one is stopped with
`gen_server.stop`.

The log checks (crash reports, unexpected messages, trace) live in
`test_gen_server_logs.py`, which runs small scripts in a subprocess and reads
their stderr, as a user would see it.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import psutil
import pytest

import otp
from behaviours import GenServer, Ignore, Init, NoReply, Reply, Stop, gen_server
from otp.testing import wait_until

# Generous: the machine is shared and loaded. "At once" below means well
# before a 30 s call timeout, not a tight figure.
WAIT = 10.0
AT_ONCE = 5.0


# ----------------------------------------------------------------- helpers


def _down(ref: otp.Ref, timeout: float = WAIT) -> otp.DOWN:
    msg = otp.receive(lambda m: type(m) is otp.DOWN and m.ref == ref, timeout=timeout)
    assert isinstance(msg, otp.DOWN)
    return msg


def _tagged(tag: str, timeout: float = WAIT) -> tuple[Any, ...]:
    """The next message `(tag, ...)` from a server."""
    msg = otp.receive(lambda m: type(m) is tuple and m and m[0] == tag, timeout=timeout)
    assert isinstance(msg, tuple)
    return msg


def _no_message(tag: str, timeout: float = 0.3) -> None:
    with pytest.raises(otp.ReceiveTimeout):
        otp.receive(lambda m: type(m) is tuple and m and m[0] == tag, timeout=timeout)


def _kill(pid: otp.Pid) -> None:
    """SIGKILL an unlinked process and wait until it is gone."""
    ref = otp.monitor(pid)
    os.kill(pid.id, signal.SIGKILL)
    _down(ref)


# ------------------------------------------------- callback modules (servers)


class Recorder(GenServer):
    """A scriptable server: requests say what to do; it reports to `test`.

    State: {"test": Pid, "log": [...], "pending": from_ or None}.
    """

    def init(self, test: otp.Pid, trap: bool = False, delay: float = 0.0) -> Any:
        if trap:
            otp.trap_exit(True)
        if delay:
            time.sleep(delay)  # a slow init, in the child: start must wait for it
        me = otp.self_pid()
        name = otp.process_info(me) or {}
        otp.send(test, ("init_ran", me, name.get("registered_name"), time.monotonic()))
        return {"test": test, "log": [], "pending": None}

    def handle_call(self, request: Any, from_: Any, state: Any) -> Any:
        match request:
            case "get":
                return Reply(state["log"], state)
            case "whoami":
                return Reply(from_[0], state)
            case ("stop", reason, reply):
                return Stop(reason, state, reply=reply)
            case ("stop_noreply", reason):
                return Stop(reason, state)
            case "crash":
                raise ValueError("boom")
            case ("bad", value):
                return value
            case "never":
                return NoReply(state)
            case "park":
                # Keep the caller waiting; a later cast "release" answers it.
                state["pending"] = from_
                return NoReply(state)
            case ("defer_to", helper):
                otp.send(helper, ("reply_to", from_))
                return NoReply(state)
            case ("reply_on_timeout", seconds):
                state["pending"] = from_
                return NoReply(state, timeout=seconds)
            case ("kill_me_via", killer):
                otp.send(killer, ("kill", otp.self_pid()))
                return NoReply(state)
            case ("call_self", me):
                try:
                    gen_server.call(me, "get", timeout=30)
                except otp.CallExit as e:
                    return Reply(("raised", e.reason), state)
                return Reply("no error", state)
            case ("reply_timeout", seconds):
                return Reply("ok", state, timeout=seconds)
            case ("call", other, req, seconds):
                try:
                    return Reply(("got", gen_server.call(other, req, timeout=seconds)), state)
                except otp.CallTimeout:
                    return Reply("timed out", state)
            case ("start_blocking", test, seconds):
                try:
                    Blocking.start(test, timeout=seconds)
                except otp.StartError as e:
                    return Reply(("error", e.reason), state)
                return Reply("started?", state)
            case ("start_named", test, name):
                try:
                    return Reply(Recorder.start(test, name=name), state)
                except otp.AlreadyStarted as e:
                    return Reply(("already_started", e.pid), state)
            case "continue_chain":
                # Queue a message to ourselves first: the continues must still
                # run before it.
                otp.send(otp.self_pid(), "queued")
                return Reply("ok", state, continue_="first")
        return Reply(("unknown", request), state)

    def handle_cast(self, msg: Any, state: Any) -> Any:
        match msg:
            case ("push", item):
                state["log"].append(item)
                return NoReply(state)
            case "release":
                gen_server.reply(state["pending"], "late")
                state["pending"] = None
                otp.send(state["test"], ("released",))
                return NoReply(state)
            case ("release_then_push", target):
                # The late reply, then a cast on the same connection: once
                # the cast is handled, the reply has certainly arrived.
                gen_server.reply(state["pending"], "late")
                state["pending"] = None
                gen_server.cast(target, ("push", "after the late reply"))
                return NoReply(state)
            case "crash":
                raise ValueError("boom")
            case ("bad", value):
                return value
            case ("stop", reason):
                return Stop(reason, state)
            case ("noreply_timeout", seconds):
                return NoReply(state, timeout=seconds)
            case ("continue", arg):
                return NoReply(state, continue_=arg)
            case ("exit", reason):
                raise otp.Exit(reason)
        return NoReply(state)

    def handle_info(self, msg: Any, state: Any) -> Any:
        if msg == "timeout":
            if state["pending"] is not None:
                gen_server.reply(state["pending"], "answered on timeout")
                state["pending"] = None
            otp.send(state["test"], ("timeout",))
        else:
            state["log"].append(("info", msg))
        return NoReply(state)

    def handle_continue(self, arg: Any, state: Any) -> Any:
        state["log"].append(("continue", arg))
        if arg == "first":
            return NoReply(state, continue_="second")
        if arg == "stop":
            return Stop("normal", state)
        return NoReply(state)

    def terminate(self, reason: Any, state: Any) -> None:
        otp.send(state["test"], ("terminated", reason))


class InitReturns(GenServer):
    """init returns what the test asks for (as OTP's suites do)."""

    def init(self, test: otp.Pid, result: Any) -> Any:
        otp.send(test, ("init_ran", otp.self_pid()))
        if result == "raise":
            raise ValueError("init failed")
        return result

    def handle_call(self, request: Any, from_: Any, state: Any) -> Any:
        return Reply(state, state)

    def handle_info(self, msg: Any, state: Any) -> Any:
        return NoReply([*state, ("info", msg)])

    def handle_continue(self, arg: Any, state: Any) -> Any:
        return NoReply([*state, ("continue", arg)])


class InitQueuesThenContinues(GenServer):
    """init sends itself a message, then asks for a continue."""

    def init(self) -> Any:
        otp.send(otp.self_pid(), "queued")
        return Init([], continue_="from init")

    def handle_call(self, request: Any, from_: Any, state: Any) -> Any:
        return Reply(state, state)

    def handle_info(self, msg: Any, state: Any) -> Any:
        return NoReply([*state, msg])

    def handle_continue(self, arg: Any, state: Any) -> Any:
        return NoReply([*state, arg])


class InitTimeout(GenServer):
    def init(self, test: otp.Pid, seconds: float) -> Any:
        return Init(test, timeout=seconds)

    def handle_info(self, msg: Any, state: Any) -> Any:
        otp.send(state, ("info", msg))
        return NoReply(state)


class Blocking(GenServer):
    """init never returns (it waits for a message nobody sends)."""

    def init(self, test: otp.Pid) -> Any:
        otp.send(test, ("init_ran", otp.self_pid()))
        otp.receive(lambda m: False)
        return None


class Kwargs(GenServer):
    def init(self, a: int, b: int = 0, *, c: int = 0) -> Any:
        return (a, b, c)

    def handle_call(self, request: Any, from_: Any, state: Any) -> Any:
        return Reply(state, state)


class Minimal(GenServer):
    """Only handle_call: the other callbacks are the defaults."""

    def handle_call(self, request: Any, from_: Any, state: Any) -> Any:
        return Reply(("got", request, state), state)


class Bare(GenServer):
    """No callback at all: every default."""


class HangingTerminate(GenServer):
    def handle_call(self, request: Any, from_: Any, state: Any) -> Any:
        return Reply(state, state)

    def terminate(self, reason: Any, state: Any) -> None:
        otp.send(state, ("terminating", reason))
        otp.receive(lambda m: False)  # never returns: stop must time out


class CrashingTerminate(GenServer):
    def handle_call(self, request: Any, from_: Any, state: Any) -> Any:
        return Reply(state, state)

    def terminate(self, reason: Any, state: Any) -> None:
        raise RuntimeError("terminate failed")


# ------------------------------------------------------ processes as helpers


def _killer() -> None:
    """SIGKILL whoever asks, from a third process."""
    _, target = otp.receive(timeout=30)
    os.kill(target.id, signal.SIGKILL)


def _replier() -> None:
    """Answer a call on the server's behalf (a deferred reply from elsewhere)."""
    _, from_ = otp.receive(timeout=30)
    gen_server.reply(from_, ("helped", from_[0]))


# =================================================================== start


def test_start_link_blocks_until_init_returned() -> None:
    t0 = time.monotonic()
    pid = Recorder.start_link(otp.self_pid(), delay=0.5)
    returned = time.monotonic()
    assert isinstance(pid, otp.Pid)
    assert returned - t0 >= 0.5
    # init's last act, a message to us, travels before the acknowledgement
    # on the same connection: it is already here when start returns.
    _, init_pid, _, _ = otp.receive(lambda m: m[0] == "init_ran", timeout=0)
    assert init_pid == pid
    assert otp.process_info(pid)["links"] == [otp.self_pid()]
    gen_server.stop(pid)


def test_start_is_not_linked() -> None:
    pid = Recorder.start(otp.self_pid())
    assert otp.self_pid() not in otp.process_info(pid)["links"]
    gen_server.stop(pid)


def test_name_is_registered_before_init_runs() -> None:
    pid = Recorder.start_link(otp.self_pid(), name="recorder")
    _, _, name_during_init, _ = _tagged("init_ran")
    assert name_during_init == "recorder"
    assert otp.whereis("recorder") == pid
    assert gen_server.call("recorder", "get") == []
    gen_server.stop("recorder")
    assert otp.whereis("recorder") is None


def test_taken_name_raises_already_started_and_init_never_runs() -> None:
    first = Recorder.start_link(otp.self_pid(), name="taken")
    _tagged("init_ran")
    with pytest.raises(otp.AlreadyStarted) as info:
        Recorder.start_link(otp.self_pid(), name="taken")
    assert info.value.pid == first
    assert info.value.reason == ("already_started", first)
    _no_message("init_ran")
    assert otp.whereis("taken") == first
    gen_server.stop(first)


def test_kwargs_go_to_init_and_name_timeout_are_reserved() -> None:
    pid = Kwargs.start_link(1, b=2, c=3, name="kw", timeout=5.0)
    assert gen_server.call(pid, "state") == (1, 2, 3)
    gen_server.stop(pid)


def test_init_returning_init_with_timeout_gets_handle_info_timeout() -> None:
    pid = InitTimeout.start_link(otp.self_pid(), 0.2)
    assert _tagged("info") == ("info", "timeout")
    gen_server.stop(pid)


def test_init_continue_runs_before_any_queued_message() -> None:
    pid = InitQueuesThenContinues.start_link()
    assert gen_server.call(pid, "state") == ["from init", "queued"]
    gen_server.stop(pid)


def test_init_stop_makes_start_raise_start_error_with_that_reason() -> None:
    otp.trap_exit(True)
    with pytest.raises(otp.StartError) as info:
        InitReturns.start_link(otp.self_pid(), Stop(("shutdown", "no")), name="s")
    assert info.value.reason == ("shutdown", "no")
    _, pid = _tagged("init_ran")
    assert not otp.is_process_alive(pid)
    assert otp.whereis("s") is None
    # The starter does not die of the failed start, nor keep its EXIT.
    with pytest.raises(otp.ReceiveTimeout):
        otp.receive(timeout=0.2)


def test_init_ignore_makes_start_return_none_and_frees_the_name() -> None:
    assert InitReturns.start_link(otp.self_pid(), Ignore(), name="ig") is None
    _, pid = _tagged("init_ran")
    assert not otp.is_process_alive(pid)
    assert otp.whereis("ig") is None
    again = InitReturns.start_link(otp.self_pid(), [], name="ig")
    assert otp.whereis("ig") == again
    gen_server.stop(again)


def test_init_raising_makes_start_raise_with_the_crash_and_frees_the_name() -> None:
    with pytest.raises(otp.StartError) as info:
        InitReturns.start_link(otp.self_pid(), "raise", name="crashy")
    reason = info.value.reason
    assert isinstance(reason, otp.Crash)
    assert (reason.type, reason.message) == ("ValueError", "init failed")
    assert "init failed" in reason.traceback
    _, pid = _tagged("init_ran")
    assert not otp.is_process_alive(pid)
    # The name was freed before start returned: taking it again works at once.
    again = InitReturns.start_link(otp.self_pid(), [], name="crashy")
    assert otp.whereis("crashy") == again
    gen_server.stop(again)


def test_init_returning_a_reply_is_a_bad_return_value() -> None:
    bad = Reply(1, 2)
    with pytest.raises(otp.StartError) as info:
        InitReturns.start(otp.self_pid(), bad)
    assert info.value.reason[0] == "bad_return_value"


def test_start_timeout_kills_a_slow_init_and_frees_the_name() -> None:
    otp.trap_exit(True)
    t0 = time.monotonic()
    with pytest.raises(otp.StartError) as info:
        Blocking.start_link(otp.self_pid(), name="slow", timeout=0.5)
    assert info.value.reason == "timeout"
    assert time.monotonic() - t0 < AT_ONCE
    _, pid = _tagged("init_ran")
    assert not otp.is_process_alive(pid)
    assert _down(otp.monitor(pid)).reason == "noproc"
    assert otp.whereis("slow") is None
    # No EXIT from the killed, unlinked process is left behind.
    with pytest.raises(otp.ReceiveTimeout):
        otp.receive(timeout=0.2)
    again = InitReturns.start_link(otp.self_pid(), [], name="slow")
    gen_server.stop(again)


def test_a_server_starting_servers_gets_the_same_start_semantics() -> None:
    # From a process other than the main program, spawn forks directly: the
    # start timeout's kill and the reaping are that process's job.
    pid = Recorder.start_link(otp.self_pid())
    _tagged("init_ran")
    assert gen_server.call(pid, ("start_blocking", otp.self_pid(), 0.5), timeout=30) == (
        "error",
        "timeout",
    )
    _, blocked = _tagged("init_ran")
    assert not otp.is_process_alive(blocked)
    me = psutil.Process(pid.id)
    wait_until(
        lambda: all(c.status() != psutil.STATUS_ZOMBIE for c in me.children()),
        what="the killed init's process to be reaped",
    )
    child = gen_server.call(pid, ("start_named", otp.self_pid(), "grandchild"))
    assert _tagged("init_ran")[1] == child
    again = gen_server.call(pid, ("start_named", otp.self_pid(), "grandchild"))
    assert again == ("already_started", child)
    _no_message("init_ran")
    gen_server.stop(child)
    gen_server.stop(pid)


# ==================================================================== call


def test_call_default_timeout_is_five_seconds() -> None:
    pid = Recorder.start_link(otp.self_pid())
    t0 = time.monotonic()
    with pytest.raises(otp.CallTimeout):
        gen_server.call(pid, "never")
    elapsed = time.monotonic() - t0
    assert 4.9 <= elapsed < 15
    gen_server.stop(pid)


def test_call_timeout_leaves_the_caller_alive_and_drops_the_late_reply() -> None:
    pid = Recorder.start_link(otp.self_pid())
    _tagged("init_ran")  # the mailbox must hold nothing else below
    with pytest.raises(otp.CallTimeout) as info:
        gen_server.call(pid, "park", timeout=0.3)
    assert isinstance(info.value, TimeoutError)
    # Now the server answers the abandoned call, and tells us afterwards on
    # the same connection: by the time ("released",) is here, so is the late
    # reply, if it were kept.
    gen_server.cast(pid, "release")
    _tagged("released")
    with pytest.raises(otp.ReceiveTimeout):
        otp.receive(timeout=0.3)
    assert gen_server.call(pid, "get") == []
    with pytest.raises(otp.ReceiveTimeout):
        otp.receive(timeout=0)
    gen_server.stop(pid)


def test_a_server_calling_another_drops_its_late_reply_too() -> None:
    a = Recorder.start_link(otp.self_pid())
    b = Recorder.start_link(otp.self_pid())
    assert gen_server.call(a, ("call", b, "get", 5.0)) == ("got", [])
    assert gen_server.call(a, ("call", b, "park", 0.3)) == "timed out"
    gen_server.cast(b, ("release_then_push", a))
    log = wait_until(lambda: gen_server.call(a, "get"), what="the push after the late reply")
    # The late reply never reached a's handle_info.
    assert log == ["after the late reply"]
    gen_server.stop(a)
    gen_server.stop(b)


def test_call_with_an_invalid_timeout_raises_badarg() -> None:
    pid = Recorder.start_link(otp.self_pid())
    with pytest.raises(otp.BadArg):
        gen_server.call(pid, "get", timeout=-1)
    assert gen_server.call(pid, "get") == []
    gen_server.stop(pid)


def test_call_to_a_dead_pid_raises_noproc() -> None:
    pid = Recorder.start(otp.self_pid())
    gen_server.stop(pid)
    with pytest.raises(otp.NoProc):
        gen_server.call(pid, "get")


def test_call_to_an_unknown_name_raises_noproc() -> None:
    with pytest.raises(otp.NoProc):
        gen_server.call("nobody_has_this_name", "get")


def test_call_exit_at_once_when_the_server_crashes_during_the_call() -> None:
    pid = Recorder.start(otp.self_pid())
    t0 = time.monotonic()
    with pytest.raises(otp.CallExit) as info:
        gen_server.call(pid, "crash", timeout=30)
    assert time.monotonic() - t0 < AT_ONCE
    assert isinstance(info.value.reason, otp.Crash)
    assert (info.value.reason.type, info.value.reason.message) == ("ValueError", "boom")
    # terminate ran with the same reason.
    assert _tagged("terminated")[1] == info.value.reason


def test_call_exit_at_once_when_the_server_stops_without_replying() -> None:
    pid = Recorder.start(otp.self_pid())
    ref = otp.monitor(pid)
    t0 = time.monotonic()
    with pytest.raises(otp.CallExit) as info:
        gen_server.call(pid, ("stop_noreply", "normal"), timeout=30)
    assert time.monotonic() - t0 < AT_ONCE
    assert info.value.reason == "normal"
    assert _down(ref).reason == "normal"


def test_call_exit_killed_at_once_when_sigkilled_by_another_process() -> None:
    pid = Recorder.start(otp.self_pid())
    killer = otp.spawn(_killer)
    kref = otp.monitor(killer)
    t0 = time.monotonic()
    with pytest.raises(otp.CallExit) as info:
        gen_server.call(pid, ("kill_me_via", killer), timeout=30)
    assert time.monotonic() - t0 < AT_ONCE
    assert info.value.reason == "killed"
    assert not otp.is_process_alive(pid)
    _no_message("terminated", timeout=0)
    assert _down(kref).reason == "normal"


def test_calling_yourself_raises_calling_self_at_once() -> None:
    pid = Recorder.start_link(otp.self_pid(), name="narcissus")
    t0 = time.monotonic()
    assert gen_server.call(pid, ("call_self", pid), timeout=30) == ("raised", "calling_self")
    assert gen_server.call(pid, ("call_self", "narcissus"), timeout=30) == (
        "raised",
        "calling_self",
    )
    assert time.monotonic() - t0 < AT_ONCE
    gen_server.stop(pid)


def test_from_holds_the_callers_pid() -> None:
    pid = Recorder.start_link(otp.self_pid())
    caller = gen_server.call(pid, "whoami")
    assert type(caller) is otp.Pid
    assert caller == otp.self_pid()
    gen_server.stop(pid)


def test_call_by_registered_name() -> None:
    pid = Minimal.start_link(7, name="minimal")
    assert gen_server.call("minimal", "hi") == ("got", "hi", 7)
    gen_server.stop(pid)


# ============================================================ cast and reply


def test_cast_always_returns_none() -> None:
    pid = Recorder.start(otp.self_pid())
    assert gen_server.cast(pid, ("push", 1)) is None
    gen_server.stop(pid)
    assert gen_server.cast(pid, ("push", 2)) is None  # a dead Pid
    assert gen_server.cast("no_such_name", ("push", 3)) is None  # an unknown name


def test_casts_then_a_call_from_one_caller_are_handled_in_order() -> None:
    pid = Recorder.start_link(otp.self_pid())
    for i in range(200):
        gen_server.cast(pid, ("push", i))
    assert gen_server.call(pid, "get") == list(range(200))
    gen_server.stop(pid)


def test_deferred_reply_from_another_process() -> None:
    pid = Recorder.start_link(otp.self_pid())
    helper = otp.spawn(_replier)
    href = otp.monitor(helper)
    assert gen_server.call(pid, ("defer_to", helper), timeout=30) == ("helped", otp.self_pid())
    assert _down(href).reason == "normal"
    assert gen_server.call(pid, "get") == []
    gen_server.stop(pid)


def test_deferred_reply_later_from_the_server_itself() -> None:
    pid = Recorder.start_link(otp.self_pid())
    answer = gen_server.call(pid, ("reply_on_timeout", 0.2), timeout=30)
    assert answer == "answered on timeout"
    _tagged("timeout")
    gen_server.stop(pid)


# ====================================================== continue and timeout


def test_chained_continues_run_before_queued_messages() -> None:
    pid = Recorder.start_link(otp.self_pid())
    assert gen_server.call(pid, "continue_chain") == "ok"
    assert gen_server.call(pid, "get") == [
        ("continue", "first"),
        ("continue", "second"),
        ("info", "queued"),
    ]
    gen_server.stop(pid)


def test_stop_from_handle_continue_ends_the_server() -> None:
    pid = Recorder.start(otp.self_pid())
    ref = otp.monitor(pid)
    gen_server.cast(pid, ("continue", "stop"))
    assert _tagged("terminated") == ("terminated", "normal")
    assert _down(ref).reason == "normal"


def test_a_zero_timeout_fires_at_once_when_the_mailbox_is_empty() -> None:
    pid = Recorder.start_link(otp.self_pid())
    gen_server.cast(pid, ("noreply_timeout", 0))
    _tagged("timeout")
    gen_server.stop(pid)


def test_reply_timeout_gives_handle_info_timeout() -> None:
    pid = Recorder.start_link(otp.self_pid())
    assert gen_server.call(pid, ("reply_timeout", 0.2)) == "ok"
    _tagged("timeout")
    gen_server.stop(pid)


def test_noreply_timeout_from_a_cast_gives_handle_info_timeout() -> None:
    pid = Recorder.start_link(otp.self_pid())
    gen_server.cast(pid, ("noreply_timeout", 0.2))
    _tagged("timeout")
    gen_server.stop(pid)


def test_any_message_cancels_the_timeout() -> None:
    pid = Recorder.start_link(otp.self_pid())
    assert gen_server.call(pid, ("reply_timeout", 1.5)) == "ok"
    # Right away, well inside the 1.5 s: the message resets the timeout,
    # and the cast's NoReply has none.
    otp.send(pid, "hello")
    _no_message("timeout", timeout=2.5)
    assert gen_server.call(pid, "get") == [("info", "hello")]
    gen_server.stop(pid)


# ========================================================== stop, terminate


def test_stop_with_reply_runs_terminate_before_the_caller_gets_the_reply() -> None:
    pid = Recorder.start(otp.self_pid())
    ref = otp.monitor(pid)
    assert gen_server.call(pid, ("stop", "normal", "bye")) == "bye"
    # terminate's message travelled before the reply on the same
    # connection: it is already in the mailbox.
    assert otp.receive(lambda m: m[0] == "terminated", timeout=0) == ("terminated", "normal")
    assert _down(ref).reason == "normal"


def test_stop_with_reply_and_abnormal_reason_reaches_links() -> None:
    otp.trap_exit(True)
    pid = Recorder.start_link(otp.self_pid())
    assert gen_server.call(pid, ("stop", ("shutdown", "done"), "bye")) == "bye"
    exit_msg = otp.receive(lambda m: type(m) is otp.EXIT, timeout=WAIT)
    assert exit_msg == otp.EXIT(pid, ("shutdown", "done"))
    assert _tagged("terminated") == ("terminated", ("shutdown", "done"))


def test_gen_server_stop_runs_terminate_with_the_reason() -> None:
    pid = Recorder.start(otp.self_pid())
    ref = otp.monitor(pid)
    assert gen_server.stop(pid, ("shutdown", "asked"), timeout=WAIT) is None
    assert not otp.is_process_alive(pid)
    assert _tagged("terminated") == ("terminated", ("shutdown", "asked"))
    assert _down(ref).reason == ("shutdown", "asked")


def test_gen_server_stop_defaults_to_normal_and_takes_a_name() -> None:
    Recorder.start_link(otp.self_pid(), name="stoppable")
    gen_server.stop("stoppable")
    assert _tagged("terminated") == ("terminated", "normal")
    assert otp.whereis("stoppable") is None


def test_gen_server_stop_of_a_dead_server_raises_noproc() -> None:
    pid = Recorder.start(otp.self_pid())
    gen_server.stop(pid)
    with pytest.raises(otp.NoProc):
        gen_server.stop(pid)
    with pytest.raises(otp.NoProc):
        gen_server.stop("no_such_server")


def test_gen_server_stop_raises_call_timeout_when_terminate_hangs() -> None:
    pid = HangingTerminate.start(otp.self_pid())
    t0 = time.monotonic()
    with pytest.raises(otp.CallTimeout):
        gen_server.stop(pid, "normal", timeout=0.5)
    assert time.monotonic() - t0 < AT_ONCE
    assert _tagged("terminating") == ("terminating", "normal")
    assert otp.is_process_alive(pid)
    _kill(pid)


def test_gen_server_stop_with_an_invalid_timeout_raises_and_leaves_the_server() -> None:
    pid = Recorder.start_link(otp.self_pid())
    with pytest.raises(otp.BadArg):
        gen_server.stop(pid, "normal", timeout=-1)
    assert gen_server.call(pid, "get") == []
    gen_server.stop(pid)


def test_gen_server_stop_raises_call_exit_when_terminate_crashes() -> None:
    pid = CrashingTerminate.start(None)
    with pytest.raises(otp.CallExit) as info:
        gen_server.stop(pid)
    assert isinstance(info.value.reason, otp.Crash)
    assert info.value.reason.message == "terminate failed"
    assert not otp.is_process_alive(pid)


def test_terminate_runs_when_the_server_stops_itself() -> None:
    pid = Recorder.start(otp.self_pid())
    ref = otp.monitor(pid)
    gen_server.cast(pid, ("stop", "normal"))
    assert _tagged("terminated") == ("terminated", "normal")
    assert _down(ref).reason == "normal"


def test_terminate_runs_on_the_parents_exit_signal_when_trapping() -> None:
    otp.trap_exit(True)
    pid = Recorder.start_link(otp.self_pid(), trap=True)
    otp.exit(pid, "shutdown")
    assert _tagged("terminated") == ("terminated", "shutdown")
    exit_msg = otp.receive(lambda m: type(m) is otp.EXIT, timeout=WAIT)
    assert exit_msg == otp.EXIT(pid, "shutdown")


def test_exit_from_a_non_parent_goes_to_handle_info_when_trapping() -> None:
    pid = Recorder.start_link(otp.self_pid(), trap=True)
    other = otp.spawn(otp.exit, pid, "bye")
    ref = otp.monitor(other)
    _down(ref)
    # The EXIT was delivered before the DOWN we waited on, but the server
    # may not have handled it yet: poll its log under a deadline.
    log = wait_until(lambda: gen_server.call(pid, "get"), what="the EXIT in handle_info")
    assert log == [("info", otp.EXIT(other, "bye"))]
    gen_server.stop(pid)


def test_terminate_does_not_run_when_killed() -> None:
    pid = Recorder.start(otp.self_pid(), trap=True)
    ref = otp.monitor(pid)
    otp.exit(pid, "kill")
    assert _down(ref).reason == "killed"
    # Anything terminate sent would have arrived before the DOWN.
    _no_message("terminated", timeout=0)


def test_terminate_does_not_run_on_an_exit_signal_when_not_trapping() -> None:
    pid = Recorder.start(otp.self_pid())
    ref = otp.monitor(pid)
    otp.exit(pid, "shutdown")
    assert _down(ref).reason == "shutdown"
    _no_message("terminated", timeout=0)


# ===================================================== bad returns, crashes


def test_a_wrong_return_value_from_handle_cast_stops_the_server() -> None:
    pid = Recorder.start(otp.self_pid())
    ref = otp.monitor(pid)
    gen_server.cast(pid, ("bad", 42))
    assert _down(ref).reason == ("bad_return_value", 42)
    assert _tagged("terminated") == ("terminated", ("bad_return_value", 42))


def test_a_wrong_return_value_from_handle_call_exits_the_caller() -> None:
    pid = Recorder.start(otp.self_pid())
    with pytest.raises(otp.CallExit) as info:
        gen_server.call(pid, ("bad", "oops"), timeout=30)
    assert info.value.reason == ("bad_return_value", "oops")


def test_an_exception_in_a_callback_ends_the_process_with_a_crash() -> None:
    pid = Recorder.start(otp.self_pid())
    ref = otp.monitor(pid)
    gen_server.cast(pid, "crash")
    reason = _down(ref).reason
    assert isinstance(reason, otp.Crash)
    assert (reason.type, reason.message) == ("ValueError", "boom")
    assert "handle_cast" in reason.traceback
    assert isinstance(reason.exception, ValueError)


def test_otp_exit_raised_in_a_callback_is_the_exit_reason_itself() -> None:
    pid = Recorder.start(otp.self_pid())
    ref = otp.monitor(pid)
    gen_server.cast(pid, ("exit", ("shutdown", "by exit")))
    assert _tagged("terminated") == ("terminated", ("shutdown", "by exit"))
    assert _down(ref).reason == ("shutdown", "by exit")


def test_a_linked_caller_sees_the_crash_as_its_exit_reason() -> None:
    otp.trap_exit(True)
    pid = Recorder.start_link(otp.self_pid())
    gen_server.cast(pid, "crash")
    exit_msg = otp.receive(lambda m: type(m) is otp.EXIT, timeout=WAIT)
    assert exit_msg.pid == pid
    assert exit_msg.reason == otp.Crash("ValueError", "boom")


def test_default_handle_info_drops_the_message_and_carries_on() -> None:
    pid = Minimal.start_link(0)
    otp.send(pid, "unexpected")
    assert gen_server.call(pid, "still there?") == ("got", "still there?", 0)
    gen_server.stop(pid)


def test_default_handle_call_stops_with_bad_call() -> None:
    pid = Bare.start(0)
    ref = otp.monitor(pid)
    with pytest.raises(otp.CallExit) as info:
        gen_server.call(pid, "anyone?", timeout=30)
    assert info.value.reason == ("bad_call", "anyone?")
    assert _down(ref).reason == ("bad_call", "anyone?")


def test_default_handle_cast_stops_with_bad_cast() -> None:
    pid = Minimal.start(0)
    ref = otp.monitor(pid)
    gen_server.cast(pid, "what")
    assert _down(ref).reason == ("bad_cast", "what")


def test_default_init_takes_one_argument_as_the_state() -> None:
    pid = Minimal.start_link({"k": 1})
    assert gen_server.call(pid, "x") == ("got", "x", {"k": 1})
    gen_server.stop(pid)


# --------------------------------- a reply and the server's end, read together


def _replies_then_ends(main: otp.Pid) -> None:
    _label, from_, _req = otp.receive()
    otp.send(main, ("got the request", otp.self_pid()))
    otp.receive(lambda m: m == "go")
    gen_server.reply((otp.Pid(from_[0]), from_[1]), "answer")
    # returns at once: its end follows the reply on the same connection


def _calls_then_looks_for_strays(server: otp.Pid, main: otp.Pid) -> None:
    answer = gen_server.call(server, "question", 30)
    try:
        stray = otp.receive(timeout=0.5)
    except otp.ReceiveTimeout:
        stray = None
    otp.send(main, ("result", answer, stray))


def test_a_reply_read_together_with_the_servers_end_leaves_no_stray_down() -> None:
    # The caller is stopped (SIGSTOP) while the server replies and ends, so
    # it reads the reply and the end in one go; gen:call flushes the call's
    # monitor, and so must we: the caller's next receive sees nothing.
    me = otp.self_pid()
    server = otp.spawn(_replies_then_ends, me)
    caller = otp.spawn(_calls_then_looks_for_strays, server, me)
    otp.receive(lambda m: m == ("got the request", server), timeout=10)
    os.kill(caller.id, signal.SIGSTOP)
    try:
        mon = otp.monitor(server)
        otp.send(server, "go")
        assert otp.receive(lambda m: type(m) is otp.DOWN and m.ref == mon, timeout=10)
    finally:
        os.kill(caller.id, signal.SIGCONT)
    assert otp.receive(lambda m: m[0] == "result", timeout=10) == ("result", "answer", None)
