"""Distribution figures: remote calls, casts and kill -> DOWN between nodes,
each next to Erlang's own node-to-node figure measured in the same run.

`python -m benchmarks.bench_dist [--quick] [--reps 5] [--target-s 0.4]
[--kills 15] [--mode both|pinned|unpinned] [--out PATH]` prints a table and
writes `benchmarks/results_dist.json` (the layout of `results.json`: per
figure and placement, `value`, `limit`, `ratio`, each a median with its
min-max over the repetitions; here *the limit is Erlang*, two `erl` nodes
doing the same thing over loopback, and `limit_name` says which figure).

The cluster of one run, all on 127.0.0.1 with a private epmd port:

- `pa`: this program's node (the worker); its client process times every
  Python-side figure, as a process of an application would see it.
- `pb`: a second Python node, its own program (`--peer`), with the echo
  server `bench_server`, answering `victim` calls with a fresh process.
- `ea`, `eb`: two erl nodes running `bench_dist.erl` (the same server, and a
  client that times Erlang's figures on command).

The figures (rows of the table):

1. `gen_server.call` round trip pa -> pb (target: <= 2x erl -> erl). The
   path: caller -> pa's dist process (Unix socket) -> TCP -> pb's dist process
   -> server (Unix socket), and the reply back the same way; every call also
   sends MONITOR_P and DEMONITOR_P, as gen:call does.
2. one-way `gen_server.cast` throughput pa -> pb, N casts then one `sync`
   call that returns the count (target: >= 0.5x erl -> erl).
3. pa -> eb and ea -> pb: the same call and cast against a real erl.
4. SIGKILL of a process on pb -> `DOWN` (reason `killed`) of pa's monitor.
   Erlang's figure is `exit(P, kill)` run on the victim's node -> the 'DOWN'
   seen on the other node (wall clock on both sides: one machine, one clock).

With `--tls` every node of the cluster speaks TLS distribution (Python
nodes with `otp.node.TLS`, erl nodes with `-proto_dist inet_tls`, one
throwaway CA: `otp.dist._testing.Pki`), and the results go to
`benchmarks/results_dist_tls.json`: the figures of a cluster across
machines, next to Erlang's own over TLS.

Placement: the whole run (every node, epmd, erl included) in one worker under
`taskset -c 0` ("pinned": the tight, comparable figures on this 2-vCPU VM,
baselines.md section 0), then unpinned. Within a repetition every figure and
its Erlang figure are measured back to back, in an order that rotates from
one repetition to the next, and the ratio is taken per repetition.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import secrets
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import otp
from behaviours import GenServer, NoReply, Reply, gen_server
from otp.dist._etf import Atom
from otp.dist._testing import Epmd, Pki

from ._core import Target, calibrate, summarize
from ._driver import format_table

__all__ = ["BenchServer", "main"]

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results_dist.json"
RESULTS_TLS = HERE / "results_dist_tls.json"
ERL_SOURCE = HERE / "bench_dist.erl"
PIN_CPU = "0"

#: The request of every call and the message of every cast (Erlang's `{add, 1}`
#: on the erl side: a str travels as a binary, which erl echoes as it came).
SMALL = ("add", 1)
SYNC = Atom("sync")  # the server's "how many casts so far" call, an atom for erl


# ----------------------------------------------------------------- the figures


class _Fig:
    """One row: a Python figure, the Erlang figure it is judged against."""

    def __init__(
        self,
        name: str,
        title: str,
        unit: str,
        erlang: str,
        limit_name: str,
        target: Target | None = None,
        doc: str = "",
    ) -> None:
        self.name = name
        self.title = title
        self.unit = unit
        self.erlang = erlang  # the key of the Erlang measurement
        self.limit_name = limit_name
        self.target = target
        self.doc = doc


ERL_CALL = "erl -> erl gen_server:call round trip"
ERL_CAST = "erl -> erl gen_server:cast one-way"
ERL_KILL = "erl: exit(P, kill) on P's node -> 'DOWN' on the other"

FIGS = [
    _Fig(
        "call_py_py",
        "remote gen_server.call round trip, Python -> Python",
        "us",
        "erl_call",
        ERL_CALL,
        Target("ratio", "<=", 2.0),
        "A process of node pa calls the echo server of node pb: mean us per call.",
    ),
    _Fig(
        "cast_py_py",
        "remote cast throughput, Python -> Python",
        "msg/s",
        "erl_cast",
        ERL_CAST,
        Target("ratio", ">=", 0.5),
        "N gen_server.cast from a process of pa to pb's server, then one call "
        "that returns the count: messages per second.",
    ),
    _Fig(
        "call_py_erl",
        "remote gen_server.call round trip, Python -> erl",
        "us",
        "erl_call",
        ERL_CALL,
        doc="A process of pa calls the echo server of erl node eb.",
    ),
    _Fig(
        "call_erl_py",
        "remote gen_server:call round trip, erl -> Python",
        "us",
        "erl_call",
        ERL_CALL,
        doc="erl node ea's client calls pb's echo server (a Python GenServer).",
    ),
    _Fig(
        "cast_py_erl",
        "remote cast throughput, Python -> erl",
        "msg/s",
        "erl_cast",
        ERL_CAST,
        doc="N casts from a process of pa to erl node eb's server, then a sync call.",
    ),
    _Fig(
        "cast_erl_py",
        "remote cast throughput, erl -> Python",
        "msg/s",
        "erl_cast",
        ERL_CAST,
        doc="N gen_server:cast from erl node ea to pb's server, then a sync call.",
    ),
    _Fig(
        "kill_down_py_py",
        "SIGKILL of a remote process -> local DOWN",
        "us",
        "erl_kill",
        ERL_KILL,
        doc="A process of pa monitors a process of pb and SIGKILLs its OS process: "
        "us until DOWN(killed) arrives (median of the kills of a repetition).",
    ),
]


# ------------------------------------------------------- the Python processes


class BenchServer(GenServer):
    """The echo server of bench_dist.erl, in Python: echoes calls, counts
    casts, answers `sync` with the count (and resets it), and `victim` with
    a fresh process to kill."""

    def init(self) -> int:
        return 0

    def handle_call(self, request: Any, from_: Any, n: int) -> Any:
        if request == "sync":
            return Reply(n, 0)
        if request == "victim":
            return Reply(_spawn_victim(), n)
        return Reply(request, n)

    def handle_cast(self, msg: Any, n: int) -> Any:
        return NoReply(n + 1)


def _victim(parent: otp.Pid) -> None:
    otp.send(parent, ("victim_up", otp.self_pid()))
    otp.receive()


def _spawn_victim() -> otp.Pid:
    """A process to SIGKILL, up and listening when this returns."""
    pid = otp.spawn(_victim, otp.self_pid())
    otp.receive(lambda m: m == ("victim_up", pid), 30)
    return pid


def _client() -> None:
    """Runs one measurement per `(from, tag, command)` and answers `(tag, value)`:
    the Python counterpart of bench_dist.erl's `bench_client`."""
    while True:
        m = otp.receive()
        if m == "stop":
            return
        frm, tag, cmd = m
        otp.send(frm, (tag, _run(cmd)))


