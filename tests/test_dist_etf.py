"""The External Term Format codec: exact Python round trips, clean errors on
garbage, bounded atoms, opaque funs, and byte-for-byte agreement with a real erl."""

from __future__ import annotations

import enum
import math
import struct
import zlib
from collections import namedtuple
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import otp
from otp import Atom, Pid, Ref
from otp.dist import _etf
from otp.dist._etf import BitString, Codec, DecodeError, EncodeError, Fun, ImproperList
from otp.dist._testing import run_erl

# -- strategies ----------------------------------------------------------------

_RESERVED = {"true", "false", "undefined"}  # these atoms come back as True/False/None
atoms = st.text(max_size=40).filter(lambda s: s not in _RESERVED).map(Atom)
node_names = st.from_regex(r"[a-z][a-z0-9_]{0,10}@[a-z][a-z0-9]{0,10}", fullmatch=True)
pids = st.builds(
    lambda n, i, s: Pid((n, i, s)),
    node_names,
    st.integers(0, 2**22 - 1),
    st.integers(0, 2**42 - 1),
)
refs = st.one_of(
    st.builds(
        lambda n, a, b, c: Ref((n, a, b, c)),
        node_names,
        st.integers(0, 2**22 - 1),
        st.integers(0, 2**42 - 1),
        st.integers(0, 2**32 - 1),
    ),
    st.builds(
        lambda n, ws: Ref((n, *ws)),
        node_names,
        st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=5).filter(lambda w: len(w) != 3),
    ),
)
scalars = st.one_of(
    atoms,
    st.booleans(),
    st.none(),
    st.integers(),
    # bignums up to LARGE_BIG sizes, built from bytes (a bounded integers() would
    # print its 600-digit bounds in every hypothesis report)
    st.builds(
        lambda b, neg: -int.from_bytes(b, "big") if neg else int.from_bytes(b, "big"),
        st.binary(max_size=300),
        st.booleans(),
    ),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
    st.binary(),
    st.builds(BitString, st.binary(min_size=1), st.integers(1, 7)),
    pids,
    refs,
)
hashables = st.recursive(scalars, lambda kids: st.tuples(kids, kids), max_leaves=4)


def _containers(kids: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(kids, max_size=6),
        st.lists(kids, max_size=6).map(tuple),
        st.builds(
            ImproperList,
            st.lists(kids, min_size=1, max_size=4),
            kids.filter(lambda t: not isinstance(t, (list, ImproperList))),
        ),
        st.dictionaries(hashables, kids, max_size=4),
    )


terms = st.recursive(scalars, _containers, max_leaves=25)


