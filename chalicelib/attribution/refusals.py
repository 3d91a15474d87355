"""RDS's ``iam-db-auth-error`` log export: its lines, its log groups, its metrics.

RDS writes one line per refused IAM login (AWS documentation, "Troubleshooting for IAM DB
authentication"), for instance::

    [ERROR] Failed to authenticate the connection request for user app because the provided
    token is malformed or otherwise invalid. (Status Code: 400, Error Code: InvalidToken)

Only ``NotAuthorized`` lines name the caller (the signer's ARN, whose session name rdsvend sets
to the caller it vended for); the others name the database user only.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "LOG_TYPE",
    "ERROR_CODES",
    "METRIC_NAMESPACE",
    "Refusal",
    "refusal_line",
    "parse_refusal",
    "log_group_for",
    "failure_metrics",
    "REQUESTS",
    "SUCCESS",
    "FAILURE",
]

LOG_TYPE = "iam-db-auth-error"
METRIC_NAMESPACE = "AWS/RDS"
REQUESTS = "IamDbAuthConnectionRequests"
SUCCESS = "IamDbAuthConnectionSuccess"
FAILURE = "IamDbAuthConnectionFailure"

#: error code -> (status code, what failed, why)
ERROR_CODES: dict[str, tuple[int, str, str]] = {
    "InvalidToken": (400, "authenticate", "because the provided token is malformed or otherwise invalid"),
    "ExpiredToken": (400, "authenticate", "because the token age is longer than 15 minutes"),
    "NotAuthorized": (403, "authorize", "because the IAM policy assumed by the caller '{caller}' is not "
                                        "authorized to perform rds-db:connect on the DB instance"),
    "ThrottlingException": (429, "authorize", "due to IAM DB authentication throttling"),
    "InternalError": (500, "authorize", "due to an internal IAM DB authentication error"),
}

_FAILURE_METRIC = {
    "InvalidToken": "IamDbAuthConnectionFailureInvalidToken",
    "ExpiredToken": "IamDbAuthConnectionFailureInvalidToken",
    "NotAuthorized": "IamDbAuthConnectionFailureInsufficientPermissions",
    "ThrottlingException": "IamDbAuthConnectionFailureThrottling",
    "InternalError": "IamDbAuthConnectionFailureServerError",
}

_LINE = re.compile(
    r".*?\[ERROR\] Failed to (?:authenticate|authorize) the connection request for user (?P<user>\S+?) "
    r"(?P<why>.*)\(Status Code: (?P<status>\d{3}), Error Code: ?(?P<code>[A-Za-z]+)\)\s*$",
    re.DOTALL,
)
_CALLER = re.compile(r"assumed by the caller '(?P<caller>[^']{1,2048})'")
_SESSION_ARN = re.compile(r"arn:[\w-]+:sts::(?P<account>\d{12}):assumed-role/(?P<role>[^/]+)/(?P<session>[\w+=,.@-]+)")


@dataclass(frozen=True)
class Refusal:
    """One refused IAM login, as the log line says it."""

    at: float  # epoch seconds (the log event's timestamp)
    database: str  # the instance or cluster identifier
    db_user: str
    code: str  # InvalidToken, ExpiredToken, NotAuthorized, ThrottlingException, InternalError
    status: int
    caller: str | None = None  # the signer's ARN (NotAuthorized lines only)
    message: str = ""

    @property
    def session(self) -> str | None:
        """The role session name in ``caller`` (who rdsvend vended for), if it is a session ARN."""
        match = _SESSION_ARN.fullmatch(self.caller or "")
        return match["session"] if match else None


def refusal_line(code: str, db_user: str, caller: str | None = None) -> str:
    """The line RDS writes for a login refused with ``code``."""
    status, verb, why = ERROR_CODES[code]
    why = why.format(caller=caller or "unknown")
    return (f"[ERROR] Failed to {verb} the connection request for user {db_user} {why}. "
            f"(Status Code: {status}, Error Code: {code})")


def parse_refusal(message: str, *, at: float, database: str) -> Refusal | None:
    """A :class:`Refusal` from one log line, or ``None`` when it is not such a line."""
    if len(message) > 8192:
        return None
    match = _LINE.match(message)
    if match is None:
        return None
    caller = _CALLER.search(match["why"])
    return Refusal(at=at, database=database, db_user=match["user"], code=match["code"],
                   status=int(match["status"]), caller=caller["caller"] if caller else None,
                   message=message.strip())


def log_group_for(identifier: str, kind: str = "instance") -> str:
    """``/aws/rds/instance/ID/iam-db-auth-error`` (``/aws/rds/cluster/...`` for clusters)."""
    return f"/aws/rds/{'cluster' if kind == 'cluster' else 'instance'}/{identifier}/{LOG_TYPE}"


def failure_metrics(code: str) -> tuple[str, ...]:
    """The ``IamDbAuthConnection*`` metrics one refusal with ``code`` counts in."""
    specific = _FAILURE_METRIC.get(code)
    return (REQUESTS, FAILURE, specific) if specific else (REQUESTS, FAILURE)
