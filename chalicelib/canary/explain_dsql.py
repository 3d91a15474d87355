"""``rdsvend doctor``'s words for an Aurora DSQL target: the RDS explanations with DSQL's action,
resource and refusal, and the two checks only DSQL has (``dsql.found``, ``dsql.role_mapping``)."""
from __future__ import annotations

from chalicelib.canary.explain_shape import Why, has_detail, on_auth_refusal, when
from chalicelib.canary.model import CheckResult, TargetReport

__all__ = ["DSQL_WHY", "is_dsql_target", "dsql_refusal", "dsql_words"]


def is_dsql_target(target: TargetReport) -> bool:
    return target.check("dsql.found") is not None


def dsql_refusal(user: str) -> str:
    return f'FATAL: unable to accept connection, access denied for role "{user}" (SQLSTATE 28000)'


def dsql_words(text: str, user: str, pam: str) -> str:
    """An RDS explanation said for DSQL: its action, its resource, its refusal."""
    action = "dsql:DbConnectAdmin" if user == "admin" else "dsql:DbConnect"
    return (text.replace(pam, dsql_refusal(user)).replace("rds-db:connect", action)
            .replace("dbuser ARN", "cluster ARN").replace("RDS reports", "DSQL reports")
            .replace("RDS refuses", "DSQL refuses"))


def _cluster_status(c: CheckResult, t: TargetReport) -> str:
    return (f"DSQL reports the cluster as '{c.details['status']}'. Only an ACTIVE cluster takes logins; "
            "clients see the connection refused or time out, not an authentication error.")


_NO_CLUSTER = ("Aurora DSQL has no cluster by the id in the access policy, in that region and account: the "
               "id is mistyped, the cluster lives elsewhere, or it was deleted. Its endpoint "
               "(ID.dsql.REGION.on.aws) then does not resolve.")


def _login_refused(c: CheckResult, t: TargetReport) -> str:
    return (f"DSQL answered {dsql_refusal(t.db_user)}. With IAM and SCPs allowing the action, look at "
            "the database side: a custom role needs AWS IAM GRANT to the signing role, and that grant "
            "must name the role as it is now (see dsql.role_mapping); a DbConnect token never logs in as "
            "admin; a token is bound to the cluster's host name and region.")


def _mapping(c: CheckResult, t: TargetReport) -> str:
    return ("DSQL maps a database role to an IAM role with AWS IAM GRANT and keeps the identity the IAM role "
            "had at that moment. A role deleted and created again under the same name has the same ARN and a "
            "new unique id: sys.iam_pg_role_mappings still shows the ARN, yet DSQL refuses every login of the "
            f"database role with {dsql_refusal(t.db_user)} while every deploy reports success. Granting "
            "again (after revoking the stale mapping) records the role as it is now.")


DSQL_WHY: dict[str, Why] = {
    "dsql.found": when(has_detail("status"), _cluster_status, otherwise=_NO_CLUSTER),
    "db.connect": on_auth_refusal(_login_refused),
    "dsql.role_mapping": _mapping,
}
