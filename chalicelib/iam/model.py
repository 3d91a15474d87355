"""IAM policy documents and request contexts as frozen dataclasses.

Public API:

- :func:`parse_policy(doc, source) <parse_policy>` turns a JSON string or a decoded ``dict``
  into a :class:`PolicyDocument`, or raises :class:`chalicelib.errors.IamPolicyError`
  (``"<source>: <problem>"``) for anything AWS would refuse: not JSON, no ``Statement``, an
  ``Effect`` other than ``Allow``/``Deny``, both ``Action`` and ``NotAction`` (or neither),
  both ``Resource`` and ``NotResource`` (or neither), an unknown condition operator, a
  ``Principal`` in an identity policy, an unknown element or a value of the wrong type.
- :class:`RequestContext(action, resource, context) <RequestContext>`: what is being asked.
  ``context`` maps condition keys to a tuple of values; key names are case-insensitive (they
  are stored lower-cased). A key mapped to an empty tuple counts as absent.

Nothing here evaluates anything: see :mod:`chalicelib.iam.evaluator`.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from chalicelib.errors import IamPolicyError

__all__ = [
    "OPERATOR_FAMILIES",
    "Condition",
    "Statement",
    "PolicyDocument",
    "RequestContext",
    "parse_policy",
    "split_operator",
]

Effect = Literal["Allow", "Deny"]
Qualifier = Literal["ForAnyValue", "ForAllValues"]

#: Every base condition operator AWS defines, mapped to its family.
OPERATOR_FAMILIES: Mapping[str, str] = MappingProxyType(
    {
        **{
            op: "string"
            for op in (
                "StringEquals",
                "StringNotEquals",
                "StringEqualsIgnoreCase",
                "StringNotEqualsIgnoreCase",
                "StringLike",
                "StringNotLike",
            )
        },
        **{
            op: "numeric"
            for op in (
                "NumericEquals",
                "NumericNotEquals",
                "NumericLessThan",
                "NumericLessThanEquals",
                "NumericGreaterThan",
                "NumericGreaterThanEquals",
            )
        },
        **{
            op: "date"
            for op in (
                "DateEquals",
                "DateNotEquals",
                "DateLessThan",
                "DateLessThanEquals",
                "DateGreaterThan",
                "DateGreaterThanEquals",
            )
        },
        "Bool": "bool",
        "BinaryEquals": "binary",
        "IpAddress": "ip",
        "NotIpAddress": "ip",
        **{op: "arn" for op in ("ArnEquals", "ArnLike", "ArnNotEquals", "ArnNotLike")},
        "Null": "null",
    }
)

_VERSIONS = ("2012-10-17", "2008-10-17")
_STATEMENT_KEYS = {
    "Sid",
    "Effect",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Condition",
    "Principal",
    "NotPrincipal",
}


@dataclass(frozen=True)
class Condition:
    """One (operator, key) pair of a statement's ``Condition`` block."""

    operator: str  # as written, e.g. "ForAnyValue:StringLikeIfExists"
    base: str  # e.g. "StringLike"
    qualifier: Qualifier | None
    if_exists: bool
    key: str  # as written; compared case-insensitively
    values: tuple[str, ...]

    @property
    def family(self) -> str:
        return OPERATOR_FAMILIES[self.base]

    @property
    def negated(self) -> bool:
        return self.base in _NEGATED


_NEGATED = frozenset(
    {
        "StringNotEquals",
        "StringNotEqualsIgnoreCase",
        "StringNotLike",
        "NumericNotEquals",
        "DateNotEquals",
        "NotIpAddress",
        "ArnNotEquals",
        "ArnNotLike",
    }
)


@dataclass(frozen=True)
class Statement:
    index: int  # position in the document, from 0
    sid: str | None
    effect: Effect
    actions: tuple[str, ...] | None  # exactly one of actions / not_actions is set
    not_actions: tuple[str, ...] | None
    resources: tuple[str, ...] | None  # exactly one of resources / not_resources is set
    not_resources: tuple[str, ...] | None
    conditions: tuple[Condition, ...] = ()

    @property
    def label(self) -> int | str:
        """What a result names: the ``Sid`` if there is one, else the index."""
        return self.sid if self.sid else self.index


