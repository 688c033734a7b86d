"""One log for the whole node: every process's loguru records reach the main program.

Configure loguru in your main program as you always do (`logger.add(...)`,
a file, `serialize=True` for JSON, levels, filters): records logged in any
process of the node come out of *those* handlers, with the time, module,
function and line where they were logged, and with three extra fields:

- `otp_pid`: the process's Pid, as text (`<0.4211.5>`);
- `os_pid`: its OS pid (also in the record's `process`);
- `otp_name`: its registered name or behaviour label, when it has one.

How: a new process removes the loguru handlers it inherited by fork (they
would write to the same files from many processes, or duplicate records)
and installs one sink that sends each record, as JSON, in one datagram to
the node's log socket (`<rundir>/log`, in the private runtime directory).
The send is synchronous: once a `logger.error(...)` call has returned, the
record is in the kernel's queue, so a process that crashes (or is killed)
right after logging loses nothing. A thread in the main program reads the
socket and re-emits each record through the main program's loguru. Handlers
are never pickled into children.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import threading
import traceback
from typing import Any

from loguru import logger

__all__ = ["Collector", "install_forwarder", "set_identity"]

try:
    from loguru._datetime import datetime as _LoguruDatetime
except ImportError:  # pragma: no cover - loguru internals moved
    _LoguruDatetime = datetime.datetime  # type: ignore[misc, assignment]


def _local_tz() -> datetime.tzinfo | None:
    return datetime.datetime.now().astimezone().tzinfo


MAX_RECORD = 60_000  # characters of message text kept
MAX_DATAGRAM = 150_000  # bytes: a unix datagram must fit the socket's send buffer (~208 KiB)

_fwd_sock: socket.socket | None = None
_fwd_path = ""
_fwd_fd = -1


def forwarder_fd() -> int:
    """The forwarding socket's descriptor (a runtime fd: closed in forked children)."""
    return _fwd_fd


def _forward(message: Any) -> None:
    r = message.record
    exc = r["exception"]
    text = r["message"]
    if exc is not None and exc.type is not None:
        text += "\n" + "".join(traceback.format_exception(exc.type, exc.value, exc.traceback))
    if len(text) > MAX_RECORD:
        text = text[:MAX_RECORD] + "... [truncated]"
    extra = {
        k: (v if isinstance(v, (str, int, float, bool)) or v is None else repr(v))
        for k, v in r["extra"].items()
    }
    record = {
        "t": r["time"].timestamp(),
        "lv": r["level"].name,
        "m": text,
        "n": r["name"],
        "f": r["function"],
        "l": r["line"],
        "mod": r["module"],
        "fn": r["file"].name,
        "fp": r["file"].path,
        "pid": r["process"].id,
        "pn": r["process"].name,
        "x": extra,
    }
    data = json.dumps(record, ensure_ascii=False).encode()
    if len(data) > MAX_DATAGRAM:
        # A datagram over the socket's send buffer is refused whole, and a
        # dropped record is the one thing this module must never do: cut the
        # message by bytes, not characters, and say so.
        over = len(data) - MAX_DATAGRAM + 64
        raw = text.encode()
        record["m"] = raw[: max(len(raw) - over, 0)].decode(errors="ignore") + "... [truncated]"
        data = json.dumps(record, ensure_ascii=False).encode()
    sock = _fwd_sock
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.sendto(data, _fwd_path)


def install_forwarder(rundir: str, extra: dict[str, Any]) -> None:
    """Drop inherited handlers and forward every record to the node's log.

    Called once, in the node's root process: every process is forked from the
    root or from another process, and inherits the forwarding handler and its
    (connectionless, shareable) datagram socket. A new process only rebinds
    its identity (`set_identity`): `logger.add` costs ~3 ms, more than the
    whole rest of a spawn.
    """
    global _fwd_sock, _fwd_path, _fwd_fd
    if _fwd_sock is not None:
        _fwd_sock.close()
    _fwd_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    _fwd_fd = _fwd_sock.fileno()
    _fwd_path = os.path.join(rundir, "log")
    logger.remove()
    logger.configure(extra=extra)
    logger.add(_forward, level=0, format="{message}", catch=True)


def set_identity(extra: dict[str, Any]) -> None:
    """In a new process: the extra fields its records carry (Pid, OS pid, name)."""
    logger.configure(extra=extra)


class Collector:
    """The main program's side: a thread re-emitting records through its loguru."""

    def __init__(self, rundir: str) -> None:
        self.path = os.path.join(rundir, "log")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.stopping = False
        self.flushed = threading.Condition()
        self.last_flush = 0
        self.flush_seq = 0
        self.thread = threading.Thread(target=self.run, name="otp-log-collector", daemon=True)
        self.thread.start()

    def fileno(self) -> int:
        return self.sock.fileno()

    def run(self) -> None:
        while not self.stopping:
            try:
                data = self.sock.recv(1 << 17)
            except OSError:
                return
            if data == b"stop" or not data:
                return
            if data.startswith(b"flush:"):
                with self.flushed:
                    self.last_flush = int(data[6:])
                    self.flushed.notify_all()
                continue
            self.emit(data)

    def emit(self, data: bytes) -> None:
        try:
            d = json.loads(data)
        except ValueError:
            return
        from loguru._recattrs import RecordFile, RecordProcess

        def patch(r: Any) -> None:
            # loguru's own datetime class: it carries loguru's format tokens.
            r["time"] = _LoguruDatetime.fromtimestamp(d["t"], tz=_local_tz())
            r["name"] = d["n"]
            r["function"] = d["f"]
            r["line"] = d["l"]
            r["module"] = d["mod"]
            r["file"] = RecordFile(d["fn"], d["fp"])
            r["process"] = RecordProcess(d["pid"], d["pn"])
            r["extra"].update(d["x"])

        with contextlib.suppress(Exception):
            logger.patch(patch).log(d["lv"], d["m"])

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every record sent before this call has been emitted.

        Records of other processes sent *before* the call are queued ahead of
        the marker (one socket, FIFO), so this is exact for them.
        """
        with self.flushed:
            self.flush_seq += 1
            seq = self.flush_seq
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(b"flush:%d" % seq, self.path)
        with self.flushed:
            return self.flushed.wait_for(lambda: self.last_flush >= seq, timeout)

    def stop(self) -> None:
        """Drain what is queued, then end the thread (at node stop)."""
        self.stopping = True
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.sendto(b"stop", self.path)
        except OSError:
            # The socket file is gone: wake the thread's recv another way.
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
        self.thread.join(timeout=5)
        self.sock.setblocking(False)
        while True:
            try:
                data = self.sock.recv(1 << 17)
            except OSError:
                break
            if data != b"stop":
                self.emit(data)
        self.sock.close()
