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
    "FIXES",
    "enable_export_command",
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
#: the whole reason of a NotAuthorized line: only there, and only in this form, is a caller named
#: (a caller quoted anywhere else, say inside a crafted user name, is not RDS naming one)
_NOT_AUTHORIZED_WHY = re.compile(
    r"because the IAM policy assumed by the caller '(?P<caller>[^'\s]{1,2048})' is not authorized to perform "
    r"rds-db:connect on the DB instance\.?")
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
    caller = None
    if match["code"] == "NotAuthorized":
        why = _NOT_AUTHORIZED_WHY.fullmatch(match["why"].strip())
        caller = why["caller"] if why else None
    return Refusal(at=at, database=database, db_user=match["user"], code=match["code"],
                   status=int(match["status"]), caller=caller, message=message.strip())


def log_group_for(identifier: str, kind: str = "instance") -> str:
    """``/aws/rds/instance/ID/iam-db-auth-error`` (``/aws/rds/cluster/...`` for clusters)."""
    return f"/aws/rds/{'cluster' if kind == 'cluster' else 'instance'}/{identifier}/{LOG_TYPE}"


def failure_metrics(code: str) -> tuple[str, ...]:
    """The ``IamDbAuthConnection*`` metrics one refusal with ``code`` counts in."""
    specific = _FAILURE_METRIC.get(code)
    return (REQUESTS, FAILURE, specific) if specific else (REQUESTS, FAILURE)


#: error code -> (the reason in words, what to change)
FIXES: dict[str, tuple[str, str]] = {
    "ExpiredToken": ("the token was used more than 15 minutes after it was signed",
                     "refresh tokens earlier (never reuse one older than 15 minutes); use the rdsvend client "
                     "(TokenClient, rdsvend exec / passexec), which refreshes them before they expire"),
    "InvalidToken": ("the token was malformed, cut short, altered, or signed for another host, port, region or user",
                     "pass the token unchanged (no quoting or truncation) and sign it for the exact endpoint and "
                     "user you connect with"),
    "NotAuthorized": ("the signer may not rds-db:connect as this database user",
                      "give the signer's permission back: rds-db:connect on the dbuser ARN (identity policy, "
                      "permissions boundary, SCPs; see iam.signer_allows and org.scp_allows)"),
    "ThrottlingException": ("more than 200 new IAM logins per second reached the instance",
                            "pool connections (or use RDS Proxy) and reuse tokens instead of a new login per request"),
    "InternalError": ("RDS could not check the token", "retry; if it persists, ask AWS support"),
}


def enable_export_command(identifier: str, kind: str = "instance") -> str:
    """The AWS CLI command that turns on the ``iam-db-auth-error`` export of an instance or cluster."""
    kind = "cluster" if kind == "cluster" else "instance"
    return (f"aws rds modify-db-{kind} --db-{kind}-identifier {identifier} "
            f"--cloudwatch-logs-export-configuration '{{\"EnableLogTypes\":[\"{LOG_TYPE}\"]}}'")
