"""A fleet-wide per-caller rate limit kept in a DynamoDB table (``RDSVEND_RATE_TABLE``).

The in-memory limiter of :mod:`chalicelib.vending.ratelimit` counts per function instance, so
a caller's allowance grows with Lambda concurrency. This one keeps one item per caller in a
shared table, so ``RATE/BURST`` holds across every instance of every function of a stage.

Algorithm: GCRA, the token bucket written as one number per caller, its *theoretical arrival
time* (``tat``, integer microseconds since the epoch). A request at ``now`` is allowed when
``max(tat, now) - now <= (burst - 1) / rate``; it then moves ``tat`` on by ``1 / rate``.
Every change is a conditional ``UpdateItem`` (the old value must still be there), so two
instances racing for the last token cannot both get it; the loser re-reads the new value
from the failed condition's answer (``ReturnValuesOnConditionCheckFailure``) and tries again.
An idle caller (``tat`` in the past) costs one write per request; items expire through the
table's TTL attribute ``expires_at``.

When the table cannot be used (throttled, access denied, missing, unreachable), the
instance falls back to its own in-memory limiter with the same ``RATE/BURST`` and retries
the table after :data:`RETRY_TABLE_AFTER` seconds. An outage of the limiter's storage then
degrades the limit to per instance, as it was before the table existed, instead of refusing
every vend: the limiter protects capacity, while authorization (the access policy) is
decided elsewhere and stays fail-closed. The fallback is never silent: a warning when it
starts, one when the table is back, and the metric ``RateLimitFallback`` on every request
it decided.
"""
from __future__ import annotations

import math
import re
import threading
from typing import Any

from chalicelib.aws.errors import aws_error
from chalicelib.clock import SYSTEM_CLOCK, Clock
from chalicelib.errors import RateLimitedError
from chalicelib.observability import count_rate_limit_fallback, logger
from chalicelib.vending.ratelimit import RateLimiter

__all__ = ["KEY_ATTRIBUTE", "RETRY_TABLE_AFTER", "TTL_ATTRIBUTE", "TableRateLimiter", "validate_table_name"]

#: Seconds an instance keeps to its own limiter after the table failed.
RETRY_TABLE_AFTER = 30.0
#: The table's partition key (a string: the caller's principal) and its TTL attribute.
KEY_ATTRIBUTE = "caller"
TTL_ATTRIBUTE = "expires_at"
_TAT = "tat"
#: Conditional writes per request before a caller racing itself is told to retry.
_MAX_WRITES = 5
_MICROS = 1_000_000
_TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}")


def validate_table_name(name: str) -> str:
    """``RDSVEND_RATE_TABLE``'s value, or :class:`ValueError` naming the variable."""
    if not _TABLE_NAME.fullmatch(name):
        raise ValueError(f"RDSVEND_RATE_TABLE '{name[:300]}' is not a DynamoDB table name "
                         "(3-255 of A-Z a-z 0-9 _ . -)")
    return name


def _error_code(exc: Exception) -> str | None:
    """The service's error code of an AWS failure; None for anything else (no answer, a bug)."""
    error = aws_error(exc)
    return error.code if error is not None and error.kind != "no_answer" else None


class TableRateLimiter:
    """``check(caller)`` against the shared table; the in-memory ``fallback`` when it fails."""

    def __init__(self, client: Any, table: str, rate: float, burst: int, *,
                 clock: Clock = SYSTEM_CLOCK, fallback: RateLimiter | None = None) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.table = validate_table_name(table)
        self.rate = rate
        self.burst = burst
        self._client = client
        self._clock = clock
        self._interval = max(1, round(_MICROS / rate))
        self._tolerance = (burst - 1) * self._interval
        self.fallback = fallback or RateLimiter(rate, burst, clock=clock)
        self._lock = threading.Lock()
        self._degraded_until: float | None = None

    @property
    def degraded(self) -> bool:
        """True while this instance decides with its own limiter."""
        return self._degraded_until is not None

    def check(self, caller: str) -> None:
        """Take one token for ``caller`` or raise :class:`RateLimitedError` with Retry-After."""
        with self._lock:
            until = self._degraded_until
        if until is not None and self._clock.monotonic() < until:
            self._fall_back(caller)
            return
        try:
            self._take(caller)
        except RateLimitedError:
            self._restored()
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of the table: the local limit decides
            self._degrade(exc)
            self._fall_back(caller)
            return
        self._restored()

    # -- the table --------------------------------------------------------------------------
    def _take(self, caller: str) -> None:
        now = int(self._clock.now().timestamp() * _MICROS)
        expected: int | None = None  # None: no item, or an idle one (tat in the past)
        for _ in range(_MAX_WRITES):
            if expected is None:
                condition = "attribute_not_exists(#tat) OR #tat < :now"
                new = now + self._interval
                values = {":now": {"N": str(now)}}
            else:
                if expected - now > self._tolerance:
                    wait = (expected - self._tolerance - now) / _MICROS
                    raise RateLimitedError(retry_after=max(1, math.ceil(wait)))
                condition = "#tat = :expected"
                new = expected + self._interval
                values = {":expected": {"N": str(expected)}}
            values[":new"] = {"N": str(new)}
            values[":expires"] = {"N": str(new // _MICROS + 60)}
            try:
                self._client.update_item(
                    TableName=self.table,
                    Key={KEY_ATTRIBUTE: {"S": caller}},
                    UpdateExpression="SET #tat = :new, #ttl = :expires",
                    ConditionExpression=condition,
                    ExpressionAttributeNames={"#tat": _TAT, "#ttl": TTL_ATTRIBUTE},
                    ExpressionAttributeValues=values,
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
                return
            except Exception as exc:
                if _error_code(exc) != "ConditionalCheckFailedException":
                    raise
                item = getattr(exc, "response", {}).get("Item") or {}
                current = int(item[_TAT]["N"]) if _TAT in item else None
                expected = current if current is not None and current >= now else None
        # Lost every race: other requests of the same caller are taking the tokens right now.
        raise RateLimitedError(retry_after=1)

    # -- falling back and coming back -------------------------------------------------------
    def _fall_back(self, caller: str) -> None:
        count_rate_limit_fallback()
        self.fallback.check(caller)

    def _degrade(self, exc: Exception) -> None:
        with self._lock:
            starting = self._degraded_until is None
            self._degraded_until = self._clock.monotonic() + RETRY_TABLE_AFTER
        if starting:
            logger.warning(
                "fleet rate limit unavailable: this instance limits callers on its own",
                extra={"rate_table": self.table, "error_type": type(exc).__name__,
                       "error_code": _error_code(exc), "retry_table_after_s": RETRY_TABLE_AFTER},
            )

    def _restored(self) -> None:
        with self._lock:
            if self._degraded_until is None:
                return
            self._degraded_until = None
        logger.warning("fleet rate limit restored", extra={"rate_table": self.table})
