"""Supervisor figures: restart after kill -9, and 10,000 children.

`python -m benchmarks.bench_supervisor [--kills 30] [--children 10000]
[--only restart|many] [--min-free-gib 3]` prints the figures and writes
`benchmarks/results_supervisor.json`.

1. **kill -9 -> the replacement answers a call** (target <= 5 ms). A
   one_for_one supervisor runs one GenServer; the benchmark SIGKILLs the
   child's OS process and times until a `gen_server.call` to its replacement
   returns (the replacement announces itself from its `init` with one
   message). Next to it, interleaved kill by kill, *the limit*: a
   hand-written minimal loop (baselines.md section 5a, `crash_restart.py
   minimal`) that holds an `os.fork` child over a socketpair, SIGKILLs it,
   waits for EOF in epoll, reaps it, forks a new one and times until a
   request to it is answered. Median over the kills, with min-max and the
   per-kill ratio figure/limit; measured pinned (the whole subprocess under
   `taskset -c 0`, so every process of the node shares one CPU) and unpinned.

2. **A simple_one_for_one supervisor with 10,000 GenServer children**: the
   time to start them all through `supervisor.start_child` (target <= 30 s),
   one call answered by each, the idle USS of ~50 sampled children
   (`psutil.memory_full_info().uss`, target <= 2 MiB), and the time of a clean
   stop of the supervisor (every child stopped with "shutdown", in parallel,
   and reaped). The run stops starting children early, and says so, if the
   machine's available memory falls under `--min-free-gib`: a shared machine
   must not be pushed into the OOM killer.

Each part runs in a subprocess of its own (a fresh node; `taskset` applies to
all of it); the parent only collects the JSON each one prints.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import random
import select
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import otp
from behaviours import GenServer, Reply, Supervisor, SupFlags, gen_server, supervisor

RESULTS = Path(__file__).resolve().parent / "results_supervisor.json"
REPO = Path(__file__).resolve().parent.parent

RESTART_TARGET_MS = 5.0
START_ALL_TARGET_S = 30.0
USS_TARGET_MIB = 2.0
SMALL = ("add", 1)

_HDR = struct.Struct("!I")


# ------------------------------------------------------------------ the limit


def _echo_child(sock: socket.socket) -> None:
    """The minimal child: answer length-prefixed pickle frames until EOF."""
    rf = sock.makefile("rb")
    while True:
        hdr = rf.read(4)
        if len(hdr) < 4:
            os._exit(0)
        (n,) = _HDR.unpack(hdr)
        data = pickle.dumps(pickle.loads(rf.read(n)), 5)
        sock.sendall(_HDR.pack(len(data)) + data)


class _MinimalChild:
    """An os.fork child over a socketpair: the restart limit's child."""

    def __init__(self) -> None:
        a, b = socket.socketpair()
        pid = os.fork()
        if pid == 0:
            a.close()
            try:
                _echo_child(b)
            finally:
                os._exit(0)
        b.close()
        self.pid = pid
        self.sock = a
        self.rf = a.makefile("rb")

    def call(self, obj: Any) -> Any:
        data = pickle.dumps(obj, 5)
        self.sock.sendall(_HDR.pack(len(data)) + data)
        (n,) = _HDR.unpack(self.rf.read(4))
        return pickle.loads(self.rf.read(n))

    def close(self) -> None:
        self.rf.close()
        self.sock.close()


def _limit_once(child: _MinimalChild, ep: select.epoll) -> tuple[float, _MinimalChild]:
    """SIGKILL the child, see EOF in epoll, reap, fork anew, get an answer: ms."""
    fd = child.sock.fileno()
    ep.register(fd, select.EPOLLIN)
    t0 = time.perf_counter()
    os.kill(child.pid, signal.SIGKILL)
    ep.poll()
    assert child.sock.recv(1) == b""
    ep.unregister(fd)
    os.waitpid(child.pid, 0)
    child.close()
    new = _MinimalChild()
    assert new.call(SMALL) == SMALL
    return (time.perf_counter() - t0) * 1e3, new


# ------------------------------------------------------- the runtime's figure


class Echo(GenServer):
    """Answers every call with the request; tells `notify` (if any) it is up."""

    def init(self, notify: Any = None) -> Any:
        if notify is not None:
            otp.send(notify, ("up", otp.self_pid()))
        return None

    def handle_call(self, request: Any, from_: Any, state: Any) -> Any:
        return Reply(request, state)


class Pool(Supervisor):
    """A simple_one_for_one supervisor of Echo servers."""

    def init(self) -> Any:
        return SupFlags(strategy="simple_one_for_one"), [Echo.child_spec(id="echo")]


def _summary(values: list[float]) -> dict[str, Any]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
        "values": [round(v, 4) for v in values],
    }