def _run(cmd: tuple[Any, ...]) -> Any:
    kind = cmd[0]
    if kind == "call":
        _, dest, msg, n = cmd
        call = gen_server.call
        t0 = time.perf_counter()
        for _ in range(n):
            call(dest, msg, None)
        return (time.perf_counter() - t0) / n * 1e6
    if kind == "cast":
        _, dest, msg, n = cmd
        cast = gen_server.cast
        t0 = time.perf_counter()
        for _ in range(n):
            cast(dest, msg)
        got = gen_server.call(dest, SYNC, None)
        dt = time.perf_counter() - t0
        if got != n:
            raise RuntimeError(f"{n} casts sent, {got} counted")
        return n / dt
    if kind == "kill_down":
        _, node, k = cmd
        return [_kill_down(node) for _ in range(k)]
    if kind == "kill_local":
        return [_kill_local() for _ in range(cmd[1])]
    raise ValueError(f"unknown command {cmd!r}")


def _kill_local() -> float:
    """As `_kill_down` with the victim on this node: how much of the remote
    figure is the local runtime's (the OS ending the process, the EOF)."""
    victim = _spawn_victim()
    ref = otp.monitor(victim)
    t0 = time.perf_counter()
    os.kill(victim.id, signal.SIGKILL)
    m = otp.receive(lambda m: type(m) is otp.DOWN and m.ref == ref, 30)
    dt = (time.perf_counter() - t0) * 1e6
    if m.reason != "killed":
        raise RuntimeError(f"DOWN with {m.reason!r}, not 'killed'")
    return dt


