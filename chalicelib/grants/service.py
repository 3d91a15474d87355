"""Asking for, deciding, revoking and listing grants; the live grant a vend needs; the sweep.

Every caller-visible outcome is an audit line (``"event": "grant"``, with ``action``); a new
request is published to the alert topic (a failed publish is logged, the request stands: the
approvers also see it in ``GET /v1/grants``). When no live grant remains for a (database, db
user), every session of that db user is ended: at once on revoke, and by :meth:`sweep` (the
scheduled canary's run) after an expiry.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from chalicelib.clock import SYSTEM_CLOCK, Clock
from chalicelib.decision import PolicyIndex
from chalicelib.errors import (
    ForbiddenError,
    InvalidRequestError,
    PolicyLoadError,
    PolicyUnavailableError,
    RdsvendError,
)
from chalicelib.grants.errors import GrantNotFoundError, OwnGrantError
from chalicelib.grants.model import (
    GRANT_ID,
    MAX_REASON_BYTES,
    PENDING_SECONDS,
    Action,
    Grant,
    check_action,
    isoformat,
    may_decide,
    new_grant_id,
    require_visible,
)
from chalicelib.grants.store import DynamoGrantStore
from chalicelib.identity import CallerIdentity
from chalicelib.observability import logger
from chalicelib.policy.grant_rules import granted_pairs
from chalicelib.policy.loader import MAX_GRANT_SECONDS_LIMIT
from chalicelib.policy.model import Database
from chalicelib.policy_source import PolicySource
from chalicelib.vending.request import parse_token_request

__all__ = ["GrantService", "Notifier", "SessionEnder", "SweepResult", "audit_grant", "parse_grant_request"]


class Notifier(Protocol):
    def publish(self, subject: str, message: str, attributes: Mapping[str, str]) -> None: ...


class SessionEnder(Protocol):
    def end_sessions(self, database: Database, db_user: str) -> list[str]:
        """End every session of ``db_user`` on ``database``; the ids of those ended."""


@dataclass(frozen=True)
class GrantRequest:
    database: str
    db_user: str
    reason: str
    duration_seconds: int


def parse_grant_request(data: Any) -> GrantRequest:
    """``{"database", "db_user", "reason", "duration_seconds"}``, every field checked."""
    names = parse_token_request(data, allowed_extra=("reason", "duration_seconds"))
    reason = data.get("reason")
    if reason is None:
        raise InvalidRequestError("missing field 'reason'", field="reason")
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidRequestError("field 'reason' must be a non-empty string", field="reason")
    if len(reason.encode("utf-8", "surrogatepass")) > MAX_REASON_BYTES:
        raise InvalidRequestError(f"field 'reason' is longer than {MAX_REASON_BYTES} bytes", field="reason")
    if any(not ch.isprintable() for ch in reason):
        raise InvalidRequestError("field 'reason' holds control characters", field="reason")
    duration = data.get("duration_seconds")
    if duration is None:
        raise InvalidRequestError("missing field 'duration_seconds'", field="duration_seconds")
    if isinstance(duration, bool) or not isinstance(duration, int):
        raise InvalidRequestError("field 'duration_seconds' must be a whole number of seconds",
                                  field="duration_seconds")
    if not 0 < duration <= MAX_GRANT_SECONDS_LIMIT:
        raise InvalidRequestError(f"field 'duration_seconds' must be between 1 and {MAX_GRANT_SECONDS_LIMIT}",
                                  field="duration_seconds")
    return GrantRequest(names.database, names.db_user, reason.strip(), duration)


def audit_grant(action: str, grant: Grant, *, actor: str | None, request_id: str, channel: str,
                now: datetime) -> None:
    """One audit line per grant event (``rdsvend audit`` shows them)."""
    logger.info(f"grant {action}", extra={
        "event": "grant", "action": action, "grant_id": grant.id, "principal": actor,
        "requester": grant.requester, "database": grant.database, "db_user": grant.db_user,
        "rule": grant.rule, "state": grant.state_at(now), "grant_reason": grant.reason[:200],
        "starts_at": isoformat(grant.starts_at), "ends_at": isoformat(grant.ends_at),
        "request_id": request_id, "channel": channel,
    })


def audit_session_ended(database: str, db_user: str, session: str, why: str, request_id: str) -> None:
    logger.info("session ended", extra={"event": "session_ended", "database": database, "db_user": db_user,
                                        "session_id": session, "why": why, "request_id": request_id})


@dataclass
class SweepResult:
    expired: list[str] = field(default_factory=list)  # grant ids written as expired by this run
    ended: dict[str, list[str]] = field(default_factory=dict)  # "DB/USER" -> sessions ended
    problems: list[str] = field(default_factory=list)  # one line each: what could not be done


class GrantService:
    def __init__(self, *, store: DynamoGrantStore, policy_source: PolicySource, clock: Clock = SYSTEM_CLOCK,
                 notifier: Notifier | None = None, sessions: SessionEnder | None = None) -> None:
        self.store = store
        self.policy_source = policy_source
        self.clock = clock
        self.notifier = notifier
        self.sessions = sessions

    def _index(self, request_id: str) -> PolicyIndex:
        try:
            return self.policy_source.index()
        except (PolicyLoadError, PolicyUnavailableError) as exc:
            logger.error("access policy did not load: refusing every grant request",
                         extra={"policy_error": str(exc), "request_id": request_id})
            raise ForbiddenError("policy_unavailable") from None

    # -- requests ------------------------------------------------------------------------
    def request(self, identity: CallerIdentity, body: Any, request_id: str, *, channel: str = "http") -> dict[str, Any]:
        req = parse_grant_request(body)
        index = self._index(request_id)
        decision = index.decide(identity, req.database, req.db_user)
        if not decision.allowed:
            logger.info("grant request refused", extra={"event": "grant", "action": "refused",
                                                        "principal": identity.principal, "database": req.database,
                                                        "db_user": req.db_user, "why": decision.reason,
                                                        "request_id": request_id, "channel": channel})
            raise ForbiddenError(decision.reason, decision.rule)
        rule = index.policy.rule(decision.rule or "")
        if rule is None or not decision.grant_required:
            raise InvalidRequestError(f"db user '{req.db_user}' of '{req.database}' needs no grant",
                                      field="db_user")
        if req.duration_seconds > rule.max_grant_seconds:
            raise InvalidRequestError(f"field 'duration_seconds' is more than the maximum of "
                                      f"{rule.max_grant_seconds} seconds", field="duration_seconds")
        now = self.clock.now()
        grant = Grant(id=new_grant_id(), database=req.database, db_user=req.db_user, requester=identity.principal,
                      rule=rule.id, reason=req.reason, duration_seconds=req.duration_seconds, state="pending",
                      created_at=now, pending_until=now + timedelta(seconds=PENDING_SECONDS))
        self.store.put_new(grant)
        audit_grant("requested", grant, actor=identity.principal, request_id=request_id, channel=channel, now=now)
        self._notify(grant, request_id)
        return grant.to_dict(now)

    def _notify(self, grant: Grant, request_id: str) -> None:
        if self.notifier is None:
            return
        body = {"event": "grant_requested", "grant_id": grant.id, "database": grant.database,
                "db_user": grant.db_user, "requester": grant.requester, "reason": grant.reason,
                "duration_seconds": grant.duration_seconds, "rule": grant.rule}
        try:
            self.notifier.publish(f"rdsvend grant awaiting approval: {grant.subject}", json.dumps(body, sort_keys=True),
                                  {"event": "grant_requested", "database": grant.database, "db_user": grant.db_user})
        except RdsvendError as exc:  # the request stands; approvers still see it listed
            logger.warning("could not publish the grant request", extra={"request_id": request_id,
                                                                         "grant_id": grant.id, "detail": str(exc)})

    # -- decisions -----------------------------------------------------------------------
    def act(self, identity: CallerIdentity, grant_id: Any, action: Action, request_id: str, *,
            channel: str = "http") -> dict[str, Any]:
        """approve | deny | revoke, by someone who may see the grant (else: not found)."""
        if not isinstance(grant_id, str) or not GRANT_ID.fullmatch(grant_id):
            raise GrantNotFoundError(str(grant_id)[:64])
        index = self._index(request_id)
        grant = require_visible(self.store.get(grant_id), identity, index.policy, grant_id)
        if action in ("approve", "deny"):
            if grant.requester == identity.principal:
                raise OwnGrantError()
            if not may_decide(grant, identity, index.policy):
                raise GrantNotFoundError(grant_id)
        now = self.clock.now()
        check_action(grant, action, identity.principal, now)
        done = self.store.transition(grant, action, identity.principal, now)
        audit_grant({"approve": "approved", "deny": "denied", "revoke": "revoked"}.get(action, action), done,
                    actor=identity.principal, request_id=request_id, channel=channel, now=now)
        if action == "revoke":
            self._end_at_revoke(index, done, request_id)
        return done.to_dict(now)

    def _end_at_revoke(self, index: PolicyIndex, grant: Grant, request_id: str) -> None:
        """The revoke stands whatever happens here: sessions that could not be ended now are
        ended by the canary's next run (its sweep ends every granted db user's sessions when no
        live grant remains), and the failure is said loudly."""
        try:
            self.end_if_no_live_grant(index, grant.database, grant.db_user, "revoked", request_id)
        except RdsvendError as exc:
            logger.error("could not end the sessions of a revoked grant's db user; the canary's next run will",
                         extra={"event": "grant_sessions_not_ended", "grant_id": grant.id, "database": grant.database,
                                "db_user": grant.db_user, "detail": str(exc), "request_id": request_id})

    def listing(self, identity: CallerIdentity, request_id: str) -> dict[str, Any]:
        """The caller's own grants, then the pending ones it may decide, newest first."""
        index = self._index(request_id)
        now = self.clock.now()
        own = self.store.by_requester(identity.principal)
        seen = {g.id for g in own}
        pending = [g for g in self.store.in_state("pending")
                   if g.id not in seen and g.state_at(now) == "pending" and may_decide(g, identity, index.policy)]
        grants = sorted(own + pending, key=lambda g: g.created_at, reverse=True)
        return {"grants": [g.to_dict(now) for g in grants]}

    # -- use -----------------------------------------------------------------------------
    def live_grant(self, principal: str, database: str, db_user: str) -> Grant | None:
        """The live grant ``principal`` holds for (database, db user) that ends last, or None."""
        now = self.clock.now()
        live = [g for g in self.store.for_subject(database, db_user, principal) if g.live_at(now)]
        return max(live, key=lambda g: g.ends_at or now, default=None)

    def live_grant_end(self, principal: str, database: str, db_user: str) -> datetime | None:
        """When :meth:`live_grant` ends (what the vending pipeline needs); None: no live grant."""
        grant = self.live_grant(principal, database, db_user)
        return None if grant is None else grant.ends_at

    def end_if_no_live_grant(self, index: PolicyIndex, database: str, db_user: str, why: str,
                             request_id: str) -> list[str]:
        """End every session of ``db_user`` when no live grant for it remains (anyone's)."""
        now = self.clock.now()
        if self.sessions is None or any(g.live_at(now) for g in self.store.for_subject(database, db_user)):
            return []
        db = index.policy.databases.get(database)
        if db is None:
            return []
        ended = self.sessions.end_sessions(db, db_user)
        for session in ended:
            audit_session_ended(database, db_user, session, why, request_id)
        return ended

    def sweep(self, request_id: str) -> SweepResult:
        """Write down grants that time has ended, then end sessions of every granted db user with
        no live grant left (the scheduled canary runs it, so within one canary interval)."""
        result = SweepResult()
        index = self._index(request_id)
        now = self.clock.now()
        for state in ("pending", "approved"):
            for grant in self.store.in_state(state):
                if grant.state_at(now) != "expired":
                    continue
                try:
                    done = self.store.transition(grant, "expire", "sweep", now)
                except RdsvendError:  # another run wrote it, or it was revoked meanwhile
                    continue
                result.expired.append(done.id)
                audit_grant("expired", done, actor=None, request_id=request_id, channel="canary", now=now)
        for database, db_user in granted_pairs(index.policy):
            try:
                ended = self.end_if_no_live_grant(index, database, db_user, "no_live_grant", request_id)
            except RdsvendError as exc:
                result.problems.append(f"could not end sessions of '{db_user}' on '{database}': {exc}")
                continue
            if ended:
                result.ended[f"{database}/{db_user}"] = ended
        return result
