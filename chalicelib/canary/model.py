"""The canary's verdict model: checks, targets and reports as frozen dataclasses.

Pure: no AWS, no database. A check is ``pass|warn|fail|error|skip``; ``error`` means the
check could not run and is never counted as a pass. A target's status is its worst check
(error > fail > warn > pass); a target whose checks were all skipped is an ``error``, because
nothing about it was proved.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from chalicelib.aws.errors import credential_code
from chalicelib.engines.base import TierVerdict

__all__ = [
    "Status",
    "STATUSES",
    "CHECK_ORDER",
    "IAM_CHECKS",
    "MYSQL_IAM_CHECKS",
    "PROXY_IAM_CHECKS",
    "PROXY_MYSQL_IAM_CHECKS",
    "KERBEROS_CHECKS",
    "DSQL_CHECKS",
    "CheckResult",
    "TargetReport",
    "Report",
    "worst",
    "passed",
    "failed",
    "errored",
    "warned",
    "skipped",
    "from_verdict",
    "IAM_CHECKS_BY_FAMILY",
    "PROXY_IAM_CHECKS_BY_FAMILY",
]

Status = Literal["pass", "warn", "fail", "error", "skip"]
STATUSES: tuple[Status, ...] = ("pass", "warn", "fail", "error", "skip")

# Higher is worse. ``skip`` says nothing on its own: it ranks below pass.
_RANK: dict[str, int] = {"skip": 0, "pass": 1, "warn": 2, "fail": 3, "error": 4}

#: Every check id, in the order a report lists them.
CHECK_ORDER: tuple[str, ...] = (
    "dsql.found",
    "rds.found",
    "rds.iam_auth_enabled",
    "rds.domain_joined",
    "rds.endpoint",
    "iam.signer_allows",
    "iam.directory_role",
    "org.scp_allows",
    "proxy.target",
    "proxy.role_allows",
    "rds.auth_errors",
    "secret.found",
    "secret.rotation",
    "db.connect",
    "db.password_login",
    "db.iam_plugin",
    "db.rds_iam",
    "db.rds_ad",
    "db.auth_conflict",
    "db.not_iam",
    "db.tier",
    "dsql.role_mapping",
)
#: The checks a role of an Aurora DSQL cluster gets (``dsql.role_mapping``: skipped for ``admin``).
DSQL_CHECKS: tuple[str, ...] = (
    "dsql.found",
    "iam.signer_allows",
    "org.scp_allows",
    "db.connect",
    "dsql.role_mapping",
)
#: The checks an ``auth: password`` user gets (its password lives in Secrets Manager).
PASSWORD_CHECKS: tuple[str, ...] = (
    "rds.found",
    "rds.endpoint",
    "secret.found",
    "secret.rotation",
    "db.password_login",
    "db.not_iam",
    "db.tier",
)
#: The checks an ``auth: iam`` user gets.
IAM_CHECKS: tuple[str, ...] = (
    "rds.found",
    "rds.iam_auth_enabled",
    "rds.endpoint",
    "iam.signer_allows",
    "org.scp_allows",
    "rds.auth_errors",
    "db.connect",
    "db.rds_iam",
    "db.auth_conflict",
    "db.tier",
)
#: The checks an ``auth: iam`` user of a MySQL-family database gets.
MYSQL_IAM_CHECKS: tuple[str, ...] = (
    "rds.found",
    "rds.iam_auth_enabled",
    "rds.endpoint",
    "iam.signer_allows",
    "org.scp_allows",
    "rds.auth_errors",
    "db.connect",
    "db.iam_plugin",
    "db.tier",
)
#: The checks an ``auth: iam`` user of an RDS Proxy database gets: leg 1 (caller to proxy), leg 2
#: (proxy to target: the target registered, the proxy's role, the user on the target), the login.
PROXY_IAM_CHECKS: tuple[str, ...] = (
    "rds.found",
    "rds.iam_auth_enabled",
    "rds.endpoint",
    "iam.signer_allows",
    "org.scp_allows",
    "proxy.target",
    "proxy.role_allows",
    "db.connect",
    "db.rds_iam",
    "db.auth_conflict",
    "db.tier",
)
#: The same behind a proxy for the MySQL family.
PROXY_MYSQL_IAM_CHECKS: tuple[str, ...] = (
    "rds.found",
    "rds.iam_auth_enabled",
    "rds.endpoint",
    "iam.signer_allows",
    "org.scp_allows",
    "proxy.target",
    "proxy.role_allows",
    "db.connect",
    "db.iam_plugin",
    "db.tier",
)
#: The checks an ``auth: iam`` user gets, by engine family.
IAM_CHECKS_BY_FAMILY: dict[str, tuple[str, ...]] = {"postgres": IAM_CHECKS, "mysql": MYSQL_IAM_CHECKS,
                                                     "dsql": DSQL_CHECKS}
#: The checks an ``auth: iam`` user behind RDS Proxy gets, by engine family.
PROXY_IAM_CHECKS_BY_FAMILY: dict[str, tuple[str, ...]] = {"postgres": PROXY_IAM_CHECKS, "mysql": PROXY_MYSQL_IAM_CHECKS}
#: The checks an ``auth: kerberos`` user gets instead of the IAM ones.
KERBEROS_CHECKS: tuple[str, ...] = (
    "rds.found",
    "rds.domain_joined",
    "rds.endpoint",
    "iam.directory_role",
    "db.rds_ad",
    "db.tier",
)


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict. ``fix`` says what an operator should change ("" when nothing)."""

    id: str
    status: Status
    message: str
    fix: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in _RANK:
            raise ValueError(f"unknown check status '{self.status}'")

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "message": self.message, "fix": self.fix,
                "details": dict(self.details)}

    @property
    def ok(self) -> bool:
        """True for pass, warn and skip: nothing here needs fixing."""
        return self.status in ("pass", "warn", "skip")


