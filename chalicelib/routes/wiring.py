"""Builds the services the functions use from the environment, and wires them together:
the vending pipeline, and the grant service it consults for ``grant: required`` rules (which
publishes requests to the alert topic and ends sessions when no live grant remains)."""
from __future__ import annotations

from collections.abc import Mapping

from chalicelib.grants.service import GrantService
from chalicelib.grants.store import DynamoGrantStore
from chalicelib.policy.source import PolicySource
from chalicelib.settings import Settings
from chalicelib.vending.pipeline import VendingService, vending_service_from_env

__all__ = ["build_vending_service", "grant_service_from_env"]


def grant_service_from_env(policy_source: PolicySource, env: Mapping[str, str]) -> GrantService | None:
    """The grant service on ``RDSVEND_GRANTS_TABLE``, or None when no table is configured."""
    from chalicelib.aws.clients import default_client_factory
    from chalicelib.canary.alerts import SnsNotifier
    from chalicelib.grants.sessions import database_sessions

    settings = Settings.from_env(env)
    if not settings.grants_table:
        return None
    clients = default_client_factory()
    notifier = SnsNotifier(settings.alert_topic, clients("sns")) if settings.alert_topic else None
    return GrantService(store=DynamoGrantStore(clients("dynamodb"), settings.grants_table),
                        policy_source=policy_source, notifier=notifier, sessions=database_sessions(settings))


def build_vending_service(env: Mapping[str, str] | None = None) -> VendingService:
    """The vending pipeline, with the grant service attached when a grants table is configured."""
    env = dict(Settings.environment() if env is None else env)
    service = vending_service_from_env(env)
    service.grants = grant_service_from_env(service.policy_source, env)
    return service
