"""The real :class:`~chalicelib.canary.checks_iam.ConnectEvaluator`: the signer's live policies
and the SCP chain, judged by rdsvend's own evaluator (:mod:`chalicelib.iam`).

Fetches are memoised for the life of the object (one canary run): 64 users of one database
read the signer's policies and the organization once.
"""
from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from chalicelib.aws.errors import DENIED_CODES, NOT_FOUND_CODES
from chalicelib.canary.checks_iam import ConnectFacts, Finding, SideVerdict
from chalicelib.clock import SYSTEM_CLOCK, Clock
from chalicelib.errors import IamFetchError, IamPolicyError, ProbeError
from chalicelib.iam.connect import connect_verdict, principal_context
from chalicelib.iam.fetch import PrincipalPolicies, ScpChain, fetch_principal_policies, fetch_scp_chain
from chalicelib.iam.model import RequestContext
from chalicelib.iam.rdsdb import CONNECT_ACTION, parse_dbuser_arn

V = TypeVar("V")

__all__ = ["LiveConnectEvaluator", "verdict_to_facts"]

_QUOTED_ARN = re.compile(r"'(arn:[^']*:rds-db:[^']*)'")
_LEVEL = re.compile(r"scp level (\d+)")
#: IAM answers that mean "could not see it from here": worth saying where we looked
_UNSEEN = NOT_FOUND_CODES | DENIED_CODES


class _Once(Generic[V]):
    """Memoise by key, one computation in flight per key, exceptions remembered too."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._values: dict[str, V] = {}
        self._errors: dict[str, Exception] = {}

    def get(self, key: str, compute: Callable[[], V]) -> V:
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._values and key not in self._errors:
                try:
                    self._values[key] = compute()
                except (IamFetchError, IamPolicyError, ProbeError) as exc:
                    self._errors[key] = exc
            error = self._errors.get(key)
        if error is not None:
            raise error
        return self._values[key]


def _level_name(level_id: str, ou_names: dict[str, str]) -> str:
    if level_id.startswith("r-"):
        return f"the root ({level_id})"
    if level_id.startswith("ou-"):
        name = ou_names.get(level_id)
        return f"OU {name} ({level_id})" if name else f"OU {level_id}"
    return f"account {level_id}"


def verdict_to_facts(verdict: Any, *, level_ids: tuple[str, ...] = (),
                     levels: tuple[tuple[Any, ...], ...] = (), ou_names: dict[str, str] | None = None,
                     organization: bool = True) -> ConnectFacts:
    """Turn a :class:`chalicelib.iam.connect.ConnectVerdict` into the canary's two sides."""
    ou_names = ou_names or {}
    id_findings: list[Finding] = []
    scp_findings: list[Finding] = []
    for flag in verdict.flags:
        if flag.kind == "resource-name":
            m = _QUOTED_ARN.search(flag.message)
            id_findings.append(Finding("instance_name_arn", flag.message, value=m.group(1) if m else None))
        elif flag.kind == "condition-key":
            scp_findings.append(Finding("missing_condition_key", flag.message))
    ident = verdict.identity
    identity = SideVerdict(allowed=ident.allowed, decision=ident.decision, layer=ident.layer,
                           policy=ident.policy, statement=ident.statement,
                           explanation=ident.explanation, findings=tuple(id_findings))
    scp_side = None
    if verdict.scp is not None:
        ev = verdict.scp
        level = None
        if not ev.allowed:
            index = None
            m = _LEVEL.fullmatch(ev.policy or "")
            if m:
                index = int(m.group(1))
            else:
                for i, docs in enumerate(levels):
                    if any(getattr(d, "source", None) == ev.policy for d in docs):
                        index = i
                        break
            if index is not None and index < len(level_ids):
                level = _level_name(level_ids[index], ou_names)
        scp_side = SideVerdict(allowed=ev.allowed, decision=ev.decision, layer="scp",
                               policy=ev.policy, statement=ev.statement, explanation=ev.explanation,
                               level=level, findings=tuple(scp_findings))
    return ConnectFacts(principal=verdict.principal_arn, dbuser_arn=verdict.dbuser_arn,
                        identity=identity, scp=scp_side,
                        management_account=bool(verdict.management_account),
                        organization=organization)


