"""The local AWS's allowed requests, and the policy statement that let each one through.

:class:`AllowedLog` is where the stack keeps them: ``allowed.jsonl`` in the stack's state
directory, one line per distinct (owner, action, resource, policy, statement), written the first
time the local AWS allows it. Every later request that matches a line costs one set lookup, so
the log can sit on every request; the lines say which grants the stack's work used, not how
often (:func:`read_allowed` reads them back; :mod:`devtools.deploy.exercised` turns them into
the report of unexercised grants).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from devtools.local.jsonl import append_record, read_records

__all__ = ["ALLOWED_LOG", "Allowed", "AllowedLog", "read_allowed"]

#: The allowed-requests log's file name in the stack's state directory.
ALLOWED_LOG = "allowed.jsonl"


@dataclass(frozen=True)
class Allowed:
    """One allowed (action, resource) and what allowed it.

    ``layer`` is ``identity`` when one of the caller's identity policies allowed it (then
    ``owner`` is the role or user holding that policy), ``resource`` when the resource's own
    policy did alone (then ``owner`` is the resource). ``policy`` is an inline policy's name, a
    managed policy's ARN, or the resource policy's description; ``statement`` its ``Sid``, else
    its index in the document.
    """

    principal: str
    action: str
    resource: str
    layer: str
    owner: str
    policy: str
    statement: str | int

    def key(self) -> tuple[str, str, str, str, str, str | int]:
        """What makes two allowed requests the same line (the session a role signed with does not)."""
        return self.owner, self.action, self.resource, self.layer, self.policy, self.statement


class AllowedLog:
    """Allowed requests: each distinct one once, in memory and in ``allowed.jsonl``."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self._seen: set[tuple[str, str, str, str, str, str | int]] = set()

    def record(self, allowed: Allowed) -> None:
        key = allowed.key()
        if key in self._seen:  # the common case: no lock, no write
            return
        with self._lock:
            if key in self._seen:
                return
            self._seen.add(key)
            if self.path is not None:
                append_record(self.path, allowed)

    def __len__(self) -> int:
        return len(self._seen)


def read_allowed(state_dir: str | Path) -> list[Allowed]:
    """What a running (or stopped, not yet cleaned) stack allowed, in the order first seen."""
    return read_records(Path(state_dir) / ALLOWED_LOG, Allowed)
