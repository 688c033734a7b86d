"""Prometheus metrics of a node, scraped over HTTP as Prometheus would.

These serve the test's own node from the test process (the endpoint runs in
a thread, as under `otp run --metrics`); test_cli scrapes a real `otp run`.
Both backends are checked: the built-in http.server one, and
prometheus_client's when it is installed. They must expose the same series.
"""

from __future__ import annotations

import os
import re
import signal
import urllib.error
import urllib.request
from typing import Any

import pytest

import otp
from behaviours import ChildSpec, GenServer, Supervisor, SupFlags, gen_server
from otp import _metrics
from otp.testing import wait_until


class Counter(GenServer):
    def init(self) -> Any:
        return 0


class Tree(Supervisor):
    def init(self) -> Any:
        return SupFlags(strategy="one_for_one", intensity=5, period=5), [
            ChildSpec(id="counter", start=(Counter.start_link, (), {"name": "m_counter"})),
        ]


def _scrape(port: int, path: str = "/metrics") -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=20) as r:
        assert r.headers["Content-Type"].startswith("text/plain")
        return r.read().decode()  # type: ignore[no-any-return]


def _samples(text: str) -> dict[tuple[str, str], float]:
    """{(metric name, name label): value} for every sample line."""
    out = {}
    for line in text.splitlines():
        m = re.fullmatch(r"(\w+)\{([^}]*)\} (\S+)", line)
        if m:
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2)))
            out[(m.group(1), labels.get("name", labels.get("node", "")))] = float(m.group(3))
    return out


def _restarted_tree() -> tuple[otp.Pid, otp.Pid]:
    """A supervisor whose counter was SIGKILLed once, and restarted."""
    sup = Tree.start_link(name="m_sup")
    old = otp.whereis("m_counter")
    assert old is not None
    ref = otp.monitor(old)
    os.kill(old.id, signal.SIGKILL)
    otp.receive(lambda m: type(m) is otp.DOWN and m.ref == ref, timeout=15)
    new = wait_until(lambda: otp.whereis("m_counter") not in (None, old), 15, "the restart")
    return sup, new


@pytest.mark.parametrize("backend", ["builtin", "prometheus_client"])
def test_a_scrape_gives_processes_restarts_messages_queues_and_memory(backend: str) -> None:
    if backend == "prometheus_client":
        pytest.importorskip("prometheus_client")
    sup, _counter = _restarted_tree()
    server = _metrics.serve(0, otp.node.rundir(), backend=backend)
    try:
        assert server.backend == backend
        text = _scrape(server.port)
    finally:
        server.stop()
    s = _samples(text)
    node = otp.self_pid().node
    # The main program (this test), the supervisor, the counter.
    assert s[("otp_processes", node)] == 3
    assert s[("otp_process_restarts_total", "m_counter")] == 1
    assert s[("otp_supervisor_restarts_total", "m_sup")] == 1
    assert s[("otp_process_message_queue_len", "m_counter")] == 0
    assert s[("otp_process_messages_received_total", "m_sup")] >= 1
    assert s[("otp_process_messages_sent_total", "m_sup")] >= 1
    assert s[("otp_process_memory_bytes", "m_counter")] > 0
    assert ("otp_process_cpu_seconds_total", "m_counter") in s
    assert "# TYPE otp_process_restarts_total counter" in text
    assert "# TYPE otp_process_memory_bytes gauge" in text
    otp.unlink(sup)
    gen_server.stop(sup, "shutdown")


def test_both_backends_expose_the_same_series() -> None:
    pytest.importorskip("prometheus_client")
    pid = Counter.start_link(name="m_counter")
    texts = []
    for backend in ("builtin", "prometheus_client"):
        server = _metrics.serve(0, otp.node.rundir(), backend=backend)
        try:
            texts.append(_scrape(server.port))
        finally:
            server.stop()
    builtin, client = (
        {k for k in _samples(t) if not k[0].endswith("cpu_seconds_total")} for t in texts
    )
    assert builtin == client
    otp.unlink(pid)
    gen_server.stop(pid)


def test_the_builtin_endpoint_answers_404_off_its_path() -> None:
    server = _metrics.serve(0, otp.node.rundir(), backend="builtin")
    try:
        with pytest.raises(urllib.error.HTTPError) as e:
            _scrape(server.port, "/nothing")
        assert e.value.code == 404
        e.value.close()
    finally:
        server.stop()


def test_label_values_are_escaped_in_the_text_format() -> None:
    nodes = [
        {
            "node": 'n"1',
            "processes": [
                {"pid": "<0.1.2>", "name": 'a\\b"c\nd', "behaviour": "", "message_queue_len": 3}
            ],
        }
    ]
    text = _metrics.render(nodes)
    assert 'otp_processes{node="n\\"1"} 1.0' in text
    assert (
        'otp_process_message_queue_len{node="n\\"1",pid="<0.1.2>",name="a\\\\b\\"c\\nd",'
        'behaviour=""} 3.0'
    ) in text
