"""The chaos soak: a supervised pool under steady calls while its workers are
SIGKILLed at random every 50 ms, for a minute.

```
python -m benchmarks.soak                 # 60 s
python -m benchmarks.soak --seconds 10    # shorter
python -m benchmarks.soak --out FILE      # default: benchmarks/results_soak.json
```

The scenario is the one of tests/test_chaos.py, run longer and measured: a
`one_for_one` supervisor over 4 GenServer workers (registered names, allowed
1000 restarts in 5 s), 4 client processes calling them round robin with a 5 s
timeout, and `otp.testing.Chaos` killing a random running worker every 50 ms
with a real SIGKILL. It prints, and writes as JSON:

- calls made, replies, errors by kind (`CallExit`, `NoProc`, `CallTimeout`:
  the errors a call documents);
- kills, restarts counted by the supervisor, and `child_terminated` reports
  logged (the three must agree);
- call latency during the chaos: p50, p99, max (every call, replies and
  errors alike, timed by its caller);
- the supervisor's descriptors and memory (USS) before and after, and what
  was left after the tree and the node stopped (OS processes, runtime-dir
  entries, the main program's descriptors).

Anything that breaks a promise is listed under `violations` (a wrong reply,
an undocumented exception, a call that outlived its timeout by more than 2 s
of scheduling slack, restarts that do not match the kills, a leak), and makes
the exit status 1. Speed is printed, never judged: this 2-core VM is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections import Counter
from typing import Any

import psutil
from loguru import logger

import otp
from behaviours import GenServer, Reply, Supervisor, SupFlags, gen_server
from otp.testing import Chaos, wait_until

__all__ = ["main", "process_entries", "run"]

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results_soak.json")
WORKERS = [f"soak_w{i}" for i in range(4)]
CLIENTS = 4
INTERVAL = 0.05
CALL_TIMEOUT = 5.0
SCHEDULING_SLACK = 2.0
DOCUMENTED = ("CallExit", "NoProc", "CallTimeout")


class SoakWorker(GenServer):
    """Answers `("echo", caller, n)` with `("echo", caller, n, index)`."""

    def init(self, index: int) -> Any:
        return index

    def handle_call(self, request: Any, from_: Any, index: int) -> Any:
        _, caller, n = request
        return Reply(("echo", caller, n, index), index)


class SoakPool(Supervisor):
    def init(self) -> Any:
        return SupFlags(strategy="one_for_one", intensity=1000, period=5), [
            SoakWorker.child_spec(i, id=name, name=name) for i, name in enumerate(WORKERS)
        ]


def soak_client(parent: otp.Pid, seconds: float) -> None:
    """Call the workers round robin for `seconds`; send back every outcome
    and every latency (seconds, as the caller measured them)."""
    me = otp.self_pid()
    outcomes: Counter[str] = Counter()
    latencies: list[float] = []
    problems: list[str] = []
    n = 0
    clock = time.monotonic
    deadline = clock() + seconds
    while clock() < deadline:
        n += 1
        t0 = clock()
        try:
            r = gen_server.call(WORKERS[n % len(WORKERS)], ("echo", me, n), CALL_TIMEOUT)
            if r[:3] == ("echo", me, n):
                kind = "reply"
            else:
                kind = "wrong"
                problems.append(f"call {n} got another call's reply: {r!r}")
        except otp.CallExit:
            kind = "CallExit"
        except otp.NoProc:
            kind = "NoProc"
        except otp.CallTimeout:
            kind = "CallTimeout"
        except Exception as e:
            kind = "unexpected"
            problems.append(f"call {n} raised {e!r}")
        latencies.append(clock() - t0)
        outcomes[kind] += 1
    otp.send(parent, ("soak_report", me, n, dict(outcomes), latencies, problems[:20]))


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    i = min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))
    return sorted_values[i]


def _otp_leftovers(root: int | None) -> list[int]:
    out = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.pid != root and " ".join(child.cmdline()).startswith("otp: "):
                out.append(child.pid)
        except psutil.NoSuchProcess:
            pass
    return out


def process_entries(rundir: str, main: otp.Pid) -> list[str]:
    """What processes (not the node itself) have in the runtime directory: the
    socket of each live process (`<ospid>.<serial>`), the listener a spawner
    bound for its next child (`.new-<ospid>-<n>`), each registered name.

    The node's own entries are not counted: the main program's socket, the
    root's zygote socket and its spare listener (`.new-root-<n>`), the log
    socket, `node`, `names.lock`.
    """
    own = f"{main.id}.{main.serial}"
    out = [
        e
        for e in os.listdir(rundir)
        if (e[:1].isdigit() and e != own)
        or (e.startswith(".new-") and not e.startswith(".new-root-"))
    ]
    out += [f"names/{n}" for n in os.listdir(os.path.join(rundir, "names"))]
    return sorted(out)


def run(seconds: float, seed: int = 1) -> dict[str, Any]:
    """Run the soak; returns the figures (see the module docstring)."""
    records: list[str] = []
    logger.remove()  # the reports are counted, not printed
    logger.add(lambda m: records.append(m.record["message"]), level="ERROR")

    main_fds_before = len(os.listdir("/proc/self/fd"))
    me = otp.self_pid()  # starts the node
    p = otp._runtime.current()
    root = p.info.get("root_os_pid")
    rundir = otp.node.rundir()
    otp.trap_exit(True)

    sup = SoakPool.start_link()
    sup_proc = psutil.Process(sup.id)
    sup_fds_before = sup_proc.num_fds()
    sup_uss_before = sup_proc.memory_full_info().uss

    started = time.monotonic()
    with Chaos(sup, interval=INTERVAL, seed=seed) as chaos:
        clients = [otp.spawn(soak_client, me, seconds) for _ in range(CLIENTS)]
        reports = []
        violations: list[str] = []
        for c in clients:
            try:
                reports.append(
                    otp.receive(
                        lambda m, c=c: type(m) is tuple and m[:2] == ("soak_report", c),
                        seconds + CALL_TIMEOUT + 60,
                    )
                )
            except otp.ReceiveTimeout:
                violations.append(f"client {c} never reported: a hang")
    elapsed = time.monotonic() - started

    outcomes: Counter[str] = Counter()
    latencies: list[float] = []
    calls = 0
    for _, _c, n, kinds, lats, problems in reports:
        calls += n
        outcomes.update(kinds)
        latencies.extend(lats)
        violations.extend(problems)
        if sum(kinds.values()) != n:
            violations.append(f"a client made {n} calls but accounted for {sum(kinds.values())}")
    latencies.sort()
    late = [x for x in latencies if x > CALL_TIMEOUT + SCHEDULING_SLACK]
    if late:
        violations.append(f"{len(late)} calls outlived their timeout (max {late[-1]:.2f} s)")

    try:
        wait_until(lambda: otp.process_info(sup)["restarts"] == chaos.kills, 30, "the restarts")
    except AssertionError:
        pass
    restarts = otp.process_info(sup)["restarts"]
    if restarts != chaos.kills:
        violations.append(f"{chaos.kills} kills but {restarts} restarts")
    if chaos.supervisor_reason is not None:
        violations.append(f"the supervisor gave up: {chaos.supervisor_reason!r}")
    sup_fds_after = sup_proc.num_fds()
    sup_uss_after = sup_proc.memory_full_info().uss
    if sup_fds_after > sup_fds_before + 8:
        violations.append(f"supervisor descriptors grew {sup_fds_before} -> {sup_fds_after}")

    # Stop the tree, then look for anything it left.
    ref = otp.monitor(sup)
    otp.exit(sup, "shutdown")
    otp.receive(lambda m: type(m) is otp.DOWN and m.ref == ref, 30)
    otp.node.flush_logs(10)
    reported = sum(1 for r in records if "context: child_terminated" in r)
    if reported != chaos.kills:
        violations.append(f"{chaos.kills} kills but {reported} child_terminated reports")
    left_processes = _otp_leftovers(root)
    left_entries = process_entries(rundir, me)
    otp.node.stop()
    main_fds_after = len(os.listdir("/proc/self/fd"))
    after_node = _otp_leftovers(None)
    if left_processes or after_node:
        violations.append(f"processes left: {left_processes + after_node}")
    if left_entries or os.path.exists(rundir):
        violations.append(f"runtime directory left or not clean: {left_entries}")
    if main_fds_after != main_fds_before:
        violations.append(f"main program descriptors {main_fds_before} -> {main_fds_after}")

    errors = {k: outcomes.get(k, 0) for k in DOCUMENTED}
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "seconds": seconds,
        "elapsed_s": round(elapsed, 2),
        "workers": len(WORKERS),
        "clients": CLIENTS,
        "kill_interval_s": INTERVAL,
        "call_timeout_s": CALL_TIMEOUT,
        "calls": calls,
        "calls_per_s": round(calls / elapsed, 1) if elapsed else 0.0,
        "replies": outcomes.get("reply", 0),
        "errors": errors,
        "kills": chaos.kills,
        "chaos_ticks": chaos.ticks,
        "chaos_skipped": chaos.skipped,
        "restarts": restarts,
        "child_terminated_reports": reported,
        "latency_ms": {
            "p50": round(_percentile(latencies, 0.50) * 1e3, 3),
            "p99": round(_percentile(latencies, 0.99) * 1e3, 3),
            "max": round((latencies[-1] if latencies else 0.0) * 1e3, 3),
            "mean": round(statistics.fmean(latencies) * 1e3, 3) if latencies else 0.0,
        },
        "supervisor": {
            "fds_before": sup_fds_before,
            "fds_after": sup_fds_after,
            "uss_mib_before": round(sup_uss_before / 2**20, 2),
            "uss_mib_after": round(sup_uss_after / 2**20, 2),
        },
        "left_after_stop": {
            "os_processes": left_processes + after_node,
            "runtime_dir_entries": left_entries,
            "main_fds_before": main_fds_before,
            "main_fds_after": main_fds_after,
        },
        "violations": violations,
    }


def _print(doc: dict[str, Any]) -> None:
    lat = doc["latency_ms"]
    errs = doc["errors"]
    sup = doc["supervisor"]
    left = doc["left_after_stop"]
    print(
        f"chaos soak: {doc['seconds']:g} s, {doc['workers']} workers, {doc['clients']} clients, "
        f"a random worker SIGKILLed every {doc['kill_interval_s'] * 1000:g} ms"
    )
    print(f"  calls made      {doc['calls']}  ({doc['calls_per_s']:g}/s)")
    print(f"  replies         {doc['replies']}")
    print(
        f"  errors          {sum(errs.values())}: " + ", ".join(f"{k} {v}" for k, v in errs.items())
    )
    print(f"  kills           {doc['kills']}  ({doc['chaos_skipped']} ticks found none to kill)")
    print(
        f"  restarts        {doc['restarts']}  (child_terminated reports: "
        f"{doc['child_terminated_reports']})"
    )
    print(
        f"  latency         p50 {lat['p50']:.3f} ms, p99 {lat['p99']:.3f} ms, "
        f"max {lat['max']:.1f} ms"
    )
    print(
        f"  supervisor      fds {sup['fds_before']} -> {sup['fds_after']}, "
        f"USS {sup['uss_mib_before']} -> {sup['uss_mib_after']} MiB"
    )
    print(
        f"  after stop      {len(left['os_processes'])} OS processes, "
        f"{len(left['runtime_dir_entries'])} runtime-dir entries, main fds "
        f"{left['main_fds_before']} -> {left['main_fds_after']}"
    )
    if doc["violations"]:
        print("  VIOLATIONS:")
        for v in doc["violations"]:
            print(f"    - {v}")
    else:
        print("  violations      none")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.soak", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the chaos runs")
    parser.add_argument("--seed", type=int, default=1, help="the chaos's random seed")
    parser.add_argument("--out", default=DEFAULT_OUT, help="where the JSON goes")
    args = parser.parse_args(argv)
    doc = run(args.seconds, args.seed)
    _print(doc)
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    print(f"  written to      {os.path.relpath(args.out)}")
    return 1 if doc["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
