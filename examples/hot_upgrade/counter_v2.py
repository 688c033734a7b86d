"""Version 2 of the counter server (the demo writes it over `counter.py`).

The state becomes a dict: the total, and the increments per client.
`code_change` turns a running v1 server's int into it, and back again on a
downgrade.
"""

from __future__ import annotations

from typing import Any

from behaviours import GenServer, NoReply, Reply


class Counter(GenServer):
    vsn = 2

    def init(self, start: int = 0) -> dict[str, Any]:
        return {"total": start, "by_client": {}}

    def handle_call(self, request: Any, from_: Any, state: dict[str, Any]) -> Any:
        match request:
            case "get":
                return Reply(("v2", state["total"]), state)
            case "by_client":
                return Reply(state["by_client"], state)

    def handle_cast(self, msg: Any, state: dict[str, Any]) -> Any:
        match msg:
            case ("incr", client):
                by_client = dict(state["by_client"])
                by_client[client] = by_client.get(client, 0) + 1
                return NoReply({"total": state["total"] + 1, "by_client": by_client})

    def code_change(self, old_vsn: Any, state: Any, extra: Any) -> Any:
        if old_vsn == 1:  # upgrade: v1 kept only the total
            return {"total": state, "by_client": {}}
        if old_vsn == ("down", 1):  # downgrade: v1 wants the total back
            return state["total"]
        return state
