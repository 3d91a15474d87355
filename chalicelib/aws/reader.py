"""Reading a database's account: with one's own credentials, or through a reader role there.

A database in another account than the credentials at hand is read (RDS, its signer role's
IAM policies) through its reader role: ``AssumeRole`` once, the session kept until five
minutes before it expires, at most one ``AssumeRole`` in flight per role. Every read also
knows whose eyes it used (:class:`Vantage`: the account and principal), so a check that
cannot see something can say where it looked.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib.aws.errors import THROTTLING_CODES, aws_error
from chalicelib.clock import SYSTEM_CLOCK, Clock
from chalicelib.errors import RdsvendError

__all__ = ["Vantage", "ReaderRoleError", "ReaderSessions", "CallerVantage", "READER_SESSION_NAME",
           "SearchedAs"]

READER_SESSION_NAME = "rdsvend-reader"
_REFRESH_AHEAD = timedelta(minutes=5)


@dataclass(frozen=True)
class Vantage:
    """Whose eyes an AWS read used: the account and the principal (an ARN)."""

    account: str
    principal: str
    role: str | None = None  # the reader role assumed; None: one's own credentials


class ReaderRoleError(RdsvendError):
    """A reader role could not be assumed (denied, missing, STS failing). Names the role and
    the error code, never a credential."""

    def __init__(self, role_arn: str, code: str, *, caller: Vantage | None = None,
                 what: str = "reader role") -> None:
        self.role_arn = role_arn
        self.code = code
        self.caller = caller
        self.throttled = code in THROTTLING_CODES
        who = f" as {caller.principal} (account {caller.account})" if caller else ""
        super().__init__(f"could not assume {what} '{role_arn}'{who}: {code}")


class CallerVantage:
    """Who one's own credentials are (STS ``GetCallerIdentity``, asked once, retried after a failure)."""

    def __init__(self, sts_client: Callable[[], Any], *, account: str | None = None) -> None:
        self._sts = sts_client
        self._fixed_account = account
        self._vantage: Vantage | None = None
        self._lock = threading.Lock()

    def get(self) -> Vantage:
        """:class:`ReaderRoleError` is never raised here; botocore errors propagate to the caller's
        own classification."""
        with self._lock:
            if self._vantage is None:
                answer = self._sts().get_caller_identity()
                self._vantage = Vantage(account=str(answer["Account"]), principal=str(answer["Arn"]))
            return self._vantage

    def account(self) -> str:
        """The account, from the configured value when there is one (no STS call)."""
        if self._fixed_account:
            return self._fixed_account
        return self.get().account


@dataclass
class _Entry:
    clients: Callable[..., Any]
    vantage: Vantage
    expires: datetime | None


class ReaderSessions:
    """Clients for reader roles: ``clients(role_arn)(service, region)``.

    ``sts_client()`` is the STS client of one's own credentials; ``make_clients(session)``
    turns a boto3 session into a ``(service, region) -> client`` factory (so the vending
    function keeps its retry settings and the canary its short timeouts).
    """

    def __init__(self, sts_client: Callable[[], Any], make_clients: Callable[[Any], Callable[..., Any]], *,
                 session_name: str = READER_SESSION_NAME, clock: Clock = SYSTEM_CLOCK,
                 caller: CallerVantage | None = None, what: str = "reader role") -> None:
        self._what = what
        self._sts = sts_client
        self._make_clients = make_clients
        self._session_name = session_name
        self._clock = clock
        self._caller = caller
        self._entries: dict[str, _Entry] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def __repr__(self) -> str:  # never credentials
        return f"ReaderSessions(roles={sorted(self._entries)})"

    def _fresh(self, entry: _Entry | None) -> bool:
        return entry is not None and (entry.expires is None or entry.expires - self._clock.now() > _REFRESH_AHEAD)

    def _entry(self, role_arn: str) -> _Entry:
        entry = self._entries.get(role_arn)
        if self._fresh(entry):
            return entry  # type: ignore[return-value]  # _fresh() checked it is not None
        with self._guard:
            lock = self._locks.setdefault(role_arn, threading.Lock())
        with lock:
            entry = self._entries.get(role_arn)
            if self._fresh(entry):
                return entry  # type: ignore[return-value]  # _fresh() checked it is not None
            entry = self._assume(role_arn)
            self._entries[role_arn] = entry
            return entry

    def _assume(self, role_arn: str) -> _Entry:
        import boto3

        try:
            answer = self._sts().assume_role(RoleArn=role_arn, RoleSessionName=self._session_name)
            creds = answer["Credentials"]
        except (KeyError, TypeError):
            raise ReaderRoleError(role_arn, "MalformedAnswer", what=self._what) from None
        except Exception as exc:
            error = aws_error(exc)
            if error is None:
                raise
            raise ReaderRoleError(role_arn, error.code, caller=self._caller_or_none(), what=self._what) from None
        session = boto3.session.Session(aws_access_key_id=creds["AccessKeyId"],
                                        aws_secret_access_key=creds["SecretAccessKey"],
                                        aws_session_token=creds.get("SessionToken"))
        principal = str((answer.get("AssumedRoleUser") or {}).get("Arn") or role_arn)
        vantage = Vantage(account=role_arn.split(":", 5)[4], principal=principal, role=role_arn)
        return _Entry(self._make_clients(session), vantage, _expiry(creds.get("Expiration")))

    def _caller_or_none(self) -> Vantage | None:
        if self._caller is None:
            return None
        try:
            return self._caller.get()
        except Exception:  # noqa: BLE001 - naming the caller is a nicety; the role error stands
            return None

    def clients(self, role_arn: str) -> Callable[..., Any]:
        """``(service, region) -> client`` with the role's credentials; :class:`ReaderRoleError`."""
        return self._entry(role_arn).clients

    def vantage(self, role_arn: str) -> Vantage:
        return self._entry(role_arn).vantage


def _expiry(value: Any) -> datetime | None:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if not isinstance(value, datetime):
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)


@dataclass(frozen=True)
class SearchedAs:
    """Where a read looked: whose eyes (``vantage``) and where the thing is declared to be
    (``expected_account``). Every check that could not see a resource says this, so the
    operator knows whether the thing is missing or was looked for in the wrong place."""

    vantage: Vantage | None
    expected_account: str | None = None
    what: str = "the database"
    unassumable_role: str | None = None  # the reader role that should have been used and could not be

    @property
    def elsewhere(self) -> bool:
        """The read used another account than the one the thing is declared in."""
        return (self.vantage is not None and self.expected_account is not None
                and self.vantage.account != self.expected_account)

    def __str__(self) -> str:
        if self.vantage is None:
            return "could not tell which account was searched (STS GetCallerIdentity failed)"
        text = f"searched account {self.vantage.account} as {self.vantage.principal}"
        if self.elsewhere:
            text += f"; {self.what} is declared in account {self.expected_account}"
        return text

    @property
    def advice(self) -> str | None:
        """What to change when the read looked in another account, else None."""
        if not self.elsewhere:
            return None
        if self.unassumable_role and self.vantage is not None:
            return (f"let {self.vantage.principal} assume {self.unassumable_role} (the role's trust policy, and "
                    "sts:AssumeRole in the caller's own policies), or run with credentials that can read account "
                    f"{self.expected_account}")
        return (f"run with credentials that can read account {self.expected_account} (the operator's: "
                "locally, rdsvend local env --as operator), or set reader_role (or "
                "defaults.reader_role_name) for the database in the access policy")
