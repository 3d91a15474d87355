"""PostgreSQL's database-side verdicts: ``db.connect``, ``db.rds_iam``, ``db.auth_conflict``, ``db.tier``.

``db.connect`` opens a TLS ``verify-full`` connection with a freshly signed token (through
:mod:`chalicelib.engines.postgres`) and records ``latency_ms``. The role checks judge the
catalogs' facts (:class:`~chalicelib.engines.postgres_catalog.RoleFacts`), read on the target
user's own connection, or on an administrator's connection when the canary has one (see
:mod:`chalicelib.canary.target`).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chalicelib.canary.model import CheckResult, errored, failed, from_verdict, passed, skipped
from chalicelib.engines.base import DbConnectError
from chalicelib.engines.postgres_catalog import RoleFacts, judge_tier
from chalicelib.policy.model import DbUser

__all__ = ["check_connect", "check_rds_iam", "check_auth_conflict", "check_tier", "facts_problem"]


# ----------------------------------------------------------------------------------- verdicts

_CONNECT_FIX = {
    "auth": ("the token was refused. In order: IAM auth enabled on the instance (rds.iam_auth_enabled), "
             "the user is in rds_iam and not rds_ad (db.rds_iam, db.auth_conflict), the signer may "
             "rds-db:connect on the exact dbuser ARN built from the resource id "
             "(iam.signer_allows, org.scp_allows), the token was signed for this exact host, port, "
             "user and region, and the signer's clock is right"),
    "tls": ("the server certificate did not verify against the CA bundle: use the RDS global bundle "
            "(rds-global-bundle.pem) or set canary.ssl_root_cert, and connect by the name on the "
            "certificate (the RDS endpoint, not an IP or an alias)"),
    "refused": ("nothing accepts connections there: check host and port, the security group and "
                "network ACLs from the canary's subnets, and that the database is running"),
    "timeout": ("no answer in time: check security groups, routes and NAT from the canary's "
                "subnets to the database, and the database's load"),
    "missing": "create the database or role named in the message, or fix dbname in the policy",
    "other": "read the server's message above; check the database's log for the same minute",
}


def check_connect(*, host: str, port: int, user: str, error: DbConnectError | None,
                  latency_ms: float | None, tls: Mapping[str, Any]) -> CheckResult:
    cid = "db.connect"
    details: dict[str, Any] = {"host": host, "port": port, "user": user, **tls}
    if error is None:
        details["latency_ms"] = latency_ms
        return passed(cid, f"connected to {host}:{port} as {user} with a fresh token "
                      f"(TLS {tls.get('sslmode')}, {latency_ms} ms)", **details)
    details["error_kind"] = error.kind
    if error.kind == "timeout":
        return errored(cid, f"no answer from {host}:{port} within the connect timeout: "
                       f"{error.message}", _CONNECT_FIX["timeout"], **details)
    return failed(cid, f"could not connect to {host}:{port} as {user}: {error.message}",
                  _CONNECT_FIX[error.kind], **details)


def facts_problem(cid: str, facts: RoleFacts | DbConnectError | None, why: str) -> CheckResult | None:
    if facts is None:
        return skipped(cid, f"not checked: {why}")
    if isinstance(facts, DbConnectError):
        return errored(cid, f"could not read the catalogs: {facts.message}", **{"error_kind": facts.kind})
    return None


def check_rds_iam(user: str, facts: RoleFacts | DbConnectError | None, why: str = "") -> CheckResult:
    cid = "db.rds_iam"
    early = facts_problem(cid, facts, why or "no database session")
    if early is not None:
        return early
    assert isinstance(facts, RoleFacts)
    if not facts.exists:
        return failed(cid, f"role {user} does not exist in the database",
                      f"CREATE USER {user} WITH LOGIN; GRANT rds_iam TO {user};", role=user)
    if not facts.rds_iam_exists:
        return failed(cid, "the rds_iam role does not exist: this server does not do RDS IAM "
                      "authentication", "connect the policy to an RDS PostgreSQL instance",
                      role=user)
    if facts.in_rds_iam:
        path = " -> ".join((user, *(facts.rds_iam_path or ())))
        return passed(cid, f"{user} is a member of rds_iam ({path})", role=user,
                      path=list(facts.rds_iam_path or ()))
    return failed(cid, f"{user} is not a member of rds_iam: RDS answers every token with "
                  f"\"PAM authentication failed for user \\\"{user}\\\"\"",
                  f"GRANT rds_iam TO {user};", role=user)


def check_auth_conflict(user: str, facts: RoleFacts | DbConnectError | None, why: str = "") -> CheckResult:
    cid = "db.auth_conflict"
    early = facts_problem(cid, facts, why or "no database session")
    if early is not None:
        return early
    assert isinstance(facts, RoleFacts)
    if not facts.exists:
        return skipped(cid, f"not checked: role {user} does not exist")
    if not facts.in_rds_ad:
        return passed(cid, f"{user} is not in rds_ad (directly or through nested roles)", role=user)
    path = list(facts.rds_ad_path or ())
    direct = len(path) == 1
    via = "directly" if direct else "through " + " -> ".join([user, *path])
    grant = path[0]
    return failed(cid, f"{user} is in both rds_iam and rds_ad ({via}): RDS allows one "
                  "authentication method per user, and IAM logins fail with \"PAM authentication "
                  "failed for user\"",
                  f"REVOKE {grant} FROM {user};" + ("" if direct else
                                                   f" (rds_ad comes in through role {grant})"),
                  role=user, path=path)


def check_tier(user: DbUser, facts: RoleFacts | DbConnectError | None, why: str = "") -> CheckResult:
    cid = "db.tier"
    if user.tier is None:
        return skipped(cid, f"no tier declared for {user.name}")
    early = facts_problem(cid, facts, why or "no database session")
    if early is not None:
        return early
    assert isinstance(facts, RoleFacts)
    return from_verdict(cid, judge_tier(user.name, user.tier, facts))