def _kill_down(node: str) -> float:
    server = ("bench_server", node)
    victim = gen_server.call(server, "victim", 30)
    ref = otp.monitor(victim)
    # A call after the monitor, through the same connections: its reply
    # proves the peer's dist process has set up the monitor (MONITOR_P went
    # first), so the kill below cannot beat it (that would be DOWN noproc).
    gen_server.call(server, "ping", 30)
    t0 = time.perf_counter()
    os.kill(victim.id, signal.SIGKILL)
    m = otp.receive(lambda m: type(m) is otp.DOWN and m.ref == ref, 30)
    dt = (time.perf_counter() - t0) * 1e6
    if m.reason != "killed":
        raise RuntimeError(f"DOWN with {m.reason!r}, not 'killed'")
    return dt


# ------------------------------------------------------------ the cluster


def _readline(stream: Any, timeout: float, what: str) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        raise RuntimeError(f"{what}: not ready within {timeout} s")
    return str(stream.readline()).strip()


class _Cluster:
    """epmd, two erl nodes, a Python peer node and this node, all private."""

    def __init__(self, tmp: str, tls: bool = False) -> None:
        self.tmp = tmp
        self.tls = tls
        self.pki: Any = None
        self.cookie = secrets.token_hex(16).upper()
        self.epmd = Epmd()  # a private port mapper, as the tests have theirs
        self.epmd_port = self.epmd.port
        self.env = dict(self.epmd.env, PYTHONPATH=str(REPO))
        self.pa = f"pa{os.getpid()}@127.0.0.1"
        self.pb = f"pb{os.getpid()}@127.0.0.1"
        self.ea = f"ea{os.getpid()}@127.0.0.1"
        self.eb = f"eb{os.getpid()}@127.0.0.1"
        self.procs: list[subprocess.Popen[str]] = []
        self.epmd_up = False
        self.client: otp.Pid | None = None

    def start(self) -> None:
        self.epmd.start()
        self.epmd_up = True
        subprocess.run(["erlc", "-o", self.tmp, str(ERL_SOURCE)], check=True, timeout=60)
        if self.tls:
            self.pki = Pki(Path(self.tmp) / "pki")
        # Started together, waited for together: each takes about a second.
        erl = shutil.which("erl") or "erl"
        for name in (self.ea, self.eb):
            args = [
                erl, "-noshell", "-name", name, "-setcookie", self.cookie,
                "-kernel", "inet_dist_use_interface", "{127,0,0,1}",
                "-pa", self.tmp, "-eval", "bench_dist:start()",
            ]  # fmt: skip
            if self.pki is not None:
                conf = self.pki.erl_optfile(self.pki.issue(name.split("@")[0]))
                args += ["-proto_dist", "inet_tls", "-ssl_dist_optfile", conf]
            self._popen(args)
        peer = [sys.executable, "-m", "benchmarks.bench_dist", "--peer", self.pb, self.cookie]
        if self.pki is not None:
            c = self.pki.issue("pb")
            peer += ["--peer-tls", c.certfile, c.keyfile, self.pki.cafile]
        self._popen(peer)
        for p in self.procs:
            line = _readline(p.stdout, 60, " ".join(p.args[:4]))  # type: ignore[index]
            if line != "ready":
                raise RuntimeError(f"{p.args!r} said {line!r}")
        tls = None
        if self.pki is not None:
            c = self.pki.issue("pa")
            tls = otp.node.TLS(certfile=c.certfile, keyfile=c.keyfile, cafile=self.pki.cafile)
        otp.node.start(name=self.pa, cookie=self.cookie, epmd=self.epmd_port, tls=tls)
        self.client = otp.spawn(_client)

    def _popen(self, cmd: list[str]) -> None:
        self.procs.append(
            subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=self.env,
                cwd=REPO,
            )
        )

    def ask(self, who: Any, cmd: tuple[Any, ...], timeout: float = 300) -> Any:
        """Run `cmd` in client `who` (a Pid, or `(bench_client, erl node)`)."""
        tag = otp.make_ref()
        otp.send(who, (otp.self_pid(), tag, cmd))
        m = otp.receive(lambda m: type(m) is tuple and len(m) == 2 and m[0] == tag, timeout)
        return m[1]

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            if self.client is not None:
                ref = otp.monitor(self.client)
                otp.send(self.client, "stop")
                otp.receive(lambda m: type(m) is otp.DOWN and m.ref == ref, 10)
        for node in (self.ea, self.eb):
            # Wait for the node to go (nodedown), not just for the send: the
            # node's stop below would end our dist process before it wrote
            # the message out.
            with contextlib.suppress(Exception):
                otp.monitor_node(node)
                otp.send(("bench_client", node), Atom("stop"))
                otp.receive(lambda m, node=node: m == ("nodedown", node), 10)
        with contextlib.suppress(Exception):
            otp.node.stop()
        for p in self.procs:
            if p.stdin is not None:
                with contextlib.suppress(OSError):
                    p.stdin.close()  # the Python peer stops when its stdin closes
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
            if p.stdout is not None:
                p.stdout.close()
        if self.epmd_up:
            self.epmd.stop()  # retries while epmd has not yet seen every node go


