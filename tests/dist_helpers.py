"""What the link, spawn and supervision tests across nodes share.

Two kinds of things live here:

- Code that *both* nodes run: functions started by name on another node
  (`otp.spawn("dist_helpers:relay", ..., node=peer)`) and the GenServer a
  supervisor starts on a peer. A Python peer (tests/dist_peer.py, run from
  this directory) imports this module by the same name as the test does,
  so nothing here may import pytest.
- Context managers that start and stop the other nodes: a Python peer (its
  own program, its own OS process tree) and a real erl node running an
  `agent`, an Erlang process the test drives by messages.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import otp
from behaviours import GenServer, Reply
from otp import Atom

HERE = os.path.dirname(os.path.abspath(__file__))
PEER = os.path.join(HERE, "dist_peer.py")


# ------------------------------------------------------ code both nodes run


def relay(to: Any, trap: bool = True) -> None:
    """Tell `to` who we are, then forward every message (EXITs included when
    trapping) to it, until told ("stop", reason) or ("unlink", pid)."""
    otp.trap_exit(trap)
    otp.send(to, ("relay", otp.self_pid(), os.getpid()))
    while True:
        m = otp.receive()
        match m:
            case ("stop", reason):
                raise otp.Exit(reason)
            case ("link", pid):
                otp.link(pid)
                otp.send(to, ("linked", pid))
            case ("unlink", pid):
                otp.unlink(pid)
                otp.send(to, ("unlinked", pid))
            case ("exit", pid, reason):
                otp.exit(pid, reason)
            case otp.EXIT(pid=pid, reason=reason):
                otp.send(to, ("got_exit", pid, reason))
            case _:
                otp.send(to, ("got", m))


def report(to: Any, *args: Any) -> None:
    """Send `to` where we run and what we were given, then end normally."""
    otp.send(to, ("ran", otp.self_pid(), os.getpid(), list(args)))


def end_with(reason: Any) -> None:
    raise otp.Exit(reason)


def wait_forever() -> None:
    otp.receive()


def whereis_to(to: Any, name: str) -> None:
    otp.send(to, ("whereis", name, otp.whereis(name)))


class Worker(GenServer):
    """A child a supervisor starts on another node."""

    def init(self, n: int = 0) -> int:
        return n

    def handle_call(self, request: Any, from_: Any, state: int) -> Any:
        match request:
            case "where":
                return Reply((otp.self_pid(), os.getpid()), state)
            case ("add", k):
                return Reply(state + k, state + k)


# ------------------------------------------------------------- other nodes


def readline(stream: Any, timeout: float) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        raise AssertionError(f"no line within {timeout} s")
    return str(stream.readline()).strip()


class Peer:
    """A Python peer node: tests/dist_peer.py in its own OS process tree."""

    def __init__(self, name: str, proc: subprocess.Popen[str]) -> None:
        self.name = name
        self.proc = proc


def start_program(argv: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """Start a peer program (a Python node, tests/dist_peer.py or a script of
    a test) and wait for its "ready" line; stop it with `stop_program`."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert readline(proc.stdout, 30) == "ready"
    except BaseException:
        stop_program(proc)
        raise
    return proc


@contextlib.contextmanager
def python_peer(name: str, cookie: str, epmd: Any) -> Iterator[Peer]:
    env = dict(epmd.env, PYTHONPATH=os.path.dirname(HERE))
    proc = start_program([sys.executable, PEER, name, cookie, str(epmd.port)], env)
    try:
        yield Peer(name, proc)
    finally:
        stop_program(proc)


def stop_program(proc: subprocess.Popen[str]) -> None:
    """Stop a peer program the way it expects: close its stdin (it stops its
    node when it reads EOF), wait, and kill it only if it did not end."""
    if proc.stdin is not None and not proc.stdin.closed:
        proc.stdin.close()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    if proc.stdout is not None:
        proc.stdout.close()


# The erl side of the interop tests: `agent` (trapping exits) does what the
# test asks and reports everything else it gets, EXITs included, to its owner.
AGENT = r"""
register(agent, spawn(fun() -> process_flag(trap_exit, true),
  (fun L(Owner) -> receive
    {owner, O} -> O ! {agent, self()}, L(O);
    {link, P} -> link(P), Owner ! {linked, P}, L(Owner);
    {unlink, P} -> unlink(P), Owner ! {unlinked, P}, L(Owner);
    {exit, P, R} -> exit(P, R), Owner ! {exited, P}, L(Owner);
    {spawn_link, N, M, F, A} -> Owner ! {spawned, spawn_link(N, M, F, A)}, L(Owner);
    {monitor_node, N} -> monitor_node(N, true), Owner ! {monitoring, N}, L(Owner);
    {start_victim} ->
        Owner ! {victim, spawn(fun() -> receive _ -> ok end end)}, L(Owner);
    {die, R} -> exit(R);
    Other -> Owner ! {got, Other}, L(Owner)
  end end)(undefined) end)),
io:format("ready~n").
"""


@contextlib.contextmanager
def erl_node(
    name: str, cookie: str, epmd: Any, script: str = AGENT
) -> Iterator[subprocess.Popen[str]]:
    """A real erl node running `script` (AGENT by default), which must print
    "ready"; killed at the end."""
    from otp.dist._testing import erl_args, require_erl

    proc = subprocess.Popen(
        [require_erl(), "-noshell", *erl_args(name, cookie), "-eval", script],
        stdout=subprocess.PIPE,
        text=True,
        env=epmd.env,
    )
    try:
        assert readline(proc.stdout, 30) == "ready"
        yield proc
    finally:
        proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def next_tagged(tag: str, timeout: float = 15) -> Any:
    """The next message `(tag, ...)`."""
    return otp.receive(lambda m: type(m) is tuple and m[:1] == (tag,), timeout=timeout)


def down_reason(ref: otp.Ref, timeout: float = 15) -> Any:
    """The reason of the DOWN of monitor `ref`."""
    return otp.receive(lambda m: type(m) is otp.DOWN and m.ref == ref, timeout=timeout).reason


def exit_reason(pid: otp.Pid, timeout: float = 15) -> Any:
    """The reason of the EXIT message from `pid` (the caller traps exits)."""
    return otp.receive(lambda m: type(m) is otp.EXIT and m.pid == pid, timeout=timeout).reason


def agent_of(node: str) -> otp.Pid:
    """Make the caller the owner of `node`'s agent; returns the agent's Pid."""
    otp.send(("agent", node), (Atom("owner"), otp.self_pid()))
    m = otp.receive(lambda m: type(m) is tuple and m[:1] == ("agent",), timeout=10)
    return m[1]  # type: ignore[no-any-return]
