"""What the local AWS's policies are, read straight from moto's in-process backends (the moto
server runs in the stack's process): a principal's identity policies and permissions boundary,
the SCP levels above an account, the resource policies AWS has (role trust, secret, topic,
Lambda function), and the names a request does not spell out (a secret's full ARN).

Reading the backends, not the API, keeps the authorizer out of its own way (no request to
authorize while authorizing one) and fast. Documents are parsed once per text
(:func:`parsed`), so the evaluator's per-statement caches live as long as the policy does.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import unquote

from chalicelib.iam.fetch import PrincipalPolicies, ScpChain, inline_source, principal_ref
from chalicelib.iam.model import PolicyDocument, parse_policy

__all__ = ["MotoState", "Principal", "parsed"]


@lru_cache(maxsize=4096)
def parsed(text: str, source: str) -> PolicyDocument:
    """A policy document from its JSON text (IAM stores some URL-encoded); one object per text."""
    body = text.strip()
    if not body.startswith("{"):
        body = unquote(body)
    return parse_policy(body, source)


def _tags(raw: Any) -> dict[str, str]:
    """moto keeps tags as a list of ``{"Key", "Value"}`` or a mapping of key to one."""
    items = raw.values() if isinstance(raw, Mapping) else raw or []
    return {str(t["Key"]): str(t["Value"]) for t in items}


def _as_text(document: Any) -> str:
    return document if isinstance(document, str) else json.dumps(document)


@dataclass(frozen=True)
class Principal:
    """Who signed: an IAM user, an assumed-role session, or an account's root user."""

    arn: str
    account: str
    root: bool = False


