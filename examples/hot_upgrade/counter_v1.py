"""Version 1 of the counter server (the demo copies it to `counter.py`).

The state is a plain int: how many increments it got.
"""

from __future__ import annotations

from typing import Any

from behaviours import GenServer, NoReply, Reply


class Counter(GenServer):
    vsn = 1

    def init(self, start: int = 0) -> int:
        return start

    def handle_call(self, request: Any, from_: Any, count: int) -> Any:
        match request:
            case "get":
                return Reply(("v1", count), count)

    def handle_cast(self, msg: Any, count: int) -> Any:
        match msg:
            case ("incr", _client):
                return NoReply(count + 1)
