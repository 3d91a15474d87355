"""``*`` and ``?`` patterns, compiled once. Case-sensitive, anchored, nothing else special."""
from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["compile_pattern", "has_wildcard", "literal_prefix"]

WILDCARDS = frozenset("*?")


def has_wildcard(pattern: str) -> bool:
    return any(ch in WILDCARDS for ch in pattern)


def literal_prefix(pattern: str) -> str:
    """The part of ``pattern`` before its first wildcard."""
    for i, ch in enumerate(pattern):
        if ch in WILDCARDS:
            return pattern[:i]
    return pattern


@lru_cache(maxsize=65536)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    parts = []
    for ch in pattern:
        if ch == "*":
            parts.append(".*")
        elif ch == "?":
            parts.append(".")
        else:
            parts.append(re.escape(ch))
    return re.compile("".join(parts), re.DOTALL)
