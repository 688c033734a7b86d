"""The main program's threads may all use otp at once (a web server's workers).

One thread at a time polls the sockets without holding the main program's
lock; the others send meanwhile, or wait to rescan the mailbox. These tests
run many threads against real processes and check nothing is lost or mixed.
"""

from __future__ import annotations

import threading
from typing import Any

import otp
from behaviours import GenServer, Reply, gen_server


class Echo(GenServer):
    def handle_call(self, request: Any, from_: Any, state: Any) -> Any:
        return Reply(request, state)


def _run_threads(n: int, target: Any) -> list[BaseException]:
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            target(i)
        except BaseException as e:  # reported to the test, not lost in the thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    return errors


def test_many_threads_calling_one_server_each_get_their_own_replies() -> None:
    pid = Echo.start()

    def calls(i: int) -> None:
        for k in range(200):
            assert gen_server.call(pid, (i, k), timeout=30) == (i, k)

    assert _run_threads(8, calls) == []
    gen_server.stop(pid)


def _sender(parent: otp.Pid, tags: list[int], per_tag: int) -> None:
    for k in range(per_tag):
        for tag in tags:
            otp.send(parent, ("msg", tag, k))


def test_threads_selectively_receive_their_own_messages_in_order() -> None:
    tags = list(range(6))
    otp.self_pid()
    otp.spawn(_sender, otp.self_pid(), tags, 100)

    def recv(tag: int) -> None:
        for k in range(100):
            m = otp.receive(lambda m, tag=tag: m[0] == "msg" and m[1] == tag, timeout=30)
            assert m == ("msg", tag, k)  # per-sender order, seen from each thread

    assert _run_threads(len(tags), recv) == []


def test_a_thread_blocked_in_receive_does_not_block_the_others() -> None:
    pid = Echo.start()
    got: list[Any] = []

    def blocked() -> None:
        got.append(otp.receive(lambda m: m == "late", timeout=30))

    waiter = threading.Thread(target=blocked)
    waiter.start()
    # While it waits (and may be the poller), other threads call freely.
    assert _run_threads(4, lambda i: [gen_server.call(pid, i) for _ in range(50)]) == []
    otp.send(otp.self_pid(), "late")
    waiter.join(timeout=30)
    assert got == ["late"]
    gen_server.stop(pid)


def test_a_receive_timeout_in_one_thread_while_another_polls() -> None:
    def short(i: int) -> None:
        try:
            otp.receive(lambda m: m == ("never", i), timeout=0.2)
        except otp.ReceiveTimeout:
            return
        raise AssertionError("got a message that was never sent")

    assert _run_threads(5, short) == []
