"""Hot code upgrade: running processes move to a module's new code (issue 8).

Each test writes versions of a callback module into a directory on sys.path
(the sources are the constants below) and upgrades the processes running it
with `otp.upgrade` or `otp.debug.change_code`.
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import otp
from behaviours import gen_event, gen_server, gen_statem, supervisor
from otp.testing import wait_until

# ------------------------------------------------------------ the versions

COUNTER_V1 = """
from behaviours import GenServer, NoReply, Reply


class Counter(GenServer):
    vsn = 1

    def init(self, start=0):
        return start                                   # v1: an int

    def handle_call(self, request, from_, state):
        if request == "get":
            return Reply(("v1", state), state)
        if request == "vsn":
            return Reply(type(self).vsn, state)
        return Reply(("v1", "unknown"), state)

    def handle_cast(self, msg, state):
        return NoReply(state + 1)
"""

COUNTER_V2 = """
from behaviours import GenServer, NoReply, Reply


class Counter(GenServer):
    vsn = 2

    def init(self, start=0):
        return {"count": start, "upgraded_with": None}   # v2: a dict

    def handle_call(self, request, from_, state):
        if request == "get":
            return Reply(("v2", state["count"]), state)
        if request == "vsn":
            return Reply(type(self).vsn, state)
        return Reply(("v2", "unknown"), state)

    def handle_cast(self, msg, state):
        return NoReply({**state, "count": state["count"] + 1})

    def code_change(self, old_vsn, state, extra):
        if old_vsn == 1:
            if state < 0:
                raise ValueError(f"cannot upgrade a negative count {state}")
            return {"count": state, "upgraded_with": extra}
        if old_vsn == ("down", 1):
            return state["count"]
        raise ValueError(f"unknown old_vsn {old_vsn!r}")
"""

COUNTER_V2_BROKEN = COUNTER_V2.replace(
    "        if old_vsn == 1:\n", "        if old_vsn == 1:\n            raise RuntimeError('no')\n"
)

DOOR_V1 = """
from behaviours import GenStatem
from behaviours.gen_statem import Call, KeepState, NextState, ReplyTo


class Door(GenStatem):
    vsn = 1

    def init(self):
        return "closed", 0                              # v1: data is an int

    def closed(self, event_type, content, data):
        if event_type == "cast" and content == "open":
            return NextState("opened", data + 1)
        if isinstance(event_type, Call):
            return KeepState(data, [ReplyTo(event_type.from_, ("v1", "closed", data))])

    def opened(self, event_type, content, data):
        if event_type == "cast" and content == "close":
            return NextState("closed", data)
        if isinstance(event_type, Call):
            return KeepState(data, [ReplyTo(event_type.from_, ("v1", "opened", data))])
"""

DOOR_V2 = """
from behaviours import GenStatem
from behaviours.gen_statem import Call, KeepState, NextState, ReplyTo


class Door(GenStatem):
    vsn = 2
    callback_mode = "handle_event_function"             # v2 changes mode too

    def init(self):
        return ("closed",), {"opens": 0}

    def handle_event(self, event_type, content, state, data):
        if event_type == "cast" and content == "open":
            return NextState(("opened",), {"opens": data["opens"] + 1})
        if event_type == "cast" and content == "close":
            return NextState(("closed",), data)
        if isinstance(event_type, Call):
            return KeepState(data, [ReplyTo(event_type.from_, ("v2", state, data))])

    def code_change(self, old_vsn, state, data, extra):
        return (state,), {"opens": data}                 # v1 state "x" -> ("x",)
"""

LOGGER_V1 = """
from behaviours import EventHandler, Reply


class Lines(EventHandler):
    vsn = 1

    def init(self, args):
        return []                                        # v1: a list of events

    def handle_event(self, event, state):
        return [*state, event]

    def handle_call(self, request, state):
        return Reply(("v1", state), state)
"""

LOGGER_V2 = """
from behaviours import EventHandler, Reply


class Lines(EventHandler):
    vsn = 2

    def init(self, args):
        return {"events": [], "count": 0}

    def handle_event(self, event, state):
        return {"events": [*state["events"], event], "count": state["count"] + 1}

    def handle_call(self, request, state):
        return Reply(("v2", state), state)

    def code_change(self, old_vsn, state, extra):
        return {"events": state, "count": len(state)}