def passed(check_id: str, message: str, **details: Any) -> CheckResult:
    return CheckResult(check_id, "pass", message, "", details)


def warned(check_id: str, message: str, fix: str, **details: Any) -> CheckResult:
    return CheckResult(check_id, "warn", message, fix, details)


def failed(check_id: str, message: str, fix: str, **details: Any) -> CheckResult:
    return CheckResult(check_id, "fail", message, fix, details)


def errored(check_id: str, message: str, fix: str = "", **details: Any) -> CheckResult:
    """A check that could not run. When AWS refused the credentials themselves (a bad key or
    signature, an expired session), no permission is missing: the fix says so instead."""
    refused = credential_code(message)
    if refused is not None:
        fix = (f"AWS refused the credentials themselves ({refused}): check the access key, secret key and "
               "session token in use (or the role this runs as), then re-run; no IAM or Organizations "
               "permission needs to change")
    return CheckResult(check_id, "error", message, fix or "re-run once the cause is fixed; the "
                       "check could not run, so nothing is proved", details)


def skipped(check_id: str, message: str, **details: Any) -> CheckResult:
    return CheckResult(check_id, "skip", message, "", details)


def from_verdict(check_id: str, verdict: TierVerdict) -> CheckResult:
    """An engine's tier verdict (pass, fail or skip) as this check's result."""
    status: Status = "fail" if verdict.status == "fail" else "pass" if verdict.status == "pass" else "skip"
    return CheckResult(check_id, status, verdict.message, verdict.fix, dict(verdict.details))


def worst(statuses: Iterable[str]) -> Status:
    """The worst of ``statuses`` (error > fail > warn > pass); all-skip or none is ``error``."""
    ranked = [s for s in statuses]
    for status in ranked:
        if status not in _RANK:
            raise ValueError(f"unknown check status '{status}'")
    best_known = max(ranked, key=_RANK.__getitem__, default="skip")
    if best_known == "skip":
        return "error"
    return best_known  # type: ignore[return-value]  # every value was checked against _RANK


def _order_key(check: CheckResult) -> tuple[int, str]:
    try:
        return (CHECK_ORDER.index(check.id), check.id)
    except ValueError:
        return (len(CHECK_ORDER), check.id)


@dataclass(frozen=True)
class TargetReport:
    database: str
    db_user: str
    checks: tuple[CheckResult, ...]
    auth: str = "iam"

    @property
    def status(self) -> Status:
        return worst(c.status for c in self.checks)

    def check(self, check_id: str) -> CheckResult | None:
        for check in self.checks:
            if check.id == check_id:
                return check
        return None

    @property
    def problems(self) -> tuple[CheckResult, ...]:
        """Checks that did not pass: warn, fail and error (skips are explained by these)."""
        return tuple(c for c in self.checks if c.status in ("warn", "fail", "error"))

    @property
    def key(self) -> str:
        return f"{self.database}/{self.db_user}"

    def ordered(self) -> TargetReport:
        return TargetReport(self.database, self.db_user, tuple(sorted(self.checks, key=_order_key)),
                            self.auth)

    def to_dict(self) -> dict[str, Any]:
        return {"database": self.database, "db_user": self.db_user, "status": self.status,
                "checks": [c.to_dict() for c in self.checks]}


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Report:
    started_at: datetime
    finished_at: datetime
    targets: tuple[TargetReport, ...]

    @property
    def summary(self) -> dict[str, int]:
        counts = {"targets": len(self.targets), "pass": 0, "warn": 0, "fail": 0, "error": 0}
        for target in self.targets:
            counts[target.status] += 1
        return counts

    @property
    def ok(self) -> bool:
        """Nothing failed or errored (warnings are fine): exit code 0."""
        return all(t.status in ("pass", "warn") for t in self.targets)

    def to_dict(self) -> dict[str, Any]:
        return {"started_at": _iso(self.started_at), "finished_at": _iso(self.finished_at),
                "summary": self.summary, "targets": [t.to_dict() for t in self.targets]}
