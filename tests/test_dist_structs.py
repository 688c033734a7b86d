"""User classes across nodes: `otp.dist.register_struct` (Elixir's structs:
a map with a `__struct__` atom), never pickle."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from dist_helpers import Peer
from dist_structs import Point

import otp
from otp import Atom
from otp.dist import _etf, register_struct
from otp.dist._etf import EncodeError
from otp.dist._testing import run_erl


@dataclass
class Money:
    amount: int
    currency: str


class Temperature:
    """Not a dataclass: it says how it maps."""

    def __init__(self, kelvin: float) -> None:
        self.kelvin = kelvin

    def __eq__(self, other: object) -> bool:
        return type(other) is Temperature and other.kelvin == self.kelvin


register_struct(Money, "Elixir.Shop.Money")
register_struct(
    Temperature,
    to_map=lambda t: {"k": t.kelvin},
    from_map=lambda f: Temperature(f["k"]),
)


def test_a_registered_dataclass_round_trips_as_itself_inside_any_term() -> None:
    term = {"order": [Money(5, "EUR"), (Point(1, 2), Point(3, 4))]}
    back = _etf.decode(_etf.encode(term))
    assert back == term
    assert type(back["order"][0]) is Money


def test_a_struct_is_a_map_with_its_name_under_struct_as_elixir_writes_it() -> None:
    assert type(_etf.decode(_etf.encode(Money(5, "EUR")))) is Money
    # Seen without the registration, it is the map Elixir's %Shop.Money{} is.
    raw = _etf.Codec()
    data = _etf.encode(Money(5, "EUR"))
    saved = dict(_etf._struct_by_name)
    _etf._struct_by_name.clear()
    try:
        plain = raw.decode(data)
    finally:
        _etf._struct_by_name.update(saved)
    assert plain == {
        Atom("__struct__"): Atom("Elixir.Shop.Money"),
        Atom("amount"): 5,
        Atom("currency"): "EUR",
    }
    assert all(type(k) is Atom for k in plain)


def test_a_class_with_its_own_functions_round_trips() -> None:
    assert _etf.decode(_etf.encode([Temperature(273.15)])) == [Temperature(273.15)]


def test_a_map_naming_an_unregistered_struct_stays_a_map() -> None:
    m = {Atom("__struct__"): Atom("Elixir.Nobody"), Atom("x"): 1}
    assert _etf.decode(_etf.encode(m)) == m


def test_a_struct_whose_fields_do_not_fit_stays_a_map_and_runs_nothing_else() -> None:
    # The name is registered but the fields are not Point's: from_map
    # (Point(**fields)) refuses, and the map is delivered as it came.
    m = {Atom("__struct__"): Atom(f"{Point.__module__}.Point"), Atom("z"): 1}
    assert _etf.decode(_etf.encode(m)) == m


def test_an_unregistered_class_still_raises_in_the_sender() -> None:
    @dataclass
    class Secret:
        value: int

    with pytest.raises(EncodeError):
        _etf.encode(Secret(1))


def test_registering_what_cannot_be_a_struct_is_refused() -> None:
    class Plain:
        pass

    with pytest.raises(otp.BadArg, match="not a dataclass"):
        register_struct(Plain)
    with pytest.raises(otp.BadArg, match="already has an Erlang term form"):
        register_struct(dict)

    @dataclass
    class Impostor:
        amount: int

    with pytest.raises(otp.BadArg, match="registered for another class"):
        register_struct(Impostor, "Elixir.Shop.Money")


def test_erl_reads_a_struct_as_a_map_and_writes_one_back_that_decodes_to_the_class() -> None:
    hexed = _etf.encode(Money(7, "USD")).hex()
    out = run_erl(
        f'B = binary:decode_hex(<<"{hexed}">>), M = binary_to_term(B), '
        "#{'__struct__' := 'Elixir.Shop.Money', amount := 7} = M, "
        "R = M#{amount := 8}, "
        'io:format("~s~n", [binary:encode_hex(term_to_binary(R))]), halt().'
    )
    assert _etf.decode(bytes.fromhex(out.strip())) == Money(8, "USD")


# ------------------------------------------------------------ across nodes


@pytest.mark.erlang  # epmd comes with Erlang
def test_a_registered_class_crosses_to_another_python_node_and_back(local: str, peer: Peer) -> None:
    me = otp.self_pid()
    otp.send(("echo", peer.name), (me, [Point(1, 2), {"p": Point(3, 4)}]))
    m: Any = otp.receive(lambda m: type(m) is tuple and m[0] == "echoed", timeout=20)
    assert m[1] == [Point(1, 2), {"p": Point(3, 4)}]
    assert type(m[1][0]) is Point
