"""The `otp` command: look at, run and attach to nodes from a shell.

```
otp ps [NODE] [--json]               every live process of every node of this user
otp top [NODE] [--interval S]        the same, refreshing (rich, if installed)
otp run module:Callable [ARG ...]    run a supervisor (or any start function) as a service
        [--name NAME] [--node NODE] [--metrics PORT] [--log-json] [--log-file PATH]
otp shell [NODE] [-c CODE]           a Python REPL that is a process of a running node
```

Also `python -m otp ...`.

## otp ps

Reads each node's runtime directory (one socket per process), asks each
process's runtime for its queue, links, message counts and labels over that
socket (the way `process_info` does: answered between two messages, so a
process busy in a long callback shows as "busy"), and takes memory (USS) and
CPU from the OS. The tree is the OS process tree, which is the supervision
tree: a supervisor forks its children. RESTARTS is how many times a child's
supervisor has restarted it. `--json` gives one object per node, with a flat
list of processes (`ppid` and `parent` rebuild the tree; the keys are those
of `otp.process_info` plus `name`, `restarts`, `supervisor_restarts`,
`child_restarts`, `cpu_seconds`).

## otp run

`otp run examples.kv_service:KVSupervisor 7070 /var/lib/kv` imports the
module, starts the node, and calls `KVSupervisor.start_link(7070,
"/var/lib/kv")` (any callable without `start_link` is called as is). Each
ARG is a Python literal (`7070`, `"x"`, `[1, 2]`) or else a string;
`key=value` is a keyword argument. The service runs in the foreground, its
processes' logs come out on stderr (`--log-json`: one JSON object per line;
`--log-file`: also to a file), and SIGTERM or SIGINT (Ctrl-C) stop it in
order: the supervisor gets the exit signal "shutdown" and stops its children
in reverse start order.

The exit code says how it ended: 0, stopped by a signal (or the service
ended with reason normal or shutdown); 1, the service died (the supervisor
reached its restart intensity, or crashed); 2, it could not start (bad
target, init failed, metrics port taken).

`--metrics PORT` serves Prometheus metrics on 127.0.0.1:PORT (otp._metrics).

## otp shell

See otp._shell: `otp shell` attaches a REPL to the only running node (or
the one named: node name, runtime directory or main OS pid), as one of its
processes: `gen_server.call("kv_cache", "stats")`, `otp.process_info(pid)`,
`otp.debug.get_state("kv_storage")` work on the live service.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import os
import pickle
import re
import signal
import socket
import sys
import time
from typing import Any

from . import _codec
from ._proc_os import is_os_process_running, start_time

__all__ = ["collect", "find_node", "list_nodes", "main", "render"]


# ------------------------------------------------------------------ otp ps


def _base_dir() -> str:
    # One definition of where node directories live: the node's own, so that
    # `otp ps` always looks where nodes are created.
    from ._node import base_dir_path

    return base_dir_path()


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
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
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


_PID_TEXT = re.compile(r"<\d+\.(\d+)\.(\d+)>")


def _pid_text(v: Any) -> str:
    """A Pid as `<0.ospid.serial>`, whatever node index its repr chose."""
    m = _PID_TEXT.fullmatch(str(v))
    return f"<0.{m.group(1)}.{m.group(2)}>" if m else str(v)


def _str(v: Any) -> Any:
    """JSON-ready: Pids (tuples with a repr of their own) as text."""
    if type(v).__name__ == "Pid":
        return _pid_text(v)
    if isinstance(v, (list, tuple)):
        return [_str(x) for x in v]
    if isinstance(v, dict):
        return {_str(k) if type(k).__name__ == "Pid" else str(k): _str(x) for k, x in v.items()}
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return repr(v)


# What `otp ps` copies from each process's answer (Process.local_info plus the
# labels behaviours set); "restarts" is renamed: see _derive.
_INFO_KEYS = (
    "registered_name",
    "status",
    "message_queue_len",
    "links",
    "monitors",
    "messages_in",
    "messages_out",
    "behaviour",
    "module",
    "initial_call",
    "trap_exit",
    "child_restarts",
)


def list_nodes() -> list[dict[str, Any]]:
    """Every node directory of this user whose main program is alive:
    `{"node", "rundir", "main_os_pid", "root_os_pid"}`."""
    base = _base_dir()
    try:
        entries = sorted(os.listdir(base))
    except OSError:
        return []
    out = []
    for entry in entries:
        rundir = os.path.join(base, entry)
        try:
            with open(os.path.join(rundir, "node")) as f:
                name, main_pid, root_pid = f.read().split()[:3]
        except (OSError, ValueError):
            continue
        if not is_os_process_running(int(main_pid)):
            continue
        out.append(
            {
                "node": name,
                "rundir": rundir,
                "main_os_pid": int(main_pid),
                "root_os_pid": int(root_pid),
            }
        )
    return out


def _matches(node: dict[str, Any], spec: str) -> bool:
    """Does `spec` name `node`: its name, runtime directory (or base name), main OS pid?"""
    return spec in (
        node["node"],
        node["rundir"],
        os.path.basename(node["rundir"]),
        str(node["main_os_pid"]),
    )


def find_node(spec: str | None) -> dict[str, Any]:
    """The live node `spec` names (node name, runtime directory or its base
    name, main OS pid), or the only live node when `spec` is None.

    Raises LookupError with a message listing the candidates.
    """
    nodes = list_nodes()
    if spec is None:
        if len(nodes) == 1:
            return nodes[0]
        if not nodes:
            raise LookupError("no live node of this user")
    else:
        hits = [n for n in nodes if _matches(n, spec)]
        if len(hits) == 1:
            return hits[0]
        if not hits:
            raise LookupError(f"no live node {spec!r}")
        nodes = hits
    listing = "\n".join(
        f"  {n['node']}  main os pid {n['main_os_pid']}  {n['rundir']}" for n in nodes
    )
    raise LookupError(f"several nodes match; name one by main os pid or directory:\n{listing}")


def collect(
    ask: bool = True, rundir: str | None = None, node: str | None = None
) -> list[dict[str, Any]]:
    """Every live node of this user (or only the one in `rundir`, or those
    `node` names), each with its live processes: what `otp ps --json` prints."""
    out = []
    for found in list_nodes():
        if rundir is not None and os.path.realpath(found["rundir"]) != os.path.realpath(rundir):
            continue
        if node is not None and not _matches(found, node):
            continue
        procs = []
        try:
            socks = os.listdir(found["rundir"])
        except OSError:
            continue  # the node stopped meanwhile
        for sock in socks:
            a, _, b = sock.partition(".")
            if not (a.isdigit() and b.isdigit()):
                continue
            ospid, serial = int(a), int(b)
            if not is_os_process_running(ospid):
                continue
            row: dict[str, Any] = {"pid": f"<0.{ospid}.{serial}>", "os_pid": ospid}
            row.update(_os_facts(ospid))
            info = _ask_info(os.path.join(found["rundir"], sock)) if ask else None
            if info:
                for key in _INFO_KEYS:
                    if key in info:
                        row[key] = _str(info[key])
                if "restarts" in info:
                    row["supervisor_restarts"] = info["restarts"]
                if "parent" in info:
                    row["parent"] = _str(info["parent"])
            else:
                row.setdefault("status", "busy" if ask else "unknown")
            procs.append(row)
        _derive(procs)
        out.append({**found, "processes": sorted(procs, key=lambda r: r["os_pid"])})
    return out


def _derive(procs: list[dict[str, Any]]) -> None:
    """Fill in `name` and each supervised child's `restarts`.

    A supervisor publishes `child_restarts` (current child Pid -> times that
    child was restarted); a child of a supervisor not listed there has never
    been restarted.
    """
    by_pid = {r["pid"]: r for r in procs}
    for r in procs:
        r["name"] = r.get("registered_name") or r.get("module") or r.get("initial_call") or ""
    for r in procs:
        if r.get("behaviour") != "Supervisor":
            continue
        counts = r.get("child_restarts") or {}
        for child in procs:
            if child.get("ppid") == r["os_pid"] and child is not r:
                child["restarts"] = 0
        for pid, n in counts.items():
            row = by_pid.get(_pid_text(pid))
            if row is not None:
                row["restarts"] = n


def _fmt_mem(n: Any) -> str:
    if not isinstance(n, int):
        return "-"
    return f"{n / 1048576:.1f}M"


def _tree(node: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    """The node's processes in tree order, each with its depth."""
    by_os = {p["os_pid"]: p for p in node["processes"]}
    children: dict[int, list[int]] = {}
    roots = []
    for p in node["processes"]:
        parent = p.get("ppid")
        if parent in by_os and parent != p["os_pid"]:
            children.setdefault(parent, []).append(p["os_pid"])
        else:
            roots.append(p["os_pid"])
    out: list[tuple[int, dict[str, Any]]] = []

    def walk(ospid: int, depth: int) -> None:
        out.append((depth, by_os[ospid]))
        for c in sorted(children.get(ospid, [])):
            walk(c, depth + 1)

    for r in sorted(roots):
        walk(r, 0)
    return out


