"""The public surface: what API.md promises exists, and is exported once.

Modelled on httpx's test of `__all__` and trio's "exported exactly once".
"""

from __future__ import annotations

import importlib

import pytest

import behaviours
import otp

API_OTP = [
    "spawn",
    "spawn_link",
    "spawn_monitor",
    "self_pid",
    "send",
    "receive",
    "link",
    "unlink",
    "monitor",
    "demonitor",
    "exit",
    "trap_exit",
    "register",
    "unregister",
    "whereis",
    "registered",
    "is_process_alive",
    "make_ref",
    "send_after",
    "cancel_timer",
    "processes",
    "process_info",
    "EXIT",
    "DOWN",
    "Pid",
    "Ref",
    "Crash",
    "Exit",
    "OTPError",
    "NoProc",
    "CallTimeout",
    "CallExit",
    "ReceiveTimeout",
    "AlreadyStarted",
    "BadReturn",
    "NotPicklable",
    "node",
    "debug",
]
API_BEHAVIOURS = [
    "GenServer",
    "Init",
    "Reply",
    "NoReply",
    "Stop",
    "Ignore",
    "gen_server",
    "Supervisor",
    "ChildSpec",
    "SupFlags",
    "supervisor",
    "GenStatem",
    "gen_statem",
    "GenEvent",
    "EventHandler",
    "gen_event",
]


@pytest.mark.parametrize("name", API_OTP)
def test_otp_exports_what_the_api_promises(name: str) -> None:
    assert name in otp.__all__
    assert hasattr(otp, name)


@pytest.mark.parametrize("name", API_BEHAVIOURS)
def test_behaviours_exports_what_the_api_promises(name: str) -> None:
    assert name in behaviours.__all__
    assert hasattr(behaviours, name)


@pytest.mark.parametrize("pkg", [otp, behaviours])
def test_all_is_sorted_unique_and_resolvable(pkg: object) -> None:
    names = pkg.__all__  # type: ignore[attr-defined]
    assert len(names) == len(set(names))
    for name in names:
        assert hasattr(pkg, name), name


def test_exceptions_form_one_tree_rooted_at_otperror() -> None:
    for name in otp.__all__:
        obj = getattr(otp, name)
        if isinstance(obj, type) and issubclass(obj, BaseException) and obj is not otp.Exit:
            assert issubclass(obj, otp.OTPError), name
    assert issubclass(otp.CallTimeout, TimeoutError)
    assert not issubclass(otp.Exit, Exception)  # a deliberate exit is not an error


def test_public_classes_name_their_public_module() -> None:
    # Tracebacks and reprs say otp.NoProc, not otp._exceptions.NoProc.
    assert otp.NoProc.__module__ == "otp"
    assert otp.Pid.__module__ == "otp"


@pytest.mark.parametrize("mod", ["otp.debug", "otp.node", "otp.testing"])
def test_public_submodules_import(mod: str) -> None:
    importlib.import_module(mod)
