"""The demo's password-user step: ledger_batch cannot use IAM auth; its password lives in the
local Secrets Manager. Log in with it, rotate it with ``rdsvend rotate``, see the old password
refused and the new one accepted."""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from rdsvend import PasswordSource, connect_password

__all__ = ["rotation_step", "ROTATION_DATABASE", "ROTATION_DB_USER", "ROTATION_SECRET"]

ROTATION_DATABASE = "orders-local"
ROTATION_DB_USER = "ledger_batch"
ROTATION_SECRET = "rdsvend/orders-local/ledger_batch"


def rotation_step(demo: Any, say: Callable[..., None], failed: type[Exception]) -> None:
    import psycopg


    info = demo.stack.info
    keys = info.seeded.function("rotate")  # the deployed rotate function's role: it reads and writes the secrets
    sm = keys.session(info.region).client("secretsmanager", endpoint_url=info.moto_url)
    environ = {"PGSSLROOTCERT": info.ca_path}
    say(f"5b. Password users: {ROTATION_DB_USER} on {ROTATION_DATABASE} cannot use IAM auth (think RDS Proxy or a "
        f"legacy tool). The service never vends it a token; its password lives in Secrets Manager "
        f"({ROTATION_SECRET}) and rdsvend's rotate function changes it.")
    before = PasswordSource(ROTATION_SECRET, client=sm).current()
    with connect_password(PasswordSource(ROTATION_SECRET, client=sm), environ=environ) as conn:
        user = conn.execute("SELECT current_user").fetchone()[0]
    say(f"rdsvend.connect_password read AWSCURRENT and logged in as {user} (TLS verify-full).", 3)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RDSVEND_", "PG"))}
    env.update(AWS_ENDPOINT_URL=info.moto_url, AWS_DEFAULT_REGION=info.region, AWS_ACCESS_KEY_ID=keys.access_key_id,
               AWS_SECRET_ACCESS_KEY=keys.secret_access_key, AWS_SESSION_TOKEN=keys.session_token or "",
               RDSVEND_POLICY=info.policy_path, PGSSLROOTCERT=info.ca_path)
    command = ["rdsvend", "rotate", ROTATION_DATABASE, ROTATION_DB_USER]
    done = subprocess.run([sys.executable, "-m", "rdsvend.cli", *command[1:]], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise failed(f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()[:300]}")
    say(f"$ {' '.join(command)}   (the local AWS cannot invoke Lambda: the four steps run here)", 3)
    say(done.stdout.strip(), 5)
    try:
        psycopg.connect(host=before.host, port=before.port, dbname=before.dbname, user=before.username,
                        password=before.password, sslmode="verify-full", sslrootcert=info.ca_path,
                        connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        refusal = str(exc).strip().splitlines()[-1]
    else:
        raise failed("the old password still logs in after the rotation")
    with connect_password(PasswordSource(ROTATION_SECRET, client=sm), environ=environ) as conn:
        conn.execute("SELECT count(*) FROM shop.orders").fetchone()
    say(f"The old password is refused ({refusal.strip()}); connect_password logs in with the new AWSCURRENT. "
        "During a rotation it retries once with AWSPENDING, so clients never see a gap.", 3)
