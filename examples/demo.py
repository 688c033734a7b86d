"""The tour: a supervised service that keeps answering while its workers die.

    python examples/demo.py

1. Starts the key-value service of `kv_service.py`: a `rest_for_one`
   supervisor over storage, cache and a TCP front end on 127.0.0.1.
2. Shows the process tree as `ps` sees it: every process is an OS process,
   and the supervision tree is the OS process tree.
3. Starts a client process that keeps sending requests over TCP.
4. Kills workers with SIGKILL, as `kill -9` from a shell would, and shows
   what the supervisor restarted each time (rest_for_one: the killed child
   and the ones started after it) while the client keeps getting answers.
5. Shows the supervisor's reports from the log, and stops everything in
   order (the main program's exit stops the node).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

import _path  # noqa: F401
from kv_service import KVSupervisor, free_port, request
from loguru import logger

import otp
from behaviours import supervisor

REPORTS: list[str] = []


def client(port: int, parent: otp.Pid) -> None:
    """Keep asking; tell the parent how it goes every 10 answers."""
    ok = errors = n = 0
    while True:
        try:
            if otp.receive(timeout=0) == "stop":
                return
        except otp.ReceiveTimeout:
            pass
        n += 1
        try:
            answer = request(port, f"GET greeting{n % 3}", timeout=2.0)
            if isinstance(answer, str) and answer.startswith("error"):
                errors += 1
            else:
                ok += 1
                if ok % 10 == 0:
                    otp.send(parent, ("client", ok, errors))
        except (OSError, ValueError):
            errors += 1


def children(sup: Any) -> dict[Any, Any]:
    return {cid: pid for cid, pid, _type, _mods in supervisor.which_children(sup)}


def show_tree() -> None:
    out = subprocess.run(
        ["ps", "-e", "--forest", "-o", "pid,ppid,rss,args"], capture_output=True, text=True
    ).stdout.splitlines()
    keep = [out[0]] + [line for line in out[1:] if "otp: " in line or f"{os.getpid()} " in line[:8]]
    print("\n".join("    " + line.rstrip()[:110] for line in keep))


def client_counts() -> tuple[int, int]:
    """The client's next progress report."""
    _, ok, errors = otp.receive(lambda m: isinstance(m, tuple) and m[0] == "client", timeout=10)
    return ok, errors


def kill_and_watch(sup: Any, child_id: str, cli: otp.Pid) -> None:
    before = children(sup)
    victim = before[child_id]
    print(f"\n>>> kill -9 {victim.id}   ({child_id}, {victim})")
    os.kill(victim.id, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        now = children(sup)
        if isinstance(now.get(child_id), otp.Pid) and now[child_id] != victim:
            break
        time.sleep(0.005)
    after = children(sup)
    for cid in before:
        state = "restarted" if after[cid] != before[cid] else "untouched"
        print(f"    {cid:9} {before[cid]} -> {after[cid]}   {state}")
    # Let the client show that the service answers again after the restart.
    ok0, _ = client_counts()
    while True:
        ok, err = client_counts()
        if ok - ok0 >= 20:
            break
    print(f"    the client kept going: {ok} answers, {err} errors so far")


def main() -> int:
    started = time.monotonic()
    logger.remove()
    logger.configure(extra={"otp_name": "main", "otp_pid": "", "os_pid": os.getpid()})
    # Every process's records come here (the node's central log). Keep the
    # supervisor's reports for section 5; anything else at ERROR is shown.
    logger.add(
        lambda m: REPORTS.append(m.record["message"]),
        level="INFO",
        filter=lambda r: "SUPERVISOR REPORT" in r["message"],
    )
    logger.add(
        sys.stderr,
        level="ERROR",
        filter=lambda r: "SUPERVISOR REPORT" not in r["message"],
        format="    {time:HH:mm:ss.SSS} {level} {extra[otp_name]}: {message}",
    )

    with tempfile.TemporaryDirectory() as data_dir:
        port = free_port()
        print(f"1. Starting the key-value service on 127.0.0.1:{port}")
        sup = KVSupervisor.start_link(port, data_dir, name="kv_sup")
        for i in range(3):
            request(port, f"SET greeting{i} hello-{i}")
        print(f"    GET greeting1 -> {request(port, 'GET greeting1')!r}")

        print("\n2. The process tree, as `ps --forest` shows it:")
        show_tree()

        print("\n3. A client process keeps sending GET requests over TCP.")
        me = otp.self_pid()
        cli = otp.spawn_link(client, port, me)

        print(
            "\n4. Killing workers with SIGKILL (rest_for_one restarts the victim "
            "and every child started after it):"
        )
        for victim in ("frontend", "cache", "storage"):
            kill_and_watch(sup, victim, cli)
            print(f"    GET greeting2 -> {request(port, 'GET greeting2')!r}  (data survived)")

        ok, errors = client_counts()
        print(
            f"\n    in all, the client got {ok} answers and {errors} errors "
            "(calls that met a restart) while three workers died"
        )
        cli_ref = otp.monitor(cli)
        otp.send(cli, "stop")
        otp.receive(lambda m: isinstance(m, otp.DOWN) and m.ref == cli_ref, timeout=10)

        counts = supervisor.count_children(sup)
        print(f"    supervisor: {counts}")

        print("\n5. The supervisor's reports (from the node's central log):")
        otp.node.flush_logs()
        for r in REPORTS:
            fields = dict(
                line.strip().split(": ", 1) for line in r.splitlines()[1:] if ": " in line
            )
            offender = fields.get("offender", "").split(" start=")[0]
            print(f"    {fields.get('context')}: {fields.get('reason')}  {offender}")

        print("\n6. Stopping the tree in order (frontend, cache, storage).")
        otp.unlink(sup)
        from behaviours import gen_server

        gen_server.stop(sup, "shutdown")
        # The front end's client processes end with it (they are linked).
        deadline = time.monotonic() + 5
        while otp.processes() != [otp.self_pid()] and time.monotonic() < deadline:
            time.sleep(0.01)
        print(
            f"    done in {time.monotonic() - started:.1f} s; processes left: "
            f"{[p for p in otp.processes() if p != otp.self_pid()]}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
