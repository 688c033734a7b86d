"""`otp shell`: a Python REPL that is a process of a running node (`erl -remsh`).

```sh
$ otp run examples.kv_service:KVSupervisor 7070 &
$ otp shell
otp shell: attached to node nonode@nohost (/run/user/1000/otp/node-4211-x) as <0.4388.93>
>>> gen_server.call("kv_cache", "stats")
{'hits': 0, 'misses': 0}
>>> otp.process_info(otp.whereis("kv_storage"))["message_queue_len"]
0
>>> otp.debug.get_state("kv_cache")
{'entries': {}, 'hits': 0, 'misses': 0}
>>> sup = otp.whereis("kv_sup"); supervisor.which_children(sup)
```

`otp shell NODE` picks a node by name, runtime directory (or its base name)
or main OS pid; without NODE, the only running node of this user.
`otp shell -c CODE` runs CODE in the node and exits (for scripts).

## What the shell process is

The shell becomes a member of the node, as the main program is: it has a
Pid of its own, with its listening socket in the node's runtime directory,
so any process can send to it, reply to its calls, link to it and monitor
it. `otp`, `gen_server`, `gen_statem`, `gen_event`, `supervisor` and
`logger` are imported for you. It does not own the node:

- it never starts or stops the node: `otp.node.stop()` is refused here
  (stop a service with `gen_server.stop(...)`, or signal its main program);
- the processes it spawns are forked by the node's root process (through
  its zygote socket), like the main program's, and outlive the shell unless
  linked to it;
- leaving the shell (`exit()`, Ctrl-D) ends the shell process with reason
  "normal": a process linked to it and not trapping exits lives on;
- an exit signal from a linked process is printed as `** exit signal: ...`
  (as Erlang's shell does) instead of ending the shell.

While the shell waits for a line, it keeps serving its runtime: messages are
queued for `otp.receive()`, and `otp ps` gets its answers.

Its own log records go to its own stderr (your terminal), not to the node's
log.
"""

from __future__ import annotations

import code
import os
import select
import socket
import sys
import traceback
from typing import Any

from . import _cli, _codec, _runtime
from ._runtime import Process, sock_path
from ._terms import Pid

__all__ = ["attach", "detach", "main"]


def attach(rundir: str, node_name: str) -> Process:
    """Make this OS process a process of the node in `rundir` (not its owner).

    Mirrors what `otp.node.start` builds for a main program, minus what
    makes a node: no new runtime directory, no root, no log collector, no
    atexit stop. The Pid's serial is fresh, so a shell attached twice from
    one OS pid is two different processes.
    """
    if _runtime._proc is not None:
        raise RuntimeError("this OS process is already a process of a node")
    _runtime.NODE_NAME = node_name
    me = Pid((node_name, os.getpid(), _runtime.new_serial()))
    ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ls.bind(sock_path(rundir, me))
    ls.listen(socket.SOMAXCONN)
    ls.setblocking(False)
    # is_main: exit signals surface as otp.Exit instead of ending the process,
    # and spawns go through the root's zygote socket (p.zygote is None, so
    # _spawn_via_root connects to <rundir>/zygote): a REPL may have threads.
    p = Process(me, rundir, ls, is_main=True)
    p.info["initial_call"] = "otp shell"
    _runtime._proc = p
    _guard_node_stop()
    return p


def _refuse_stop(*args: Any, **kwargs: Any) -> None:
    raise RuntimeError(
        "otp shell: the node belongs to its main program, the shell cannot stop it "
        "(stop a service with gen_server.stop(...), or signal the main program); "
        "leave the shell with exit() or Ctrl-D"
    )


def _guard_node_stop() -> None:
    # The main program's stop would tell the root to end the node (the
    # zygote's "stop"): from a shell that means killing a service in
    # production, unordered. Only this process's module objects change.
    from . import _node, node

    node.stop = _refuse_stop
    _node.stop = _refuse_stop


def detach(p: Process) -> None:
    """Leave the node as a process ending "normal" does, without exiting the OS process.

    The name and socket go first (nobody new reaches us), then EXITING on
    every connection, then the descriptors close: peers see a normal exit.
    """
    _runtime.unregister_pid(p.rundir, p.pid)
    try:
        os.unlink(sock_path(p.rundir, p.pid))
    except OSError:
        pass
    frame = _codec.frame(_codec.EXITING, _codec.dumps("normal")[1])
    for c in list(p.fds.values()):
        try:
            os.set_blocking(c.fd, True)
            os.write(c.fd, frame)
        except OSError:
            pass
        try:
            os.close(c.fd)
        except OSError:
            pass
    p.fds.clear()
    if p.zygote is not None:
        p.zygote.close()
    p.ep.close()
    p.lsock.close()
    _runtime._proc = None


