"""The runtime's reports, through loguru.

Every record is bound with the reporting process's Pid and OS pid, so that a
log read later says who spoke. Crash reports skip the clean exit reasons, as
proc_lib does: `normal`, `shutdown`, `("shutdown", _)`.
"""

from __future__ import annotations

import os
from typing import Any

from loguru import logger

__all__ = ["is_clean_exit", "log_crash", "log_warning", "logger"]


def is_clean_exit(reason: Any) -> bool:
    """True for the reasons OTP does not report: normal, shutdown, (shutdown, _)."""
    if reason == "normal" or reason == "shutdown":
        return True
    return isinstance(reason, tuple) and len(reason) == 2 and reason[0] == "shutdown"


def _short_reason(reason: Any) -> str:
    from ._terms import Crash

    if isinstance(reason, Crash):
        return f"{reason.type}: {reason.message}"
    return repr(reason)


def log_crash(pid: Any, name: Any, reason: Any, info: dict[str, Any] | None = None) -> None:
    """A crash report (SASL's 'CRASH REPORT'): once per process that ends abnormally."""
    from ._terms import Crash

    info = info or {}
    lines = [
        "CRASH REPORT",
        f"    process: {name + ' ' if name else ''}{pid} (os pid {os.getpid()})",
    ]
    if info.get("behaviour"):
        lines.append(f"    behaviour: {info['behaviour']}")
    if info.get("initial_call"):
        lines.append(f"    initial call: {info['initial_call']}")
    for key in ("last_message", "state"):
        if key in info:
            lines.append(f"    {key.replace('_', ' ')}: {info[key]!r}")
    lines.append(f"    exit reason: {_short_reason(reason)}")
    if isinstance(reason, Crash) and reason.traceback:
        lines.append(reason.traceback.rstrip())
    logger.bind(otp_pid=str(pid), os_pid=os.getpid()).opt(depth=1).error("\n".join(lines))


def log_warning(text: str) -> None:
    logger.bind(os_pid=os.getpid()).opt(depth=1).warning(text)


def log_info(text: str) -> None:
    logger.bind(os_pid=os.getpid()).opt(depth=1).info(text)