class MotoState:
    """Reads moto's backends of this process (see the module docstring)."""

    def __init__(self, partition: str = "aws") -> None:
        self.partition = partition

    # -- identities ------------------------------------------------------------------------------
    def _iam(self, account: str) -> Any:
        from moto.iam.models import iam_backends

        return iam_backends[account][self.partition]

    def principal_policies(self, principal_arn: str) -> PrincipalPolicies | None:
        """The identity policies and boundary of a user or a role session; ``None`` if it is gone."""
        kind, name, account, _session = principal_ref(principal_arn)
        iam = self._iam(account)
        entity: Any
        if kind == "role":
            entity = next((r for r in iam.get_roles() if r.name == name), None)
        else:
            entity = next((u for u in iam.users.values() if u.name == name), None)
        if entity is None:
            return None
        docs = self._attached(entity)
        if kind == "user":
            for group in iam.get_groups_for_user(name):
                docs.extend(self._attached(group))
        tags = _tags(entity.tags)
        boundary_arn = getattr(entity, "permissions_boundary_arn", None)
        boundary = self._managed(account, boundary_arn) if boundary_arn else None
        return PrincipalPolicies(principal_arn=principal_arn, kind=kind, name=name, account=account, arn=entity.arn,
                                 unique_id=entity.id, identity=tuple(docs), boundary=boundary, tags=tags)

    def _attached(self, entity: Any) -> list[PolicyDocument]:
        docs = [parsed(_as_text(text), inline_source(entity.arn, pname))
                for pname, text in sorted(entity.policies.items())]
        for arn, policy in sorted(entity.managed_policies.items()):
            docs.append(self._document_of(policy, arn))
        return docs

    def _managed(self, account: str, arn: str) -> PolicyDocument | None:
        iam = self._iam(account)
        policy = iam.managed_policies.get(arn)
        if policy is None:
            raise LookupError(f"managed policy '{arn}' does not exist")
        return self._document_of(policy, arn)

    @staticmethod
    def _document_of(policy: Any, arn: str) -> PolicyDocument:
        version = next((v for v in policy.versions if v.is_default), None)
        if version is None:
            raise LookupError(f"managed policy '{arn}' has no default version")
        return parsed(_as_text(version.document), arn)

    def principal_for_key(self, access_key_id: str) -> tuple[str, str] | None:
        """``(principal ARN, account)`` an access key signs for (users' keys, role sessions)."""
        from moto.iam.models import iam_backends
        from moto.sts.models import sts_backends

        for account, by_partition in list(iam_backends.items()):
            key = by_partition[self.partition].access_keys.get(access_key_id)
            if key is None:
                continue
            assumed = sts_backends[account][self.partition].get_assumed_role_from_access_key(access_key_id)
            if assumed is not None:
                return assumed.arn, account
            user = by_partition[self.partition].users.get(key.user_name) if key.user_name else None
            return (user.arn, account) if user is not None else None
        return None

    def session_policy(self, access_key_id: str) -> PolicyDocument | None:
        """The inline session policy given to AssumeRole for these credentials, if any."""
        from moto.sts.models import sts_backends

        for _account, by_partition in list(sts_backends.items()):
            assumed = by_partition[self.partition].get_assumed_role_from_access_key(access_key_id)
            if assumed is not None:
                return parsed(_as_text(assumed.policy), "session policy") if assumed.policy else None
        return None

    # -- the organization ------------------------------------------------------------------------
    def _org_backend(self, account: str) -> Any:
        from moto.organizations.models import organizations_backends

        own = organizations_backends[account][self.partition]
        if own.org is not None:
            return own
        master = organizations_backends.master_accounts.get(account)
        if master is None:
            return None
        backend = organizations_backends[master[0]][master[1]]
        return backend if backend.org is not None else None

    def organization(self, account: str) -> tuple[str, str] | None:
        backend = self._org_backend(account)
        return None if backend is None else (backend.org.id, backend.org.master_account_id)

    def scp_chain(self, account: str) -> ScpChain | None:
        """The SCP levels over ``account``, root first (``None``: SCPs restrict nothing)."""
        backend = self._org_backend(account)
        if backend is None or backend.org.feature_set != "ALL":
            return None
        nodes: dict[str, Any] = {a.id: a for a in backend.accounts}
        nodes.update({ou.id: ou for ou in backend.ou})
        chain = []
        node = nodes.get(account)
        for _ in range(10):  # the root, at most five OU levels, the account: never loop forever
            if node is None:
                raise LookupError(f"account '{account}' has no path to the organization's root")
            chain.append(node)
            if node.id == backend.org.root_id:
                break
            node = nodes.get(node.parent_id)
        chain.reverse()
        root = chain[0]
        if not any(t.get("Type") == "SERVICE_CONTROL_POLICY" for t in getattr(root, "policy_types", [])) and not [
                p for p in root.attached_policies if p.type == "SERVICE_CONTROL_POLICY"]:
            return None
        levels = tuple(tuple(parsed(_as_text(p.content), f"SCP '{p.name}' ({p.id})")
                             for p in level.attached_policies if p.type == "SERVICE_CONTROL_POLICY")
                       for level in chain)
        return ScpChain(account_id=account, organization_id=backend.org.id,
                        management_account=backend.org.master_account_id == account,
                        level_ids=tuple(n.id for n in chain), levels=levels)

    # -- resources and their policies --------------------------------------------------------------
    def role(self, role_arn: str) -> Any:
        parts = role_arn.split(":")
        if len(parts) != 6 or parts[2] != "iam" or not parts[5].startswith("role/"):
            return None
        name = parts[5].rsplit("/", 1)[-1]
        return next((r for r in self._iam(parts[4]).get_roles() if r.name == name), None)

    def trust_text(self, role_arn: str) -> str | None:
        """A role's trust policy as JSON text, or ``None`` when there is no such role."""
        role = self.role(role_arn)
        return None if role is None else _as_text(role.assume_role_policy_document)

    def resource_policy_text(self, service: str, resource_arn: str) -> str | None:
        """The resource-based policy on ``resource_arn`` (secret, topic, function), if any."""
        reader = _RESOURCE_POLICY_READERS.get(service)
        return reader(self, resource_arn) if reader is not None else None

    def _secret(self, resource_arn: str) -> Any:
        from moto.secretsmanager.models import secretsmanager_backends

        parts = resource_arn.split(":")
        if len(parts) < 7:
            return None
        return secretsmanager_backends[parts[4]][parts[3]].secrets.get(resource_arn)

    def secret_arn(self, account: str, region: str, secret_id: str) -> str | None:
        from moto.secretsmanager.models import secretsmanager_backends

        found = secretsmanager_backends[account][region].secrets.get(secret_id)
        return str(found.arn) if found is not None else None

    def role_arn(self, account: str, role_name: str) -> str | None:
        role = next((r for r in self._iam(account).get_roles() if r.name == role_name), None)
        return str(role.arn) if role is not None else None

    def user_arn(self, account: str, user_name: str) -> str | None:
        user = self._iam(account).users.get(user_name)
        return str(user.arn) if user is not None else None

    def proxy_arn(self, account: str, region: str, proxy_name: str) -> str | None:
        from moto.rds.models import rds_backends

        proxy = rds_backends[account][region].db_proxies.get(proxy_name)
        return str(proxy.arn) if proxy is not None else None


def _secret_policy(state: MotoState, arn: str) -> str | None:
    secret = state._secret(arn)  # the module's own reader table
    return getattr(secret, "policy", None) if secret is not None else None


def _topic_policy(_state: MotoState, arn: str) -> str | None:
    from moto.sns.models import sns_backends

    parts = arn.split(":")
    if len(parts) != 6:
        return None
    topic = sns_backends[parts[4]][parts[3]].topics.get(arn)
    return str(topic.policy) if topic is not None else None


def _function_policy(_state: MotoState, arn: str) -> str | None:
    from moto.awslambda.models import lambda_backends

    parts = arn.split(":")
    if len(parts) < 7:
        return None
    try:
        function = lambda_backends[parts[4]][parts[3]].get_function(parts[6])
    except Exception:  # noqa: BLE001 - moto's not-found exception: no function, no policy
        return None
    statements: Iterable[Mapping[str, Any]] = function.policy.statements
    if not statements:
        return None
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


_RESOURCE_POLICY_READERS = {
    "secretsmanager": _secret_policy,
    "sns": _topic_policy,
    "lambda": _function_policy,
}
