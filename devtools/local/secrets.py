"""The local stack's Secrets Manager side: the password users' secrets, and rotation without
Lambda.

At start (:func:`seed_password_secrets`), every ``auth: password`` user of the access policy
gets a fresh password, set in its local database, and a secret in the RDS convention
(``{"engine", "host", "port", "username", "password", "dbname"}``, plus ``masterarn`` for
alternating users, whose administrator secret ``rdsvend/<database>/master`` holds the local
superuser) under the name its ARN gives, in the ARN's account, with rotation enabled (every 30
days) as Secrets Manager reports it.

moto cannot invoke a Lambda function, so :func:`rotate_locally` does what Secrets Manager's
RotateSecret does around the function: it refuses a second rotation of a secret while one runs,
picks the ClientRequestToken (or resumes the rotation in flight, or refuses it), stages it
AWSPENDING in the function's view (:class:`LocalRotationStore`; Secrets Manager registers that
version before it calls createSecret), then runs the same four
steps through :func:`chalicelib.rotation.handler.handle_rotation`, the ``rotate`` function's body.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import secrets as _secrets
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from chalicelib.policy.model import AccessPolicy, Database, DbUser
from chalicelib.policy.password_users import secret_arn_parts
from chalicelib.rotation.event import STEPS
from chalicelib.rotation.handler import RotationFailedError, handle_rotation
from chalicelib.rotation.store import BotoSecretStore, SecretMeta
from devtools.local.mariadb import MASTER

__all__ = ["SeededSecret", "seed_password_secrets", "password_users", "LocalRotationStore", "rotate_locally",
           "pending_token", "ROTATION_DAYS"]

log = logging.getLogger(__name__)

ROTATION_DAYS = 30


@dataclass(frozen=True)
class SeededSecret:
    database: str
    db_user: str
    arn: str  # the full ARN moto gave it (with its 6-character suffix)
    rotation: str


def password_users(policy: AccessPolicy) -> list[tuple[Database, DbUser]]:
    return [(db, user) for db, user in policy.targets() if user.auth == "password" and user.secret]


def _set_password(cluster: Any, user: str, password: str) -> None:
    """The login's password in its local database (PostgreSQL: ALTER ROLE; others: their hook)."""
    server = getattr(cluster, "server", None)
    if server is not None:  # the local MariaDB (devtools.local.rds_mysql.LocalMariaDB): every host of the user
        for (host,) in server.run_sql("SELECT Host FROM mysql.user WHERE User = %s", (user,)) or ():
            server.run_sql("ALTER USER %s@%s IDENTIFIED BY %s", (user, host, password))
        return
    from psycopg import sql

    cluster.run_sql(sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(sql.Identifier(user),
                                                                         sql.Literal(password)))


def _admin_login(cluster: Any) -> tuple[str, str]:
    """The local superuser's name and password."""
    server = getattr(cluster, "server", None)
    if server is not None:  # the local MariaDB's RDS-like master user

        return MASTER, str(server.master_password)
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(cluster.admin_dsn)
    return str(params["user"]), str(params["password"])


def seed_password_secrets(policy: AccessPolicy, instances: Mapping[str, Any], clusters: Mapping[str, Any],
                          client_for_account: Any) -> list[SeededSecret]:
    """Give every password user of ``policy`` a password and its secret. ``instances``: the seeded
    instances by identifier (host, port, dbname); ``clusters``: the local database servers by
    identifier; ``client_for_account(account)``: a secretsmanager client acting in that account."""
    made: list[SeededSecret] = []
    masters: dict[str, str] = {}
    for database, user in password_users(policy):
        parts = secret_arn_parts(user.secret or "")
        inst = instances.get(database.identifier)
        cluster = clusters.get(database.identifier)
        if parts is None or inst is None or cluster is None:
            raise ValueError(f"password user {user.name} of {database.name}: no local instance or bad secret ARN")
        client = client_for_account(parts["account"])
        password = _secrets.token_urlsafe(24)
        _set_password(cluster, user.name, password)
        value: dict[str, Any] = {"engine": database.engine, "host": inst.host, "port": inst.port,
                                 "username": user.name, "password": password, "dbname": inst.dbname}
        if user.rotation == "alternating-users":
            key = f"{parts['account']}/{database.identifier}"
            if key not in masters:
                admin_user, admin_password = _admin_login(cluster)
                master = {"engine": database.engine, "host": inst.host, "port": inst.port,
                          "username": admin_user, "password": admin_password, "dbname": inst.dbname}
                masters[key] = _create(client, f"rdsvend/{database.name}/master", master,
                                       f"rdsvend local: administrator of {database.name}")
            value["masterarn"] = masters[key]
        arn = _create(client, parts["name"], value, f"rdsvend local: {user.name} on {database.name}")
        client.rotate_secret(SecretId=arn, RotationRules={"AutomaticallyAfterDays": ROTATION_DAYS},
                             RotateImmediately=False)
        made.append(SeededSecret(database.name, user.name, arn, user.rotation or "single-user"))
    return made


