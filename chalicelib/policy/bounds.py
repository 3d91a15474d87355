"""Bound the work of reading a policy before building anything from it.

Building Python objects from YAML costs far more than reading its events: a 3.8 MB file of
250,000 keys once took 10 s and 400 MB before the loader found it wrong. :func:`check_bounds`
streams the document's events through libyaml (PyYAML's pure-Python parser when libyaml is
missing), keeps only counters, and refuses as soon as a limit is crossed, naming the line:

- :data:`MAX_ENTRIES` entries in one mapping or list (the largest real collections are the
  rules and the databases);
- :data:`MAX_NODES` nodes in all (a 10,000-rule policy has about 195,000);
- :data:`MAX_DEPTH` levels of nesting (a policy needs 6);
- aliases and anchors' references, never needed in a policy (no "billion laughs").

A document the parser cannot read is left to the loader, which reports the YAML error.
"""
from __future__ import annotations

import yaml

from chalicelib.errors import PolicyLoadError

__all__ = ["MAX_ENTRIES", "MAX_NODES", "MAX_DEPTH", "check_bounds"]

MAX_ENTRIES = 20_000
MAX_NODES = 250_000
MAX_DEPTH = 16

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def check_bounds(text: str, source: str) -> None:
    """Raise :class:`PolicyLoadError` as soon as ``text`` crosses a limit (module docstring)."""
    loader = _Loader(text)
    nodes = 0
    # One counter per open collection: entries so far (a mapping counts keys and values).
    open_counts: list[int] = []
    open_mapping: list[bool] = []
    try:
        while True:
            try:
                event = loader.get_event()
            except yaml.YAMLError:
                return  # the loader reports it, with its line
            if event is None or isinstance(event, yaml.StreamEndEvent):
                return
            if isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                open_counts.pop()
                open_mapping.pop()
                continue
            if isinstance(event, yaml.AliasEvent):
                raise _refuse("aliases are not allowed in an access policy", event, source)
            if not isinstance(event, (yaml.ScalarEvent, yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                continue
            nodes += 1
            if nodes > MAX_NODES:
                raise _refuse(f"more than {MAX_NODES} YAML nodes", event, source)
            if open_counts:
                open_counts[-1] += 1
                limit = 2 * MAX_ENTRIES if open_mapping[-1] else MAX_ENTRIES
                if open_counts[-1] > limit:
                    kind = "mapping" if open_mapping[-1] else "list"
                    raise _refuse(f"more than {MAX_ENTRIES} entries in one {kind}", event, source)
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                if len(open_counts) >= MAX_DEPTH:
                    raise _refuse(f"nested deeper than {MAX_DEPTH} levels", event, source)
                open_counts.append(0)
                open_mapping.append(isinstance(event, yaml.MappingStartEvent))
    finally:
        loader.dispose()


def _refuse(problem: str, event: yaml.Event, source: str) -> PolicyLoadError:
    mark = event.start_mark
    where = f" at line {mark.line + 1}" if mark is not None else ""
    return PolicyLoadError(f"invalid YAML: {problem}{where}", source=source)
