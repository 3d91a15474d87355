"""Grants as values: states, what each action may do from each state, who may see a grant.

Pure: no clock of its own (every question takes ``now``), no AWS. A stored state is what the
last write said; the *effective* state also knows the time: an approved grant past its end, or
a request nobody decided in :data:`PENDING_SECONDS`, is ``expired`` whether or not the sweep
has written so yet (the check at use never waits for DynamoDB's TTL deletion).
"""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from chalicelib.decision import principal_matches
from chalicelib.grants.errors import GrantConflictError, GrantNotFoundError, OwnGrantError
from chalicelib.identity import CallerIdentity
from chalicelib.policy.model import AccessPolicy

__all__ = ["State", "Action", "STATES", "Grant", "PENDING_SECONDS", "MAX_REASON_BYTES", "GRANT_ID",
           "new_grant_id", "check_action", "visible_to", "may_decide", "require_visible", "isoformat"]

State = Literal["pending", "approved", "denied", "revoked", "expired"]
Action = Literal["approve", "deny", "revoke", "expire"]
STATES: tuple[State, ...] = ("pending", "approved", "denied", "revoked", "expired")
#: A request nobody approved or denied within this many seconds expires.
PENDING_SECONDS = 86400
#: The longest reason, in UTF-8 bytes.
MAX_REASON_BYTES = 1024
GRANT_ID = re.compile(r"g-[0-9a-f]{20}")

#: action -> the effective states it applies to
_FROM: dict[Action, tuple[State, ...]] = {
    "approve": ("pending",),
    "deny": ("pending",),
    "revoke": ("pending", "approved"),
    "expire": ("expired",),  # the sweep writes down what time has already decided
}


def new_grant_id() -> str:
    return "g-" + secrets.token_hex(10)


def isoformat(at: datetime | None) -> str | None:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ") if at is not None else None


@dataclass(frozen=True)
class Grant:
    id: str
    database: str
    db_user: str
    requester: str  # the canonical principal that asked
    rule: str  # the grant: required rule it was asked under
    reason: str
    duration_seconds: int
    state: State  # as stored
    created_at: datetime
    pending_until: datetime
    approver: str | None = None  # who approved or denied
    decided_at: datetime | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    revoked_by: str | None = None

    @property
    def subject(self) -> str:
        """The (database, db user) sessions end for, as one key."""
        return f"{self.database}/{self.db_user}"

    def state_at(self, now: datetime) -> State:
        """The effective state: time-expired grants are ``expired`` before the sweep writes it."""
        if self.state == "pending" and now >= self.pending_until:
            return "expired"
        if self.state == "approved" and self.ends_at is not None and now >= self.ends_at:
            return "expired"
        return self.state

    def live_at(self, now: datetime) -> bool:
        """Approved and not ended: a token may be vended under it."""
        return self.state_at(now) == "approved"

    def approved(self, approver: str, now: datetime) -> Grant:
        return replace(self, state="approved", approver=approver, decided_at=now, starts_at=now,
                       ends_at=now + timedelta(seconds=self.duration_seconds))

    def to_dict(self, now: datetime) -> dict[str, Any]:
        """The grant as ``GET /v1/grants`` and ``rdsvend grant --json`` show it."""
        return {
            "id": self.id, "state": self.state_at(now), "database": self.database, "db_user": self.db_user,
            "requester": self.requester, "approver": self.approver, "reason": self.reason,
            "duration_seconds": self.duration_seconds, "rule": self.rule,
            "requested_at": isoformat(self.created_at), "starts_at": isoformat(self.starts_at),
            "ends_at": isoformat(self.ends_at), "revoked_by": self.revoked_by,
        }


def check_action(grant: Grant, action: Action, actor: str, now: datetime) -> None:
    """Raise unless ``actor`` may do ``action`` to ``grant`` at ``now`` (visibility is checked
    before: see :func:`visible_to`)."""
    if action in ("approve", "deny") and actor == grant.requester:
        raise OwnGrantError()
    state = grant.state_at(now)
    if state not in _FROM[action] or (action == "expire" and grant.state == "expired"):
        raise GrantConflictError(grant.id, state, action)


def may_decide(grant: Grant, identity: CallerIdentity, policy: AccessPolicy) -> bool:
    """Whether ``identity`` is an approver of the rule ``grant`` was asked under (as the policy is now)."""
    rule = policy.rule(grant.rule)
    return rule is not None and rule.grant_required and principal_matches(rule.approvers, identity)


def visible_to(grant: Grant, identity: CallerIdentity, policy: AccessPolicy) -> bool:
    """Only its requester and the approvers of its rule ever see a grant."""
    return grant.requester == identity.principal or may_decide(grant, identity, policy)


def require_visible(grant: Grant | None, identity: CallerIdentity, policy: AccessPolicy, grant_id: str) -> Grant:
    """``grant`` when ``identity`` may see it; an unknown id and someone else's answer the same."""
    if grant is None or not visible_to(grant, identity, policy):
        raise GrantNotFoundError(grant_id)
    return grant