def same(a: Any, b: Any) -> bool:
    """Equal AND of the same type all the way down (1 == 1.0 == True is not enough)."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return struct.pack(">d", a) == struct.pack(">d", b)
    if type(a) in (list, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is ImproperList:
        return same(a.items, b.items) and same(a.tail, b.tail)
    if type(a) is dict:
        if len(a) != len(b):
            return False
        for (k1, v1), (k2, v2) in zip(a.items(), b.items(), strict=True):
            if not (same(k1, k2) and same(v1, v2)):
                return False
        return True
    return bool(a == b)


# -- Python to Python ------------------------------------------------------------


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(terms)
def test_every_type_in_the_table_round_trips_exactly(term: Any) -> None:
    assert same(_etf.decode(_etf.encode(term)), term)


def test_the_documented_examples_round_trip_with_their_types() -> None:
    t = (Atom("add"), 5, "héllo", b"\x00\xff", [1, 2], {"k": 1.5}, None, True, False)
    back = _etf.decode(_etf.encode(t))
    assert same(back, t)
    assert type(back[0]) is Atom and type(back[2]) is str and type(back[3]) is bytes


def test_atom_is_exported_from_otp_and_is_a_distinct_str() -> None:
    assert otp.Atom is Atom
    a = Atom("ok")
    assert isinstance(a, str) and type(a) is not str and a == "ok"
    assert _etf.encode(a) != _etf.encode("ok")  # an atom, not a binary


@given(st.integers(0, 2**22 - 1), st.integers(0, 2**42 - 1))
def test_pids_with_large_serials_round_trip_losslessly(ident: int, serial: int) -> None:
    p = Pid(("py@host", ident, serial))
    assert same(_etf.decode(_etf.encode(p)), p)


def test_local_pids_and_refs_from_the_runtime_round_trip() -> None:
    me = otp.self_pid()
    ref = otp.make_ref()
    assert same(_etf.decode(_etf.encode((me, ref))), (me, ref))


def test_an_erlang_pid_with_a_small_id_maps_to_itself() -> None:
    # <N.83.0> as erl writes it (NEW_PID_EXT, creation 7)
    raw = bytes([131, 88, 119, 5]) + b"e@box" + struct.pack(">III", 83, 0, 7)
    pid = _etf.decode(raw)
    assert (pid.node, pid.id, pid.serial, pid.creation) == ("e@box", 83, 0, 7)
    assert repr(pid) == "<1.83.0>"


def test_a_pid_of_an_older_incarnation_is_another_pid_and_keeps_its_creation() -> None:
    # The same numbers from node e@box before and after it restarted (its
    # creation went from 7 to 8): two different Pids, as in Erlang, each
    # written back with its own creation (erl drops a message to the old one).
    codec = Codec(node="py@host", creation=3)
    old = bytes([131, 88, 119, 5]) + b"e@box" + struct.pack(">III", 83, 0, 7)
    new = bytes([131, 88, 119, 5]) + b"e@box" + struct.pack(">III", 83, 0, 8)
    p_old, p_new = codec.decode(old), codec.decode(new)
    assert p_old != p_new and hash(p_old) != hash(p_new)
    assert codec.encode(p_old) == old and codec.encode(p_new) == new
    # A Pid of this node with this node's creation is the plain local Pid.
    mine = bytes([131, 88, 119, 7]) + b"py@host" + struct.pack(">III", 4211, 5, 3)
    assert codec.decode(mine) == Pid(("py@host", 4211, 5))
    # One with another creation is a Pid of an earlier run of this node.
    stale = bytes([131, 88, 119, 7]) + b"py@host" + struct.pack(">III", 4211, 5, 2)
    assert codec.decode(stale) != Pid(("py@host", 4211, 5))


def test_the_creation_of_a_decoded_pid_is_written_back() -> None:
    codec = Codec(node="py@host", creation=3)
    raw = bytes([131, 88, 119, 5]) + b"e@box" + struct.pack(">III", 83, 1, 123456)
    assert codec.encode(codec.decode(raw)) == raw
    mine = codec.encode(Pid(("py@host", 5, 6)))
    assert mine.endswith(struct.pack(">III", 5, 6, 3))


def test_a_ref_of_another_node_keeps_its_creation_and_comes_back_exactly() -> None:
    # As for Pids: the same words from e@box before and after it restarted
    # (creation 7, then 8) are two Refs, each written back with its own
    # creation; a Ref of this node with this node's creation is the plain one.
    codec = Codec(node="py@host", creation=3)

    def ref(node: bytes, creation: int, *words: int) -> bytes:
        return (
            bytes([131, 90, 0, len(words), 119, len(node)])
            + node
            + struct.pack(f">I{len(words)}I", creation, *words)
        )

    old, new = ref(b"e@box", 7, 1, 2, 3), ref(b"e@box", 8, 1, 2, 3)
    r_old, r_new = codec.decode(old), codec.decode(new)
    assert r_old != r_new and r_old.creation == 7 and r_new.creation == 8
    assert codec.encode(r_old) == old and codec.encode(r_new) == new
    assert repr(r_old) == "#Ref<0.1.2.3>" and r_old.ids == (1, 2, 3)
    # erl's other sizes of reference too (OTP 26 makes 4- and 5-word ones).
    five = ref(b"e@box", 7, 1, 2, 3, 4, 5)
    assert codec.encode(codec.decode(five)) == five
    mine = ref(b"py@host", 3, 1, 2, 3)
    assert type(codec.decode(mine)) is Ref


def test_improper_lists_and_gen_call_alias_tags_round_trip() -> None:
    tag = ImproperList([Atom("alias")], Ref(("e@box", 1, 2, 3)))
    codec = Codec()  # knows no creation of e@box: the Ref is written with 0
    assert same(codec.decode(codec.encode(tag)), tag)
    with pytest.raises(ValueError):
        ImproperList([], 1)
    with pytest.raises(ValueError):
        ImproperList([1], [2])


Point = namedtuple("Point", "x y")


class Colour(enum.IntEnum):
    RED = 1


@pytest.mark.parametrize(
    "value",
    [
        {1, 2},
        object(),
        Point(1, 2),
        Colour.RED,
        math.nan,
        math.inf,
        Atom("a" * 256),
        "\ud800",
        Pid(("n@h", 2**22, 0)),
        Ref(("n@h", 1, 2, 2**32)),
        Ref(("n@h", *range(6))),
        [1, {"nested": frozenset()}],
    ],
    ids=repr,
)
def test_values_outside_the_table_raise_a_clear_error_in_the_sender(value: Any) -> None:
    with pytest.raises(EncodeError) as e:
        _etf.encode(value)
    assert isinstance(e.value, otp.NotPicklable)
    assert str(e.value)


# -- garbage -----------------------------------------------------------------------


def _decodes_cleanly(data: bytes) -> None:
    try:
        _etf.decode(data)
    except DecodeError:
        pass


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_decode_or_raise_decode_error_only(data: bytes) -> None:
    _decodes_cleanly(data)
    _decodes_cleanly(b"\x83" + data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(terms, st.data())
def test_truncated_and_corrupted_terms_raise_decode_error_only(term: Any, data: Any) -> None:
    raw = bytearray(_etf.encode(term))
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(DecodeError):
        _etf.decode(bytes(raw[:cut]))
    pos = data.draw(st.integers(0, len(raw) - 1))
    raw[pos] = data.draw(st.integers(0, 255))
    _decodes_cleanly(bytes(raw))


def test_absurd_lengths_are_refused_before_allocating() -> None:
    for tag in (108, 116, 109, 105):  # list, map, binary, large tuple of 2**32-1
        with pytest.raises(DecodeError):
            _etf.decode(bytes([131, tag]) + b"\xff\xff\xff\xff" + b"a")


def test_a_compression_bomb_is_refused() -> None:
    body = zlib.compress(b"\x00" * 1000)
    with pytest.raises(DecodeError):
        _etf.decode(bytes([131, 80]) + struct.pack(">I", 2**31) + body)
    # an honest compressed term decodes
    inner = _etf.encode([Atom("x")] * 100)[1:]
    assert _etf.decode(bytes([131, 80]) + struct.pack(">I", len(inner)) + zlib.compress(inner))


def test_deep_nesting_is_a_decode_error_not_a_crash() -> None:
    deep = b"\x83" + b"\x68\x01" * 100_000 + b"\x6a"
    with pytest.raises(DecodeError):
        _etf.decode(deep)


def test_atoms_from_the_network_are_bounded() -> None:
    for i in range(_etf.ATOM_CACHE + 2000):
        name = f"a{i}".encode()
        a = _etf.decode(bytes([131, 119, len(name)]) + name)
        assert type(a) is Atom and a == name.decode()
    assert len(_etf._atom_cache) <= _etf.ATOM_CACHE


def test_funs_stay_opaque_and_are_never_called() -> None:
    # fun os:cmd/1 (EXPORT_EXT): decoded as an opaque value, re-encoded unchanged.
    raw = bytes([131, 113, 119, 2]) + b"os" + bytes([119, 3]) + b"cmd" + bytes([97, 1])
    f = _etf.decode(raw)
    assert type(f) is Fun and not callable(f)
    assert _etf.encode(f) == raw


# -- against a real erl ------------------------------------------------------------

# (erlang expression, the Python value it is)
SAMPLES: list[tuple[str, Any]] = [
    ("ok", Atom("ok")),
    ("'héllo wörld'", Atom("héllo wörld")),
    ("true", True),
    ("undefined", None),
    ("0", 0),
    ("255", 255),
    ("256", 256),
    ("-1", -1),
    ("2147483647", 2**31 - 1),
    ("-2147483648", -(2**31)),
    ("2147483648", 2**31),
    ("-(1 bsl 100)", -(2**100)),
    ("1 bsl 2100", 2**2100),
    ("1.5", 1.5),
    ("-1.0e300", -1.0e300),
    ('<<"héllo"/utf8>>', "héllo"),
    ("<<>>", ""),
    ("[]", []),
    ("[1,2,3]", [1, 2, 3]),
    ("[1,a]", [1, Atom("a")]),
    ("[1,2|3]", ImproperList([1, 2], 3)),
    ("{}", ()),
    ("{a,{b,[]}}", (Atom("a"), (Atom("b"), []))),
    ("list_to_tuple(lists:seq(1,300))", tuple(range(1, 301))),
    ("#{a => 1}", {Atom("a"): 1}),
    ("<<1:3>>", BitString(b"\x20", 3)),
]


@pytest.mark.erlang
def test_our_encoding_is_byte_identical_to_term_to_binary() -> None:
    lines = ",".join(
        f"binary:encode_hex(term_to_binary({e}, [{{minor_version,2}}]))" for e, _ in SAMPLES
    )
    out = run_erl(f'[io:format("~s~n", [H]) || H <- [{lines}]], halt().').split()
    assert len(out) == len(SAMPLES)
    for (expr, value), hexed in zip(SAMPLES, out, strict=True):
        assert _etf.encode(value).hex().upper() == hexed, expr
        assert same(_etf.decode(bytes.fromhex(hexed)), value), expr


@pytest.mark.erlang
def test_erl_decodes_our_encodings_to_the_same_terms() -> None:
    extra = [
        ("<<0,255>>", b"\x00\xff"),
        ('#{a => 1, <<"b">> => [x]}', {Atom("a"): 1, "b": [Atom("x")]}),
    ]
    checks = ",".join(
        f'binary_to_term(binary:decode_hex(<<"{_etf.encode(v).hex()}">>)) =:= {e}'
        for e, v in SAMPLES + extra
    )
    out = run_erl(f'io:format("~p~n", [[{checks}]]), halt().')
    assert "false" not in out and out.count("true") == len(SAMPLES) + len(extra), out


@pytest.mark.erlang
def test_pids_refs_and_funs_from_erl_are_re_encoded_exactly() -> None:
    script = (
        "A = erlang:monitor(process, self(), [{alias, demonitor}]),"
        "Ts = [self(), make_ref(), A, fun() -> ok end, fun os:cmd/1, [A | make_ref()]],"
        '[io:format("~s~n", [binary:encode_hex(term_to_binary(T, [{minor_version,2}]))])'
        " || T <- Ts],"
        "halt()."
    )
    codec = Codec(node="py@host")
    for hexed in run_erl(script).split():
        raw = bytes.fromhex(hexed)
        assert codec.encode(codec.decode(raw)) == raw


@pytest.mark.erlang
def test_erl_accepts_our_pids_and_refs_with_large_serials_and_sends_them_back_unchanged() -> None:
    codec = Codec(node="py@host", creation=5)
    p = Pid(("py@host", 4_000_000, 2**41 + 12345))
    r = Ref(("py@host", 4_000_000, 2**41 + 7, 2**32 - 1))
    hexed = codec.encode((p, r)).hex()
    script = (
        f'T = binary_to_term(binary:decode_hex(<<"{hexed}">>)),'
        'io:format("~s~n", [binary:encode_hex(term_to_binary(T, [{minor_version,2}]))]), halt().'
    )
    back = run_erl(script).strip()
    assert codec.decode(bytes.fromhex(back)) == (p, r)
    assert bytes.fromhex(back) == codec.encode((p, r))
