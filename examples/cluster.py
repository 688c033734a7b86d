"""Several nodes on one machine: two Python nodes and, if Erlang is installed,
a real `erl` node, all speaking the Erlang distribution protocol.

    python examples/cluster.py

What it shows, in order:

1. This program becomes the node `main@127.0.0.1`; it starts a second Python
   node, `workers@127.0.0.1`, as its own program (its own OS process tree):
   this same file, run with `--node`.
2. A supervisor here places a `Counter` GenServer on `workers` (a child spec
   with `node=`) next to a local one. The remote child is called by Pid and
   by `(name, node)`, exactly as a local one is.
3. `kill -9` of the remote child, on the other node: the supervisor here
   learns of it through its link across nodes and starts a new one there.
4. If `erl` is on the PATH, an Erlang node calls the Python counter with
   `gen_server:call({counter, 'workers@127.0.0.1'}, {add, 5})` and pings
   this node with `net_adm:ping` (`pong`).

Configuring real machines
-------------------------
- Names: `otp.node.start(name="app@host.example.com")` (long names, the
  host part resolvable by every node) or `"app@host"` (short names).
- Cookie: every node of a cluster shares one. By default it is read from
  `~/.erlang.cookie` (created, mode 0400, if missing), as `erl` does; pass
  `cookie=` to choose it. This example makes a fresh random one.
- Port mapper: nodes find each other through epmd (port 4369, or
  `ERL_EPMD_PORT`). Where no epmd runs, the first Python node starts an
  epmd-compatible port mapper of its own.
- TLS: across machines, give every node
  `tls=otp.node.TLS(certfile=..., keyfile=..., cafile=...)` (mutual TLS,
  as Erlang's `inet_tls_dist`). A node listening beyond 127.0.0.1 without
  TLS is refused unless you opt in with `allow_plain_tcp=True`.

Why the remote child's start is `cluster.Counter.start_link`, not this
script's `Counter.start_link`: a child spec with `node=` sends its start *by
name* (`module:function`), never pickled code, and the other node imports
it. `__main__` names a different program on each node, so it is refused;
`cluster` (this file imported under its module name: its folder is first on
`sys.path` on both nodes) names the same code on both. In an application the
start is simply a class of one of its modules.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

import _path  # noqa: F401

import otp
from behaviours import ChildSpec, GenServer, Reply, gen_server, supervisor

MAIN = "main@127.0.0.1"
WORKERS = "workers@127.0.0.1"


class Counter(GenServer):
    """A counter, registered as `counter` on whichever node it runs."""

    @classmethod
    def start_link(cls) -> Any:  # type: ignore[override]
        return super().start_link(name="counter")

    def init(self) -> int:
        return 0

    def handle_call(self, request: Any, from_: Any, state: int) -> Any:
        match request:
            case ("add", n) | (otp.Atom("add"), n):
                return Reply(state + n, state + n)
            case "where":
                return Reply((otp.self_pid().node, os.getpid()), state)
        return Reply(("unknown", request), state)


def run_node(name: str, cookie: str) -> None:
    """The second node: distributed, idle, until its stdin closes."""
    otp.node.start(name=name, cookie=cookie)
    print("ready", flush=True)
    sys.stdin.read()  # the main program closes our stdin to stop us
    otp.node.stop()


def _wait(cond: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        try:
            otp.receive(timeout=0.05)  # nothing comes: a pause that serves the runtime
        except otp.ReceiveTimeout:
            pass


def _remote_child(sup: otp.Pid) -> Any:
    return {c[0]: c[1] for c in supervisor.which_children(sup)}["remote"]


def main() -> None:
    cookie = secrets.token_hex(16)
    otp.node.start(name=MAIN, cookie=cookie)
    other = subprocess.Popen(
        [sys.executable, __file__, "--node", WORKERS, cookie],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "ready"
        print(f"nodes up: {MAIN} and {WORKERS}")

        import cluster  # this file, by its module name (see the module doc)

        otp.trap_exit(True)
        sup = supervisor.start_link(
            [
                ChildSpec("remote", (cluster.Counter.start_link, (), {}), node=WORKERS),
                Counter.child_spec(id="local"),
            ],
            strategy="one_for_one",
            intensity=5,
            period=10,
        )
        remote = _remote_child(sup)
        print("remote child:", remote, "runs on", gen_server.call(remote, "where"))
        print("add 2 by Pid ->", gen_server.call(remote, ("add", 2)))
        print("add 3 by (name, node) ->", gen_server.call(("counter", WORKERS), ("add", 3)))

        # kill -9 on the other node: a real SIGKILL of a real OS process.
        os.kill(remote.id, signal.SIGKILL)
        _wait(lambda: _remote_child(sup) not in (remote, "restarting", None))
        fresh = _remote_child(sup)
        print(f"killed {remote}; the supervisor started {fresh} on {fresh.node}")
        print("the new counter starts from 0: add 1 ->", gen_server.call(fresh, ("add", 1)))

        erl = shutil.which("erl")
        if erl:
            script = (
                f"R = gen_server:call({{counter, '{WORKERS}'}}, {{add, 5}}), "
                f"P = net_adm:ping('{MAIN}'), "
                'io:format("erl: add 5 -> ~p, ping -> ~p~n", [R, P]), halt().'
            )
            out = subprocess.run(
                [erl, "-name", "erl@127.0.0.1", "-setcookie", cookie, "-noshell", "-eval", script],
                capture_output=True,
                text=True,
                timeout=60,
            )
            print(out.stdout.strip() or out.stderr.strip())
        else:
            print("(erl not installed: the Erlang part is skipped)")

        gen_server.stop(sup, "shutdown")
    finally:
        if other.stdin:
            other.stdin.close()
        other.wait(timeout=30)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--node":
        run_node(sys.argv[2], sys.argv[3])
    else:
        main()
