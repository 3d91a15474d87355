"""Check an RDS IAM authentication token the way RDS does, for the local PostgreSQL.

A token is ``host:port/?Action=connect&DBUser=USER&X-Amz-...``, presigned with SigV4 for the
service ``rds-db``. RDS accepts it when, all at once:

- the signature is valid for a key the account knows (long-term or STS session credentials,
  whose session token must come with it);
- it is for this instance: the signed ``host:port`` is one of the instance's names and its
  port, the region is the instance's;
- ``Action`` is ``connect`` and ``DBUser`` is the user logging in;
- ``X-Amz-Expires`` is at most 900 s and has not run out; it is not signed further in the
  future than the allowed skew;
- the signer is in the instance's account (RDS has no cross-account IAM authentication);
- the signer may ``rds-db:connect`` to ``arn:aws:rds-db:REGION:ACCOUNT:dbuser:RESOURCE_ID/USER``.

:class:`RdsTokenChecker` is the ``check(user, password)`` the LDAP responder calls. Every
refusal is logged with its reason; the token never is.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from chalicelib.aws.arn import dbuser_arn
from chalicelib.clock import SYSTEM_CLOCK, Clock
from devtools.local.sigv4 import Credential, SecretLookup, SignatureError, VerifiedRequest, verify_presigned

__all__ = ["RdsInstance", "RdsTokenChecker", "TokenVerdict", "PermissionCheck", "dbuser_arn"]

log = logging.getLogger(__name__)

SERVICE = "rds-db"
MAX_EXPIRES = 900

#: ``(credential, dbuser_arn) -> (allowed, reason)``: may this signer connect as that user?
PermissionCheck = Callable[[Credential, str], "tuple[bool, str]"]


@dataclass(frozen=True)
class RdsInstance:
    """What RDS knows about the instance a token must be for.

    ``hosts`` are the names clients may connect by (``localhost``, ``127.0.0.1``, the RDS
    endpoint name); compared without case, as DNS names are.
    """

    region: str
    account: str
    resource_id: str
    hosts: frozenset[str]
    port: int
    identifier: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "hosts", frozenset(h.strip().lower().rstrip(".") for h in self.hosts if h.strip()))
        if not self.hosts:
            raise ValueError("an RDS instance needs at least one host name")
        if not 0 < int(self.port) < 65536:
            raise ValueError(f"port {self.port!r} is not a TCP port")

    def accepts(self, host: str, port: int) -> bool:
        return port == self.port and host.lower() in self.hosts

    def dbuser_arn(self, user: str) -> str:
        return dbuser_arn(self.region, self.account, self.resource_id, user)


@dataclass(frozen=True)
class TokenVerdict:
    """The outcome of one login: ``allowed``, and a reason for the log (never the token)."""

    allowed: bool
    reason: str
    user: str
    principal: str | None = None
    instance: str | None = None
    dbuser_arn: str | None = field(default=None)


def _split_host(signed_host: str) -> tuple[str, int] | None:
    host, sep, port = signed_host.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return None
    return host.lower().rstrip("."), int(port)


class RdsTokenChecker:
    """``check(user, token) -> bool`` for the LDAP responder, for one or more instances.

    ``endpoints`` maps an instance identifier to its :class:`RdsInstance` (one per listening
    cluster; several only if they share a port under different names). A single
    :class:`RdsInstance` is accepted too.
    """

    def __init__(
        self,
        lookup: SecretLookup,
        *,
        endpoints: Mapping[str, RdsInstance] | RdsInstance,
        permission_check: PermissionCheck,
        clock: Clock = SYSTEM_CLOCK,
        max_skew: timedelta = timedelta(minutes=5),
    ) -> None:
        instances: Iterable[RdsInstance]
        if isinstance(endpoints, RdsInstance):
            instances = [endpoints]
        else:
            instances = [
                inst if inst.identifier
                else RdsInstance(inst.region, inst.account, inst.resource_id, inst.hosts, inst.port, key)
                for key, inst in endpoints.items()
            ]
        self._instances = tuple(instances)
        if not self._instances:
            raise ValueError("the token checker needs at least one instance")
        seen: set[tuple[str, int]] = set()
        for inst in self._instances:
            for host in inst.hosts:
                if (host, inst.port) in seen:
                    raise ValueError(f"'{host}:{inst.port}' belongs to two instances")
                seen.add((host, inst.port))
        self._lookup = lookup
        self._permission_check = permission_check
        self._clock = clock
        self._max_skew = max_skew

    def check(self, user: str, token: str) -> bool:
        """``True`` only when RDS would accept ``token`` for ``user``; logs why not."""
        verdict = self.verify(user, token)
        if verdict.allowed:
            log.info("rds token login accepted: user=%r principal=%s instance=%s",
                     verdict.user, verdict.principal, verdict.instance)
        else:
            log.warning("rds token login refused: user=%r reason=%s principal=%s instance=%s",
                        verdict.user, verdict.reason, verdict.principal, verdict.instance)
        return verdict.allowed

    __call__ = check

    def verify(self, user: str, token: str) -> TokenVerdict:
        """The full verdict for one login. Never raises; a failure to check is a refusal."""
        try:
            return self._verify(user, token)
        except Exception as exc:  # noqa: BLE001 - fail closed on anything unexpected
            return TokenVerdict(False, f"could_not_check:{type(exc).__name__}", user)

    def _verify(self, user: str, token: str) -> TokenVerdict:
        try:
            verified = verify_presigned(
                token, service=SERVICE, lookup=self._lookup, now=self._clock.now(),
                max_expires=MAX_EXPIRES, max_skew=self._max_skew,
            )
        except SignatureError as exc:
            return TokenVerdict(False, f"signature:{exc.reason}", user)
        principal = verified.credential.principal_arn
        bound = _split_host(verified.host)
        instance = next((i for i in self._instances if bound and i.accepts(*bound)), None)
        if instance is None:
            return TokenVerdict(False, "wrong_host", user, principal)
        name = instance.identifier or None
        mismatch = _mismatch(verified, instance, user)
        if mismatch is not None:
            return TokenVerdict(False, mismatch, user, principal, name)
        arn = instance.dbuser_arn(user)
        allowed, why = self._permission_check(verified.credential, arn)
        if allowed is not True:
            return TokenVerdict(False, f"not_permitted:{why}", user, principal, name, arn)
        return TokenVerdict(True, f"permitted:{why}", user, principal, name, arn)


def _mismatch(verified: VerifiedRequest, instance: RdsInstance, user: str) -> str | None:
    """What the token is bound to that this login is not, in the order RDS is taken to check
    (the instance's account and region, then the request: ``/?Action=connect&DBUser=user``)."""
    params = verified.params
    checks = (
        ("wrong_account", verified.credential.account == instance.account),
        ("wrong_region", verified.region == instance.region),
        ("wrong_path", verified.path == "/"),
        ("unexpected_parameters", set(params) == {"Action", "DBUser"}),
        ("wrong_action", params.get("Action") == "connect"),
        ("wrong_user", params.get("DBUser") == user),
    )
    return next((reason for reason, holds in checks if not holds), None)
