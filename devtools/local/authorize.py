"""The local AWS authorizes every request as AWS does.

:class:`Enforcer` is WSGI middleware in front of the moto server. For each request it

1. authenticates the SigV4 signature (:mod:`devtools.local.sigv4`) against the keys moto
   knows (IAM users' keys, STS session credentials) and the management account's root key
   the stack uses (:data:`devtools.local.sessions.MANAGEMENT_ROOT_KEY`); an unknown key or a
   bad signature gets the service's own error;
2. reads the operation with botocore's model and what it asks IAM for
   (:mod:`devtools.local.actions`); what the stack cannot name is denied as ``unmapped``;
3. decides each (action, resource) with rdsvend's evaluator (:mod:`chalicelib.iam`): the
   caller's identity policies, permissions boundary, session policy and the organization's
   SCPs, and the resource's own policy (a role's trust for ``sts:AssumeRole``, a secret's, a
   topic's, a function's), read from moto's backends (:mod:`devtools.local.moto_state`);
4. answers a refusal with the service's AccessDenied (:mod:`devtools.local.aws_denials`),
   logs one line (principal, action, resource, deciding layer) and appends it to the denial
   log (:class:`~devtools.local.denials.DenialLog`, ``denials.jsonl`` in the state directory; read it with
   :func:`read_denials`).

Anything that fails while deciding is a refusal (fail closed).
"""
from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs

from chalicelib.clock import SYSTEM_CLOCK, Clock
from chalicelib.errors import IamPolicyError
from chalicelib.iam.connect import principal_context
from chalicelib.iam.evaluator import Evaluation, evaluate, scan
from chalicelib.iam.fetch import PrincipalPolicies
from chalicelib.iam.model import PolicyDocument, RequestContext
from devtools.local.actions import Ask, RequestFacts, UnmappedError, asks_for, parse_operation
from devtools.local.aws_denials import Answer, access_denied, auth_failure
from devtools.local.denials import DENIAL_LOG, TRUST_ACTIONS, Denial, DenialLog, read_denials
from devtools.local.moto_state import MotoState, Principal
from devtools.local.resource_policies import applicable
from devtools.local.sigv4 import Credential, SecretLookup, SignatureError, verify_header_signed

__all__ = ["DENIAL_LOG", "Decider", "Denial", "DenialLog", "Enforcer", "invoke_permission", "organization_policy",
           "read_denials", "service_permission"]

log = logging.getLogger(__name__)

MAX_SKEW = timedelta(minutes=15)
_MAX_BODY = 64 * 1024 * 1024
#: Services whose resources carry a resource-based policy the local AWS reads.
_RESOURCE_POLICY_SERVICES = frozenset({"secretsmanager", "sns", "lambda"})
#: Services whose writes change what a principal's policies are.
_POLICY_SERVICES = frozenset({"iam", "organizations"})
_READ_PREFIXES = ("Get", "List", "Describe", "Simulate", "Generate")
_MAX_CACHED = 4096


# -- the decision -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Policies:
    fetched: PrincipalPolicies
    scp_levels: tuple[tuple[PolicyDocument, ...], ...] | None
    management: bool
    session: PolicyDocument | None
    org_id: str | None
    #: the principal's condition keys (``aws:CurrentTime`` and ``aws:EpochTime`` are set per request)
    context: Mapping[str, tuple[str, ...]]


