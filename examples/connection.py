"""A client connection that postpones requests until it is connected.

`Connection` is a GenStatem in "handle_event_function" mode: one
`handle_event` for every state, and states that are any value, here
"disconnected", "connecting" and `("connected", session)`.

Callers may send requests at any time. While the connection is not up, a
request is *postponed*: the engine keeps it aside and offers it again after
the next state change, oldest first, so callers simply wait and nobody has
to keep a queue by hand. The connection retries a refused connect after a
back-off (a *generic timeout*, which survives state changes), gives up on a
silent server after a *state timeout*, and reconnects when the server drops
it. Every state entry is announced to an observer (a *state enter call*).

The "server" is a plain process that refuses the first connect, answers
requests in upper case, and drops the connection when told to.

    python examples/connection.py
"""

from __future__ import annotations

import itertools
from typing import Any

import _path  # noqa: F401

import otp
from behaviours import GenStatem, gen_statem
from behaviours.gen_statem import (
    Call,
    GenericTimeout,
    KeepState,
    KeepStateAndData,
    NextEvent,
    NextState,
    Postpone,
    ReplyTo,
    StateTimeout,
)

BACKOFF = 0.1  # seconds before a new connect attempt
CONNECT_TIMEOUT = 2.0  # seconds a connect may take


class Connection(GenStatem):
    callback_mode = "handle_event_function"
    state_enter = True

    def init(self, server: otp.Pid, observer: otp.Pid) -> Any:
        self.observer = observer
        data = {"server": server, "in_flight": {}, "tags": itertools.count(1)}
        # Connect as soon as we run: an inserted event, handled before any
        # request that may already be waiting in the mailbox.
        return "disconnected", data, [NextEvent("internal", "connect")]

    def handle_event(self, event_type: Any, content: Any, state: Any, data: Any) -> Any:
        match event_type, content, state:
            # -- every state
            case "enter", old, _:
                otp.send(self.observer, ("entered", old, state))
                return KeepStateAndData()
            case Call(from_), "state", _:
                return KeepStateAndData([ReplyTo(from_, state)])

            # -- disconnected: connect, now or after the back-off
            case "internal", "connect", "disconnected":
                otp.send(data["server"], ("connect", otp.self_pid()))
                return NextState("connecting", data, [StateTimeout(CONNECT_TIMEOUT, "no answer")])
            case ("timeout", "reconnect"), _, "disconnected":
                return KeepStateAndData([NextEvent("internal", "connect")])

            # -- connecting
            case "info", ("welcome", session), "connecting":
                return NextState(("connected", session), data)
            case "info", ("refused", _why), "connecting":
                return NextState("disconnected", data, [GenericTimeout("reconnect", BACKOFF)])
            case "state_timeout", "no answer", "connecting":
                return NextState("disconnected", data, [GenericTimeout("reconnect", BACKOFF)])

            # -- requests: served when connected, postponed otherwise
            case Call(from_), ("request", payload), ("connected", session):
                tag = next(data["tags"])
                data["in_flight"][tag] = from_
                otp.send(data["server"], ("request", otp.self_pid(), session, tag, payload))
                return KeepState(data)
            case Call(), ("request", _), _:
                return KeepStateAndData([Postpone()])

            # -- connected
            case "info", ("response", tag, result), ("connected", _):
                from_ = data["in_flight"].pop(tag)
                return KeepState(data, [ReplyTo(from_, result)])
            case "info", "closed", ("connected", _):
                # In-flight requests are lost with the connection: say so.
                replies = [ReplyTo(f, ("error", "closed")) for f in data["in_flight"].values()]
                data["in_flight"].clear()
                return NextState("disconnected", data, [*replies, NextEvent("internal", "connect")])

        return KeepStateAndData()  # anything else: ignored


def server(refuse: int) -> None:
    """A toy server: refuses the first `refuse` connects, then serves."""
    sessions = itertools.count(1)
    client = None
    while True:
        match otp.receive():
            case ("connect", pid):
                if refuse > 0:
                    refuse -= 1
                    otp.send(pid, ("refused", "busy"))
                else:
                    client = pid
                    otp.send(pid, ("welcome", next(sessions)))
            case ("request", pid, _session, tag, payload):
                otp.send(pid, ("response", tag, payload.upper()))
            case "drop":
                otp.send(client, "closed")
            case "stop":
                return


def client(conn: otp.Pid, payload: str, report_to: otp.Pid) -> None:
    """A caller in a process of its own: its request waits while disconnected."""
    otp.send(report_to, ("answer", payload, gen_statem.call(conn, ("request", payload))))


def main() -> None:
    me = otp.self_pid()
    history: list[tuple[Any, Any]] = []

    def await_entered(old_state: Any, state: Any) -> None:
        """Collect the connection's state announcements until `old_state -> state`."""
        while True:
            _, old, new = otp.receive(lambda m: type(m) is tuple and m[0] == "entered", timeout=10)
            history.append((old, new))
            if (old, new) == (old_state, state):
                return

    srv = otp.spawn(server, 1)
    conn = Connection.start_link(srv, me)

    # Three callers at once, while the connection is still being set up.
    for payload in ("alpha", "beta", "gamma"):
        otp.spawn(client, conn, payload, me)
    answers = sorted(
        otp.receive(lambda m: type(m) is tuple and m[0] == "answer", timeout=10)[1:]
        for _ in range(3)
    )
    for payload, answer in answers:
        print(f"request {payload!r} -> {answer!r}")

    print("The server drops the connection")
    otp.send(srv, "drop")
    await_entered(("connected", 1), "disconnected")
    # Sent while the connection is down: postponed until it is up again.
    print(f"request 'delta' -> {gen_statem.call(conn, ('request', 'delta'))!r}")
    print(f"state now: {gen_statem.call(conn, 'state')!r}")

    await_entered("connecting", ("connected", 2))
    print("State changes, as the connection announced them:")
    for old, new in history:
        print(f"  {old!r} -> {new!r}")

    gen_statem.stop(conn)
    ref = otp.monitor(srv)
    otp.send(srv, "stop")
    otp.receive(lambda m: type(m) is otp.DOWN and m.ref == ref, timeout=10)
    print("Stopped")


if __name__ == "__main__":
    main()