def _dash(v: Any) -> str:
    return "-" if v is None else str(v)


def render(nodes: list[dict[str, Any]], cpu: dict[int, float] | None = None) -> str:
    """`otp ps`'s table; `cpu` (OS pid -> percent) adds a CPU% column (otp top)."""
    lines = []
    for node in nodes:
        lines.append(
            f"node {node['node']}  main os pid {node['main_os_pid']}  "
            f"root os pid {node['root_os_pid']}  {node['rundir']}"
        )
        cpu_head = f"{'CPU%':>6}" if cpu is not None else f"{'CPU s':>8}"
        lines.append(
            f"  {'PID':<24}{'OS PID':>8}  {'BEHAVIOUR':<11}{'STATUS':<10}"
            f"{'MEM':>7}{cpu_head}{'QUEUE':>7}{'IN':>8}{'OUT':>8}{'RESTARTS':>9}  NAME"
        )
        for depth, p in _tree(node):
            pid = "  " * depth + p["pid"]
            if cpu is not None:
                c = cpu.get(p["os_pid"])
                cpu_col = f"{'-' if c is None else f'{c:.0f}':>6}"
            else:
                cpu_col = f"{_dash(p.get('cpu_seconds')):>8}"
            lines.append(
                f"  {pid:<24}{p['os_pid']:>8}  {p.get('behaviour') or '-'!s:<11}"
                f"{p.get('status', '-')!s:<10}{_fmt_mem(p.get('memory')):>7}{cpu_col}"
                f"{_dash(p.get('message_queue_len')):>7}{_dash(p.get('messages_in')):>8}"
                f"{_dash(p.get('messages_out')):>8}{_dash(p.get('restarts')):>9}"
                f"  {p.get('name', '')}"
            )
        lines.append("")
    return "\n".join(lines) if lines else "no live nodes"


