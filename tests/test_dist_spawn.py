"""Spawning on another node: `otp.spawn("module:function", *args, node=...)`
(and `spawn_link`, `spawn_monitor`) is a SPAWN_REQUEST, so a Python node and
erl spawn on each other with the calls each already has; a function that does
not exist ends its process with Erlang's `undef`, and a node that cannot be
reached gives a Pid that ends at once with `"noconnection"`, as in Erlang."""

from __future__ import annotations

import os
from typing import Any

import dist_helpers
import pytest
from dist_helpers import Peer, agent_of, down_reason, erl_node, exit_reason, next_tagged

import otp
from otp import Atom
from otp.dist._etf import EncodeError
from otp.dist._testing import Epmd

pytestmark = pytest.mark.erlang  # epmd comes with Erlang


def test_spawn_runs_module_function_in_a_new_process_of_the_other_node(
    local: str, peer: Peer
) -> None:
    pid = otp.spawn("dist_helpers:report", otp.self_pid(), 1, "two", (3,), node=peer.name)
    assert pid.node == peer.name
    assert next_tagged("ran") == ("ran", pid, pid.id, [1, "two", (3,)])
    assert pid.id != os.getpid()
    # A function of an importable module stands for its "module:function".
    pid = otp.spawn(dist_helpers.report, otp.self_pid(), "by reference", node=peer.name)
    assert next_tagged("ran")[1:] == (pid, pid.id, ["by reference"])
    # node= this node, or a name without node=: a local process.
    pid = otp.spawn("dist_helpers:report", otp.self_pid(), node=local)
    assert pid.node == local and next_tagged("ran")[1] == pid
    pid = otp.spawn("dist_helpers:report", otp.self_pid(), "here")
    assert next_tagged("ran")[1:] == (pid, pid.id, ["here"])


def test_spawn_link_and_spawn_monitor_on_another_node_carry_the_exit_reason(
    local: str, peer: Peer
) -> None:
    otp.trap_exit(True)
    pid = otp.spawn_link("dist_helpers:end_with", ("shutdown", "done"), node=peer.name)
    assert exit_reason(pid) == ("shutdown", "done")
    _, ref = otp.spawn_monitor("dist_helpers:end_with", "boom", node=peer.name)
    assert down_reason(ref) == "boom"

    # Linked from its first instruction: our end reaches it at once.
    def spawns_and_dies(node: str, main: otp.Pid) -> None:
        child = otp.spawn_link("dist_helpers:wait_forever", node=node)
        otp.send(main, ("child", child))
        otp.receive()
        raise otp.Exit("parent_gone")

    parent = otp.spawn(spawns_and_dies, peer.name, otp.self_pid())
    child = next_tagged("child")[1]
    ref = otp.monitor(child)
    otp.send(parent, "go")
    assert down_reason(ref) == "parent_gone"
    # A monitor set by spawn_monitor is an ordinary remote monitor.
    pid, ref = otp.spawn_monitor("dist_helpers:wait_forever", node=peer.name)
    assert otp.demonitor(ref) is True
    otp.exit(pid, "kill")
    ref2 = otp.monitor(pid)
    assert down_reason(ref2) in ("killed", "noproc")
    assert not any(type(m) is otp.DOWN and m.ref == ref for m in _drain())


def _drain() -> list[Any]:
    out = []
    while True:
        try:
            out.append(otp.receive(timeout=0))
        except otp.ReceiveTimeout:
            return out


def test_a_function_that_does_not_exist_ends_its_process_with_undef(local: str, peer: Peer) -> None:
    _, ref = otp.spawn_monitor("no_such_module:f", 1, node=peer.name)
    assert down_reason(ref) == ("undef", [("no_such_module", "f", [1], [])])
    _, ref = otp.spawn_monitor("dist_helpers:no_such_function", node=peer.name)
    assert down_reason(ref) == ("undef", [("dist_helpers", "no_such_function", [], [])])
    # The same locally.
    _, ref = otp.spawn_monitor("no_such_module:f")
    assert down_reason(ref) == ("undef", [("no_such_module", "f", [], [])])


def test_spawn_on_an_unreachable_node_gives_a_pid_that_ends_with_noconnection(local: str) -> None:
    otp.trap_exit(True)
    pid = otp.spawn_link("dist_helpers:report", 1, node="nobody@127.0.0.1")
    assert exit_reason(pid) == "noconnection"
    pid, ref = otp.spawn_monitor("dist_helpers:report", node="nobody@127.0.0.1")
    assert down_reason(ref) == "noconnection"


def test_what_cannot_be_spawned_elsewhere_fails_in_the_caller(local: str) -> None:
    with pytest.raises(otp.BadArg):
        otp.spawn("no_colon", node="nobody@127.0.0.1")
    with pytest.raises(otp.BadArg):
        otp.spawn(lambda: None, node="nobody@127.0.0.1")  # no name the other node knows
    with pytest.raises(otp.BadArg):
        otp.spawn("dist_helpers:report", to=1, node="nobody@127.0.0.1")
    with pytest.raises(otp.BadArg):
        otp.spawn("dist_helpers:report", node="no_at_sign")
    with pytest.raises(EncodeError):
        otp.spawn("dist_helpers:report", {1, 2}, node="nobody@127.0.0.1")


def test_erl_spawns_into_python_and_python_spawns_on_erl(
    epmd: Epmd, cookie: str, local: str
) -> None:
    node = f"e{os.getpid()}@127.0.0.1"
    with erl_node(node, cookie, epmd):
        otp.trap_exit(True)
        agent = agent_of(node)
        # erl's spawn_link('py@...', M, F, A): a Python process, linked to the agent.
        otp.send(
            agent,
            (Atom("spawn_link"), Atom(local), Atom("dist_helpers"), Atom("report"),
             [otp.self_pid(), Atom("from_erl")]),
        )  # fmt: skip
        spawned = next_tagged("spawned")[1]
        assert spawned.node == local
        assert next_tagged("ran") == ("ran", spawned, spawned.id, ["from_erl"])
        assert next_tagged("got") == ("got", (Atom("EXIT"), spawned, Atom("normal")))
        # Python on erl: the reason comes back, undef included.
        pid = otp.spawn_link("erlang:exit", Atom("boom"), node=node)
        assert pid.node == node and exit_reason(pid) == "boom"
        _, ref = otp.spawn_monitor("no_such_module:f", node=node)
        assert down_reason(ref) == ("undef", [("no_such_module", "f", [], [])])
        pid, ref = otp.spawn_monitor("timer:sleep", Atom("infinity"), node=node)
        otp.exit(pid, "kill")
        assert down_reason(ref) == "killed"