@dataclass(frozen=True)
class PolicyDocument:
    source: str  # a file name, a policy ARN, "scp level 0"...
    statements: tuple[Statement, ...]
    version: str | None = "2012-10-17"
    id: str | None = None

    @property
    def variables_enabled(self) -> bool:
        """Policy variables are only substituted in ``Version: 2012-10-17`` documents."""
        return self.version == "2012-10-17"


@dataclass(frozen=True)
class RequestContext:
    """An authorization request: one action on one resource, with its context keys."""

    action: str
    resource: str
    context: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        merged: dict[str, tuple[str, ...]] = {}
        for key, given in dict(self.context).items():
            values = (given,) if isinstance(given, str) else given
            merged.setdefault(key.lower(), ())
            merged[key.lower()] = merged[key.lower()] + tuple(str(v) for v in values)
        object.__setattr__(self, "context", MappingProxyType(merged))

    def get(self, key: str) -> tuple[str, ...] | None:
        """The values of ``key`` (any case), or ``None`` when the request does not carry it."""
        values = self.context.get(key.lower())
        return values if values else None


def split_operator(operator: str) -> tuple[Qualifier | None, str, bool]:
    """``"ForAnyValue:StringLikeIfExists"`` -> ``("ForAnyValue", "StringLike", True)``.

    Raises :class:`ValueError` for an operator AWS does not define.
    """
    qualifier: Qualifier | None = None
    rest = operator
    if ":" in rest:
        prefix, rest = rest.split(":", 1)
        if prefix not in ("ForAnyValue", "ForAllValues"):
            raise ValueError(f"unknown condition operator '{operator}'")
        qualifier = prefix  # type: ignore[assignment]  # one of the two literals (checked above)
    if_exists = False
    if rest.endswith("IfExists") and rest != "IfExists":
        rest, if_exists = rest[: -len("IfExists")], True
    if rest not in OPERATOR_FAMILIES or (rest == "Null" and if_exists):
        raise ValueError(f"unknown condition operator '{operator}'")
    return qualifier, rest, if_exists


def parse_policy(doc: str | bytes | Mapping[str, Any], source: str) -> PolicyDocument:
    """Parse one IAM policy document; raise :class:`IamPolicyError` naming ``source``."""
    if isinstance(doc, (str, bytes)):
        try:
            doc = json.loads(doc)
        except (ValueError, UnicodeDecodeError) as exc:
            raise IamPolicyError(f"not valid JSON ({_short(exc)})", source=source) from exc
    if not isinstance(doc, Mapping):
        raise IamPolicyError("a policy document must be a JSON object", source=source)
    unknown = set(doc) - {"Version", "Id", "Statement"}
    if unknown:
        raise IamPolicyError(f"unknown element '{sorted(unknown)[0]}'", source=source)
    version = doc.get("Version")
    if version is not None and version not in _VERSIONS:
        raise IamPolicyError(f"unsupported 'Version' {json.dumps(version)}", source=source)
    policy_id = doc.get("Id")
    if policy_id is not None and not isinstance(policy_id, str):
        raise IamPolicyError("'Id' must be a string", source=source)
    if "Statement" not in doc:
        raise IamPolicyError("missing 'Statement'", source=source)
    raw = doc["Statement"]
    if isinstance(raw, Mapping):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise IamPolicyError("'Statement' must be an object or a non-empty list", source=source)
    statements = tuple(_parse_statement(item, i, source) for i, item in enumerate(raw))
    sids = [s.sid for s in statements if s.sid]
    if len(sids) != len(set(sids)):
        dup = next(s for s in sids if sids.count(s) > 1)
        raise IamPolicyError(f"duplicate 'Sid' '{dup}'", source=source)
    return PolicyDocument(source=source, statements=statements, version=version, id=policy_id)


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:120]


