"""``make demo``: rdsvend's main job on one machine, narrated.

Starts the local stack (moto as AWS, an RDS-shaped PostgreSQL, the API behind a SigV4
gateway), then, as a caller with its own AWS keys: who am I, what may I use, vend a token,
connect with psycopg over ``verify-full``; then a caller no rule allows; then tears it all
down. Tokens are never printed, only their length and expiry. Exit status 0 only when every
step did what it should.

Run it with ``python -m devtools.local.demo`` (``make demo`` does, after installing).
"""
from __future__ import annotations

import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from devtools.local.demo_canary import broken_scp_step, canary_step
from devtools.local.demo_dsql import dsql_step
from devtools.local.demo_enforce import enforce_step
from devtools.local.demo_grants import grants_step
from devtools.local.demo_mysql import mysql_step
from devtools.local.demo_org import org_step
from devtools.local.demo_proxy import proxy_step
from devtools.local.demo_refused import refused_caller_step
from devtools.local.demo_rotation import rotation_step
from devtools.local.stack import REPO_ROOT, LocalStack, StackError
from rdsvend.api import VendApi, VendError
from rdsvend.connect import connection_params

__all__ = ["main", "Demo", "DemoFailed", "STEPS"]

DATABASE = "orders-local"
DB_USER = "orders_app"


class DemoFailed(RuntimeError):
    """A step did not do what it should; the demo says which and exits 1."""


def say(text: str = "", indent: int = 0) -> None:
    prefix = " " * indent
    for line in text.splitlines() or [""]:
        print(textwrap.fill(line, width=96, initial_indent=prefix, subsequent_indent=prefix + "  ")
              if line else "", flush=True)


@dataclass
class Demo:
    """What the steps share: the running stack and the clients they make."""

    stack: Any
    notes: dict[str, Any] = field(default_factory=dict)

    def api(self, caller: str = "allowed") -> Any:
        import boto3


        keys = self.stack.keys(caller)
        session = boto3.session.Session(aws_access_key_id=keys.access_key_id,
                                        aws_secret_access_key=keys.secret_access_key,
                                        region_name=self.stack.info.region)
        return VendApi(self.stack.url, session=session, region=self.stack.info.region)


def step_whoami(demo: Demo) -> None:
    say("1. Who am I? The caller signs GET /v1/whoami with its own AWS access key (SigV4); the local "
        "gateway checks the signature against the local AWS, as API Gateway would, and tells the app who called.")
    me = demo.api().whoami()
    say(f"rdsvend sees {me['principal']}, account {me['account']}, organization {me['org_id']}.", 3)


def step_databases(demo: Demo) -> None:
    say("2. What may I use? GET /v1/databases lists only what the access policy lets this caller ask for.")
    databases = demo.api().databases()
    if not databases:
        raise DemoFailed("the allowed caller sees no database")
    for db in databases:
        say(f"{db['database']}: {db['engine']} at {db['host']}:{db['port']}, database '{db['dbname']}', "
            f"db users {', '.join(db['db_users'])}.", 3)


def step_vend(demo: Demo) -> None:
    say(f"3. Vend: POST /v1/tokens for {DB_USER} on {DATABASE}. rdsvend checks the policy, assumes its "
        "signer role (scoped to this one db user) and signs an RDS IAM auth token.")
    vended = demo.api().vend(DATABASE, DB_USER)
    demo.notes["vended"] = vended
    expires = vended.expires_at.strftime("%H:%M:%S UTC")
    say(f"Got a token of {len(vended.token)} characters, good until {expires} ({vended.ttl_seconds} s), "
        f"allowed by rule '{vended.rule}'. The token itself is never printed.", 3)
    say(f"The DSN to use with it: {vended.dsn}", 3)


def step_connect(demo: Demo) -> None:
    import psycopg


    vended = demo.notes["vended"]
    say("4. Connect with psycopg, the token as the password, sslmode=verify-full against the local CA. "
        "PostgreSQL hands the token to a bind-only LDAP responder that checks it as RDS does: signature, "
        "host and port, db user, expiry, and the signer's rds-db:connect permission in live IAM and SCPs.")
    params = connection_params(vended, {"PGSSLROOTCERT": demo.stack.ca_path})
    with psycopg.connect(**params, connect_timeout=10) as conn:
        row = conn.execute(
            "SELECT current_user, (SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid())").fetchone()
        if row is None:
            raise RuntimeError("the login's session facts came back empty")
        user, tls = row
        rows = conn.execute("SELECT item, qty FROM shop.orders ORDER BY id").fetchall()
    if user != DB_USER or not tls:
        raise DemoFailed("the connection is not the vended user over TLS")
    listed = ", ".join(f"{qty} x {item}" for item, qty in rows)
    say(f"Connected as {user} over {tls}. SELECT item, qty FROM shop.orders: {listed}.", 3)


