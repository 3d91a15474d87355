"""The doctor's words for the checks of ``auth: password`` users (see :mod:`explain`)."""
from __future__ import annotations

from collections.abc import Callable

from chalicelib.canary.model import CheckResult, TargetReport

__all__ = ["PASSWORD_WHY"]


def _found(c: CheckResult, t: TargetReport) -> str:
    return ("A password user's password lives in its Secrets Manager secret, as JSON in the RDS convention "
            "(engine, host, port, username, password, dbname, plus masterarn for alternating users). Without "
            "a readable secret for this user, nothing can log in with it and nothing can rotate it.")


def _rotation(c: CheckResult, t: TargetReport) -> str:
    if not c.details.get("rotation_enabled"):
        return ("Secrets Manager does not rotate this secret: the password stays the same for ever. Attach "
                "rdsvend's rotate function with a schedule.")
    return ("The secret is rotated on a schedule, but the last successful rotation is older than the "
            "interval plus a day: rotations have been failing. Each failed step leaves one line in the "
            "rotate function's log naming the step (createSecret, setSecret, testSecret, finishSecret) and "
            "the secret.")


def _login(c: CheckResult, t: TargetReport) -> str:
    if c.details.get("error_kind") != "auth":
        return ""
    return (f"The database refused AWSCURRENT's password for {c.details.get('user', t.db_user)} (\"password "
            "authentication failed for user\"). Either a rotation stopped after setSecret (the database "
            "has the AWSPENDING password; rdsvend's client retries with it, other clients fail until "
            "finishSecret), the password was changed outside Secrets Manager, or the user is in rds_iam.")


def _not_iam(c: CheckResult, t: TargetReport) -> str:
    if "plugins" in c.details:  # the MySQL family
        return ("A user identified with AWSAuthenticationPlugin logs in only with an IAM auth token: its "
                "password is refused with 1045 Access denied. A password user must be identified by its "
                "password alone.")
    return ("On RDS PostgreSQL a member of rds_iam can log in only with an IAM auth token: its password is "
            "refused with \"PAM authentication failed for user\". A password user must not be in rds_iam, "
            "directly or through a role it belongs to.")


PASSWORD_WHY: dict[str, Callable[[CheckResult, TargetReport], str]] = {
    "secret.found": _found, "secret.rotation": _rotation, "db.password_login": _login, "db.not_iam": _not_iam,
}