# ------------------------------------------------------------- the worker


def _measurements(c: _Cluster) -> dict[str, Callable[[int], Any]]:
    """Every measurement of a run, by key: a callable of an iteration count."""
    assert c.client is not None
    me = c.client
    ea = ("bench_client", c.ea)  # otp.send takes (name, node) as two str
    on_pb = ("bench_server", c.pb)
    on_eb = ("bench_server", c.eb)
    erl_pb = (Atom("bench_server"), Atom(c.pb))
    erl_eb = (Atom("bench_server"), Atom(c.eb))
    small_erl = (Atom("add"), 1)
    return {
        "erl_call": lambda n: c.ask(ea, (Atom("call"), erl_eb, small_erl, n)),
        "erl_cast": lambda n: c.ask(ea, (Atom("cast"), erl_eb, small_erl, n)),
        "erl_kill": lambda k: c.ask(ea, (Atom("kill_down"), Atom(c.eb), k)),
        "call_py_py": lambda n: c.ask(me, ("call", on_pb, SMALL, n)),
        "cast_py_py": lambda n: c.ask(me, ("cast", on_pb, SMALL, n)),
        "call_py_erl": lambda n: c.ask(me, ("call", on_eb, SMALL, n)),
        "call_erl_py": lambda n: c.ask(ea, (Atom("call"), erl_pb, small_erl, n)),
        "cast_py_erl": lambda n: c.ask(me, ("cast", on_eb, SMALL, n)),
        "cast_erl_py": lambda n: c.ask(ea, (Atom("cast"), erl_pb, small_erl, n)),
        "kill_down_py_py": lambda k: c.ask(me, ("kill_down", c.pb, k)),
        "kill_local_py": lambda k: c.ask(me, ("kill_local", k)),
    }


def _timed(fn: Callable[[int], Any]) -> Callable[[int], float]:
    def measure(n: int) -> float:
        return float(fn(n))

    return measure


def run_worker(reps: int, target_s: float, kills: int, tls: bool = False) -> dict[str, Any]:
    """One placement's run: every measurement `reps` times; raw values."""
    with tempfile.TemporaryDirectory(prefix="otp-bench-dist-") as tmp:
        c = _Cluster(tmp, tls)
        try:
            c.start()
            ms = _measurements(c)
            keys = [k for k in ms if "kill" not in k]
            # Iteration counts calibrated once per key (the trials warm up
            # every connection and code path); kills are a fixed count.
            counts = {k: calibrate(_timed(ms[k]), target_s, lo=5) for k in keys}
            raw: dict[str, list[float]] = {k: [] for k in ms}
            kill_values: dict[str, list[list[float]]] = {
                "erl_kill": [],
                "kill_down_py_py": [],
                "kill_local_py": [],
            }
            order = list(ms)
            for rep in range(reps):
                # Rotate the order: no measurement always follows the same one.
                shift = rep % len(order)
                for k in order[shift:] + order[:shift]:
                    if k in kill_values:
                        per_kill = [float(x) for x in ms[k](kills)]
                        kill_values[k].append(per_kill)
                        raw[k].append(statistics.median(per_kill))
                    else:
                        raw[k].append(float(ms[k](counts[k])))
            return {
                "cpus": sorted(os.sched_getaffinity(0)),
                "raw": raw,
                "counts": counts,
                "kills": kill_values,
            }
        finally:
            c.stop()


