"""The organization step of ``make demo`` (plugged into :mod:`devtools.local.demo`): a database
in another member account, vended and connected to like the first one, and the same token
asked for by direct invoke (Lambda's Invoke API on the local stack)."""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from rdsvend import invoke_payload
from rdsvend.connect import connection_params

__all__ = ["org_step", "DATABASE", "DB_USER"]

DATABASE = "billing-local"
DB_USER = "billing_app"


def org_step(demo: Any, say: Callable[..., None], failed: type[Exception]) -> None:
    import boto3
    import psycopg


    info = demo.stack.info
    db = info.databases[DATABASE]
    say(f"4c. Another account: {DATABASE} lives in account {db['account']} (the Data OU), not in the service's "
        f"account {info.seeded.service_account}. rdsvend describes it through the reader role there and signs "
        f"with that account's own signer role; the caller asks exactly as before.")
    vended = demo.api().vend(DATABASE, DB_USER)
    params = connection_params(vended, {"PGSSLROOTCERT": demo.stack.ca_path})
    with psycopg.connect(**params, connect_timeout=10) as conn:
        row = conn.execute(
            "SELECT current_user, (SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid())").fetchone()
        rows = conn.execute("SELECT customer, cents FROM ledger.invoices ORDER BY id").fetchall()
    user, tls = row if row is not None else (None, None)
    if user != DB_USER or not tls:
        raise failed(f"the connection to {DATABASE} is not the vended user over TLS")
    listed = ", ".join(f"{customer} {cents / 100:.2f}" for customer, cents in rows)
    say(f"Token from rule '{vended.rule}', connected as {user} over {tls} (verify-full). "
        f"SELECT customer, cents FROM ledger.invoices: {listed}.", 3)

    say("The same, by direct invoke of the vend function (what another Lambda function does): the caller "
        "signs an sts:GetCallerIdentity request naming the server, and invokes rdsvend-local-vend through "
        "Lambda's Invoke API; rdsvend sends the proof to STS, which names the caller.", 3)
    keys = demo.stack.keys("allowed")
    session = boto3.session.Session(aws_access_key_id=keys.access_key_id,
                                    aws_secret_access_key=keys.secret_access_key, region_name=info.region)
    payload = invoke_payload(DATABASE, DB_USER, info.server_id, session=session, endpoint_url=info.moto_url)
    answer = session.client("lambda", endpoint_url=info.lambda_url).invoke(
        FunctionName=info.function_name, Payload=json.dumps(payload))
    body = json.loads(answer["Payload"].read())
    if "token" not in body:
        raise failed(f"direct invoke gave no token: {body.get('error', {}).get('code')}")
    say(f"Invoke answered a token of {len(body['token'])} characters from rule '{body['rule']}', until "
        f"{body['expires_at']}.", 3)
