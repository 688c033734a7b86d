"""A second Python node for the distribution tests, run as its own program
(its own OS process tree): `python3 tests/dist_peer.py NAME COOKIE EPMD_PORT`.

It starts a distributed node with a GenServer `counter` and a process `echo`,
prints `ready`, and stops when its stdin closes.
"""

from __future__ import annotations

import sys
from typing import Any

import dist_structs  # noqa: F401  (registers its struct before the node starts)

import otp
from behaviours import GenServer, GenStatem, NoReply, Reply, gen_server
from behaviours.gen_statem import Call, NextState, ReplyTo


class Counter(GenServer):
    def init(self) -> int:
        return 0

    def handle_call(self, request: Any, from_: Any, state: int) -> Any:
        match request:
            case ("add", n):
                return Reply(state + n, state + n)
            case ("relay", dest, req):
                # A call back to the caller's node, from inside a call.
                return Reply(gen_server.call(tuple(dest), req, 10.0), state)
            case ("whoami",):
                return Reply((otp.self_pid(), from_[0]), state)
            case ("crash",):
                raise RuntimeError("asked to crash")
            case ("later",):
                gen_server.reply(from_, "replied later")
                return NoReply(state)

    def handle_cast(self, msg: Any, state: int) -> Any:
        match msg:
            case ("set", n):
                return NoReply(n)


class Switch(GenStatem):
    """A GenStatem for calls across nodes: "flip" toggles off/on and answers
    the new state (from Python or from erl's gen_statem:call)."""

    callback_mode = "state_functions"

    def init(self) -> Any:
        return "off", 0

    def off(self, event_type: Any, content: Any, data: int) -> Any:
        match event_type, content:
            case Call(from_), "flip":
                return NextState("on", data + 1, [ReplyTo(from_, ("on", data + 1))])

    def on(self, event_type: Any, content: Any, data: int) -> Any:
        match event_type, content:
            case Call(from_), "flip":
                return NextState("off", data + 1, [ReplyTo(from_, ("off", data + 1))])


def echo() -> None:
    while True:
        match otp.receive():
            case (sender, m):
                otp.send(sender, ("echoed", m, otp.self_pid()))


def main() -> None:
    name, cookie, epmd = sys.argv[1], sys.argv[2], int(sys.argv[3])
    otp.node.start(name=name, cookie=cookie, epmd=epmd)
    Counter.start(name="counter")
    Switch.start(name="switch")
    otp.register("echo", otp.spawn(echo))
    print("ready", flush=True)
    sys.stdin.read()  # until the test closes it
    otp.node.stop()


if __name__ == "__main__":
    main()
