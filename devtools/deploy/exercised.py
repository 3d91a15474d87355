"""Which generated grants the local stack's work used, and which none did.

The local AWS records every request it allows with the statement that allowed it
(:mod:`devtools.local.allowed`). Set against the documents the ``local`` stage deploys (each
function's role, and the member-roles template's roles in each member account), that log says,
per statement and action, whether some request used it.

A grant no request used is a finding: either the work that needs it was not run, or the grant is
not needed. Some cannot be used on one machine at all; :data:`LOCALLY_UNEXERCISED` lists those,
each with the reason (reviewed, and repeated in ``docs/deploy.md``). ``rdsvend local exercised``
prints the report for a running stack.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from devtools.deploy.local_stage import LocalStage, render_for_account
from devtools.deploy.member_roles import member_roles_template

__all__ = ["AllowedRequest", "DeployedRole", "ExercisedReport", "Grant", "LOCALLY_UNEXERCISED", "StatementUse",
           "grants_of", "report_of", "render", "stage_roles"]

_LOGS = ("Lambda writes a function's output to its log group with the function's role; the local stack runs "
         "the functions without Lambda's runtime (its own copy of the audit lines is written as the stack)")
_TRACES = ("the X-Ray daemon Lambda runs beside a traced function sends its segments with the function's role; "
           "none runs locally (tracing is off)")
_DATA = "444444444444"
#: (role, statement Sid, action) -> why no local work can use it. The role is the function's name
#: for a function's role, ``<role name> in <account>`` for a member-account role. Reviewed: each
#: is also in docs/deploy.md ("Least privilege, proven").
LOCALLY_UNEXERCISED: Mapping[tuple[str, str, str], str] = {
    **{(function, "WriteOwnLogs", action): _LOGS for function in ("api_handler", "vend", "canary", "rotate")
       for action in ("logs:CreateLogStream", "logs:PutLogEvents")},
    **{(function, "Tracing", action): _TRACES for function in ("api_handler", "vend", "canary", "rotate")
       for action in ("xray:PutTelemetryRecords", "xray:PutTraceSegments")},
    ("canary", "ExpireGrants", "dynamodb:GetItem"): (
        "the grant sweep reads a grant back only when its expiry write lost a race with another writer"),
    (f"rdsvend-reader in {_DATA}", "DescribeDatabases", "rds:DescribeDBProxyTargets"): (
        "the local world's data account holds no RDS Proxy whose targets the canary would read"),
    (f"rdsvend-reader in {_DATA}", "ListDsqlClusters", "dsql:GetCluster"): (
        "the local world's data account holds no Aurora DSQL cluster for rdsvend discover to read"),
    **{(f"rdsvend-reader in {_DATA}", "ReadRolePolicies", action): (
        "the signer role there has only its inline policy; these read the managed policies or permissions "
        "boundary an administrator attaches to it, and the local world attaches none")
       for action in ("iam:GetPolicy", "iam:GetPolicyVersion")},
}


class AllowedRequest(Protocol):
    """A line of the local AWS's allowed-requests log (:class:`devtools.local.allowed.Allowed`)."""

    @property
    def action(self) -> str: ...
    @property
    def resource(self) -> str: ...
    @property
    def layer(self) -> str: ...
    @property
    def owner(self) -> str: ...
    @property
    def policy(self) -> str: ...
    @property
    def statement(self) -> str | int: ...


@dataclass(frozen=True)
class DeployedRole:
    """A role the stage deploys and its inline policies (name -> document), as generated."""

    label: str  # the function (``vend``), or ``<role name> in <account>`` for a member-account role
    arn: str
    policies: Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True)
class Grant:
    """One generated statement, where it lives."""

    label: str
    role: str  # the role's ARN
    policy: str  # the inline policy's name
    sid: str | int  # the statement's Sid, else its index in the document
    actions: tuple[str, ...]
    resources: tuple[str, ...]


@dataclass(frozen=True)
class StatementUse:
    """A generated statement and the allowed requests it let through."""

    grant: Grant
    used: tuple[AllowedRequest, ...]

    @property
    def unused_actions(self) -> tuple[str, ...]:
        done = {a.action.lower() for a in self.used}
        return tuple(action for action in self.grant.actions if action.lower() not in done)


@dataclass(frozen=True)
class ExercisedReport:
    statements: tuple[StatementUse, ...]
    reviewed: Mapping[tuple[str, str, str], str]

    def unexercised(self) -> dict[tuple[str, str, str], str]:
        """(role, Sid, action) no request used -> the reviewed reason, or ``""`` when none is given."""
        return {(use.grant.label, str(use.grant.sid), action): self.reviewed.get(
                    (use.grant.label, str(use.grant.sid), action), "")
                for use in self.statements for action in use.unused_actions}

    def unreviewed(self) -> list[tuple[str, str, str]]:
        """Unexercised grants without a reviewed reason: a grant to remove, or work to add."""
        return [key for key, why in self.unexercised().items() if not why]

    def stale(self) -> list[tuple[str, str, str]]:
        """Reviewed grants that are no longer generated or are exercised now: the list to update."""
        found = self.unexercised()
        return [key for key in self.reviewed if key not in found]

    def used_by(self, label: str, sid: str | int) -> StatementUse:
        for use in self.statements:
            if use.grant.label == label and str(use.grant.sid) == str(sid):
                return use
        raise KeyError(f"no generated statement {sid!r} for {label}")


def _listed(value: Any) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def grants_of(role: DeployedRole) -> list[Grant]:
    """The Allow statements of ``role``'s documents, in document order."""
    return [Grant(role.label, role.arn, name, statement.get("Sid") or index,
                  _listed(statement.get("Action", ())), _listed(statement.get("Resource", ())))
            for name, document in role.policies.items()
            for index, statement in enumerate(_listed_statements(document))
            if statement.get("Effect") == "Allow"]


def _listed_statements(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    statements = document.get("Statement", [])
    return [statements] if isinstance(statements, Mapping) else list(statements)


def report_of(roles: Sequence[DeployedRole], allowed: Iterable[AllowedRequest],
              reviewed: Mapping[tuple[str, str, str], str] = LOCALLY_UNEXERCISED) -> ExercisedReport:
    """Each generated statement of ``roles`` with the allowed requests that used it."""
    by_statement: dict[tuple[str, str, str], list[AllowedRequest]] = {}
    for line in allowed:
        if line.layer == "identity":
            by_statement.setdefault((line.owner, line.policy, str(line.statement)), []).append(line)
    uses = [StatementUse(grant, tuple(by_statement.get((grant.role, grant.policy, str(grant.sid)), ())))
            for role in roles for grant in grants_of(role)]
    return ExercisedReport(tuple(uses), dict(reviewed))


def stage_roles(stage: LocalStage, management_account: str | None = None) -> list[DeployedRole]:
    """The roles ``stage`` deploys with their generated documents: one per function in the
    service account, and the member-roles template's roles in each member account it lists
    (never ``management_account``)."""
    deploy, plan = stage.deploy, stage.plan
    roles = [DeployedRole(function, f"arn:{deploy.partition}:iam::{deploy.account}:role/{plan.roles[function]}",
                          {plan.roles[function]: document})
             for function, document in stage.documents().items()]
    template = member_roles_template(stage.policy, deploy, stage.settings.stage)
    for account in template["Metadata"]["rdsvend"]["accounts"]:
        if account == management_account:
            continue
        for props in render_for_account(template, account, deploy.partition).values():
            name, path = props["RoleName"], props.get("Path", "/")
            roles.append(DeployedRole(f"{name} in {account}", f"arn:{deploy.partition}:iam::{account}:role{path}{name}",
                                      {p["PolicyName"]: p["PolicyDocument"] for p in props.get("Policies", [])}))
    return roles


def render(report: ExercisedReport, *, every: bool = False) -> str:
    """The report for a person: unexercised grants with their reason (``every``: each statement
    with the actions its requests used, too)."""
    lines: list[str] = []
    for use in report.statements:
        grant = use.grant
        unused = use.unused_actions
        if not every and not unused:
            continue
        used = sorted({a.action for a in use.used})
        head = f"{grant.label}: {grant.sid}"
        if used:
            lines.append(f"{head}: used {', '.join(used)} ({len({a.resource for a in use.used})} resources)")
        for action in unused:
            why = report.reviewed.get((grant.label, str(grant.sid), action))
            lines.append(f"{head}: {action}: not exercised" + (f" locally: {why}" if why else ""))
    total = sum(len(u.grant.actions) for u in report.statements)
    missing = report.unexercised()
    lines.append(f"{total - len(missing)} of {total} granted actions exercised; {len(missing)} not "
                 f"({len(missing) - len(report.unreviewed())} with a reviewed reason, "
                 f"{len(report.unreviewed())} without)")
    return "\n".join(lines)
