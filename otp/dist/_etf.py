"""The External Term Format: Python values to and from Erlang terms.

ETF is the byte format of `term_to_binary/1` and of every message between two
Erlang nodes. This codec is the only serialiser on the network side of the
library: nothing received from a socket is ever unpickled, and decoding never
runs code (a fun decodes to an opaque value, never to something callable).

```python
from otp import Atom
from otp.dist import _etf

data = _etf.encode((Atom("add"), 5, "héllo", b"\\x00\\xff", [1, 2], {"k": 1.5}))
assert _etf.decode(data) == (Atom("add"), 5, "héllo", b"\\x00\\xff", [1, 2], {"k": 1.5})
```

The mapping
-----------
| Python                          | ETF written                       | read back as           |
|---------------------------------|-----------------------------------|------------------------|
| `otp.Atom("ok")`                | SMALL_ATOM_UTF8 / ATOM_UTF8       | `Atom("ok")`           |
| `True` / `False`                | atoms `true` / `false`            | `True` / `False`       |
| `None`                          | atom `undefined`                  | `None`                 |
| `int` (any size)                | SMALL_INTEGER, INTEGER, SMALL_BIG, LARGE_BIG | `int`       |
| `float` (finite)                | NEW_FLOAT                         | `float`                |
| `str`                           | BINARY, UTF-8 (an Elixir string)  | `str`                  |
| `bytes`                         | BIT_BINARY, 8 bits in last byte (*) | `bytes`              |
| `BitString(data, bits)`         | BIT_BINARY (a bitstring)          | `BitString`            |
| `tuple`                         | SMALL_TUPLE / LARGE_TUPLE         | `tuple`                |
| `list`                          | NIL, STRING (all ints 0..255), LIST | `list`               |
| `ImproperList(items, tail)`     | LIST with a non-nil tail          | `ImproperList`         |
| `dict`                          | MAP                               | `dict`                 |
| `otp.Pid`                       | NEW_PID                           | `otp.Pid`              |
| `otp.Ref`                       | NEWER_REFERENCE                   | `otp.Ref`              |
| `Fun`, `Port` (from a decode)   | their original bytes              | the same opaque value  |

(*) erl reads it as the same binary.

Python to Python, every row round-trips exactly (same value, same type).
From Erlang or Elixir:

- A binary comes back as `str` when it is valid UTF-8 (Elixir strings,
  `<<"..."/utf8>>`), as `bytes` otherwise. Binaries are untyped in Erlang, so
  this is a guess by content: `<<1,2,3>>` decodes to `"\\x01\\x02\\x03"`. Code
  that wants bytes calls `.encode()` on a `str` it gets.
- A charlist (Erlang's `"abc"`, Elixir's `'abc'`) is a list of ints:
  `[97, 98, 99]`.
- Atoms are `Atom`, a `str` subclass: `Atom("ok") == "ok"`, so a `match`
  on `("add", n)` matches Erlang's `{add, N}`. Keep atoms and strings apart
  when it matters with `type(x) is Atom`. `true`, `false` and `undefined`
  come back as `True`, `False` and `None`.
- Map keys must be hashable in Python: a map keyed by lists or maps raises
  `DecodeError`.
- Old formats (ATOM_EXT, PID_EXT, NEW_REFERENCE_EXT, FLOAT_EXT, compressed
  terms) are read; they are never written.

Anything else (sets, objects, namedtuples, `int` subclasses other than
`bool`, non-finite floats, a str that is not valid Unicode) raises
`EncodeError` in the sender: nothing is sent.

User classes: structs
---------------------
A class of yours crosses nodes only once registered, and then as Elixir
does with a struct: a map whose `__struct__` key is an atom naming it, its
fields under atom keys. Never by pickle.

    @dataclass
    class Point:
        x: int
        y: int

    otp.dist.register_struct(Point)                  # dataclasses: nothing else to say
    # Point(1, 2) <-> #{'__struct__' => 'mymod.Point', x => 1, y => 2}
    otp.dist.register_struct(User, "Elixir.MyApp.User")  # an Elixir struct

A class that is not a dataclass gives `to_map(obj) -> dict` and
`from_map(fields) -> obj`. Decoding builds the object only for a registered
name, with the registered `from_map` (the user's code, chosen by the user,
never by the sender); a map whose `__struct__` names nothing registered, or
whose fields `from_map` refuses, stays a plain dict. Register at import time
of the module that defines the class, before `otp.node.start`: the node's
dist process, which decodes what arrives, knows the registrations it was
started with.

Pids and Refs
-------------
The runtime's Pid is `(node, id, serial)`: `id` is an OS pid (< 2**22 on
Linux) and `serial` a monotonic clock in milliseconds, which passes 2**32
after 49 days of uptime. ETF's NEW_PID has two 32-bit fields (ID and Serial;
OTP 25 accepts any 32-bit values from another node), so the bits are moved,
losslessly, as

    ID     = id | (serial >> 32) << 22
    Serial = serial & 0xFFFFFFFF

and read back the other way. An Erlang pid (ID < 2**22) maps to itself:
`<N.83.0>` is `Pid((node, 83, 0))`. The mapping is a bijection on all 64
bits, so any pid from Erlang is re-encoded exactly.

A runtime Ref is `(node, a, b, c)`: a three-word reference uses the same
trick on its first two words (Erlang's first word has 18 bits, so its refs map
to themselves); a Ref of any other length is its words as they are.

The node's *creation* (its incarnation number, which tells a restarted node
from the one before it) travels with a Pid of another node: such a Pid is
decoded as `(node, id, serial, creation)`, and written back with that
creation; a Ref of another node likewise, as `(node, *words, creation)`
(a `Ref` subclass that prints and reports `ids` without it). So a Pid kept
across a restart of its node stays a Pid of the old incarnation, as in
Erlang: it is not equal to the new node's Pid with the
same numbers, and a message to it is dropped there (erl drops messages to a
pid of an older creation) instead of reaching whatever process holds those
numbers now. A Pid of this node with this node's creation, or one with
creation 0 (no creation known), is the plain 3-tuple. A `Codec` also
remembers the creation last seen for each node (a bounded table) to write
the Refs and 3-tuple Pids of other nodes, and writes its own for local ones.

Bounds
------
Decoding never allocates more than the input justifies (a length is checked
against the bytes left before anything is built), compressed terms are capped
at `MAX_TERM` bytes, nesting is bounded by Python's recursion limit, and
atoms are `Atom` instances kept in a cache of at most `ATOM_CACHE` entries,
so a peer sending endless new atom names grows nothing. Any malformed input
raises `DecodeError` (a `ProtocolError`), never anything else.
"""

