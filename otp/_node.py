"""The node: its runtime directory, its root process, spawning, and its end.

Shape of a node (what `pstree` shows):

```
main program (your Python process; a Process too, with a Pid)
└── otp: node root        child subreaper, zygote, process-group leader
    ├── otp: app_sup ...  processes spawned by the main program
    │   └── otp: worker   spawned by an OTP process: forked by it, reaped by it
    └── ...
```

Why a root process: the main program may have threads (loguru's enqueue
thread, a web framework's pool...), and forking a threaded process is unsafe.
So the main program never forks its processes: the root, forked once while
the node starts, forks them on request and passes the main program its end of
a socketpair to each (SCM_RIGHTS). OTP processes are single-threaded by
construction and fork their own children directly, which makes a supervisor
the OS parent of its children.

Why nothing outlives the node: the root is a child subreaper (orphans come
back to it), the leader of the process group every node process is in, and
watches the main program through a socket (EOF when it dies, even by
SIGKILL) and a parent-death signal. When the main program goes, the root
removes the runtime directory and SIGKILLs the group. Every process also
holds a "lifeline" pipe from the root and exits when the root is gone.
"""

from __future__ import annotations

import _signal
import atexit
import contextlib
import fcntl
import gc
import os
import pickle
import select
import shutil
import signal
import socket
import stat
import sys
import tempfile
import threading
from collections.abc import Callable
from typing import Any

import setproctitle

from . import _codec, _logging, _runtime
from ._exceptions import NoProc, OTPError, ReceiveTimeout, StartError
from ._proc_os import (
    prctl_child_subreaper,
    prctl_pdeathsig,
    raise_nofile_limit,
)
from ._runtime import Conn, Process, sock_path
from ._terms import DOWN, Pid

__all__ = ["Node", "ensure_started", "start", "stop"]

_start_lock = threading.RLock()
_collector: _logging.Collector | None = None
_atexit_registered = False
_STOP = "stop"
_SIGCHLD = int(signal.SIGCHLD)
_SIGTERM = int(signal.SIGTERM)
_SIG_DFL = int(signal.SIG_DFL)


