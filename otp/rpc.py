"""Remote procedure calls into Erlang nodes, through their `rex` server.

```python
import otp

otp.node.start(name="py@127.0.0.1", cookie="SECRET")
otp.rpc.call("e@127.0.0.1", "lists", "reverse", [[1, 2, 3]])   # [3, 2, 1]
otp.rpc.call("e@127.0.0.1", "erlang", "node", [])              # Atom('e@127.0.0.1')
```

`call` is Erlang's `rpc:call(Node, Module, Function, Args)`: a
`gen_server:call` to the process registered as `rex` on `node`, which runs
`apply(Module, Function, Args)` there and replies with the result. Module and
function names travel as atoms; `args` is a list of terms (see the mapping in
`otp.dist._etf`: a Python `str` is an Erlang binary, `otp.Atom("x")` an atom,
a list of small ints a charlist). Output the function prints goes to this
node's dist process, which acknowledges it and drops it.

Every Erlang and Elixir node runs `rex`; a Python node does not (there is no
`apply` of arbitrary code here, on purpose), so `call` to a Python node raises
`NoProc`. The cookie lets its holder run any code on an Erlang node this way
(distribution.md): a cluster's cookie is a password to all of it.
"""

from __future__ import annotations

from typing import Any

from . import _call, _runtime
from ._exceptions import CallError
from .dist import _route
from .dist._etf import Atom

__all__ = ["BadRpc", "call"]


class BadRpc(CallError):
    """`rpc:call` returned `{badrpc, Reason}`: the function raised, or the
    module or function does not exist there; `reason` is Erlang's term."""

    def __init__(self, reason: Any) -> None:
        self.reason = reason
        super().__init__(f"badrpc: {reason!r}")


def call(node: str, module: str, function: str, args: list[Any], timeout: float = 5.0) -> Any:
    """Run `module:function(*args)` on `node` and return its result.

    Raises:
        BadRpc: the call failed there (`{badrpc, Reason}`), e.g. an exception
            (`("EXIT", ...)`) or an undefined function.
        otp.CallExit: `"noconnection"`: the node is unreachable or was lost.
        otp.CallTimeout: no answer within `timeout` seconds.
        otp.NoProc: nothing is registered as `rex` there (a Python node).
    """
    p = _runtime.current()
    d = _route._dist(p)
    # The group leader of the remote call: our dist process answers io requests.
    gl = d[0] if d is not None else p.pid
    request = (Atom("call"), Atom(module), Atom(function), list(args), gl)
    result = _call.call(("rex", node), "$gen_call", request, timeout)
    if type(result) is tuple and len(result) == 2 and result[0] == "badrpc":
        raise BadRpc(result[1])
    return result
