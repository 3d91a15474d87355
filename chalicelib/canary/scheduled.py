"""The scheduled canary's body, apart from Chalice: load the policy, run every target, log
the report and the failing checks, emit metrics, alert on status changes.

A canary that cannot do its job never looks healthy. When the policy does not load, the run
itself breaks, the state table cannot be read, or an alert or a state write fails, it:
logs ``canary_run_failed``, emits the metric ``CanaryRunFailed``, publishes a
``canary_run_failed`` alert to the topic (when the topic works), and raises
:class:`CanaryRunError`, so the invocation fails (the function's ``Errors`` metric and
on-failure destination see it).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chalicelib.aws.clients import default_client_factory
from chalicelib.canary.alerts import DynamoStateStore, SnsNotifier, alert_changes, failure_message
from chalicelib.canary.emit import emit, emit_run_failure
from chalicelib.canary.factory import canary_deps
from chalicelib.canary.model import Report
from chalicelib.canary.runner import run_canary
from chalicelib.canary.target_run import CanaryDeps
from chalicelib.clock import SYSTEM_CLOCK, Clock
from chalicelib.errors import CanaryRunError, PolicyLoadError, PolicyUnavailableError, ProbeError
from chalicelib.observability import logger
from chalicelib.policy_source import policy_source_from_env
from chalicelib.settings import Settings

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
        log = logger
    settings = Settings.from_env(env)
    if event_id:
        log.set_correlation_id(event_id)
    failed = _Failure(settings, clients, clock, log)
    if policy is None:
        try:
            policy = policy_source_from_env(env).get()
        except (PolicyLoadError, PolicyUnavailableError) as exc:
            log.error({"event": "canary_policy_unavailable", "error": str(exc)})
            raise failed("policy", str(exc)) from exc
        except Exception as exc:  # noqa: BLE001 - anything else: still loud, never silent
            raise failed("policy", f"unexpected {type(exc).__name__} while reading the policy") from exc
    try:
        if deps is None:
            deps = canary_deps(policy, env)
        report: Report = run_canary(policy, deps, clock=clock)
    except Exception as exc:  # noqa: BLE001 - checks turn their own failures into "error"
        raise failed("run", f"unexpected {type(exc).__name__} while running the checks") from exc
    emit(report, log)
    alerts = _alert(report, settings, failed, log)
    return {"summary": report.summary, "alerts": alerts}


def _alert(report: Report, settings: Settings, failed: _Failure, log: Any) -> int:
    table, topic = settings.state_table, settings.alert_topic
    if not table or not topic:
        log.warning({"event": "canary_alerts_disabled",
                     "reason": "RDSVEND_STATE_TABLE and RDSVEND_ALERT_TOPIC must both be set"})
        return 0
    store = DynamoStateStore(table, failed.client("dynamodb"))
    notifier = SnsNotifier(topic, failed.client("sns"))
    problems: list[str] = []
    try:
        changes = alert_changes(report, store, notifier, clock=failed.clock, log=log, failures=problems)
    except ProbeError as exc:
        log.error({"event": "canary_alerts_failed", "cause": exc.cause})
        raise failed("state", f"cannot read the state table '{table}': {exc.cause}", report) from exc
    for change in changes:
        log.info({"event": "canary_alert", "target": change.target, "previous": change.previous,
                  "status": change.status})
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise failed("alerts", "; ".join(problems[:5]) + more, report)
    return len(changes)


class _Failure:
    """Says loudly that the canary could not do its job, then hands back the error to raise."""

    def __init__(self, settings: Settings, clients: Any, clock: Clock, log: Any) -> None:
        self.settings, self._clients, self.clock, self.log = settings, clients, clock, log

    def client(self, service: str) -> Any:
        if self._clients is None:
            self._clients = default_client_factory()
        return self._clients(service, self.settings.region)

    def __call__(self, stage: str, message: str, report: Report | None = None) -> CanaryRunError:
        self.log.error({"event": "canary_run_failed", "stage": stage, "error": message})
        try:
            emit_run_failure(stage)
        finally:
            self._publish(stage, message, report)
        return CanaryRunError(stage, message)

    def _publish(self, stage: str, message: str, report: Report | None) -> None:
        topic = self.settings.alert_topic
        if not topic:
            self.log.warning({"event": "canary_run_failed_not_alerted", "reason": "RDSVEND_ALERT_TOPIC is not set"})
            return
        subject, body, attributes = failure_message(stage, message, self.clock.now(), report)
        try:
            SnsNotifier(topic, self.client("sns")).publish(subject, body, attributes)
        except ProbeError as exc:
            self.log.error({"event": "canary_run_failed_not_alerted", "cause": exc.cause})
        except Exception as exc:  # noqa: BLE001 - the invocation fails anyway; say why no alert went
            self.log.error({"event": "canary_run_failed_not_alerted", "cause": type(exc).__name__})