def cmd_ps(args: argparse.Namespace) -> int:
    nodes = collect(node=args.node)
    if args.json:
        print(json.dumps(nodes, indent=2))
    else:
        print(render(nodes))
    return 0


# ----------------------------------------------------------------- otp top


class _CpuMeter:
    """CPU percent per OS pid, from the CPU seconds of two successive samples."""

    def __init__(self) -> None:
        self.last: dict[int, float] = {}
        self.t = 0.0

    def sample(self, nodes: list[dict[str, Any]]) -> dict[int, float]:
        now = time.monotonic()
        dt = now - self.t
        cur = {
            p["os_pid"]: p["cpu_seconds"]
            for n in nodes
            for p in n["processes"]
            if isinstance(p.get("cpu_seconds"), (int, float))
        }
        out = {}
        if self.t:
            for ospid, secs in cur.items():
                if ospid in self.last and dt > 0:
                    out[ospid] = max(secs - self.last[ospid], 0.0) / dt * 100
        self.last, self.t = cur, now
        return out


def _rich_view(nodes: list[dict[str, Any]], cpu: dict[int, float]) -> Any:
    from rich.console import Group
    from rich.table import Table

    if not nodes:
        return Group("no live nodes")
    tables = []
    for node in nodes:
        t = Table(
            title=f"node {node['node']}  main os pid {node['main_os_pid']}  {node['rundir']}",
            title_justify="left",
            expand=False,
        )
        for col, just in (
            ("PID", "left"),
            ("OS PID", "right"),
            ("BEHAVIOUR", "left"),
            ("STATUS", "left"),
            ("MEM", "right"),
            ("CPU%", "right"),
            ("QUEUE", "right"),
            ("IN", "right"),
            ("OUT", "right"),
            ("RESTARTS", "right"),
            ("NAME", "left"),
        ):
            t.add_column(col, justify=just, no_wrap=True)  # type: ignore[arg-type]
        for depth, p in _tree(node):
            c = cpu.get(p["os_pid"])
            queue = p.get("message_queue_len")
            restarts = p.get("restarts")
            t.add_row(
                "  " * depth + p["pid"],
                str(p["os_pid"]),
                p.get("behaviour") or "-",
                p.get("status", "-"),
                _fmt_mem(p.get("memory")),
                "-" if c is None else f"{c:.0f}",
                # A growing queue and restarts are what an operator looks for.
                f"[bold red]{queue}[/]" if isinstance(queue, int) and queue > 100 else _dash(queue),
                _dash(p.get("messages_in")),
                _dash(p.get("messages_out")),
                f"[yellow]{restarts}[/]" if restarts else _dash(restarts),
                p.get("name", ""),
            )
        tables.append(t)
    return Group(*tables)


