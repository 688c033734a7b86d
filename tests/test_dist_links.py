"""Links and exit signals across nodes, with the same calls as locally:
`otp.link`, `otp.unlink`, `otp.exit`; a remote end reaches a linked process
as an exit signal (it dies of it, or gets `EXIT` when trapping), SIGKILL of a
local process is `"killed"` on the other node, and a lost connection breaks
every link over it with `"noconnection"`. Python to Python (the peer is its
own program, tests/dist_peer.py) and with a real erl node."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import wait_until
from dist_helpers import Peer, agent_of, down_reason, erl_node, exit_reason, next_tagged

import otp
from otp import Atom
from otp.dist._testing import Epmd

pytestmark = pytest.mark.erlang  # epmd comes with Erlang


@pytest.fixture
def erl(epmd: Epmd, cookie: str, local: str) -> Iterator[tuple[str, Any]]:
    name = f"e{os.getpid()}@127.0.0.1"
    with erl_node(name, cookie, epmd) as proc:
        yield name, proc


def _relay(node: str, trap: bool = True) -> otp.Pid:
    """A `dist_helpers.relay` process on `node`."""
    otp.spawn("dist_helpers:relay", otp.self_pid(), trap, node=node)
    m = otp.receive(lambda m: type(m) is tuple and m[:1] == ("relay",), timeout=10)
    return m[1]  # type: ignore[no-any-return]


def _linked_to(remote: otp.Pid, main: otp.Pid) -> None:
    # A local process that links to `remote`, says so, and waits.
    otp.link(remote)
    otp.send(main, ("ready", otp.self_pid()))
    otp.receive()


def test_a_linked_remote_end_is_an_exit_message_when_trapping_and_kills_otherwise(
    local: str, peer: Peer
) -> None:
    otp.trap_exit(True)
    remote = _relay(peer.name, trap=False)
    otp.link(remote)
    assert remote in otp.process_info(otp.self_pid())["links"]
    # A non-trapping local process linked to the same remote one dies of it,
    # with the same reason.
    bystander = otp.spawn(_linked_to, remote, otp.self_pid())
    next_tagged("ready")
    mon = otp.monitor(bystander)
    otp.send(remote, ("stop", ("shutdown", "done")))
    assert exit_reason(remote) == ("shutdown", "done")
    assert down_reason(mon) == ("shutdown", "done")
    assert remote not in otp.process_info(otp.self_pid())["links"]


def test_a_sigkilled_local_process_is_killed_for_its_remote_link(local: str, peer: Peer) -> None:
    remote = _relay(peer.name)
    victim = otp.spawn(_linked_to, remote, otp.self_pid())
    next_tagged("ready")
    os.kill(victim.id, signal.SIGKILL)
    # The relay traps exits and forwards its EXIT to us.
    assert next_tagged("got_exit") == ("got_exit", victim, "killed")

    # And a graceful end carries its reason.
    def ends(remote: otp.Pid, main: otp.Pid) -> None:
        otp.link(remote)
        otp.send(main, ("ready", otp.self_pid()))
        otp.receive()
        raise otp.Exit(("bye", 1))

    ender = otp.spawn(ends, remote, otp.self_pid())
    next_tagged("ready")
    otp.send(ender, "go")
    assert next_tagged("got_exit") == ("got_exit", ender, ("bye", 1))
    otp.send(remote, ("stop", "normal"))


def test_exit_to_a_remote_process_is_trapped_and_kill_cannot_be(local: str, peer: Peer) -> None:
    remote = _relay(peer.name)
    mon = otp.monitor(remote)
    otp.exit(remote, "please")
    assert next_tagged("got_exit") == ("got_exit", otp.self_pid(), "please")
    # "normal" to a trapping process is a message too.
    otp.exit(remote, "normal")
    assert next_tagged("got_exit") == ("got_exit", otp.self_pid(), "normal")
    otp.exit(remote, "kill")
    assert down_reason(mon) == "killed"
    # A remote process's exit(pid, reason) reaches a local one the same way.
    otp.trap_exit(True)
    other = _relay(peer.name)
    otp.send(other, ("exit", otp.self_pid(), ("stop", 7)))
    assert exit_reason(other) == ("stop", 7)
    otp.send(other, ("stop", "normal"))


def test_unlink_on_either_side_means_the_end_no_longer_arrives(local: str, peer: Peer) -> None:
    otp.trap_exit(True)
    remote = _relay(peer.name, trap=False)
    otp.link(remote)
    otp.unlink(remote)
    mon = otp.monitor(remote)
    otp.send(remote, ("stop", "boom"))
    assert down_reason(mon) == "boom"
    # An EXIT would have come before the DOWN (one path, in order).
    assert not any(type(m) is otp.EXIT for m in _drain())
    # The other side unlinks: the same.
    remote = _relay(peer.name, trap=False)
    otp.link(remote)
    otp.send(remote, ("unlink", otp.self_pid()))
    next_tagged("unlinked")
    mon = otp.monitor(remote)
    otp.send(remote, ("stop", "boom"))
    assert down_reason(mon) == "boom"
    assert not any(type(m) is otp.EXIT for m in _drain())


def _drain() -> list[Any]:
    out = []
    while True:
        try:
            out.append(otp.receive(timeout=0))
        except otp.ReceiveTimeout:
            return out


def test_linking_to_a_remote_process_that_is_gone_gives_noproc(local: str, peer: Peer) -> None:
    otp.trap_exit(True)
    remote = _relay(peer.name, trap=False)
    mon = otp.monitor(remote)
    otp.send(remote, ("stop", "normal"))
    assert down_reason(mon) == "normal"
    otp.link(remote)
    assert exit_reason(remote) == "noproc"


def test_a_lost_connection_breaks_every_link_over_it_with_noconnection(
    local: str, peer: Peer
) -> None:
    otp.trap_exit(True)
    remote = _relay(peer.name, trap=False)
    otp.link(remote)
    # A non-trapping local process linked over the same connection dies of it.
    bystander = otp.spawn(_linked_to, remote, otp.self_pid())
    next_tagged("ready")
    mon = otp.monitor(bystander)
    # Kill the peer's dist process: its node stays up, the connection goes.
    otp.spawn("dist_helpers:whereis_to", otp.self_pid(), "net_kernel", node=peer.name)
    net_kernel = next_tagged("whereis")[2]
    assert net_kernel.node == peer.name
    os.kill(net_kernel.id, signal.SIGKILL)
    assert exit_reason(remote) == "noconnection"
    assert down_reason(mon) == "noconnection"
    # A link to a node that cannot be reached breaks at once, the same way.
    otp.link(remote)
    assert exit_reason(remote) == "noconnection"


def test_links_both_ways_with_erl(erl: tuple[str, Any]) -> None:
    node, _ = erl
    otp.trap_exit(True)
    agent = agent_of(node)
    # erl links to a Python process; SIGKILL of it is "killed" there.
    victim = otp.spawn(otp.receive)
    otp.send(agent, (Atom("link"), victim))
    assert next_tagged("linked") == ("linked", victim)
    os.kill(victim.id, signal.SIGKILL)
    assert next_tagged("got", 15) == ("got", (Atom("EXIT"), victim, Atom("killed")))
    # A graceful end carries its reason (atoms for str reasons).
    quitter = otp.spawn(lambda: otp.receive() and None)
    otp.send(agent, (Atom("link"), quitter))
    next_tagged("linked")
    otp.exit(quitter, "shutdown")
    assert next_tagged("got", 15) == ("got", (Atom("EXIT"), quitter, Atom("shutdown")))
    # Python links to an erl process: erl's end reaches us, killed included.
    otp.send(agent, (Atom("start_victim"),))
    erl_victim = next_tagged("victim")[1]
    otp.link(erl_victim)
    otp.exit(erl_victim, "kill")
    reason = exit_reason(erl_victim)
    # erl's atom `killed`, read as a local reason reads (and as reports show it).
    assert reason == "killed" and type(reason) is str
    # exit/2 from erl to a trapping Python process is a message.
    otp.send(agent, (Atom("exit"), otp.self_pid(), Atom("go_away")))
    assert exit_reason(agent) == "go_away"
    # erl unlinks (UNLINK_ID, acked): its end no longer reaches us.
    otp.link(agent)
    otp.send(agent, (Atom("unlink"), otp.self_pid()))
    next_tagged("unlinked")

    # We unlink from erl: our end no longer reaches it.
    def linked_then_unlinked(agent: otp.Pid, main: otp.Pid) -> None:
        otp.link(agent)
        otp.unlink(agent)
        otp.send(main, ("ready", otp.self_pid()))
        raise otp.Exit("gone")

    p = otp.spawn(linked_then_unlinked, agent, otp.self_pid())
    next_tagged("ready")
    mon = otp.monitor(p)
    assert down_reason(mon) == "gone"
    # The agent's end: we hold no link now (erl unlinked), so only the
    # control message below reaches us, no EXIT.
    otp.send(agent, (Atom("ping"),))
    assert next_tagged("got") == ("got", (Atom("ping"),))
    otp.link(agent)
    otp.send(agent, (Atom("die"), Atom("bye")))
    assert exit_reason(agent) == "bye"
    assert not any(type(m) is otp.EXIT or m[:1] == ("got",) for m in _drain())


def test_killing_the_erl_node_breaks_links_with_noconnection(erl: tuple[str, Any]) -> None:
    node, proc = erl
    otp.trap_exit(True)
    agent = agent_of(node)
    otp.link(agent)
    bystander = otp.spawn(_linked_to, agent, otp.self_pid())
    next_tagged("ready")
    mon = otp.monitor(bystander)
    proc.kill()
    assert exit_reason(agent) == "noconnection"
    assert down_reason(mon) == "noconnection"


def test_the_end_of_the_dist_process_breaks_every_remote_link_and_monitor(
    local: str, peer: Peer
) -> None:
    # Erlang's rule for a lost connection, applied when the process that held
    # every connection of this node is itself killed.
    otp.trap_exit(True)
    remote = _relay(peer.name, trap=False)
    otp.link(remote)
    mon = otp.monitor(remote)
    otp.monitor_node(peer.name)
    otp.monitor_node(peer.name)  # two monitors: two nodedowns, as in Erlang
    dist = otp.whereis("net_kernel")
    assert dist is not None
    os.kill(dist.id, signal.SIGKILL)
    assert exit_reason(remote) == "noconnection"
    assert down_reason(mon) == "noconnection"
    assert remote not in otp.process_info(otp.self_pid())["links"]
    for _ in range(2):
        assert next_tagged("nodedown") == ("nodedown", peer.name)
    with pytest.raises(otp.ReceiveTimeout):
        next_tagged("nodedown", timeout=0.5)


def test_a_nodedown_already_delivered_is_not_repeated_when_the_dist_process_ends(
    local: str, peer: Peer
) -> None:
    otp.monitor_node(peer.name)
    # The peer's dist process is killed: its connection is lost, nodedown.
    otp.spawn("dist_helpers:whereis_to", otp.self_pid(), "net_kernel", node=peer.name)
    peer_dist = next_tagged("whereis")[2]
    os.kill(peer_dist.id, signal.SIGKILL)
    assert next_tagged("nodedown") == ("nodedown", peer.name)
    # Then our own: that monitor fired already, so nothing more comes.
    ref = otp.monitor(otp.whereis("net_kernel"))
    ours = otp.whereis("net_kernel")
    assert ours is not None
    os.kill(ours.id, signal.SIGKILL)
    assert down_reason(ref) == "killed"
    with pytest.raises(otp.ReceiveTimeout):
        next_tagged("nodedown", timeout=0.5)


def test_a_child_does_not_inherit_its_parents_remote_monitors(local: str, peer: Peer) -> None:
    # The child is forked from a process holding a remote monitor; when the
    # dist process ends, only the holder is told.
    me = otp.self_pid()
    holder = otp.spawn(_monitors_then_spawns, peer.name, me)
    child = otp.receive(lambda m: type(m) is tuple and m[0] == "child up", timeout=15)[1]
    dist = otp.whereis("net_kernel")
    assert dist is not None
    os.kill(dist.id, signal.SIGKILL)
    assert next_tagged("holder got", 15)[1].reason == "noconnection"
    assert next_tagged("child got", 15)[1] == "nothing"
    for p in (holder, child):
        wait_until(lambda p=p: not otp.is_process_alive(p), timeout=10)


def _monitors_then_spawns(peer_node: str, main: otp.Pid) -> None:
    otp.monitor(("counter", peer_node))
    otp.spawn(_reports_what_it_gets_or_nothing, peer_node, main)
    m = otp.receive(lambda m: type(m) is otp.DOWN, timeout=15)
    otp.send(main, ("holder got", m))


def _reports_what_it_gets_or_nothing(peer_node: str, main: otp.Pid) -> None:
    # A remote send of its own first: the child is then connected to the
    # dist process, and sees its end as the holder does.
    otp.send(("echo", peer_node), (otp.self_pid(), "hi"))
    otp.receive(lambda m: type(m) is tuple and m[0] == "echoed", timeout=10)
    otp.send(main, ("child up", otp.self_pid()))
    try:
        m: Any = otp.receive(lambda m: type(m) is otp.DOWN, timeout=3)
    except otp.ReceiveTimeout:
        m = "nothing"
    otp.send(main, ("child got", m))
