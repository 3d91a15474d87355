"""The mechanics of the least-privilege proof (tests/e2e/test_least_privilege_local.py).

- :class:`Step`: one piece of the local stage's normal work, named, that raises when the work
  did not succeed (a refusal, an error, a canary target not green);
- :class:`WorkLog`: runs steps and keeps, per step, the lines the local AWS's allowed-requests
  log gained while it ran (each grant is logged the first time it is used, so a grant belongs to
  the first step that used it), and how long each step took;
- :func:`without_statement`: one statement taken out of a deployed role's inline policy with
  ``PutRolePolicy`` (``DeleteRolePolicy`` when it was the only one) for the length of a block, and
  the document put back as it was afterwards.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools.local.allowed import Allowed, read_allowed
from devtools.local.deployment import role_policy_changed

__all__ = ["Step", "StepFailedError", "WorkLog", "statement_key", "without_statement"]


class StepFailedError(AssertionError):
    """A step of the work did not do what it should (what a user would notice, in one line)."""


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[], None]


def statement_key(line: Allowed) -> tuple[str, str, str]:
    """(role ARN, policy name, Sid or index) of the identity statement that allowed ``line``."""
    return line.owner, line.policy, str(line.statement)


@dataclass
class WorkLog:
    """The steps run so far and the grants each one used first (see the module docstring)."""

    state_dir: Path
    used: dict[str, list[Allowed]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    def run(self, steps: Sequence[Step]) -> None:
        for step in steps:
            before = len(read_allowed(self.state_dir))
            began = time.monotonic()
            try:
                step.run()
            except Exception as exc:  # noqa: BLE001 - every step's failure is reported, the rest still run
                self.failures[step.name] = f"{type(exc).__name__}: {str(exc)[:500]}"
            self.seconds[step.name] = time.monotonic() - began
            self.used[step.name] = read_allowed(self.state_dir)[before:]

    def steps_using(self, role: str, policy: str, sid: str | int) -> list[str]:
        """The steps that used the statement first, quickest first."""
        key = (role, policy, str(sid))
        found = [name for name, lines in self.used.items() if any(statement_key(a) == key for a in lines)]
        return sorted(found, key=lambda name: self.seconds[name])

    def actions_used(self, role: str, policy: str, sid: str | int) -> set[str]:
        key = (role, policy, str(sid))
        return {a.action for lines in self.used.values() for a in lines if statement_key(a) == key}


def _label(statement: Mapping[str, Any], index: int) -> str:
    return str(statement.get("Sid") or index)


@contextmanager
def without_statement(iam: Any, role_name: str, policy_name: str, sid: str | int) -> Iterator[dict[str, Any]]:
    """The role's inline policy without statement ``sid`` (its Sid, else its index) inside the
    block (deleted when it was the only one), the original document put back afterwards
    (:func:`devtools.local.deployment.role_policy_changed`). Yields the statement taken out."""
    removed: list[dict[str, Any]] = []

    def change(document: dict[str, Any]) -> dict[str, Any] | None:
        listed = document["Statement"] if isinstance(document["Statement"], list) else [document["Statement"]]
        removed.extend(s for i, s in enumerate(listed) if _label(s, i) == str(sid))
        if len(removed) != 1:
            raise LookupError(f"policy '{policy_name}' of role '{role_name}' has no single statement '{sid}'")
        kept = [s for i, s in enumerate(listed) if _label(s, i) != str(sid)]
        return {**document, "Statement": kept} if kept else None

    with role_policy_changed(iam, role_name, policy_name, change):
        yield removed[0]
