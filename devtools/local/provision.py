"""What the local stack prepares before and while it serves: the app's process environment
and warm imports, each database's superuser, users and the world's SQL, the password users'
secrets, the generated access policy, the gateway in front of the app, and the final probe.
"""
from __future__ import annotations

import importlib
import logging
import os
import secrets
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from app import app
from chalicelib.aws.errors import aws_error
from chalicelib.grants.store import create_grants_table
from chalicelib.policy.loader import load_policy_file
from chalicelib.policy.model import partition_of_region
from chalicelib.routes.http import set_vending_service
from devtools.local.authorize import service_permission
from devtools.local.aws import org_id_of
from devtools.local.calls import signed_request
from devtools.local.canary import LOCAL_GRANTS_TABLE
from devtools.local.gateway import Gateway
from devtools.local.secrets import seed_password_secrets
from devtools.local.state import StackError, StackInfo

__all__ = ["POWERTOOLS_DEFAULTS", "admin_dsn", "create_database", "port_of", "probe", "seed_secrets",
           "merged_access_text", "password_secret_arn", "world_users",
           "start_gateway", "warm_imports", "write_access_policy", "LOCAL_GRANTS_TABLE", "prepare_grants"]

log = logging.getLogger("devtools.local.stack")


#: The local stack's just-in-time grants table (in the service account's moto).

POWERTOOLS_DEFAULTS = {"POWERTOOLS_SERVICE_NAME": "rdsvend", "POWERTOOLS_METRICS_NAMESPACE": "rdsvend",
                        "POWERTOOLS_TRACE_DISABLED": "true"}


def warm_imports() -> None:
    for module in ("moto.rds.models", "moto.iam.models", "moto.sts.models", "moto.organizations.models",
                   "moto.rds.responses", "moto.iam.responses", "moto.ds.models", "moto.ds.responses",
                   "chalicelib.iam.connect", "app", "chalicelib.routes.invoke"):
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001 - only a head start; the real import reports errors
            log.debug("warm import of %s failed", module)


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def admin_dsn(cluster: Any, ca_path: Path) -> str:
    """A cluster's superuser DSN, verified against the stack's CA bundle."""
    import psycopg.conninfo

    params = psycopg.conninfo.conninfo_to_dict(cluster.admin_dsn)
    params["sslrootcert"] = str(ca_path)
    return psycopg.conninfo.make_conninfo("", **params)


def create_database(cluster: Any, spec: Any) -> None:
    """The database, its users (``rds_iam`` for IAM users, ``rds_ad`` for Kerberos ones) and the
    world's set-up statements, run as the superuser."""
    from psycopg import sql

    cluster.run_sql(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(spec.dbname)))
    for user in spec.users.values():
        if user.auth == "iam":
            cluster.create_iam_user(user.name)
        elif user.auth == "kerberos":
            # No password: on RDS such a user logs in with Kerberos only; here, not at all.
            cluster.run_sql(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(user.name)))
            cluster.run_sql(sql.SQL("GRANT rds_ad TO {}").format(sql.Identifier(user.name)))
        else:
            cluster.create_password_user(user.name, secrets.token_urlsafe(24))
    for statement in spec.setup_sql:
        cluster.run_sql(statement, dbname=spec.dbname)


def seed_secrets(policy_path: Path, seeded: Any, clusters: Any, sessions: Any) -> None:
    """The password users' passwords and secrets (in the local Secrets Manager)."""

    seed_password_secrets(load_policy_file(policy_path), seeded.instances, clusters,
                          lambda account: sessions.client("secretsmanager", account))