def cmd_top(args: argparse.Namespace) -> int:
    meter = _CpuMeter()
    n = args.iterations
    try:
        from rich.console import Console
        from rich.live import Live

        have_rich = True
    except ImportError:
        have_rich = False
    try:
        if not have_rich or args.plain:
            i = 0
            while True:
                nodes = collect(node=args.node)
                text = render(nodes, meter.sample(nodes))
                print(("\033[2J\033[H" if sys.stdout.isatty() else "") + text, flush=True)
                i += 1
                if n and i >= n:
                    return 0
                time.sleep(args.interval)
        nodes = collect(node=args.node)
        # Not a terminal (a pipe, a log): wide enough for the whole table.
        console = Console() if sys.stdout.isatty() else Console(width=160)
        with Live(
            _rich_view(nodes, meter.sample(nodes)), console=console, auto_refresh=False
        ) as live:
            i = 1
            while not n or i < n:
                time.sleep(args.interval)
                nodes = collect(node=args.node)
                live.update(_rich_view(nodes, meter.sample(nodes)), refresh=True)
                i += 1
    except KeyboardInterrupt:
        pass
    return 0


# ----------------------------------------------------------------- otp run


class _Stop(BaseException):
    """Raised by the SIGTERM/SIGINT handler to unwind `otp run`'s wait."""


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


def parse_call_args(words: list[str]) -> tuple[list[Any], dict[str, Any]]:
    """`otp run`'s ARGs: Python literals (else strings); `key=value` is a keyword."""
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for w in words:
        key, eq, value = w.partition("=")
        if eq and key.isidentifier():
            kwargs[key] = _literal(value)
        else:
            args.append(_literal(w))
    return args, kwargs


def _setup_logging(args: argparse.Namespace) -> None:
    from loguru import logger

    if args.log_json:
        logger.remove()
        logger.add(sys.stderr, serialize=True)
    if args.log_file:
        logger.add(args.log_file, serialize=args.log_json)