def _parse_statement(item: Any, index: int, source: str) -> Statement:
    where = f"statement {index}"
    if not isinstance(item, Mapping):
        raise IamPolicyError(f"{where} must be a JSON object", source=source)
    unknown = set(item) - _STATEMENT_KEYS
    if unknown:
        raise IamPolicyError(f"{where}: unknown element '{sorted(unknown)[0]}'", source=source)
    if "Principal" in item or "NotPrincipal" in item:
        name = "Principal" if "Principal" in item else "NotPrincipal"
        raise IamPolicyError(
            f"{where}: '{name}' is not allowed in identity policies, boundaries or SCPs",
            source=source,
        )
    sid = item.get("Sid")
    if sid is not None and not isinstance(sid, str):
        raise IamPolicyError(f"{where}: 'Sid' must be a string", source=source)
    if sid:
        where = f"statement '{sid}'"
    effect = item.get("Effect")
    if effect not in ("Allow", "Deny"):
        shown = "missing" if effect is None else json.dumps(effect)
        raise IamPolicyError(
            f"{where}: 'Effect' must be \"Allow\" or \"Deny\", got {shown}", source=source
        )
    actions, not_actions = _pair(item, "Action", "NotAction", where, source)
    resources, not_resources = _pair(item, "Resource", "NotResource", where, source)
    conditions = _parse_conditions(item.get("Condition"), where, source)
    return Statement(
        index=index,
        sid=sid or None,
        effect=effect,
        actions=actions,
        not_actions=not_actions,
        resources=resources,
        not_resources=not_resources,
        conditions=conditions,
    )


def _pair(
    item: Mapping[str, Any], name: str, not_name: str, where: str, source: str
) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None]:
    if name in item and not_name in item:
        raise IamPolicyError(f"{where}: both '{name}' and '{not_name}'", source=source)
    if name not in item and not_name not in item:
        raise IamPolicyError(f"{where}: missing '{name}' or '{not_name}'", source=source)
    key = name if name in item else not_name
    values = _strings(item[key], f"{where}: '{key}'", source)
    if not values:
        raise IamPolicyError(f"{where}: '{key}' must not be empty", source=source)
    if name == "Action":
        for value in values:
            if value != "*" and ":" not in value:
                raise IamPolicyError(
                    f"{where}: '{key}' value '{value}' is not 'service:action'", source=source
                )
    return (values, None) if key == name else (None, values)


def _strings(value: Any, what: str, source: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise IamPolicyError(f"{what} must be a string or a list of strings", source=source)


def _scalar(value: Any, what: str, source: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, str):
        return value
    raise IamPolicyError(f"{what} values must be strings, numbers or booleans", source=source)


def _parse_conditions(block: Any, where: str, source: str) -> tuple[Condition, ...]:
    if block is None:
        return ()
    if not isinstance(block, Mapping):
        raise IamPolicyError(f"{where}: 'Condition' must be a JSON object", source=source)
    out: list[Condition] = []
    for operator, keys in block.items():
        try:
            qualifier, base, if_exists = split_operator(operator)
        except ValueError as exc:
            raise IamPolicyError(f"{where}: {exc}", source=source) from None
        if not isinstance(keys, Mapping) or not keys:
            raise IamPolicyError(
                f"{where}: condition '{operator}' must map keys to values", source=source
            )
        for key, raw in keys.items():
            what = f"{where}: condition '{operator}' key '{key}'"
            raw_list = raw if isinstance(raw, list) else [raw]
            if not raw_list:
                raise IamPolicyError(f"{what} has no values", source=source)
            values = tuple(_scalar(v, what, source) for v in raw_list)
            if base == "Null" and any(v.lower() not in ("true", "false") for v in values):
                raise IamPolicyError(f"{what}: Null takes \"true\" or \"false\"", source=source)
            out.append(Condition(operator, base, qualifier, if_exists, key, values))
    return tuple(out)