def step_dsql(demo: Demo) -> None:

    dsql_step(demo, say, DemoFailed)


def step_denied(demo: Demo) -> None:
    denied = demo.stack.info.seeded.callers["denied"].arn
    say(f"5. A caller no rule allows: {denied} asks for the same token. Its signature is genuine; "
        "the access policy says no.")
    try:
        demo.api("denied").vend(DATABASE, DB_USER)
    except VendError as exc:
        if exc.status != 403:
            raise DemoFailed(f"the denied caller got {exc.status}, not 403") from None
        say(f"Refused: HTTP {exc.status} '{exc.code}' ({exc.message}). Every refusal looks the same to a "
            "caller; the audit log says which rule, or none, decided.", 3)
        return
    raise DemoFailed("the denied caller was given a token")


def step_enforce(demo: Demo) -> None:
    enforce_step(demo, say, DemoFailed)


def step_org(demo: Demo) -> None:
    org_step(demo, say, DemoFailed)


def step_mysql(demo: Demo) -> None:
    mysql_step(demo, say, DemoFailed)


# -- HOOK(canary): the connectivity canary helper replaces this step --------------------------------
def step_canary(demo: Demo) -> None:
    canary_step(demo, say, DemoFailed)


# -- HOOK(broken-scp): the canary helper replaces this step with "attach an SCP that denies
#    rds-db:connect to the Services OU, show `rdsvend doctor` naming it, detach it" ---------------
def step_broken_scp(demo: Demo) -> None:
    broken_scp_step(demo, say, DemoFailed)


def step_refused_caller(demo: Demo) -> None:
    refused_caller_step(demo, say, DemoFailed)


#: The narrated steps, in order. Later helpers add or replace entries (see the HOOKs above).
STEPS: list[Callable[[Demo], None]] = [
    step_whoami, step_databases, step_vend, step_connect, step_mysql, step_dsql, step_org, step_denied, step_canary,
    step_broken_scp, step_refused_caller,
]


def step_rotation(demo: Demo) -> None:
    rotation_step(demo, say, DemoFailed)


STEPS.insert(STEPS.index(step_canary), step_rotation)  # before the canary, which checks password users too
STEPS.insert(STEPS.index(step_denied) + 1, step_enforce)


def step_proxy(demo: Demo) -> None:
    proxy_step(demo, say, DemoFailed)


def step_grants(demo: Demo) -> None:
    grants_step(demo, say, DemoFailed)


STEPS.append(step_grants)


STEPS.insert(STEPS.index(step_refused_caller), step_proxy)  # after the canary's baseline, with its own fault


def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    say("rdsvend demo: short-lived RDS IAM database tokens, vended by policy, on this machine only.")
    say("Starting the local stack: moto as AWS (an organization, a member account with the service and "
        "its database, a workloads account with two callers, a data account with a second database), "
        "RDS-shaped databases with TLS, rdsvend's local stage deployed into it as make package builds it, "
        "and the API behind a SigV4-checking gateway ...")
    stack = LocalStack(REPO_ROOT / ".rdsvend" / "demo")
    status = 0
    try:
        stack.start()
        info = stack.info
        db = info.databases[DATABASE]
        say(f"Ready in {time.monotonic() - started:.1f} s. API {info.gateway_url}; AWS {info.moto_url}; "
            f"PostgreSQL {db['host']}:{db['port']} (TLS only).", 3)
        roles = ", ".join(keys.arn.split("/")[1] for keys in info.seeded.functions.values())
        say(f"Deployed: the functions run as {roles}, each with exactly its generated policy; the member-roles "
            "template made the signer and reader roles in the database accounts.", 3)
        say()
        demo = Demo(stack)
        for step in STEPS:
            step(demo)
            say()
    except (DemoFailed, StackError) as exc:
        say(f"DEMO FAILED: {exc}")
        status = 1
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback with secrets in it
        say(f"DEMO FAILED: {type(exc).__name__}: {str(exc)[:300]}")
        status = 1
    except KeyboardInterrupt:
        say("Interrupted.")
        status = 130
    finally:
        say("Tearing down ...")
        report = stack.stop()
        if report.clean:
            say(f"Nothing left running or listening. Demo finished in {time.monotonic() - started:.1f} s.", 3)
            if status == 0:
                say("Your turn: . .venv/bin/activate && rdsvend local up --detach && eval \"$(rdsvend local env)\" "
                    "(README: Other ways in)", 3)
        else:
            say(f"Left behind: {'; '.join(report.leftovers)}", 3)
            status = status or 1
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
