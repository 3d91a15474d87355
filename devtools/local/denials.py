"""The local AWS's refusals: :class:`Denial` (who, what, on what, which layer), and
:class:`DenialLog`, where the stack keeps them: one log line each, the recent ones in memory,
and ``denials.jsonl`` in the stack's state directory (:func:`read_denials` reads it back, for
tests and for the deployment's least-privilege checks)."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from devtools.local.aws_denials import denied_message
from devtools.local.jsonl import append_record, read_records

__all__ = ["DENIAL_LOG", "TRUST_ACTIONS", "Denial", "DenialLog", "read_denials"]

log = logging.getLogger("devtools.local.authorize")

#: The denial log's file name in the stack's state directory.
DENIAL_LOG = "denials.jsonl"
#: What a role's trust policy decides (lower case).
TRUST_ACTIONS = frozenset({"sts:assumerole", "sts:setsourceidentity", "sts:tagsession"})


@dataclass(frozen=True)
class Denial:
    """One refusal: who, what, on what, which layer (``identity``, ``boundary``, ``scp``,
    ``session``, ``resource``, ``unmapped``) and why (the evaluator's sentence)."""

    principal: str
    action: str
    resource: str
    layer: str
    explicit: bool
    detail: str

    def message(self) -> str:
        """AWS's access-denied sentence for this refusal."""
        layer = "trust" if self.layer == "resource" and self.action.lower() in TRUST_ACTIONS else self.layer
        return denied_message(self.principal, self.action, self.resource, layer, self.explicit)

    def line(self) -> str:
        return (f"local aws denied: principal={self.principal} action={self.action} resource={self.resource} "
                f"layer={self.layer} ({self.detail})")


class DenialLog:
    """Where refusals go: the logger (one line each), memory, and ``denials.jsonl``."""

    def __init__(self, path: str | Path | None = None, keep: int = 1000) -> None:
        self.path = Path(path) if path is not None else None
        self._keep = keep
        self._lock = threading.Lock()
        self.recent: list[Denial] = []

    def record(self, denial: Denial) -> None:
        log.warning("%s", denial.line())
        with self._lock:
            self.recent.append(denial)
            del self.recent[:-self._keep]
            if self.path is not None:
                append_record(self.path, denial)


def read_denials(state_dir: str | Path) -> list[Denial]:
    """Every refusal a running (or stopped, not yet cleaned) stack logged, oldest first."""
    return read_records(Path(state_dir) / DENIAL_LOG, Denial)
