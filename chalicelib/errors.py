"""Every exception rdsvend raises on purpose.

Two channels, as in Vault: a caller's fault or a denial is a :class:`CallerError`
that maps to one status and code; anything else is an internal error that a caller
only ever sees as a bare 500. Messages are lowercase, name the field, quote the value
and never carry a token, a signed request or credentials.
"""
from __future__ import annotations

__all__ = [
    "RdsvendError",
    "CallerError",
    "InvalidRequestError",
    "UnauthenticatedError",
    "ForbiddenError",
    "RateLimitedError",
    "UpstreamUnavailableError",
    "PolicyLoadError",
    "PolicyUnavailableError",
    "PolicyPublishError",
    "IamPolicyError",
    "IamFetchError",
    "IdentityProofError",
    "ProbeError",
    "CanaryRunError",
    "SignatureError",
    "PostgresError",
]


class RdsvendError(Exception):
    """Base class of every rdsvend exception."""


class CallerError(RdsvendError):
    """A request rdsvend answers with a 4xx/503: the caller's fault, a denial or a refusal."""

    status: int = 400
    code: str = "invalid_request"
    #: What the caller is told. Never names a rule or a secret.
    public_message: str = "invalid request"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.public_message)

    @property
    def caller_message(self) -> str:
        return str(self)


class InvalidRequestError(CallerError):
    """The request body or payload is malformed: not JSON, wrong shape, a bad field."""

    status = 400
    code = "invalid_request"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class UnauthenticatedError(CallerError):
    """No caller identity could be established."""

    status = 401
    code = "unauthenticated"
    public_message = "no caller identity"


class ForbiddenError(CallerError):
    """The caller may not have what it asked for.

    ``reason`` is for the audit log only (``denied``, ``unknown_database``, ``policy_unavailable``
    ...); every forbidden answer looks the same to the caller.
    """

    status = 403
    code = "forbidden"
    public_message = "not allowed"

    def __init__(self, reason: str, rule: str | None = None) -> None:
        super().__init__(self.public_message)
        self.reason = reason
        self.rule = rule

    @property
    def caller_message(self) -> str:
        return self.public_message


class RateLimitedError(CallerError):
    """The caller is over its rate."""

    status = 429
    code = "rate_limited"
    public_message = "rate limited, retry later"

    def __init__(self, retry_after: int = 1) -> None:
        super().__init__(self.public_message)
        self.retry_after = retry_after


class UpstreamUnavailableError(CallerError):
    """STS or RDS failed, timed out or throttled; the caller may retry."""

    status = 503
    code = "upstream_unavailable"
    public_message = "an upstream AWS service is unavailable, retry later"

    def __init__(self, service: str, retry_after: int = 2, detail: str = "") -> None:
        super().__init__(self.public_message)
        self.service = service
        self.retry_after = retry_after
        self.detail = detail

    @property
    def caller_message(self) -> str:
        return self.public_message


class PolicyLoadError(RdsvendError):
    """The access policy file is invalid. Names the file, the rule and the field."""

    def __init__(
        self,
        message: str,
        *,
        source: str = "<policy>",
        rule: str | None = None,
        field: str | None = None,
    ) -> None:
        self.source = source
        self.rule = rule
        self.field = field
        self.detail = message
        where = [source]
        if rule is not None:
            where.append(f"rule '{rule}'")
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(f"{': '.join([', '.join(where), message])}")


class PolicyUnavailableError(RdsvendError):
    """The access policy could not be fetched (SSM failure, missing file)."""


class PolicyPublishError(RdsvendError):
    """The access policy could not be uploaded: a bad parameter name, too big, SSM refused.

    ``input_error`` is true when the caller's input is at fault (a CLI exits 2), false when
    SSM refused or could not be reached (exit 1).
    """

    def __init__(self, message: str, *, parameter: str = "", input_error: bool = False) -> None:
        self.parameter = parameter
        self.input_error = input_error
        super().__init__(message)


class IamPolicyError(RdsvendError):
    """An IAM policy document is malformed (simulate, evaluator, fetcher)."""

    def __init__(self, message: str, *, source: str = "<policy>") -> None:
        self.source = source
        self.detail = message
        super().__init__(f"{source}: {message}")


class IamFetchError(RdsvendError):
    """A principal's policies or an account's SCPs could not be read (IAM/Organizations error).

    "Could not evaluate", never "denied": callers must not turn it into a decision.
    """

    def __init__(self, message: str, *, service: str = "", code: str = "") -> None:
        super().__init__(message)
        self.service = service
        self.code = code


class IdentityProofError(CallerError):
    """A direct-invoke identity proof is missing, malformed, stale or rejected by STS."""

    status = 401
    code = "unauthenticated"
    public_message = "identity proof rejected"


class ProbeError(RdsvendError):
    """A canary probe could not run: an AWS API error, a timeout, an unreachable endpoint.

    ``cause`` is a short, secret-free description (service, operation, error code).
    """

    def __init__(self, cause: str, *, service: str = "", code: str = "") -> None:
        super().__init__(cause)
        self.cause = cause
        self.service = service
        self.code = code


class CanaryRunError(RdsvendError):
    """The scheduled canary could not do its job: no policy, a broken state table or alert
    topic, or an unexpected failure. Raised after alerting, so the invocation fails.

    ``stage`` is one word (``policy``, ``setup``, ``run``, ``state``, ``alerts``); the
    message is secret-free (it names the setting or the AWS call that failed).
    """

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(f"canary could not run ({stage}): {message}")
        self.stage = stage
        self.detail = message


class SignatureError(RdsvendError):
    """A SigV4 signature (local stack) is missing, malformed, wrong, out of scope or out of time.

    ``reason`` is one short word (``missing``, ``malformed``, ``unknown_key``, ``bad_signature``,
    ``stale``, ``expired``, ``expires_too_long``, ``wrong_service``, ``wrong_region``,
    ``bad_session_token``); ``detail`` a little more. Neither ever holds the signature, the
    secret key or the session token.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class PostgresError(RdsvendError):
    """The local stack's PostgreSQL could not be created, started or stopped."""
