"""Wildcards and policy variables: the string matching every IAM element shares.

- ``*`` matches any run of characters and ``?`` one character (IAM JSON policy elements:
  Action, Resource; String and ARN condition operators). Actions compare case-insensitively,
  resources and condition values case-sensitively.
- In a resource ARN, a ``*`` or ``?`` stays inside its colon-delimited segment, except a ``*``
  that ends a segment, which may run across the colons that follow ("IAM JSON policy
  elements: Resource").
- ``${key}`` is replaced by the request's single value of ``key`` (key names compare
  case-insensitively); ``${key, 'default'}`` falls back to ``default`` (``''`` is a quote);
  ``${*}``, ``${?}`` and ``${$}`` are the literal characters. A key with no value and no
  default, or with several values, cannot be substituted: "any attempt to match it fails and
  causes the statement to be invalid" ("IAM policy elements: Variables and tags"). Substituted
  text is literal, never a wildcard.
  Variables are only recognised in ``Version: 2012-10-17`` documents.

Matching is linear in the value's length whatever the pattern (:mod:`chalicelib.wildcard`).
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from chalicelib.wildcard import QMARK, STAR, Glob, compile_glob

__all__ = [
    "Token",
    "tokenize",
    "resolve",
    "glob_matcher",
    "action_matches",
    "matches",
    "resource_matches",
    "compile_patterns",
    "CompiledPatterns",
    "arn_matches",
    "has_variables",
]

# A token is a literal string, STAR, QMARK, or a variable ("var", key, default).
Var = tuple[str, str, str | None]
Token = str | tuple[str, ...] | Var

_QUOTED = re.compile(r"(?:[^']|'')*")  # a default's text: quotes only doubled

Lookup = Callable[[str], "tuple[str, ...] | None"]


@lru_cache(maxsize=8192)
def tokenize(text: str, variables: bool = True) -> tuple[Token, ...]:
    """Split a policy string into literals, ``*``/``?`` wildcards and ``${...}`` variables."""
    out: list[Token] = []
    buf: list[str] = []
    i = 0

    def flush() -> None:
        if buf:
            out.append("".join(buf))
            buf.clear()

    while i < len(text):
        ch = text[i]
        if variables and ch == "$" and text.startswith("${", i):
            close = text.find("}", i + 2)
            if close < 0:
                variables = False  # no '}' anywhere after: no more variables
            else:
                inner = text[i + 2:close]
                if inner in ("*", "?", "$"):
                    buf.append(inner)
                else:
                    flush()
                    out.append(_parse_var(inner))
                i = close + 1
                continue
        if ch in "*?":
            flush()
            out.append(STAR if ch == "*" else QMARK)
        else:
            buf.append(ch)
        i += 1
    flush()
    return tuple(out)


def _parse_var(inner: str) -> Var:
    """``key`` or ``key, 'default'`` (split by hand: a regex here backtracks quadratically)."""
    key, comma, rest = inner.partition(",")
    key = key.strip()
    if comma and key:
        rest = rest.strip()
        if len(rest) >= 2 and rest[0] == rest[-1] == "'" and _QUOTED.fullmatch(rest, 1, len(rest) - 1):
            return ("var", key.lower(), rest[1:-1].replace("''", "'"))
    return ("var", inner.strip().lower(), None)


def has_variables(tokens: tuple[Token, ...]) -> bool:
    return any(isinstance(t, tuple) and t[0] == "var" for t in tokens)


def resolve(tokens: tuple[Token, ...], lookup: Lookup) -> tuple[Token, ...] | None:
    """Replace variables by literals; ``None`` when a variable cannot be resolved."""
    if not has_variables(tokens):
        return tokens
    out: list[Token] = []
    for tok in tokens:
        if isinstance(tok, tuple) and tok[0] == "var":
            values = lookup(tok[1])
            if values is not None and len(values) == 1:
                out.append(values[0])
            elif tok[2] is not None:
                out.append(tok[2])
            else:
                return None
        else:
            out.append(tok)
    return tuple(out)


@lru_cache(maxsize=16384)
def glob_matcher(tokens: tuple[Token, ...], ignore_case: bool = False, arn: bool = False) -> Glob:
    """Compile resolved tokens into an anchored matcher.

    With ``arn=True`` a wildcard stays within a colon-delimited segment unless it is a ``*``
    ending its segment (followed by ``:`` or by the end of the pattern).
    """
    return compile_glob(tokens, ignore_case=ignore_case, arn=arn)


def matches(pattern: str, value: str, lookup: Lookup, *, variables: bool, ignore_case: bool = False,
            resource: bool = False) -> bool:
    """Does ``value`` match the policy ``pattern`` (wildcards, variables)?"""
    tokens = resolve(tokenize(pattern, variables), lookup)
    if tokens is None:
        return False
    arn = resource and pattern.startswith("arn:")
    return glob_matcher(tokens, ignore_case, arn).matches(value)


def resource_matches(pattern: str, resource: str, lookup: Lookup, *, variables: bool) -> bool | None:
    """Resource-element matching; ``None`` when a variable in ``pattern`` has no value."""
    tokens = resolve(tokenize(pattern, variables), lookup)
    if tokens is None:
        return None
    return glob_matcher(tokens, False, pattern.startswith("arn:")).matches(resource)


@dataclass(frozen=True)
class CompiledPatterns:
    """A list of patterns, ready to match: exact strings, and for each wildcard pattern its
    literal (prefix, suffix), a cheap test to skip the matcher, and the matcher."""

    exact: frozenset[str]
    guarded: tuple[tuple[str, str, Glob], ...]

    def match(self, value: str) -> bool:
        if value in self.exact:
            return True
        for prefix, suffix, matcher in self.guarded:
            if value.startswith(prefix) and value.endswith(suffix) and matcher.matches(value):
                return True
        return False


@lru_cache(maxsize=16384)
def compile_patterns(
    patterns: tuple[str, ...], *, variables: bool, ignore_case: bool, resource: bool
) -> CompiledPatterns | None:
    """Compile ``patterns`` for :meth:`CompiledPatterns.match`; ``None`` when a pattern uses a
    variable (resolved per request instead). With ``ignore_case`` the caller passes
    ``value.lower()``."""
    literals: set[str] = set()
    guarded: list[tuple[str, str, Glob]] = []
    for pattern in patterns:
        tokens = tokenize(pattern, variables)
        if has_variables(tokens):
            return None
        if ignore_case:
            tokens = tuple(t.lower() if isinstance(t, str) else t for t in tokens)
        if all(isinstance(t, str) for t in tokens):
            literals.add("".join(tokens))  # type: ignore[arg-type]  # all str: checked on the line above
            continue
        matcher = glob_matcher(tokens, False, resource and pattern.startswith("arn:"))
        prefix = tokens[0] if isinstance(tokens[0], str) else ""
        suffix = tokens[-1] if isinstance(tokens[-1], str) else ""
        guarded.append((prefix, suffix, matcher))
    return CompiledPatterns(frozenset(literals), tuple(guarded))


@lru_cache(maxsize=8192)
def _action_matcher(pattern: str) -> Glob:
    return glob_matcher(tokenize(pattern, False), True, False)


def action_matches(pattern: str, action: str) -> bool:
    """Actions match case-insensitively, with ``*`` and ``?``, and never use variables."""
    return _action_matcher(pattern).matches(action)


def arn_matches(pattern: str, value: str, lookup: Lookup, *, variables: bool) -> bool:
    """``ArnLike``/``ArnEquals``: each of the six colon-delimited parts matched on its own."""
    tokens = resolve(tokenize(pattern, variables), lookup)
    if tokens is None:
        return False
    # Rebuild the resolved pattern with wildcards as markers, then split on literal colons.
    segments: list[list[Token]] = [[]]
    for tok in tokens:
        if isinstance(tok, str):
            pieces = tok.split(":")
            for j, piece in enumerate(pieces):
                if j:
                    if len(segments) < 6:
                        segments.append([])
                    else:
                        segments[-1].append(":")
                if piece:
                    segments[-1].append(piece)
        else:
            segments[-1].append(tok)
    value_parts = value.split(":", 5)
    if len(segments) != 6 or len(value_parts) != 6:
        return False
    return all(
        glob_matcher(tuple(seg), False, False).matches(part)
        for seg, part in zip(segments, value_parts, strict=True)
    )
