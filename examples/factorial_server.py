"""The smallest GenServer: a factorial server.

    python examples/factorial_server.py

The computation runs in the server's own OS process; the caller blocks in
`gen_server.call` until the reply comes (or 5 s pass).
"""

from __future__ import annotations

import _path  # noqa: F401

import otp
from behaviours import GenServer, Reply, gen_server


class Factorial(GenServer):
    def init(self) -> int:
        return 0  # state: how many factorials this server computed

    def handle_call(self, request: object, from_: object, state: int) -> Reply:
        match request:
            case ("factorial", int(n)) if n >= 0:
                result = 1
                for i in range(2, n + 1):
                    result *= i
                return Reply(result, state + 1)
            case "served":
                return Reply(state, state)
        return Reply(("error", "bad request"), state)


def main() -> None:
    pid = Factorial.start_link(name="factorial")
    for n in (0, 5, 20):
        print(f"{n}! = {gen_server.call('factorial', ('factorial', n))}")
    print("served:", gen_server.call(pid, "served"))
    print(
        "info:",
        {
            k: v
            for k, v in otp.process_info(pid).items()
            if k in ("registered_name", "behaviour", "message_queue_len")
        },
    )
    gen_server.stop(pid)


if __name__ == "__main__":
    main()
