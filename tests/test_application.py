"""Applications: start, stop, environment and dependencies (issue 8)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import pytest

import otp
from behaviours import Application, GenServer, Reply, Supervisor, SupFlags, gen_server
from otp.testing import wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVENTS = "app_events"


def _event(*what: Any) -> None:
    """Tell the test what an application callback did (and in which process)."""
    try:
        otp.send(EVENTS, what)
    except otp.NoProc:
        pass


def _events(n: int) -> list[tuple[Any, ...]]:
    return [otp.receive(lambda m: type(m) is tuple and m[0] == "app", 20) for _ in range(n)]


class Store(GenServer):
    """Reads its application's environment in its own (new) process."""

    def init(self) -> Any:
        return otp.application.get_env("db", "size", "unset")

    def handle_call(self, request: Any, from_: Any, state: Any) -> Any:
        if request == "env":
            return Reply(otp.application.get_env("db", "size", "unset"), state)
        return Reply(state, state)


class DbSup(Supervisor):
    def init(self) -> Any:
        return SupFlags(intensity=0), [Store.child_spec(id="store", name="db_store")]


class Db(Application):
    """The database."""

    name = "db"
    env = {"size": 10}
    vsn = "1.0"

    def start(self, start_type: str, args: Any) -> Any:
        _event("app", "start", "db", start_type)
        return DbSup.start_link(), "db-state"

    def stop(self, state: Any) -> None:
        _event("app", "stop", "db", state)


class WebSup(Supervisor):
    def init(self) -> Any:
        return SupFlags(), []


class Web(Application):
    """The web front end."""

    name = "web"
    applications = [Db]

    def start(self, start_type: str, args: Any) -> Any:
        # Its dependency is already running, with its environment.
        _event("app", "start", "web", otp.application.get_env("db", "size"))
        return WebSup.start_link()

    def stop(self, state: Any) -> None:
        _event("app", "stop", "web", state)


class Broken(Application):
    applications = [Db]

    def start(self, start_type: str, args: Any) -> Any:
        raise RuntimeError("cannot start")


def _reader(parent: otp.Pid) -> None:
    """Started before the application: reads its environment when told."""
    otp.receive(lambda m: m == "read")
    otp.send(parent, ("size", otp.application.get_env("db", "size")))


def _start_linked_and_wait(parent: otp.Pid) -> None:
    top = Web.start_link()
    otp.send(parent, ("top", top))
    otp.receive(lambda m: m == "quit")


@pytest.fixture(autouse=True)
def events() -> None:
    otp.register(EVENTS)


def test_dependencies_start_first_and_stop_last() -> None:
    top = otp.application.start(Web)
    assert _events(2) == [("app", "start", "db", "normal"), ("app", "start", "web", 10)]
    assert otp.process_info(top)["behaviour"] == "Supervisor"
    assert otp.application.which_applications() == [
        ("web", "The web front end.", 1),
        ("db", "The database.", "1.0"),
    ]
    db_top = otp.whereis("db_store")
    mon = otp.monitor(db_top)

    otp.application.stop(Web)
    assert _events(2) == [("app", "stop", "web", None), ("app", "stop", "db", "db-state")]
    otp.receive(lambda m: type(m) is otp.DOWN and m.ref == mon, 20)
    assert not otp.is_process_alive(top)
    assert otp.application.which_applications() == []


def test_get_env_reads_the_start_env_from_children_and_older_processes() -> None:
    me = otp.self_pid()
    reader = otp.spawn(_reader, me)  # forked before the application starts
    otp.application.start(Db, env={"size": 42})
    _events(1)
    assert gen_server.call("db_store", "get") == 42  # read in the child's init
    otp.send(reader, "read")
    assert otp.receive(lambda m: type(m) is tuple and m[0] == "size", 20) == ("size", 42)

    otp.application.set_env(Db, "size", 43)
    assert gen_server.call("db_store", "env") == 43
    assert otp.application.get_env("db", "size") == 43
    assert otp.application.get_env(Db, "missing", "dflt") == "dflt"
    assert otp.application.get_all_env("db") == {"size": 43}

    otp.application.stop("db")
    _events(1)
    # Not running: the class's env, or the default for a bare name.
    assert otp.application.get_env(Db, "size") == 10
    assert otp.application.get_env("db", "size", "none") == "none"


