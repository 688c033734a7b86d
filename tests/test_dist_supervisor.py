"""A supervisor with a child on another node: `ChildSpec(..., node=...)`
starts the child there (a GenServer of a module both nodes import), the
supervisor links to it across nodes, restarts it when it dies (`kill -9`
there included) or its node is lost (`"noconnection"`), and stops it with
exit signals, since it is not the child's OS parent. A plain process on an
erl node is supervised with `otp.spawn_link(..., node=...)` as its start."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest
from dist_helpers import Peer, Worker, erl_node

import otp
from behaviours import ChildSpec, gen_server, supervisor
from otp import Atom
from otp.dist._testing import Epmd

pytestmark = pytest.mark.erlang  # epmd comes with Erlang


def _down(ref: otp.Ref, timeout: float = 20) -> Any:
    return otp.receive(lambda m: type(m) is otp.DOWN and m.ref == ref, timeout=timeout).reason


def _child(sup: otp.Pid, cid: Any) -> Any:
    return {c[0]: c[1] for c in supervisor.which_children(sup)}[cid]


def _restarted(sup: otp.Pid, cid: Any, old: otp.Pid) -> otp.Pid:
    from conftest import wait_until

    wait_until(lambda: _child(sup, cid) not in (old, "restarting", None), timeout=20)
    return _child(sup, cid)  # type: ignore[no-any-return]


def test_a_remote_child_is_restarted_when_it_dies_and_stopped_by_exit_signals(
    local: str, peer: Peer
) -> None:
    sup = supervisor.start_link(
        [
            ChildSpec("w", (Worker.start_link, (5,), {}), node=peer.name, shutdown=10.0),
            Worker.child_spec(0, id="here"),
        ],
        strategy="one_for_one",
        intensity=5,
        period=30,
    )
    assert sup is not None
    w = _child(sup, "w")
    assert w.node == peer.name
    where, ospid = gen_server.call(w, "where")
    assert where == w and ospid == w.id != os.getpid()
    assert gen_server.call(w, ("add", 1)) == 6
    assert supervisor.count_children(sup)["active"] == 2
    spec = supervisor.get_childspec(sup, "w")
    assert spec.node == peer.name and spec.start == (Worker.start_link, (5,), {})
    # kill -9 on the other node: "killed" reaches the supervisor, which
    # starts the child again there, from init.
    os.kill(w.id, signal.SIGKILL)
    w2 = _restarted(sup, "w", w)
    assert w2.node == peer.name
    assert gen_server.call(w2, ("add", 0)) == 5
    # An ordinary death (a crash there) too.
    otp.exit(w2, "crash")
    w3 = _restarted(sup, "w", w2)
    # terminate_child: "shutdown" as an exit signal; the child ends with it.
    mon = otp.monitor(w3)
    supervisor.terminate_child(sup, "w")
    assert _down(mon) == "shutdown"
    assert _child(sup, "w") is None
    w4 = supervisor.restart_child(sup, "w")
    assert w4 is not None and w4.node == peer.name
    # The supervisor's own stop takes the remote child down with it.
    mon = otp.monitor(w4)
    smon = otp.monitor(sup)
    otp.unlink(sup)
    otp.exit(sup, "shutdown")
    assert _down(smon) == "shutdown"
    assert _down(mon) == "shutdown"


def test_losing_a_remote_childs_node_is_noconnection_to_its_supervisor(
    local: str, peer: Peer
) -> None:
    otp.trap_exit(True)
    sup = supervisor.start_link(
        [ChildSpec("w", (Worker.start_link, (), {}), node=peer.name)],
        intensity=1,
        period=30,
    )
    assert sup is not None
    w = _child(sup, "w")
    # Kill the peer's dist process: its node keeps running, unreachable.
    otp.spawn("dist_helpers:whereis_to", otp.self_pid(), "net_kernel", node=peer.name)
    net_kernel = otp.receive(lambda m: type(m) is tuple and m[:1] == ("whereis",), timeout=10)[2]
    os.kill(net_kernel.id, signal.SIGKILL)
    # The supervisor gets EXIT(w, "noconnection"), tries to start it again
    # on the lost node, cannot, and gives up (intensity 1) with "shutdown".
    m = otp.receive(lambda m: type(m) is otp.EXIT and m.pid == sup, timeout=30)
    assert m.reason == "shutdown"
    _ = w


def test_a_plain_process_on_an_erl_node_is_supervised_through_spawn_link(
    epmd: Epmd, cookie: str, local: str
) -> None:
    node = f"e{os.getpid()}@127.0.0.1"
    with erl_node(node, cookie, epmd):
        start = (otp.spawn_link, ("timer:sleep", Atom("infinity")), {"node": node})
        sup = supervisor.start_link(
            [ChildSpec("sleeper", start, shutdown="brutal_kill")], intensity=5, period=30
        )
        assert sup is not None
        s = _child(sup, "sleeper")
        assert s.node == node
        otp.exit(s, "kill")  # erl kills it: "killed" comes back over the link
        s2 = _restarted(sup, "sleeper", s)
        assert s2.node == node
        mon = otp.monitor(s2)
        supervisor.terminate_child(sup, "sleeper")
        assert _down(mon) == "killed"
        smon = otp.monitor(sup)
        otp.unlink(sup)
        otp.exit(sup, "shutdown")
        assert _down(smon) == "shutdown"
