"""IAM-side checks: ``iam.signer_allows`` and ``org.scp_allows``.

Both come from one evaluation of ``rds-db:connect`` on the exact dbuser ARN by rdsvend's own
IAM evaluator (:mod:`chalicelib.iam`), fed with the signer's live policies and the SCP chain from the root to
the account. The adapter (:class:`ConnectFacts`) hides where the policies come from; the
verdicts are pure.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from chalicelib.canary.model import CheckResult, errored, failed, passed, skipped, warned
from chalicelib.errors import ProbeError

__all__ = [
    "Finding",
    "SideVerdict",
    "ConnectFacts",
    "ConnectEvaluator",
    "InMemoryConnectEvaluator",
    "check_signer_allows",
    "check_scp_allows",
]


@dataclass(frozen=True)
class Finding:
    """Something the evaluator flagged that explains a failure or deserves a warning:
    an ARN built from the instance name, a condition key rds-db:connect never carries."""

    kind: str  # e.g. "instance_name_arn", "missing_condition_key"
    message: str
    policy: str | None = None
    statement: str | int | None = None
    value: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "policy": self.policy,
                "statement": self.statement, "value": self.value}


@dataclass(frozen=True)
class SideVerdict:
    """One side (identity+boundary, or the SCP chain) of an ``rds-db:connect`` evaluation."""

    allowed: bool
    decision: str  # allowed | explicitDeny | implicitDeny
    layer: str | None = None  # identity | boundary | session | scp
    policy: str | None = None  # policy name, ARN or SCP id (p-...)
    statement: str | int | None = None
    explanation: str = ""
    level: str | None = None  # SCP level: root r-..., OU ou-..., account
    findings: tuple[Finding, ...] = ()


@dataclass(frozen=True)
class ConnectFacts:
    principal: str
    dbuser_arn: str
    identity: SideVerdict
    scp: SideVerdict | None  # None: SCPs do not apply (management account)
    management_account: bool = False
    organization: bool = True  # False: the account is in no organization


class ConnectEvaluator(Protocol):
    def evaluate(self, principal: str, dbuser_arn: str, *, account_id: str,
                 action: str | None = None) -> ConnectFacts:
        """Evaluate ``rds-db:connect`` (or ``action`` on a DSQL cluster ARN); :class:`ProbeError` if
        the policies could not be read."""


class InMemoryConnectEvaluator:
    """Answers from a function or a fixed mapping (tests)."""

    def __init__(self, answer: Callable[[str, str, str], ConnectFacts | Exception]) -> None:
        self._answer = answer
        self.calls: list[tuple[str, str, str]] = []

    def evaluate(self, principal: str, dbuser_arn: str, *, account_id: str,
                 action: str | None = None) -> ConnectFacts:
        self.calls.append((principal, dbuser_arn, account_id))
        result = self._answer(principal, dbuser_arn, account_id)
        if isinstance(result, Exception):
            raise result
        return result


def _where(policy: str | None, statement: str | int | None) -> str:
    if policy is None:
        return ""
    if statement is None:
        return f" (policy {policy})"
    return f" (policy {policy}, statement {statement})"


def _findings_text(findings: tuple[Finding, ...]) -> str:
    return "; ".join(f.message for f in findings)


def check_signer_allows(facts: ConnectFacts | ProbeError | None, *, principal: str | None,
                        dbuser_arn: str | None) -> CheckResult:
    cid = "iam.signer_allows"
    if facts is None:
        return skipped(cid, "not checked: the dbuser ARN is unknown until rds.found describes the "
                       "resource (its resource id)", principal=principal)
    if isinstance(facts, ProbeError):
        return errored(cid, f"could not read the signer's policies: {facts.cause}",
                       "let the canary read the signer role's policies (iam:GetRole, "
                       "iam:ListRolePolicies, iam:GetRolePolicy, iam:ListAttachedRolePolicies, "
                       "iam:GetPolicy, iam:GetPolicyVersion), then re-run",
                       principal=principal, dbuser_arn=dbuser_arn, cause=facts.cause)
    side = facts.identity
    details = {"principal": facts.principal, "dbuser_arn": facts.dbuser_arn,
               "decision": side.decision, "layer": side.layer, "policy": side.policy,
               "statement": side.statement, "explanation": side.explanation,
               "findings": [f.to_dict() for f in side.findings]}
    if side.allowed:
        if side.findings:
            return warned(cid, f"{facts.principal} may rds-db:connect on {facts.dbuser_arn}, but: "
                          f"{_findings_text(side.findings)}",
                          "clean up the flagged statements so a later edit cannot break access",
                          **details)
        return passed(cid, f"{facts.principal} may rds-db:connect on {facts.dbuser_arn}", **details)
    instance_name = [f for f in side.findings if f.kind == "instance_name_arn"]
    if instance_name:
        bad = instance_name[0]
        message = (f"{facts.principal} may not rds-db:connect on {facts.dbuser_arn}: "
                   f"{bad.message}")
        fix = (f"rebuild the Resource from the resource id: use {facts.dbuser_arn} instead of "
               f"{bad.value or 'the instance-name ARN'}{_where(bad.policy, bad.statement)} "
               "(rdsvend policy render prints the right statement)")
        return failed(cid, message, fix, **details)
    if side.decision == "explicitDeny":
        message = (f"{facts.principal} is explicitly denied rds-db:connect on {facts.dbuser_arn}"
                   f"{_where(side.policy, side.statement)}")
        fix = f"remove or narrow the Deny{_where(side.policy, side.statement)} ({side.layer} layer)"
    elif side.layer == "boundary":
        message = (f"the permissions boundary of {facts.principal} does not allow rds-db:connect on "
                   f"{facts.dbuser_arn}{_where(side.policy, None)}")
        fix = "add rds-db:connect on the dbuser ARN to the permissions boundary"
    else:
        message = (f"no identity policy of {facts.principal} allows rds-db:connect on "
                   f"{facts.dbuser_arn}")
        fix = ("attach a statement allowing rds-db:connect on exactly this dbuser ARN to the "
               "signer (rdsvend policy render prints it)")
    if side.findings:
        message += f"; note: {_findings_text(side.findings)}"
    return failed(cid, message, fix, **details)


def check_scp_allows(facts: ConnectFacts | ProbeError | None, *, principal: str | None,
                     dbuser_arn: str | None) -> CheckResult:
    cid = "org.scp_allows"
    if facts is None:
        return skipped(cid, "not checked: the dbuser ARN is unknown until rds.found describes the "
                       "resource (its resource id)", principal=principal)
    if isinstance(facts, ProbeError):
        return errored(cid, f"could not read the SCP chain: {facts.cause}",
                       "let the canary read AWS Organizations (organizations:DescribeOrganization, "
                       "ListParents, ListPoliciesForTarget, DescribePolicy), from the management "
                       "account or a delegated administrator, then re-run",
                       principal=principal, dbuser_arn=dbuser_arn, cause=facts.cause)
    if not facts.organization:
        return passed(cid, "no SCP applies: the signer's account is in no AWS Organization, or SCPs "
                      "are not enabled",
                      principal=facts.principal, dbuser_arn=facts.dbuser_arn)
    if facts.management_account or facts.scp is None:
        return passed(cid, "the signer is in the organization's management account: SCPs never "
                      "restrict it", principal=facts.principal, dbuser_arn=facts.dbuser_arn,
                      management_account=True)
    return _scp_verdict(cid, facts, facts.scp)


def _scp_verdict(cid: str, facts: ConnectFacts, side: SideVerdict) -> CheckResult:
    """What the SCP chain from the root to the signer's account says about rds-db:connect."""
    details = {"principal": facts.principal, "dbuser_arn": facts.dbuser_arn,
               "decision": side.decision, "policy": side.policy, "statement": side.statement,
               "level": side.level, "explanation": side.explanation,
               "findings": [f.to_dict() for f in side.findings]}
    if side.allowed:
        if side.findings:
            return warned(cid, f"every SCP level allows rds-db:connect on {facts.dbuser_arn}, but: "
                          f"{_findings_text(side.findings)}",
                          "drop conditions on keys rds-db:connect never carries: they do not do "
                          "what they seem to", **details)
        return passed(cid, f"every SCP level from the root to the account allows rds-db:connect "
                      f"on {facts.dbuser_arn}", **details)
    at = f" attached at {side.level}" if side.level else ""
    name = side.policy if str(side.policy).startswith("SCP") else f"SCP {side.policy}"
    if side.decision == "explicitDeny":
        message = (f"{name}{at} denies rds-db:connect on {facts.dbuser_arn} "
                   f"(statement {side.statement})")
        fix = (f"remove or narrow statement {side.statement} of {name}{at}, or exempt "
               "the signer role from it")
    else:
        message = (f"no SCP{at} allows rds-db:connect on {facts.dbuser_arn}"
                   + (f" (policy {side.policy})" if side.policy else ""))
        fix = (f"attach an SCP allowing rds-db:connect{at} (every level from the root to the "
               "account must allow it; FullAWSAccess does)")
    missing = [f for f in side.findings if f.kind == "missing_condition_key"]
    if missing:
        message += f"; {_findings_text(tuple(missing))}"
        fix += ("; conditions on keys rds-db:connect never carries (e.g. aws:SourceVpc, "
                "aws:SourceIp for a Lambda outside a VPC) never match")
    return failed(cid, message, fix, **details)
