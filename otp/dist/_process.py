"""The dist process: an ordinary otp process that owns a node's connections.

```python
import otp
from otp.dist._process import start

dist = start("py@127.0.0.1", cookie="SECRET")   # Pid of the dist process
# erl> gen_server:call({counter, 'py@127.0.0.1'}, {add, 5}).
```

It runs a `DistNode` (listener, epmd registration, one connection per peer,
ticks) in its own OS process and bridges what peers send into local
processes:

- `gen_server:call({Name, Node}, Req)` from a peer: the dist process makes
  the call on the local process registered as `Name` and sends the reply to
  the remote caller's Pid with its tag; if the local call fails (no such
  process, the server died), the remote caller's monitor gets
  MONITOR_P_EXIT with the reason, so its call ends at once as in Erlang.
- `gen_server:cast`: `gen_server.cast` to the local name.
- any other message to `{Name, Node}`: `otp.send(Name, msg)`.

Why the dist process makes the call itself: the runtime cannot yet send to
a Pid of another node, so a local server could not reply to a remote caller
directly. Calls are therefore made one at a time, in arrival order.

The reader threads of DistNode only queue work; every otp call happens on
this process's main thread, which the runtime expects.
"""

from __future__ import annotations

import queue
from typing import Any

from .. import _api, _runtime
from .._exceptions import CallError, NoProc, OTPError, ReceiveTimeout
from .._terms import Pid
from . import _etf
from ._etf import Atom, EncodeError
from ._node import DistNode

__all__ = ["start"]


def start(
    name: str,
    cookie: str | None = None,
    *,
    epmd: int | None = None,
    ticktime: float = 60.0,
    timeout: float = 10.0,
) -> Pid:
    """Spawn the dist process for node `name`; returns its Pid once it listens
    and is registered with epmd. Raises OTPError if it could not start."""
    me = _api.self_pid()
    pid = _api.spawn(_main, name, cookie, epmd, ticktime, me)
    reply = _runtime.receive(
        lambda m: type(m) is tuple and len(m) == 3 and m[0] == "$dist_started" and m[1] == pid,
        timeout,
    )
    if reply[2][0] != "ok":
        raise OTPError(f"distribution did not start: {reply[2][1]}")
    return pid


def _main(name: str, cookie: str | None, epmd: int | None, ticktime: float, parent: Pid) -> None:
    me = _api.self_pid()
    node = DistNode(name, cookie, epmd=epmd, ticktime=ticktime)
    work: queue.Queue[tuple[Any, str, Any]] = queue.Queue()
    node.on_reg_send = lambda sender, to, msg: work.put((sender, to, msg))
    # whereis reads the registry directory: safe from a reader thread.
    node.name_exists = lambda n: _api.whereis(n) is not None
    try:
        node.start()
    except Exception as e:
        _runtime.send(parent, ("$dist_started", me, ("error", f"{type(e).__name__}: {e}")))
        return
    _runtime.send(parent, ("$dist_started", me, ("ok", node.port)))
    try:
        while True:
            try:
                item = work.get(timeout=0.2)
            except queue.Empty:
                # Nothing from the network: let the runtime act on exit
                # signals (a receive is where they take effect).
                try:
                    _runtime.receive(lambda m: False, 0)
                except ReceiveTimeout:
                    pass
                continue
            _deliver(node, *item)
    finally:
        node.stop()


def _deliver(node: DistNode, sender: Any, to: str, msg: Any) -> None:
    from behaviours import gen_server  # late: behaviours imports otp

    match msg:
        case ("$gen_call", (Pid() as frm, tag), request):
            try:
                value = gen_server.call(to, request, None)
            except NoProc:
                node.monitor_exit(to, frm, Atom("noproc"))
                return
            except CallError as e:
                node.monitor_exit(to, frm, _reason(getattr(e, "reason", "call_failed")))
                return
            try:
                node.send(frm, (tag, value))
            except EncodeError as e:
                node.monitor_exit(to, frm, (Atom("badarg"), str(e)))
        case ("$gen_cast", request):
            try:
                gen_server.cast(to, request)
            except OTPError:
                pass
        case _:
            try:
                _runtime.send(to, msg)
            except OTPError:
                pass  # a send to a name nobody holds is dropped for a remote sender


def _reason(reason: Any) -> Any:
    # Exit reasons become atoms where Erlang has them as atoms ("normal",
    # "shutdown"...); a reason with no term form (a Crash) travels as text.
    if type(reason) is str:
        return Atom(reason)
    try:
        _etf.encode(reason)
        return reason
    except EncodeError:
        return repr(reason)
