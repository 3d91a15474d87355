"""How much an access policy may hold, checked while it is read (never after building it).

A policy is read in one pass over libyaml's events (:mod:`chalicelib.policy.strict_yaml`),
which refuses as soon as a limit is crossed, naming the line:

- :data:`MAX_ENTRIES` entries in one mapping or list (the largest real collections are the
  rules and the databases);
- :data:`MAX_NODES` nodes in all (a 10,000-rule policy has about 195,000);
- :data:`MAX_DEPTH` levels of nesting (a policy needs 6);
- :data:`MAX_SCALAR_CHARS` characters in one value (the longest real ones, principal ARN
  patterns, stay under 1,200);
- integers of more than :data:`~chalicelib.policy.strict_yaml.MAX_INTEGER_DIGITS` digits are
  refused by the field that holds them;
- aliases and anchors' references, never needed in a policy (no "billion laughs").
"""
from __future__ import annotations

from chalicelib.policy.strict_yaml import YamlLimits

__all__ = ["MAX_ENTRIES", "MAX_NODES", "MAX_DEPTH", "MAX_SCALAR_CHARS", "POLICY_LIMITS"]

MAX_ENTRIES = 20_000
MAX_NODES = 250_000
MAX_DEPTH = 16
MAX_SCALAR_CHARS = 4096

POLICY_LIMITS = YamlLimits(max_entries=MAX_ENTRIES, max_nodes=MAX_NODES, max_depth=MAX_DEPTH,
                           max_scalar_chars=MAX_SCALAR_CHARS)
