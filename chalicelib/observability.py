"""Powertools Logger, Metrics and Tracer, and the audit record (SPEC 11).

Service and namespace come from ``POWERTOOLS_SERVICE_NAME`` / ``POWERTOOLS_METRICS_NAMESPACE``.
Nothing here is ever handed a token, a signed request or credentials.
"""
from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Iterator

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from aws_lambda_powertools.metrics import MetricUnit, single_metric

__all__ = ["logger", "metrics", "tracer", "audit", "count_vended", "count_denied", "flush_metrics",
           "isoformat_z", "traced"]

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "rdsvend")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "rdsvend")



class _Stdout:
    """Whatever ``sys.stdout`` is at the moment of writing (Lambda, the CLI, a test's capture)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


AUDIT_KEYS = frozenset({"event", "decision", "principal", "database", "db_user", "rule", "reason",
                        "request_id", "expires_at"})


class _Formatter(LambdaPowertoolsFormatter):
    """Powertools' JSON, except that an audit line keeps every key, null or not."""

    @staticmethod
    def _strip_none_records(records: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in records.items() if v is not None or k in AUDIT_KEYS}


logger = Logger(service=SERVICE, log_uncaught_exceptions=False, logger_formatter=_Formatter(),
                logger_handler=logging.StreamHandler(_Stdout()))  # type: ignore[arg-type]
metrics = Metrics(service=SERVICE, namespace=NAMESPACE)
tracer = Tracer(service=SERVICE)


@contextmanager
def traced(name: str) -> Iterator[None]:
    """An X-Ray subsegment around a pipeline stage. Never records arguments or results
    (every result holds a token), and a denial is not logged as an exception."""
    if tracer.disabled:
        yield
        return
    with tracer.provider.in_subsegment(name):
        yield


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
