"""A per-caller token bucket, per function instance: a caller over its rate gets a 429.

The fleet-wide limit (one count per caller across every instance) is
:class:`chalicelib.vending.ratelimit_table.TableRateLimiter`; both are a :class:`CallerLimiter`.
"""
from __future__ import annotations

import math
import threading
from typing import Protocol

from chalicelib.clock import SYSTEM_CLOCK, Clock
from chalicelib.errors import RateLimitedError

__all__ = ["CallerLimiter", "RateLimiter", "parse_rate_limit"]

MAX_TRACKED = 10_000


class CallerLimiter(Protocol):
    def check(self, caller: str) -> None:
        """Take one request's allowance for ``caller`` or raise :class:`RateLimitedError`."""


class RateLimiter:
    def __init__(self, rate: float, burst: int, *, clock: Clock = SYSTEM_CLOCK) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, caller: str) -> None:
        """Take one token for ``caller`` or raise :class:`RateLimitedError` with Retry-After."""
        now = self._clock.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(caller, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self._buckets[caller] = (tokens, now)
                raise RateLimitedError(retry_after=max(1, math.ceil((1.0 - tokens) / self.rate)))
            if len(self._buckets) >= MAX_TRACKED and caller not in self._buckets:
                self._buckets.clear()
            self._buckets[caller] = (tokens - 1.0, now)


def parse_rate_limit(text: str | None, *, clock: Clock = SYSTEM_CLOCK) -> RateLimiter | None:
    """``RDSVEND_RATE_LIMIT``: ``RATE/BURST`` in requests per second, or ``off``."""
    if text is None or text.strip() == "":
        return RateLimiter(10.0, 50, clock=clock)
    if text.strip().lower() == "off":
        return None
    try:
        rate_text, burst_text = text.split("/", 1)
        return RateLimiter(float(rate_text), int(burst_text), clock=clock)
    except ValueError:
        raise ValueError(f"RDSVEND_RATE_LIMIT '{text}' is not RATE/BURST (e.g. 10/50) or off") from None
