"""What the scheduled canary writes: the report as one log line, one log line per
non-passing check, and EMF metrics per target (``CanaryCheckFailed``, ``ConnectLatency``)
with the dimensions ``database`` and ``db_user``.

Nothing here can carry a secret: reports hold check messages, ARNs and role names, never a
token (the connect check never puts the password in its message) nor the admin DSN.
"""
from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from chalicelib.canary.model import Report
from chalicelib.canary.setup import pending_steps
from chalicelib.settings import Settings

__all__ = ["log_report", "emit_metrics", "emit", "emit_run_failure"]


def log_report(report: Report, log: Any) -> None:
    body = report.to_dict()
    log.info({"event": "canary_report", "summary": body["summary"], "started_at": body["started_at"],
              "finished_at": body["finished_at"], "targets": body["targets"]})
    network = Settings.from_env().canary_network
    for target in report.targets:
        steps = pending_steps(target, network=network)
        for check in target.problems:
            line = {"event": "canary_check", "database": target.database, "db_user": target.db_user,
                    "check": check.id, "status": check.status, "message": check.message, "fix": check.fix}
            if check.id in steps:  # setup to finish, not a failing target (chalicelib.canary.setup)
                log.warning({**line, "event": "canary_setup_pending", "step": steps[check.id]})
            elif check.status == "warn":
                log.warning(line)
            else:
                log.error(line)


def emit_metrics(report: Report, *, namespace: str | None = None, service: str | None = None) -> int:
    """One EMF document per target; returns how many were written."""
    settings = Settings.from_env()
    namespace = namespace or settings.metrics_namespace
    service = service or settings.service_name
    written = 0
    for target in report.targets:
        metrics = EphemeralMetrics(namespace=namespace, service=service)
        metrics.add_dimension(name="database", value=target.database)
        metrics.add_dimension(name="db_user", value=target.db_user)
        pending = pending_steps(target, network=settings.canary_network)
        failed = sum(1 for c in target.checks if c.status in ("fail", "error") and c.id not in pending)
        metrics.add_metric(name="CanaryCheckFailed", unit=MetricUnit.Count, value=failed)
        if pending:  # setup to finish (chalicelib.canary.setup): the canary's own status, not a failure
            metrics.add_metric(name="CanarySetupPending", unit=MetricUnit.Count, value=len(pending))
        connect = target.check("db.connect")
        if connect is not None and connect.status == "pass" and "latency_ms" in connect.details:
            metrics.add_metric(name="ConnectLatency", unit=MetricUnit.Milliseconds,
                               value=float(connect.details["latency_ms"]))
        metrics.add_metadata(key="status", value=target.status)
        metrics.flush_metrics()
        written += 1
    return written


def emit_run_failure(stage: str, *, namespace: str | None = None, service: str | None = None) -> None:
    """``CanaryRunFailed`` (count 1, the stage as metadata): the canary could not do its job.
    One metric whatever the stage, so one alarm watches it."""
    settings = Settings.from_env()
    metrics = EphemeralMetrics(namespace=namespace or settings.metrics_namespace,
                               service=service or settings.service_name)
    metrics.add_metric(name="CanaryRunFailed", unit=MetricUnit.Count, value=1)
    metrics.add_metadata(key="stage", value=stage)
    metrics.flush_metrics()


def emit(report: Report, log: Any) -> None:
    log_report(report, log)
    emit_metrics(report)
