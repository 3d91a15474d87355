"""What every login verifies the server against: the CA bundle (the one shipped with rdsvend, or
``PGSSLROOTCERT``), and for PyMySQL the TLS context that checks the CA and the host name."""
from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from importlib import resources
from typing import Protocol

__all__ = ["bundled_ca_path", "ssl_root_cert_path", "tls_context", "SYSTEM_ROOTS"]

#: What a vend answer's ``ssl_root_cert`` says when the server's CA is a public one (DSQL).
SYSTEM_ROOTS = "system"


class _Answer(Protocol):
    @property
    def ssl_root_cert(self) -> str | None: ...


def bundled_ca_path() -> str:
    """The RDS global CA bundle that ships with rdsvend."""
    return str(resources.files("rdsvend").joinpath("data", "rds-global-bundle.pem"))


def ssl_root_cert_path(environ: Mapping[str, str] | None = None, vended: _Answer | None = None) -> str:
    """``PGSSLROOTCERT`` when set; ``system`` when the answer says so (DSQL); else the RDS bundle."""
    env = os.environ if environ is None else environ
    if env.get("PGSSLROOTCERT"):
        return env["PGSSLROOTCERT"]
    if vended is not None and vended.ssl_root_cert == SYSTEM_ROOTS:
        return SYSTEM_ROOTS
    return bundled_ca_path()


def tls_context(ca_path: str) -> ssl.SSLContext:
    """CA and host name verified (``VERIFY_IDENTITY``), TLS 1.2 at least."""
    ctx = ssl.create_default_context(cafile=ca_path)
    ctx.check_hostname = True  # VERIFY_IDENTITY
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx
