"""Which declared names a ``*``/``?`` pattern matches, without testing every name per rule.

A policy may declare 20,000 users and 12,000 rules: testing each rule's patterns against every
name is quadratic (minutes). :class:`NameIndex` answers a literal pattern with one set lookup,
narrows a wildcard pattern to the names that share its literal prefix or suffix (binary search
over the names and over the names reversed, the smaller range wins) and remembers every answer,
so the many rules that repeat a pattern cost one lookup each.
"""
from __future__ import annotations

import bisect
from collections.abc import Iterable

from chalicelib.policy.patterns import compile_pattern, has_wildcard, literal_prefix

__all__ = ["NameIndex"]

_HIGHEST = "\U0010ffff"


def _literal_suffix(pattern: str) -> str:
    return literal_prefix(pattern[::-1])[::-1]


class NameIndex:
    """The names of one collection (databases, or one database's users)."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = frozenset(names)
        self._sorted = sorted(self.names)
        self._reversed = sorted(name[::-1] for name in self.names)
        self._answers: dict[str, tuple[str, ...]] = {}

    def __len__(self) -> int:
        return len(self.names)

    def matching(self, pattern: str) -> tuple[str, ...]:
        """Every name ``pattern`` matches, in sorted order."""
        answer = self._answers.get(pattern)
        if answer is None:
            answer = self._answers[pattern] = self._match(pattern)
        return answer

    def any_match(self, pattern: str) -> bool:
        if not has_wildcard(pattern):
            return pattern in self.names
        return bool(self.matching(pattern))

    def _match(self, pattern: str) -> tuple[str, ...]:
        if not has_wildcard(pattern):
            return (pattern,) if pattern in self.names else ()
        prefix, suffix = literal_prefix(pattern), _literal_suffix(pattern)
        by_prefix = self._range(self._sorted, prefix)
        by_suffix = self._range(self._reversed, suffix[::-1])
        if len(by_suffix) < len(by_prefix):
            candidates = sorted(name[::-1] for name in by_suffix)
        else:
            candidates = by_prefix
        glob = compile_pattern(pattern)
        return tuple(name for name in candidates if glob.matches(name))

    @staticmethod
    def _range(names: list[str], start: str) -> list[str]:
        if not start:
            return names
        low = bisect.bisect_left(names, start)
        high = bisect.bisect_left(names, start + _HIGHEST, low)
        return names[low:high]
