"""The client's clock seam: token lifetimes are judged on a monotonic clock tests can move."""
from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "SYSTEM_CLOCK"]


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds from an arbitrary origin."""
        ...


class _SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()


SYSTEM_CLOCK: Clock = _SystemClock()
