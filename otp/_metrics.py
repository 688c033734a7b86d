"""Prometheus metrics for a node, in the text exposition format.

`otp run module:Callable --metrics PORT` serves them on
`http://127.0.0.1:PORT/metrics` (only on the loopback interface: put a
reverse proxy or the Prometheus agent next to it to reach it from outside).
Each scrape asks every live process of the node for its figures, the way
`otp ps` does (over its socket, answered by its runtime between two
messages), and the OS for memory and CPU. Every per-process metric has the
labels node, pid, name and behaviour:

| metric | type | what |
| --- | --- | --- |
| `otp_processes` | gauge | live processes of the node (label: node) |
| `otp_process_message_queue_len` | gauge | messages waiting in the mailbox |
| `otp_process_messages_received_total` | counter | messages taken in |
| `otp_process_messages_sent_total` | counter | messages sent |
| `otp_process_memory_bytes` | gauge | unique memory (USS; RSS where USS is unreadable) |
| `otp_process_cpu_seconds_total` | counter | user + system CPU time |
| `otp_process_restarts_total` | counter | times its supervisor restarted it |
| `otp_supervisor_restarts_total` | counter | restarts a supervisor performed |

A process too busy to answer within half a second (a long callback) still
appears, with its OS figures only. A pid label is the process's Pid as text
(`<0.4211.17>`): a restarted process is a new series, as in Erlang tooling;
sum by `name` to follow a role across restarts.

With `prometheus_client` installed (the `metrics` extra:
`pip install 'otp-behaviours[metrics]'`) the families are served through its
registry and HTTP server; without it, by a small `http.server` of our own.
The text is the same.

```python
from otp import _metrics
server = _metrics.serve(9100, otp.node.rundir())   # in the main program
server.port, server.stop()
```
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["CONTENT_TYPE", "MetricsServer", "families", "render", "serve"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LABELS = ("node", "pid", "name", "behaviour")

# (name, type, help, source): source takes a process row, returns a number or None.
_PER_PROCESS: list[tuple[str, str, str, Any]] = [
    (
        "otp_process_message_queue_len",
        "gauge",
        "Messages waiting in the process's mailbox.",
        lambda r: r.get("message_queue_len"),
    ),
    (
        "otp_process_messages_received",
        "counter",
        "Messages the process has taken in.",
        lambda r: r.get("messages_in"),
    ),
    (
        "otp_process_messages_sent",
        "counter",
        "Messages the process has sent.",
        lambda r: r.get("messages_out"),
    ),
    (
        "otp_process_memory_bytes",
        "gauge",
        "Memory unique to the process (USS), in bytes; RSS where USS is unreadable.",
        lambda r: r.get("memory") if r.get("memory") is not None else r.get("rss"),
    ),
    (
        "otp_process_cpu_seconds",
        "counter",
        "User and system CPU time of the process, in seconds.",
        lambda r: r.get("cpu_seconds"),
    ),
    (
        "otp_process_restarts",
        "counter",
        "Times the process's supervisor has restarted it (children of supervisors).",
        lambda r: r.get("restarts"),
    ),
    (
        "otp_supervisor_restarts",
        "counter",
        "Restarts the supervisor has performed.",
        lambda r: r.get("supervisor_restarts"),
    ),
]


def families(nodes: list[dict[str, Any]]) -> Iterator[tuple[str, str, str, list[Any]]]:
    """The metric families of `nodes` (as `otp ps --json` gives them):
    `(name, type, help, [(labels dict, value), ...])`, counters without `_total`."""
    yield (
        "otp_processes",
        "gauge",
        "Live OTP processes of the node.",
        [({"node": n["node"]}, len(n["processes"])) for n in nodes],
    )
    for name, kind, help_, source in _PER_PROCESS:
        samples = []
        for n in nodes:
            for r in n["processes"]:
                value = source(r)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    labels = {
                        "node": n["node"],
                        "pid": r["pid"],
                        "name": r.get("name") or "",
                        "behaviour": r.get("behaviour") or "",
                    }
                    samples.append((labels, value))
        yield name, kind, help_, samples


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(nodes: list[dict[str, Any]]) -> str:
    """The text exposition format (version 0.0.4) of `nodes`' metrics."""
    out = []
    for name, kind, help_, samples in families(nodes):
        full = name + "_total" if kind == "counter" else name
        out.append(f"# HELP {full} {help_}")
        out.append(f"# TYPE {full} {kind}")
        for labels, value in samples:
            text = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
            out.append(f"{full}{{{text}}} {float(value)!r}")
    return "\n".join(out) + "\n"


def _gather(rundir: str) -> list[dict[str, Any]]:
    from ._cli import collect

    return collect(rundir=rundir)


class MetricsServer:
    """A running metrics endpoint: `.port` (the bound port), `.stop()`."""

    def __init__(self, server: Any, thread: threading.Thread, backend: str) -> None:
        self._server = server
        self._thread = thread
        self.backend = backend
        self.port: int = server.server_address[1]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class _Handler(http.server.BaseHTTPRequestHandler):
    rundir = ""

    def do_GET(self) -> None:
        if self.path.split("?")[0] not in ("/", "/metrics"):
            self.send_error(404)
            return
        body = render(_gather(self.rundir)).encode()
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a scrape every 15 s would flood the service's log


def _serve_builtin(port: int, rundir: str) -> MetricsServer:
    handler = type("_NodeHandler", (_Handler,), {"rundir": rundir})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    t = threading.Thread(target=server.serve_forever, name="otp-metrics", daemon=True)
    t.start()
    return MetricsServer(server, t, "builtin")


def _serve_prometheus_client(port: int, rundir: str) -> MetricsServer:
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    class NodeCollector:
        def collect(self) -> Iterator[Any]:
            for name, kind, help_, samples in families(_gather(rundir)):
                labels = list(samples[0][0]) if samples else ["node"]
                cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
                fam = cls(name, help_, labels=labels)
                for lab, value in samples:
                    fam.add_metric([str(lab[k]) for k in labels], value)
                yield fam

    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector())
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    return MetricsServer(server, thread, "prometheus_client")


def serve(port: int, rundir: str, backend: str = "auto") -> MetricsServer:
    """Serve the node's metrics on 127.0.0.1:`port` (0: any free port) from a thread.

    `backend`: "prometheus_client", "builtin", or "auto" (the first if it is
    installed). Raises OSError if the port cannot be bound.
    """
    if backend not in ("auto", "builtin", "prometheus_client"):
        raise ValueError(f"unknown metrics backend {backend!r}")
    if backend != "builtin":
        try:
            import prometheus_client  # noqa: F401
        except ImportError:
            if backend == "prometheus_client":
                raise
        else:
            return _serve_prometheus_client(port, rundir)
    return _serve_builtin(port, rundir)