def run_peer(name: str, cookie: str, tls_files: list[str] | None = None) -> None:
    """The Python peer node pb: its server, then idle until stdin closes."""
    tls = None
    if tls_files:
        certfile, keyfile, cafile = tls_files
        tls = otp.node.TLS(certfile=certfile, keyfile=keyfile, cafile=cafile)
    otp.node.start(name=name, cookie=cookie, epmd=int(os.environ["ERL_EPMD_PORT"]), tls=tls)
    BenchServer.start(name="bench_server")
    print("ready", flush=True)
    sys.stdin.read()
    otp.node.stop()


# ------------------------------------------------------------- the driver


def _spawn_worker(mode: str, a: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        sys.executable, "-m", "benchmarks.bench_dist", "--worker",
        "--reps", str(a.reps), "--target-s", str(a.target_s), "--kills", str(a.kills),
    ]  # fmt: skip
    if a.tls:
        cmd.append("--tls")
    if mode == "pinned":
        if shutil.which("taskset") is None:
            return {"skipped": "taskset not found (util-linux)"}
        # taskset for the whole run: every process the worker starts (erl,
        # epmd, the peer node, the node's own processes) inherits CPU 0.
        cmd = ["taskset", "-c", PIN_CPU, *cmd]
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1")
    before = os.getloadavg()
    t0 = time.monotonic()
    proc = subprocess.run(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True, timeout=a.timeout, check=False
    )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[len("RESULT ") :])
            break
    else:
        result = {"error": f"worker exited with {proc.returncode}: {proc.stdout[-3000:]}"}
    result["wall_s"] = round(time.monotonic() - t0, 2)
    result["loadavg_before"], result["loadavg_after"] = before, os.getloadavg()
    return result


def _summarise(fig: _Fig, w: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"cpus": w.get("cpus")}
    for key in ("skipped", "error"):
        if key in w:
            out[key] = w[key]
            return out
    values, limits = w["raw"][fig.name], w["raw"][fig.erlang]
    ratios = [v / lim for v, lim in zip(values, limits, strict=True)]
    out["value"] = summarize(values)
    out["limit"] = summarize(limits)
    out["ratio"] = summarize(ratios)
    if fig.target is not None:
        out["target_met"] = fig.target.met(out["value"]["median"], out["ratio"]["median"])
    extra: dict[str, Any] = {}
    if fig.name in w["counts"]:
        extra = {"n_iter": w["counts"][fig.name], "limit_n_iter": w["counts"][fig.erlang]}
    else:
        extra = {"kills_per_rep": len(w["kills"][fig.name][0])}
        if fig.name == "kill_down_py_py":
            # Context: the same kill with the victim on the watcher's own
            # node (no distribution at all), measured in the same run.
            extra["local_kill_down_us"] = summarize(w["raw"]["kill_local_py"])
    out["extra"] = extra
    out["wall_s"] = w["wall_s"]
    return out


_RELEASE = 'io:format("~s", [erlang:system_info(otp_release)]), halt().'


