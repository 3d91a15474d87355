"""What every database engine gives, whatever its wire protocol: the one interface the canary,
the rotation and the grants call (they never branch on an engine's name).

- :class:`Engine`: log in with verified TLS (:meth:`Engine.connect`), classify a driver's
  failure (:meth:`Engine.classify`), read a login's facts through an administrator's DSN
  (:meth:`Engine.admin`) and judge those facts against a tier (:meth:`Engine.judge_tier`);
- :class:`EngineSession`: one open login: the user's facts, its own or another login's
  password, an alternating pair, the sessions a user has open and ending them.

Errors: a failed login or statement is a :class:`DbConnectError` whose ``kind`` (auth, tls,
refused, timeout, missing, plugin, other) and one-line ``message`` never hold a password.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

__all__ = ["ConnectParams", "DbConnectError", "TierVerdict", "UserFacts", "SessionInfo", "EngineSession",
           "AdminInspector", "Engine", "redact", "LOOPBACK", "same_server", "left_after_wait",
           "ENGINE_FAMILIES"]

LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
#: secret ``engine`` values (RDS's and Aurora's) -> the family whose engine serves them
ENGINE_FAMILIES = {"postgres": "postgres", "postgresql": "postgres", "aurora-postgresql": "postgres",
                   "mysql": "mysql", "mariadb": "mysql", "aurora-mysql": "mysql", "aurora": "mysql"}


@dataclass(frozen=True)
class ConnectParams:
    host: str
    port: int
    dbname: str
    user: str
    password: str = field(repr=False)
    sslmode: str = "verify-full"
    sslrootcert: str | None = None
    connect_timeout: int = 10
    application_name: str = "rdsvend-canary"
    #: libpq's hostaddr: the IP to reach while TLS and the token still name ``host``
    hostaddr: str | None = None


class DbConnectError(Exception):
    """A login or a statement failed. ``kind``: auth, tls, refused, timeout, missing, plugin, other.

    The message is the server's or driver's first line with any password removed; ``errno`` is
    the MySQL error number when there is one.
    """

    def __init__(self, kind: str, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.errno = errno


@dataclass(frozen=True)
class TierVerdict:
    """An engine's judgement of a login's privileges against its tier: ``status`` is pass, fail
    or skip (no tier declared, no such login); ``details`` are what the judgement read."""

    status: str
    message: str
    fix: str = ""
    details: dict[str, Any] = field(default_factory=dict)


class UserFacts(Protocol):
    @property
    def exists(self) -> bool: ...


@dataclass(frozen=True)
class SessionInfo:
    """One open server session of a database user (PostgreSQL backend, MySQL thread)."""

    id: int
    user: str
    client: str | None = None
    application: str | None = None
    state: str | None = None


FactsT = TypeVar("FactsT")
Facts_co = TypeVar("Facts_co", covariant=True)


class EngineSession(Protocol[Facts_co]):
    def user_facts(self, user: str) -> Facts_co:
        """What the server says about ``user``: :class:`DbConnectError` when it cannot be read."""

    def current_role(self) -> str:
        """The role this session acts as (after any default role)."""

    def set_password(self, username: str, password: str) -> None:
        """Give ``username`` this password (one's own, or as an administrator), sent in a form the
        server's logs do not print."""

    def ensure_pair(self, base: str, clone: str, owner: str) -> None:
        """Administrator only: the alternating pair ``base``/``clone`` acting as ``owner``. Idempotent."""

    def sessions_of(self, user: str) -> tuple[SessionInfo, ...]:
        """The sessions ``user`` has open on the server (this one excluded)."""

    def end_sessions(self, user: str) -> int:
        """End every session of ``user`` (this one excluded); how many were ended."""

    def close(self) -> None: ...


class AdminInspector(Protocol[Facts_co]):
    def covers(self, host: str | None, port: int | None) -> bool:
        """Does the administrator connection reach this server?"""

    def user_facts(self, host: str, port: int, dbname: str, user: str, timeout: float) -> Facts_co:
        """The server's view of ``user``; :class:`DbConnectError` if the connection fails."""


class Engine(Protocol[FactsT]):
    #: the engine family: "postgres" or "mysql"
    family: str
    #: the database a login uses when the policy or the secret names none ("" = the server's default)
    default_dbname: str

    def connect(self, params: ConnectParams) -> EngineSession[FactsT]:
        """A session over verified TLS, or :class:`DbConnectError`."""

    def classify(self, exc: BaseException, *, secrets: tuple[str, ...] = ()) -> DbConnectError:
        """The driver's failure as a kind and one clean line."""

    def admin(self, dsn: str, cafile: str | None) -> AdminInspector[FactsT]:
        """An administrator's view of users through ``dsn`` (never logged)."""

    def judge_tier(self, name: str, tier: str | None, facts: FactsT) -> TierVerdict:
        """``name``'s privileges against ``tier``."""


def redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return text


def same_server(host: str | None, port: int | None, admin_host: str, admin_port: int) -> bool:
    """Does ``host:port`` name the administrator's server (loopback names count as one)?"""
    if not host or port != admin_port:
        return False
    low, admin = host.lower(), admin_host.lower()
    return low == admin or (low in LOOPBACK and admin in LOOPBACK)


def left_after_wait(count_left: Callable[[], int], seconds: float) -> int:
    """``count_left()`` once it is 0, or after ``seconds`` (asked again at growing intervals,
    10 ms to 200 ms): how many of the sessions just ended are still there."""
    give_up = time.monotonic() + seconds
    pause = 0.01
    while True:
        left = count_left()
        remaining = give_up - time.monotonic()
        if left == 0 or remaining <= 0:
            return left
        time.sleep(min(pause, remaining))
        pause = min(pause * 2, 0.2)
