"""An alarm manager: one GenEvent manager, two handlers, one of them fragile.

Run it from the repository root:

    python examples/alarm_manager.py

Alarms are events `(severity, text)` sent to an event manager registered as
"alarms". Two handlers live in it:

- `AlarmLog` keeps a log of formatted lines. It trusts its input: an event
  that is not a `(severity, text)` pair makes it raise.
- `AlarmCounter` counts alarms per severity, and copes with anything.

A malformed event crashes `AlarmLog`. The manager removes that handler
alone (its `terminate(("error", ...), state)` runs and an error report goes
to stderr), and `AlarmCounter` keeps counting. This program added the log
handler with `add_sup_handler`, so it is also told by a
`("gen_event_EXIT", AlarmLog, reason)` message.
"""

from __future__ import annotations

import sys
from typing import Any

import _path  # noqa: F401 - run from a checkout: the code beside it comes first

import otp
from behaviours import EventHandler, Reply, gen_event


class AlarmLog(EventHandler):
    """Formats and keeps every alarm. State: the list of lines."""

    def init(self, args: Any) -> Any:
        return []

    def handle_event(self, event: Any, state: Any) -> Any:
        severity, text = event  # a malformed event raises here, on purpose
        return [*state, f"[{severity.upper()}] {text}"]

    def handle_call(self, request: Any, state: Any) -> Any:
        return Reply(list(state), state)  # "lines": the log so far

    def terminate(self, reason: Any, state: Any) -> Any:
        return len(state)


class AlarmCounter(EventHandler):
    """Counts alarms per severity; anything else counts as "malformed"."""

    def init(self, args: Any) -> Any:
        return {}

    def handle_event(self, event: Any, state: Any) -> Any:
        ok = isinstance(event, tuple) and len(event) == 2 and isinstance(event[0], str)
        key = event[0] if ok else "malformed"
        return {**state, key: state.get(key, 0) + 1}

    def handle_call(self, request: Any, state: Any) -> Any:
        match request:
            case "counts":
                return Reply(dict(sorted(state.items())), state)
            case "total":
                return Reply(sum(state.values()), state)
        return Reply(None, state)


def names(handlers: list[Any]) -> list[str]:
    return [h.__name__ if isinstance(h, type) else f"{h[0].__name__}/{h[1]}" for h in handlers]


def main() -> int:
    mgr = gen_event.start_link(name="alarms")
    print(f"manager 'alarms' started: {mgr}")

    gen_event.add_sup_handler("alarms", AlarmLog, None)  # this program supervises it
    gen_event.add_handler("alarms", AlarmCounter, None)
    print(f"handlers (newest first): {names(gen_event.which_handlers('alarms'))}")

    for alarm in [
        ("critical", "disk /var is 97% full"),
        ("warning", "cpu temperature 81 C"),
        ("info", "nightly backup done"),
    ]:
        gen_event.notify("alarms", alarm)
    # sync_notify returns once every handler has handled this event, and so
    # every event this program notified before it.
    gen_event.sync_notify("alarms", ("warning", "fan 2 slow"))
    print("log so far:")
    for line in gen_event.call("alarms", AlarmLog, "lines"):
        print(f"  {line}")

    print("sending a malformed alarm: 'garbage'")
    gen_event.sync_notify("alarms", "garbage")
    _, handler, reason = otp.receive(
        lambda m: type(m) is tuple and len(m) == 3 and m[0] == "gen_event_EXIT", timeout=10
    )
    print(f"told: {handler.__name__} was removed, reason {reason!r}")
    print(f"handlers now: {names(gen_event.which_handlers('alarms'))}")

    gen_event.notify("alarms", ("critical", "power supply 1 failed"))
    counts = gen_event.call("alarms", AlarmCounter, "counts")
    total = gen_event.call("alarms", AlarmCounter, "total")
    print(f"the counter lives on: {counts} (total {total})")

    try:
        gen_event.call("alarms", AlarmLog, "lines")
    except otp.HandlerError as e:
        print(f"calling the removed AlarmLog: HandlerError {e.reason!r}")

    gen_event.stop("alarms")
    print(f"manager stopped; alive: {otp.is_process_alive(mgr)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
