"""Signer roles: AssumeRole per caller, scoped to one dbuser ARN, cached.

For a database with ``signer_role`` the token is signed with credentials of that role,
assumed with ``SourceIdentity`` = the caller's principal and a session policy that allows
only ``rds-db:connect`` on ``arn:PARTITION:rds-db:REGION:ACCOUNT:dbuser:RESOURCE_ID/DB_USER``.
Credentials are cached per (role, caller, dbuser ARN) and refreshed ahead of expiry, with at
most one AssumeRole in flight per key.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib.aws.arn import ANY_RESOURCE_ID, ROLE_ARN, dsql_cluster_arn
from chalicelib.aws.arn import dbuser_arn as _dbuser_arn
from chalicelib.aws.clients import default_client_factory
from chalicelib.aws.errors import THROTTLING_CODES, aws_error
from chalicelib.clock import SYSTEM_CLOCK, Clock
from chalicelib.errors import UpstreamUnavailableError
from chalicelib.settings import Settings
from chalicelib.signer.credentials import SigningCredentials

__all__ = [
    "RoleRequest",
    "sts_name",
    "source_identity_for",
    "role_session_name_for",
    "dbuser_arn",
    "session_policy",
    "role_request",
    "dsql_role_request",
    "StsRoleAssumer",
    "RoleCredentialsCache",
    "THROTTLING_CODES",
]

#: the service's logger by name: the Lambda handler's Powertools Logger formats what is logged here
#: (the signer, part of the pure core, does not import the observability stack)
logger = logging.getLogger(Settings.from_env().service_name)

_NOT_STS = re.compile(r"[^A-Za-z0-9_+=,.@-]")


def sts_name(value: str, *, max_len: int = 64) -> str:
    """``value`` made acceptable to STS (``[\\w+=,.@-]``, 2 to ``max_len`` characters).

    Other characters become ``-``; a name that is too long keeps its start and ends with a
    hash of the whole value, so two long names never collapse into one.
    """
    clean = _NOT_STS.sub("-", value)
    if len(clean) > max_len:
        digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:10]
        clean = f"{clean[: max_len - 11]}-{digest}"
    while len(clean) < 2:
        clean += "_"
    return clean


def _principal_name(identity: Any) -> str:
    """``role.path.name`` / ``user.name`` / ``root`` from a canonical principal ARN."""
    resource: str = identity.principal.split(":", 5)[-1]
    return resource.replace("/", ".")


def source_identity_for(identity: Any) -> str:
    """The caller's principal as STS ``SourceIdentity``: ``role.NAME@ACCOUNT`` (sanitised)."""
    name = _principal_name(identity)
    suffix = f"@{identity.account}"
    return sts_name(f"{sts_name(name, max_len=64 - len(suffix))}{suffix}")


_SESSION_KINDS = {"user": "user", "role": "role", "assumed-role": "role", "federated-user": "fed", "root": "root"}


def role_session_name_for(identity: Any) -> str:
    """The signer session's name: who the caller is, so that RDS's refusal lines (which quote the
    signer's session ARN) and CloudTrail's AssumeRole events name them.

    ``user.NAME@ACCOUNT``, ``role.ROLE.SESSION@ACCOUNT`` (assumed roles), ``role.ROLE@ACCOUNT``,
    ``fed.NAME@ACCOUNT`` or ``root@ACCOUNT``, in STS's characters (``[\\w+=,.@-]``, 2..64).
    Deterministic. A name that does not fit (or had characters replaced) keeps its kind, the
    start of the role or user name and the *end* of the session name (where generated session
    names differ), and ends with ``=`` and a hash of the caller's ARN before the account, so two
    callers never share a session name.
    """
    return _session_name(identity.kind, identity.name, identity.session, str(identity.account), str(identity.arn))


