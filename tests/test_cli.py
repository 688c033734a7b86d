"""The `otp` command, end to end: run a service, look at it, attach to it, stop it.

Each test runs `python -m otp run ...` in a subprocess from the repository
root (a node of its own, in the background as a service would be) and talks
to it only from outside: `python -m otp ps --json`, `python -m otp shell`,
signals, HTTP. Each service gets a node name of its own, so the other nodes
of this user (other tests, other programs) never get in the way. The
services are the example key-value tree and the small ones below (the test
directory is on the subprocess's path, so `otp run test_cli:DiesSoon` works).
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import otp
from behaviours import GenServer, Init, Stop, gen_server
from otp import _cli
from otp._proc_os import is_os_process_running
from otp.testing import wait_until

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"


class DiesSoon(GenServer):
    """A service that gives up on its own shortly after starting."""

    def init(self) -> Any:
        return Init(None, timeout=0.2)

    def handle_info(self, msg: Any, state: Any) -> Any:
        return Stop("gave_up", state)


class CannotStart(GenServer):
    def init(self) -> Any:
        return Stop("no_config")


class Idle(GenServer):
    pass


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{TESTS}", PYTHONDONTWRITEBYTECODE="1")


def _otp(
    *args: str, stdin: str | None = None, timeout: float = 40
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otp", *args],
        cwd=REPO,
        env=_env(),
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _node(name: str) -> dict[str, Any] | None:
    out = _otp("ps", name, "--json")
    assert out.returncode == 0, out.stderr
    nodes = [n for n in json.loads(out.stdout) if n["node"] == name]
    return nodes[0] if nodes else None


def _by_name(node: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in node["processes"]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # type: ignore[no-any-return]


class Service:
    """`python -m otp run ...` in the background; stopped for sure on leaving."""

    def __init__(self, tmp: Path, *args: str) -> None:
        self.err_path = tmp / "service.err"
        self.err = open(self.err_path, "w")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "otp", "run", *args],
            cwd=REPO,
            env=_env(),
            stdin=subprocess.DEVNULL,
            stdout=self.err,
            stderr=self.err,
        )

    def stderr(self) -> str:
        return self.err_path.read_text()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                # The node's root sees its main program die and kills the rest.
                self.proc.kill()
                self.proc.wait(10)
        self.err.close()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Any]:
    started: list[Service] = []

    def start(*args: str) -> Service:
        s = Service(tmp_path, *args)
        started.append(s)
        return s

    yield start
    for s in started:
        s.close()


def _kv_node(svc: Service, name: str) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        assert svc.proc.poll() is None, svc.stderr()
        node = _node(name)
        if node and {"kv_sup", "kv_storage", "kv_cache", "frontend"} <= set(_by_name(node)):
            return node
        return None

    return wait_until(ready, 40, "the kv service in otp ps")  # type: ignore[no-any-return]


def test_otp_run_shows_in_ps_restarts_a_killed_worker_serves_metrics_and_stops_on_sigterm(
    service: Any, tmp_path: Path
) -> None:
    name = f"kv-run-{os.getpid()}"
    port = _free_port()
    svc = service(
        "examples.kv_service:KVSupervisor",
        "0",
        str(tmp_path),
        "--name",
        "kv_sup",
        "--node",
        name,
        "--metrics",
        str(port),
    )
    node = _kv_node(svc, name)
    procs = _by_name(node)
    sup, cache = procs["kv_sup"], procs["kv_cache"]
    assert sup["behaviour"] == "Supervisor" and cache["behaviour"] == "GenServer"
    # The supervision tree is the OS tree: the supervisor forked its children.
    assert cache["ppid"] == sup["os_pid"] == procs["kv_storage"]["ppid"]
    assert cache["restarts"] == 0 and sup["supervisor_restarts"] == 0
    assert procs["main program"]["os_pid"] == svc.proc.pid
    for key in (
        "status",
        "memory",
        "cpu_seconds",
        "message_queue_len",
        "messages_in",
        "messages_out",
        "pid",
        "os_pid",
    ):
        assert key in cache, key

    os.kill(cache["os_pid"], signal.SIGKILL)

    def restarted() -> dict[str, Any] | None:
        node = _node(name)
        new = _by_name(node).get("kv_cache") if node else None
        return node if new and new["os_pid"] != cache["os_pid"] and new["restarts"] == 1 else None

    node = wait_until(restarted, 40, "kv_cache restarted, in otp ps")
    assert _by_name(node)["kv_sup"]["supervisor_restarts"] >= 1

    text = _otp("ps", name).stdout
    assert re.search(
        r"\n  <0\.\d+\.\d+>.*Supervisor.*kv_sup\n    <0\.\d+\.\d+>.*kv_storage", text
    ), text

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=20) as r:
        assert r.headers["Content-Type"].startswith("text/plain")
        metrics = r.read().decode()
    assert re.search(rf'otp_processes\{{node="{name}"\}} [5-9]', metrics), metrics
    assert re.search(r'otp_process_restarts_total\{[^}]*name="kv_cache"[^}]*\} 1\.0', metrics)
    assert re.search(r'otp_supervisor_restarts_total\{[^}]*name="kv_sup"[^}]*\} [1-9]', metrics)
    assert re.search(r'otp_process_memory_bytes\{[^}]*name="kv_storage"[^}]*\} \d', metrics)

    every = [p["os_pid"] for p in node["processes"]] + [node["root_os_pid"]]
    svc.proc.send_signal(signal.SIGTERM)
    assert svc.proc.wait(30) == 0, svc.stderr()
    assert not [pid for pid in every if is_os_process_running(pid)]
    assert not os.path.exists(node["rundir"])
    assert "stopping" in svc.stderr()
    # The supervisor's restart of the killed cache was reported once.
    assert svc.stderr().count("SUPERVISOR REPORT") == 1, svc.stderr()


def test_otp_shell_is_a_process_of_the_running_node(service: Any, tmp_path: Path) -> None:
    name = f"kv-shell-{os.getpid()}"
    svc = service(
        "examples.kv_service:KVSupervisor", "0", str(tmp_path), "--name", "kv_sup", "--node", name
    )
    before = _by_name(_kv_node(svc, name))
    lines = """
        from behaviours import gen_server
        print("set:", gen_server.call("kv_cache", ("set", "colour", "blue")))
        print("stats:", gen_server.call("kv_cache", "stats"))
        print("info:", otp.process_info(otp.whereis("kv_storage"))["registered_name"])
        print("state:", otp.debug.get_state("kv_storage")["data"])
        print("children:", sorted(c[0] for c in supervisor.which_children("kv_sup")))
        def greet(to):
            otp.send(to, ("hello from", otp.self_pid()))

        otp.spawn(greet, otp.self_pid())
        print("got:", otp.receive(timeout=10)[0])
        print("me:", otp.self_pid(), otp.whereis("kv_cache") is not None)
        """
    out = _otp("shell", name, stdin="\n".join(x[8:] for x in lines.splitlines()) + "\n")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "set: ok" in out.stdout
    assert "stats: {'hits': 0, 'misses': 0}" in out.stdout
    assert "info: kv_storage" in out.stdout
    assert "state: {'colour': 'blue'}" in out.stdout
    assert "children: ['cache', 'frontend', 'storage']" in out.stdout
    assert "got: hello from" in out.stdout
    assert "Traceback" not in out.stderr, out.stderr
    me = re.search(r"me: (<0\.\d+\.\d+>) True", out.stdout)
    assert me, out.stdout

    # The shell cannot stop the node; its error does not end the service.
    refused = _otp("shell", name, "-c", "otp.node.stop()")
    assert refused.returncode == 1 and "cannot stop" in refused.stderr

    node = _node(name)
    assert node is not None
    after = _by_name(node)
    # The service is untouched, and the shell left the node when it exited.
    for role in ("kv_sup", "kv_storage", "kv_cache", "frontend"):
        assert after[role]["os_pid"] == before[role]["os_pid"]
    assert me.group(1) not in {p["pid"] for p in node["processes"]}
    # Ctrl-C stops a service as SIGTERM does: in order, exit code 0.
    svc.proc.send_signal(signal.SIGINT)
    assert svc.proc.wait(30) == 0, svc.stderr()
    assert not os.path.exists(node["rundir"])


def test_an_idle_shell_at_a_terminal_prompt_still_answers_its_node(service: Any) -> None:
    # At a terminal the REPL waits in readline, which calls the input hook
    # the shell installs: its runtime keeps answering (here: otp ps) while
    # nobody types.
    name = f"idle-shell-{os.getpid()}"
    svc = service("test_cli:Idle", "--name", "idle", "--node", name)
    wait_until(lambda: svc.proc.poll() is None and _node(name), 30, "the service")
    master, slave = pty.openpty()
    sh = subprocess.Popen(
        [sys.executable, "-m", "otp", "shell", name],
        cwd=REPO,
        env=_env(),
        stdin=slave,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    seen = bytearray()

    def saw(text: str) -> bool:
        ready, _, _ = select.select([master], [], [], 0.05)
        if ready:
            try:
                seen.extend(os.read(master, 65536))
            except OSError:  # the shell exited: its side of the pty is closed
                pass
        return text.encode() in seen

    try:
        wait_until(lambda: saw(">>> "), 30, "the shell's prompt")

        def shell_row() -> dict[str, Any] | None:
            node = _node(name)
            return _by_name(node).get("otp shell") if node else None

        row = wait_until(shell_row, 30, "the shell in otp ps")
        assert row["status"] == "waiting"
        os.write(master, b'print("answer:", otp.process_info(otp.whereis("idle"))["behaviour"])\n')
        wait_until(lambda: saw("answer: GenServer"), 30, "the answer")
        # Ctrl-D once readline waits again (typed earlier, the terminal's
        # line discipline, not readline, would take it).
        wait_until(
            lambda: saw("GenServer") and b">>> " in seen.split(b"answer:")[-1],
            30,
            "the next prompt",
        )
        os.write(master, b"\x04")
        assert sh.wait(30) == 0
    finally:
        if sh.poll() is None:
            sh.kill()
            sh.wait(10)
        os.close(master)
    assert "attached to node" in seen.decode(errors="replace")


def test_otp_run_exit_code_says_the_service_died(service: Any, tmp_path: Path) -> None:
    svc = service("test_cli:DiesSoon", "--node", f"dies-{os.getpid()}")
    assert svc.proc.wait(30) == 1, svc.stderr()
    assert "gave_up" in svc.stderr()


def test_otp_run_exit_code_says_it_could_not_start() -> None:
    assert _otp("run", "no_such_module_here:Thing").returncode == 2
    assert _otp("run", "test_cli:NoSuchClass").returncode == 2
    out = _otp("run", "test_cli:CannotStart")
    assert out.returncode == 2 and "no_config" in out.stderr, out.stderr


def test_otp_shell_without_a_matching_node_says_so() -> None:
    out = _otp("shell", f"no-such-node-{os.getpid()}", "-c", "pass")
    assert out.returncode == 2 and "no live node" in out.stderr


def test_run_arguments_are_python_literals_or_strings_and_key_value_keywords() -> None:
    args, kwargs = _cli.parse_call_args(["7070", "'x'", "/var/lib", "[1, 2]", "port=80", "a=b"])
    assert args == [7070, "x", "/var/lib", [1, 2]]
    assert kwargs == {"port": 80, "a": "b"}


def test_ps_and_top_show_this_nodes_processes_with_their_figures(
    capsys: pytest.CaptureFixture[str],
) -> None:
    pid = Idle.start_link(name="cli_idle")
    rundir = otp.node.rundir()
    (node,) = _cli.collect(rundir=rundir)
    row = _by_name(node)["cli_idle"]
    assert row["pid"] == str(pid) and row["os_pid"] == pid.id
    assert row["behaviour"] == "GenServer" and row["status"] == "waiting"
    assert row["message_queue_len"] == 0 and isinstance(row["memory"], int)
    assert "cli_idle" in _cli.render([node])

    assert (
        _cli.main(["top", os.path.basename(rundir), "--iterations", "2", "--interval", "0.1"]) == 0
    )
    shown = capsys.readouterr().out
    assert "cli_idle" in shown and "GenServer" in shown and "CPU%" in shown
    otp.unlink(pid)
    gen_server.stop(pid)
