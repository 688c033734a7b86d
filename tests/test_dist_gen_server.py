"""A Python GenServer answers gen_server:call from a real erl node: the dist
process (an otp process owning the node's connections) delivers the call, the
server replies to the remote caller directly, and a crash or a missing name
reaches erl's monitor as MONITOR_P_EXIT."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

import otp
from behaviours import GenServer, NoReply, Reply
from otp.dist._testing import Epmd, erl_args, new_cookie, run_erl

pytestmark = pytest.mark.erlang


class Counter(GenServer):
    def init(self) -> int:
        return 0

    def handle_call(self, request, from_, state):  # type: ignore[no-untyped-def]
        match request:
            case ("add", n):
                return Reply(state + n, state + n)
            case "crash":
                raise RuntimeError("asked to crash")

    def handle_cast(self, msg, state):  # type: ignore[no-untyped-def]
        match msg:
            case ("set", n):
                return NoReply(n)


@pytest.fixture
def epmd() -> Iterator[Epmd]:
    with Epmd().running() as e:
        yield e


def _stop(pid: otp.Pid) -> None:
    ref = otp.monitor(pid)
    otp.exit(pid, "shutdown")
    otp.receive(lambda m: isinstance(m, otp.DOWN) and m.ref == ref, 20)


def test_gen_server_call_from_erl_is_answered_by_a_python_gen_server(epmd: Epmd) -> None:
    cookie = new_cookie()
    py = f"py{os.getpid()}@127.0.0.1"
    otp.node.start(name=py, cookie=cookie, epmd=epmd.port)
    server = Counter.start(name="counter")
    try:
        script = f"""
            P = '{py}',
            A = gen_server:call({{counter, P}}, {{add, 5}}),
            B = gen_server:call({{counter, P}}, {{add, 5}}),
            ok = gen_server:cast({{counter, P}}, {{set, 100}}),
            C = gen_server:call({{counter, P}}, {{add, 1}}),
            D = (catch gen_server:call({{nobody, P}}, hello, 5000)),
            N = 300,
            {{T, _}} = timer:tc(fun() -> [gen_server:call({{counter, P}}, {{add, 0}})
                                          || _ <- lists:seq(1, N)] end),
            E = (catch gen_server:call({{counter, P}}, crash, 20000)),
            io:format("~p~n~p~n~p~n~p~n~p~n~p~n", [A, B, C, D, T / N, E]),
            halt()."""
        out = run_erl(script, env=epmd.env, args=erl_args(f"t{os.getpid()}@127.0.0.1", cookie))
        lines = out.strip().splitlines()
        assert lines[:3] == ["5", "10", "101"], out
        assert lines[3].startswith("{'EXIT',{noproc,"), out
        # the server's crash ends the erl caller's call at once, not by its timeout
        assert lines[5].startswith("{'EXIT',{") and "timeout" not in lines[5], out
        print(f"erl -> Python gen_server:call round trip: {float(lines[4]):.0f} us")
    finally:
        if otp.is_process_alive(server):
            _stop(server)
        otp.node.stop()  # before epmd is killed
