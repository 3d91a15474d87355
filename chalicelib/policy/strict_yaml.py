"""YAML as an access policy may be written, read in one pass over libyaml's events.

PyYAML's loaders compose a tree of node objects and then construct values from it in Python:
for a 2 MB policy that is most of the load time, and the pure-Python parser is slower still.
:func:`strict_yaml_load` reads the events of libyaml's C parser (PyYAML's pure-Python parser
only where libyaml is missing) and builds the values directly, in time linear in the document,
checking as it goes:

- the :class:`YamlLimits` (entries in one mapping or list, nodes in all, nesting depth),
  refused as soon as one is crossed, before more is built;
- no aliases or anchors' references (no "billion laughs"), no merge keys, no tags beyond
  YAML's standard scalar ones;
- no duplicate keys, only plain values as keys.

Plain scalars are resolved as PyYAML's safe loader resolves them (null, booleans, integers,
floats, timestamps, else text). An integer longer than :data:`MAX_INTEGER_DIGITS` digits is
not converted (Python refuses past 4,300 digits, and converting costs time quadratic in the
length), and a scalar longer than the limits' ``max_scalar_chars`` is not kept whole: each
becomes an :class:`OversizedValue`, a value no field accepts, so the policy loader refuses it
naming the field, as it refuses any value of the wrong kind.

Every problem is a ``yaml.MarkedYAMLError`` with the line and column.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

__all__ = ["strict_yaml_load", "YamlLimits", "OversizedValue", "MAX_INTEGER_DIGITS"]

#: No policy number needs more (ports, seconds, counts); larger ones stay unconverted.
MAX_INTEGER_DIGITS = 18

_Parser: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TAG = "tag:yaml.org,2002:"
_STR, _INT = _TAG + "str", _TAG + "int"
_SCALAR_TAGS = {_TAG + name for name in ("str", "int", "float", "bool", "null", "timestamp")}
_RESOLVERS = yaml.resolver.Resolver.yaml_implicit_resolvers
_DIGITS = re.compile(r"[0-9a-fA-F]")


@dataclass(frozen=True)
class YamlLimits:
    """How much one document may hold (None: no limit)."""

    max_entries: int | None = None
    max_nodes: int | None = None
    max_depth: int | None = None
    max_scalar_chars: int | None = None


class OversizedValue:
    """A scalar over a bound, kept as its first characters: neither a number nor a string to
    any field, so the field that holds it refuses it by name. ``what`` says which bound."""

    __slots__ = ("text", "what")

    def __init__(self, text: str, what: str) -> None:
        self.text = text[:24] + "..."
        self.what = what

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"OversizedValue({self.text!r}, {self.what!r})"

    def __hash__(self) -> int:
        return hash(self.text)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OversizedValue) and (other.text, other.what) == (self.text, self.what)


class _Constructor(yaml.constructor.SafeConstructor):
    """PyYAML's own scalar constructors (booleans, numbers, timestamps), used on one node."""


_CONSTRUCTOR = _Constructor()


def _refuse(problem: str, event: Any) -> yaml.MarkedYAMLError:
    return yaml.MarkedYAMLError(problem=problem, problem_mark=event.start_mark)


def _plain_tag(value: str) -> str:
    for tag, regexp in _RESOLVERS.get(value[:1], ()):
        if regexp.match(value):
            return str(tag)
    return _STR


def _scalar(event: Any) -> Any:
    value: str = event.value
    tag = event.tag
    if tag is None and value[:1] not in _RESOLVERS:  # most scalars: text
        return value
    if tag in (None, "!"):
        tag = _plain_tag(value) if event.implicit[0] and tag is None else _STR
    elif tag not in _SCALAR_TAGS:
        raise _refuse(f"tag '{str(tag)[:40]}' is not allowed in an access policy", event)
    if tag == _STR:
        return value
    if tag == _INT and len(_DIGITS.findall(value[:MAX_INTEGER_DIGITS * 4])) > MAX_INTEGER_DIGITS:
        return OversizedValue(value, f"a number of more than {MAX_INTEGER_DIGITS} digits")
    if tag not in _SCALAR_TAGS:  # merge keys, "=" values
        raise _refuse(f"'{value[:40]}' is not allowed in an access policy", event)
    node = yaml.ScalarNode(tag, value, event.start_mark, event.end_mark)
    return _CONSTRUCTOR.construct_object(node, deep=True)


class _Builder:
    """The values under construction, with the limits' counters."""

    def __init__(self, limits: YamlLimits) -> None:
        self.limits = limits
        self.nodes = 0
        self.stack: list[tuple[dict[Any, Any] | list[Any], list[Any]]] = []  # (collection, [pending key])
        self.root: list[Any] = []

    def add(self, value: Any, event: Any) -> None:
        self.nodes += 1
        if self.limits.max_nodes is not None and self.nodes > self.limits.max_nodes:
            raise _refuse(f"more than {self.limits.max_nodes} YAML nodes", event)
        if not self.stack:
            self.root.append(value)
            return
        collection, pending = self.stack[-1]
        limit = self.limits.max_entries
        if isinstance(collection, list):
            if limit is not None and len(collection) >= limit:
                raise _refuse(f"more than {limit} entries in one list", event)
            collection.append(value)
        elif not pending:
            self._key(collection, value, event)
            pending.append(value)
        else:
            collection[pending.pop()] = value

    def _key(self, mapping: dict[Any, Any], key: Any, event: Any) -> None:
        if isinstance(key, (dict, list)):
            raise _refuse("mapping keys must be plain values", event)
        if key in mapping:
            raise _refuse(f"duplicate key '{str(key)[:80]}'", event)
        limit = self.limits.max_entries
        if limit is not None and len(mapping) >= limit:
            raise _refuse(f"more than {limit} entries in one mapping", event)

    def open(self, collection: dict[Any, Any] | list[Any], event: Any) -> None:
        if isinstance(event, yaml.MappingStartEvent) and self.stack and isinstance(self.stack[-1][0], dict) \
                and not self.stack[-1][1]:
            raise _refuse("mapping keys must be plain values", event)
        if event.tag not in (None, "!", _TAG + "map", _TAG + "seq"):
            raise _refuse(f"tag '{str(event.tag)[:40]}' is not allowed in an access policy", event)
        self.add(collection, event)
        depth = self.limits.max_depth
        if depth is not None and len(self.stack) >= depth:
            raise _refuse(f"nested deeper than {depth} levels", event)
        self.stack.append((collection, []))


def strict_yaml_load(text: str, limits: YamlLimits | None = None) -> Any:
    """The one document in ``text`` (None for an empty one), within ``limits``."""
    builder = _Builder(limits or YamlLimits())
    scalar_chars = builder.limits.max_scalar_chars
    parser = _Parser(text)
    try:
        while True:
            event = parser.get_event()
            kind = type(event)
            if kind is yaml.ScalarEvent:  # most events: checked first
                if scalar_chars is not None and len(event.value) > scalar_chars:
                    builder.add(OversizedValue(event.value, f"a value of more than {scalar_chars} characters"), event)
                else:
                    builder.add(_scalar(event), event)
            elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
                builder.stack.pop()
            elif kind is yaml.MappingStartEvent:
                builder.open({}, event)
            elif kind is yaml.SequenceStartEvent:
                builder.open([], event)
            elif kind is yaml.AliasEvent:
                raise _refuse("aliases are not allowed in an access policy", event)
            elif kind is yaml.DocumentStartEvent and builder.root:
                raise _refuse("expected a single document", event)
            elif event is None or kind is yaml.StreamEndEvent:
                break
    finally:
        parser.dispose()
    return builder.root[0] if builder.root else None
