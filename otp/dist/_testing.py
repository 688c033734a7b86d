"""Test helpers for distribution: a real `erl`, a private epmd, throwaway
TLS certificates (used by the tests and by benchmarks/bench_dist.py).

Tests that need Erlang call `require_erl()`: it skips with a clear reason
when `erl` is missing, and fails instead when `OTP_REQUIRE_ERLANG=1` (CI
installs Erlang, so a skip there would hide a broken install).

Every test gets its own epmd on a free private port (`Epmd`), so parallel
runs never share a port mapper; it is killed when the test is done.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Cert",
    "Epmd",
    "Pki",
    "erl_args",
    "free_port",
    "new_cookie",
    "require_erl",
    "require_openssl",
    "run_erl",
]


def require_erl() -> str:
    """The path of `erl` (and of `epmd` next to it), or skip/fail the test."""
    import pytest

    erl = shutil.which("erl")
    if erl and shutil.which("epmd"):
        return erl
    reason = (
        "needs a real Erlang/OTP: `erl` and `epmd` are not on PATH (apt-get install erlang-nox)"
    )
    if os.environ.get("OTP_REQUIRE_ERLANG") == "1":
        pytest.fail(reason + "; OTP_REQUIRE_ERLANG=1 forbids skipping")
    pytest.skip(reason)
    raise AssertionError("unreachable")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # type: ignore[no-any-return]


def new_cookie() -> str:
    """A fresh random cookie: tests never keep one in the repository."""
    return secrets.token_hex(16).upper()


def erl_args(name: str, cookie: str) -> list[str]:
    """Arguments of a distributed erl on loopback only: long name, given cookie."""
    return [
        "-name", name, "-setcookie", cookie,
        "-kernel", "inet_dist_use_interface", "{127,0,0,1}",
    ]  # fmt: skip


def run_erl(
    script: str,
    timeout: float = 30.0,
    env: dict[str, str] | None = None,
    args: list[str] | None = None,
) -> str:
    """Run `erl -noshell [args] -eval script` (which must end in `halt()`); its stdout."""
    erl = require_erl()
    r = subprocess.run(
        [erl, "-noshell", *(args or []), "-eval", script],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    if r.returncode != 0:
        raise AssertionError(f"erl failed ({r.returncode}): {r.stdout}\n{r.stderr}")
    return r.stdout


class Epmd:
    """An epmd of this test's own, on a private port of 127.0.0.1."""

    def __init__(self) -> None:
        require_erl()
        self.port = free_port()
        self.env = dict(os.environ, ERL_EPMD_PORT=str(self.port))

    def start(self) -> Epmd:
        # -daemon forks and returns; the port then answers within moments.
        subprocess.run(
            ["epmd", "-port", str(self.port), "-address", "127.0.0.1", "-daemon"],
            check=True,
            timeout=10,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)  # polling a port under a deadline, not synchronising a test

    def stop(self) -> None:
        # `-kill` refuses while a node is registered; callers stop nodes first.
        # `-stop` of every name first would be the alternative; kill is enough.
        for _ in range(50):
            r = subprocess.run(
                ["epmd", "-port", str(self.port), "-kill"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            if "Killed" in r.stdout or r.returncode != 0:
                return
            time.sleep(0.1)

    @contextlib.contextmanager
    def running(self) -> Iterator[Epmd]:
        self.start()
        try:
            yield self
        finally:
            self.stop()


# -- throwaway certificates ---------------------------------------------------
# Throwaway certificates for the TLS distribution tests, made with the
# `openssl` command line (present wherever Python's `ssl` is; `cryptography`
# is not a dependency of this project, test or otherwise).
#
# ```python
# pki = Pki(tmp_path)                     # a fresh CA
# a = pki.issue("a")                      # a node certificate for 127.0.0.1
# rogue = Pki(tmp_path / "rogue").issue("r")   # signed by a CA nobody trusts
# otp.node.TLS(certfile=a.certfile, keyfile=a.keyfile, cafile=pki.cafile)
# ```
#
# Node certificates name `127.0.0.1` both as an IP address and as a DNS
# name: Python checks an IP host against the IP entry, erl checks the host of
# a node name as a DNS name (`{bad_cert, hostname_check_failed}` otherwise).

HOST_NAMES = "DNS:localhost,DNS:127.0.0.1,IP:127.0.0.1"


def require_openssl() -> str:
    """The path of `openssl`; in a test without it, a skip."""
    path = shutil.which("openssl")
    if path is None:
        import pytest

        pytest.skip("needs the openssl command line to make test certificates")
    return path


def _run(*args: str) -> None:
    r = subprocess.run(
        [require_openssl(), *args], capture_output=True, text=True, timeout=30, check=False
    )
    if r.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args)} failed: {r.stderr}")


@dataclass(frozen=True)
class Cert:
    certfile: str
    keyfile: str


class Pki:
    """A CA of its own in `directory`, issuing node certificates."""

    def __init__(self, directory: Path | str) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cafile = str(self.dir / "ca.pem")
        self._cakey = str(self.dir / "ca.key")
        _run(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", self._cakey, "-out", self.cafile, "-days", "2",
            "-subj", f"/CN=test CA {os.getpid()} {self.dir.name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip

    def issue(self, name: str, names: str = HOST_NAMES) -> Cert:
        """A certificate and key for a node, valid for server and client use;
        `names` is its subjectAltName."""
        key, csr, pem = (str(self.dir / f"{name}.{ext}") for ext in ("key", "csr", "pem"))
        ext = self.dir / f"{name}.ext"
        ext.write_text(
            f"subjectAltName={names}\nbasicConstraints=CA:FALSE\n"
            "extendedKeyUsage=serverAuth,clientAuth\n"
        )
        _run(
            "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", key, "-out", csr, "-subj", f"/CN={name}",
        )  # fmt: skip
        _run(
            "x509", "-req", "-in", csr, "-CA", self.cafile, "-CAkey", self._cakey,
            "-CAcreateserial", "-out", pem, "-days", "2", "-extfile", str(ext),
        )  # fmt: skip
        return Cert(pem, key)

    def erl_optfile(self, cert: Cert) -> str:
        """An `-ssl_dist_optfile` for erl with `cert`, trusting this CA, with
        the same checks as ours: mutual, verified, no peer without a
        certificate."""
        common = (
            f'{{certfile, "{cert.certfile}"}}, {{keyfile, "{cert.keyfile}"}}, '
            f'{{cacertfile, "{self.cafile}"}}, {{verify, verify_peer}}'
        )
        path = self.dir / f"{Path(cert.certfile).stem}.dist.conf"
        path.write_text(
            f"[{{server, [{common}, {{fail_if_no_peer_cert, true}}]}},\n {{client, [{common}]}}].\n"
        )
        return str(path)