class Decider:
    """Decides (action, resource) pairs for a principal with rdsvend's evaluator, over moto's state."""

    def __init__(self, state: MotoState | None = None, *, clock: Clock = SYSTEM_CLOCK,
                 resource_policies: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.state = state or MotoState()
        self.clock = clock
        #: moves on every request that may change IAM or Organizations state (before and after
        #: it): the policies read for a principal are reused while it stays the same
        self.generation = 0
        self._cache: dict[tuple[str, str | None], tuple[int, _Policies]] = {}
        self._lock = threading.Lock()
        #: resource ARN -> policy, for resources moto does not hold (the local Invoke API's function)
        self.fallback_policies = dict(resource_policies or {})

    def changed(self) -> None:
        """IAM or Organizations state may have changed: read the policies again."""
        with self._lock:
            self.generation += 1
            self._cache.clear()

    def _policies(self, principal: Principal, access_key_id: str | None) -> _Policies | Denial:
        key = (principal.arn, access_key_id)
        generation = self.generation
        cached = self._cache.get(key)
        if cached is not None and cached[0] == generation:
            return cached[1]
        found = self._read_policies(principal, access_key_id)
        if isinstance(found, _Policies):
            with self._lock:
                if self.generation == generation and len(self._cache) < _MAX_CACHED:
                    self._cache[key] = (generation, found)
        return found

    def _read_policies(self, principal: Principal, access_key_id: str | None) -> _Policies | Denial:
        fetched = self.state.principal_policies(principal.arn)
        if fetched is None:
            return Denial(principal.arn, "", "", "identity", False, "the principal does not exist")
        chain = self.state.scp_chain(principal.account)
        session = self.state.session_policy(access_key_id) if access_key_id else None
        org_id = chain.organization_id if chain else None
        context = {k.lower(): v for k, v in principal_context(principal.arn, fetched, org_id=org_id, region=None,
                                                               clock=self.clock).items()}
        return _Policies(fetched, chain.levels if chain else None, bool(chain and chain.management_account),
                         session, org_id, context)

    def decide(self, principal: Principal, ask: Ask, *, access_key_id: str | None, region: str,
               signing_name: str) -> Denial | None:
        """The first refusal among ``ask``'s pairs, or ``None`` when all are allowed."""
        if principal.root:  # the management account's root user: no IAM policy, no SCP applies
            return self._root(principal, ask)
        try:
            policies = self._policies(principal, access_key_id)
            if isinstance(policies, Denial):
                action, resource = ask.pairs[0]
                return Denial(principal.arn, action, resource, policies.layer, False, policies.detail)
            now = self.clock.now()
            context = {**policies.context, "aws:currenttime": (now.strftime("%Y-%m-%dT%H:%M:%SZ"),),
                       "aws:epochtime": (str(int(now.timestamp())),), **ask.context}
            if region:
                context["aws:requestedregion"] = (region,)
            for action, resource in ask.pairs:
                denial = self._one(principal, policies, RequestContext(action, resource, context), signing_name)
                if denial is not None:
                    return denial
        except (LookupError, IamPolicyError, ValueError) as exc:
            action, resource = ask.pairs[0]
            return Denial(principal.arn, action, resource, "identity", False,
                          f"could not evaluate: {type(exc).__name__}: {str(exc)[:200]}")
        return None

    def _root(self, principal: Principal, ask: Ask) -> Denial | None:
        """The root user may do anything in its account, but assume only the roles that trust it."""
        for action, resource in ask.pairs:
            if action.lower() not in TRUST_ACTIONS:
                continue
            text = self.state.trust_text(resource)
            source = f"trust policy of {resource}"
            document = applicable(text, principal, source)[0] if text is not None else None
            request = RequestContext(action, resource, dict(ask.context))
            deny, allow = scan([document], request) if document is not None else (None, None)
            if deny is not None or allow is None:
                return Denial(principal.arn, action, resource, "resource", deny is not None,
                              f"{source} does not allow it" if text is not None else f"no role {resource}")
        return None

    def _resource_policy(self, request: RequestContext, signing_name: str) -> tuple[str | None, str]:
        """The text of the policy on the request's resource (a role's trust for the trust
        actions), and what to call it."""
        if request.action.lower() in TRUST_ACTIONS:
            return self.state.trust_text(request.resource), f"trust policy of {request.resource}"
        source = f"resource policy of {request.resource}"
        text = self.state.resource_policy_text(signing_name, request.resource) if (
            signing_name in _RESOURCE_POLICY_SERVICES) else None
        fallback = next((policy for prefix, policy in self.fallback_policies.items()
                         if request.resource.startswith(prefix)), None)
        if text is None and fallback is not None:
            text = json.dumps(fallback, sort_keys=True)
        return text, source

    def _one(self, principal: Principal, policies: _Policies, request: RequestContext,
             signing_name: str) -> Denial | None:
        fetched = policies.fetched
        verdict = evaluate(request, identity_policies=fetched.identity, boundary=fetched.boundary,
                           scp_levels=policies.scp_levels, session_policy=policies.session,
                           management_account=policies.management)
        if verdict.decision == "explicitDeny":
            return _denial(principal, request, str(verdict.layer), True, verdict.explanation)
        text, source = self._resource_policy(request, signing_name)
        if text is None:
            return _without_resource_policy(principal, request, verdict)
        return _with_resource_policy(principal, request, verdict, text, source)


def _denial(principal: Principal, request: RequestContext, layer: str, explicit: bool, detail: str) -> Denial:
    return Denial(principal.arn, request.action, request.resource, layer, explicit, detail)


def _same_account(principal: Principal, request: RequestContext) -> bool:
    return _account_of(request.resource) in ("", "aws", principal.account)


def _without_resource_policy(principal: Principal, request: RequestContext, verdict: Evaluation) -> Denial | None:
    """A resource with no policy of its own: the identity side decides, and only within the
    principal's account (a role assumed must exist: its trust policy is its resource policy)."""
    if request.action.lower() in TRUST_ACTIONS:
        return _denial(principal, request, "resource", False, f"the role {request.resource} does not exist")
    if not verdict.allowed:
        return _denial(principal, request, str(verdict.layer), False, verdict.explanation)
    if not _same_account(principal, request):  # another account's resource, and no policy of its own lets anyone in
        return _denial(principal, request, "resource", False, f"{request.resource} has no resource-based policy")
    return None


def _with_resource_policy(principal: Principal, request: RequestContext, verdict: Evaluation, text: str,
                          source: str) -> Denial | None:
    """A resource with a policy (a role's trust policy for the trust actions): its Deny wins; SCPs
    still bind; across accounts, and to assume a role, the resource's policy must allow the request;
    within an account an allow of either side is enough (a trust policy's only when it names the
    principal exactly)."""
    trust = request.action.lower() in TRUST_ACTIONS
    same_account = _same_account(principal, request)
    document, exact = applicable(text, principal, source)
    deny, allow = scan([document], request) if document is not None else (None, None)
    if deny is not None:
        return _denial(principal, request, "resource", True, f"{source} denies it (statement {deny.statement.label})")
    if verdict.layer == "scp" and not verdict.allowed:
        return _denial(principal, request, "scp", False, verdict.explanation)
    if allow is None and (trust or not same_account):
        return _denial(principal, request, "resource", False, f"{source} does not allow it")
    if allow is not None and same_account and (exact or not trust):
        return None
    return None if verdict.allowed else _denial(principal, request, str(verdict.layer), False, verdict.explanation)


def _account_of(arn: str) -> str:
    parts = arn.split(":")
    return parts[4] if len(parts) > 4 else ""


# -- the middleware ---------------------------------------------------------------------------------------

class _Keys:
    """Access keys: the stack's own root key(s) first, then moto's."""

    def __init__(self, lookup: SecretLookup, roots: Iterable[Credential]) -> None:
        self._lookup = lookup
        self._roots = {c.access_key_id: c for c in roots}

    def secret_for(self, access_key_id: str) -> Credential | None:
        return self._roots.get(access_key_id) or self._lookup.secret_for(access_key_id)

    def is_root(self, access_key_id: str) -> bool:
        return access_key_id in self._roots


def _headers_of(environ: Mapping[str, Any]) -> dict[str, str]:
    headers = {key[5:].replace("_", "-").lower(): str(value) for key, value in environ.items()
               if key.startswith("HTTP_")}
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = str(environ["CONTENT_TYPE"])
    if environ.get("CONTENT_LENGTH"):
        headers["content-length"] = str(environ["CONTENT_LENGTH"])
    return headers


def _respond(start_response: Callable[..., Any], answer: Answer) -> list[bytes]:
    start_response(answer.status_line, [*answer.headers, ("Content-Length", str(len(answer.body)))])
    return [answer.body]


class Enforcer:
    """WSGI middleware: every request to the moto server is authenticated and authorized."""

    def __init__(self, app: Any, lookup: SecretLookup, *, roots: Sequence[Credential] = (),
                 decider: Decider | None = None, denials: DenialLog | None = None,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self.app = app
        self.keys = _Keys(lookup, roots)
        self.decider = decider or Decider(clock=clock)
        self.denials = denials or DenialLog()
        self.clock = clock

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > _MAX_BODY:
            return _respond(start_response, auth_failure("sts", "malformed"))
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        headers = _headers_of(environ)
        signing_name = _signing_name(headers.get("authorization", ""))
        try:
            answer = self._check(environ, headers, body, signing_name)
        except Exception:  # noqa: BLE001 - fail closed: an error while deciding is a refusal
            log.exception("local aws could not decide a request signed for %s", signing_name or "no service")
            answer = access_denied(signing_name or "sts", "the local AWS could not decide this request")
        if answer is not None:
            return _respond(start_response, answer)
        if signing_name not in _POLICY_SERVICES or _reads_only(environ, headers, body):
            result: Iterable[bytes] = self.app(environ, start_response)
            return result
        self.decider.changed()
        try:
            return list(self.app(environ, start_response))
        finally:
            self.decider.changed()

    def _check(self, environ: dict[str, Any], headers: dict[str, str], body: bytes, signing_name: str) -> Answer | None:
        raw_path = environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/")
        query = str(environ.get("QUERY_STRING", ""))
        if query and "?" not in raw_path:
            raw_path = f"{raw_path}?{query}"
        try:
            verified = verify_header_signed(str(environ.get("REQUEST_METHOD", "POST")),
                                            f"http://{headers.get('host', '')}{raw_path}", headers, body,
                                            service=signing_name or "unknown", lookup=self.keys, now=self.clock.now(),
                                            max_skew=MAX_SKEW)
        except SignatureError as exc:
            log.info("local aws refused a request signed for %s: %s", signing_name or "no service", exc.reason)
            return auth_failure(signing_name or "sts", exc.reason)
        credential = verified.credential
        root = self.keys.is_root(credential.access_key_id)
        if root:
            environ["HTTP_X_MOTO_ACCOUNT_ID"] = credential.account
        else:
            environ.pop("HTTP_X_MOTO_ACCOUNT_ID", None)  # only the stack's root acts through it
        principal = Principal(credential.principal_arn, credential.account, root)
        path = str(environ.get("PATH_INFO", "/"))
        op = parse_operation(signing_name, str(environ.get("REQUEST_METHOD", "POST")), path, query, headers, body)
        facts = RequestFacts(credential.account, verified.region, principal.arn, self.decider.state)
        if op is None:
            return self._deny(signing_name, Denial(principal.arn, f"{signing_name}:unknown", "*", "unmapped", False,
                                                   f"no {signing_name} operation answers {path[:100]}"))
        try:
            ask = asks_for(op, facts)
        except UnmappedError as exc:
            return self._deny(signing_name, Denial(principal.arn, exc.action, "*", "unmapped", False, exc.why))
        if ask is None:
            return None
        denial = self.decider.decide(principal, ask, access_key_id=credential.access_key_id,
                                     region=verified.region, signing_name=signing_name)
        return None if denial is None else self._deny(signing_name, denial)

    def _deny(self, signing_name: str, denial: Denial) -> Answer:
        self.denials.record(denial)
        return access_denied(signing_name, denial.message())


def _reads_only(environ: Mapping[str, Any], headers: Mapping[str, str], body: bytes) -> bool:
    """Is this IAM or Organizations request a read (Get, List, Describe...)?"""
    target = headers.get("x-amz-target", "")
    if target:
        return target.rsplit(".", 1)[-1].startswith(_READ_PREFIXES)

    params = parse_qs(str(environ.get("QUERY_STRING", ""))) | parse_qs(body.decode("utf-8", "replace"))
    return (params.get("Action") or [""])[0].startswith(_READ_PREFIXES)


def _signing_name(authorization: str) -> str:
    """The service a request is signed for (``Credential=KEY/DATE/REGION/SERVICE/aws4_request``)."""
    _, _, rest = authorization.partition("Credential=")
    parts = rest.split(",", 1)[0].split("/")
    return parts[3].strip() if len(parts) == 5 else ""


def organization_policy(action: str, resource: str, org_id: str | None) -> dict[str, Any]:
    """A resource policy letting the organization's principals do ``action`` on ``resource``
    (what a deployment grants its callers on the API and the vend function)."""
    return {"Version": "2012-10-17", "Statement": [{
        "Sid": "OrganizationCallers", "Effect": "Allow", "Principal": {"AWS": "*"}, "Action": action,
        "Resource": resource, "Condition": {"StringEquals": {"aws:PrincipalOrgID": org_id or "o-none"}}}]}


def service_permission(action: str, signing_name: str, resource_prefix: str, org_id: str | None,
                       denials: DenialLog, decider: Decider | None = None,
                       ) -> Callable[[Credential, str], tuple[bool, str]]:
    """``(credential, resource ARN) -> (allowed, AWS's refusal message)`` for a service the local
    stack serves itself (the Invoke API, the gateway), decided as every other request. The
    resource's policy is moto's when moto holds it, else :func:`organization_policy`."""
    fallback = organization_policy(action, f"{resource_prefix}*", org_id)
    judge = decider or Decider(resource_policies={resource_prefix: fallback})

    def permission(credential: Credential, resource: str) -> tuple[bool, str]:
        region = resource.split(":")[3]
        principal = Principal(credential.principal_arn, credential.account)
        ask = Ask(((action, resource),), {"aws:requestedregion": (region,)})
        denial = judge.decide(principal, ask, access_key_id=credential.access_key_id, region=region,
                              signing_name=signing_name)
        if denial is None:
            return True, ""
        denials.record(denial)
        return False, denial.message()

    return permission


def invoke_permission(function_arn: str, org_id: str | None, denials: DenialLog,
                      decider: Decider | None = None) -> Callable[[Credential, str], tuple[bool, str]]:
    """``lambda:InvokeFunction`` on the local vend function (see :func:`service_permission`)."""
    return service_permission("lambda:InvokeFunction", "lambda", function_arn, org_id, denials, decider)