def worker_restart(kills: int, warmup: int = 3) -> dict[str, Any]:
    otp.trap_exit(True)
    me = otp.self_pid()
    # Intensity high enough for every kill of the run: the figure is the
    # restart path, not the give-up path.
    sup = supervisor.start_link(
        [Echo.child_spec(me, id="echo")], strategy="one_for_one", intensity=10_000, period=1
    )
    pid = supervisor.which_children(sup)[0][1]
    otp.receive(lambda m: type(m) is tuple and m[0] == "up", 30)
    assert gen_server.call(pid, SMALL) == SMALL

    def is_up(m: Any) -> bool:
        return type(m) is tuple and len(m) == 2 and m[0] == "up"

    def figure_once(old: Any) -> tuple[float, Any]:
        t0 = time.perf_counter()
        os.kill(old.id, signal.SIGKILL)
        _, new = otp.receive(is_up, 30)
        assert gen_server.call(new, SMALL) == SMALL
        return (time.perf_counter() - t0) * 1e3, new

    ep = select.epoll()
    lim = _MinimalChild()
    assert lim.call(SMALL) == SMALL
    fig_ms: list[float] = []
    lim_ms: list[float] = []
    for i in range(warmup + kills):
        # Alternate which side goes first, so neither always runs on the
        # other's warm cache (or after its garbage).
        if i % 2:
            f, pid = figure_once(pid)
            lv, lim = _limit_once(lim, ep)
        else:
            lv, lim = _limit_once(lim, ep)
            f, pid = figure_once(pid)
        if i >= warmup:
            fig_ms.append(f)
            lim_ms.append(lv)
    restarts = otp.process_info(sup)["restarts"]
    ref = otp.monitor(sup)
    otp.exit(sup, "shutdown")
    otp.receive(lambda m: type(m) is otp.DOWN and m.ref == ref, 30)
    os.kill(lim.pid, signal.SIGKILL)
    os.waitpid(lim.pid, 0)
    lim.close()
    ratios = [f / lv for f, lv in zip(fig_ms, lim_ms, strict=True)]
    return {
        "figure_ms": _summary(fig_ms),
        "limit_ms": _summary(lim_ms),
        "ratio": _summary(ratios),
        "supervisor_restarts": restarts,
        "target_ms": RESTART_TARGET_MS,
        "met": statistics.median(fig_ms) <= RESTART_TARGET_MS,
    }


def _available_gib() -> float:
    import psutil

    return psutil.virtual_memory().available / 2**30


def worker_many(n: int, min_free_gib: float, sample: int = 50) -> dict[str, Any]:
    import psutil

    otp.trap_exit(True)
    sup = Pool.start_link()
    pids: list[Any] = []
    stopped_early = None
    by_thousand: list[float] = []
    t0 = mark = time.perf_counter()
    for i in range(n):
        if i % 250 == 0 and _available_gib() < min_free_gib:
            stopped_early = (
                f"available memory under {min_free_gib} GiB after {i} children "
                f"({_available_gib():.1f} GiB left)"
            )
            break
        pids.append(supervisor.start_child(sup))
        if (i + 1) % 1000 == 0:
            now = time.perf_counter()
            # ms per child for each thousand: how the cost grows with the
            # supervisor's size (every fork copies its descriptor table).
            by_thousand.append((now - mark) / 1000 * 1e3)
            mark = now
            print(f"  {i + 1} children, {now - t0:.1f} s", file=sys.stderr)
    start_s = time.perf_counter() - t0
    started = len(pids)
    t1 = time.perf_counter()
    answered = sum(gen_server.call(p, i) == i for i, p in enumerate(pids))
    calls_s = time.perf_counter() - t1
    count = supervisor.count_children(sup)
    uss = []
    for p in random.Random(1).sample(pids, min(sample, started)):
        uss.append(psutil.Process(p.id).memory_full_info().uss / 2**20)
    sup_mem = psutil.Process(sup.id).memory_full_info()
    ref = otp.monitor(sup)
    t2 = time.perf_counter()
    otp.exit(sup, "shutdown")
    down = otp.receive(lambda m: type(m) is otp.DOWN and m.ref == ref, 600)
    stop_s = time.perf_counter() - t2

    def alive(p: Any) -> bool:
        try:
            return psutil.Process(p.id).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    left = sum(alive(p) for p in pids)
    per_child_ms = start_s / max(started, 1) * 1e3
    return {
        "children_requested": n,
        "children_started": started,
        "stopped_early": stopped_early,
        "start_all_s": start_s,
        "start_per_child_ms": per_child_ms,
        "start_all_projected_s": per_child_ms * n / 1e3,
        "start_ms_per_child_by_thousand": [round(x, 2) for x in by_thousand],
        "start_target_s": START_ALL_TARGET_S,
        # The target is for 10,000 children; a smaller run is not judged.
        "start_met": (
            None if n < 10_000 else stopped_early is None and start_s <= START_ALL_TARGET_S
        ),
        "calls_answered": answered,
        "calls_s": calls_s,
        "count_children": count,
        "child_uss_mib": _summary(uss),
        "uss_target_mib": USS_TARGET_MIB,
        "uss_met": statistics.median(uss) <= USS_TARGET_MIB,
        "supervisor_uss_mib": sup_mem.uss / 2**20,
        "supervisor_rss_mib": sup_mem.rss / 2**20,
        "stop_s": stop_s,
        "stop_reason": down.reason,
        "children_left_alive": left,
    }


