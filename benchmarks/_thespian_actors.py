"""The Thespian actor the peer figures talk to.

A module of its own, imported only when Thespian is installed: Thespian's
multiprocess bases load an actor class in their child processes by module
name.
"""

from __future__ import annotations

from typing import Any

from thespian.actors import Actor, ActorExitRequest

__all__ = ["Echo"]


class Echo(Actor):  # type: ignore[misc]
    """Answers every message with itself."""

    def receiveMessage(self, msg: Any, sender: Any) -> None:  # Thespian's name
        if isinstance(msg, ActorExitRequest):
            return
        self.send(sender, msg)
