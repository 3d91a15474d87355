"""The ``Condition`` element: every operator family, ``...IfExists``, ``Null`` and the
``ForAnyValue:``/``ForAllValues:`` set operators, following "IAM JSON policy elements:
Condition operators" and "Single-valued vs. multivalued context keys".

Rules implemented (each is cited by cases in ``tests/unit/iam_corpus``):

- Several values for one key are OR'ed; several keys, and several operators, are AND'ed.
- A key missing from the request makes a positive operator false and a negated one
  (``StringNotEquals``, ``StringNotLike``, ``NumericNotEquals``, ``DateNotEquals``,
  ``ArnNotEquals``, ``ArnNotLike``, ``NotIpAddress``, ``StringNotEqualsIgnoreCase``) true.
- ``...IfExists``: a missing key makes the condition true; a present key is checked as usual.
- ``Null``: ``"true"`` holds when the key is absent (or empty), ``"false"`` when present.
- ``ForAllValues:``: true when every request value satisfies the operator, and when the key is
  missing or empty. ``ForAnyValue:``: true when at least one request value satisfies it; false
  when the key is missing.
- A negated operator checks that a value matches none of the policy values.
- Policy variables are substituted in String, ARN and Bool operator values; a variable with no
  value makes the condition false (the statement is invalid). Numeric, Date, Binary and IP
  values are literal.
"""
from __future__ import annotations

import base64
import binascii
import ipaddress
import math
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from functools import lru_cache

from chalicelib.iam.model import Condition, RequestContext
from chalicelib.iam.patterns import Lookup, arn_matches, matches, resolve, tokenize

__all__ = ["condition_holds", "parse_date", "parse_number"]

_VARIABLE_FAMILIES = ("string", "arn", "bool")
_POSITIVE = {
    "StringNotEquals": "StringEquals",
    "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
    "StringNotLike": "StringLike",
    "NumericNotEquals": "NumericEquals",
    "DateNotEquals": "DateEquals",
    "NotIpAddress": "IpAddress",
    "ArnNotEquals": "ArnEquals",
    "ArnNotLike": "ArnLike",
}


def condition_holds(cond: Condition, request: RequestContext, *, variables: bool) -> bool:
    """Evaluate one (operator, key, values) of a statement's ``Condition`` block."""
    present = request.get(cond.key)
    if cond.base == "Null":
        return any((v.lower() == "true") == (present is None) for v in cond.values)
    if present is None:
        return _holds_without_key(cond)
    base = _POSITIVE.get(cond.base, cond.base)
    test = _comparator(base)
    lookup = request.get
    if cond.family in _VARIABLE_FAMILIES:
        if any(resolve(tokenize(v, variables), lookup) is None for v in cond.values):
            return False  # a variable without a value: the statement is invalid
    else:
        variables = False  # Numeric, Date, Binary, IP: values are taken literally
    resolved = cond.values

    def satisfied(value: str) -> bool:
        hit = any(test(value, pv, lookup, variables) for pv in resolved)
        return not hit if cond.negated else hit

    return _quantifier(cond)(satisfied(v) for v in present)


def _holds_without_key(cond: Condition) -> bool:
    """A condition on a key the request does not carry: true with ``...IfExists`` and
    ``ForAllValues:``, false with ``ForAnyValue:``, else true only for a negated operator."""
    if cond.if_exists or cond.qualifier == "ForAllValues":
        return True
    if cond.qualifier == "ForAnyValue":
        return False
    return cond.negated


def _quantifier(cond: Condition) -> Callable[[Iterable[bool]], bool]:
    """How the request's values combine: every one must satisfy ``ForAllValues:`` and a negated
    operator (it matches none of the policy values); one is enough for ``ForAnyValue:`` and the rest."""
    if cond.qualifier == "ForAllValues":
        return all
    if cond.qualifier == "ForAnyValue":
        return any
    return all if cond.negated else any


Comparator = Callable[[str, str, Lookup, bool], bool]


def _comparator(base: str) -> Comparator:
    return _COMPARATORS[base]


