"""What a grant request, decision or revoke tells a caller when it does not go through."""
from __future__ import annotations

from chalicelib.errors import CallerError

__all__ = ["GrantNotFoundError", "GrantConflictError", "OwnGrantError"]


class GrantNotFoundError(CallerError):
    """No such grant, or one the caller may not see: both answer the same."""

    status = 404
    code = "not_found"
    public_message = "no such grant"

    def __init__(self, grant_id: str = "") -> None:
        super().__init__(self.public_message)
        self.grant_id = grant_id

    @property
    def caller_message(self) -> str:
        return self.public_message


class GrantConflictError(CallerError):
    """The grant is no longer in a state the action applies to (already decided, ended)."""

    status = 409
    code = "conflict"

    def __init__(self, grant_id: str, state: str, action: str) -> None:
        super().__init__(f"grant '{grant_id}' is {state}: it cannot be {_PAST[action]}")
        self.grant_id = grant_id
        self.state = state
        self.action = action


class OwnGrantError(CallerError):
    """A requester tried to approve or deny its own grant."""

    status = 403
    code = "forbidden"
    public_message = "a grant cannot be approved or denied by its requester"


_PAST = {"approve": "approved", "deny": "denied", "revoke": "revoked", "expire": "expired"}
