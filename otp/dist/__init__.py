"""Distribution: this node and other nodes (Python, Erlang, Elixir) over the
Erlang distribution protocol.

A Python node joins a cluster as a *hidden* node, as C nodes do: it speaks
epmd, the version 6 handshake with the cookie challenge, and the External
Term Format. The pieces, each usable and tested on its own:

- `otp.dist._etf`: the term codec; its docstring has the Python <-> Erlang
  mapping table (`Atom`, `ImproperList`, `BitString`, `Fun`, `Port`), and
  `register_struct`, which lets a class of yours cross nodes (as an Elixir
  struct: a map, never pickle).
- `otp.dist._epmd`: the port mapper client (register a node, look one up).
- `otp.dist._portmapper`: our own epmd-compatible port mapper, started by a
  node when no epmd runs on its host (its docstring: who owns it, takeover).
- `otp.dist._handshake`: the handshake, both directions, and the framing after it.
- `otp.dist._tls`: TLS distribution (as Erlang's `inet_tls_dist`), the
  listener's refusal of plain TCP beyond loopback, and how to make a
  cluster's certificates.
- `otp.dist._node`: the connection-owner process of a distributed node.

Nothing received from the network is ever unpickled, and decoding a term
never runs code.
"""

from __future__ import annotations

from ._etf import (
    Atom,
    BitString,
    DecodeError,
    EncodeError,
    Fun,
    ImproperList,
    Port,
    register_struct,
)

__all__ = [
    "Atom",
    "BitString",
    "DecodeError",
    "EncodeError",
    "Fun",
    "ImproperList",
    "Port",
    "register_struct",
]
