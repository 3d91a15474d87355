"""The doctor's words for the checks of ``auth: password`` users (see :mod:`explain`)."""
from __future__ import annotations

from chalicelib.canary.explain_shape import Why, has_detail, on_auth_refusal, said, when
from chalicelib.canary.model import CheckResult, TargetReport

__all__ = ["PASSWORD_WHY"]

_NO_SECRET = ("A password user's password lives in its Secrets Manager secret, as JSON in the RDS convention "
              "(engine, host, port, username, password, dbname, plus masterarn for alternating users). Without "
              "a readable secret for this user, nothing can log in with it and nothing can rotate it.")
_NOT_ROTATED = ("Secrets Manager does not rotate this secret: the password stays the same for ever. Attach "
                "rdsvend's rotate function with a schedule.")
_ROTATIONS_FAIL = ("The secret is rotated on a schedule, but the last successful rotation is older than the "
                   "interval plus a day: rotations have been failing. Each failed step leaves one line in the "
                   "rotate function's log naming the step (createSecret, setSecret, testSecret, finishSecret) and "
                   "the secret.")
_MYSQL_IAM_USER = ("A user identified with AWSAuthenticationPlugin logs in only with an IAM auth token: its "
                   "password is refused with 1045 Access denied. A password user must be identified by its "
                   "password alone.")
_RDS_IAM_MEMBER = ("On RDS PostgreSQL a member of rds_iam can log in only with an IAM auth token: its password is "
                   "refused with \"PAM authentication failed for user\". A password user must not be in rds_iam, "
                   "directly or through a role it belongs to.")


def _password_refused(c: CheckResult, t: TargetReport) -> str:
    return (f"The database refused AWSCURRENT's password for {c.details.get('user', t.db_user)} (\"password "
            "authentication failed for user\"). Either a rotation stopped after setSecret (the database "
            "has the AWSPENDING password; rdsvend's client retries with it, other clients fail until "
            "finishSecret), the password was changed outside Secrets Manager, or the user is in rds_iam.")


def _mysql_family(c: CheckResult) -> bool:
    return "plugins" in c.details  # the MySQL family's facts name the user's plugins


PASSWORD_WHY: dict[str, Why] = {
    "secret.found": said(_NO_SECRET),
    "secret.rotation": when(has_detail("rotation_enabled"), _ROTATIONS_FAIL, otherwise=_NOT_ROTATED),
    "db.password_login": on_auth_refusal(_password_refused),
    "db.not_iam": when(_mysql_family, _MYSQL_IAM_USER, otherwise=_RDS_IAM_MEMBER),
}
