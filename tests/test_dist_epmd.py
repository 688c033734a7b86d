"""The epmd client against a real epmd, each test on a private epmd port."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from otp.dist import _epmd
from otp.dist._testing import Epmd, free_port
from otp.testing import wait_until

pytestmark = pytest.mark.erlang


@pytest.fixture
def epmd() -> Iterator[Epmd]:
    with Epmd().running() as e:
        yield e


def test_a_registered_name_is_found_with_its_port(epmd: Epmd) -> None:
    with _epmd.register("pyone", 40001, epmd=epmd.port) as reg:
        assert reg.creation > 0
        assert _epmd.port_please("pyone", epmd=epmd.port) == (40001, 6)
        assert _epmd.names(epmd=epmd.port) == {"pyone": 40001}
        shown = subprocess.run(
            ["epmd", "-port", str(epmd.port), "-names"], capture_output=True, text=True, timeout=10
        ).stdout
        assert "name pyone at port 40001" in shown


def test_closing_the_registration_unregisters_the_name(epmd: Epmd) -> None:
    reg = _epmd.register("pytwo", 40002, epmd=epmd.port)
    reg.close()
    assert wait_until(lambda: _epmd.port_please("pytwo", epmd=epmd.port) is None, 10)


def test_an_unknown_name_is_none(epmd: Epmd) -> None:
    assert _epmd.port_please("nobody", epmd=epmd.port) is None


def test_a_taken_name_is_refused(epmd: Epmd) -> None:
    with (
        _epmd.register("pythree", 40003, epmd=epmd.port),
        pytest.raises(_epmd.EpmdError, match="taken"),
    ):
        _epmd.register("pythree", 40004, epmd=epmd.port)


def test_erl_epmd_port_is_honoured(epmd: Epmd, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERL_EPMD_PORT", str(epmd.port))
    assert _epmd.epmd_port() == epmd.port
    with _epmd.register("pyfour", 40005):
        assert _epmd.port_please("pyfour") == (40005, 6)


def test_no_epmd_is_a_clear_error() -> None:
    with pytest.raises(_epmd.EpmdError, match="no epmd"):
        _epmd.port_please("x", epmd=free_port())
