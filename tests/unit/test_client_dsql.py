"""The client with an Aurora DSQL answer: unchanged calls, TLS verified against the system's
public roots (libpq's ``sslrootcert=system``) unless PGSSLROOTCERT says otherwise."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rdsvend.api import VendedToken
from rdsvend.connect import bundled_ca_path, connection_params, libpq_env

HOST = "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws"


def answer(**changes: Any) -> VendedToken:
    body = {"token": f"{HOST}/?Action=DbConnectAdmin&X-Amz-Signature=00", "expires_at": "2026-12-03T20:14:30Z",
            "ttl_seconds": 870, "database": "ledger", "db_user": "admin", "engine": "dsql", "host": HOST,
            "port": 5432, "dbname": "postgres", "region": "us-east-1", "sslmode": "verify-full",
            "ssl_root_cert": "system", "dsn": f"host={HOST} port=5432 dbname=postgres user=admin sslmode=verify-full",
            "rule": "ledger-admin", **changes}
    return VendedToken.from_body(body, 0.0)


def test_dsql_answer_verifies_against_the_system_roots() -> None:
    params = connection_params(answer(), {})
    assert params["sslrootcert"] == "system" and params["sslmode"] == "verify-full"
    assert (params["host"], params["user"], params["dbname"]) == (HOST, "admin", "postgres")
    assert libpq_env(answer(), {})["PGSSLROOTCERT"] == "system"


def test_pgsslrootcert_still_wins(tmp_path: Path) -> None:
    ca = str(tmp_path / "ca.pem")
    assert connection_params(answer(), {"PGSSLROOTCERT": ca})["sslrootcert"] == ca


@pytest.mark.parametrize("root", ["rds-global-bundle.pem", ""])
def test_rds_answers_keep_the_rds_bundle(root: str) -> None:
    assert connection_params(answer(engine="postgres", ssl_root_cert=root), {})["sslrootcert"] == bundled_ca_path()


def test_libpq_knows_system_roots() -> None:
    psycopg = pytest.importorskip("psycopg")
    assert psycopg.pq.version() >= 160000  # sslrootcert=system arrived in libpq 16
