"""Powertools Logger, Metrics and Tracer, and the audit record.

Every invocation runs inside :func:`invocation`: its correlation id on every log and audit
line, its metrics flushed when it ends. Service and namespace come from
``POWERTOOLS_SERVICE_NAME`` / ``POWERTOOLS_METRICS_NAMESPACE``.
Nothing here is ever handed a token, a signed request or credentials.
"""
from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from chalicelib.settings import Settings

__all__ = ["logger", "metrics", "get_tracer", "audit", "count_vended", "count_denied", "count_rate_limit_fallback",
           "flush_metrics", "invocation", "lambda_entry", "isoformat_z", "traced", "tracing_enabled"]

_settings = Settings.from_env()
SERVICE = _settings.service_name
NAMESPACE = _settings.metrics_namespace


class _Stdout:
    """Whatever ``sys.stdout`` is at the moment of writing (Lambda, the CLI, a test's capture)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


logger = Logger(service=SERVICE, log_uncaught_exceptions=False,
                logger_handler=logging.StreamHandler(_Stdout()))
metrics = Metrics(service=SERVICE, namespace=NAMESPACE)
_tracer: Any = None


_tracing: bool | None = None


def tracing_enabled() -> bool:
    """As Powertools decides: off when disabled by env, and off outside Lambda (tests, the CLI,
    the local stack), where there is no X-Ray daemon to send to. Decided on first use, once per
    process (every pipeline stage asks; reading the environment each time cost a third of a vend)."""
    global _tracing
    if _tracing is None:
        settings = Settings.from_env()
        _tracing = settings.in_lambda and not settings.trace_disabled and not settings.local_emulation
    return _tracing


def get_tracer() -> Any:
    """The Powertools Tracer, created on first use: importing the X-Ray SDK costs a cold start
    about 200 ms, paid only where traces are sent."""
    global _tracer
    if _tracer is None:
        from aws_lambda_powertools import Tracer

        _tracer = Tracer(service=SERVICE)
    return _tracer


@contextmanager
def traced(name: str) -> Iterator[None]:
    """An X-Ray subsegment around a pipeline stage. Never records arguments or results
    (every result holds a token), and a denial is not logged as an exception."""
    if not tracing_enabled():
        yield
        return
    tracer = get_tracer()
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
    """One JSON line per decision: who, what, which rule, when it expires. Never the token.

    Written directly rather than through the Logger: it is on every vend's path and the
    Logger's record machinery costs more than the rest of a vend. It keeps the Logger's shape
    (level, message, timestamp, service, correlation id) and every audit key, null or not.
    """
    now = datetime.now(UTC)
    record = {
        "level": "INFO",
        "message": "vend decision",
        "timestamp": now.strftime("%Y-%m-%d %H:%M:%S,") + f"{now.microsecond // 1000:03d}+0000",
        "service": SERVICE,
        "correlation_id": logger.get_correlation_id(),
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
    }
    sys.stdout.write(json.dumps(record, separators=(",", ":"), default=str) + "\n")


def count_vended(database: str) -> None:
    metrics.add_metric(name="TokensVended", unit=MetricUnit.Count, value=1)


def count_denied(reason: str) -> None:
    with single_metric(name="RequestsDenied", unit=MetricUnit.Count, value=1, namespace=NAMESPACE) as metric:
        metric.add_dimension(name="service", value=SERVICE)
        metric.add_dimension(name="reason", value=reason)


def count_rate_limit_fallback() -> None:
    """A request the instance's own limiter decided because the fleet-wide table failed."""
    metrics.add_metric(name="RateLimitFallback", unit=MetricUnit.Count, value=1)


def flush_metrics() -> None:
    """Publish what this invocation recorded (EMF on stdout); quiet when there is nothing."""
    if metrics.metric_set:
        metrics.flush_metrics()


@contextmanager
def invocation(correlation_id: str | None) -> Iterator[None]:
    """One invocation's observability: ``correlation_id`` on every log and audit line written
    inside, and the metrics it recorded flushed (one EMF line) when it ends, however it ends."""
    logger.set_correlation_id(correlation_id)
    try:
        yield
    finally:
        try:
            flush_metrics()
        finally:
            logger.set_correlation_id(None)


_Handler = TypeVar("_Handler", bound=Callable[[Any, Any], Any])


def lambda_entry(handler: _Handler) -> _Handler:
    """Wrap a plain ``(event, context)`` Lambda handler in :func:`invocation`, keyed by the
    Lambda request id.

    A Blueprint's function is deployed with the blueprint's module as its handler, so Lambda
    never imports ``app.py`` and the app's middleware never runs around it: such a function
    carries its own observability with this decorator (under ``@blueprint.lambda_function``).
    """
    @functools.wraps(handler)
    def entry(event: Any, context: Any) -> Any:
        with invocation(getattr(context, "aws_request_id", None) or "unknown"):
            return handler(event, context)

    return entry  # type: ignore[return-value]  # functools.wraps: the handler's own signature


def _short(value: Any) -> Any:
    """Caller-supplied names are logged only when they are short strings."""
    if isinstance(value, str) and len(value) <= 128:
        return value
    return None if value is None else "<invalid>"