def test_stopping_a_dependency_stops_its_dependents_first() -> None:
    otp.application.start(Web)
    _events(2)
    otp.application.stop(Db)
    assert _events(2) == [("app", "stop", "web", None), ("app", "stop", "db", "db-state")]
    assert otp.application.which_applications() == []


def test_a_dependency_started_on_its_own_outlives_its_dependent() -> None:
    otp.application.start(Db)
    otp.application.start(Web)
    assert [e[2] for e in _events(2)] == ["db", "web"]
    otp.application.stop(Web)
    assert _events(1) == [("app", "stop", "web", None)]
    assert [a[0] for a in otp.application.which_applications()] == ["db"]
    otp.application.stop(Db)
    _events(1)


def test_start_link_returns_the_top_supervisor_and_the_application_ends_with_its_caller() -> None:
    me = otp.self_pid()
    caller = otp.spawn(_start_linked_and_wait, me)
    _, top = otp.receive(lambda m: type(m) is tuple and m[0] == "top", 20)
    assert otp.process_info(top)["module"] == "WebSup"
    _events(2)
    mon = otp.monitor(top)
    # The master leaves the table before it exits: wait for its end too, or
    # the test may end while it still runs (a leaked process, under load).
    master_mon = otp.monitor("application_master:web")
    otp.send(caller, "quit")
    otp.receive(lambda m: type(m) is otp.DOWN and m.ref == mon, 20)
    assert [e[:3] for e in _events(2)] == [("app", "stop", "web"), ("app", "stop", "db")]
    wait_until(lambda: otp.application.which_applications() == [], 10, "both stopped")
    otp.receive(lambda m: type(m) is otp.DOWN and m.ref == master_mon, 20)


def test_a_failing_start_raises_and_stops_the_dependencies_it_started() -> None:
    with pytest.raises(otp.StartError):
        otp.application.start(Broken)
    assert _events(2) == [("app", "start", "db", "normal"), ("app", "stop", "db", "db-state")]
    assert otp.application.which_applications() == []


def test_starting_a_running_application_again_is_refused() -> None:
    otp.application.start(Db)
    _events(1)
    with pytest.raises(otp.StartError) as e:
        otp.application.start(Db)
    assert e.value.reason == ("already_started", "db")
    otp.application.stop(Db)
    _events(1)
    with pytest.raises(otp.BadArg):
        otp.application.stop(Db)


def test_an_application_whose_top_supervisor_dies_has_stopped() -> None:
    top = otp.application.start(Db)
    _events(1)
    master = otp.whereis("application_master:db")
    assert master is not None
    master_ref = otp.monitor(master)
    os.kill(top.id, signal.SIGKILL)
    assert _events(1) == [("app", "stop", "db", "db-state")]  # stop(state) still runs
    wait_until(lambda: otp.application.which_applications() == [], 10, "db gone")
    wait_until(lambda: otp.whereis("db_store") is None, 10, "its tree gone")
    # The master ends too; wait for its end, not just its name's (the test
    # must not finish while it is still exiting).
    otp.receive(lambda m: isinstance(m, otp.DOWN) and m.ref == master_ref, timeout=10)


def test_otp_run_runs_an_application_as_a_service_and_sigterm_stops_it_in_order() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "otp", "run", "examples.app_example:Shop"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "running as" in line:
                break
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    lines = [line for line in out.splitlines() if line.startswith("app:")]
    assert lines == [
        "app: inventory started",
        "app: shop started",
        "app: shop stopped",
        "app: inventory stopped",
    ]
