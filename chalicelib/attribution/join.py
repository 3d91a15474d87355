"""Vends and refusals, joined: which vend a refused login's token came from.

A vend is one of the service's audit lines (``"event": "vend"``). A refusal is one line of a
database's ``iam-db-auth-error`` log. They are joined:

- by session (exact): a ``NotAuthorized`` line quotes the signer's session ARN, whose session
  name is the one rdsvend gives the caller it vended for (:func:`signer_session_for`); the
  refusal joins the latest vend before it with that session name, database and db user;
- by database user and time (likely): other lines name only the database user; such a refusal
  joins the latest vend of that (database, db user) before it within the hour (for an
  ``ExpiredToken``, one whose token had expired by then), marked ``"match": "db_user"``.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from chalicelib.attribution.refusals import Refusal
from chalicelib.errors import RdsvendError
from chalicelib.identity import identity_from_arn
from chalicelib.signer.roles import role_session_name_for

__all__ = ["Vend", "vend_from_audit", "signer_session_for", "Entry", "join_events", "GrantEvent",
           "grant_event_from_audit"]

_JOIN_WINDOW = 3600.0


@dataclass(frozen=True)
class Vend:
    """One audit line of a vend decision (allow, deny or error)."""

    at: float
    decision: str
    principal: str | None
    arn: str | None
    database: str | None
    db_user: str | None
    rule: str | None
    reason: str | None
    request_id: str | None
    expires_at: str | None

    @property
    def expires_epoch(self) -> float | None:
        try:
            return datetime.strptime(self.expires_at or "", "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
        except ValueError:
            return None

    @property
    def session(self) -> str | None:
        return signer_session_for(self.arn or self.principal)


def signer_session_for(arn: str | None) -> str | None:
    """The signer role session name rdsvend uses for the caller ``arn`` (None if not a caller ARN)."""
    if not arn:
        return None

    try:
        return role_session_name_for(identity_from_arn(arn))
    except RdsvendError:
        return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def vend_from_audit(record: Mapping[str, Any], at: float) -> Vend | None:
    """A :class:`Vend` from one parsed audit line, or ``None`` when it is not one."""
    if not isinstance(record, Mapping) or record.get("event") != "vend":
        return None
    return Vend(at=at, decision=str(record.get("decision") or ""), principal=_text(record.get("principal")),
                arn=_text(record.get("arn")), database=_text(record.get("database")),
                db_user=_text(record.get("db_user")), rule=_text(record.get("rule")),
                reason=_text(record.get("reason")), request_id=_text(record.get("request_id")),
                expires_at=_text(record.get("expires_at")))


@dataclass(frozen=True)
class GrantEvent:
    """One audit line of a grant (requested, refused, approved, denied, revoked, expired) or of a
    session ended because no live grant remained for its db user."""

    at: float
    event: str  # "grant" or "session_ended"
    action: str  # requested | refused | approved | denied | revoked | expired | ended
    principal: str | None  # who did it (None: time did, or the canary's run)
    database: str | None
    db_user: str | None
    grant_id: str | None = None
    requester: str | None = None
    ends_at: str | None = None
    session_id: str | None = None
    why: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.event, "action": self.action, "principal": self.principal, "grant_id": self.grant_id,
                "requester": self.requester, "ends_at": self.ends_at, "session_id": self.session_id, "why": self.why}


def grant_event_from_audit(record: Mapping[str, Any], at: float) -> GrantEvent | None:
    """A :class:`GrantEvent` from one parsed audit line, or ``None`` when it is not one."""
    if not isinstance(record, Mapping) or record.get("event") not in ("grant", "session_ended"):
        return None
    ended = record.get("event") == "session_ended"
    return GrantEvent(at=at, event=str(record["event"]), action="ended" if ended else str(record.get("action") or ""),
                      principal=_text(record.get("principal")), database=_text(record.get("database")),
                      db_user=_text(record.get("db_user")), grant_id=_text(record.get("grant_id")),
                      requester=_text(record.get("requester")), ends_at=_text(record.get("ends_at")),
                      session_id=_text(str(record.get("session_id") or "")), why=_text(record.get("why")))


@dataclass(frozen=True)
class Entry:
    """One line of ``rdsvend audit``: a vend, or a refusal with the vend it is joined to."""

    kind: str  # "vend", "refusal" or "grant" (grant events and ended sessions)
    at: float
    database: str | None
    db_user: str | None
    vend: Vend | None = None
    refusal: Refusal | None = None
    joined: Vend | None = None
    match: str | None = None  # "session" or "db_user"
    grant: GrantEvent | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "at": _iso(self.at), "database": self.database,
                               "db_user": self.db_user}
        if self.vend is not None:
            v = self.vend
            out.update({"decision": v.decision, "principal": v.principal, "arn": v.arn, "rule": v.rule,
                        "reason": v.reason, "expires_at": v.expires_at, "request_id": v.request_id,
                        "session": v.session})
        if self.grant is not None:
            out.update(self.grant.to_dict())
        if self.refusal is not None:
            r = self.refusal
            out.update({"error_code": r.code, "status": r.status, "caller": r.caller, "session": r.session,
                        "message": r.message, "match": self.match,
                        "vend": None if self.joined is None else {
                            "request_id": self.joined.request_id, "principal": self.joined.principal,
                            "arn": self.joined.arn, "rule": self.joined.rule, "at": _iso(self.joined.at),
                            "expires_at": self.joined.expires_at}})
        return out


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def join_events(vends: Iterable[Vend], refusals: Iterable[Refusal],
                database_names: Mapping[str, str] | None = None,
                grant_events: Iterable[GrantEvent] = ()) -> list[Entry]:
    """Every vend and refusal, oldest first, each refusal joined to its vend when one fits.

    ``database_names`` maps an instance or cluster identifier (what the log names) to the
    access policy's database name (what the audit line names); identity by default.
    """
    names = dict(database_names or {})
    allowed = sorted((v for v in vends if v.decision == "allow"), key=lambda v: v.at)
    entries = [Entry("vend", v.at, v.database, v.db_user, vend=v) for v in vends]
    for r in refusals:
        database = names.get(r.database, r.database)
        joined, match = _find(allowed, r, database)
        entries.append(Entry("refusal", r.at, database, r.db_user, refusal=r, joined=joined, match=match))
    entries.extend(Entry("grant", g.at, g.database, g.db_user, grant=g) for g in grant_events)
    entries.sort(key=lambda e: (e.at, e.kind != "vend"))
    return entries


def _find(allowed: list[Vend], r: Refusal, database: str) -> tuple[Vend | None, str | None]:
    before = [v for v in allowed if v.at <= r.at + 1.0 and v.database == database and v.db_user == r.db_user]
    session = r.session
    if session is not None:
        same = [v for v in before if v.session == session]
        return (same[-1], "session") if same else (None, None)
    recent = [v for v in before if r.at - v.at <= _JOIN_WINDOW]
    if r.code == "ExpiredToken":
        recent = [v for v in recent if (v.expires_epoch or 0) <= r.at]
    return (recent[-1], "db_user") if recent else (None, None)
