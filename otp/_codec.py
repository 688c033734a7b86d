"""Frames and serialisation: what travels on a connection between two processes.

A frame is an 8-byte little-endian header followed by a payload. The header's
top byte is the frame kind, its low 56 bits the payload length:

```
 63      56 55                                   0
+----------+--------------------------------------+
|   kind   |            payload length            |
+----------+--------------------------------------+
```

A header with an unknown kind, or a length above `MAX_FRAME`, is garbage: the
reader closes that connection before allocating anything for it.

Payloads are C-pickle protocol 5. What the C pickler refuses (lambdas,
closures, classes defined inside functions) is pickled by `dill`, the pure
Python pickler that `multiprocess` uses, 27-38x slower: it is the fallback,
never the hot path, and it travels under its own frame kind so the receiver
knows which unpickler to use.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
from typing import Any

from ._exceptions import NotPicklable

__all__ = ["HDR", "MAX_FRAME", "dumps", "loads"]

HDR = struct.Struct("<Q")
HDR_SIZE = HDR.size
KIND_SHIFT = 56
LEN_MASK = (1 << KIND_SHIFT) - 1

#: The largest payload accepted on a connection. A header that claims more
#: closes the connection. Override with the OTP_MAX_FRAME environment variable.
MAX_FRAME = int(os.environ.get("OTP_MAX_FRAME", str(2**31)))

# Frame kinds. The control kinds are modelled on the Erlang distribution
# protocol's control messages (LINK, UNLINK, EXIT, MONITOR_P_EXIT...).
MSG = 0  # a pickled message for the mailbox
MSG_DILL = 1  # the same, pickled by dill
HELLO = 2  # first frame of a connection: the connector's Pid (struct, never pickle)
WELCOME = 3  # the acceptor took the connection: its end is a live process
LINK = 4  # the peer linked to us
UNLINK = 5  # the peer removed its link
EXIT = 6  # an exit signal sent with otp.exit(pid, reason); payload: reason
EXITING = 7  # the peer is terminating with this reason (sent on every connection)
INFO_REQ = 8  # process_info asked of this process's runtime
INFO_REP = 9  # its answer
KINDS = 10

HELLO_BODY = struct.Struct("<qq")

_dumps = pickle.dumps
_loads = pickle.loads
_dill: Any = None
_DillPickler: Any = None


def _get_dill() -> Any:
    global _dill
    if _dill is None:
        import dill

        _dill = dill
    return _dill


def _import_module(name: str) -> Any:
    import importlib

    return importlib.import_module(name)


def dill_dumps(obj: Any) -> bytes:
    """Pickle by value what must go by value (lambdas, closures, local classes),
    with `recurse` so a function carries only the globals it uses, and every
    *module* by reference: dill would otherwise copy the state of any module
    that is not installed in site-packages (this one, in a checkout)."""
    global _DillPickler
    dill = _get_dill()
    if _DillPickler is None:
        import types

        class Pickler(dill.Pickler):  # type: ignore[misc, name-defined]
            dispatch = dill.Pickler.dispatch.copy()

        def save_module(pickler: Any, obj: types.ModuleType) -> None:
            pickler.save_reduce(_import_module, (obj.__name__,), obj=obj)

        Pickler.dispatch[types.ModuleType] = save_module
        _DillPickler = Pickler
    buf = io.BytesIO()
    _DillPickler(buf, protocol=5, recurse=True).dump(obj)
    return buf.getvalue()


def dumps(obj: Any) -> tuple[int, bytes]:
    """Serialise `obj`; returns (frame kind, payload).

    Raises NotPicklable, naming the offending type, if neither pickler can.
    """
    try:
        return MSG, _dumps(obj, 5)
    except Exception as first:
        try:
            return MSG_DILL, dill_dumps(obj)
        except Exception:
            raise NotPicklable(f"cannot send {type(obj).__name__} value: {first}") from first


def loads(kind: int, payload: Any) -> Any:
    """Deserialise a payload produced by `dumps`."""
    if kind == MSG:
        return _loads(payload)
    return _get_dill().loads(payload)


def frame(kind: int, payload: bytes = b"") -> bytes:
    """A whole frame: header then payload."""
    return HDR.pack((kind << KIND_SHIFT) | len(payload)) + payload
