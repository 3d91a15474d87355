"""The access policy: its model, its YAML loader, where it is read from, and the decision."""
from __future__ import annotations

from chalicelib.policy.model import (
    AccessPolicy,
    CanarySettings,
    Conditions,
    Database,
    DbUser,
    Rule,
)

__all__ = ["AccessPolicy", "CanarySettings", "Conditions", "Database", "DbUser", "Rule"]
