"""What every login verifies the server against: the CA bundle (the one shipped with rdsvend, or
``PGSSLROOTCERT``), and for PyMySQL the TLS context that checks the CA and the host name."""
from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from importlib import resources

__all__ = ["bundled_ca_path", "ssl_root_cert_path", "tls_context"]


def bundled_ca_path() -> str:
    """The RDS global CA bundle that ships with rdsvend."""
    return str(resources.files("rdsvend").joinpath("data", "rds-global-bundle.pem"))


def ssl_root_cert_path(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return env.get("PGSSLROOTCERT") or bundled_ca_path()


def tls_context(ca_path: str) -> ssl.SSLContext:
    """CA and host name verified (``VERIFY_IDENTITY``), TLS 1.2 at least."""
    ctx = ssl.create_default_context(cafile=ca_path)
    ctx.check_hostname = True  # VERIFY_IDENTITY
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx
