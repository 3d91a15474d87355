"""The rdsvend client: vend tokens over SigV4-signed HTTP and keep them fresh.

>>> from chalicelib.client import TokenClient, connect
>>> tokens = TokenClient("https://abc123.execute-api.us-east-1.amazonaws.com/api")
>>> with connect(tokens, "orders-prod", "orders_app") as conn:  # doctest: +SKIP
...     conn.execute("select 1")
"""
from __future__ import annotations

from chalicelib.client.api import VendApi, VendedToken, VendError
from chalicelib.client.connect import (
    bundled_ca_path,
    connect,
    connection_params,
    libpq_env,
    ssl_root_cert_path,
)
from chalicelib.client.pgpass import write_pgpass_entry
from chalicelib.client.tokens import TokenClient

__all__ = [
    "TokenClient",
    "VendApi",
    "VendedToken",
    "VendError",
    "bundled_ca_path",
    "connect",
    "connection_params",
    "libpq_env",
    "ssl_root_cert_path",
    "write_pgpass_entry",
    "invoke_payload",
]


def invoke_payload(database: str, db_user: str, server_id: str, **proof_kwargs) -> dict:
    """The payload for a direct invoke of the ``vend`` function, identity proof included."""
    from chalicelib.vending.proof import build_identity_proof

    return {
        "database": database,
        "db_user": db_user,
        "identity": build_identity_proof(server_id, **proof_kwargs),
    }
