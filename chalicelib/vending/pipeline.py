"""The vending pipeline, the same for HTTP and direct invoke.

validate -> identify (done by the edge) -> authorize -> mint -> respond, with one audit line
per decision. Every caller-visible failure is a :class:`CallerError`; a policy that does not
load is a refusal (``forbidden``), logged as such.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from chalicelib.aws.clients import default_client_factory
from chalicelib.aws.deadline import DeadlinePassedError, check_deadline, deadline_passed, upstream_deadline
from chalicelib.aws.rds import DatabaseNotFoundError, EndpointResolver, EndpointSource
from chalicelib.clock import SYSTEM_CLOCK, Clock
from chalicelib.decision import Decision, PolicyIndex
from chalicelib.errors import (
    ForbiddenError,
    PolicyLoadError,
    PolicyUnavailableError,
    RateLimitedError,
    UpstreamUnavailableError,
)
from chalicelib.identity import CallerIdentity
from chalicelib.observability import audit, count_denied, count_vended, isoformat_z, logger, traced
from chalicelib.policy_source import PolicySource, policy_source_from_env
from chalicelib.settings import Settings
from chalicelib.signer import TokenMinter
from chalicelib.vending.dsn import answer_fields, build_dsn
from chalicelib.vending.ratelimit import CallerLimiter, parse_rate_limit
from chalicelib.vending.ratelimit_table import TableRateLimiter
from chalicelib.vending.request import TokenRequest, parse_token_request

__all__ = ["VendingService", "LiveGrants", "vending_service_from_env", "rate_limiter_from_env", "SSL_ROOT_CERT",
           "SYSTEM_ROOT_CERT", "build_dsn", "VEND_DEADLINE_SECONDS", "DEADLINE_RETRY_AFTER"]

SSL_ROOT_CERT = "rds-global-bundle.pem"
#: Aurora DSQL serves certificates of a public CA: libpq's ``sslrootcert=system`` (the
#: system's trusted roots), never the RDS bundle.
SYSTEM_ROOT_CERT = "system"
#: Every upstream call of one request (identity proof, AssumeRole, RDS, DynamoDB, SSM) ends
#: within this many seconds of the request's start: below the function's 10 s timeout, so a
#: slow or dripping upstream is a 503 with ``Retry-After``, never a function timeout.
VEND_DEADLINE_SECONDS = 8.0
#: ``Retry-After`` of an answer cut off by the deadline.
DEADLINE_RETRY_AFTER = 5


class LiveGrants(Protocol):
    def live_grant_end(self, principal: str, database: str, db_user: str) -> datetime | None:
        """When the live grant this caller holds for (database, db user) ends; None: it holds none."""


class VendingService:
    def __init__(self, *, policy_source: PolicySource, minter: Any, resolver: EndpointSource,
                 clock: Clock = SYSTEM_CLOCK, rate_limiter: CallerLimiter | None = None,
                 deadline_seconds: float = VEND_DEADLINE_SECONDS, grants: LiveGrants | None = None) -> None:
        self.policy_source = policy_source
        self.minter = minter
        self.resolver = resolver
        self.clock = clock
        self.rate_limiter = rate_limiter
        self.deadline_seconds = deadline_seconds
        #: consulted only for ``grant: required`` rules; None: such rules refuse everyone
        self.grants = grants

    # -- stages -------------------------------------------------------------------------
    def _index(self, identity: CallerIdentity, request_id: str, database: Any, db_user: Any,
               channel: str) -> PolicyIndex:
        try:
            return self.policy_source.index()
        except (PolicyLoadError, PolicyUnavailableError) as exc:
            if deadline_passed():  # the policy's store did not answer in time: retry later
                raise DeadlinePassedError from None
            logger.error("access policy did not load: refusing every request",
                         extra={"policy_error": str(exc), "request_id": request_id})
            self._deny(identity, request_id, database, db_user,
                       Decision(False, "policy_unavailable"), channel)
            raise ForbiddenError("policy_unavailable") from None

    def _deny(self, identity: CallerIdentity, request_id: str, database: Any, db_user: Any,
              decision: Decision, channel: str) -> None:
        audit(decision="deny", reason=decision.reason, principal=identity.principal, database=database,
              db_user=db_user, rule=decision.rule, request_id=request_id, arn=identity.arn,
              session=identity.session, source_ip=identity.source_ip, channel=channel)
        count_denied(decision.reason)

    # -- entry points -------------------------------------------------------------------
    def vend(self, identity: CallerIdentity, request: Any, request_id: str, *, channel: str = "http") -> dict[str, Any]:
        """The token answer; every upstream call within :attr:`deadline_seconds` (an earlier
        deadline the caller opened, e.g. before the identity proof, stays in force)."""
        req = parse_token_request(request)
        with traced("## vend"), upstream_deadline(self.deadline_seconds):
            try:
                return self._vend(identity, req, request_id, channel)
            except DeadlinePassedError:
                self._upstream_failed(identity, request_id, req.database, req.db_user, None, channel,
                                      "deadline passed")
                raise deadline_error() from None

    def _vend(self, identity: CallerIdentity, req: TokenRequest, request_id: str, channel: str) -> dict[str, Any]:
        if self.rate_limiter is not None:
            try:
                self.rate_limiter.check(identity.principal)
            except RateLimitedError:
                self._deny(identity, request_id, req.database, req.db_user,
                           Decision(False, "rate_limited"), channel)
                raise
            check_deadline()  # a table that answered only at the deadline (the local limit stood in)
        index = self._index(identity, request_id, req.database, req.db_user, channel)
        decision = index.decide(identity, req.database, req.db_user)
        if not decision.allowed:
            self._deny(identity, request_id, req.database, req.db_user, decision, channel)
            raise ForbiddenError(decision.reason, decision.rule)
        grant_end = self._grant_end(identity, request_id, req.database, req.db_user, decision, channel)
        database = index.policy.databases[req.database]
        try:
            with traced("## resolve"):
                endpoint = self.resolver.resolve(database)
            with traced("## mint"):
                minted = self._mint(identity, index, database, req.db_user, endpoint, decision)
        except DatabaseNotFoundError as exc:
            self._upstream_failed(identity, request_id, req.database, req.db_user, decision.rule, channel,
                                  str(exc))
            raise UpstreamUnavailableError("rds", retry_after=30, detail=str(exc)) from None
        except UpstreamUnavailableError as exc:
            if deadline_passed():
                raise DeadlinePassedError from None
            self._upstream_failed(identity, request_id, req.database, req.db_user, decision.rule, channel,
                                  f"{exc.service}: {exc.detail}")
            raise
        now = self.clock.now()
        expires_at = minted.expires_at if grant_end is None else min(minted.expires_at, grant_end)
        audit(decision="allow", reason="allowed", principal=identity.principal, database=req.database,
              db_user=req.db_user, rule=decision.rule, request_id=request_id, expires_at=expires_at,
              arn=identity.arn, session=identity.session, source_ip=identity.source_ip, channel=channel)
        count_vended(req.database)
        return {
            "token": minted.token,
            "expires_at": isoformat_z(expires_at),
            "ttl_seconds": max(0, int((expires_at - now).total_seconds())),
            "database": database.name,
            "db_user": req.db_user,
            "engine": database.engine,
            "host": endpoint.host,
            "port": endpoint.port,
            "dbname": database.dbname,
            "region": database.region,
            "sslmode": "verify-full",
            "ssl_root_cert": SYSTEM_ROOT_CERT if database.is_dsql else SSL_ROOT_CERT,
            "dsn": build_dsn(endpoint.host, endpoint.port, database.dbname, req.db_user, database.engine),
            "rule": decision.rule,
            **answer_fields(database.engine),
        }

    def _grant_end(self, identity: CallerIdentity, request_id: str, database: str, db_user: str,
                   decision: Decision, channel: str) -> datetime | None:
        """For a ``grant: required`` rule, the end of the caller's live grant (a token never
        outlives it); no live grant is a refusal. Other rules: None, and no grant is read."""
        if not decision.grant_required:
            return None
        try:
            end = None if self.grants is None else self.grants.live_grant_end(identity.principal, database, db_user)
        except UpstreamUnavailableError as exc:
            if deadline_passed():
                raise DeadlinePassedError from None
            self._upstream_failed(identity, request_id, database, db_user, decision.rule, channel,
                                  f"{exc.service}: {exc.detail}")
            raise
        if end is None:
            refused = Decision(False, "no_live_grant", decision.rule)
            self._deny(identity, request_id, database, db_user, refused, channel)
            raise ForbiddenError(refused.reason, refused.rule)
        return end


    def _mint(self, identity: CallerIdentity, index: PolicyIndex, database: Any, db_user: str, endpoint: Any,
              decision: Decision) -> Any:
        if database.is_dsql:  # the deciding rule's ttl_seconds is the DSQL token's lifetime
            rule = index.policy.rule(decision.rule)
            return self.minter.mint(identity=identity, database=database, db_user=db_user, host=endpoint.host,
                                    port=endpoint.port, ttl_seconds=rule.ttl_seconds if rule else None)
        return self.minter.mint(identity=identity, database=database, db_user=db_user, host=endpoint.host,
                                port=endpoint.port, resource_id=endpoint.resource_id)

    def _upstream_failed(self, identity: CallerIdentity, request_id: str, database: str, db_user: str,
                         rule: str | None, channel: str, detail: str) -> None:
        logger.warning("upstream failure while vending", extra={"request_id": request_id, "detail": detail})
        audit(decision="error", reason="upstream_unavailable", principal=identity.principal, database=database,
              db_user=db_user, rule=rule, request_id=request_id, arn=identity.arn,
              session=identity.session, source_ip=identity.source_ip, channel=channel)

    def databases(self, identity: CallerIdentity, request_id: str) -> dict[str, Any]:
        with upstream_deadline(self.deadline_seconds):
            try:
                return self._databases(identity, request_id)
            except DeadlinePassedError:
                raise deadline_error() from None

    def _databases(self, identity: CallerIdentity, request_id: str) -> dict[str, Any]:
        try:
            index = self.policy_source.index()
        except (PolicyLoadError, PolicyUnavailableError) as exc:
            if deadline_passed():
                raise DeadlinePassedError from None
            logger.error("access policy did not load: refusing every request",
                         extra={"policy_error": str(exc), "request_id": request_id})
            count_denied("policy_unavailable")
            raise ForbiddenError("policy_unavailable") from None
        entries = []
        for db, users in index.visible_databases(identity):
            host, port = db.host, db.port or db.default_port
            try:
                endpoint = self.resolver.resolve(db)
                host, port = endpoint.host, endpoint.port
            except (DatabaseNotFoundError, UpstreamUnavailableError, DeadlinePassedError) as exc:
                # The listing stays useful: an endpoint RDS cannot give now is null, not invented.
                logger.warning("endpoint unavailable for listing", extra={"database": db.name,
                                                                         "detail": str(exc)})
            entries.append({
                "database": db.name,
                "engine": db.engine,
                "host": host,
                "port": port,
                "dbname": db.dbname,
                "region": db.region,
                "db_users": users,
            })
        return {"databases": entries}


def deadline_error() -> UpstreamUnavailableError:
    """The answer of a request whose upstream calls ran past its deadline: 503, retry later."""
    return UpstreamUnavailableError("deadline", retry_after=DEADLINE_RETRY_AFTER,
                                    detail="upstream calls took longer than the request's deadline")


def vending_service_from_env(env: Mapping[str, str] | None = None) -> VendingService:
    """The service the Lambda functions use, configured from the environment (read once, here)."""

    env = dict(Settings.environment() if env is None else env)
    clients = default_client_factory()
    settings = Settings.from_env(env)
    return VendingService(
        policy_source=policy_source_from_env(env, clients),
        minter=TokenMinter(),
        resolver=EndpointResolver(clients, service_account=settings.service_account),
        rate_limiter=rate_limiter_from_env(env, clients),
    )


def rate_limiter_from_env(env: Mapping[str, str], clients: Any) -> CallerLimiter | None:
    """``RDSVEND_RATE_LIMIT`` (``RATE/BURST`` or ``off``) per caller; with ``RDSVEND_RATE_TABLE``
    the limit is counted fleet-wide in that DynamoDB table (the instance's own limiter stands
    in while the table fails)."""
    settings = Settings.from_env(env)
    local = parse_rate_limit(settings.rate_limit)
    table = settings.rate_table
    if local is None or not table:
        return local

    return TableRateLimiter(clients("dynamodb"), table, local.rate, local.burst, fallback=local)
