"""Limits and malformed requests: refused clearly, nothing else disturbed."""

from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys

import otp
from otp import _codec
from otp.testing import wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

OVERSIZED = """
import otp
def echo():
    while True:
        m = otp.receive()
        otp.send(m[0], m[1])
pid = otp.spawn(echo)
try:
    otp.send(pid, (otp.self_pid(), b"x" * 200_000))
except otp.NotPicklable as e:
    print("refused:", "frame limit" in str(e))
otp.send(pid, (otp.self_pid(), "still here"))
print(otp.receive(timeout=10))
otp.exit(pid, "kill")
"""


def test_a_message_over_the_frame_limit_is_refused_in_the_sender() -> None:
    env = {**os.environ, "OTP_MAX_FRAME": "100000", "PYTHONPATH": ROOT}
    done = subprocess.run(
        [sys.executable, "-c", OVERSIZED],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["refused: True", "still here"]


def test_a_malformed_spawn_request_to_the_root_gets_an_error_and_the_node_lives() -> None:
    zygote = os.path.join(otp.node.rundir(), "zygote")
    wait_until(lambda: os.path.exists(zygote), 10, "the root's zygote socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(zygote)
        s.sendall(_codec.frame(_codec.MSG, pickle.dumps(("not", "a", "spawn"), 5)))
        header = s.recv(8)
        (h,) = _codec.HDR.unpack(header)
        body = b""
        while len(body) < h & _codec.LEN_MASK:
            body += s.recv(65536)
        status, why = pickle.loads(body)
    assert status == "error" and "malformed" in why
    _pid, ref = otp.spawn_monitor(lambda: None)  # the root still forks
    assert (
        otp.receive(lambda m: isinstance(m, otp.DOWN) and m.ref == ref, timeout=10).reason
        == "normal"
    )
