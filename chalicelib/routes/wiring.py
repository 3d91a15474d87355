"""Builds the services the functions use from the environment, and wires them together:
the vending pipeline, and the grant service it consults for ``grant: required`` rules (which
publishes requests to the alert topic and ends sessions when no live grant remains)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chalicelib.aws.clients import default_client_factory
from chalicelib.aws.rds import EndpointResolver, EndpointSource
from chalicelib.canary.alerts import SnsNotifier
from chalicelib.engines.mysql import MysqlAdmin
from chalicelib.engines.postgres import PostgresAdmin
from chalicelib.engines.trust import ssl_root_cert_for
from chalicelib.grants.service import GrantService, SweepResult
from chalicelib.grants.sessions import AdminSessionEnder, SessionAdmin
from chalicelib.grants.store import DynamoGrantStore
from chalicelib.observability import logger
from chalicelib.policy.model import Database
from chalicelib.policy_source import PolicySource, policy_source_from_env
from chalicelib.settings import Settings
from chalicelib.vending.pipeline import VendingService, vending_service_from_env

__all__ = ["build_vending_service", "grant_service_from_env", "session_ender_from_env", "sweep_grants"]


def session_ender_from_env(policy_source: PolicySource, resolver: EndpointSource,
                           settings: Settings) -> AdminSessionEnder:
    """Ends sessions through the canary's administrator DSNs (see :mod:`chalicelib.grants.sessions`)."""
    def resolve(database: Database) -> tuple[str, int]:
        endpoint = resolver.resolve(database)
        return endpoint.host, endpoint.port

    admins: dict[str, SessionAdmin] = {}
    if settings.admin_dsn:
        admins["postgres"] = PostgresAdmin(settings.admin_dsn)  # its DSN names its CA (sslrootcert)
    if settings.mysql_admin_dsn:
        admins["mysql"] = MysqlAdmin(settings.mysql_admin_dsn, ssl_root_cert_for(policy_source.get(), settings))
    return AdminSessionEnder(resolve=resolve, admins=admins)


def grant_service_from_env(policy_source: PolicySource, env: Mapping[str, str],
                           resolver: EndpointSource | None = None, clients: Any = None) -> GrantService | None:
    """The grant service on ``RDSVEND_GRANTS_TABLE``, or None when no table is configured.
    ``clients``: a :class:`~chalicelib.aws.clients.ClientFactory` (default: the process's)."""
    settings = Settings.from_env(env)
    if not settings.grants_table:
        return None
    clients = clients or default_client_factory()
    notifier = SnsNotifier(settings.alert_topic, clients("sns")) if settings.alert_topic else None
    resolver = resolver or EndpointResolver(clients, service_account=settings.service_account)
    return GrantService(store=DynamoGrantStore(clients("dynamodb"), settings.grants_table),
                        policy_source=policy_source, notifier=notifier,
                        sessions=session_ender_from_env(policy_source, resolver, settings))


def build_vending_service(env: Mapping[str, str] | None = None) -> VendingService:
    """The vending pipeline, with the grant service attached when a grants table is configured."""
    env = dict(Settings.environment() if env is None else env)
    service = vending_service_from_env(env)
    service.grants = grant_service_from_env(service.policy_source, env, service.resolver)
    return service


def sweep_grants(request_id: str, env: Mapping[str, str] | None = None,
                 service: GrantService | None = None, clients: Any = None) -> dict[str, Any] | None:
    """The scheduled canary's grant sweep: write down expiries, end the sessions of db users with
    no live grant left, and report them (``grant_sweep`` log line; errors logged, never a pass)."""
    env = dict(Settings.environment() if env is None else env)
    if service is None:
        clients = clients or default_client_factory()
        service = grant_service_from_env(policy_source_from_env(env, clients), env, clients=clients)
    if service is None:
        return None
    result: SweepResult = service.sweep(request_id)
    report = {"expired": result.expired, "sessions_ended": result.ended, "problems": result.problems}
    if result.ended:
        logger.warning("sessions were open with no live grant: ended", extra={"event": "grant_sweep", **report})
    else:
        logger.info("grant sweep", extra={"event": "grant_sweep", **report})
    for problem in result.problems:
        logger.error(problem, extra={"event": "grant_sweep_failed"})
    return report
