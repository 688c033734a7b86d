"""GenEvent: the event manager and its handlers, against OTP's gen_event.

The handlers below report every callback to the test process with plain
messages, so tests wait on messages (or replies), never on time. The
expected values are OTP's (otp-semantics.md section 4), in this API's shape.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest

import otp
from behaviours import EventHandler, GenEvent, Reply, Stop, gen_event, gen_server, supervisor
from otp import EXIT, Crash, Pid
from otp.testing import wait_until


class Recorder(EventHandler):
    """`args` is (test_pid, tag). Tells the test about every callback:
    ("event", tag, e), ("info", tag, msg), ("terminate", tag, reason)."""

    def init(self, args: Any) -> Any:
        to, tag = args
        return {"to": to, "tag": tag, "events": []}

    def handle_event(self, event: Any, state: Any) -> Any:
        match event:
            case "crash":
                raise ValueError("boom")
            case "bad_return":
                return Reply("not", "a state")
            case "remove":
                return gen_event.RemoveHandler()
            case ("exit", reason):
                raise otp.Exit(reason)
            case ("swap", new, args2):
                return gen_event.SwapHandler("swapping", state, new, args2)
        state["events"].append(event)
        otp.send(state["to"], ("event", state["tag"], event))
        return state

    def handle_info(self, msg: Any, state: Any) -> Any:
        otp.send(state["to"], ("info", state["tag"], msg))
        return state

    def handle_call(self, request: Any, state: Any) -> Any:
        match request:
            case "events":
                return Reply(list(state["events"]), state)
            case ("set", value):
                state["events"] = [value]
                return Reply("ok", state)
            case "crash":
                raise ValueError("call boom")
            case "bad":
                return "not a Reply"
            case ("remove", reply):
                return gen_event.RemoveHandler(reply=reply)
            case ("swap", new, args2):
                return gen_event.SwapHandler("swapping", state, new, args2, reply="swapped")
            case ("block", token):
                # Blocks the whole manager until the test sends `token`.
                otp.receive(lambda m: m == token)
                return Reply("unblocked", state)
            case "die":
                os.kill(os.getpid(), signal.SIGKILL)
        return Reply(("unknown", request), state)

    def terminate(self, reason: Any, state: Any) -> Any:
        otp.send(state["to"], ("terminate", state["tag"], reason))
        if reason == "raise":
            raise RuntimeError("terminate boom")
        return ("bye", state["tag"], tuple(state["events"]))


class Heir(Recorder):
    """A Recorder that a swap installs: `args` is ((test_pid, tag), inherited)."""

    def init(self, args: Any) -> Any:
        (to, tag), inherited = args
        otp.send(to, ("init", tag, inherited))
        return {"to": to, "tag": tag, "events": [], "inherited": inherited}

    def handle_call(self, request: Any, state: Any) -> Any:
        if request == "inherited":
            return Reply(state["inherited"], state)
        return super().handle_call(request, state)


class Refuser(EventHandler):
    """init refuses: with Stop(args), or by raising when args is "raise"."""

    def init(self, args: Any) -> Any:
        if args == "raise":
            raise ValueError("no thanks")
        return Stop(args)


class Counter(EventHandler):
    """Counts events. No handle_info: the default logs and keeps it."""

    def init(self, args: Any) -> Any:
        return args

    def handle_event(self, event: Any, state: Any) -> Any:
        return state + 1

    def handle_call(self, request: Any, state: Any) -> Any:
        return Reply(state, state)


# ------------------------------------------------------------------ helpers

WAIT = 15.0  # generous: the machine is shared and loaded


def expect(msg: Any, timeout: float = WAIT) -> Any:
    """Wait for exactly `msg` (other messages stay queued)."""
    return otp.receive(lambda m: m == msg, timeout)


def tagged(kind: str, tag: Any, timeout: float = WAIT) -> Any:
    """Wait for the next (kind, tag, ...) report of a handler."""
    return otp.receive(
        lambda m: type(m) is tuple and len(m) >= 2 and m[0] == kind and m[1] == tag, timeout
    )


def nothing_queued() -> bool:
    try:
        otp.receive(None, 0)
    except otp.ReceiveTimeout:
        return True
    return False


def wait_down(pid: Pid, ref: Any = None) -> Any:
    ref = ref or otp.monitor(pid)
    return otp.receive(lambda m: type(m) is otp.DOWN and m.ref == ref, WAIT).reason


@pytest.fixture
def mgr() -> Iterator[Pid]:
    m = gen_event.start_link()
    yield m
    if otp.is_process_alive(m):
        gen_event.stop(m)


def me() -> Pid:
    return otp.self_pid()


# ------------------------------------------------------------------ starting


def test_start_link_gives_a_live_manager_with_no_handlers() -> None:
    m = gen_event.start_link()
    assert otp.is_process_alive(m)
    assert gen_event.which_handlers(m) == []
    info = otp.process_info(m)
    assert info is not None
    assert info["behaviour"] == "GenEvent"
    assert info["trap_exit"] is True
    assert me() in info["links"]
    gen_event.stop(m)
    assert not otp.is_process_alive(m)


def test_start_is_not_linked_and_registers_the_name() -> None:
    m = gen_event.start(name="alarms")
    assert otp.whereis("alarms") == m
    assert me() not in otp.process_info(m)["links"]
    gen_event.add_handler("alarms", Counter, 0)
    assert gen_event.which_handlers("alarms") == [Counter]
    gen_event.stop("alarms")
    assert otp.whereis("alarms") is None


def test_second_start_with_a_taken_name_raises_already_started() -> None:
    m = gen_event.start_link(name="taken")
    with pytest.raises(otp.AlreadyStarted) as e:
        gen_event.start(name="taken")
    assert e.value.pid == m
    gen_event.stop(m)


def test_gen_event_class_starts_managers_and_cannot_be_subclassed() -> None:
    m = GenEvent.start_link()
    assert gen_event.which_handlers(m) == []
    gen_event.stop(m)
    with pytest.raises(TypeError):
        GenEvent()
    with pytest.raises(TypeError):
        type("Mine", (GenEvent,), {})


# ------------------------------------------------------------- adding, order


def test_add_handler_runs_init_with_args(mgr: Pid) -> None:
    gen_event.add_handler(mgr, Counter, 41)
    assert gen_event.call(mgr, Counter, "count") == 41


def test_which_handlers_lists_newest_first(mgr: Pid) -> None:
    gen_event.add_handler(mgr, Counter, 0)
    gen_event.add_handler(mgr, (Recorder, "a"), (me(), "a"))
    gen_event.add_handler(mgr, Recorder, (me(), "r"))
    assert gen_event.which_handlers(mgr) == [Recorder, (Recorder, "a"), Counter]


def test_notify_delivers_to_handlers_newest_first(mgr: Pid) -> None:
    for tag in ("first", "second", "third"):
        gen_event.add_handler(mgr, (Recorder, tag), (me(), tag))
    gen_event.notify(mgr, "ping")
    # One sender (the manager), one connection: its reports arrive in the
    # order the handlers ran.
    got = [otp.receive(lambda m: type(m) is tuple and m[0] == "event", WAIT) for _ in range(3)]
    assert got == [("event", t, "ping") for t in ("third", "second", "first")]


def test_adding_one_class_twice_gives_two_handlers_and_calls_reach_the_newest(mgr: Pid) -> None:
    gen_event.add_handler(mgr, Counter, 1)
    gen_event.add_handler(mgr, Counter, 2)
    assert gen_event.which_handlers(mgr) == [Counter, Counter]
    assert gen_event.call(mgr, Counter, "count") == 2
    gen_event.delete_handler(mgr, Counter, None)
    assert gen_event.call(mgr, Counter, "count") == 1


def test_instances_with_ids_have_their_own_state(mgr: Pid) -> None:
    gen_event.add_handler(mgr, (Counter, "x"), 10)
    gen_event.add_handler(mgr, (Counter, "y"), 20)
    gen_event.sync_notify(mgr, "tick")
    assert gen_event.call(mgr, (Counter, "x"), "count") == 11
    assert gen_event.call(mgr, (Counter, "y"), "count") == 21
    # The bare class names only a handler added without an id.
    with pytest.raises(otp.HandlerError) as e:
        gen_event.call(mgr, Counter, "count")
    assert e.value.reason == "bad_module"
    gen_event.delete_handler(mgr, (Counter, "x"), None)
    assert gen_event.which_handlers(mgr) == [(Counter, "y")]


def test_init_returning_stop_raises_with_its_reason_and_adds_nothing(mgr: Pid) -> None:
    with pytest.raises(otp.HandlerError) as e:
        gen_event.add_handler(mgr, Refuser, ("error", "my_error"))
    assert e.value.reason == ("error", "my_error")
    assert gen_event.which_handlers(mgr) == []


def test_init_raising_raises_exit_crash_and_adds_nothing(mgr: Pid) -> None:
    with pytest.raises(otp.HandlerError) as e:
        gen_event.add_handler(mgr, Refuser, "raise")
    assert e.value.reason == ("EXIT", Crash("ValueError", "no thanks"))
    assert isinstance(e.value, otp.OTPError)
    assert gen_event.which_handlers(mgr) == []


def test_add_handler_refuses_what_is_not_an_event_handler(mgr: Pid) -> None:
    with pytest.raises(otp.BadArg):
        gen_event.add_handler(mgr, dict, None)
    with pytest.raises(otp.BadArg):
        gen_event.add_handler(mgr, (Counter, 1, 2), None)
    assert gen_event.which_handlers(mgr) == []


# ----------------------------------------------------------- events and infos


def test_sync_notify_returns_after_every_handler_handled_it_and_earlier_notifies(
    mgr: Pid,
) -> None:
    gen_event.add_handler(mgr, (Recorder, 1), (me(), 1))
    gen_event.add_handler(mgr, (Recorder, 2), (me(), 2))
    for i in range(5):
        gen_event.notify(mgr, i)
    gen_event.sync_notify(mgr, "last")
    # The handlers' reports left the manager before the reply did, on the
    # same connection: they are already here, nothing needs waiting for.
    for tag in (2, 1):
        for e in [0, 1, 2, 3, 4, "last"]:
            assert otp.receive(lambda m, e=e, tag=tag: m == ("event", tag, e), 0)
    assert gen_event.call(mgr, (Recorder, 1), "events") == [0, 1, 2, 3, 4, "last"]


def test_notify_to_an_unregistered_name_raises_noproc() -> None:
    with pytest.raises(otp.NoProc):
        gen_event.notify("nobody_here", "event")


def test_notify_to_a_dead_pid_is_dropped() -> None:
    m = gen_event.start()
    gen_event.stop(m)
    assert gen_event.notify(m, "event") is None


def test_plain_messages_go_to_every_handlers_handle_info(mgr: Pid) -> None:
    gen_event.add_handler(mgr, (Recorder, 1), (me(), 1))
    gen_event.add_handler(mgr, (Recorder, 2), (me(), 2))
    otp.send(mgr, ("hello", 42))
    assert expect(("info", 2, ("hello", 42)))
    assert expect(("info", 1, ("hello", 42)))


def test_handler_without_handle_info_is_kept(mgr: Pid) -> None:
    gen_event.add_handler(mgr, Counter, 0)
    otp.send(mgr, "stray")
    gen_event.sync_notify(mgr, "tick")
    assert gen_event.which_handlers(mgr) == [Counter]
    assert gen_event.call(mgr, Counter, "count") == 1


def test_remove_handler_from_handle_event_terminates_with_remove_handler(mgr: Pid) -> None:
    gen_event.add_handler(mgr, Counter, 0)
    gen_event.add_handler(mgr, (Recorder, "goes"), (me(), "goes"))
    gen_event.sync_notify(mgr, "remove")
    assert expect(("terminate", "goes", "remove_handler"))
    assert gen_event.which_handlers(mgr) == [Counter]


# ------------------------------------------------------------ crash isolation


def test_a_crashing_handler_is_removed_alone(mgr: Pid) -> None:
    gen_event.add_handler(mgr, Counter, 0)
    gen_event.add_handler(mgr, Recorder, (me(), "r"))
    gen_event.add_handler(mgr, (Counter, "newest"), 0)
    gen_event.sync_notify(mgr, "crash")
    assert expect(("terminate", "r", ("error", ("EXIT", Crash("ValueError", "boom")))))
    assert gen_event.which_handlers(mgr) == [(Counter, "newest"), Counter]
    # The manager and the others go on, and saw the event too.
    gen_event.sync_notify(mgr, "after")
    assert gen_event.call(mgr, Counter, "count") == 2
    assert gen_event.call(mgr, (Counter, "newest"), "count") == 2


def test_a_handler_returning_a_wrong_value_is_removed_with_that_value(mgr: Pid) -> None:
    gen_event.add_handler(mgr, Counter, 0)
    gen_event.add_handler(mgr, Recorder, (me(), "r"))
    gen_event.notify(mgr, "bad_return")
    _, _, reason = tagged("terminate", "r")
    assert reason[0] == "error"
    assert type(reason[1]) is Reply and reason[1].reply == "not"
    assert gen_event.which_handlers(mgr) == [Counter]
    assert gen_event.call(mgr, Counter, "count") == 1


def test_a_handler_raising_otp_exit_is_removed_and_cannot_end_the_manager(mgr: Pid) -> None:
    gen_event.add_handler(mgr, Recorder, (me(), "r"))
    gen_event.notify(mgr, ("exit", "bye"))
    assert expect(("terminate", "r", ("error", ("EXIT", "bye"))))
    assert gen_event.which_handlers(mgr) == []
    assert otp.is_process_alive(mgr)


# ------------------------------------------------------------------ calls


def test_call_returns_the_reply_and_keeps_the_new_state(mgr: Pid) -> None:
    gen_event.add_handler(mgr, Recorder, (me(), "r"))
    assert gen_event.call(mgr, Recorder, ("set", "x")) == "ok"
    assert gen_event.call(mgr, Recorder, "events") == ["x"]


def test_call_to_a_handler_not_installed_raises_bad_module(mgr: Pid) -> None:
    gen_event.add_handler(mgr, Counter, 0)
    with pytest.raises(otp.HandlerError) as e:
        gen_event.call(mgr, Recorder, "events")
    assert e.value.reason == "bad_module"


def test_call_that_raises_removes_the_handler_and_raises_its_crash(mgr: Pid) -> None:
    gen_event.add_handler(mgr, Counter, 0)
    gen_event.add_handler(mgr, Recorder, (me(), "r"))
    with pytest.raises(otp.HandlerError) as e:
        gen_event.call(mgr, Recorder, "crash")
    crash = ("EXIT", Crash("ValueError", "call boom"))
    assert e.value.reason == crash
    assert expect(("terminate", "r", ("error", crash)))
    assert gen_event.which_handlers(mgr) == [Counter]


def test_call_returning_a_wrong_value_removes_the_handler_and_raises_it(mgr: Pid) -> None:
    gen_event.add_handler(mgr, Recorder, (me(), "r"))
    with pytest.raises(otp.HandlerError) as e:
        gen_event.call(mgr, Recorder, "bad")
    assert e.value.reason == "not a Reply"
    assert expect(("terminate", "r", ("error", "not a Reply")))
    assert gen_event.which_handlers(mgr) == []


def test_call_returning_remove_handler_replies_then_removes(mgr: Pid) -> None:
    gen_event.add_handler(mgr, Recorder, (me(), "r"))
    assert gen_event.call(mgr, Recorder, ("remove", "so long")) == "so long"
    assert expect(("terminate", "r", "remove_handler"))
    assert gen_event.which_handlers(mgr) == []


def test_call_timeout_raises_and_the_late_reply_is_dropped(mgr: Pid) -> None:
    gen_event.add_handler(mgr, Recorder, (me(), "r"))
    with pytest.raises(otp.CallTimeout):
        gen_event.call(mgr, Recorder, ("block", "go"), timeout=0.3)
    otp.send(mgr, "go")  # the blocked handle_call takes it and replies late
    assert gen_event.call(mgr, Recorder, "events") == []
    assert nothing_queued()


def test_manager_dying_during_a_call_raises_call_exit_at_once() -> None:
    m = gen_event.start()
    gen_event.add_handler(m, Recorder, (me(), "r"))
    with pytest.raises(otp.CallExit) as e:
        gen_event.call(m, Recorder, "die", timeout=None)
    assert e.value.reason == "killed"
    wait_down(m)


def test_requests_to_a_missing_manager_raise_noproc() -> None:
    m = gen_event.start()
    gen_event.stop(m)
    with pytest.raises(otp.NoProc):
        gen_event.call(m, Counter, "count")
    with pytest.raises(otp.NoProc):
        gen_event.sync_notify(m, "e")
    with pytest.raises(otp.NoProc):
        gen_event.add_handler(m, Counter, 0)
    with pytest.raises(otp.NoProc):
        gen_event.which_handlers(m)
    with pytest.raises(otp.NoProc):
        gen_event.delete_handler(m, Counter, None)
    with pytest.raises(otp.NoProc):
        gen_event.which_handlers("no_such_manager")
    with pytest.raises(otp.NoProc):
        gen_event.stop(m)


# ---------------------------------------------------------- delete and swap


def test_delete_handler_returns_what_terminate_returned(mgr: Pid) -> None:
    gen_event.add_handler(mgr, Recorder, (me(), "r"))
    gen_event.notify(mgr, "e1")
    assert gen_event.delete_handler(mgr, Recorder, "my_args") == ("bye", "r", ("e1",))
    assert expect(("terminate", "r", "my_args"))
    assert gen_event.which_handlers(mgr) == []


def test_delete_of_a_handler_not_installed_raises_module_not_found(mgr: Pid) -> None:
    with pytest.raises(otp.HandlerError) as e:
        gen_event.delete_handler(mgr, Recorder, None)
    assert e.value.reason == "module_not_found"


def test_delete_handler_whose_terminate_raises_removes_it_and_raises(mgr: Pid) -> None:
    gen_event.add_handler(mgr, Recorder, (me(), "r"))
    with pytest.raises(otp.HandlerError) as e:
        gen_event.delete_handler(mgr, Recorder, "raise")
    assert e.value.reason == ("EXIT", Crash("RuntimeError", "terminate boom"))
    assert gen_event.which_handlers(mgr) == []


def test_swap_handler_hands_what_terminate_returned_to_the_new_init(mgr: Pid) -> None:
    gen_event.add_handler(mgr, Recorder, (me(), "old"))
    gen_event.add_handler(mgr, Counter, 0)
    gen_event.notify(mgr, "e1")
    gen_event.swap_handler(mgr, (Recorder, "args1"), (Heir, (me(), "new")))
    assert expect(("terminate", "old", "args1"))
    assert expect(("init", "new", ("bye", "old", ("e1",))))
    # The new handler is added, so it comes first.
    assert gen_event.which_handlers(mgr) == [Heir, Counter]
    assert gen_event.call(mgr, Heir, "inherited") == ("bye", "old", ("e1",))


def test_swap_of_a_handler_not_installed_gives_error_to_the_new_init(mgr: Pid) -> None:
    gen_event.swap_handler(mgr, (Recorder, None), (Heir, (me(), "new")))
    assert expect(("init", "new", "error"))
    assert gen_event.which_handlers(mgr) == [Heir]


def test_swap_whose_new_init_refuses_raises_and_the_old_handler_is_gone(mgr: Pid) -> None:
    gen_event.add_handler(mgr, Recorder, (me(), "old"))
    with pytest.raises(otp.HandlerError) as e:
        gen_event.swap_handler(mgr, (Recorder, None), (Refuser, "args2"))
    # Refuser's init refuses with Stop(what it was given): (args2, state2).
    assert e.value.reason == ("args2", ("bye", "old", ()))
    assert gen_event.which_handlers(mgr) == []


def test_swap_from_handle_event_puts_the_new_handler_in_the_old_ones_place(mgr: Pid) -> None:
    gen_event.add_handler(mgr, Counter, 0)
    gen_event.add_handler(mgr, Recorder, (me(), "old"))
    gen_event.add_handler(mgr, (Counter, "newest"), 0)
    gen_event.notify(mgr, "e1")
    gen_event.sync_notify(mgr, ("swap", Heir, (me(), "new")))
    assert expect(("terminate", "old", "swapping"))
    assert expect(("init", "new", ("bye", "old", ("e1",))))
    assert gen_event.which_handlers(mgr) == [(Counter, "newest"), Heir, Counter]


def test_swap_from_handle_call_replies_and_swaps(mgr: Pid) -> None:
    gen_event.add_handler(mgr, Recorder, (me(), "old"))
    assert gen_event.call(mgr, Recorder, ("swap", Heir, (me(), "new"))) == "swapped"
    assert expect(("init", "new", ("bye", "old", ())))
    assert gen_event.which_handlers(mgr) == [Heir]


def test_swap_handler_refuses_malformed_pairs(mgr: Pid) -> None:
    with pytest.raises(otp.BadArg):
        gen_event.swap_handler(mgr, Recorder, (Heir, None))  # type: ignore[arg-type]


# ------------------------------------------------------------------ stopping


def test_stop_terminates_every_handler_newest_first_and_exits_with_the_reason() -> None:
    m = gen_event.start()
    for tag in ("a", "b", "c"):
        gen_event.add_handler(m, (Recorder, tag), (me(), tag))
    ref = otp.monitor(m)
    gen_event.stop(m, reason="shutdown")
    got = [tagged("terminate", t) for t in ("c", "b", "a")]
    assert got == [("terminate", t, "stop") for t in ("c", "b", "a")]
    assert wait_down(m, ref) == "shutdown"


@pytest.mark.parametrize("suspended", [False, True])
def test_parent_exit_stops_the_manager_with_the_parents_reason(suspended: bool) -> None:
    parent = otp.spawn(_parent_of_manager, me())
    _, m = otp.receive(lambda x: type(x) is tuple and x[0] == "manager", WAIT)
    if suspended:
        # A suspended manager still obeys its parent (OTP's sys:suspend_loop).
        otp.debug.suspend(m)
    m_ref = otp.monitor(m)
    p_ref = otp.monitor(parent)
    otp.exit(parent, "boom")
    assert wait_down(parent, p_ref) == "boom"
    assert wait_down(m, m_ref) == "boom"
    assert expect(("terminate", "p", "stop"))


def _parent_of_manager(to: Pid) -> None:
    m = gen_event.start_link()
    gen_event.add_handler(m, Recorder, (to, "p"))
    otp.send(to, ("manager", m))
    otp.receive(lambda _: False)  # until an exit signal ends this process


# ------------------------------------------------------- supervised handlers


def gen_event_exit(handler: Any, timeout: float = WAIT) -> Any:
    """Wait for the ("gen_event_EXIT", handler, reason) message; its reason."""
    m = otp.receive(
        lambda m: type(m) is tuple and len(m) == 3 and m[0] == "gen_event_EXIT" and m[1] == handler,
        timeout,
    )
    return m[2]


def _supervisor(mgr: Pid, to: Pid, handler: Any, args: Any, swap: bool, end: Any) -> None:
    """A process that supervises a handler (added, or swapped in for the
    Recorder), then ends with reason `end` when told "go"."""
    if swap:
        gen_event.swap_sup_handler(mgr, (Recorder, "swapping"), (handler, args))
    else:
        gen_event.add_sup_handler(mgr, handler, args)
    otp.send(to, ("added", otp.self_pid()))
    otp.receive(lambda m: m == "go")
    raise otp.Exit(end)


def test_add_sup_handler_links_the_caller_and_the_manager(mgr: Pid) -> None:
    m = gen_event.start()
    gen_event.add_sup_handler(m, Counter, 0)
    assert m in otp.process_info(me())["links"]
    assert me() in otp.process_info(m)["links"]
    gen_event.delete_handler(m, Counter, None)
    assert gen_event_exit(Counter) == "normal"
    gen_event.stop(m)


def test_sup_handler_deleted_sends_gen_event_exit_normal(mgr: Pid) -> None:
    gen_event.add_sup_handler(mgr, (Recorder, 7), (me(), "r"))
    gen_event.delete_handler(mgr, (Recorder, 7), None)
    assert gen_event_exit((Recorder, 7)) == "normal"


def test_sup_handler_removing_itself_sends_normal(mgr: Pid) -> None:
    gen_event.add_sup_handler(mgr, Recorder, (me(), "r"))
    gen_event.notify(mgr, "remove")
    assert gen_event_exit(Recorder) == "normal"


def test_sup_handler_crashing_sends_exit_crash(mgr: Pid) -> None:
    gen_event.add_sup_handler(mgr, Recorder, (me(), "r"))
    gen_event.add_sup_handler(mgr, (Recorder, "x"), (me(), "x"))
    gen_event.notify(mgr, "crash")
    assert gen_event_exit(Recorder) == ("EXIT", Crash("ValueError", "boom"))
    assert gen_event_exit((Recorder, "x")) == ("EXIT", Crash("ValueError", "boom"))


def test_sup_handler_returning_a_wrong_value_sends_that_value(mgr: Pid) -> None:
    gen_event.add_sup_handler(mgr, Recorder, (me(), "r"))
    with pytest.raises(otp.HandlerError):
        gen_event.call(mgr, Recorder, "bad")
    assert gen_event_exit(Recorder) == "not a Reply"


def test_manager_stop_sends_shutdown_and_unlinks_the_supervisor() -> None:
    m = gen_event.start()
    gen_event.add_sup_handler(m, Recorder, (me(), "r"))
    ref = otp.monitor(m)
    # Even an abnormal stop reason does not reach the supervisor: the
    # manager unlinks it first and tells it by message.
    gen_event.stop(m, reason="boom")
    assert gen_event_exit(Recorder) == "shutdown"
    assert expect(("terminate", "r", "stop"))
    assert wait_down(m, ref) == "boom"
    assert m not in otp.process_info(me())["links"]
    assert nothing_queued()


def test_sup_handler_swapped_sends_swapped_and_the_new_one_keeps_the_supervisor(
    mgr: Pid,
) -> None:
    gen_event.add_sup_handler(mgr, Recorder, (me(), "old"))
    gen_event.swap_handler(mgr, (Recorder, None), (Heir, (me(), "new")))
    assert gen_event_exit(Recorder) == ("swapped", Heir, me())
    gen_event.delete_handler(mgr, Heir, None)
    assert gen_event_exit(Heir) == "normal"


def test_swap_from_a_callback_keeps_the_supervisor(mgr: Pid) -> None:
    gen_event.add_sup_handler(mgr, Recorder, (me(), "old"))
    gen_event.notify(mgr, ("swap", Heir, (me(), "new")))
    assert gen_event_exit(Recorder) == ("swapped", Heir, me())
    gen_event.notify(mgr, "crash")
    assert gen_event_exit(Heir) == ("EXIT", Crash("ValueError", "boom"))


def test_swap_from_a_callback_to_a_refusing_init_removes_both_and_tells_the_supervisor(
    mgr: Pid,
) -> None:
    gen_event.add_handler(mgr, Counter, 0)
    gen_event.add_sup_handler(mgr, Recorder, (me(), "old"))
    gen_event.sync_notify(mgr, ("swap", Refuser, "nope"))
    assert gen_event_exit(Recorder) == ("swapped", Refuser, me())
    # The new handler inherited the supervisor, so its failure is told too.
    assert gen_event_exit(Refuser) == ("nope", ("bye", "old", ()))
    assert gen_event.which_handlers(mgr) == [Counter]


def test_swap_sup_handler_makes_the_caller_supervise_the_new_handler(mgr: Pid) -> None:
    gen_event.add_handler(mgr, Recorder, (me(), "old"))
    gen_event.swap_sup_handler(mgr, (Recorder, None), (Heir, (me(), "new")))
    assert expect(("terminate", "old", None))
    assert expect(("init", "new", ("bye", "old", ())))
    gen_event.delete_handler(mgr, Heir, None)
    assert expect(("terminate", "new", None))
    assert gen_event_exit(Heir) == "normal"
    # The old handler had no supervisor: nobody was told of its swap.
    assert nothing_queued()


@pytest.mark.parametrize("reason", ["boom", "normal"])
def test_sup_handler_is_removed_when_its_supervisor_ends(mgr: Pid, reason: str) -> None:
    gen_event.add_handler(mgr, (Recorder, "other"), (me(), "other"))
    sup = otp.spawn(_supervisor, mgr, me(), Recorder, (me(), "r"), False, reason)
    assert expect(("added", sup))
    assert gen_event.which_handlers(mgr) == [Recorder, (Recorder, "other")]
    otp.send(sup, "go")
    assert expect(("terminate", "r", ("stop", reason)))
    # Then the EXIT goes to the handlers that are left, as OTP's handle_exit.
    assert expect(("info", "other", EXIT(sup, reason)))
    assert gen_event.which_handlers(mgr) == [(Recorder, "other")]
    wait_down(sup)


def test_swap_sup_handler_from_another_process_moves_the_supervision(mgr: Pid) -> None:
    gen_event.add_sup_handler(mgr, Recorder, (me(), "old"))
    sup = otp.spawn(_supervisor, mgr, me(), Heir, (me(), "new"), True, "boom")
    assert expect(("added", sup))
    assert gen_event_exit(Recorder) == ("swapped", Heir, sup)
    otp.send(sup, "go")
    # Heir is supervised by `sup` now: its end removes Heir.
    assert expect(("terminate", "new", ("stop", "boom")))
    assert gen_event.which_handlers(mgr) == []
    wait_down(sup)


# ------------------------------------------------------ under a supervisor

needs_supervisor = pytest.mark.skipif(
    not hasattr(supervisor, "start_link"), reason="behaviours.supervisor is not built yet"
)


def _restarted(name: str, old: Pid) -> Pid | None:
    pid = otp.whereis(name)
    return pid if pid is not None and pid != old else None


@needs_supervisor
def test_child_spec_starts_a_named_manager_with_dynamic_modules() -> None:
    spec = GenEvent.child_spec(name="alarms", restart="transient")
    assert spec.id == "GenEvent"
    assert spec.start == (GenEvent.start_link, (), {"name": "alarms"})
    assert spec.modules == "dynamic"
    assert spec.restart == "transient"


@needs_supervisor
def test_supervised_manager_restarts_empty_and_stops_its_handlers_on_shutdown() -> None:
    sup = supervisor.start_link([GenEvent.child_spec(name="alarms", id="alarms")])
    m = otp.whereis("alarms")
    assert m is not None
    gen_event.add_handler("alarms", Recorder, (me(), "first"))
    # A killed manager runs no terminate, and its handlers are gone with it:
    # the restarted manager starts empty, as in OTP.
    ref = otp.monitor(m)
    otp.exit(m, "kill")
    assert wait_down(m, ref) == "killed"
    m2 = wait_until(lambda: _restarted("alarms", m), WAIT, "the restarted manager")
    assert gen_event.which_handlers(m2) == []
    gen_event.add_handler("alarms", Recorder, (me(), "second"))
    # The supervisor shuts its child down with "shutdown", which the
    # manager gets as its parent's EXIT. (The supervisor itself stops
    # "normal": the test process is linked to it.)
    ref = otp.monitor(m2)
    gen_server.stop(sup)
    assert expect(("terminate", "second", "stop"))
    assert wait_down(m2, ref) == "shutdown"


# --------------------------------------------------------------- otp.debug


def test_debug_get_state_lists_handlers_and_states_newest_first(mgr: Pid) -> None:
    gen_event.add_handler(mgr, Counter, 5)
    gen_event.add_handler(mgr, (Counter, "b"), 7)
    assert otp.debug.get_state(mgr) == [((Counter, "b"), 7), (Counter, 5)]


def test_debug_replace_state_replaces_each_handlers_state(mgr: Pid) -> None:
    gen_event.add_handler(mgr, Counter, 5)
    gen_event.add_handler(mgr, (Counter, "b"), 7)
    new = otp.debug.replace_state(mgr, lambda hs: (hs[0], hs[1] * 10))
    assert new == [((Counter, "b"), 70), (Counter, 50)]
    assert gen_event.call(mgr, Counter, "count") == 50


def test_debug_replace_state_that_changes_a_handler_changes_nothing(mgr: Pid) -> None:
    gen_event.add_handler(mgr, Counter, 5)
    with pytest.raises(otp.OTPError):
        otp.debug.replace_state(mgr, lambda hs: (Recorder, 0))
    with pytest.raises(otp.OTPError):
        otp.debug.replace_state(mgr, lambda hs: 1 / 0)
    assert otp.debug.get_state(mgr) == [(Counter, 5)]


def test_debug_get_status_statistics_and_trace(mgr: Pid) -> None:
    gen_event.add_handler(mgr, Counter, 0)
    status = otp.debug.get_status(mgr)
    assert status["behaviour"] == "GenEvent"
    assert status["handlers"] == [Counter]
    assert status["status"] == "running"
    assert status["parent"] == me()
    assert otp.debug.statistics(mgr)["messages_in"] >= 2
    otp.debug.trace(mgr, True)
    gen_event.sync_notify(mgr, "traced")
    otp.debug.trace(mgr, False)
    assert gen_event.call(mgr, Counter, "count") == 1


def test_debug_suspend_holds_events_until_resume(mgr: Pid) -> None:
    gen_event.add_handler(mgr, Counter, 0)
    otp.debug.suspend(mgr)
    gen_event.notify(mgr, "held")
    # The notify is queued before this system message, and is not served.
    assert otp.debug.get_state(mgr) == [(Counter, 0)]
    assert otp.debug.get_status(mgr)["status"] == "suspended"
    otp.debug.resume(mgr)
    gen_event.sync_notify(mgr, "after")
    assert gen_event.call(mgr, Counter, "count") == 2


_ = (EXIT, Stop, signal, os)
