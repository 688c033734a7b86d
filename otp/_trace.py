"""Trace ids: follow one request across every process that handled it.

A trace id is a short string that travels with every `gen_server.call` and
`gen_server.cast` (and every `gen_statem.call`, `otp.debug` request, any call
made through the gen layer) sent while a trace is active, and onward with
the calls and casts that the handler makes. Every loguru record logged
while the request is handled (in the caller's block, and in the GenServer
callbacks that handle it, in their own processes) carries it as
`record["extra"]["trace_id"]`; the node's central log (otp._logging) brings
those records to the main program, so one grep (or one JSON filter) shows a
request's whole path.

## Example

```python
import otp
from loguru import logger

logger.add("node.log", serialize=True)          # JSON lines, with extra.trace_id

with otp.tracing() as tid:                      # a fresh id, e.g. "9f1c2e7a04b3d615"
    logger.info("GET /cart")                    # trace_id=tid
    gen_server.call("cart", ("get", user))      # the cart server's logs: trace_id=tid
                                                # and the storage server it calls: tid
otp.trace_id()                                  # None again

with otp.tracing(request.headers["X-Request-Id"]):   # continue an outside trace
    ...
```

Inside a callback that handles a traced request, `otp.trace_id()` is that
request's id; records with no trace have `extra["trace_id"] = None` (the key
is always there, so a format string may use `{extra[trace_id]}`).

## What carries it, and what does not

- Calls: the caller's `from_` becomes `(caller, tag, trace_id)`. Every
  behaviour's loop reads only `from_[0]` and `from_[1]`, so the reply path
  is unchanged. GenServer runs the callback under the id.
- Casts: the message stays `("$gen_cast", msg)`, but its tag is a
  `TracedTag`: a `str` equal to `"$gen_cast"` that also holds the id. Loops
  that do not look at it treat it as a plain cast.
- Not carried: plain `otp.send` messages, replies, exit signals, and the
  processes a handler spawns (each new process starts with no trace).
- GenServer sets the id while its callbacks run (handle_call, handle_cast,
  and the terminate and crash report they may lead to). GenStatem runs the
  event of a traced call or cast under its id (and what that event inserts
  or sets off, until the next external event); GenEvent runs a traced call
  (`call`, `sync_notify`) under its id, in every handler it reaches.

The id is per process, not per thread: in a main program whose threads all
use otp (which is supported: see otp._runtime, `_wait_threaded`), a `tracing`
block in one thread applies to the calls any thread makes meanwhile.

## Cost

Nothing when no trace is active: a call checks one attribute. A traced call
sends one more short string; a traced cast pickles its tag by reference.

## How the id reaches the logs

At import, otp installs a loguru *patcher* (`logger.configure(patcher=...)`)
that copies the current process's trace id into each record's extra. Every
OTP process inherits it by fork. A patcher configured before `import otp` is
kept and called after ours; one configured later replaces ours in that
process: call `otp._trace.patch_record(record)` from yours to keep the ids.
"""

from __future__ import annotations

import secrets
from types import TracebackType
from typing import Any

from loguru import logger

from . import _runtime

__all__ = ["TracedTag", "new_trace_id", "patch_record", "trace_id", "tracing"]


def new_trace_id() -> str:
    """A fresh random trace id: 16 hex digits (64 bits, as W3C trace parents' span ids)."""
    return secrets.token_hex(8)


def trace_id() -> str | None:
    """The trace id of this process right now: the one of the request being
    handled, or of the enclosing `tracing` block; None when there is none."""
    p = _runtime._proc
    return None if p is None else p.trace


class tracing:
    """`with otp.tracing(trace_id=None) as tid:` run a block under a trace id.

    Every call and cast made in the block (and, onward, by the handlers of
    those calls) carries `tid`, and every loguru record logged meanwhile by
    those processes has `extra["trace_id"] == tid`. Without an argument a
    fresh id is made (`new_trace_id`); pass one to continue an outside trace
    (an HTTP request id, a parent span). Blocks nest: on leaving, the previous
    id (or none) is back.
    """

    __slots__ = ("_old", "id")

    def __init__(self, trace_id: str | None = None) -> None:
        if trace_id is None:
            trace_id = new_trace_id()
        elif not isinstance(trace_id, str) or not trace_id:
            raise TypeError(f"a trace id is a non-empty str, not {trace_id!r}")
        self.id = trace_id
        self._old: str | None = None

    def __enter__(self) -> str:
        p = _runtime.current()
        self._old = p.trace
        p.trace = self.id
        return self.id

    def __exit__(
        self, tp: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        p = _runtime._proc
        if p is not None:
            p.trace = self._old


class TracedTag(str):
    """A message tag (`"$gen_cast"`) that carries a trace id.

    It compares, hashes and prints as the plain tag, so a loop that does not
    know of tracing handles the message as usual; a loop that does reads
    `tag.trace_id` (see GenServer's loop).
    """

    trace_id: str

    def __new__(cls, tag: str, trace_id: str) -> TracedTag:
        self = super().__new__(cls, tag)
        self.trace_id = trace_id
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (TracedTag, (str(self), self.trace_id))


# ---------------------------------------------------------------- loguru


_previous_patcher: Any = None


def patch_record(record: Any) -> None:
    """The loguru patcher: this process's current trace id into `extra`.

    The key is always set (None without a trace). That matters for records
    that other processes logged: the main program's log collector re-emits
    them with *their* extra, which then replaces what this patcher put there
    from the main program's own trace id.
    """
    p = _runtime._proc
    record["extra"]["trace_id"] = None if p is None else p.trace
    if _previous_patcher is not None:
        _previous_patcher(record)


def _install_patcher() -> None:
    global _previous_patcher
    core = getattr(logger, "_core", None)
    previous = getattr(core, "patcher", None)
    if previous is patch_record:
        return
    _previous_patcher = previous
    logger.configure(patcher=patch_record)


_install_patcher()