@functools.lru_cache(maxsize=4096)
def _session_name(kind_of: str, name: str, session: str | None, account: str, arn: str) -> str:
    kind = _SESSION_KINDS.get(kind_of, "caller")
    suffix = "@" + _NOT_STS.sub("-", account)[:16]
    if kind_of == "root":
        return sts_name(f"root{suffix}")
    head = f"{kind}.{name}"
    tail = session or ""
    body = f"{head}.{tail}" if tail else head
    clean = _NOT_STS.sub("-", body)
    budget = 64 - len(suffix)
    if clean == body and len(body) <= budget:
        return body + suffix
    digest = "=" + hashlib.sha256(arn.encode("utf-8")).hexdigest()[:8]
    room = budget - len(digest)
    clean_head, clean_tail = _NOT_STS.sub("-", head), _NOT_STS.sub("-", tail)
    if clean_tail:
        keep_head = clean_head[: min(len(clean_head), max(room // 3, room - 1 - len(clean_tail)))]
        keep_tail = clean_tail[-(room - len(keep_head) - 1):]
        short = f"{keep_head}.{keep_tail}"
    else:
        short = clean_head if len(clean_head) <= room else f"{kind}.{clean_head[-(room - len(kind) - 1):]}"
    return f"{short}{digest}{suffix}"


def dbuser_arn(signer_role: str, region: str, resource_id: str, db_user: str) -> str:
    """``arn:PARTITION:rds-db:REGION:ACCOUNT:dbuser:RESOURCE_ID/DB_USER``; ACCOUNT is the role's."""
    match = ROLE_ARN.fullmatch(signer_role)
    if match is None:
        raise ValueError(f"invalid signer_role '{signer_role}'")
    if not ANY_RESOURCE_ID.fullmatch(resource_id):
        raise ValueError(f"invalid resource id '{resource_id}'")
    return _dbuser_arn(region, match["account"], resource_id, db_user, match["partition"])


def session_policy(arn: str, action: str = "rds-db:connect") -> str:
    """The session policy: ``action`` (``rds-db:connect``, or ``dsql:DbConnect[Admin]`` on a DSQL
    cluster ARN) on exactly one resource, nothing else."""
    return json.dumps(
        {"Version": "2012-10-17",
         "Statement": [{"Effect": "Allow", "Action": action, "Resource": arn}]},
        separators=(",", ":"),
    )


@dataclass(frozen=True)
class RoleRequest:
    """Everything one AssumeRole call sends; also the credentials cache key."""

    role_arn: str
    region: str
    source_identity: str
    role_session_name: str
    dbuser_arn: str  # the resource the session may connect to: a dbuser ARN, or a DSQL cluster ARN
    action: str = "rds-db:connect"

    @property
    def policy(self) -> str:
        return session_policy(self.dbuser_arn, self.action)


def role_request(identity: Any, database: Any, db_user: str, resource_id: str | None) -> RoleRequest:
    """The AssumeRole request for signing ``db_user`` on ``database`` for ``identity``."""
    if not resource_id:
        raise UpstreamUnavailableError(
            "rds", retry_after=5, detail=f"resource id of database '{database.name}' is unknown"
        )
    return RoleRequest(
        role_arn=database.signer_role,
        region=database.region,
        source_identity=source_identity_for(identity),
        role_session_name=role_session_name_for(identity),
        dbuser_arn=dbuser_arn(database.signer_role, database.region, resource_id, db_user),
    )


def dsql_role_request(identity: Any, database: Any, db_user: str) -> RoleRequest:
    """The AssumeRole request for signing ``db_user`` on the DSQL cluster ``database``: the session
    may only ``dsql:DbConnect`` (``dsql:DbConnectAdmin`` for ``admin``) on that cluster."""
    match = ROLE_ARN.fullmatch(database.signer_role)
    if match is None:
        raise ValueError(f"invalid signer_role '{database.signer_role}'")
    return RoleRequest(
        role_arn=database.signer_role,
        region=database.region,
        source_identity=source_identity_for(identity),
        role_session_name=role_session_name_for(identity),
        dbuser_arn=dsql_cluster_arn(database.region, match["account"], database.identifier, match["partition"]),
        action=f"dsql:{database.dsql_action(db_user)}",
    )


class StsRoleAssumer:
    """Calls STS AssumeRole with the function's own credentials.

    Clients come from :func:`chalicelib.aws.clients.default_client_factory` (standard retry
    mode, bounded attempts, connect/read timeouts), created on first use. Every failure
    becomes :class:`UpstreamUnavailableError` naming the error code, never a credential.
    """

    def __init__(self, client_factory: Callable[..., Any] | None = None) -> None:
        self._client_factory = client_factory

    def __call__(self, request: RoleRequest) -> SigningCredentials:
        factory = self._client_factory
        if factory is None:
            factory = self._client_factory = default_client_factory()
        try:
            answer = factory("sts", request.region).assume_role(
                RoleArn=request.role_arn,
                RoleSessionName=request.role_session_name,
                SourceIdentity=request.source_identity,
                Policy=request.policy,
            )
        except Exception as exc:
            error = aws_error(exc)
            if error is None:
                raise
            raise UpstreamUnavailableError(
                "sts", retry_after=5 if error.kind in ("failed", "denied", "not_found") else 2,
                detail=f"AssumeRole of '{request.role_arn}' failed: {error.code}",
            ) from None
        creds = answer["Credentials"]
        expiry = creds["Expiration"]
        if isinstance(expiry, str):
            expiry = datetime.fromisoformat(expiry.replace("Z", "+00:00"))
        if expiry.tzinfo is None:
            expiry = expiry.replace(tzinfo=UTC)
        return SigningCredentials(
            access_key=creds["AccessKeyId"],
            secret_key=creds["SecretAccessKey"],
            token=creds.get("SessionToken"),
            expiry=expiry.astimezone(UTC),
        )


class RoleCredentialsCache:
    """Assumed-role credentials per :class:`RoleRequest`, refreshed ahead of expiry.

    ``refresh_ahead``: credentials with less than this left are refreshed (default 16 min,
    so a token signed with them still gets its full 15 minutes). While one thread refreshes
    a key, others keep using the old credentials if they are still valid for ``min_valid``,
    otherwise they wait for that one refresh: never two AssumeRole calls for one key at once.
    """

    def __init__(
        self,
        assume: Callable[[RoleRequest], SigningCredentials],
        *,
        clock: Clock = SYSTEM_CLOCK,
        refresh_ahead: timedelta = timedelta(minutes=16),
        min_valid: timedelta = timedelta(minutes=6),
        max_entries: int = 4096,
    ) -> None:
        self._assume = assume
        self._clock = clock
        self._refresh_ahead = refresh_ahead
        self._min_valid = min_valid
        self._max_entries = max_entries
        self._entries: dict[RoleRequest, SigningCredentials] = {}
        self._locks: dict[RoleRequest, threading.Lock] = {}
        self._guard = threading.Lock()

    def __repr__(self) -> str:
        return f"RoleCredentialsCache(entries={len(self._entries)})"

    def _fresh(self, creds: SigningCredentials | None, margin: timedelta) -> bool:
        return creds is not None and (creds.expiry is None or creds.expiry - self._clock.now() > margin)

    def _lock_for(self, key: RoleRequest) -> threading.Lock:
        with self._guard:
            lock = self._locks.get(key)
            if lock is None:
                lock = self._locks[key] = threading.Lock()
            return lock

    def get(self, request: RoleRequest) -> SigningCredentials:
        current = self._entries.get(request)
        if self._fresh(current, self._refresh_ahead):
            return current  # type: ignore[return-value]  # _fresh() checked it is not None
        lock = self._lock_for(request)
        usable = self._fresh(current, self._min_valid)
        if not lock.acquire(blocking=not usable):
            return current  # type: ignore[return-value]  # someone else is refreshing it
        try:
            current = self._entries.get(request)
            if self._fresh(current, self._refresh_ahead):
                return current  # type: ignore[return-value]  # _fresh() checked it is not None
            try:
                fresh = self._assume(request)
            except UpstreamUnavailableError as exc:
                logger.warning(
                    "could not assume signer role",
                    extra={"role_arn": request.role_arn, "upstream_service": exc.service, "detail": exc.detail,
                           "serving_previous_credentials": self._fresh(current, self._min_valid)},
                )
                if self._fresh(current, self._min_valid):
                    return current  # type: ignore[return-value]  # _fresh() checked it is not None
                raise
            logger.info(
                "assumed signer role",
                extra={"role_arn": request.role_arn, "source_identity": request.source_identity,
                       "role_session_name": request.role_session_name, "dbuser_arn": request.dbuser_arn,
                       "credentials_expire_at": fresh.expiry.isoformat() if fresh.expiry else None},
            )
            with self._guard:
                if request not in self._entries and len(self._entries) >= self._max_entries:
                    oldest = next(iter(self._entries))
                    self._entries.pop(oldest, None)
                    self._locks.pop(oldest, None)
                self._entries[request] = fresh
            return fresh
        finally:
            lock.release()
