"""The local stack serves the world's Aurora DSQL cluster: the gateway vends a DSQL token for
ledger-local, the client logs in with it over verify-full, the refused admin token is logged
with its class, and the operator's canary passes every DSQL check."""
from __future__ import annotations

import os
import subprocess
import sys

import psycopg
import pytest

from devtools.local.stack import LocalStack
from rdsvend.api import VendedToken
from rdsvend.connect import connection_params

pytestmark = pytest.mark.e2e


def test_vend_and_log_in_through_the_gateway(local_stack: LocalStack) -> None:
    status, body = local_stack.request("POST", "/v1/tokens", {"database": "ledger-local", "db_user": "ledger_app"})
    assert status == 200, body
    assert (body["engine"], body["sslmode"], body["ssl_root_cert"]) == ("dsql", "verify-full", "system")
    assert "Action=DbConnect&" in body["token"] and "%2Fdsql%2Faws4_request" in body["token"]
    vended = VendedToken.from_body(body, 0.0)
    with psycopg.connect(**connection_params(vended, {"PGSSLROOTCERT": local_stack.ca_path})) as conn:
        assert conn.execute("SELECT current_user, count(*) FROM entries").fetchone() == ("ledger_app", 2)
        assert conn.execute("SELECT pg_role_name FROM sys.iam_pg_role_mappings").fetchall() == [("ledger_app",)]
    with pytest.raises(psycopg.OperationalError) as refused:  # a DbConnect token is never admin's
        psycopg.connect(**{**connection_params(vended, {"PGSSLROOTCERT": local_stack.ca_path}), "user": "admin"})
    assert "authentication failed" in str(refused.value) and vended.token not in str(refused.value)


def test_the_caller_may_not_have_admin(local_stack: LocalStack) -> None:
    status, body = local_stack.request("POST", "/v1/tokens", {"database": "ledger-local", "db_user": "admin"})
    assert status == 403 and "token" not in body


def test_the_operators_canary_passes_the_dsql_checks(local_stack: LocalStack) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(local_stack.env("operator"))
    done = subprocess.run([sys.executable, "-m", "devtools.cli.main", "canary", "--database", "ledger-local",
                           "--json"], env=env, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    import json

    report = json.loads(done.stdout)
    checks = {(t["db_user"], c["id"]): c["status"] for t in report["targets"] for c in t["checks"]}
    assert checks[("ledger_app", "dsql.role_mapping")] == "pass"
    assert checks[("admin", "dsql.role_mapping")] == "skip"
    assert all(checks[(u, cid)] == "pass" for u in ("admin", "ledger_app")
               for cid in ("dsql.found", "iam.signer_allows", "org.scp_allows", "db.connect"))