from __future__ import annotations

import dataclasses
import math
import struct
import zlib
from collections.abc import Callable
from typing import Any

from .. import _runtime
from .._exceptions import NotPicklable, ProtocolError
from .._terms import Pid, Ref, _ForeignRef

__all__ = [
    "ATOM_CACHE",
    "MAX_TERM",
    "Atom",
    "BitString",
    "Codec",
    "DecodeError",
    "EncodeError",
    "Fun",
    "ImproperList",
    "Port",
    "decode",
    "encode",
]

VERSION = 131

# Tags (ERTS User's Guide, "External Term Format").
NEW_FLOAT_EXT = 70
BIT_BINARY_EXT = 77
COMPRESSED = 80
NEW_PID_EXT = 88
NEW_PORT_EXT = 89
NEWER_REFERENCE_EXT = 90
SMALL_INTEGER_EXT = 97
INTEGER_EXT = 98
FLOAT_EXT = 99
ATOM_EXT = 100
REFERENCE_EXT = 101
PORT_EXT = 102
PID_EXT = 103
SMALL_TUPLE_EXT = 104
LARGE_TUPLE_EXT = 105
NIL_EXT = 106
STRING_EXT = 107
LIST_EXT = 108
BINARY_EXT = 109
SMALL_BIG_EXT = 110
LARGE_BIG_EXT = 111
NEW_FUN_EXT = 112
EXPORT_EXT = 113
NEW_REFERENCE_EXT = 114
SMALL_ATOM_EXT = 115
MAP_EXT = 116
ATOM_UTF8_EXT = 118
SMALL_ATOM_UTF8_EXT = 119
V4_PORT_EXT = 120

# At most this many distinct decoded atoms are cached; beyond it, new atoms are
# plain short-lived Atom objects. Python has no atom table to exhaust, so the
# cache is only for speed, and its bound is what keeps a hostile peer from
# growing it.
ATOM_CACHE = 4096
# A compressed term may not claim to inflate to more than this.
MAX_TERM = 64 * 1024 * 1024
# Nodes whose creation a Codec remembers (see "Pids and Refs" above).
MAX_NODES = 1024

_PID_ID_BITS = 22
_PID_ID_MASK = (1 << _PID_ID_BITS) - 1
_U32 = 0xFFFFFFFF

_u16 = struct.Struct(">H")
_u32 = struct.Struct(">I")
_i32 = struct.Struct(">i")
_f64 = struct.Struct(">d")
_pid_tail = struct.Struct(">III")
_words = {n: struct.Struct(f">{n}I") for n in range(1, 6)}  # a Ref's 1..5 words
# Decoded Pids kept per Codec (raw bytes -> (Pid, node, creation)): the same
# few Pids come back in every control and message. Cleared when full.
_PID_CACHE = 1024


