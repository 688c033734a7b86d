"""The distribution tests' shared fixtures (a pytest plugin, loaded by
conftest.py): a private epmd, a fresh cookie, this test's node made
distributed, and a second Python node as its own program.

Order matters at teardown: pytest ends `local` (this node stops) before
`epmd` (the port mapper it registered with), because `local` depends on it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from dist_helpers import Peer, python_peer

import otp
from otp.dist._testing import Epmd, new_cookie


@pytest.fixture
def epmd() -> Iterator[Epmd]:
    """An epmd of this test's own, on a private port (parallel runs never meet)."""
    with Epmd().running() as e:
        yield e


@pytest.fixture
def cookie() -> str:
    return new_cookie()


@pytest.fixture
def local(epmd: Epmd, cookie: str) -> Iterator[str]:
    """This test's node, distributed as `py<ospid>@127.0.0.1`; its name."""
    name = f"py{os.getpid()}@127.0.0.1"
    otp.node.start(name=name, cookie=cookie, epmd=epmd.port)
    try:
        yield name
    finally:
        otp.node.stop()


@pytest.fixture
def peer(epmd: Epmd, cookie: str) -> Iterator[Peer]:
    """A second Python node, its own program (tests/dist_peer.py: `counter`, `echo`)."""
    with python_peer(f"peer{os.getpid()}@127.0.0.1", cookie, epmd) as p:
        yield p