def _string_equals(value: str, pattern: str, lookup: Lookup, variables: bool) -> bool:
    tokens = resolve(tokenize(pattern, variables), lookup)
    if tokens is None:
        return False
    literal = "".join(t if isinstance(t, str) else t[0] for t in tokens)
    return value == literal


def _string_equals_ic(value: str, pattern: str, lookup: Lookup, variables: bool) -> bool:
    tokens = resolve(tokenize(pattern, variables), lookup)
    if tokens is None:
        return False
    literal = "".join(t if isinstance(t, str) else t[0] for t in tokens)
    return value.casefold() == literal.casefold()


def _string_like(value: str, pattern: str, lookup: Lookup, variables: bool) -> bool:
    return matches(pattern, value, lookup, variables=variables)


def _arn(value: str, pattern: str, lookup: Lookup, variables: bool) -> bool:
    return arn_matches(pattern, value, lookup, variables=variables)


@lru_cache(maxsize=4096)
def parse_number(text: str) -> float | None:
    try:
        number = float(text.strip())
    except ValueError:
        return None
    return None if math.isnan(number) else number


def _numeric(op: Callable[[float, float], bool]) -> Comparator:
    def compare(value: str, pattern: str, lookup: Lookup, variables: bool) -> bool:
        left, right = parse_number(value), parse_number(pattern)
        return left is not None and right is not None and op(left, right)

    return compare


@lru_cache(maxsize=4096)
def parse_date(text: str) -> float | None:
    """ISO 8601 (date, or date and time, ``Z`` or an offset) or epoch seconds -> epoch."""
    text = text.strip()
    if not text:
        return None
    if text.lstrip("-").replace(".", "", 1).isdigit():
        return float(text)
    try:
        parsed = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _date(op: Callable[[float, float], bool]) -> Comparator:
    def compare(value: str, pattern: str, lookup: Lookup, variables: bool) -> bool:
        left, right = parse_date(value), parse_date(pattern)
        return left is not None and right is not None and op(left, right)

    return compare


def _bool(value: str, pattern: str, lookup: Lookup, variables: bool) -> bool:
    tokens = resolve(tokenize(pattern, variables), lookup) or ()
    pattern = "".join(t if isinstance(t, str) else t[0] for t in tokens)
    v, p = value.strip().lower(), pattern.strip().lower()
    return v in ("true", "false") and v == p


def _binary(value: str, pattern: str, lookup: Lookup, variables: bool) -> bool:
    try:
        return base64.b64decode(value, validate=True) == base64.b64decode(pattern, validate=True)
    except (binascii.Error, ValueError):
        return False


@lru_cache(maxsize=4096)
def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return None


def _ip(value: str, pattern: str, lookup: Lookup, variables: bool) -> bool:
    net = _network(pattern)
    try:
        addr = ipaddress.ip_address(value.strip())
    except ValueError:
        return False
    return net is not None and addr.version == net.version and addr in net


_COMPARATORS: dict[str, Comparator] = {
    "StringEquals": _string_equals,
    "StringEqualsIgnoreCase": _string_equals_ic,
    "StringLike": _string_like,
    "NumericEquals": _numeric(lambda a, b: a == b),
    "NumericLessThan": _numeric(lambda a, b: a < b),
    "NumericLessThanEquals": _numeric(lambda a, b: a <= b),
    "NumericGreaterThan": _numeric(lambda a, b: a > b),
    "NumericGreaterThanEquals": _numeric(lambda a, b: a >= b),
    "DateEquals": _date(lambda a, b: a == b),
    "DateLessThan": _date(lambda a, b: a < b),
    "DateLessThanEquals": _date(lambda a, b: a <= b),
    "DateGreaterThan": _date(lambda a, b: a > b),
    "DateGreaterThanEquals": _date(lambda a, b: a >= b),
    "Bool": _bool,
    "BinaryEquals": _binary,
    "IpAddress": _ip,
    "ArnEquals": _arn,
    "ArnLike": _arn,
}
