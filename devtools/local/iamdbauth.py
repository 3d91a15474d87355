"""What RDS does around the token check: IAM auth switched off, throttling, the error log, metrics.

:class:`IamAuthGuard` wraps :class:`~devtools.local.rdsauth.RdsTokenChecker` (same ``check(user,
token)``), so every engine front of the local stack (PostgreSQL through the LDAP responder, the
MySQL family) gets the same behaviour:

- an instance whose ``IAMDatabaseAuthenticationEnabled`` is false (read live from the local
  AWS's RDS, e.g. after ``modify-db-instance --no-enable-iam-database-authentication``) refuses
  every token; as on RDS, such a login is not an IAM DB authentication request (no log line,
  no metric);
- past the instance's rate of new IAM logins per second (the world's
  ``iam_auth_logins_per_second``, default 200, as on RDS), a login is refused with
  ``ThrottlingException`` before its token is looked at;
- every refused login is written in the line format of RDS's ``iam-db-auth-error`` export to
  ``/aws/rds/instance/ID/iam-db-auth-error`` of the database's account, when the instance
  exports that log type (read live too);
- ``IamDbAuthConnection*`` metrics go to ``AWS/RDS`` with dimension ``DBInstanceIdentifier``.

Log lines and metrics go through a :class:`~devtools.local.cwlogs.CloudWatchSink` (queued, never
blocking a login). The token never appears anywhere.

Which instance a login is for: the front's hint when it knows (``instance=``), else the host and
port the token is signed for, else the only instance with that IAM user, else the only instance.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from chalicelib.attribution.refusals import (
    METRIC_NAMESPACE,
    REQUESTS,
    SUCCESS,
    failure_metrics,
    log_group_for,
    refusal_line,
)
from devtools.local.cwlogs import LogLine, MetricCount, Sink
from devtools.local.rdsauth import TokenVerdict

__all__ = ["InstanceAuth", "TokenChecker", "InstanceState", "IamAuthGuard", "error_code_for", "moto_instance_state",
           "DEFAULT_LOGINS_PER_SECOND"]

log = logging.getLogger(__name__)

DEFAULT_LOGINS_PER_SECOND = 200


@dataclass(frozen=True)
class InstanceAuth:
    """One local instance as the guard sees it."""

    identifier: str
    account: str
    region: str
    host: str
    port: int
    iam_users: frozenset[str] = frozenset()
    kind: str = "instance"  # or "cluster"
    logins_per_second: int = DEFAULT_LOGINS_PER_SECOND


@dataclass(frozen=True)
class InstanceState:
    iam_auth_enabled: bool
    log_exports: tuple[str, ...]


#: identifier -> its live state (``None``: the instance is gone)
StateReader = Callable[[InstanceAuth], "InstanceState | None"]


def error_code_for(verdict: TokenVerdict) -> str:
    """The error code RDS's log gives a refused login with this verdict."""
    reason = verdict.reason
    if reason == "signature:expired":
        return "ExpiredToken"
    if reason.startswith("not_permitted") or reason == "wrong_account":
        return "NotAuthorized"
    if reason.startswith("could_not_check"):
        return "InternalError"
    return "InvalidToken"


def moto_instance_state(partition: str = "aws") -> StateReader:
    """Reads an instance's IAM auth switch and log exports from moto's in-process backends
    (the moto server runs in this process): always live, no API call, no cache to go stale."""

    def read(inst: InstanceAuth) -> InstanceState | None:
        from moto.rds.models import rds_backends

        backend = rds_backends[inst.account][inst.region]
        found = (backend.clusters if inst.kind == "cluster" else backend.databases).get(inst.identifier)
        if found is None:
            return None
        enabled = getattr(found, "enable_iam_database_authentication", None)
        if enabled is None:
            enabled = getattr(found, "iam_auth", False)
        exports = tuple(getattr(found, "enabled_cloudwatch_logs_exports", None) or ())
        return InstanceState(bool(enabled), exports)

    return read


class _Window:
    """New logins in the last second, for one instance."""

    def __init__(self) -> None:
        self.times: deque[float] = deque()
        self.lock = threading.Lock()

    def admit(self, now: float, limit: int) -> bool:
        with self.lock:
            while self.times and now - self.times[0] >= 1.0:
                self.times.popleft()
            if len(self.times) >= limit:
                return False
            self.times.append(now)
            return True