def _erl_release() -> str:
    try:
        r = subprocess.run(
            ["erl", "-noshell", "-eval", _RELEASE],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return r.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def _git() -> dict[str, Any]:
    def git(*args: str) -> str:
        r = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
        return r.stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--", "otp", "behaviours")),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_dist",
        description="Distribution figures next to Erlang's, pinned and unpinned.",
    )
    ap.add_argument("--quick", action="store_true", help="2 short repetitions (a smoke run)")
    ap.add_argument("--reps", type=int, help="repetitions (default 5, quick 2)")
    ap.add_argument("--target-s", type=float, help="seconds per measurement (0.4, quick 0.02)")
    ap.add_argument("--kills", type=int, help="kills per repetition (default 15, quick 2)")
    ap.add_argument("--mode", choices=("pinned", "unpinned", "both"), default="both")
    ap.add_argument(
        "--tls", action="store_true", help="every node over TLS distribution (erl: inet_tls)"
    )
    ap.add_argument("--out", help="where to write the JSON results (default by --tls)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per worker")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--peer", nargs=2, metavar=("NAME", "COOKIE"), help=argparse.SUPPRESS)
    ap.add_argument("--peer-tls", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.out is None:
        a.out = str(RESULTS_TLS if a.tls else RESULTS)
    if a.reps is None:
        a.reps = 2 if a.quick else 5
    if a.target_s is None:
        a.target_s = 0.02 if a.quick else 0.4
    if a.kills is None:
        a.kills = 2 if a.quick else 15
    if a.peer:
        run_peer(a.peer[0], a.peer[1], a.peer_tls)
        return 0
    if a.worker:
        result = run_worker(a.reps, a.target_s, a.kills, a.tls)
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    if shutil.which("erl") is None or shutil.which("epmd") is None:
        print("bench_dist needs erl and epmd (apt-get install erlang-nox)", file=sys.stderr)
        return 2
    modes = ("pinned", "unpinned") if a.mode == "both" else (a.mode,)
    t_start = time.monotonic()
    workers = {}
    for mode in modes:
        workers[mode] = _spawn_worker(mode, a)
        w = workers[mode]
        print(f"[{mode}] {w.get('error') or 'done'} in {w['wall_s']} s", file=sys.stderr)
    figures: dict[str, Any] = {}
    for fig in FIGS:
        entry: dict[str, Any] = {
            "title": fig.title,
            "group": "dist",
            "unit": fig.unit,
            "limit_name": fig.limit_name,
            "target": fig.target.to_json() if fig.target else None,
            "target_text": fig.target.describe(fig.unit).replace("limit", "erl")
            if fig.target
            else None,
            "doc": fig.doc,
        }
        for mode in modes:
            entry[mode] = _summarise(fig, workers[mode])
        figures[fig.name] = entry
    doc = {
        "meta": {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": "python -m benchmarks.bench_dist "
            + " ".join(sys.argv[1:] if argv is None else argv),
            "reps": a.reps,
            "target_s": a.target_s,
            "kills_per_rep": a.kills,
            "modes": list(modes),
            "pinned_cpu": PIN_CPU,
            "limit": "Erlang/OTP: two erl nodes over loopback"
            + (", TLS distribution (inet_tls)" if a.tls else "")
            + ", measured in the same run",
            "tls": a.tls,
            "machine": {
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "kernel": platform.release(),
            },
            "versions": {"python": platform.python_version(), "otp": _erl_release()},
            "git": _git(),
            "workers": {
                m: {k: w.get(k) for k in ("wall_s", "loadavg_before", "loadavg_after", "error")}
                for m, w in workers.items()
            },
            "wall_s": round(time.monotonic() - t_start, 1),
        },
        "figures": figures,
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(doc, indent=1) + "\n")
    print(format_table(doc).replace("limit (min-max)", "erl (min-max)"))
    kill = figures["kill_down_py_py"]
    local = [
        f"{m} {kill[m]['extra']['local_kill_down_us']['median']:,.0f} us"
        for m in modes
        if "local_kill_down_us" in kill[m].get("extra", {})
    ]
    if local:
        print("SIGKILL -> DOWN with the victim on the watcher's own node: " + ", ".join(local))
    print(f"\nwritten: {a.out}  ({doc['meta']['wall_s']} s)")
    return 1 if any("error" in w for w in workers.values()) else 0


def _entry() -> int:
    # Run through the package's module, not __main__: BenchServer and the
    # client then pickle by a name every process of the node can import.
    from benchmarks import bench_dist

    return bench_dist.main()


if __name__ == "__main__":
    sys.exit(_entry())