"""

LOGGER_V2_PICKY = LOGGER_V2.replace(
    '        return {"events": state, "count": len(state)}',
    '        if "bad" in state:\n            raise ValueError("bad")\n'
    '        return {"events": state, "count": len(state)}',
)


SUP_TAIL_V1 = """

from behaviours import Supervisor, SupFlags


class Sup(Supervisor):
    def init(self):
        return SupFlags(intensity=5), [Counter.child_spec(1, id="a")]
"""

SUP_TAIL_V2 = """

from behaviours import Supervisor, SupFlags


class Sup(Supervisor):
    vsn = 2

    def init(self):
        return SupFlags(intensity=5), [
            Counter.child_spec(10, id="a"),
            Counter.child_spec(20, id="b"),
        ]
"""


def app_tail(version: str) -> str:
    """An Application whose stop says which version it runs."""
    return f"""

import otp
from behaviours import Application


class App(Application):
    name = "upgraded_app"

    def start(self, start_type, args):
        return Sup.start_link()

    def stop(self, state):
        otp.send("upgrade_test", ("stopped", "{version}"))
"""


class Versions:
    """One module name, whose source file a test rewrites between versions."""

    def __init__(self, directory: Path) -> None:
        self.name = f"upg_{uuid.uuid4().hex[:10]}"
        self.path = directory / f"{self.name}.py"

    def write(self, source: str) -> None:
        self.path.write_text(textwrap.dedent(source))
        importlib.invalidate_caches()

    def load(self, source: str) -> Any:
        self.write(source)
        return importlib.import_module(self.name)


@pytest.fixture
def versions(tmp_path: Path) -> Iterator[Callable[[], Versions]]:
    """`versions()`: a new module name in a directory on sys.path.

    Runs before the test's first otp call, so the node's root process (forked
    when the node starts) has the directory on its sys.path too.
    """
    made: list[Versions] = []
    sys.path.insert(0, str(tmp_path))

    def make() -> Versions:
        made.append(Versions(tmp_path))
        return made[-1]

    yield make
    sys.path.remove(str(tmp_path))
    for v in made:
        sys.modules.pop(v.name, None)


# ------------------------------------------------------ module-level helpers


def _client(server: otp.Pid, parent: otp.Pid) -> None:
    """Cast and call in a loop until told to stop; report what it saw."""
    sent = 0
    tags: list[str] = []
    errors: list[str] = []
    while True:
        try:
            gen_server.cast(server, "inc")
            sent += 1
            tag, _ = gen_server.call(server, "get", timeout=30)
            if not tags or tags[-1] != tag:
                tags.append(tag)
        except Exception as e:
            errors.append(repr(e))
        try:
            otp.receive(lambda m: m == "stop", timeout=0)
            break
        except otp.ReceiveTimeout:
            pass
    otp.send(parent, ("client_done", sent, tags, errors))


def _host(module_name: str, parent: otp.Pid) -> None:
    """Start a Counter from another process, and stop it when told."""
    mod = importlib.import_module(module_name)
    pid = mod.Counter.start_link(7)
    otp.send(parent, ("hosted", pid))
    otp.receive(lambda m: m == "stop")
    gen_server.stop(pid)


def _count(pid: otp.Pid) -> Any:
    return gen_server.call(pid, "get")


# ------------------------------------------------------------------ tests


def test_upgrade_changes_a_servers_state_shape_while_a_client_casts_and_calls(
    versions: Callable[[], Versions],
) -> None:
    v = versions()
    mod = v.load(COUNTER_V1)
    pid = mod.Counter.start_link(0)
    me = otp.self_pid()
    client = otp.spawn(_client, pid, me)
    wait_until(lambda: _count(pid)[1] >= 30, 20, "the client's first casts")

    v.write(COUNTER_V2)
    report = otp.upgrade(mod, extra="hello")
    assert report["upgraded"] == [pid]
    assert report["failed"] == {}

    before = gen_server.call(pid, "get")[1]
    wait_until(lambda: _count(pid)[1] >= before + 30, 20, "casts after the upgrade")
    mon = otp.monitor(client)
    otp.send(client, "stop")
    _, sent, tags, errors = otp.receive(lambda m: type(m) is tuple and m[0] == "client_done", 30)
    otp.receive(lambda m: type(m) is otp.DOWN and m.ref == mon, 10)

    assert errors == []
    assert tags == ["v1", "v2"]  # answers from v1, then only from v2
    assert gen_server.call(pid, "get") == ("v2", sent)  # not one cast lost
    assert otp.debug.get_state(pid) == {"count": sent, "upgraded_with": "hello"}
    assert otp.process_info(pid)["os_pid"] == pid.id  # the same OS process
    gen_server.stop(pid)


def test_a_failing_code_change_keeps_the_old_code_and_state_and_is_reported(
    versions: Callable[[], Versions],
) -> None:
    v = versions()
    mod = v.load(COUNTER_V1)
    good = mod.Counter.start_link(5)
    bad = mod.Counter.start_link(-3)  # v2's code_change refuses negatives

    v.write(COUNTER_V2)
    report = otp.upgrade(mod.__name__)
    assert report["upgraded"] == [good]
    assert list(report["failed"]) == [bad]
    reason = report["failed"][bad]
    assert reason[:2] == ("callback_failed", "change_code")
    assert "negative count" in reason[2].message

    assert gen_server.call(good, "get") == ("v2", 5)
    # The failed one runs v1 as before: its class, its module, its state.
    assert gen_server.call(bad, "get") == ("v1", -3)
    assert gen_server.call(bad, "vsn") == 1
    gen_server.cast(bad, "inc")
    assert gen_server.call(bad, "get") == ("v1", -2)
    assert otp.debug.get_status(bad)["status"] == "running"  # resumed
    gen_server.stop(good)
    gen_server.stop(bad)


def test_debug_change_code_raises_and_keeps_the_process_on_its_old_code(
    versions: Callable[[], Versions],
) -> None:
    v = versions()
    mod = v.load(COUNTER_V1)
    pid = mod.Counter.start_link(1)
    v.write(COUNTER_V2_BROKEN)
    with pytest.raises(otp.OTPError) as e:
        otp.debug.change_code(pid, mod, 1, None)
    assert e.value.args[0][:2] == ("callback_failed", "change_code")
    assert gen_server.call(pid, "get") == ("v1", 1)
    gen_server.stop(pid)


def test_debug_change_code_upgrades_only_the_process_it_is_given(
    versions: Callable[[], Versions],
) -> None:
    v = versions()
    mod = v.load(COUNTER_V1)
    one = mod.Counter.start_link(1)
    two = mod.Counter.start_link(2)
    v.write(COUNTER_V2)
    assert otp.debug.change_code(one, mod.__name__, 1, "x") is True
    # Each process has its own copy of the module: only `one` reloaded it.
    assert gen_server.call(one, "get") == ("v2", 1)
    assert gen_server.call(two, "get") == ("v1", 2)
    assert otp.debug.get_state(one) == {"count": 1, "upgraded_with": "x"}
    other = versions()
    other.load(COUNTER_V1)
    assert otp.debug.change_code(two, other.name, 1, None) is False  # not its module
    gen_server.stop(one)
    gen_server.stop(two)


def test_downgrade_goes_back_to_the_old_shape_through_the_newer_code_change(
    versions: Callable[[], Versions],
) -> None:
    v = versions()
    mod = v.load(COUNTER_V1)
    pid = mod.Counter.start_link(10)
    v.write(COUNTER_V2)
    assert otp.upgrade(mod)["upgraded"] == [pid]
    gen_server.cast(pid, "inc")
    assert gen_server.call(pid, "get") == ("v2", 11)

    v.write(COUNTER_V1)
    # v2's code_change gets ("down", 1) and returns the int v1 expects.
    assert otp.upgrade(mod, downgrade=True)["upgraded"] == [pid]
    assert gen_server.call(pid, "get") == ("v1", 11)
    assert otp.debug.get_state(pid) == 11
    gen_server.cast(pid, "inc")
    assert gen_server.call(pid, "get") == ("v1", 12)
    gen_server.stop(pid)


def test_node_wide_upgrade_reaches_a_server_started_by_another_process(
    versions: Callable[[], Versions],
) -> None:
    v = versions()
    mod = v.load(COUNTER_V1)
    host = otp.spawn(_host, mod.__name__, otp.self_pid())
    _, server = otp.receive(lambda m: type(m) is tuple and m[0] == "hosted", 20)
    assert otp.process_info(server)["parent"] == host

    v.write(COUNTER_V2)
    report = otp.upgrade(mod.__name__)
    assert report["upgraded"] == [server]
    assert gen_server.call(server, "get") == ("v2", 7)

    mon = otp.monitor(host)
    otp.send(host, "stop")
    otp.receive(lambda m: type(m) is otp.DOWN and m.ref == mon, 20)


def test_a_server_started_after_the_upgrade_runs_the_new_code(
    versions: Callable[[], Versions],
) -> None:
    v = versions()
    mod = v.load(COUNTER_V1)
    old_class = mod.Counter
    first = old_class.start_link(0)
    v.write(COUNTER_V2)
    otp.upgrade(mod)
    # Even through the old class object, forked by the node's root (which
    # never reloads): the new server takes the module's new generation.
    later = old_class.start_link(3)
    assert gen_server.call(later, "get") == ("v2", 3)
    assert otp.debug.get_state(later) == {"count": 3, "upgraded_with": None}
    gen_server.stop(later)
    gen_server.stop(first)


def test_gen_statem_upgrade_converts_state_and_data_and_may_change_callback_mode(
    versions: Callable[[], Versions],
) -> None:
    v = versions()
    mod = v.load(DOOR_V1)
    door = mod.Door.start_link()
    gen_statem.cast(door, "open")
    assert gen_statem.call(door, "?") == ("v1", "opened", 1)

    v.write(DOOR_V2)
    assert otp.upgrade(mod)["upgraded"] == [door]
    assert otp.debug.get_state(door) == (("opened",), {"opens": 1})
    assert gen_statem.call(door, "?") == ("v2", ("opened",), {"opens": 1})
    gen_statem.cast(door, "close")
    gen_statem.cast(door, "open")
    assert gen_statem.call(door, "?") == ("v2", ("opened",), {"opens": 2})
    gen_statem.stop(door)


def test_gen_event_upgrade_converts_each_handler_of_the_module_and_no_other(
    versions: Callable[[], Versions],
) -> None:
    v = versions()
    mod = v.load(LOGGER_V1)
    other = versions()
    other_mod = other.load(LOGGER_V1)
    mgr = gen_event.start_link()
    gen_event.add_handler(mgr, (mod.Lines, "a"), None)
    gen_event.add_handler(mgr, (mod.Lines, "b"), None)
    gen_event.add_handler(mgr, other_mod.Lines, None)
    gen_event.sync_notify(mgr, "e1")

    v.write(LOGGER_V2)
    assert otp.upgrade(mod)["upgraded"] == [mgr]
    for hid in ("a", "b"):
        assert gen_event.call(mgr, (mod.Lines, hid), "?") == (
            "v2",
            {"events": ["e1"], "count": 1},
        )
    assert gen_event.call(mgr, other_mod.Lines, "?") == ("v1", ["e1"])
    gen_event.sync_notify(mgr, "e2")
    assert gen_event.call(mgr, (mod.Lines, "a"), "?")[1]["count"] == 2
    gen_event.stop(mgr)


def _mark_b_bad(entry: Any) -> Any:
    key, state = entry
    return (key, [*state, "bad"]) if type(key) is tuple and key[1] == "b" else entry


def test_gen_event_upgrade_is_all_or_nothing_across_the_managers_handlers(
    versions: Callable[[], Versions],
) -> None:
    v = versions()
    mod = v.load(LOGGER_V1)
    mgr = gen_event.start_link()
    gen_event.add_handler(mgr, (mod.Lines, "a"), None)
    gen_event.add_handler(mgr, (mod.Lines, "b"), None)
    gen_event.sync_notify(mgr, "e1")
    otp.debug.replace_state(mgr, _mark_b_bad)

    v.write(LOGGER_V2_PICKY)
    report = otp.upgrade(mod)
    assert report["upgraded"] == [] and list(report["failed"]) == [mgr]
    # "a" converted fine, but "b" refused: both stay on v1, states untouched.
    assert gen_event.call(mgr, (mod.Lines, "a"), "?") == ("v1", ["e1"])
    assert gen_event.call(mgr, (mod.Lines, "b"), "?") == ("v1", ["e1", "bad"])
    gen_event.stop(mgr)


def test_a_supervisor_restarts_its_child_with_the_new_code_after_an_upgrade(
    versions: Callable[[], Versions],
) -> None:
    v = versions()
    mod = v.load(COUNTER_V1)
    sup = supervisor.start_link([mod.Counter.child_spec(4, id="c")], intensity=5)
    [(_, child, _, _)] = supervisor.which_children(sup)

    v.write(COUNTER_V2)
    report = otp.upgrade(mod)
    assert sorted(report["upgraded"]) == sorted([sup, child])
    assert gen_server.call(child, "get") == ("v2", 4)

    mon = otp.monitor(child)
    os.kill(child.id, signal.SIGKILL)
    otp.receive(lambda m: type(m) is otp.DOWN and m.ref == mon, 20)

    def restarted() -> Any:
        [(_, pid, _, _)] = supervisor.which_children(sup)
        return pid if isinstance(pid, otp.Pid) and pid != child else None

    new = wait_until(restarted, 20, "the restart")
    assert gen_server.call(new, "get") == ("v2", 4)  # v2's init: a fresh dict
    supervisor_stop(sup)


def test_a_supervisor_module_upgrade_runs_init_again_and_takes_the_new_child_specs(
    versions: Callable[[], Versions],
) -> None:
    v = versions()
    mod = v.load(COUNTER_V1 + SUP_TAIL_V1)
    sup = mod.Sup.start_link()
    [(_, a, _, _)] = supervisor.which_children(sup)

    v.write(COUNTER_V2 + SUP_TAIL_V2)
    assert sorted(otp.upgrade(mod)["upgraded"]) == sorted([sup, a])
    # OTP's update_childspec: "a" keeps its process (its state converted by
    # code_change), the new "b" is known but not started.
    children = {cid: pid for cid, pid, _, _ in supervisor.which_children(sup)}
    assert children == {"a": a, "b": None}
    assert gen_server.call(a, "get") == ("v2", 1)
    b = supervisor.restart_child(sup, "b")
    assert gen_server.call(b, "get") == ("v2", 20)

    # A restart of "a" uses its new spec (start argument 10) and new code.
    mon = otp.monitor(a)
    os.kill(a.id, signal.SIGKILL)
    otp.receive(lambda m: type(m) is otp.DOWN and m.ref == mon, 20)

    def restarted() -> Any:
        pid = {cid: p for cid, p, _, _ in supervisor.which_children(sup)}["a"]
        return pid if isinstance(pid, otp.Pid) and pid != a else None

    new_a = wait_until(restarted, 20, "the restart of a")
    assert gen_server.call(new_a, "get") == ("v2", 10)
    supervisor_stop(sup)


def test_an_application_module_upgrade_reaches_its_master_tree_and_workers(
    versions: Callable[[], Versions],
) -> None:
    otp.register("upgrade_test")
    v = versions()
    mod = v.load(COUNTER_V1 + SUP_TAIL_V1 + app_tail("v1"))
    top = otp.application.start(mod.App)
    [(_, a, _, _)] = supervisor.which_children(top)
    master = otp.whereis("application_master:upgraded_app")

    v.write(COUNTER_V2 + SUP_TAIL_V2 + app_tail("v2"))
    assert sorted(otp.upgrade(mod)["upgraded"]) == sorted([master, top, a])
    assert gen_server.call(a, "get") == ("v2", 1)
    otp.application.stop("upgraded_app")
    assert otp.receive(lambda m: type(m) is tuple and m[0] == "stopped", 20) == (
        "stopped",
        "v2",
    )


def test_an_upgrade_to_code_that_does_not_import_changes_nothing(
    versions: Callable[[], Versions],
) -> None:
    v = versions()
    mod = v.load(COUNTER_V1)
    pid = mod.Counter.start_link(1)
    v.write("def broken(:\n")
    with pytest.raises(SyntaxError):
        otp.upgrade(mod)
    assert gen_server.call(pid, "get") == ("v1", 1)
    assert otp.debug.get_status(pid)["status"] == "running"
    gen_server.stop(pid)


def supervisor_stop(sup: otp.Pid) -> None:
    otp.unlink(sup)
    mon = otp.monitor(sup)
    otp.exit(sup, "shutdown")
    otp.receive(lambda m: type(m) is otp.DOWN and m.ref == mon, 20)


def test_the_hot_upgrade_example_upgrades_under_load_and_loses_nothing() -> None:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run(
        [sys.executable, os.path.join(root, "examples", "hot_upgrade", "demo.py")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=root,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "versions seen ['v1', 'v2'], errors []" in out
    assert "== casts sent" in out and ": True" in out.split("== casts sent")[1].splitlines()[0]
    assert "same server: True" in out
    assert "after the downgrade: ('v1'," in out
