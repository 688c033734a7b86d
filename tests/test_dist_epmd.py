"""The epmd client against a real epmd and against our own port mapper
(otp.dist._portmapper), each test on a private port: the same calls must
get the same answers from both."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from otp.dist import _epmd, _portmapper
from otp.dist._testing import Epmd, free_port, require_erl
from otp.testing import wait_until

pytestmark = pytest.mark.erlang


class _Ours:
    """Our port mapper, shaped like `Epmd` for these tests (`port`, `env`)."""

    def __init__(self) -> None:
        require_erl()  # the tests below also run `epmd -names` against it
        self.port = free_port()
        self.env = dict(os.environ, ERL_EPMD_PORT=str(self.port))


@pytest.fixture(params=["epmd", "ours"])
def epmd(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "epmd":
        with Epmd().running() as e:
            yield e
    else:
        ours = _Ours()
        with _portmapper.PortMapper(port=ours.port):
            yield ours


def test_a_registered_name_is_found_with_its_port(epmd: Any) -> None:
    with _epmd.register("pyone", 40001, epmd=epmd.port) as reg:
        assert reg.creation > 0
        assert _epmd.port_please("pyone", epmd=epmd.port) == (40001, 6)
        assert _epmd.names(epmd=epmd.port) == {"pyone": 40001}
        shown = subprocess.run(
            ["epmd", "-port", str(epmd.port), "-names"], capture_output=True, text=True, timeout=10
        ).stdout
        assert "name pyone at port 40001" in shown


def test_closing_the_registration_unregisters_the_name(epmd: Any) -> None:
    reg = _epmd.register("pytwo", 40002, epmd=epmd.port)
    reg.close()
    assert wait_until(lambda: _epmd.port_please("pytwo", epmd=epmd.port) is None, 10)


def test_an_unknown_name_is_none(epmd: Any) -> None:
    assert _epmd.port_please("nobody", epmd=epmd.port) is None


def test_a_taken_name_is_refused(epmd: Any) -> None:
    with (
        _epmd.register("pythree", 40003, epmd=epmd.port),
        pytest.raises(_epmd.EpmdError, match="taken"),
    ):
        _epmd.register("pythree", 40004, epmd=epmd.port)


def test_erl_epmd_port_is_honoured(epmd: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERL_EPMD_PORT", str(epmd.port))
    assert _epmd.epmd_port() == epmd.port
    with _epmd.register("pyfour", 40005):
        assert _epmd.port_please("pyfour") == (40005, 6)


def test_no_epmd_is_a_clear_error() -> None:
    with pytest.raises(_epmd.EpmdUnreachable, match="no epmd"):
        _epmd.port_please("x", epmd=free_port())
    assert issubclass(_epmd.EpmdUnreachable, _epmd.EpmdError)
