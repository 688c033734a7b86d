"""Ping-pong, from the Erlang primer ("Getting Started with Erlang", 3.3).

Two processes bounce a message N times, then the pinger tells the ponger to
finish. Each is its own OS process: `ps` would show them as `otp: ping ...`
and `otp: pong ...`.

    python examples/ping_pong.py
"""

from __future__ import annotations

import _path  # noqa: F401

import otp


def ping(n: int, pong_pid: otp.Pid, report_to: otp.Pid) -> None:
    for _ in range(n):
        otp.send(pong_pid, ("ping", otp.self_pid()))
        assert otp.receive(timeout=5) == "pong"
        print("Ping received pong", flush=True)
    otp.send(pong_pid, "finished")
    otp.send(report_to, ("done", n))


def pong() -> None:
    while True:
        match otp.receive():
            case "finished":
                print("Pong finished", flush=True)
                return  # the process ends "normal"
            case ("ping", ping_pid):
                print("Pong received ping", flush=True)
                otp.send(ping_pid, "pong")


def main() -> None:
    pong_pid, ref = otp.spawn_monitor(pong)
    otp.spawn(ping, 3, pong_pid, otp.self_pid())
    print(otp.receive(lambda m: isinstance(m, tuple) and m[0] == "done", timeout=10))
    down = otp.receive(lambda m: isinstance(m, otp.DOWN) and m.ref == ref, timeout=10)
    print(f"pong ended: {down.reason}")


if __name__ == "__main__":
    main()
