"""Powertools Logger, Metrics and Tracer, and the audit record (SPEC 11).

Service and namespace come from ``POWERTOOLS_SERVICE_NAME`` / ``POWERTOOLS_METRICS_NAMESPACE``.
Nothing here is ever handed a token, a signed request or credentials.
"""
from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

__all__ = ["logger", "metrics", "tracer", "audit", "count_vended", "count_denied", "flush_metrics",
           "isoformat_z"]

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "rdsvend")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "rdsvend")

logger = Logger(service=SERVICE, log_uncaught_exceptions=False)
metrics = Metrics(service=SERVICE, namespace=NAMESPACE)
tracer = Tracer(service=SERVICE)


def isoformat_z(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def audit(*, decision: str, reason: str, principal: str | None, database: Any, db_user: Any,
          rule: str | None, request_id: str, expires_at: datetime | None = None,
          arn: str | None = None, session: str | None = None, source_ip: str | None = None,
          channel: str = "http") -> None:
    """One line per decision: who, what, which rule, when it expires. Never the token."""
    logger.info(
        "vend decision",
        extra={
            "event": "vend",
            "decision": decision,
            "principal": principal,
            "database": _short(database),
            "db_user": _short(db_user),
            "rule": rule,
            "reason": reason,
            "request_id": request_id,
            "expires_at": isoformat_z(expires_at) if expires_at else None,
            "arn": arn,
            "session": session,
            "source_ip": source_ip,
            "channel": channel,
        },
    )


def count_vended(database: str) -> None:
    metrics.add_metric(name="TokensVended", unit=MetricUnit.Count, value=1)


def count_denied(reason: str) -> None:
    with single_metric(name="RequestsDenied", unit=MetricUnit.Count, value=1, namespace=NAMESPACE) as metric:
        metric.add_dimension(name="service", value=SERVICE)
        metric.add_dimension(name="reason", value=reason)


def flush_metrics() -> None:
    """Publish what this invocation recorded (EMF on stdout); quiet when there is nothing."""
    if metrics.metric_set:
        metrics.flush_metrics()


def _short(value: Any) -> Any:
    """Caller-supplied names are logged only when they are short strings."""
    if isinstance(value, str) and len(value) <= 128:
        return value
    return None if value is None else "<invalid>"
