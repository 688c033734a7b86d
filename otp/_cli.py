"""The `otp` command: look at and run nodes from a shell.

```
otp ps [--json]            every live process of every node of this user
otp top [--interval S]     the same, refreshing
otp run module:Callable    run a supervisor (or any start function) as a service
```

`otp ps` reads each node's runtime directory (one socket per process), asks
each process's runtime for its queue, links and labels over that socket (the
way `process_info` does), and takes memory and CPU from the OS. The tree is
the OS process tree, which is the supervision tree: a supervisor forks its
children.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pickle
import signal
import socket
import sys
import time
from typing import Any

from . import _codec
from ._proc_os import is_os_process_running, start_time

__all__ = ["main"]


# ------------------------------------------------------------------ otp ps


def _base_dir() -> str:
    import tempfile

    xdg = os.environ.get("XDG_RUNTIME_DIR")
    return (
        os.path.join(xdg, "otp")
        if xdg
        else os.path.join(tempfile.gettempdir(), f"otp-{os.getuid()}")
    )


def _ask_info(path: str, timeout: float = 0.5) -> dict[str, Any] | None:
    """process_info from outside a node: HELLO, INFO_REQ, read the answer."""
    me = os.getpid()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        ref = ("otp-ps", me, time.monotonic_ns())
        s.sendall(
            _codec.frame(_codec.HELLO, _codec.HELLO_BODY.pack(me, start_time(me)))
            + _codec.frame(_codec.INFO_REQ, pickle.dumps(ref, 5))
        )
        buf = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                return None
            buf += chunk
            while len(buf) >= 8:
                (h,) = _codec.HDR.unpack_from(buf)
                kind, size = h >> _codec.KIND_SHIFT, h & _codec.LEN_MASK
                if len(buf) < 8 + size:
                    break
                body, buf = buf[8 : 8 + size], buf[8 + size :]
                if kind == _codec.MSG:
                    value = pickle.loads(body)
                    if isinstance(value, tuple) and len(value) == 2 and value[0] == ref:
                        return value[1]  # type: ignore[no-any-return]
        return None
    except OSError:
        return None
    finally:
        s.close()


def _os_facts(ospid: int) -> dict[str, Any]:
    import psutil

    try:
        p = psutil.Process(ospid)
        with p.oneshot():
            try:
                uss = p.memory_full_info().uss
            except psutil.AccessDenied:
                uss = None
            cpu = p.cpu_times()
            return {
                "ppid": p.ppid(),
                "title": " ".join(p.cmdline()).strip(),
                "memory": uss,
                "rss": p.memory_info().rss,
                "cpu_seconds": round(cpu.user + cpu.system, 3),
                "os_status": p.status(),
            }
    except psutil.NoSuchProcess:
        return {}


def _str(v: Any) -> Any:
    if isinstance(v, (list, tuple)) and not (isinstance(v, tuple) and type(v).__name__ == "Pid"):
        return [_str(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _str(x) for k, x in v.items()}
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return repr(v)


def collect(ask: bool = True) -> list[dict[str, Any]]:
    """Every node of this user, each with its live processes."""
    base = _base_dir()
    nodes = []
    try:
        entries = sorted(os.listdir(base))
    except OSError:
        return []
    for entry in entries:
        rundir = os.path.join(base, entry)
        try:
            with open(os.path.join(rundir, "node")) as f:
                name, main_pid, root_pid = f.read().split()[:3]
        except (OSError, ValueError):
            continue
        procs = []
        for sock in os.listdir(rundir):
            a, _, b = sock.partition(".")
            if not (a.isdigit() and b.isdigit()):
                continue
            ospid, serial = int(a), int(b)
            if not is_os_process_running(ospid):
                continue
            row: dict[str, Any] = {"pid": f"<0.{ospid}.{serial}>", "os_pid": ospid}
            row.update(_os_facts(ospid))
            info = _ask_info(os.path.join(rundir, sock)) if ask else None
            if info:
                for key in (
                    "registered_name",
                    "status",
                    "message_queue_len",
                    "links",
                    "monitors",
                    "messages_in",
                    "messages_out",
                    "behaviour",
                    "restarts",
                    "initial_call",
                    "module",
                    "trap_exit",
                ):
                    if key in info:
                        row[key] = _str(info[key])
            else:
                row.setdefault("status", "busy" if ask else "unknown")
            procs.append(row)
        if not procs and not os.path.exists(f"/proc/{main_pid}"):
            continue
        nodes.append(
            {
                "node": name,
                "rundir": rundir,
                "main_os_pid": int(main_pid),
                "root_os_pid": int(root_pid),
                "processes": sorted(procs, key=lambda r: r["os_pid"]),
            }
        )
    return nodes


def _fmt_mem(n: Any) -> str:
    if not isinstance(n, int):
        return "-"
    return f"{n / 1048576:.1f}M"


def render(nodes: list[dict[str, Any]]) -> str:
    lines = []
    for node in nodes:
        lines.append(
            f"node {node['node']}  main os pid {node['main_os_pid']}  "
            f"root os pid {node['root_os_pid']}  {node['rundir']}"
        )
        lines.append(
            f"  {'PID':<22}{'OS PID':>8}  {'BEHAVIOUR':<11}{'STATUS':<10}"
            f"{'MEM':>7}{'QUEUE':>7}{'IN':>8}{'OUT':>8}{'RESTARTS':>9}  NAME"
        )
        by_os = {p["os_pid"]: p for p in node["processes"]}
        children: dict[int, list[int]] = {}
        roots = []
        for p in node["processes"]:
            parent = p.get("ppid")
            if parent in by_os and parent != p["os_pid"]:
                children.setdefault(parent, []).append(p["os_pid"])
            else:
                roots.append(p["os_pid"])

        def walk(ospid: int, depth: int) -> None:
            p = by_os[ospid]
            name = p.get("registered_name") or p.get("module") or p.get("initial_call") or ""
            restarts = p.get("restarts")
            if isinstance(restarts, dict):
                restarts = sum(restarts.values())
            pid = "  " * depth + p["pid"]
            lines.append(
                f"  {pid:<22}{ospid:>8}  {p.get('behaviour') or '-'!s:<11}"
                f"{p.get('status', '-')!s:<10}{_fmt_mem(p.get('memory')):>7}"
                f"{p.get('message_queue_len', '-')!s:>7}{p.get('messages_in', '-')!s:>8}"
                f"{p.get('messages_out', '-')!s:>8}{restarts if restarts is not None else '-'!s:>9}"
                f"  {name}"
            )
            for c in sorted(children.get(ospid, [])):
                walk(c, depth + 1)

        for r in sorted(roots):
            walk(r, 0)
        lines.append("")
    return "\n".join(lines) if lines else "no live nodes"


def cmd_ps(args: argparse.Namespace) -> int:
    nodes = collect()
    if args.json:
        print(json.dumps(nodes, indent=2))
    else:
        print(render(nodes))
    return 0


def cmd_top(args: argparse.Namespace) -> int:
    try:
        from rich.console import Console
        from rich.live import Live
        from rich.text import Text
    except ImportError:  # pragma: no cover - rich is optional
        Console = None
    try:
        if Console is None:
            while True:
                print("\033[2J\033[H" + render(collect()), flush=True)
                time.sleep(args.interval)
        with Live(Text(render(collect())), console=Console(), refresh_per_second=4) as live:
            while True:
                time.sleep(args.interval)
                live.update(Text(render(collect())))
    except KeyboardInterrupt:
        return 0


# ----------------------------------------------------------------- otp run


class _Stop(BaseException):
    pass


def cmd_run(args: argparse.Namespace) -> int:
    import otp

    modname, _, attr = args.target.partition(":")
    if not attr:
        print("otp run: expected module:Callable", file=sys.stderr)
        return 2
    sys.path.insert(0, os.getcwd())
    try:
        target = getattr(importlib.import_module(modname), attr)
    except (ImportError, AttributeError) as e:
        print(f"otp run: cannot load {args.target}: {e}", file=sys.stderr)
        return 2

    def on_signal(signum: int, frame: Any) -> None:
        raise _Stop(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    otp.node.start()
    otp.trap_exit(True)
    try:
        start = getattr(target, "start_link", target)
        pid = start()
    except _Stop:
        otp.node.stop()
        return 0
    except Exception as e:
        print(f"otp run: {args.target} failed to start: {e!r}", file=sys.stderr)
        otp.node.stop()
        return 1
    print(
        f"otp run: {args.target} running as {pid}; node dir {otp.node.rundir()}",
        file=sys.stderr,
        flush=True,
    )
    code = 0
    try:
        if isinstance(pid, otp.Pid):
            ref = otp.monitor(pid)
            down = otp.receive(lambda m: isinstance(m, otp.DOWN) and m.ref == ref)
            print(f"otp run: {pid} ended: {down.reason!r}", file=sys.stderr)
            code = 0 if down.reason in ("normal", "shutdown") else 1
        else:
            while True:
                otp.receive()
    except _Stop as s:
        print(f"otp run: signal {s.args[0]}, stopping", file=sys.stderr, flush=True)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        otp.node.stop()
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="otp", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    ps = sub.add_parser("ps", help="every live process of every node of this user")
    ps.add_argument("--json", action="store_true", help="machine-readable output")
    ps.set_defaults(fn=cmd_ps)
    top = sub.add_parser("top", help="otp ps, refreshing")
    top.add_argument("--interval", type=float, default=1.0)
    top.set_defaults(fn=cmd_top)
    run = sub.add_parser("run", help="run module:Callable as a foreground service")
    run.add_argument("target")
    run.set_defaults(fn=cmd_run)
    args = parser.parse_args(argv)
    return int(args.fn(args))
