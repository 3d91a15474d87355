"""``*`` and ``?`` patterns, compiled once. Case-sensitive, anchored, nothing else special.

``compile_pattern(p).matches(value)`` says whether all of ``value`` matches ``p`` (cached);
matching is linear in the value's length whatever the pattern (:mod:`chalicelib.wildcard`).
"""
from __future__ import annotations

from chalicelib.wildcard import glob as compile_pattern

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
