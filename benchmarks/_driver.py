"""`python -m benchmarks`: run every figure pinned and unpinned, print, save.

The driver measures nothing itself. For each figure and each placement it
starts a worker, `python -m benchmarks --worker NAME`, under `taskset -c 0`
(everything on one CPU: the placement whose ratios are tight and comparable,
baselines.md section 0) or unpinned (the scheduler decides; bimodal on this
VM). The worker runs the figure and its limit interleaved, writes its samples
as JSON to a file, stops every process it started, and exits. A fresh worker
per figure keeps one figure's heap, caches and leftovers out of the next.

The driver then summarises (median, min-max of the per-repetition values and
of the per-repetition ratios), prints one table, and writes `results.json`.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Any

from ._core import Config, Figure, Samples, Skip, load_figures, summarize

__all__ = ["main"]

PKG_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(PKG_DIR)
DEFAULT_OUT = os.path.join(PKG_DIR, "results.json")
MODES = ("pinned", "unpinned")
PIN_CPU = "0"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure otp's figures next to the machine's limit, pinned and unpinned.",
    )
    ap.add_argument("--quick", action="store_true", help="2 short repetitions (a smoke test)")
    ap.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="only these figures or groups (repeatable, or comma-separated)",
    )
    ap.add_argument("--no-peers", action="store_true", help="skip the peer libraries' figures")
    ap.add_argument("--reps", type=int, help="repetitions per figure (default 5, quick 2)")
    ap.add_argument(
        "--target-s", type=float, help="seconds per measurement (default 0.4, quick 0.05)"
    )
    ap.add_argument("--mode", choices=(*MODES, "both"), default="both", help="CPU placement")
    ap.add_argument("--out", default=DEFAULT_OUT, help="where to write the JSON results")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds allowed per worker")
    ap.add_argument("--list", action="store_true", help="list the figures and exit")
    ap.add_argument("--worker", metavar="NAME", help=argparse.SUPPRESS)
    ap.add_argument("--result-file", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.reps is None:
        args.reps = 2 if args.quick else 5
    if args.target_s is None:
        args.target_s = 0.05 if args.quick else 0.4
    args.only = [n.strip() for item in args.only for n in item.split(",") if n.strip()]
    return args


# ------------------------------------------------------------------- worker


def _leftovers() -> list[str]:
    """Descendants of this process still alive (zombies aside)."""
    import psutil

    out = []
    for c in psutil.Process().children(recursive=True):
        try:
            if c.status() != psutil.STATUS_ZOMBIE:
                out.append(f"{c.pid} {' '.join(c.cmdline())}".strip())
        except psutil.NoSuchProcess:
            continue
    return out


def run_worker(name: str, cfg: Config, result_file: str) -> int:
    """Run one figure in this process and write its samples to `result_file`."""
    figs = load_figures()
    out: dict[str, Any] = {"figure": name, "cpus": sorted(os.sched_getaffinity(0))}
    try:
        samples: Samples = figs[name].fn(cfg)
        out.update(values=samples.values, limits=samples.limits, extra=samples.extra)
    except Skip as e:
        out["skipped"] = str(e)
    except BaseException as e:
        out["error"] = "".join(traceback.format_exception(e))
    finally:
        if "otp" in sys.modules:
            import otp

            otp.node.stop()
    # Children end on their own after a stop; give the slow ones a moment.
    deadline = time.monotonic() + 2.0
    while (left := _leftovers()) and time.monotonic() < deadline:
        time.sleep(0.05)
    if left:
        out["leftover_processes"] = left
    with open(result_file, "w") as f:
        json.dump(out, f)
    return 0


# ------------------------------------------------------------------- driver


def _worker_cmd(name: str, mode: str, cfg: Config, result_file: str) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "benchmarks",
        "--worker",
        name,
        "--reps",
        str(cfg.reps),
        "--target-s",
        str(cfg.target_s),
        "--result-file",
        result_file,
    ]
    if mode == "pinned":
        taskset = shutil.which("taskset")
        if taskset is None:
            raise SystemExit("taskset not found (util-linux): cannot pin to one CPU")
        cmd = [taskset, "-c", PIN_CPU, *cmd]
    return cmd


def _run_one(fig: Figure, mode: str, cfg: Config, timeout: float) -> dict[str, Any]:
    """Run `fig` in a worker with placement `mode`; returns the raw worker JSON."""
    env = dict(os.environ, THESPIAN_BASE_IPADDR="127.0.0.1", PYTHONDONTWRITEBYTECODE="1")
    with tempfile.TemporaryDirectory(prefix="otp-bench-") as tmp:
        result_file = os.path.join(tmp, "result.json")
        log_file = os.path.join(tmp, "worker.log")
        with open(log_file, "wb") as log:
            proc = subprocess.Popen(
                _worker_cmd(fig.name, mode, cfg, result_file),
                cwd=REPO_DIR,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                rc = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                rc = None
        with open(log_file, errors="replace") as f:
            log_text = f.read()
        try:
            with open(result_file) as f:
                raw: dict[str, Any] = json.load(f)
        except (OSError, ValueError):
            why = f"timed out after {timeout:g} s" if rc is None else f"exit status {rc}"
            raw = {"figure": fig.name, "error": f"worker {why}:\n{log_text[-4000:]}"}
        if log_text.strip() and "error" not in raw:
            raw["log"] = log_text[-2000:]
        return raw


def _summarise(fig: Figure, raw: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"cpus": raw.get("cpus")}
    for key in ("skipped", "error", "leftover_processes", "log"):
        if key in raw:
            out[key] = raw[key]
    if "values" not in raw:
        return out
    values, limits = raw["values"], raw["limits"]
    ratios = [v / lim for v, lim in zip(values, limits, strict=True)]
    out["value"] = summarize(values)
    out["limit"] = summarize(limits)
    out["ratio"] = summarize(ratios)
    if fig.target is not None:
        out["target_met"] = fig.target.met(out["value"]["median"], out["ratio"]["median"])
    out["extra"] = raw.get("extra", {})
    return out


def _select(figs: dict[str, Figure], args: argparse.Namespace) -> list[Figure]:
    chosen = list(figs.values())
    if args.only:
        unknown = [n for n in args.only if n not in figs and n not in {f.group for f in chosen}]
        if unknown:
            raise SystemExit(f"unknown figure or group: {', '.join(unknown)} (see --list)")
        chosen = [f for f in chosen if f.name in args.only or f.group in args.only]
    if args.no_peers:
        chosen = [f for f in chosen if f.group != "peers"]
    return chosen


def _git_state() -> dict[str, Any]:
    def git(*a: str) -> str:
        try:
            r = subprocess.run(
                ["git", *a], cwd=REPO_DIR, capture_output=True, text=True, timeout=10
            )
            return r.stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    return {
        "commit": git("rev-parse", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--", "otp", "behaviours")),
    }


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("psutil", "thespian", "pykka"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    cfg = Config(reps=args.reps, target_s=args.target_s)
    if args.worker:
        return run_worker(args.worker, cfg, args.result_file)
    figs = load_figures()
    if args.list:
        for f in figs.values():
            target = f.target.describe(f.unit) if f.target else "-"
            print(f"{f.name:20} {f.group:8} {f.title} [{f.unit}], target {target}")
        return 0
    chosen = _select(figs, args)
    modes = MODES if args.mode == "both" else (args.mode,)
    t_start = time.monotonic()
    results: dict[str, Any] = {}
    for fig in chosen:
        entry: dict[str, Any] = {
            "title": fig.title,
            "group": fig.group,
            "unit": fig.unit,
            "limit_name": fig.limit_name,
            "target": fig.target.to_json() if fig.target else None,
            "target_text": fig.target.describe(fig.unit) if fig.target else None,
            "doc": fig.doc,
        }
        missing = fig.missing()
        for mode in modes:
            if missing:
                entry[mode] = {
                    "skipped": f"not installed: {', '.join(missing)} (pip install '.[bench]')"
                }
            else:
                t0 = time.monotonic()
                entry[mode] = _summarise(fig, _run_one(fig, mode, cfg, args.timeout))
                entry[mode]["wall_s"] = round(time.monotonic() - t0, 2)
            print(_progress(fig, mode, entry[mode]), file=sys.stderr, flush=True)
        results[fig.name] = entry
    doc = {
        "meta": {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": "python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv),
            "reps": cfg.reps,
            "target_s": cfg.target_s,
            "modes": list(modes),
            "pinned_cpu": PIN_CPU,
            "machine": {
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "kernel": platform.release(),
            },
            "versions": _versions(),
            "git": _git_state(),
            "wall_s": round(time.monotonic() - t_start, 1),
        },
        "figures": results,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(format_table(doc))
    shown = os.path.abspath(args.out)
    if shown.startswith(os.getcwd() + os.sep):
        shown = os.path.relpath(shown)
    print(f"\nwritten: {shown}  ({doc['meta']['wall_s']} s)")
    failed = [
        n
        for n, e in results.items()
        for m in modes
        if "error" in e[m] or "leftover_processes" in e[m]
    ]
    return 1 if failed else 0


# -------------------------------------------------------------------- table


def fmt(x: float) -> str:
    """Three significant figures, thousands separated (as peers-bench prints)."""
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def _cell(s: dict[str, Any]) -> str:
    return f"{fmt(s['median'])} ({fmt(s['min'])}-{fmt(s['max'])})"


def _progress(fig: Figure, mode: str, r: dict[str, Any]) -> str:
    head = f"{fig.name} [{mode}]"
    if "value" in r:
        return (
            f"{head}: {_cell(r['value'])} {fig.unit}; limit {_cell(r['limit'])}; "
            f"ratio {_cell(r['ratio'])}"
        )
    if "skipped" in r:
        return f"{head}: skipped ({r['skipped']})"
    return f"{head}: ERROR\n{r.get('error', '')}"


def format_table(doc: dict[str, Any]) -> str:
    """The results as a plain-text table: one row per figure and placement."""
    head = (
        "figure",
        "placement",
        "value (min-max)",
        "limit (min-max)",
        "ratio (min-max)",
        "target",
        "met",
    )
    rows: list[tuple[str, ...]] = []
    notes: list[str] = []
    for name, e in doc["figures"].items():
        first = True
        for mode in doc["meta"]["modes"]:
            r = e.get(mode, {})
            label = f"{e['title']} [{e['unit']}]" if first else ""
            first = False
            if "value" in r:
                met = "-" if "target_met" not in r else ("yes" if r["target_met"] else "NO")
                rows.append(
                    (
                        label,
                        mode,
                        _cell(r["value"]),
                        _cell(r["limit"]),
                        _cell(r["ratio"]),
                        e["target_text"] or "-",
                        met,
                    )
                )
            else:
                why = "skipped" if "skipped" in r else "ERROR"
                rows.append((label, mode, why, "", "", e["target_text"] or "-", ""))
                notes.append(f"{name} [{mode}]: {r.get('skipped') or r.get('error', '')}".strip())
            if r.get("leftover_processes"):
                notes.append(f"{name} [{mode}]: left processes behind: {r['leftover_processes']}")
        rows.append(("",) * len(head))
    limits = {e["limit_name"] for e in doc["figures"].values()}
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)), line]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    if notes:
        out.append("notes:")
        out += [f"  {n}" for n in notes]
    out.append("limits: " + "; ".join(sorted(limits)))
    out.append(
        f"ratio = figure / limit per repetition, median (min-max) of {doc['meta']['reps']}; "
        f"pinned = taskset -c {doc['meta']['pinned_cpu']}"
    )
    return "\n".join(out)
