"""``evaluate_rds_connect``: may this principal ``rds-db:connect`` as this dbuser, and if
not, which layer says no? Used by the canary (``iam.signer_allows``, ``org.scp_allows``) and
the local stack's token checker.

The verdict keeps the two sides apart, so a caller can name the layer that blocks:

- ``identity``: the principal's identity policies, its permissions boundary and the session
  policy (if any), with SCPs left out;
- ``scp``: the organization's SCP levels alone (``None`` when SCPs do not apply: no
  organization, SCPs not enabled; always allowed for the management account);
- ``combined``: the full evaluation (what AWS would decide).

The request context is built the way AWS does for a signed request by this principal
(``aws:PrincipalArn``, ``aws:PrincipalAccount``, ``aws:PrincipalOrgID``, ``aws:PrincipalType``,
``aws:userid``, ``aws:username`` for users, ``aws:PrincipalTag/...``, ``aws:RequestedRegion``,
``aws:CurrentTime``, ``aws:EpochTime``), then ``context`` (caller-supplied keys) is laid over it.
Fetch failures raise :class:`chalicelib.errors.IamFetchError`: "could not evaluate".
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chalicelib.clock import SYSTEM_CLOCK, Clock
from chalicelib.iam.evaluator import Evaluation, evaluate, evaluate_scps
from chalicelib.iam.fetch import PrincipalPolicies, ScpChain, fetch_principal_policies, fetch_scp_chain, principal_ref
from chalicelib.iam.model import PolicyDocument, RequestContext
from chalicelib.iam.patterns import action_matches
from chalicelib.iam.rdsdb import CONNECT_ACTION, condition_key_flags, parse_dbuser_arn, resource_id_flag

__all__ = ["Flag", "ConnectVerdict", "evaluate_rds_connect", "connect_verdict", "principal_context"]


@dataclass(frozen=True)
class Flag:
    kind: str  # "resource-name" | "condition-key"
    message: str


@dataclass(frozen=True)
class ConnectVerdict:
    principal_arn: str
    dbuser_arn: str
    identity: Evaluation
    scp: Evaluation | None
    combined: Evaluation
    management_account: bool
    flags: tuple[Flag, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.combined.allowed

    @property
    def blocked_by(self) -> str | None:
        """``"scp"``, ``"identity"``, ``"boundary"``, ``"session"`` or ``None`` when allowed."""
        return None if self.allowed else self.combined.layer

    @property
    def identity_allows(self) -> bool:
        return self.identity.allowed

    @property
    def scp_allows(self) -> bool:
        return self.scp is None or self.scp.allowed

    def to_dict(self) -> dict[str, Any]:
        return {
            "principal": self.principal_arn,
            "dbuser_arn": self.dbuser_arn,
            "allowed": self.allowed,
            "blocked_by": self.blocked_by,
            "identity": self.identity.to_dict(),
            "scp": None if self.scp is None else self.scp.to_dict(),
            "combined": self.combined.to_dict(),
            "management_account": self.management_account,
            "flags": [{"kind": f.kind, "message": f.message} for f in self.flags],
        }


def principal_context(
    principal_arn: str,
    fetched: PrincipalPolicies,
    *,
    org_id: str | None,
    region: str | None,
    clock: Clock = SYSTEM_CLOCK,
) -> dict[str, tuple[str, ...]]:
    """The global condition keys AWS puts in a request signed by this principal."""
    _kind, _name, account, session = principal_ref(principal_arn)
    now = clock.now()
    ctx: dict[str, tuple[str, ...]] = {
        "aws:PrincipalArn": (fetched.arn,),
        "aws:PrincipalAccount": (account,),
        "aws:CurrentTime": (now.strftime("%Y-%m-%dT%H:%M:%SZ"),),
        "aws:EpochTime": (str(int(now.timestamp())),),
    }
    if fetched.kind == "user":
        ctx["aws:PrincipalType"] = ("User",)
        ctx["aws:username"] = (fetched.name,)
        ctx["aws:userid"] = (fetched.unique_id,)
    else:
        ctx["aws:PrincipalType"] = ("AssumedRole",)
        ctx["aws:userid"] = (f"{fetched.unique_id}:{session or 'rdsvend'}",)
    if org_id:
        ctx["aws:PrincipalOrgID"] = (org_id,)
    if region:
        ctx["aws:RequestedRegion"] = (region,)
    for key, value in fetched.tags.items():
        ctx[f"aws:PrincipalTag/{key}"] = (value,)
    return ctx


def connect_verdict(
    request: RequestContext,
    *,
    identity_policies: Sequence[PolicyDocument],
    boundary: PolicyDocument | None = None,
    session_policy: PolicyDocument | None = None,
    scp_levels: Sequence[Sequence[PolicyDocument]] | None = None,
    management_account: bool = False,
    principal_arn: str = "",
) -> ConnectVerdict:
    """The pure half of :func:`evaluate_rds_connect`, for callers that already hold the policies."""
    identity = evaluate(
        request, identity_policies=identity_policies, boundary=boundary, session_policy=session_policy
    )
    scp = None
    if scp_levels is not None:
        scp = evaluate_scps(request, scp_levels, management_account=management_account)
    combined = evaluate(
        request,
        identity_policies=identity_policies,
        boundary=boundary,
        session_policy=session_policy,
        scp_levels=scp_levels,
        management_account=management_account,
    )
    flags: list[Flag] = []
    message = resource_id_flag(request.resource)
    if message:
        flags.append(Flag("resource-name", message))
    for doc in (*identity_policies, *([boundary] if boundary else [])):
        for stmt in doc.statements:
            if stmt.effect != "Allow" or stmt.actions is None:
                continue
            if not any(action_matches(p, CONNECT_ACTION) for p in stmt.actions):
                continue
            for pattern in stmt.resources or ():
                message = resource_id_flag(pattern)
                if message:
                    flags.append(Flag("resource-name", f"{doc.source} statement {stmt.label!r}: {message}"))
    if scp_levels is not None and not management_account:
        for flag in condition_key_flags(doc for level in scp_levels for doc in level):
            flags.append(Flag("condition-key", flag.sentence()))
    return ConnectVerdict(
        principal_arn=principal_arn,
        dbuser_arn=request.resource,
        identity=identity,
        scp=scp,
        combined=combined,
        management_account=management_account,
        flags=tuple(dict.fromkeys(flags)),
    )


def evaluate_rds_connect(
    principal_arn: str,
    dbuser_arn: str,
    *,
    iam_client: Any,
    org_client: Any | None,
    account_id: str,
    session_policy: PolicyDocument | None = None,
    context: Mapping[str, Sequence[str] | str] | None = None,
    clock: Clock = SYSTEM_CLOCK,
    action: str = CONNECT_ACTION,
) -> ConnectVerdict:
    """Fetch the principal's policies and the account's SCP chain, then decide the connect.

    ``action`` is ``rds-db:connect`` on a dbuser ARN, or ``dsql:DbConnect`` /
    ``dsql:DbConnectAdmin`` on a DSQL cluster ARN (then ``dbuser_arn`` holds the cluster ARN)."""
    fetched = fetch_principal_policies(iam_client, principal_arn)
    chain: ScpChain | None = fetch_scp_chain(org_client, account_id) if org_client is not None else None
    parsed = parse_dbuser_arn(dbuser_arn)
    ctx = principal_context(
        principal_arn,
        fetched,
        org_id=chain.organization_id if chain else None,
        region=parsed.region if parsed else (dbuser_arn.split(":")[3] or None if dbuser_arn.count(":") >= 5 else None),
        clock=clock,
    )
    merged = {k.lower(): v for k, v in ctx.items()}
    for key, values in (context or {}).items():
        merged[key.lower()] = (values,) if isinstance(values, str) else tuple(values)
    request = RequestContext(action, dbuser_arn, merged)
    return connect_verdict(
        request,
        identity_policies=fetched.identity,
        boundary=fetched.boundary,
        session_policy=session_policy,
        scp_levels=chain.levels if chain else None,
        management_account=chain.management_account if chain else False,
        principal_arn=principal_arn,
    )
