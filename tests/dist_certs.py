"""Throwaway certificates for the TLS distribution tests, made with the
`openssl` command line (present wherever Python's `ssl` is; `cryptography`
is not a dependency of this project, test or otherwise).

```python
pki = Pki(tmp_path)                     # a fresh CA
a = pki.issue("a")                      # a node certificate for 127.0.0.1
rogue = Pki(tmp_path / "rogue").issue("r")   # signed by a CA nobody trusts
otp.node.TLS(certfile=a.certfile, keyfile=a.keyfile, cafile=pki.cafile)
```

Node certificates name `127.0.0.1` both as an IP address and as a DNS
name: Python checks an IP host against the IP entry, erl checks the host of
a node name as a DNS name (`{bad_cert, hostname_check_failed}` otherwise).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["Cert", "Pki", "require_openssl"]

HOST_NAMES = "DNS:localhost,DNS:127.0.0.1,IP:127.0.0.1"


def require_openssl() -> str:
    path = shutil.which("openssl")
    if path is None:
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
