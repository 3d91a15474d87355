"""The scheduled canary's body, apart from Chalice: load the policy, run every target, log
the report and the failing checks, emit metrics, alert on status changes.

A policy that does not load is logged as an error and raised: the invocation fails (the
function's Errors metric alarms), it never reports an empty, healthy canary.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from chalicelib.canary.alerts import DynamoStateStore, SnsNotifier, alert_changes
from chalicelib.canary.emit import emit
from chalicelib.canary.model import Report
from chalicelib.canary.runner import run_canary
from chalicelib.canary.target import CanaryDeps
from chalicelib.clock import SYSTEM_CLOCK, Clock
from chalicelib.errors import PolicyLoadError, PolicyUnavailableError, ProbeError

__all__ = ["run_scheduled"]


def run_scheduled(
    *,
    event_id: str | None = None,
    env: Mapping[str, str] | None = None,
    policy: Any = None,
    deps: CanaryDeps | None = None,
    clients: Any = None,
    clock: Clock = SYSTEM_CLOCK,
    log: Any = None,
) -> dict[str, Any]:
    """One canary run; returns ``{"summary": ..., "alerts": n}`` (nothing secret)."""
    if log is None:
        from chalicelib.observability import logger as log
    env = dict(os.environ if env is None else env)
    if event_id:
        log.set_correlation_id(event_id)
    if policy is None:
        from chalicelib.policy.source import policy_source_from_env

        try:
            policy = policy_source_from_env(env).get()
        except (PolicyLoadError, PolicyUnavailableError) as exc:
            log.error({"event": "canary_policy_unavailable", "error": str(exc)})
            raise
    if deps is None:
        from chalicelib.canary.factory import canary_deps

        deps = canary_deps(policy, env)
    report: Report = run_canary(policy, deps, clock=clock)
    emit(report, log)
    alerts = _alert(report, env, clients, clock, log)
    return {"summary": report.summary, "alerts": alerts}


def _alert(report: Report, env: Mapping[str, str], clients: Any, clock: Clock, log: Any) -> int:
    table, topic = env.get("RDSVEND_STATE_TABLE"), env.get("RDSVEND_ALERT_TOPIC")
    if not table or not topic:
        log.warning({"event": "canary_alerts_disabled",
                     "reason": "RDSVEND_STATE_TABLE and RDSVEND_ALERT_TOPIC must both be set"})
        return 0
    if clients is None:
        from chalicelib.aws.clients import default_client_factory

        clients = default_client_factory()
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    store = DynamoStateStore(table, clients("dynamodb", region))
    notifier = SnsNotifier(topic, clients("sns", region))
    try:
        changes = alert_changes(report, store, notifier, clock=clock, log=log)
    except ProbeError as exc:
        log.error({"event": "canary_alerts_failed", "cause": exc.cause})
        return 0
    for change in changes:
        log.info({"event": "canary_alert", "target": change.target, "previous": change.previous,
                  "status": change.status})
    return len(changes)
