"""YAML as an access policy may be written: PyYAML's safe loader, refusing duplicate keys,
non-scalar keys and aliases (no billion laughs). Errors are PyYAML's ``MarkedYAMLError`` with
the line and column of the problem."""
from __future__ import annotations

from typing import Any

import yaml

__all__ = ["StrictLoader", "strict_yaml_load"]


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and aliases (no billion laughs)."""


def _compose_node(self: StrictLoader, parent: yaml.Node | None, index: int) -> yaml.Node | None:
    if self.check_event(yaml.AliasEvent):
        event = self.peek_event()  # type: ignore[no-untyped-call]  # untyped in types-PyYAML
        raise yaml.MarkedYAMLError(
            problem="aliases are not allowed in an access policy", problem_mark=event.start_mark
        )
    return yaml.SafeLoader.compose_node(self, parent, index)


def _construct_mapping(self: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = self.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
        except TypeError:
            raise yaml.MarkedYAMLError(problem="mapping keys must be plain values",
                                       problem_mark=key_node.start_mark) from None
        if duplicate:
            raise yaml.MarkedYAMLError(problem=f"duplicate key '{key}'",
                                       problem_mark=key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(self, node, deep=deep)


# PyYAML has no hook for refusing aliases but overriding compose_node on a subclass;
# the stubs type the method with the base Composer, hence the ignore.
StrictLoader.compose_node = _compose_node  # type: ignore[method-assign,assignment]  # see the comment above
StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def strict_yaml_load(text: str) -> Any:
    """The one document in ``text``, loaded with :class:`StrictLoader`."""
    return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass, stricter still
