"""Hot code upgrade: a running server changes code and state shape under load.

A counter server runs `counter.py`, version 1 (`counter_v1.py`: its state is
an int). A client process casts and calls it in a loop. While it does, the
demo writes version 2 (`counter_v2.py`: the state becomes a dict) over
`counter.py` and calls `otp.upgrade(counter)`:

- the server is suspended (the client's messages wait in its mailbox),
- it reloads `counter` in its own OS process, moves to the new `Counter`
  class, and `code_change(1, state, extra)` turns the int into the dict,
- it resumes: same Pid, same OS process, no message lost.

The client never sees an error, only answers from v1 and then from v2; the
total counts every cast it sent. Then the demo writes v1 back and downgrades
(`code_change(("down", 1), ...)` of v2 turns the dict back into an int).

Run it:

    python examples/hot_upgrade/demo.py

Python's `importlib.reload` reads the module's source again, so the new
version has to be on disk under the module's name: here, in a temporary
directory put on `sys.path` before the node starts (so every process of the
node can import it).
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
import tempfile
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
_root = os.path.dirname(os.path.dirname(HERE))
if os.path.exists(os.path.join(_root, "otp", "__init__.py")) and _root not in sys.path:
    sys.path.insert(0, _root)  # run from a checkout: use the code beside it

import otp  # noqa: E402
from behaviours import gen_server  # noqa: E402


def client(server: Any, parent: otp.Pid) -> None:
    """Cast and call in a loop; tell the parent each new version seen."""
    sent, calls, errors, seen = 0, 0, [], []
    while True:
        try:
            gen_server.cast(server, ("incr", "client-1"))
            sent += 1
            version, _total = gen_server.call(server, "get", timeout=30)
            calls += 1
            if not seen or seen[-1] != version:
                seen.append(version)
                otp.send(parent, ("seen", version))
        except Exception as e:  # shown at the end: there should be none
            errors.append(repr(e))
        try:
            otp.receive(lambda m: m == "stop", timeout=0)
            break
        except otp.ReceiveTimeout:
            pass
    otp.send(parent, ("report", sent, calls, seen, errors))


def install(version: str, directory: str) -> None:
    """Write counter_vN.py over `counter.py` in `directory`."""
    target = os.path.join(directory, "counter.py")
    shutil.copyfile(os.path.join(HERE, f"counter_{version}.py"), target)
    importlib.invalidate_caches()


def main() -> None:
    directory = tempfile.mkdtemp(prefix="hot-upgrade-")
    sys.path.insert(0, directory)
    try:
        install("v1", directory)
        import counter  # v1

        server = counter.Counter.start_link(name="counter")
        me = otp.self_pid()
        c = otp.spawn_link(client, "counter", me)
        otp.receive(lambda m: m == ("seen", "v1"), timeout=30)
        print("client sees v1:", gen_server.call("counter", "get"))

        install("v2", directory)
        report = otp.upgrade(counter, extra=None)
        print("upgrade report:", report)
        assert report["upgraded"] == [server] and not report["failed"]
        otp.receive(lambda m: m == ("seen", "v2"), timeout=30)
        print("client sees v2:", gen_server.call("counter", "get"))
        print("state now:", otp.debug.get_state("counter"))

        otp.send(c, "stop")
        _, sent, calls, seen, errors = otp.receive(
            lambda m: type(m) is tuple and m[0] == "report", timeout=30
        )
        final = gen_server.call("counter", "get")
        print(f"client: {sent} casts, {calls} calls, versions seen {seen}, errors {errors}")
        print(f"server total {final[1]} == casts sent {sent}: {final[1] == sent}")
        print("same server:", otp.whereis("counter") == server)

        install("v1", directory)
        report = otp.upgrade(counter, downgrade=True)
        print("downgrade report:", report)
        print("after the downgrade:", gen_server.call("counter", "get"))
        gen_server.stop("counter")
    finally:
        sys.path.remove(directory)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