def base_dir_path() -> str:
    """Where this user's node directories live: $XDG_RUNTIME_DIR/otp, else a
    per-user directory in /dev/shm, else one under the temp dir."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return os.path.join(xdg, "otp")
    # /dev/shm before the temp dir: a memory file system. Every spawn binds,
    # renames and unlinks a socket file there, and on a disk file system
    # (ext4 here) those inode operations showed in a supervisor's start.
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK | os.X_OK):
        return f"/dev/shm/otp-{os.getuid()}"
    return os.path.join(tempfile.gettempdir(), f"otp-{os.getuid()}")


def _base_dir() -> str:
    """The per-user directory that holds node directories: private, ours."""
    base = base_dir_path()
    try:
        os.mkdir(base, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(base)
    import stat as _stat

    if not _stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise OTPError(
            f"runtime directory {base} is not a private directory of uid {os.getuid()} "
            "(mode 0700): refusing to use it"
        )
    return base


def _flush_stdio() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def _title(title: str) -> None:
    setproctitle.setproctitle(title if title.startswith("otp: ") else f"otp: {title}")


# ---------------------------------------------------------------- starting


def ensure_started() -> Process:
    with _start_lock:
        p = _runtime._proc
        if p is None:
            p = start()
        return p


def start(name: str | None = None) -> Process:
    """Start the local node (the first use of any otp call does it for you).

    Args:
        name: the node's name; only a label until the node is distributed.
    """
    global _atexit_registered
    with _start_lock:
        if _runtime._proc is not None:
            raise OTPError("the node is already started")
        if name:
            _runtime.NODE_NAME = name
        raise_nofile_limit()
        _runtime.set_fd_base()
        rundir = tempfile.mkdtemp(prefix=f"node-{os.getpid()}-", dir=_base_dir())
        os.mkdir(os.path.join(rundir, "names"), 0o700)
        ospid = os.getpid()
        me = Pid((_runtime.NODE_NAME, ospid, _runtime.new_serial()))
        ls = _runtime.high_socket(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
        ls.bind(sock_path(rundir, me))
        ls.listen(socket.SOMAXCONN)
        ls.setblocking(False)
        p = Process(me, rundir, ls, is_main=True)
        p.info["initial_call"] = "main program"
        main_mod = sys.modules.get("__main__")
        p.info["_main_globals"] = len(vars(main_mod)) if main_mod else -1
        zmain, zroot = socket.socketpair()
        in_main_thread = threading.current_thread() is threading.main_thread()
        _flush_stdio()
        _runtime._forking = True
        try:
            rpid = os.fork()
        finally:
            _runtime._forking = False
        if rpid == 0:
            try:
                p.close_in_child({zroot.fileno()})
                zmain.detach()
                _release_inherited({zroot.fileno()})
                _root_main(rundir, zroot, in_main_thread)
            finally:
                os._exit(0)
        zroot.close()
        global _collector
        # After the root's fork: the root (and so every process) must not
        # inherit the collector's thread or socket.
        _collector = _logging.Collector(rundir)
        p.zygote = zmain
        p.info["root_os_pid"] = rpid
        with open(os.path.join(rundir, "node"), "w") as f:
            f.write(f"{_runtime.NODE_NAME}\n{ospid}\n{rpid}\n")
        _runtime._proc = p
        if not _atexit_registered:
            atexit.register(_atexit_stop)
            _atexit_registered = True
        if in_main_thread and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _sigterm_handler)
        return p


def _sigterm_handler(signum: int, frame: Any) -> None:
    # Unwind the main program as Ctrl-C does, so that atexit stops the node
    # in order. (The default action would end the program without atexit.)
    raise SystemExit(128 + signum)


def _atexit_stop() -> None:
    try:
        stop()
    except Exception:
        pass


# ---------------------------------------------------------------- spawning


def spawn(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    link: bool = False,
    title: str | None = None,
) -> Pid:
    """Start `fn(*args, **kwargs)` in a new OS process; returns its Pid at once."""
    p = _runtime._proc or ensure_started()
    title = title or getattr(fn, "__qualname__", None) or repr(fn)
    if p.is_main or threading.active_count() > 1:
        child = _spawn_via_root(p, fn, args, kwargs, link, title)
    else:
        child = _spawn_direct(p, fn, args, kwargs, link, title)
    if p.is_main:
        p.spawned.append(child)
        if len(p.spawned) > 256 and len(p.spawned) > 2 * p.info.get("_spawned_live", 0):
            p.spawned = [x for x in p.spawned if _runtime.is_alive(x)]
            p.info["_spawned_live"] = len(p.spawned)
    return child


def _bind_temp_listener(rundir: str, tag: str) -> tuple[socket.socket, str]:
    """The child's inbox, bound by the spawner *before* the fork.

    So the Pid that spawn returns can be connected to at once, even before
    the child has run a single instruction; the file is renamed to the Pid's
    path once the OS pid is known.
    """
    path = f"{rundir}/.new-{tag}"
    ls = _runtime.high_socket(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    ls.bind(path)
    ls.listen(socket.SOMAXCONN)
    return ls, path


def _take_listener(owner: Any, rundir: str, tag: str) -> tuple[socket.socket, str]:
    """A listener for the next child: the spare bound after the last spawn, or
    a new one. Binding costs ~0.1 ms; done ahead, it is off the spawn path."""
    spare = owner.spare
    if spare is not None:
        owner.spare = None
        return spare  # type: ignore[no-any-return]
    return _bind_temp_listener(rundir, tag)


def _fork_child(
    owner: Any,
    tag: str,
    close_parent: Callable[[set[int]], None],
    spawner: Pid,
    lifeline: int,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    link: bool,
    title: str,
) -> tuple[Pid, int]:
    """Fork a process (from an OTP process or the root): (its Pid, our end of
    the socketpair that connects it to `spawner`)."""
    a, b = socket.socketpair()
    ls, tmp = _take_listener(owner, owner.rundir, tag)
    serial = _runtime.new_serial()
    _flush_stdio()
    _runtime._forking = True
    try:
        ospid = os.fork()
    finally:
        _runtime._forking = False
    if ospid == 0:
        # The spawner's end must not stay open in the child: it is not in the
        # spawner's runtime fds yet, so close_in_child would keep it, and the
        # child would never see EOF (nor the spawner's death) on its own end.
        a.close()
        _child_main(
            close_parent,
            owner.rundir,
            spawner,
            serial,
            b,
            ls,
            lifeline,
            fn,
            args,
            kwargs,
            link,
            title,
        )
    b.close()
    ls.close()
    child = Pid((_runtime.NODE_NAME, ospid, serial))
    os.rename(tmp, sock_path(owner.rundir, child))
    return child, a.detach()


def _spawn_direct(
    p: Process,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    link: bool,
    title: str,
) -> Pid:
    p.ensure_sigchld()
    child, fd = _fork_child(
        p,
        f"{p.pid.id}-{next(p.seq)}",
        p.close_in_child,
        p.pid,
        p.lifeline,
        fn,
        args,
        kwargs,
        link,
        title,
    )
    os.set_blocking(fd, False)
    p.add_conn(Conn(fd, child, welcomed=True))
    p.children[child.id] = child
    if link:
        p.links.add(child)
    p.spare = _bind_temp_listener(p.rundir, f"{p.pid.id}-{next(p.seq)}")
    return child


def _child_main(
    close_parent: Callable[[set[int]], None],
    rundir: str,
    spawner: Pid,
    serial: int,
    b: socket.socket,
    ls: socket.socket,
    lifeline: int,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    link: bool,
    title: str,
) -> None:
    """The first moments of a new process, right after fork. Never returns."""
    try:
        close_parent({b.fileno(), ls.fileno(), lifeline})
        gc.enable()
        signal.set_wakeup_fd(-1)
        # _signal's, not signal's: the latter converts numbers and handlers
        # to enums and back, Python code whose every first touch in a new
        # process copies a page (this runs once in every process).
        _signal.signal(_SIGCHLD, _SIG_DFL)
        _signal.signal(_SIGTERM, _SIG_DFL)
        ospid = os.getpid()
        me = Pid((_runtime.NODE_NAME, ospid, serial))
        ls.setblocking(False)
        p = Process(me, rundir, ls, is_main=False)
        if lifeline >= 0:
            p.lifeline = lifeline
            p.ep.register(lifeline, select.EPOLLIN)
        b.setblocking(False)
        p.add_conn(Conn(b.detach(), spawner, welcomed=True))
        if link:
            p.links.add(spawner)
        p.info["parent"] = spawner
        p.info["initial_call"] = getattr(fn, "__qualname__", repr(fn))
        _runtime._proc = p
        _title(f"{title} {me}")
        _logging.set_identity({"otp_pid": str(me), "os_pid": ospid, "otp_name": title})
    except BaseException:
        os._exit(70)
    try:
        _runtime.run_process_body(fn, args, kwargs)
    except BaseException:
        # Nothing may unwind past this frame: below it, fork copied the
        # spawner's stack (or the root's loop), which would then run on in
        # this process with the spawner's Process object.
        os._exit(70)
    os._exit(0)  # pragma: no cover - run_process_body does not return


# ------------------------------------------------------- the zygote channel


def _read_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def _spawn_via_root(
    p: Process,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    link: bool,
    title: str,
) -> Pid:
    if p.zygote is None:
        z = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        z.connect(f"{p.rundir}/zygote")
        p.zygote = z
    request = (fn, args, kwargs, p.pid, link, title)
    kind, payload = _codec.dumps(request)
    for attempt in range(2):
        with p.zlock:
            p.zygote.sendall(_codec.frame(kind, payload))
            try:
                data, fds, _flags, _addr = socket.recv_fds(p.zygote, 8, 1)
                if len(data) < 8:
                    data += _read_exact(p.zygote, 8 - len(data))
                (h,) = _codec.HDR.unpack(data)
                body = _read_exact(p.zygote, h & _codec.LEN_MASK)
            except (EOFError, OSError) as e:
                raise OTPError("the node's root process is gone") from e
        status, value = pickle.loads(body)
        if status == "ok":
            child: Pid = value
            c = Conn(fds[0], child, welcomed=True)
            os.set_blocking(fds[0], False)
            if link:
                # Before the connection is registered: once it is, another
                # thread of the main program may read the child's death, and
                # the link must already be there to fire.
                p.links.add(child)
            p.add_conn(c)
            return child
        if status == "unpickle" and attempt == 0 and kind == _codec.MSG:
            # The root was forked when the node started: a function or class
            # defined in __main__ after that is not in its copy. Send it by
            # value instead.
            kind, payload = _codec.MSG_DILL, _codec.dill_dumps(request)
            continue
        raise StartError(value, f"spawn failed: {value}")
    raise StartError("spawn failed")  # pragma: no cover


def _get_dill() -> Any:
    import dill

    return dill


# ---------------------------------------------------------------- the root


class _Root:
    def __init__(self, rundir: str, main_sock: socket.socket) -> None:
        self.rundir = rundir
        self.ep = select.epoll()
        self.main = main_sock
        self.clients: dict[int, socket.socket] = {main_sock.fileno(): main_sock}
        self.ep.register(main_sock.fileno(), select.EPOLLIN)
        zpath = f"{rundir}/zygote"
        self.zl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # Bound under a temporary name and renamed into place once listening,
        # as every process socket is: whoever sees the file may connect (a
        # connect between bind and listen is refused).
        self.zl.bind(f"{zpath}.tmp")
        self.zl.listen(socket.SOMAXCONN)
        os.rename(f"{zpath}.tmp", zpath)
        self.zl.setblocking(False)
        self.ep.register(self.zl.fileno(), select.EPOLLIN)
        self.sig_r, self.sig_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.ep.register(self.sig_r, select.EPOLLIN)
        # Lifeline: every process holds the read end; it reads EOF when the
        # root is gone, however the root went.
        self.life_r, self.life_w = os.pipe2(os.O_CLOEXEC)
        self.seq = 0
        self.spare: tuple[socket.socket, str] | None = None
        self.parent_dead = False

    def close_in_child(self, keep: set[int]) -> None:
        self.ep.close()
        fds = {self.zl.detach(), self.sig_r, self.sig_w, self.life_w}
        if self.spare is not None:
            fds.add(self.spare[0].detach())
        for fd, s in self.clients.items():
            s.detach()
            fds.add(fd)
        _runtime._close_fds(sorted(fds - keep))

    def run(self) -> None:
        while True:
            for fd, _ev in self.ep.poll():
                if fd == self.zl.fileno():
                    self.accept()
                elif fd == self.sig_r:
                    self.on_signal()
                elif fd in self.clients:
                    self.serve(self.clients[fd])
            if self.parent_dead:
                self.shutdown()

    def accept(self) -> None:
        while True:
            try:
                s, _ = self.zl.accept()
            except BlockingIOError:
                return
            cred = s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
            if int.from_bytes(cred[4:8], sys.byteorder, signed=True) != os.getuid():
                s.close()
                continue
            s.setblocking(True)
            self.clients[s.fileno()] = s
            self.ep.register(s.fileno(), select.EPOLLIN)

    def on_signal(self) -> None:
        try:
            while os.read(self.sig_r, 512):
                pass
        except BlockingIOError:
            pass
        self.reap()

    def reap(self) -> None:
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None or info.si_pid == 0:
                return
            ospid = info.si_pid
            # Find what the dead process left while it is still a zombie: its
            # OS pid cannot be reused (and a new process named after it)
            # until the waitpid below.
            prefix = f"{ospid}."
            try:
                left = [e for e in os.listdir(self.rundir) if e.startswith(prefix)]
            except OSError:
                left = []
            os.waitpid(ospid, 0)
            for entry in left:
                pid = _runtime._parse_target(entry)
                if pid is not None:
                    _runtime.cleanup_dead(self.rundir, pid)

    def serve(self, s: socket.socket) -> None:
        try:
            (h,) = _codec.HDR.unpack(_read_exact(s, 8))
            kind = h >> _codec.KIND_SHIFT
            size = h & _codec.LEN_MASK
            if kind not in (_codec.MSG, _codec.MSG_DILL) or size > _codec.MAX_FRAME:
                raise EOFError
            body = _read_exact(s, size)
        except (EOFError, OSError):
            self.drop(s)
            return
        try:
            req = _codec.loads(kind, body)
        except Exception as e:
            self.reply(s, ("unpickle", f"{type(e).__name__}: {e}"))
            return
        if req == _STOP:
            self.shutdown()
        try:
            fn, args, kwargs, spawner, link, title = req
        except (TypeError, ValueError):
            # A same-user client that speaks nonsense must not take down the
            # root, and the node with it: it gets an error, as any bad spawn.
            self.reply(s, ("error", f"malformed spawn request: {type(req).__name__}"))
            return
        try:
            child, fd = self.fork(fn, args, kwargs, spawner, link, title)
        except Exception as e:
            self.reply(s, ("error", f"{type(e).__name__}: {e}"))
            return
        try:
            self.reply(s, ("ok", child), fd)
        finally:
            os.close(fd)
        # The next child's listener, bound now that the caller has its answer.
        self.seq += 1
        self.spare = _bind_temp_listener(self.rundir, f"root-{self.seq}")

    def reply(self, s: socket.socket, value: Any, fd: int | None = None) -> None:
        data = _codec.frame(_codec.MSG, pickle.dumps(value, 5))
        try:
            if fd is None:
                s.sendall(data)
            else:
                socket.send_fds(s, [data], [fd])
        except OSError:
            self.drop(s)

    def drop(self, s: socket.socket) -> None:
        fd = s.fileno()
        if s is self.main:
            # The main program closed its end: it exited, or was killed.
            self.shutdown()
        self.clients.pop(fd, None)
        try:
            self.ep.unregister(fd)
        except OSError:
            pass
        s.close()

    def fork(
        self, fn: Any, args: Any, kwargs: Any, spawner: Pid, link: bool, title: str
    ) -> tuple[Pid, int]:
        self.seq += 1
        return _fork_child(
            self,
            f"root-{self.seq}",
            self.close_in_child,
            spawner,
            self.life_r,
            fn,
            args,
            kwargs,
            link,
            title,
        )

    def shutdown(self) -> None:
        """Remove the runtime directory, then SIGKILL every process of the node."""
        shutil.rmtree(self.rundir, ignore_errors=True)
        me = os.getpid()
        for _ in range(50):
            victims = [pid for pid in _group_members(me) if pid != me]
            if not victims:
                break
            for pid in victims:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.reap_all()
        self.reap_all()
        os._exit(0)

    def reap_all(self) -> None:
        while True:
            try:
                ospid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if ospid == 0:
                # Children still exiting: wait for the next one to finish.
                try:
                    os.waitpid(-1, 0)
                except ChildProcessError:
                    return


def _group_members(pgid: int) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        fields = data[data.rfind(b")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            out.append(int(name))
    return out


def _release_inherited(keep: set[int]) -> None:
    """In the root, right after its fork: let go of the main program's pipes
    and sockets (those Python made non-inheritable, as it makes all of its own).

    The root lives as long as the node, and every process it forks would hold
    them too: a `subprocess.Popen` started before the node would never read
    EOF on its stdin after the main program closed its end, a listening port
    closed by the main program would stay bound. Each is pointed at /dev/null
    rather than closed, so a Python object still holding the number (inherited
    with the main program's memory) can never act on a reused descriptor.
    Files are kept: a log file opened at import time still works in every
    process. Once, at node start: one listing of /proc/self/fd.
    """
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return
    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        for name in names:
            fd = int(name)
            if fd < 3 or fd in keep or fd == devnull:
                continue
            try:
                if not fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC:
                    continue
                mode = os.fstat(fd).st_mode
            except OSError:
                continue  # the listing's own descriptor, closed by now
            if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
                os.dup2(devnull, fd, inheritable=False)
    finally:
        os.close(devnull)


def _root_main(rundir: str, main_sock: socket.socket, watch_parent: bool) -> None:
    os.setpgid(0, 0)
    prctl_child_subreaper()
    root = _Root(rundir, main_sock)
    _runtime._proc = None
    # Terminal signals are the main program's to handle; the root follows it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, _runtime._noop_handler)

    def on_parent_death(signum: int, frame: Any) -> None:
        root.parent_dead = True

    signal.signal(signal.SIGHUP, on_parent_death)
    signal.set_wakeup_fd(root.sig_w, warn_on_full_buffer=False)
    if watch_parent:
        prctl_pdeathsig(signal.SIGHUP)
    if os.getppid() == 1:
        root.parent_dead = True
    _title(f"otp: node {_runtime.NODE_NAME} root [{os.path.basename(rundir)}]")
    # Installed here once, inherited by every process of the node (see _logging).
    _logging.install_forwarder(
        rundir, {"otp_pid": "root", "os_pid": os.getpid(), "otp_name": "node root"}
    )
    main_sock.setblocking(True)
    root.reap()
    # The root's objects never change after this point: freeze them so the
    # collector of a forked child does not touch (and copy) their pages.
    gc.freeze()
    root.run()


# ---------------------------------------------------------------- stopping


def stop(timeout: float = 5.0) -> None:
    """Stop the node: every process the main program started, in reverse start
    order (each gets the exit signal "shutdown", and is killed if still alive
    after `timeout` seconds), then every process left, then the root."""
    with _start_lock:
        p = _runtime._proc
        if p is None or not p.is_main:
            return
        p.trap = True
        p.pending_exit = None
        try:
            for pid in reversed(p.spawned):
                _stop_one(p, pid, timeout)
        finally:
            _stop_root(p)


def _stop_one(p: Process, pid: Pid, timeout: float) -> None:
    if not _runtime.is_alive(pid):
        return
    ref = _runtime.monitor(pid)

    def is_down(m: Any) -> bool:
        return type(m) is DOWN and m.ref == ref

    _runtime.exit(pid, "shutdown")
    try:
        p.receive(is_down, timeout)
    except ReceiveTimeout:
        _runtime.exit(pid, "kill")
        try:
            p.receive(is_down, 5.0)
        except ReceiveTimeout:
            pass


def _stop_root(p: Process) -> None:
    global _collector
    if _collector is not None:
        # The processes the main program started are gone: what they logged
        # is queued. Emit it now, while the log socket still exists (the
        # root removes the runtime directory before it kills what is left).
        _collector.stop()
        _collector = None
    rpid = p.info.get("root_os_pid")
    z = p.zygote
    _runtime._proc = None
    if z is not None:
        try:
            z.sendall(_codec.frame(_codec.MSG, pickle.dumps(_STOP, 5)))
            while z.recv(4096):
                pass
        except OSError:
            pass
        z.close()
    if rpid:
        try:
            os.waitpid(rpid, 0)
        except ChildProcessError:
            pass
    shutil.rmtree(p.rundir, ignore_errors=True)
    for fd in list(p.fds):
        try:
            os.close(fd)
        except OSError:
            pass
    p.fds.clear()
    p.ep.close()
    p.lsock.close()


class Node:
    """`with otp.node.Node() as node:` starts the node and stops it on leaving."""

    def __init__(self, name: str | None = None, stop_timeout: float = 5.0) -> None:
        self.name = name
        self.stop_timeout = stop_timeout
        self.process: Process | None = None

    def __enter__(self) -> Node:
        self.process = start(self.name)
        return self

    def __exit__(self, *exc: Any) -> None:
        stop(self.stop_timeout)

    @property
    def rundir(self) -> str:
        assert self.process is not None
        return self.process.rundir


def _after_fork_in_child() -> None:
    # A fork the runtime did not make (multiprocessing, a user's os.fork):
    # the child must not keep our sockets open, or peers would never see this
    # process's connections close.
    p = _runtime._proc
    if p is None or _runtime._forking:
        return
    p.close_in_child(set())
    _runtime._proc = None


os.register_at_fork(after_in_child=_after_fork_in_child)

_ = (NoProc,)
