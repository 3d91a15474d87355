"""What goes wrong while rotating a password. Messages name the step and the secret, never a
password (nor a DSN that holds one)."""
from __future__ import annotations

from chalicelib.errors import RdsvendError

__all__ = ["RotationError", "RotationEventError", "RotationStateError", "RotationSecretError",
           "RotationDbError", "RotationTestError", "RotationAwsError"]


class RotationError(RdsvendError):
    """Base class: one rotation step could not do its job. ``step`` and ``secret`` say where."""

    def __init__(self, message: str, *, step: str | None = None, secret: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.step = step
        self.secret = secret

    def line(self) -> str:
        """The one log line: ``rotation <step> failed for <secret>: <message>``."""
        step = self.step or "event"
        where = f" for {self.secret}" if self.secret else ""
        return f"rotation {step} failed{where}: {self.message}"


class RotationEventError(RotationError):
    """The rotation event is malformed: not a mapping, a missing or ill-typed field, too large,
    an unknown step."""


class RotationStateError(RotationError):
    """The secret is not in a state this step may act on: rotation disabled, the version not
    staged AWSPENDING, the secret not declared in the access policy."""


class RotationSecretError(RotationError):
    """A secret's value is not a database secret in the RDS convention."""


class RotationDbError(RotationError):
    """The database refused or failed: a login, a password change, a grant. ``kind`` as the
    canary classifies connection errors: auth, tls, refused, timeout, missing, other."""

    def __init__(self, message: str, *, kind: str = "other", step: str | None = None,
                 secret: str | None = None) -> None:
        super().__init__(message, step=step, secret=secret)
        self.kind = kind


class RotationTestError(RotationError):
    """testSecret: the pending password logs in, but the login does not do what its tier needs."""


class RotationAwsError(RotationError):
    """A Secrets Manager call failed (throttled, denied, unavailable)."""
