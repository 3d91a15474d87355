"""The clock seam: everything that needs "now" takes a Clock, so tests can move time."""
from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = ["Clock", "SystemClock", "FrozenClock", "SYSTEM_CLOCK"]


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware UTC."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin, for caches and timeouts."""


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


class FrozenClock:
    """A clock that moves only when told to (tests)."""

    def __init__(self, at: datetime) -> None:
        self._at = at
        self._mono = 1000.0

    def now(self) -> datetime:
        return self._at

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._at = self._at + timedelta(seconds=seconds)
        self._mono += seconds


SYSTEM_CLOCK = SystemClock()
