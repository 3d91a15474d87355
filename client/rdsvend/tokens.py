"""``TokenClient``: a thread-safe cache of vended tokens that refreshes itself.

Per (database, db user):

* a token is reused until about 80 % of its life (jittered down by up to ``jitter`` so that
  many processes started together do not refresh together);
* one refresh is in flight at a time: other threads keep using the still-valid token, or
  wait for the refresh when there is none;
* after a 429/503 (or an unreachable service) the key backs off, honouring ``Retry-After``,
  exponentially with jitter; meanwhile a still-valid token keeps being served and, without
  one, the last error is raised at once instead of hammering the service;
* other errors (``forbidden``, ``invalid_request``) are raised to every caller that needs a
  new token, never hidden.

Times are taken from the clock's monotonic reading and the answer's ``ttl_seconds``, so a
wrong wall clock on the client does not matter.
"""
from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Any

from rdsvend.api import VendApi, VendedToken, VendError
from rdsvend.clock import SYSTEM_CLOCK, Clock

__all__ = ["TokenClient"]


@dataclass
class _Entry:
    cond: threading.Condition = field(default_factory=threading.Condition)
    current: VendedToken | None = None
    refresh_at: float = 0.0
    refreshing: bool = False
    backoff_until: float = 0.0
    failures: int = 0
    last_error: VendError | None = None
    #: Count of finished refreshes and the error of the last one (None: it succeeded), so
    #: that threads which waited for a refresh share its outcome instead of retrying it.
    done: int = 0
    done_error: VendError | None = None


class TokenClient:
    """``TokenClient(url).token(database, db_user)`` -> a valid token, cached and refreshed."""

    def __init__(
        self,
        url: str | None = None,
        *,
        api: Any | None = None,
        session: Any | None = None,
        clock: Clock = SYSTEM_CLOCK,
        refresh_fraction: float = 0.8,
        jitter: float = 0.1,
        min_valid_seconds: float = 15.0,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        rng: random.Random | None = None,
    ) -> None:
        if not 0.0 < refresh_fraction < 1.0:
            raise ValueError("refresh_fraction must be between 0 and 1")
        if not 0.0 <= jitter < 1.0:
            raise ValueError("jitter must be between 0 and 1")
        self.api = api if api is not None else VendApi(url, session=session, clock=clock)
        self.clock = clock
        self.refresh_fraction = refresh_fraction
        self.jitter = jitter
        self.min_valid_seconds = min_valid_seconds
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], _Entry] = {}

    def token(self, database: str, db_user: str) -> str:
        """The token only (what a password field wants)."""
        return self.get(database, db_user).token

    def get(self, database: str, db_user: str) -> VendedToken:
        """The whole vended answer (token, host, port, dbname, sslmode ...)."""
        entry = self._entry(database, db_user)
        with entry.cond:
            while True:
                now = self.clock.monotonic()
                current = entry.current
                if current is not None and now < entry.refresh_at:
                    return current
                usable = current is not None and self._usable(current, now)
                if now < entry.backoff_until:
                    if usable:
                        return current  # type: ignore[return-value]  # usable implies not None
                    assert entry.last_error is not None
                    raise entry.last_error
                if not entry.refreshing:
                    entry.refreshing = True
                    break
                if usable:
                    return current  # type: ignore[return-value]  # usable implies not None
                seen = entry.done
                while entry.refreshing and entry.done == seen:
                    entry.cond.wait()
                if entry.done != seen and entry.done_error is not None:
                    raise entry.done_error
        return self._refresh(entry, database, db_user)

    def invalidate(self, database: str, db_user: str) -> None:
        """Forget the cached token (e.g. after a login failure) so the next call vends anew."""
        entry = self._entry(database, db_user)
        with entry.cond:
            entry.current = None
            entry.refresh_at = 0.0

    # -- internals

    def _entry(self, database: str, db_user: str) -> _Entry:
        key = (database, db_user)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry()
            return entry

    def _usable(self, token: VendedToken, now: float) -> bool:
        return now < token.expires_monotonic - self.min_valid_seconds

    def _refresh(self, entry: _Entry, database: str, db_user: str) -> VendedToken:
        try:
            fresh = self.api.vend(database, db_user)
        except VendError as exc:
            return self._failed(entry, exc)
        except BaseException as exc:
            with entry.cond:
                entry.refreshing = False
                entry.done += 1
                entry.done_error = VendError("internal", f"token refresh failed ({type(exc).__name__})")
                entry.cond.notify_all()
            raise
        with entry.cond:
            life = max(0.0, fresh.expires_monotonic - fresh.received_at)
            fraction = self.refresh_fraction * (1.0 - self.jitter * self._rng.random())
            entry.current = fresh
            entry.refresh_at = fresh.received_at + life * fraction
            entry.failures = 0
            entry.backoff_until = 0.0
            entry.last_error = None
            entry.refreshing = False
            entry.done += 1
            entry.done_error = None
            entry.cond.notify_all()
            return fresh

    def _failed(self, entry: _Entry, exc: VendError) -> VendedToken:
        with entry.cond:
            entry.refreshing = False
            entry.done += 1
            entry.done_error = exc
            now = self.clock.monotonic()
            if exc.retryable:
                entry.failures += 1
                ceiling = min(self.backoff_max, self.backoff_base * 2 ** (entry.failures - 1))
                delay = max(float(exc.retry_after or 0.0), self._rng.uniform(ceiling / 2, ceiling))
                entry.backoff_until = now + delay
                entry.last_error = exc
            entry.cond.notify_all()
            current = entry.current
            if exc.retryable and current is not None and self._usable(current, now):
                return current
            raise exc