# ----------------------------------------------------------------- the driver


def _run_worker(args: list[str], pinned: bool) -> dict[str, Any]:
    # The machine may be shared: the load around the run says how far to
    # trust it.
    before = os.getloadavg()
    result = _run_worker_1(args, pinned)
    result["when"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    result["loadavg_before"], result["loadavg_after"] = before, os.getloadavg()
    return result


def _run_worker_1(args: list[str], pinned: bool) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.bench_supervisor", *args]
    if pinned:
        if shutil.which("taskset") is None:
            return {"skipped": "taskset not found"}
        cmd = ["taskset", "-c", "0", *cmd]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True, timeout=3600)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[len("RESULT ") :])
            result["cmd"] = " ".join(cmd)
            return result
    raise RuntimeError(f"{' '.join(cmd)} failed with status {proc.returncode}")


def _fmt_restart(label: str, r: dict[str, Any]) -> str:
    if "skipped" in r:
        return f"  {label}: skipped ({r['skipped']})"
    f, lim, ratio = r["figure_ms"], r["limit_ms"], r["ratio"]
    return (
        f"  {label:9} kill -9 -> replacement answers: median {f['median']:.2f} ms "
        f"(min {f['min']:.2f}, max {f['max']:.2f}, n={f['n']}); limit {lim['median']:.2f} ms "
        f"(min {lim['min']:.2f}); ratio {ratio['median']:.2f}x; "
        f"target <= {RESTART_TARGET_MS:g} ms: {'met' if r['met'] else 'NOT met'}"
    )


def _fmt_many(r: dict[str, Any]) -> str:
    uss = r["child_uss_mib"]
    lines = [
        f"  children started: {r['children_started']:,} of {r['children_requested']:,} in "
        f"{r['start_all_s']:.1f} s ({r['start_per_child_ms']:.2f} ms each; "
        f"{r['start_all_projected_s']:.1f} s projected for all); "
        f"target <= {START_ALL_TARGET_S:g} s for 10,000: "
        f"{ {True: 'met', False: 'NOT met', None: 'not judged'}[r['start_met']] }",
    ]
    if r["stopped_early"]:
        lines.append(f"  stopped early: {r['stopped_early']}")
    if r["start_ms_per_child_by_thousand"]:
        steps = ", ".join(f"{x:.1f}" for x in r["start_ms_per_child_by_thousand"])
        lines.append(f"  ms per child start, each thousand: {steps}")
    lines += [
        f"  calls answered: {r['calls_answered']:,} in {r['calls_s']:.1f} s",
        f"  idle child USS: median {uss['median']:.2f} MiB (min {uss['min']:.2f}, "
        f"max {uss['max']:.2f}, n={uss['n']}); target <= {USS_TARGET_MIB:g} MiB: "
        f"{'met' if r['uss_met'] else 'NOT met'}",
        f"  supervisor: USS {r['supervisor_uss_mib']:.1f} MiB, "
        f"RSS {r['supervisor_rss_mib']:.1f} MiB",
        f"  clean stop of all: {r['stop_s']:.2f} s (reason {r['stop_reason']!r}, "
        f"{r['children_left_alive']} left alive)",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_supervisor")
    ap.add_argument("--kills", type=int, default=30)
    ap.add_argument("--children", type=int, default=10_000)
    ap.add_argument("--min-free-gib", type=float, default=4.0)
    ap.add_argument("--only", choices=("restart", "many"))
    ap.add_argument("--worker", choices=("restart", "many"), help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(RESULTS))
    a = ap.parse_args(argv)
    if a.worker == "restart":
        print("RESULT " + json.dumps(worker_restart(a.kills)), flush=True)
        return 0
    if a.worker == "many":
        result = worker_many(a.children, a.min_free_gib)
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    out: dict[str, Any] = {}
    if a.only and Path(a.out).exists():
        # One part re-run: keep the other part's figures from the file.
        out = json.loads(Path(a.out).read_text())
    out |= {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
    }
    if a.only in (None, "restart"):
        print("Supervisor: kill -9 of a worker until its replacement answers a call")
        out["restart"] = {}
        for label, pinned in (("pinned", True), ("unpinned", False)):
            r = _run_worker(["--worker", "restart", "--kills", str(a.kills)], pinned)
            out["restart"][label] = r
            print(_fmt_restart(label, r), flush=True)
    if a.only in (None, "many"):
        print(f"Supervisor: simple_one_for_one with {a.children:,} GenServer children")
        r = _run_worker(
            [
                "--worker",
                "many",
                "--children",
                str(a.children),
                "--min-free-gib",
                str(a.min_free_gib),
            ],
            pinned=False,
        )
        out["many"] = r
        print(_fmt_many(r), flush=True)
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {a.out}")
    return 0


def _entry() -> int:
    # Run through the package's module, not __main__: the callback classes
    # then pickle by a name every process of the node can import.
    from benchmarks import bench_supervisor

    return bench_supervisor.main()


if __name__ == "__main__":
    sys.exit(_entry())