def write_access_policy(template: Path, target: Path, seeded: Any, ca_path: Path, world: Any = None,
                        dsql: dict[str, tuple[str, str, int]] | None = None) -> None:
    """The access policy with each local database's real host and port, validated; a DSQL
    database (named as the world's cluster) gets the id the local DSQL API gave it, and the
    local endpoint's host and port (``dsql``: name -> (cluster id, host, port)).

    The world file is where the local databases' users are declared: a user of a database (or
    DSQL cluster) in the world that the template does not list is added to it (its ``auth`` and
    ``tier``; a password user's ``rotation`` and the secret the stack seeds for it), so adding
    a user takes one line in the world file (:func:`merged_access_text`)."""
    import yaml


    data = yaml.safe_load(merged_access_text(template, world))
    for name, spec in (data.get("databases") or {}).items():
        if spec.get("engine") == "dsql":
            if name not in (dsql or {}):
                raise StackError(f"{template}: DSQL database '{name}' is no DSQL cluster of the world")
            spec["cluster"], spec["host"], spec["port"] = (dsql or {})[name]
            continue
        kind = "proxy" if "proxy" in spec else "instance"
        ident = spec.get(kind)
        inst = (seeded.proxies if kind == "proxy" else seeded.instances).get(ident)
        if inst is None:
            raise StackError(f"{template}: database '{name}' names {kind} '{ident}', which the world does not have")
        spec["host"], spec["port"] = inst.host, inst.port
    data.setdefault("canary", {})["ssl_root_cert"] = str(ca_path)
    header = (f"# Generated by the local stack from {template.name}: do not edit (it is rewritten at every start).\n")
    target.write_text(header + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    load_policy_file(target)


def password_secret_arn(region: str, account: str, instance: str, user: str) -> str:
    """The secret the local stack keeps a password user's password in: ``rdsvend/<instance>/<user>``
    in the database's account and region (what the world's roles may rotate: ``secret:rdsvend/*``)."""
    return f"arn:{partition_of_region(region)}:secretsmanager:{region}:{account}:secret:rdsvend/{instance}/{user}"


def _user_entry(world: Any, account: str, instance: str, user: Any) -> dict[str, str]:
    """One user as the access policy declares it: ``auth`` and ``tier``; for a password user also
    its ``rotation`` and the ``secret`` the stack seeds."""
    entry = {"auth": user.auth, **({"tier": user.tier} if user.tier else {})}
    if user.auth == "password":
        entry.update({**({"rotation": user.rotation} if user.rotation else {}),
                      "secret": password_secret_arn(world.region, account, instance, user.name)})
    return entry


def world_users(world: Any) -> dict[str, dict[str, dict[str, str]]]:
    """Instance identifier (or ``dsql:`` and a DSQL cluster's name) -> the users the world
    declares, as the access policy declares them (:func:`_user_entry`); a DSQL cluster's are
    ``admin`` (DSQL's own) and its mapped roles, all ``auth: iam``."""
    found: dict[str, dict[str, dict[str, str]]] = {}
    if world is None:
        return found
    for account, db in world.databases():
        found[db.identifier] = {user.name: _user_entry(world, account.id, db.identifier, user)
                                for user in db.users.values()}
    for _account, cluster in world.dsql_clusters():
        found[f"dsql:{cluster.name}"] = {name: {"auth": "iam"} for name in ("admin", *cluster.roles)}
    return found


def _users_of(name: str, spec: Any, users: dict[str, dict[str, dict[str, str]]]) -> dict[str, dict[str, str]]:
    """The world's users of what an access-policy database names: its instance, or (``engine:
    dsql``) the cluster of its name; none for a proxy or anything the world does not have."""
    if not isinstance(spec, dict):
        return {}
    ident = f"dsql:{name}" if spec.get("engine") == "dsql" else spec.get("instance")
    return users.get(ident, {}) if isinstance(ident, str) else {}


def _add_world_users(spec: Any, users: dict[str, dict[str, str]]) -> bool:
    """Add the world's users ``spec`` does not list; whether any was added."""
    if not isinstance(spec, dict) or not users:
        return False
    listed = spec.get("users")
    if listed is None:
        listed = spec["users"] = {}
    if not isinstance(listed, dict):
        return False  # the loader names the field
    missing = {name: dict(facts) for name, facts in users.items() if name not in listed}
    listed.update(missing)
    return bool(missing)


def merged_access_text(template: Path, world: Any) -> str:
    """The access policy template's text with the world's users added to each database it
    declares (an entry the template gives a user wins); the template's own text when there is
    nothing to add (or it does not parse: the policy loader then reports it, naming the file
    and line)."""
    import yaml

    text = template.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    databases = data.get("databases") if isinstance(data, dict) else None
    if not isinstance(databases, dict):
        return text
    users = world_users(world)
    added = [_add_world_users(spec, _users_of(str(name), spec, users)) for name, spec in databases.items()]
    return yaml.safe_dump(data, sort_keys=False) if any(added) else text


def start_gateway(world: Any, seeded: Any, policy_path: Path, lookup: Any, denials: Any = None,
                  port: int = 0) -> Any:
    """Configure this process as the Lambda would be, import the app, put the gateway in front."""

    for key in ("AWS_PROFILE", "AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE"):
        os.environ.pop(key, None)
    os.environ.update({
        "RDSVEND_POLICY": str(policy_path),
        "AWS_ENDPOINT_URL": seeded.endpoint_url,
        "RDSVEND_STS_ENDPOINT": seeded.endpoint_url,
        "AWS_DEFAULT_REGION": world.region,
        "AWS_REGION": world.region,
        "AWS_LAMBDA_FUNCTION_NAME": "rdsvend-local-api_handler",
        **seeded.execution.env(),
    })
    for key, value in POWERTOOLS_DEFAULTS.items():
        os.environ.setdefault(key, value)

    set_vending_service(None)  # built again, from this environment, on first use
    permission = None
    if denials is not None:  # the local AWS enforces IAM: execute-api:Invoke is decided too

        api = f"arn:aws:execute-api:{world.region}:{world.service_account}:"
        permission = service_permission("execute-api:Invoke", "execute-api", api, seeded.org_id, denials)
    gateway = Gateway(app, lookup, region=world.region, account=world.service_account,
                      org_id_of=org_id_of, caller_id_of=lookup.caller_id, permission=permission, port=port)
    gateway.start()
    return gateway


def prepare_grants(dynamodb: Any, admin_env: dict[str, str]) -> None:
    """The grants table, and what the in-process functions need to use it: its name, and the
    administrator DSNs that end a db user's sessions on revoke (as the canary has them)."""

    try:
        create_grants_table(dynamodb, LOCAL_GRANTS_TABLE)
    except Exception as exc:
        error = aws_error(exc)
        if error is None or error.code != "ResourceInUseException":  # the local stage made it already
            raise
    os.environ["RDSVEND_GRANTS_TABLE"] = LOCAL_GRANTS_TABLE
    os.environ.update(admin_env)


def probe(info: StackInfo, timeout: float = 10.0) -> None:
    """Everything answers: the gateway (a signed whoami), PostgreSQL (the superuser), LDAP (TCP)."""
    import psycopg

    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            status, _body = signed_request(info, "GET", "/v1/whoami")
            if status != 200:
                raise StackError(f"the gateway answered {status} to a signed whoami")
            with psycopg.connect(info.admin_dsn, connect_timeout=5) as conn:
                conn.execute("SELECT 1")
            with socket.create_connection(("127.0.0.1", info.ldap_port), timeout=2):
                pass
            return
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            last = f"{type(exc).__name__}: {str(exc)[:200]}"
            time.sleep(0.2)
    raise StackError(f"the local stack did not answer: {last}")
