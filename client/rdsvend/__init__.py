"""rdsvend's client: short-lived RDS IAM tokens from an rdsvend service, kept fresh.

>>> from rdsvend import TokenClient, connect
>>> tokens = TokenClient("https://abc123.execute-api.us-east-1.amazonaws.com/api")
>>> with connect(tokens, "orders-prod", "orders_app") as conn:  # doctest: +SKIP
...     conn.execute("select 1")

Requires only botocore; ``connect`` needs the ``psycopg`` extra, the SQLAlchemy hook the
``sqlalchemy`` extra.
"""
from __future__ import annotations

from rdsvend.api import VendApi, VendedToken
from rdsvend.connect import (
    bundled_ca_path,
    connect,
    connection_params,
    libpq_env,
    ssl_root_cert_path,
)
from rdsvend.errors import IdentityProofError, RdsvendClientError, VendError
from rdsvend.passwords import PasswordSource, SecretReadError, connect_password
from rdsvend.pgpass import write_pgpass_entry
from rdsvend.proof import build_identity_proof, invoke_payload
from rdsvend.tokens import TokenClient

__all__ = [
    "TokenClient",
    "VendApi",
    "VendedToken",
    "VendError",
    "IdentityProofError",
    "PasswordSource",
    "SecretReadError",
    "RdsvendClientError",
    "bundled_ca_path",
    "build_identity_proof",
    "connect",
    "connect_password",
    "connection_params",
    "invoke_payload",
    "libpq_env",
    "ssl_root_cert_path",
    "write_pgpass_entry",
]