def cmd_run(args: argparse.Namespace) -> int:
    import otp

    modname, _, attr = args.target.partition(":")
    if not attr:
        print("otp run: expected module:Callable", file=sys.stderr)
        return 2
    sys.path.insert(0, os.getcwd())
    try:
        # A module first, then whatever attribute path names the callable.
        target: Any = importlib.import_module(modname)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as e:
        print(f"otp run: cannot load {args.target}: {e}", file=sys.stderr)
        return 2
    call_args, call_kwargs = parse_call_args(args.args)
    if args.name:
        call_kwargs["name"] = args.name
    _setup_logging(args)

    def on_signal(signum: int, frame: Any) -> None:
        raise _Stop(signum)

    # Handlers first: a SIGTERM during the start must still stop the node
    # (through the finally below), never leave it half started.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    code = 0
    metrics = None
    try:
        otp.node.start(args.node)
        otp.trap_exit(True)
        if args.metrics is not None:
            from . import _metrics

            try:
                metrics = _metrics.serve(args.metrics, otp.node.rundir())
            except OSError as e:
                print(f"otp run: cannot serve metrics on port {args.metrics}: {e}", file=sys.stderr)
                return 2
        start = getattr(target, "start_link", target)
        try:
            pid = start(*call_args, **call_kwargs)
        except _Stop:
            raise
        except Exception as e:
            print(f"otp run: {args.target} failed to start: {e!r}", file=sys.stderr)
            return 2
        where = f"; metrics on http://127.0.0.1:{metrics.port}/metrics" if metrics else ""
        print(
            f"otp run: {args.target} running as {pid}; node dir {otp.node.rundir()}{where}",
            file=sys.stderr,
            flush=True,
        )
        if isinstance(pid, otp.Pid):
            ref = otp.monitor(pid)
            down = otp.receive(lambda m: isinstance(m, otp.DOWN) and m.ref == ref)
            print(f"otp run: {pid} ended: {down.reason!r}", file=sys.stderr, flush=True)
            code = 0 if down.reason in ("normal", "shutdown") else 1
        else:
            while True:
                otp.receive()
    except _Stop as s:
        print(f"otp run: signal {s.args[0]}, stopping", file=sys.stderr, flush=True)
    finally:
        # A second signal must not interrupt the ordered stop.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if metrics is not None:
            metrics.stop()
        otp.node.stop()
    return code


# --------------------------------------------------------------- otp shell


def cmd_shell(args: argparse.Namespace) -> int:
    from . import _shell

    return _shell.main(args.node, args.command)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="otp", description="Look at, run and attach to otp nodes."
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    ps = sub.add_parser("ps", help="every live process of every node of this user")
    ps.add_argument("node", nargs="?", help="only this node (name, directory or main os pid)")
    ps.add_argument("--json", action="store_true", help="machine-readable output")
    ps.set_defaults(fn=cmd_ps)
    top = sub.add_parser("top", help="otp ps, refreshing")
    top.add_argument("node", nargs="?", help="only this node (name, directory or main os pid)")
    top.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    top.add_argument("--iterations", type=int, default=0, help="stop after N refreshes")
    top.add_argument("--plain", action="store_true", help="plain text, even with rich installed")
    top.set_defaults(fn=cmd_top)
    run = sub.add_parser("run", help="run module:Callable as a foreground service")
    run.add_argument("target", help="module:Callable (its start_link, if it has one)")
    run.add_argument("args", nargs="*", help="arguments: Python literals; key=value for keywords")
    run.add_argument("--name", help="register the started process under NAME")
    run.add_argument("--node", help="the node's name (what `otp shell NODE` matches)")
    run.add_argument(
        "--metrics", type=int, metavar="PORT", help="Prometheus metrics on 127.0.0.1:PORT"
    )
    run.add_argument("--log-json", action="store_true", help="log one JSON object per line")
    run.add_argument("--log-file", metavar="PATH", help="also log to PATH")
    run.set_defaults(fn=cmd_run)
    sh = sub.add_parser("shell", help="a Python REPL that is a process of a running node")
    sh.add_argument("node", nargs="?", help="node name, runtime directory or main os pid")
    sh.add_argument("-c", dest="command", help="run COMMAND in the node, then exit")
    sh.set_defaults(fn=cmd_shell)
    args = parser.parse_args(argv)
    return int(args.fn(args))
