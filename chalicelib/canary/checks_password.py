"""The canary's checks for ``auth: password`` users (their passwords live in Secrets Manager):

- ``secret.found``: the declared secret exists and AWSCURRENT is a database secret (RDS
  convention) for this user (or its ``_clone``);
- ``secret.rotation``: rotation is enabled and the secret was last rotated within its interval
  plus a day;
- ``db.password_login``: AWSCURRENT logs in over TLS verify-full;
- ``db.not_iam``: the login is not a member of ``rds_iam`` (on RDS PostgreSQL such a member
  can only log in with a token: its password is refused);
- ``db.tier``: as for every user (:func:`chalicelib.canary.checks_db.check_tier`).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from chalicelib.aws.probe import AwsClients, probe
from chalicelib.canary.model import CheckResult, errored, failed, passed, skipped, warned
from chalicelib.engines.base import DbConnectError
from chalicelib.engines.mysql_grants import MysqlUserFacts
from chalicelib.engines.postgres_catalog import RoleFacts
from chalicelib.engines.secret import DbSecret, DbSecretError, base_of, parse_secret
from chalicelib.errors import ProbeError
from chalicelib.policy.model import DbUser
from chalicelib.policy.password_users import secret_arn_parts

__all__ = ["SecretFacts", "SecretView", "BotoSecretFacts", "check_secret_found", "check_secret_rotation",
           "check_password_login", "check_not_iam", "check_not_iam_mysql"]


@dataclass(frozen=True)
class SecretView:
    """What the canary read of one secret: its metadata and AWSCURRENT (parsed, or why not)."""

    arn: str
    name: str
    rotation_enabled: bool
    rotation_days: int | None
    last_rotated: datetime | None
    rotation_lambda: str | None
    current: DbSecret | None
    current_problem: str = ""


class SecretFacts(Protocol):
    def read(self, arn: str) -> SecretView | None:
        """The secret (None: it does not exist); :class:`ProbeError` when it cannot be read."""


class BotoSecretFacts:
    """Secrets Manager with the canary's credentials, in the secret's region."""

    def __init__(self, clients: AwsClients) -> None:
        self._clients = clients

    def read(self, arn: str) -> SecretView | None:
        parts = secret_arn_parts(arn)
        client = self._clients.client("secretsmanager", parts["region"] if parts else None)
        try:
            with probe("secretsmanager", "DescribeSecret"):
                meta = client.describe_secret(SecretId=arn)
            with probe("secretsmanager", "GetSecretValue"):
                text = client.get_secret_value(SecretId=arn, VersionStage="AWSCURRENT").get("SecretString")
        except ProbeError as exc:
            if exc.code == "ResourceNotFoundException":
                return None
            raise
        current, problem = None, ""
        try:
            current = parse_secret(text, what="AWSCURRENT")
        except DbSecretError as exc:
            problem = exc.message
        days = (meta.get("RotationRules") or {}).get("AutomaticallyAfterDays")
        return SecretView(arn=meta.get("ARN", arn), name=meta.get("Name", ""),
                          rotation_enabled=bool(meta.get("RotationEnabled")),
                          rotation_days=days if isinstance(days, int) and days > 0 else None,
                          last_rotated=meta.get("LastRotatedDate"), rotation_lambda=meta.get("RotationLambdaARN"),
                          current=current, current_problem=problem)


def check_secret_found(user: DbUser, view: SecretView | None | ProbeError) -> CheckResult:
    cid = "secret.found"
    arn = user.secret or ""
    if isinstance(view, ProbeError):
        return errored(cid, f"could not read secret {arn}: {view.cause}",
                       "let the canary call secretsmanager:DescribeSecret and GetSecretValue on the secret "
                       "(and kms:Decrypt on its key), then re-run", secret=arn)
    if view is None:
        return failed(cid, f"secret {arn} does not exist",
                      f"create it in the RDS convention ({{\"engine\", \"host\", \"port\", \"username\": "
                      f"\"{user.name}\", \"password\", \"dbname\"}}) or fix 'secret' in the policy", secret=arn)
    if view.current is None:
        return failed(cid, f"AWSCURRENT of {view.arn} is not a database secret: {view.current_problem}",
                      "store AWSCURRENT as JSON in the RDS convention: engine, host, port, username, "
                      "password, dbname (and masterarn for alternating users)", secret=view.arn)
    if base_of(view.current.username) != user.name:
        return failed(cid, f"AWSCURRENT of {view.arn} is for user {view.current.username}, not {user.name}",
                      "point 'secret' at this user's secret, or fix the secret's username", secret=view.arn)
    if user.rotation == "alternating-users" and view.current.masterarn is None:
        return failed(cid, f"AWSCURRENT of {view.arn} has no masterarn: alternating-users rotation needs the "
                      "administrator's secret", "add \"masterarn\": the ARN of the master user's secret",
                      secret=view.arn)
    return passed(cid, f"secret {view.arn} holds {view.current.username}@{view.current.host}:{view.current.port}",
                  secret=view.arn, username=view.current.username)


def check_secret_rotation(user: DbUser, view: SecretView | None, now: datetime | None = None) -> CheckResult:
    cid = "secret.rotation"
    if view is None:
        return skipped(cid, "not checked: secret.found failed")
    now = now or datetime.now(UTC)
    fix_enable = (f"aws secretsmanager rotate-secret --secret-id {view.arn} --rotation-lambda-arn <the rotate "
                  "function's ARN> --rotation-rules AutomaticallyAfterDays=30 (make package sets this up)")
    details: dict[str, Any] = {"secret": view.arn, "rotation_enabled": view.rotation_enabled,
                               "rotation_days": view.rotation_days,
                               "last_rotated": view.last_rotated.isoformat() if view.last_rotated else None}
    if not view.rotation_enabled:
        return failed(cid, f"rotation is not enabled on {view.arn}", fix_enable, **details)
    if view.rotation_days is None:
        return warned(cid, f"rotation is enabled on {view.arn} without an AutomaticallyAfterDays interval",
                      "give the schedule an interval (RotationRules.AutomaticallyAfterDays)", **details)
    if view.last_rotated is None:
        return failed(cid, f"{view.arn} has never been rotated",
                      f"rdsvend rotate <database> {user.name}, then read the rotate function's log", **details)
    last = view.last_rotated if view.last_rotated.tzinfo else view.last_rotated.replace(tzinfo=UTC)
    age = now - last
    limit = timedelta(days=view.rotation_days + 1)
    details["age_days"] = round(age.total_seconds() / 86400, 1)
    if age > limit:
        return failed(cid, f"{view.arn} was last rotated {details['age_days']} days ago; its interval is "
                      f"{view.rotation_days} days (plus a day)",
                      "rotations are failing: read the rotate function's log (each line names the step), fix "
                      f"the cause, then rdsvend rotate <database> {user.name}", **details)
    return passed(cid, f"rotated {details['age_days']} days ago, every {view.rotation_days} days", **details)


_LOGIN_FIX = {
    "auth": ("the database does not accept AWSCURRENT's password: a rotation stopped between setSecret and "
             "finishSecret (rdsvend rotate resumes it), someone changed the password outside Secrets Manager "
             "(set it back, or rotate), or the login is in rds_iam (see db.not_iam)"),
    "tls": ("the server certificate did not verify against the CA bundle: use the RDS global bundle and the "
            "endpoint name on the certificate (the secret's host)"),
    "refused": "nothing accepts connections at the secret's host and port: fix host/port in the secret, or the network",
    "timeout": "no answer in time from the secret's host and port: check security groups and routes",
    "missing": "create the database or role named in the message, or fix dbname/username in the secret",
    "other": "read the server's message above; check the database's log for the same minute",
}


def check_password_login(secret: DbSecret, error: DbConnectError | None, latency_ms: float | None,
                         sslrootcert: str | None) -> CheckResult:
    cid = "db.password_login"
    details: dict[str, Any] = {"host": secret.host, "port": secret.port, "user": secret.username,
                               "sslmode": "verify-full", "sslrootcert": sslrootcert}
    if error is None:
        return passed(cid, f"AWSCURRENT logs in as {secret.username} at {secret.host}:{secret.port} "
                      f"(TLS verify-full, {latency_ms} ms)", latency_ms=latency_ms, **details)
    details["error_kind"] = error.kind
    if error.kind == "timeout":
        return errored(cid, f"no answer from {secret.host}:{secret.port}: {error.message}", _LOGIN_FIX["timeout"],
                       **details)
    return failed(cid, f"AWSCURRENT does not log in as {secret.username} at {secret.host}:{secret.port}: "
                  f"{error.message}", _LOGIN_FIX.get(error.kind, _LOGIN_FIX["other"]), **details)


def check_not_iam(username: str, facts: RoleFacts | DbConnectError | None, why: str = "") -> CheckResult:
    cid = "db.not_iam"
    if facts is None:
        return skipped(cid, f"not checked: {why or 'no database session'}")
    if isinstance(facts, DbConnectError):
        return errored(cid, f"could not read the catalogs: {facts.message}", error_kind=facts.kind)
    if not facts.exists:
        return failed(cid, f"role {username} does not exist in the database",
                      f"CREATE ROLE {username} LOGIN; then rdsvend rotate sets its password", role=username)
    if facts.in_rds_iam:
        path = " -> ".join((username, *(facts.rds_iam_path or ())))
        grant = (facts.rds_iam_path or ("rds_iam",))[0]
        return failed(cid, f"{username} is a member of rds_iam ({path}): on RDS PostgreSQL it can then log in "
                      "only with an IAM token, and its password is refused",
                      f"REVOKE {grant} FROM {username};", role=username, path=list(facts.rds_iam_path or ()))
    return passed(cid, f"{username} is not in rds_iam: its password is accepted", role=username)


def check_not_iam_mysql(username: str, facts: MysqlUserFacts | DbConnectError | None, why: str = "") -> CheckResult:
    """The MySQL family: a user identified with AWSAuthenticationPlugin logs in with tokens only."""
    cid = "db.not_iam"
    if facts is None:
        return skipped(cid, f"not checked: {why or 'no database session'}")
    if isinstance(facts, DbConnectError):
        return errored(cid, f"could not read the user: {facts.message}", error_kind=facts.kind)
    if not facts.exists:
        return failed(cid, f"user {username} does not exist in the database",
                      f"CREATE USER '{username}'@'%' IDENTIFIED BY '<a password>'; then rdsvend rotate sets it",
                      user=username)
    if facts.iam:
        return failed(cid, f"{username} is identified with AWSAuthenticationPlugin: it can log in only with an "
                      "IAM token, and its password is refused (1045 Access denied)",
                      f"ALTER USER '{username}'@'%' IDENTIFIED BY '<the AWSCURRENT password>'; (or rdsvend rotate, "
                      "run as the administrator)", user=username, plugins=list(facts.plugins))
    return passed(cid, f"{username} is not identified with AWSAuthenticationPlugin: its password is accepted",
                  user=username, plugins=list(facts.plugins))
