"""Small facts read from the OS about processes: start times, liveness, prctl."""

from __future__ import annotations

import ctypes
import ctypes.util
import resource

__all__ = ["is_os_process_alive", "prctl_child_subreaper", "prctl_pdeathsig", "start_time"]

PF_EXITING = 0x00000004

_libc = None


def _get_libc() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    return _libc


def _stat_fields(ospid: int) -> list[str] | None:
    try:
        with open(f"/proc/{ospid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after
    # the last ')'. What follows starts at field 3 (state).
    return data[data.rfind(b")") + 2 :].decode().split()


def start_time(ospid: int) -> int:
    """The process's start time in clock ticks since boot (field 22), or 0 if gone."""
    f = _stat_fields(ospid)
    return int(f[19]) if f else 0


def is_os_process_running(ospid: int) -> bool:
    """True while the OS process runs and has not begun to exit (nor is a zombie)."""
    f = _stat_fields(ospid)
    if not f or f[0] in ("Z", "X", "x"):
        return False
    return not int(f[6]) & PF_EXITING


def is_os_process_alive(ospid: int, serial: int) -> bool:
    """True while the process (ospid, start time `serial`) runs and has not begun to exit.

    The kernel sets PF_EXITING at the very start of do_exit, before it closes
    the process's descriptors; peers learn of a death from those closes. So a
    process that a DOWN has been delivered for always reads as dead here.
    """
    f = _stat_fields(ospid)
    if not f or int(f[19]) != serial:
        return False
    if f[0] in ("Z", "X", "x"):
        return False
    return not int(f[6]) & PF_EXITING


def prctl_child_subreaper() -> None:
    """Orphaned descendants are reparented to this process (PR_SET_CHILD_SUBREAPER)."""
    _get_libc().prctl(36, 1, 0, 0, 0)


def prctl_pdeathsig(sig: int) -> None:
    """Deliver `sig` to this process when its parent thread dies (PR_SET_PDEATHSIG)."""
    _get_libc().prctl(1, sig, 0, 0, 0)


def raise_nofile_limit() -> None:
    """Raise the soft open-files limit to the hard one: a supervisor of many
    children holds one descriptor per child."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass
