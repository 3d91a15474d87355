"""RDS Proxy checks: ``proxy.target`` and ``proxy.role_allows``, and which leg a check is on.

A login through RDS Proxy crosses two IAM legs. **Leg 1** (caller to proxy): the proxy is
there and takes IAM tokens (``rds.found``, ``rds.iam_auth_enabled``, ``rds.endpoint``), and the
signer may ``rds-db:connect`` on ``dbuser:prx-.../USER`` (``iam.signer_allows``,
``org.scp_allows``). **Leg 2** (proxy to target): the target is registered and healthy
(``proxy.target``, ``DescribeDBProxyTargets``), the proxy's own role may reach it
(``proxy.role_allows``: ``rds-db:connect`` on the target's ``db-``/``cluster-`` id for
``target_auth: iam``, ``secretsmanager:GetSecretValue`` on the user's secret for ``secrets``),
and the user takes IAM logins on the target (``db.rds_iam`` / ``db.iam_plugin``).
``db.connect`` crosses both.

:func:`on_leg` writes the leg into a check's details (and, for a failure, its message);
the verdicts are pure, :class:`BotoProxyFacts` is the AWS side.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from chalicelib.aws.errors import aws_error
from chalicelib.aws.probe import AwsClients, probe
from chalicelib.canary.checks_iam import ConnectFacts, SideVerdict
from chalicelib.canary.model import CheckResult, errored, failed, passed, skipped, warned
from chalicelib.errors import IamFetchError, IamPolicyError, ProbeError
from chalicelib.iam.evaluator import evaluate
from chalicelib.iam.fetch import fetch_principal_policies
from chalicelib.iam.model import RequestContext
from chalicelib.iam.proxy_leg import ProxyFacts
from chalicelib.policy.model import Database

__all__ = ["LEGS", "LEG_OF", "ProxyTargets", "ProxyTargetFacts", "BotoProxyFacts", "on_leg", "check_proxy_target",
           "check_role_allows", "leg_of_refusal"]

LEGS = {1: "leg 1: caller to proxy", 2: "leg 2: proxy to target"}
#: the leg each check of a proxy target is on (db.connect crosses both: named when it fails)
LEG_OF: Mapping[str, int] = {
    "rds.found": 1, "rds.iam_auth_enabled": 1, "rds.endpoint": 1, "iam.signer_allows": 1, "org.scp_allows": 1,
    "proxy.target": 2, "proxy.role_allows": 2, "db.rds_iam": 2, "db.iam_plugin": 2, "db.auth_conflict": 2,
    "db.tier": 2,
}


def on_leg(result: CheckResult, leg: int | None) -> CheckResult:
    """``result`` with ``details.leg`` (and, when it failed, its message prefixed by the leg)."""
    if leg is None:
        return result
    message = result.message
    if result.status in ("fail", "error") and not message.startswith("leg "):
        message = f"{LEGS[leg]}: {message}"
    return replace(result, message=message, details={**result.details, "leg": leg, "leg_name": LEGS[leg]})


def leg_of_refusal(message: str, failed_checks: list[str]) -> int | None:
    """Which leg a refused login through the proxy was refused on: what the proxy said, else
    the leg of the checks that failed (None when nothing tells)."""
    lowered = message.lower()
    if "leg 2" in lowered or "could not log in to its target" in lowered or "no available target" in lowered:
        return 2
    if "leg 1" in lowered:
        return 1
    legs = {LEG_OF[c] for c in failed_checks if c in LEG_OF}
    return legs.pop() if len(legs) == 1 else None


@dataclass(frozen=True)
class ProxyTargets:
    """The targets ``DescribeDBProxyTargets`` lists for a proxy (its items, as RDS gives them)."""

    items: tuple[Mapping[str, Any], ...]


class ProxyTargetFacts(Protocol):
    def targets(self, database: Database) -> ProxyTargets | None:
        """The proxy's registered targets; None when RDS has no such proxy; :class:`ProbeError`."""

    def allows(self, role_arn: str, action: str, resource: str) -> SideVerdict:
        """May the role do ``action`` on ``resource`` by its identity policies and boundary?"""


class BotoProxyFacts:
    """``DescribeDBProxyTargets`` and the proxy role's policies, in each database's account
    (through its reader role when the canary is elsewhere)."""

    def __init__(self, clients: AwsClients, readers: Any = None) -> None:
        self._clients = clients
        self._readers = readers

    def _client(self, database: Database | None, service: str, region: str | None = None) -> Any:
        if self._readers is not None and database is not None:
            return self._readers.client(database, service)
        return self._clients.client(service, region)

    def targets(self, database: Database) -> ProxyTargets | None:
        rds = self._client(database, "rds", database.region)
        try:
            with probe("rds", "DescribeDBProxyTargets"):
                answer = rds.describe_db_proxy_targets(DBProxyName=database.identifier)
        except Exception as exc:
            error = aws_error(exc)
            if error is not None and error.not_found:
                return None
            raise
        return ProxyTargets(tuple(t for t in answer.get("Targets") or () if isinstance(t, Mapping)))

    def allows(self, role_arn: str, action: str, resource: str) -> SideVerdict:
        account = role_arn.split(":")[4]
        iam = self._readers.iam_for(account)[0] if self._readers is not None else self._clients.client("iam")
        try:
            fetched = fetch_principal_policies(iam, role_arn)
        except (IamFetchError, IamPolicyError) as exc:
            raise ProbeError(str(exc)[:300], service="iam", code=getattr(exc, "code", "")) from None
        verdict = evaluate(RequestContext(action, resource), identity_policies=fetched.identity,
                           boundary=fetched.boundary)
        return SideVerdict(allowed=verdict.allowed, decision=verdict.decision, layer=verdict.layer,
                           policy=verdict.policy, statement=verdict.statement, explanation=verdict.explanation)


# ----------------------------------------------------------------------------------- verdicts

def check_proxy_target(database: Database, targets: ProxyTargets | ProbeError | None) -> CheckResult:
    """``proxy.target``: the policy's target is registered behind the proxy and available."""
    cid = "proxy.target"
    target = database.target
    assert target is not None
    kind = "--db-instance-identifiers" if target.kind == "instance" else "--db-cluster-identifiers"
    register = (f"aws rds register-db-proxy-targets --db-proxy-name {database.identifier} {kind} "
                f"{target.identifier}")
    details: dict[str, Any] = {"proxy": database.identifier, f"target_{target.kind}": target.identifier}
    if isinstance(targets, ProbeError):
        return on_leg(errored(cid, f"could not list the proxy's targets: {targets.cause}",
                              "let the canary call rds:DescribeDBProxyTargets on the proxy, then re-run",
                              cause=targets.cause, **details), 2)
    if targets is None:
        return on_leg(skipped(cid, "not checked: RDS has no such proxy (rds.found)", **details), 2)
    wanted = ("RDS_INSTANCE",) if target.kind == "instance" else ("TRACKED_CLUSTER", "RDS_INSTANCE")
    registered = [t for t in targets.items if t.get("RdsResourceId") == target.identifier
                  and str(t.get("Type", wanted[0])) in wanted]
    others = sorted({str(t.get("RdsResourceId")) for t in targets.items} - {target.identifier})
    if not registered:
        also = f" (it has: {', '.join(others)})" if others else " (it has none)"
        return on_leg(failed(cid, f"{target.kind} '{target.identifier}' is not registered behind proxy "
                             f"'{database.identifier}'{also}", f"register it: {register}",
                             registered=others, **details), 2)
    health = registered[0].get("TargetHealth") or {}
    state = str(health.get("State") or "UNKNOWN").upper()
    details |= {"state": state, "reason": health.get("Reason"), "description": health.get("Description")}
    if state == "AVAILABLE":
        return on_leg(passed(cid, f"{target.kind} '{target.identifier}' is registered behind proxy "
                             f"'{database.identifier}' and available", **details), 2)
    if state == "REGISTERING":
        return on_leg(warned(cid, f"{target.kind} '{target.identifier}' is still registering behind proxy "
                             f"'{database.identifier}'", "wait a few minutes and re-run", **details), 2)
    why = f": {health.get('Reason')} {health.get('Description') or ''}".rstrip() if health.get("Reason") else ""
    return on_leg(failed(cid, f"{target.kind} '{target.identifier}' behind proxy '{database.identifier}' is "
                         f"{state}{why}", "fix what TargetHealth names (with target_auth: iam, "
                         "AUTH_FAILURE usually means the proxy role's rds-db:connect or the user's rds_iam)",
                         **details), 2)


def _role_fix(database: Database, role: str) -> str:
    target = database.target
    assert target is not None
    what = ("rds-db:connect on the target's dbuser ARN" if target.auth == "iam"
            else "secretsmanager:GetSecretValue on the user's secret (and kms:Decrypt through Secrets Manager)")
    return (f"attach to the proxy's role {role.rsplit('/', 1)[-1]} a statement allowing {what} "
            f"(rdsvend policy render --only proxy-role prints it)")


def check_role_allows(database: Database, facts: ProxyFacts | None, verdicts: list[tuple[str, str, Any]],
                      *, why_not: str = "", cannot: str = "") -> CheckResult:
    """``proxy.role_allows``: the proxy's role may do every (action, resource) of leg 2.

    ``verdicts``: ``(action, resource, ConnectFacts | SideVerdict | ProbeError)`` per request;
    ``why_not``: the proxy is not described (rds.found says why): skipped; ``cannot``: the
    target could not be read, so leg 2 cannot be evaluated: an error, never a pass."""
    cid = "proxy.role_allows"
    target = database.target
    assert target is not None
    if cannot:
        return on_leg(errored(cid, f"could not evaluate the proxy role: {cannot}",
                              f"let the canary describe the {target.kind} behind the proxy (rds:Describe*), "
                              "or fix its identifier in the policy, then re-run",
                              role=facts.role_arn if facts else None, target_auth=target.auth), 2)
    if facts is None or why_not:
        return on_leg(skipped(cid, f"not checked: {why_not or 'the proxy is not described'}"), 2)
    details: dict[str, Any] = {"role": facts.role_arn, "target_auth": target.auth,
                               "default_auth_scheme": facts.default_auth_scheme}
    if facts.role_arn is None:
        return on_leg(failed(cid, f"proxy '{database.identifier}' names no IAM role: it cannot reach its target",
                             "give the proxy a role (aws rds modify-db-proxy --role-arn ...)", **details), 2)
    login = _target_login_problem(cid, database, facts, bool(verdicts), details)
    if login is not None:
        return on_leg(login, 2)
    for action, resource, verdict in verdicts:
        result = _one_request(database, facts.role_arn, action, resource, verdict, details)
        if result is not None:
            return on_leg(result, 2)
    done = ", ".join(f"{action} on {resource}" for action, resource, _ in verdicts)
    return on_leg(passed(cid, f"the proxy's role {facts.role_arn} may {done}", action=verdicts[0][0],
                         resource=verdicts[0][1], requests=[[a, r] for a, r, _ in verdicts], **details), 2)


def _target_login_problem(cid: str, database: Database, facts: ProxyFacts, has_requests: bool,
                          details: dict[str, Any]) -> CheckResult | None:
    """A failure when the proxy is not set up to log in to its target the way the policy says
    (its default auth scheme, or a secret to log in with); None when it is."""
    target = database.target
    assert target is not None
    if target.auth == "iam" and facts.default_auth_scheme not in (None, "IAM_AUTH"):
        return failed(cid, f"proxy '{database.identifier}' logs in to its target with "
                      f"{facts.default_auth_scheme}, but the policy says target_auth: iam",
                      f"aws rds modify-db-proxy --db-proxy-name {database.identifier} "
                      "--default-auth-scheme IAM_AUTH (or set target_auth: secrets)", **details)
    if not has_requests:
        return failed(cid, f"proxy '{database.identifier}' names no secret to log in to its target with",
                      "give the proxy an Auth entry with the user's SecretArn (aws rds modify-db-proxy "
                      "--auth ...), or set target_auth: iam", **details)
    return None


def _one_request(database: Database, role: str, action: str, resource: str, verdict: Any,
                 details: dict[str, Any]) -> CheckResult | None:
    cid = "proxy.role_allows"
    here = {**details, "action": action, "resource": resource}
    if isinstance(verdict, ProbeError):
        return errored(cid, f"could not read the proxy role's policies: {verdict.cause}",
                       "let the canary read the proxy's role (iam:GetRole, iam:ListRolePolicies, "
                       "iam:GetRolePolicy, iam:ListAttachedRolePolicies), then re-run", cause=verdict.cause, **here)
    sides: list[tuple[str, SideVerdict]] = []
    if isinstance(verdict, ConnectFacts):
        sides.append(("identity", verdict.identity))
        if verdict.scp is not None and not verdict.management_account and verdict.organization:
            sides.append(("scp", verdict.scp))
    else:
        sides.append(("identity", verdict))
    for layer, side in sides:
        if side.allowed:
            continue
        where = f" (policy {side.policy}, statement {side.statement})" if side.policy else ""
        if layer == "scp":
            return failed(cid, f"an SCP{' at ' + side.level if side.level else ''} keeps the proxy's role {role} "
                          f"from {action} on {resource}{where}",
                          "allow it in every SCP level from the root to the proxy's account", decision=side.decision,
                          **here)
        denied = "is explicitly denied" if side.decision == "explicitDeny" else "is not allowed"
        return failed(cid, f"the proxy's role {role} {denied} {action} on {resource}{where}",
                      _role_fix(database, role), decision=side.decision, layer=side.layer, **here)
    return None
