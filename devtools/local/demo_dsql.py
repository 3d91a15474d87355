"""The demo's Aurora DSQL step: vend a DSQL token and log in, then recreate the mapped IAM role
and let the canary name the mapping that still points at the old one, and grant it again."""
from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any

from chalicelib.canary.runner import run_canary
from chalicelib.observability import logger
from chalicelib.policy.loader import load_policy_file
from devtools.local.canary import local_canary_deps, local_canary_env
from devtools.local.sessions import AccountSessions
from rdsvend.connect import connection_params
from rdsvend.errors import VendError

__all__ = ["dsql_step", "DSQL_DATABASE", "DSQL_DB_USER", "SIGNER_ROLE"]

DSQL_DATABASE = "ledger-local"
DSQL_DB_USER = "ledger_app"
SIGNER_ROLE = "rdsvend-ledger-signer"
ACCOUNT = "222222222222"


def dsql_step(demo: Any, say: Callable[..., None], failed: type[Exception]) -> None:
    info = demo.stack.info
    signer = f"arn:aws:iam::{ACCOUNT}:role/{SIGNER_ROLE}"
    say(f"4c. Aurora DSQL: the same call for {DSQL_DB_USER} on {DSQL_DATABASE}, a cluster of the local DSQL "
        "API served by a PostgreSQL that takes only DSQL tokens (service dsql, DbConnect for custom roles, "
        "DbConnectAdmin for admin, bound to the cluster's host).")
    vended = _vend(demo, "allowed", DSQL_DB_USER)
    action = "DbConnectAdmin" if "Action=DbConnectAdmin&" in vended.token else "DbConnect"
    say(f"Got a {action} token for engine {vended.engine}, valid {vended.ttl_seconds} s; sslmode "
        f"{vended.sslmode}, ssl_root_cert {vended.ssl_root_cert} (DSQL serves a public CA's certificate).", 3)
    rows = _query(vended, info.ca_path, "SELECT account, cents FROM entries ORDER BY id")
    say(f"Logged in as {DSQL_DB_USER} (TLS verify-full): {', '.join(f'{a} {c}' for a, c in rows)}.", 3)
    mapped = _query(vended, info.ca_path, "SELECT pg_role_name, arn FROM sys.iam_pg_role_mappings")
    say(f"sys.iam_pg_role_mappings: {', '.join(f'{r} -> {a}' for r, a in mapped)}.", 3)

    say(f"Now {SIGNER_ROLE} is deleted and created again with the same name and policies, as a redeploy "
        "does: same ARN, new unique id. The mapping still shows the ARN; DSQL refuses the role's logins.", 3)
    _recreate_role(info, SIGNER_ROLE)
    check = _canary(info).check("dsql.role_mapping")
    if check.status != "fail":
        raise failed(f"the canary did not notice the recreated role: dsql.role_mapping is {check.status}")
    say(f"canary: dsql.role_mapping FAIL: {check.message}", 3)
    say(f"fix: {check.fix}", 3)

    say("The local AWS IAM GRANT, run as DSQL's admin (the operator may have it): "
        f"SELECT sys.aws_iam_grant('{DSQL_DB_USER}', '{signer}').", 3)
    admin = _vend(demo, "operator", "admin")
    _query(admin, info.ca_path, "SELECT sys.aws_iam_grant(%s, %s)", (DSQL_DB_USER, signer))
    again = _canary(info)
    if again.status != "pass":
        raise failed(f"the canary is not green after the grant: {again.status}")
    say(f"canary: {DSQL_DATABASE}/{DSQL_DB_USER} PASS again; "
        f"{_query(_vend(demo, 'allowed', DSQL_DB_USER), info.ca_path, 'SELECT current_user')[0][0]} "
        "logs in.", 3)


def _vend(demo: Any, caller: str, db_user: str) -> Any:
    """A token as ``caller``; a 503 (retry later) is retried as its Retry-After says, three times."""

    for attempt in range(3):
        try:
            return demo.api(caller).vend(DSQL_DATABASE, db_user)
        except VendError as exc:
            if exc.status != 503 or attempt == 2:
                raise
            time.sleep(min(float(exc.retry_after or 1), 5.0))
    raise AssertionError("unreachable")


def _query(vended: Any, ca_path: str, statement: str, params: tuple[str, ...] | None = None) -> list[Any]:
    import psycopg


    with psycopg.connect(**connection_params(vended, {"PGSSLROOTCERT": ca_path}), connect_timeout=10,
                         autocommit=True) as conn:
        cursor = conn.execute(statement, params)
        return list(cursor.fetchall()) if cursor.description else []


def _recreate_role(info: Any, name: str) -> None:
    """Delete the role and create it again with the same trust, inline and attached policies."""

    iam = AccountSessions(info.moto_url, info.region, info.seeded.management_account).client("iam", ACCOUNT)
    role = iam.get_role(RoleName=name)["Role"]
    trust = role["AssumeRolePolicyDocument"]
    attached = iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]
    inline = {policy: iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"]
              for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]}
    for policy in attached:
        iam.detach_role_policy(RoleName=name, PolicyArn=policy["PolicyArn"])
    for policy in inline:
        iam.delete_role_policy(RoleName=name, PolicyName=policy)
    iam.delete_role(RoleName=name)
    iam.create_role(RoleName=name, Path=role.get("Path", "/"),
                    AssumeRolePolicyDocument=trust if isinstance(trust, str) else json.dumps(trust))
    for policy, document in inline.items():
        iam.put_role_policy(RoleName=name, PolicyName=policy,
                            PolicyDocument=document if isinstance(document, str) else json.dumps(document))
    for policy in attached:
        iam.attach_role_policy(RoleName=name, PolicyArn=policy["PolicyArn"])


def _canary(info: Any) -> Any:
    """The canary's report for the DSQL cluster's custom role (as the service's canary runs it)."""

    logger.setLevel("WARNING")

    policy = load_policy_file(info.policy_path)
    ledger = dataclasses.replace(policy.databases[DSQL_DATABASE],
                                 users={DSQL_DB_USER: policy.databases[DSQL_DATABASE].users[DSQL_DB_USER]})
    only = dataclasses.replace(policy, databases={DSQL_DATABASE: ledger})
    report = run_canary(only, local_canary_deps(info, only, env=local_canary_env(info)))
    return report.targets[0]
