"""A small key-value service shaped like a microservice, under a supervision tree.

```
kv_sup (Supervisor, rest_for_one)
├── storage   GenServer: the data, kept in a file so a restart loses nothing
├── cache     GenServer: reads through to storage, remembers what it read
└── frontend  a TCP server on 127.0.0.1: "GET k", "SET k v", "STATS"
    └── one process per client connection
```

Why `rest_for_one`: the cache depends on storage, and the front end on both.
If storage dies, the cache's contents may be stale, so the cache restarts too
(and the front end after it); if only the front end dies, storage and cache
keep running. Each box is an OS process: `kill -9` any of them and the
supervisor restarts exactly what OTP's rules say.

Run it as a service (SIGTERM or Ctrl-C stops it in order):

    otp run examples.kv_service:KVSupervisor      # from the repository root

or run this file, which starts the tree, talks to it and stops it:

    python examples/kv_service.py
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from typing import Any

try:
    import _path  # noqa: F401 - run as a script from a checkout
except ImportError:
    pass  # imported as examples.kv_service (otp run), or installed

import otp
from behaviours import ChildSpec, GenServer, NoReply, Reply, Supervisor, SupFlags, gen_server


class Storage(GenServer):
    """The data, as a dict, written through to a JSON file."""

    def init(self, path: str) -> Any:
        data = {}
        if os.path.exists(path):
            with open(path) as f:
                data = json.load(f)
        return {"path": path, "data": data}

    def handle_call(self, request: Any, from_: Any, state: Any) -> Any:
        match request:
            case ("get", key):
                return Reply(state["data"].get(key), state)
            case ("set", key, value):
                state["data"][key] = value
                tmp = state["path"] + ".tmp"
                with open(tmp, "w") as f:
                    json.dump(state["data"], f)
                os.replace(tmp, state["path"])  # atomic: a kill -9 never leaves half a file
                return Reply("ok", state)
        return Reply(("error", "bad request"), state)


class Cache(GenServer):
    """Reads through to storage; counts hits and misses."""

    def init(self) -> Any:
        return {"entries": {}, "hits": 0, "misses": 0}

    def handle_call(self, request: Any, from_: Any, state: Any) -> Any:
        match request:
            case ("get", key):
                if key in state["entries"]:
                    state["hits"] += 1
                    return Reply(state["entries"][key], state)
                state["misses"] += 1
                value = gen_server.call("kv_storage", ("get", key))
                state["entries"][key] = value
                return Reply(value, state)
            case ("set", key, value):
                result = gen_server.call("kv_storage", ("set", key, value))
                state["entries"][key] = value
                return Reply(result, state)
            case "stats":
                return Reply({"hits": state["hits"], "misses": state["misses"]}, state)
        return Reply(("error", "bad request"), state)

    def handle_cast(self, msg: Any, state: Any) -> Any:
        return NoReply(state)


def _serve_client(conn: socket.socket) -> None:
    """One process per client connection (the socket is inherited by fork)."""
    with conn, conn.makefile("rwb", buffering=0) as f:
        for raw in f:
            words = raw.decode().strip().split(maxsplit=2)
            try:
                match words:
                    case ["GET", key]:
                        answer = json.dumps(gen_server.call("kv_cache", ("get", key)))
                    case ["SET", key, value]:
                        answer = json.dumps(gen_server.call("kv_cache", ("set", key, value)))
                    case ["STATS"]:
                        answer = json.dumps(gen_server.call("kv_cache", "stats"))
                    case _:
                        answer = '"error: GET k | SET k v | STATS"'
            except otp.OTPError as e:
                # A call that met a restart: the client gets an error line,
                # the connection lives on, and a retry will succeed.
                answer = json.dumps(f"error: {type(e).__name__}")
            f.write(answer.encode() + b"\n")


def frontend(port: int) -> None:
    """Accept TCP clients on 127.0.0.1:port; one child process per client.

    The accept loop looks at its mailbox between accepts (receive with
    timeout 0), so a supervisor's "shutdown" ends it promptly.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as ls:
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", port))
        ls.listen(64)
        ls.settimeout(0.1)
        while True:
            try:
                otp.receive(timeout=0)  # exit signals are acted on here
            except otp.ReceiveTimeout:
                pass
            try:
                conn, _ = ls.accept()
            except TimeoutError:
                continue
            conn.settimeout(None)
            # Linked: when the front end stops (or is killed), its client
            # processes end with it; a client process ending normally does
            # not disturb the front end.
            otp.spawn_link(_serve_client, conn)
            conn.close()  # the client's process has its own copy


def start_frontend(port: int) -> otp.Pid:
    return otp.spawn_link(frontend, port)


class KVSupervisor(Supervisor):
    """The tree: storage, cache and front end, restarted rest_for_one."""

    def init(self, port: int = 7070, data_dir: str | None = None) -> Any:
        data_dir = data_dir or tempfile.gettempdir()
        path = os.path.join(data_dir, "kv_service.json")
        return SupFlags(strategy="rest_for_one", intensity=10, period=5), [
            Storage.child_spec(path, id="storage", name="kv_storage"),
            Cache.child_spec(id="cache", name="kv_cache"),
            ChildSpec(id="frontend", start=(start_frontend, (port,), {}), shutdown=2.0),
        ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # type: ignore[no-any-return]


def request(port: int, line: str, timeout: float = 5.0) -> Any:
    """One request on a new connection (retried while the front end restarts)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
                s.sendall(line.encode() + b"\n")
                reply = s.makefile("rb").readline()
                if reply:
                    return json.loads(reply)
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"no answer to {line!r} within {timeout} s")
        time.sleep(0.01)  # the front end is (re)starting: try again


def main() -> None:
    from behaviours import supervisor

    with tempfile.TemporaryDirectory() as d:
        port = free_port()
        sup = KVSupervisor.start_link(port, d, name="kv_sup")
        print("SET ->", request(port, "SET greeting hello"))
        print("GET ->", request(port, "GET greeting"))
        print("GET ->", request(port, "GET greeting"))
        print("STATS ->", request(port, "STATS"))
        print("children:", [(cid, str(pid)) for cid, pid, *_ in supervisor.which_children(sup)])
        otp.unlink(sup)
        gen_server.stop(sup, "shutdown")


if __name__ == "__main__":
    main()