class LiveConnectEvaluator:
    """Reads IAM and Organizations through boto3 clients and evaluates ``rds-db:connect``.

    ``org_client`` may be None: then SCPs are reported as unreadable (error), never as allowing.
    ``iam_for(account)``, when given, returns the IAM client that reads a principal's account
    and where it looks (:class:`chalicelib.aws.reader.SearchedAs`): a signer role in another
    account is read there, and a role IAM cannot show is reported with the account searched.
    """

    def __init__(self, *, iam_client: Any, org_client: Any | None, clock: Clock = SYSTEM_CLOCK,
                 iam_for: Callable[[str], tuple[Any, Any]] | None = None) -> None:
        self._iam = iam_client
        self._org = org_client
        self._clock = clock
        self._iam_for = iam_for
        self._principals: _Once[PrincipalPolicies] = _Once()
        self._chains: _Once[ScpChain | None] = _Once()
        self._ous: _Once[str | None] = _Once()

    def fresh(self) -> LiveConnectEvaluator:
        """The same clients with empty caches: each canary run reads IAM and SCPs anew."""
        return LiveConnectEvaluator(iam_client=self._iam, org_client=self._org, clock=self._clock,
                                    iam_for=self._iam_for)

    def _fetch(self, principal: str) -> PrincipalPolicies:
        account = principal.split(":", 5)[4] if principal.count(":") >= 5 else ""
        iam, searched = (self._iam_for(account) if self._iam_for is not None and account
                         else (self._iam, None))
        try:
            return fetch_principal_policies(iam, principal)
        except IamFetchError as exc:
            if searched is None or exc.code not in _UNSEEN:
                raise
            advice = f"; {searched.advice}" if searched.advice else ""
            raise IamFetchError(f"{exc} ({searched}{advice})"[:600], service=exc.service, code=exc.code) from None

    def _ou_name(self, ou_id: str) -> str | None:
        def compute() -> str | None:
            if self._org is None:
                return None
            try:
                name = self._org.describe_organizational_unit(OrganizationalUnitId=ou_id)[
                    "OrganizationalUnit"].get("Name")
            except Exception:  # noqa: BLE001 - a name is a nicety, never a failure
                return None
            return name if isinstance(name, str) else None
        return self._ous.get(ou_id, compute)

    def evaluate(self, principal: str, dbuser_arn: str, *, account_id: str, action: str | None = None) -> ConnectFacts:
        """``rds-db:connect`` on a dbuser ARN, or ``action`` (``dsql:DbConnect[Admin]``) on a DSQL
        cluster ARN."""
        if self._org is None:
            raise ProbeError("no Organizations client: the SCP chain cannot be read", service="organizations")
        try:
            fetched = self._principals.get(principal, lambda: self._fetch(principal))
            chain = self._chains.get(account_id, lambda: fetch_scp_chain(self._org, account_id))
            parsed = parse_dbuser_arn(dbuser_arn)
            region = parsed.region if parsed else (dbuser_arn.split(":")[3] if dbuser_arn.count(":") >= 5 else None)
            ctx = principal_context(principal, fetched, org_id=chain.organization_id if chain else None,
                                    region=region, clock=self._clock)
            request = RequestContext(action or CONNECT_ACTION, dbuser_arn, {k.lower(): v for k, v in ctx.items()})
            verdict = connect_verdict(
                request, identity_policies=fetched.identity, boundary=fetched.boundary,
                scp_levels=chain.levels if chain else None,
                management_account=chain.management_account if chain else False,
                principal_arn=principal,
            )
        except (IamFetchError, IamPolicyError) as exc:
            raise ProbeError(str(exc)[:600], service=getattr(exc, "service", "iam"),
                             code=getattr(exc, "code", "")) from None
        ou_names: dict[str, str] = {}
        if chain is not None and verdict.scp is not None and not verdict.scp.allowed:
            for level_id in chain.level_ids:
                if level_id.startswith("ou-"):
                    name = self._ou_name(level_id)
                    if name:
                        ou_names[level_id] = name
        return verdict_to_facts(
            verdict,
            level_ids=chain.level_ids if chain else (),
            levels=chain.levels if chain else (),
            ou_names=ou_names,
            organization=chain is not None,
        )