class Atom(str):
    """An Erlang atom: a `str` subclass, so it compares equal to the same text.

    `Atom("ok")` encodes as the atom `ok`; a plain `"ok"` encodes as the
    binary `<<"ok">>` (an Elixir string). Atoms longer than 255 characters do
    not exist in Erlang and raise `EncodeError` when encoded.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Atom({str.__repr__(self)})"


class ImproperList:
    """A list whose tail is not `[]`: Erlang's `[1, 2 | tail]`.

    `items` is the non-empty list of heads, `tail` the last cdr (any term but
    a list). OTP 24+ uses one as the tag of every `gen:call`: `[alias | Ref]`.
    """

    __slots__ = ("items", "tail")

    def __init__(self, items: list[Any], tail: Any) -> None:
        if not items:
            raise ValueError("an improper list has at least one item")
        if isinstance(tail, (list, ImproperList)):
            raise ValueError("the tail of an improper list is not a list")
        self.items = list(items)
        self.tail = tail

    def __eq__(self, other: object) -> bool:
        return type(other) is ImproperList and self.items == other.items and self.tail == other.tail

    def __hash__(self) -> int:
        return hash((tuple(self.items), self.tail))

    def __repr__(self) -> str:
        return f"ImproperList({self.items!r}, {self.tail!r})"


class BitString:
    """A bitstring whose length is not a whole number of bytes: `bits` (1..8)
    bits of the last byte of `data` are used (the high ones, as Erlang)."""

    __slots__ = ("bits", "data")

    def __init__(self, data: bytes, bits: int) -> None:
        if not data or not 1 <= bits <= 8:
            raise ValueError("a BitString has data and 1..8 bits in its last byte")
        self.data = bytes(data)
        self.bits = bits

    def __eq__(self, other: object) -> bool:
        return type(other) is BitString and (self.data, self.bits) == (other.data, other.bits)

    def __hash__(self) -> int:
        return hash((self.data, self.bits))

    def __repr__(self) -> str:
        return f"BitString({self.data!r}, {self.bits})"


class _Opaque:
    """A term kept as its encoded bytes: re-encoded exactly, never interpreted."""

    __slots__ = ("raw",)

    def __init__(self, raw: bytes) -> None:
        self.raw = bytes(raw)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.raw == other.raw

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.raw))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<{len(self.raw)} bytes>)"


class Fun(_Opaque):
    """An Erlang fun or `fun M:F/A`: opaque. It can be sent back to Erlang,
    never called here (calling one would mean running the peer's code)."""

    __slots__ = ()


class Port(_Opaque):
    """An Erlang port identifier: opaque, can be sent back."""

    __slots__ = ()


class DecodeError(ProtocolError):
    """The bytes are not a well-formed term (the connection carrying them is closed)."""


class EncodeError(NotPicklable):
    """A value has no ETF form (see the mapping table); nothing was sent."""


_atom_cache: dict[bytes, Atom] = {}
# Encoding's side: atom text -> its encoded bytes (tag, length, UTF-8), for
# the atoms and node names every control repeats. Bounded as _atom_cache is.
_atom_bytes: dict[str, bytes] = {}
# Node names by their UTF-8 bytes, as _dec_node returns them (plain str).
_node_names: dict[bytes, str] = {}
_SPECIAL_ATOMS: dict[str, Any] = {"true": True, "false": False, "undefined": None}


def _atom_from(raw: bytes, latin1: bool) -> Any:
    a = _atom_cache.get(raw) if not latin1 else None
    if a is not None:
        return _SPECIAL_ATOMS.get(a, a)
    try:
        text = raw.decode("latin-1" if latin1 else "utf-8")
    except UnicodeDecodeError:
        raise DecodeError("an atom is not valid UTF-8") from None
    if len(text) > 255:
        raise DecodeError("an atom longer than 255 characters")
    a = Atom(text)
    if not latin1 and len(_atom_cache) < ATOM_CACHE:
        _atom_cache[raw] = a
    return _SPECIAL_ATOMS.get(a, a)


# -- user classes as structs (see "User classes: structs" above) -------------

_STRUCT = Atom("__struct__")
# Types the mapping table covers already: not registrable as structs.
_BUILTIN_TERM_TYPES: frozenset[type] = frozenset(
    {bool, int, float, str, bytes, tuple, list, dict, type(None), Atom, Pid, Ref}
)
_StructEntry = tuple[Atom, Callable[[Any], dict[Any, Any]], Callable[[dict[str, Any]], Any]]
_struct_by_class: dict[type, _StructEntry] = {}
_struct_by_name: dict[str, _StructEntry] = {}


def register_struct(
    cls: type,
    name: str | None = None,
    *,
    to_map: Callable[[Any], dict[Any, Any]] | None = None,
    from_map: Callable[[dict[str, Any]], Any] | None = None,
) -> None:
    """Let instances of `cls` cross nodes as a struct named `name`.

    Args:
        cls: the class (exactly: subclasses are not covered).
        name: the struct's name, an atom on the wire; default
            `"module.QualName"`. An Elixir struct's is `"Elixir.Mod.Name"`.
        to_map: `obj -> {field: value}` (str or Atom keys); default for a
            dataclass: its fields.
        from_map: `{field: value} -> obj` (str keys, `__struct__` removed);
            default for a dataclass: `cls(**fields)`.

    Raises:
        BadArg: `cls` is not a dataclass and a function is missing, the
            name is taken by another class, or `cls` is a type the mapping
            table already covers.
    """
    from .._exceptions import BadArg

    if cls in _BUILTIN_TERM_TYPES:
        raise BadArg(f"{cls.__name__} already has an Erlang term form")
    if to_map is None or from_map is None:
        if not dataclasses.is_dataclass(cls):
            raise BadArg(f"{cls.__name__} is not a dataclass: give to_map= and from_map=")
        names = [f.name for f in dataclasses.fields(cls)]
        if to_map is None:

            def to_map(obj: Any, _names: list[str] = names) -> dict[Any, Any]:
                return {n: getattr(obj, n) for n in _names}

        if from_map is None:

            def from_map(fields: dict[str, Any], _cls: type = cls) -> Any:
                return _cls(**fields)

    atom = Atom(name if name is not None else f"{cls.__module__}.{cls.__qualname__}")
    _enc_atom_new(atom, bytearray())  # an atom ETF can carry, or EncodeError now
    other = _struct_by_name.get(atom)
    if other is not None and _struct_by_class.get(cls) is not other:
        raise BadArg(f"the struct name {str(atom)!r} is registered for another class")
    entry: _StructEntry = (atom, to_map, from_map)
    old = _struct_by_class.get(cls)
    if old is not None:
        _struct_by_name.pop(old[0], None)
    _struct_by_class[cls] = entry
    _struct_by_name[atom] = entry


def _struct_from(m: dict[Any, Any]) -> Any:
    """A decoded map with a `__struct__` key: the registered class's object,
    or the map itself (unknown name, or fields its from_map refuses)."""
    entry = _struct_by_name.get(m[_STRUCT]) if type(m[_STRUCT]) is Atom else None
    if entry is None:
        return m
    fields = {str(k): v for k, v in m.items() if k != _STRUCT and type(k) is Atom}
    if len(fields) != len(m) - 1:
        return m  # a key that is not an atom: not one of our structs
    try:
        return entry[2](fields)
    except Exception:
        return m


class Codec:
    """Encoder and decoder for one node.

    `node` and `creation` are the local node's name and creation (read at
    each encode when `node` is None: the runtime's `NODE_NAME`). The codec
    learns the creation of every other node from the Pids and Refs it decodes
    (at most `MAX_NODES` of them), and writes it back when encoding them.
    """

    def __init__(self, node: str | None = None, creation: int = 0) -> None:
        self.node = node
        self.creation = creation
        self.creations: dict[str, int] = {}
        self._pids: dict[bytes, tuple[Pid, str, int]] = {}

    # -- encoding -------------------------------------------------------------

    def encode(self, term: Any) -> bytes:
        """`term_to_binary(term)`: the version byte, then the term."""
        out = bytearray((VERSION,))
        try:
            self._enc(term, out)
        except RecursionError:
            raise EncodeError("term nested too deeply to encode") from None
        return bytes(out)

    def _creation_of(self, node: str) -> int:
        local = self.node if self.node is not None else _runtime.NODE_NAME
        if node == local:
            return self.creation
        return self.creations.get(node, 0)

    def _enc(self, t: Any, out: bytearray) -> None:
        cls = type(t)
        if cls is str:
            try:
                b = t.encode("utf-8")
            except UnicodeEncodeError:
                raise EncodeError(f"a str that is not valid Unicode: {t!r}") from None
            out.append(BINARY_EXT)
            out += _u32.pack(len(b))
            out += b
        elif cls is int:
            _enc_int(t, out)
        elif cls is Atom:
            _enc_atom(t, out)
        elif cls is tuple:
            n = len(t)
            if n < 256:
                out.append(SMALL_TUPLE_EXT)
                out.append(n)
            else:
                out.append(LARGE_TUPLE_EXT)
                out += _u32.pack(n)
            enc = self._enc
            for x in t:
                enc(x, out)
        elif cls is Pid:
            # (Before the rarer types: every control message carries Pids
            # and Refs, so the tests in this chain are ordered by frequency.)
            self._enc_pid(t, out)
        elif cls is Ref or cls is _ForeignRef:
            self._enc_ref(t, out)
        elif cls is list:
            self._enc_list(t, out)
        elif cls is bool:
            _enc_atom("true" if t else "false", out)
        elif t is None:
            _enc_atom("undefined", out)
        elif cls is float:
            if not math.isfinite(t):
                raise EncodeError(f"Erlang has no {t!r}: only finite floats can be sent")
            out.append(NEW_FLOAT_EXT)
            out += _f64.pack(t)
        elif cls is bytes:
            # BIT_BINARY with a full last byte: erl reads it as a plain binary,
            # and Python reads it back as bytes, not str (see the table).
            out.append(BIT_BINARY_EXT)
            out += _u32.pack(len(t))
            out.append(8 if t else 0)
            out += t
        elif cls is dict:
            out.append(MAP_EXT)
            out += _u32.pack(len(t))
            for k, v in t.items():
                self._enc(k, out)
                self._enc(v, out)
        elif cls is ImproperList:
            out.append(LIST_EXT)
            out += _u32.pack(len(t.items))
            for x in t.items:
                self._enc(x, out)
            self._enc(t.tail, out)
        elif cls is BitString:
            out.append(BIT_BINARY_EXT)
            out += _u32.pack(len(t.data))
            out.append(t.bits)
            out += t.data
        elif cls is Fun or cls is Port:
            out += t.raw
        elif cls in _struct_by_class:
            name, to_map, _ = _struct_by_class[cls]
            fields = to_map(t)
            m: dict[Any, Any] = {_STRUCT: name}
            for k, v in fields.items():
                m[k if type(k) is Atom else Atom(k)] = v
            self._enc(m, out)
        else:
            raise EncodeError(
                f"{cls.__name__} has no Erlang term form (see otp.dist's mapping table): {t!r}"
            )

    def _enc_list(self, t: list[Any], out: bytearray) -> None:
        n = len(t)
        if n == 0:
            out.append(NIL_EXT)
            return
        # erl writes a list of bytes as STRING_EXT; doing the same keeps our
        # bytes identical to term_to_binary's (checked by the erl tests).
        if n < 65536 and all(type(x) is int and 0 <= x < 256 for x in t):
            out.append(STRING_EXT)
            out += _u16.pack(n)
            out += bytes(t)
            return
        out.append(LIST_EXT)
        out += _u32.pack(n)
        for x in t:
            self._enc(x, out)
        out.append(NIL_EXT)

    def _enc_pid(self, p: Pid, out: bytearray) -> None:
        if len(p) == 4:
            node, ident, serial, creation = p  # another node's, with its incarnation
        else:
            node, ident, serial = p
            creation = self._creation_of(node)
        if not (0 <= ident <= _PID_ID_MASK and 0 <= serial < 1 << 42 and 0 <= creation <= _U32):
            raise EncodeError(f"a Pid outside ETF's range (id < 2**22, serial < 2**42): {p!r}")
        out.append(NEW_PID_EXT)
        _enc_atom(node, out)
        out += _pid_tail.pack(ident | (serial >> 32) << _PID_ID_BITS, serial & _U32, creation)

    def _enc_ref(self, r: Ref, out: bytearray) -> None:
        node = r[0]
        if type(r) is _ForeignRef:
            words = list(r[1:-1])
            creation = r[-1]
        else:
            words = list(r[1:])
            creation = self._creation_of(node)
        if len(words) == 3:
            a, b, c = words
            if not (0 <= a <= _PID_ID_MASK and 0 <= b < 1 << 42 and 0 <= c <= _U32):
                raise EncodeError(f"a Ref outside ETF's range: {r!r}")
            words = [a | (b >> 32) << _PID_ID_BITS, b & _U32, c]
        elif not (1 <= len(words) <= 5 and all(type(w) is int and 0 <= w <= _U32 for w in words)):
            raise EncodeError(f"a Ref outside ETF's range: {r!r}")
        out.append(NEWER_REFERENCE_EXT)
        out += _u16.pack(len(words))
        _enc_atom(node, out)
        out += _u32.pack(creation)
        out += _words[len(words)].pack(*words)

    # -- decoding -------------------------------------------------------------

    def decode(self, data: bytes | bytearray | memoryview) -> Any:
        """`binary_to_term(data)`: exactly one term, the whole input."""
        term, end = self.decode_from(data, 0)
        if end != len(data):
            raise DecodeError(f"{len(data) - end} bytes after the term")
        return term

    def decode_from(self, data: bytes | bytearray | memoryview, offset: int) -> tuple[Any, int]:
        """One term (with its version byte) at `offset`; returns it and the end offset."""
        buf = bytes(data) if not isinstance(data, bytes) else data
        try:
            if buf[offset] != VERSION:
                raise DecodeError(f"not an external term (version byte {buf[offset]})")
            if buf[offset + 1] == COMPRESSED:
                return self._decompress(buf, offset + 2)
            return self._dec(buf, offset + 1)
        except DecodeError:
            raise
        except (IndexError, struct.error):
            raise DecodeError("truncated term") from None
        except RecursionError:
            raise DecodeError("term nested too deeply") from None
        except (ValueError, TypeError, OverflowError, MemoryError) as e:
            # Defensive: whatever a malformed input trips, the caller sees one
            # error class. Our own code raises DecodeError for what it checks.
            raise DecodeError(f"malformed term: {type(e).__name__}: {e}") from None

    def _decompress(self, buf: bytes, i: int) -> tuple[Any, int]:
        (size,) = _u32.unpack_from(buf, i)
        if size > MAX_TERM:
            raise DecodeError(f"a compressed term inflating to {size} bytes")
        d = zlib.decompressobj()
        try:
            raw = d.decompress(buf[i + 4 :], size + 1)
        except zlib.error as e:
            raise DecodeError(f"bad compressed term: {e}") from None
        if len(raw) != size or not d.eof:
            raise DecodeError("compressed term size mismatch")
        end = len(buf) - len(d.unused_data)
        term, j = self._dec(raw, 0)
        if j != size:
            raise DecodeError("bytes left inside a compressed term")
        return term, end

    def _need(self, buf: bytes, i: int, n: int) -> None:
        if n < 0 or i + n > len(buf):
            raise DecodeError("a length runs past the end of the input")

    def _dec(self, buf: bytes, i: int) -> tuple[Any, int]:
        tag = buf[i]
        i += 1
        # The tags of every control message first (tuples, atoms, small
        # integers, Pids, Refs), then the rest in the order they were written.
        if tag == SMALL_TUPLE_EXT:
            n = buf[i]
            i += 1
            self._need(buf, i, n)  # every element takes at least one byte
            items = []
            dec = self._dec
            for _ in range(n):
                x, i = dec(buf, i)
                items.append(x)
            return tuple(items), i
        if tag == SMALL_ATOM_UTF8_EXT:
            n = buf[i]
            end = i + 1 + n
            raw = buf[i + 1 : end]
            a = _atom_cache.get(raw)
            if a is not None and len(raw) == n:
                return _SPECIAL_ATOMS.get(a, a), end
            self._need(buf, i + 1, n)
            return _atom_from(raw, False), end
        if tag == SMALL_INTEGER_EXT:
            return buf[i], i + 1
        if tag == NEW_PID_EXT and buf[i] == SMALL_ATOM_UTF8_EXT:
            end = i + 14 + buf[i + 1]  # node atom (2 + n bytes), ID, Serial, Creation
            hit = self._pids.get(buf[i:end])
            if hit is not None:
                pid, node, creation = hit
                if self.creations.get(node) != creation:
                    self._learn(node, creation)
                return pid, end
            pid, j = self._dec_pid(buf, i, tag)
            if j == end:
                if len(self._pids) >= _PID_CACHE:
                    self._pids.clear()
                self._pids[buf[i:end]] = (pid, pid[0], _u32.unpack_from(buf, end - 4)[0])
            return pid, j
        if tag == INTEGER_EXT:
            return _i32.unpack_from(buf, i)[0], i + 4
        if tag in (SMALL_ATOM_UTF8_EXT, SMALL_ATOM_EXT):
            n = buf[i]
            self._need(buf, i + 1, n)
            return _atom_from(buf[i + 1 : i + 1 + n], tag == SMALL_ATOM_EXT), i + 1 + n
        if tag in (ATOM_UTF8_EXT, ATOM_EXT):
            (n,) = _u16.unpack_from(buf, i)
            self._need(buf, i + 2, n)
            return _atom_from(buf[i + 2 : i + 2 + n], tag == ATOM_EXT), i + 2 + n
        if tag in (SMALL_TUPLE_EXT, LARGE_TUPLE_EXT):
            if tag == SMALL_TUPLE_EXT:
                n = buf[i]
                i += 1
            else:
                (n,) = _u32.unpack_from(buf, i)
                i += 4
            self._need(buf, i, n)  # every element takes at least one byte
            items = []
            for _ in range(n):
                x, i = self._dec(buf, i)
                items.append(x)
            return tuple(items), i
        if tag == NIL_EXT:
            return [], i
        if tag == STRING_EXT:
            (n,) = _u16.unpack_from(buf, i)
            self._need(buf, i + 2, n)
            return list(buf[i + 2 : i + 2 + n]), i + 2 + n
        if tag == LIST_EXT:
            (n,) = _u32.unpack_from(buf, i)
            i += 4
            self._need(buf, i, n + 1)
            items = []
            for _ in range(n):
                x, i = self._dec(buf, i)
                items.append(x)
            tail, i = self._dec(buf, i)
            if type(tail) is list:
                # [a | [b, c]] written as two LIST_EXTs is just [a, b, c].
                return items + tail, i
            if type(tail) is ImproperList:
                return ImproperList(items + tail.items, tail.tail), i
            if not items:
                raise DecodeError("a list of length 0 with a tail")
            return ImproperList(items, tail), i
        if tag == BINARY_EXT:
            (n,) = _u32.unpack_from(buf, i)
            self._need(buf, i + 4, n)
            raw = buf[i + 4 : i + 4 + n]
            try:
                return raw.decode("utf-8"), i + 4 + n
            except UnicodeDecodeError:
                return raw, i + 4 + n
        if tag == BIT_BINARY_EXT:
            (n,) = _u32.unpack_from(buf, i)
            bits = buf[i + 4]
            self._need(buf, i + 5, n)
            raw = buf[i + 5 : i + 5 + n]
            if n == 0 and bits == 0:
                return b"", i + 5
            if n == 0 or not 1 <= bits <= 8:
                raise DecodeError("a bitstring with a bad bit count")
            return (raw if bits == 8 else BitString(raw, bits)), i + 5 + n
        if tag in (SMALL_BIG_EXT, LARGE_BIG_EXT):
            if tag == SMALL_BIG_EXT:
                n = buf[i]
                i += 1
            else:
                (n,) = _u32.unpack_from(buf, i)
                i += 4
            sign = buf[i]
            self._need(buf, i + 1, n)
            v = int.from_bytes(buf[i + 1 : i + 1 + n], "little")
            return (-v if sign else v), i + 1 + n
        if tag == NEW_FLOAT_EXT:
            return _f64.unpack_from(buf, i)[0], i + 8
        if tag == FLOAT_EXT:
            self._need(buf, i, 31)
            text = buf[i : i + 31].split(b"\0", 1)[0]
            try:
                return float(text.decode("ascii")), i + 31
            except (UnicodeDecodeError, ValueError):
                raise DecodeError("a bad FLOAT_EXT") from None
        if tag == MAP_EXT:
            (n,) = _u32.unpack_from(buf, i)
            i += 4
            self._need(buf, i, 2 * n)
            m: dict[Any, Any] = {}
            for _ in range(n):
                k, i = self._dec(buf, i)
                v, i = self._dec(buf, i)
                try:
                    if k in m:
                        raise DecodeError("a map with a repeated key")
                    m[k] = v
                except TypeError:
                    raise DecodeError(f"a map key Python cannot hash: {k!r}") from None
            if _struct_by_name and _STRUCT in m:
                return _struct_from(m), i
            return m, i
        if tag in (NEW_PID_EXT, PID_EXT):
            return self._dec_pid(buf, i, tag)
        if tag in (NEWER_REFERENCE_EXT, NEW_REFERENCE_EXT):
            (n,) = _u16.unpack_from(buf, i)
            if not 1 <= n <= 5:
                raise DecodeError(f"a reference of {n} words")
            node, i = self._dec_node(buf, i + 2)
            if tag == NEWER_REFERENCE_EXT:
                creation = _u32.unpack_from(buf, i)[0]
                i += 4
            else:
                creation = buf[i]
                i += 1
            self._need(buf, i, 4 * n)
            words = list(_words[n].unpack_from(buf, i))
            i += 4 * n
            self._learn(node, creation)
            if n == 3:
                w0 = words[0]
                words = [w0 & _PID_ID_MASK, (w0 >> _PID_ID_BITS) << 32 | words[1], words[2]]
            local = self.node if self.node is not None else _runtime.NODE_NAME
            if creation == 0 or (node == local and creation == self.creation):
                return Ref((node, *words)), i
            return _ForeignRef((node, *words, creation)), i  # as a Pid: see "Pids and Refs"
        if tag == REFERENCE_EXT:
            node, i = self._dec_node(buf, i)
            self._need(buf, i, 5)
            return Ref((node, _u32.unpack_from(buf, i)[0])), i + 5
        if tag == NEW_FUN_EXT:
            (size,) = _u32.unpack_from(buf, i)
            # Size counts itself; the fun's body is kept as bytes, unread.
            if size < 4:
                raise DecodeError("a fun of a bad size")
            self._need(buf, i, size)
            return Fun(buf[i - 1 : i + size]), i + size
        if tag == EXPORT_EXT:
            start = i - 1
            for _ in range(3):  # module, function, arity: validated, then kept raw
                _, i = self._dec(buf, i)
            return Fun(buf[start:i]), i
        if tag in (NEW_PORT_EXT, PORT_EXT, V4_PORT_EXT):
            start = i - 1
            _, i = self._dec_node(buf, i)
            i += {NEW_PORT_EXT: 8, PORT_EXT: 5, V4_PORT_EXT: 12}[tag]
            self._need(buf, i, 0)
            return Port(buf[start:i]), i
        raise DecodeError(f"unknown or unsupported term tag {tag}")

    def _dec_pid(self, buf: bytes, i: int, tag: int) -> tuple[Pid, int]:
        node, i = self._dec_node(buf, i)
        ident, serial = _u32.unpack_from(buf, i)[0], _u32.unpack_from(buf, i + 4)[0]
        if tag == NEW_PID_EXT:
            creation = _u32.unpack_from(buf, i + 8)[0]
            i += 12
        else:
            creation = buf[i + 8]
            i += 9
        self._learn(node, creation)
        serial |= (ident >> _PID_ID_BITS) << 32
        ident &= _PID_ID_MASK
        local = self.node if self.node is not None else _runtime.NODE_NAME
        if creation == 0 or (node == local and creation == self.creation):
            return Pid((node, ident, serial)), i
        return Pid((node, ident, serial, creation)), i

    def _dec_node(self, buf: bytes, i: int) -> tuple[str, int]:
        if buf[i] == SMALL_ATOM_UTF8_EXT:
            # A node name seen before (always, after the first): no Atom built.
            end = i + 2 + buf[i + 1]
            raw = buf[i + 2 : end]
            name = _node_names.get(raw)
            if name is not None and len(raw) == end - i - 2:
                return name, end
        start = i
        node, i = self._dec(buf, i)
        if type(node) is not Atom:
            raise DecodeError("a node name that is not an atom")
        name = str(node)
        if buf[start] == SMALL_ATOM_UTF8_EXT and len(_node_names) < ATOM_CACHE:
            _node_names[buf[start + 2 : i]] = name
        return name, i

    def _learn(self, node: str, creation: int) -> None:
        # Bounded: past MAX_NODES unknown nodes, new ones are not remembered
        # (their pids are then re-encoded with creation 0, which erl takes as
        # "the current incarnation" for pids it receives from elsewhere).
        if node in self.creations or len(self.creations) < MAX_NODES:
            self.creations[node] = creation


def _enc_int(t: int, out: bytearray) -> None:
    if 0 <= t < 256:
        out.append(SMALL_INTEGER_EXT)
        out.append(t)
    elif -(1 << 31) <= t < 1 << 31:
        out.append(INTEGER_EXT)
        out += _i32.pack(t)
    else:
        v = -t if t < 0 else t
        b = v.to_bytes((v.bit_length() + 7) // 8, "little")
        if len(b) < 256:
            out.append(SMALL_BIG_EXT)
            out.append(len(b))
        else:
            out.append(LARGE_BIG_EXT)
            out += _u32.pack(len(b))
        out.append(1 if t < 0 else 0)
        out += b


def _enc_atom(a: str, out: bytearray) -> None:
    b = _atom_bytes.get(a)
    if b is not None:
        out += b  # the common case: an atom (or node name) encoded before
        return
    start = len(out)
    _enc_atom_new(a, out)
    if len(_atom_bytes) < ATOM_CACHE:
        _atom_bytes[a] = bytes(out[start:])


def _enc_atom_new(a: str, out: bytearray) -> None:
    if len(a) > 255:
        raise EncodeError(f"an atom longer than 255 characters: {a[:40]!r}...")
    try:
        b = a.encode("utf-8")
    except UnicodeEncodeError:
        raise EncodeError(f"an atom that is not valid Unicode: {a!r}") from None
    if len(b) < 256:
        out.append(SMALL_ATOM_UTF8_EXT)
        out.append(len(b))
    else:
        out.append(ATOM_UTF8_EXT)
        out += _u16.pack(len(b))
    out += b


_default = Codec()


def encode(term: Any) -> bytes:
    """Encode with the default codec (local node: the runtime's NODE_NAME, creation 0)."""
    return _default.encode(term)


def decode(data: bytes | bytearray | memoryview) -> Any:
    """Decode one whole term with the default codec."""
    return _default.decode(data)