def _create(client: Any, name: str, value: Mapping[str, Any], description: str) -> str:
    return str(client.create_secret(Name=name, Description=description, SecretString=json.dumps(value))["ARN"])


class LocalRotationStore(BotoSecretStore):
    """Secrets Manager as the ``rotate`` function sees it during a rotation started with ``token``:
    the version ``token`` is staged AWSPENDING from the start, as RotateSecret makes it."""

    def __init__(self, client: Any, token: str) -> None:
        super().__init__(client)
        self._token = token

    def describe(self, secret_id: str) -> SecretMeta:
        meta = super().describe(secret_id)
        if self._token in meta.versions:
            return meta
        return replace(meta, versions={**meta.versions, self._token: ("AWSPENDING",)})


def pending_token(meta: SecretMeta) -> str | None:
    """The token of a rotation in flight (a version AWSPENDING and not AWSCURRENT), if any."""
    return next((vid for vid, stages in meta.versions.items()
                 if "AWSPENDING" in stages and "AWSCURRENT" not in stages), None)


def rotate_locally(secret_id: str, client: Any, *, policy: AccessPolicy, env: Mapping[str, str],
                   steps: tuple[str, ...] = STEPS, token: str | None = None, log_to: Any = None,
                   resume: bool = True) -> str:
    """Run ``steps`` of one rotation of ``secret_id`` through the ``rotate`` function's body;
    returns the token. Raises :class:`chalicelib.rotation.handler.RotationFailedError` (one
    line) when a step fails or the rotation is refused.

    One rotation of a secret at a time, as RotateSecret allows: a rotation already running on
    this machine (an exclusive lock per secret, released when its process ends, also when it
    is killed) is refused. A rotation in flight (a version AWSPENDING and not AWSCURRENT: one
    that was interrupted) is resumed when ``resume``; otherwise refused, naming the fix."""
    arn = BotoSecretStore(client).describe(secret_id).arn
    with _rotation_lock(arn, str(getattr(client.meta, "endpoint_url", ""))) as held:
        if not held:
            raise RotationFailedError(f"rotation of {arn} refused: another rotation of it is running; "
                                      "wait for it to finish")
        in_flight = pending_token(BotoSecretStore(client).describe(secret_id))
        if token is None:
            if in_flight is not None and not resume:
                raise RotationFailedError(
                    f"rotation of {arn} refused: a rotation is in flight (version {in_flight} is AWSPENDING); "
                    f"finish it with --resume, or end it with: aws secretsmanager update-secret-version-stage "
                    f"--secret-id {arn} --version-stage AWSPENDING --remove-from-version-id {in_flight}")
            token = in_flight or str(uuid.uuid4())
        store = LocalRotationStore(client, token)
        for step in steps:
            handle_rotation({"Step": step, "SecretId": secret_id, "ClientRequestToken": token},
                            policy=policy, store=store, env=env, log=log_to)
    return token


@contextlib.contextmanager
def _rotation_lock(arn: str, endpoint: str) -> Iterator[bool]:
    """An exclusive, non-blocking lock for rotating ``arn`` at ``endpoint`` on this machine;
    yields whether it was had. The kernel releases it when the holder's process ends."""
    digest = hashlib.sha256(f"{endpoint}|{arn}".encode()).hexdigest()[:24]
    path = Path(tempfile.gettempdir()) / f"rdsvend-rotate-{digest}.lock"
    with open(path, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