def _serve(p: Process) -> None:
    """Read what arrived (queue messages, answer INFO_REQ) while the REPL idles."""
    # A main-program-like Process may guard its tables with a lock (threads):
    # its wait expects the lock held, as every entry point holds it.
    lock = getattr(p, "lock", None)
    try:
        if lock is None:
            p.wait(0)
        else:
            with lock:
                p.wait(0)
    except Exception:
        return
    if p.pending_exit is not None:
        # As Erlang's shell: report the signal, and stay.
        (reason,) = p.pending_exit
        p.pending_exit = None
        sys.stderr.write(f"** exit signal: {reason!r}\n")
        sys.stderr.flush()


class _Console(code.InteractiveConsole):
    """The REPL: reads lines while keeping the shell's runtime served."""

    def __init__(self, p: Process, namespace: dict[str, Any]) -> None:
        super().__init__(namespace, filename="<otp shell>")
        self.p = p
        self.tty = sys.stdin.isatty()
        self.buf = b""
        self.hook: Any = None
        if self.tty:
            self._install_input_hook()

    def _install_input_hook(self) -> None:
        """While readline waits for a key, it calls PyOS_InputHook ten times a
        second (how GUI toolkits keep their event loops alive in a REPL):
        serve the runtime from there."""
        try:
            import ctypes
            import readline  # noqa: F401 - line editing, and the hook's caller

            hook_type = ctypes.CFUNCTYPE(ctypes.c_int)

            def hook() -> int:
                _serve(self.p)
                return 0

            self.hook = hook_type(hook)  # kept referenced: freed, it would crash
            ptr = ctypes.c_void_p.in_dll(ctypes.pythonapi, "PyOS_InputHook")
            ptr.value = ctypes.cast(self.hook, ctypes.c_void_p).value
        except Exception:
            self.hook = None

    def raw_input(self, prompt: str = "") -> str:
        if not os.path.isdir(self.p.rundir):
            self.write("otp shell: the node has stopped\n")
            raise EOFError
        _serve(self.p)
        if self.tty:
            return input(prompt)
        return self._read_line()

    def _read_line(self) -> str:
        """A line from a pipe, serving the runtime while none is there.

        Read with os.read, not sys.stdin: a buffered reader may hold lines
        that select would never report.
        """
        stdin = sys.stdin.fileno()
        epfd = self.p.ep.fileno()
        # poll, not select: the runtime's descriptors are numbered from
        # FD_BASE (1024) up, out of select's range.
        poller = select.poll()
        poller.register(stdin, select.POLLIN)
        poller.register(epfd, select.POLLIN)
        while b"\n" not in self.buf:
            ready = {fd for fd, _ev in poller.poll()}
            if epfd in ready:
                _serve(self.p)
            if stdin in ready:
                data = os.read(stdin, 65536)
                if not data:
                    if self.buf:
                        break
                    raise EOFError
                self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode()


def _namespace() -> dict[str, Any]:
    from loguru import logger

    import otp
    from behaviours import gen_event, gen_server, gen_statem, supervisor

    return {
        "__name__": "__console__",
        "__doc__": None,
        "otp": otp,
        "gen_server": gen_server,
        "gen_statem": gen_statem,
        "gen_event": gen_event,
        "supervisor": supervisor,
        "logger": logger,
    }


def main(node: str | None, command: str | None = None) -> int:
    """`otp shell [NODE] [-c COMMAND]`; returns the exit code."""
    try:
        found = _cli.find_node(node)
    except LookupError as e:
        print(f"otp shell: {e}", file=sys.stderr)
        return 2
    sys.path.insert(0, os.getcwd())  # as `python`: the service's modules import
    p = attach(found["rundir"], found["node"])
    code_ = 0
    try:
        ns = _namespace()
        if command is not None:
            try:
                exec(compile(command, "<otp shell -c>", "exec"), ns)
            except SystemExit as e:
                code_ = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException:
                traceback.print_exc()
                code_ = 1
            return code_
        names = ", ".join(sorted(_runtime.names_of(found["rundir"]))) or "none"
        banner = (
            f"otp shell: attached to node {found['node']} ({found['rundir']}) as {p.pid}\n"
            f"registered names: {names}\n"
            "otp, gen_server, gen_statem, gen_event, supervisor, logger are imported; "
            "exit() or Ctrl-D leaves (the node keeps running)"
        )
        console = _Console(p, ns)
        try:
            console.interact(banner=banner if console.tty else "", exitmsg="")
        except SystemExit as e:
            code_ = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        return code_
    finally:
        sys.stdout.flush()
        if _runtime._proc is p:
            detach(p)
