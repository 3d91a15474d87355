"""Where a database really is: host, port and resource id from the policy or from RDS.

``DescribeDBInstances`` / ``DescribeDBClusters`` / ``DescribeDBProxies`` answers are cached
(5 minutes). Failures and throttling become :class:`UpstreamUnavailableError`; a database
RDS does not know is :class:`DatabaseNotFoundError`. A database in another account is
described through its reader role (:mod:`chalicelib.aws.reader`); one whose policy gives
host, port and resource id is not described at all.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from chalicelib.aws.clients import ClientFactory
from chalicelib.aws.errors import aws_error
from chalicelib.aws.rds_resource import RdsName, RdsResource, describe_resource, resource_from_item
from chalicelib.aws.reader import CallerVantage, ReaderRoleError, ReaderSessions
from chalicelib.clock import SYSTEM_CLOCK, Clock
from chalicelib.errors import RdsvendError, UpstreamUnavailableError

__all__ = ["Endpoint", "RdsResource", "EndpointSource", "EndpointResolver", "DatabaseNotFoundError",
           "describe_resource", "resource_from_item"]

CACHE_SECONDS = 300.0


class DatabaseNotFoundError(RdsvendError):
    """RDS has no instance, cluster or proxy by the policy's identifier."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    resource_id: str | None


class RdsDatabase(RdsName, Protocol):
    """What the endpoint resolver reads of a policy's database
    (:class:`~chalicelib.policy.model.Database` is one)."""

    @property
    def region(self) -> str: ...

    @property
    def host(self) -> str | None: ...

    @property
    def port(self) -> int | None: ...

    @property
    def resource_id(self) -> str | None: ...

    @property
    def signer_role(self) -> str | None: ...

    @property
    def default_port(self) -> int: ...

    @property
    def is_dsql(self) -> bool: ...

    @property
    def reader_role(self) -> str | None: ...

    @property
    def reader_role_explicit(self) -> bool: ...

    def reader_role_for(self, own_account: str | None) -> str | None: ...


class EndpointSource(Protocol):
    """Where a database is (:class:`EndpointResolver`; an echo of the policy in tests)."""

    def resolve(self, database: RdsDatabase) -> Endpoint:
        """Host, port and resource id of ``database``."""


class EndpointResolver:
    """``service_account``: the account the service runs in (``RDSVEND_SERVICE_ACCOUNT``); when
    not given, STS ``GetCallerIdentity`` tells it, asked once and only for a database whose
    reader role comes from ``defaults.reader_role_name``."""

    def __init__(self, client_factory: Callable[..., Any], *, clock: Clock = SYSTEM_CLOCK,
                 ttl: float = CACHE_SECONDS, service_account: str | None = None,
                 readers: ReaderSessions | None = None) -> None:
        self._clients = client_factory
        self._clock = clock
        self._ttl = ttl
        self._cache: dict[tuple[str, str, str, str], tuple[float, RdsResource]] = {}
        self._lock = threading.Lock()
        self._caller = CallerVantage(lambda: client_factory("sts", None), account=service_account)
        self._readers = readers or ReaderSessions(
            lambda: client_factory("sts", None), lambda session: ClientFactory(lambda: session),
            clock=clock, caller=self._caller)

    def resolve(self, database: RdsDatabase) -> Endpoint:
        """Host and port from the policy when it names them; otherwise (or for the resource id
        a signer role needs) from RDS. Host, port and resource id all in the policy: no RDS read.
        An Aurora DSQL cluster's endpoint is its policy entry's (from its id): no read either."""
        if database.is_dsql and database.host is not None:
            return Endpoint(host=database.host, port=database.port or 5432, resource_id=None)
        if database.host is not None and database.port is not None and database.resource_id is not None:
            return Endpoint(host=database.host, port=database.port, resource_id=database.resource_id)
        needs_rds = database.host is None or (database.port is None and database.kind != "proxy") \
            or (database.signer_role is not None and database.resource_id is None)
        resource = self.lookup(database) if needs_rds else None
        host = database.host or (resource.host if resource else None)
        port = database.port or (resource.port if resource else None) or database.default_port
        if not host:
            raise UpstreamUnavailableError("rds", detail=f"no endpoint for '{database.identifier}'")
        resource_id = database.resource_id or (resource.resource_id if resource else None)
        return Endpoint(host=host, port=int(port), resource_id=resource_id)

    def reader_role(self, database: RdsDatabase) -> str | None:
        """The role RDS is read through for ``database``, None for the service's own credentials."""
        if database.reader_role is None or database.reader_role_explicit:
            return database.reader_role
        try:
            own = self._caller.account()
        except (KeyError, TypeError) as exc:  # a malformed answer
            raise UpstreamUnavailableError("sts", detail=f"GetCallerIdentity failed: {type(exc).__name__}") from None
        except Exception as exc:
            error = aws_error(exc)
            if error is None:
                raise
            raise UpstreamUnavailableError("sts", detail=f"GetCallerIdentity failed: {error.code}") from None
        return database.reader_role_for(own)

    def _rds_client(self, database: RdsDatabase, role: str | None) -> Any:
        if role is None:
            return self._clients("rds", database.region)
        try:
            return self._readers.clients(role)("rds", database.region)
        except ReaderRoleError as exc:
            raise UpstreamUnavailableError("sts", retry_after=2 if exc.throttled else 5, detail=str(exc)) from None

    def lookup(self, database: RdsDatabase) -> RdsResource:
        role = self.reader_role(database)
        key = (role or "", database.region, database.kind, database.identifier)
        now = self._clock.monotonic()
        cached = self._cache.get(key)
        if cached and now - cached[0] < self._ttl:
            return cached[1]
        client = self._rds_client(database, role)
        try:
            resource = describe_resource(client, database)
        except (IndexError, KeyError) as exc:  # a malformed answer
            raise UpstreamUnavailableError("rds", detail=type(exc).__name__) from None
        except Exception as exc:
            error = aws_error(exc)
            if error is None:
                raise
            if error.not_found:
                where = f" (read through '{role}')" if role else ""
                raise DatabaseNotFoundError(f"rds has no {database.kind} '{database.identifier}'{where}") from None
            raise UpstreamUnavailableError("rds", detail=error.code) from None
        with self._lock:
            self._cache[key] = (now, resource)
        return resource
