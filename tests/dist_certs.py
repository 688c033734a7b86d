"""Throwaway certificates for the TLS distribution tests: see
`otp.dist._testing` (`Pki`), where they live so that benchmarks/bench_dist.py
makes them the same way."""

from __future__ import annotations

from otp.dist._testing import HOST_NAMES, Cert, Pki, require_openssl

__all__ = ["HOST_NAMES", "Cert", "Pki", "require_openssl"]