class TokenChecker(Protocol):
    """What the guard asks for a verdict: :class:`devtools.local.rdsauth.RdsTokenChecker` (or a stand-in)."""

    def verify(self, user: str, token: str) -> TokenVerdict: ...


class IamAuthGuard:
    """``check(user, token, instance=None) -> bool`` with RDS's behaviour around the checker."""

    def __init__(self, checker: TokenChecker, instances: Mapping[str, InstanceAuth], *, sink: Sink | None,
                 state: StateReader | None = None, monotonic: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self._checker = checker
        self._instances = dict(instances)
        self._sink = sink
        self._state = state or moto_instance_state()
        self._monotonic = monotonic
        self._wall = wall
        self._windows = {ident: _Window() for ident in self._instances}

    def check(self, user: str, token: str, instance: str | None = None) -> bool:
        return self.verify(user, token, instance).allowed

    __call__ = check

    def verify(self, user: str, token: str, instance: str | None = None) -> TokenVerdict:
        """The verdict for one login; never raises (a failure to decide is a refusal)."""
        inst = self._instance_for(user, token, instance)
        if inst is None:
            verdict = self._checker.verify(user, token)
            self._log(verdict)
            return verdict
        try:
            state = self._state(inst)
        except Exception as exc:  # noqa: BLE001 - fail closed
            log.warning("rds token login refused: could not read instance %s: %s", inst.identifier,
                        type(exc).__name__)
            state = None
        if state is None or not state.iam_auth_enabled:
            why = "instance_unknown" if state is None else "iam_auth_disabled"
            log.warning("rds token login refused: user=%r reason=%s instance=%s", user, why, inst.identifier)
            return TokenVerdict(False, why, user, instance=inst.identifier)
        if not self._windows[inst.identifier].admit(self._monotonic(), inst.logins_per_second):
            verdict = TokenVerdict(False, "throttled", user, instance=inst.identifier)
            self._record(inst, state, verdict, "ThrottlingException")
            return verdict
        verdict = self._checker.verify(user, token)
        self._log(verdict)
        self._record(inst, state, verdict, None if verdict.allowed else error_code_for(verdict))
        return verdict

    # -- which instance ---------------------------------------------------------------------------
    def _instance_for(self, user: str, token: str, hint: str | None) -> InstanceAuth | None:
        if hint is not None:
            return self._instances.get(hint)
        try:
            parts = urlsplit(token if "://" in token[:16] else f"https://{token}")
            host, port = (parts.hostname or "").lower(), parts.port
        except ValueError:
            host, port = "", None
        for inst in self._instances.values():
            if port == inst.port and host == inst.host.lower():
                return inst
        with_user = [i for i in self._instances.values() if user in i.iam_users]
        if len(with_user) == 1:
            return with_user[0]
        return next(iter(self._instances.values())) if len(self._instances) == 1 else None

    # -- what RDS reports -------------------------------------------------------------------------
    @staticmethod
    def _log(verdict: TokenVerdict) -> None:
        if verdict.allowed:
            log.info("rds token login accepted: user=%r principal=%s instance=%s",
                     verdict.user, verdict.principal, verdict.instance)
        else:
            log.warning("rds token login refused: user=%r reason=%s principal=%s instance=%s",
                        verdict.user, verdict.reason, verdict.principal, verdict.instance)

    def _record(self, inst: InstanceAuth, state: InstanceState, verdict: TokenVerdict, code: str | None) -> None:
        if self._sink is None:
            return
        now = self._wall()
        names = (REQUESTS, SUCCESS) if code is None else failure_metrics(code)
        dims = (("DBInstanceIdentifier", inst.identifier),) if inst.kind != "cluster" else \
            (("DBClusterIdentifier", inst.identifier),)
        for name in names:
            self._sink.put(MetricCount(inst.account, inst.region, METRIC_NAMESPACE, name, dims, 1.0, now))
        if code is not None and "iam-db-auth-error" in state.log_exports:
            caller = verdict.principal if code == "NotAuthorized" else None
            self._sink.put(LogLine(inst.account, log_group_for(inst.identifier, inst.kind), inst.identifier,
                                   refusal_line(code, verdict.user, caller), int(now * 1000)))
