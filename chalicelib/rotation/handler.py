"""The ``rotate`` function's body, apart from Chalice: parse the event, find the policy's
password user for the secret, run the step, log one line.

A failed step logs ``{"event": "rotation", "step", "secret", "outcome": "error", "error"}``
and raises :class:`RotationFailedError` carrying the same one line (so Secrets Manager sees
the step fail and retries it); no traceback frame holds a password, and no message does.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chalicelib.aws.clients import default_client_factory
from chalicelib.engines.trust import ssl_root_cert_for
from chalicelib.errors import PolicyLoadError, PolicyUnavailableError, RdsvendError
from chalicelib.observability import logger
from chalicelib.policy.model import AccessPolicy, Database, DbUser
from chalicelib.policy.password_users import secret_arn_parts
from chalicelib.policy_source import policy_source_from_env
from chalicelib.rotation.errors import RotationError, RotationStateError
from chalicelib.rotation.event import SECRET_ID, STEPS, parse_event
from chalicelib.rotation.protocol import Rotator, StepOutcome
from chalicelib.rotation.store import BotoSecretStore, SecretMeta, SecretStore
from chalicelib.settings import Settings

__all__ = ["RotationFailedError", "handle_rotation", "declared", "declared_user", "declared_database",
           "rotator_for"]


class RotationFailedError(RdsvendError):
    """A rotation step failed; the message is the one log line (step, secret, cause)."""


def declared_user(policy: AccessPolicy, meta: SecretMeta) -> DbUser | None:
    """The password user whose ``secret`` is this secret: same partition, region, account and
    name (the policy may give the ARN with or without Secrets Manager's 6-character suffix)."""
    found = declared(policy, meta)
    return found[1] if found is not None else None


def declared_database(policy: AccessPolicy, meta: SecretMeta) -> Database | None:
    """The database of :func:`declared_user`'s user."""
    found = declared(policy, meta)
    return found[0] if found is not None else None


def declared(policy: AccessPolicy, meta: SecretMeta) -> tuple[Database, DbUser] | None:
    """The database and password user that declare this secret (see :func:`declared_user`)."""
    have = secret_arn_parts(meta.arn)
    if have is None:
        return None
    for database in policy.databases.values():
        for user in database.users.values():
            if user.auth != "password" or not user.secret:
                continue
            want = secret_arn_parts(user.secret)
            if want is None or (want["partition"], want["region"], want["account"]) != (
                    have["partition"], have["region"], have["account"]):
                continue
            if user.secret == meta.arn or want["name"] in (meta.name, have["name"]):
                return database, user
    return None


def rotator_for(policy: AccessPolicy, store: SecretStore, env: Mapping[str, str]) -> Rotator:
    return Rotator(store, lambda meta: declared_user(policy, meta), ssl_root_cert=ssl_root_cert_for(policy, env),
                   timeout=min(10.0, policy.canary.timeout_seconds),
                   database_for=lambda meta: declared_database(policy, meta))


def handle_rotation(event: Any, *, policy: AccessPolicy | None = None, store: SecretStore | None = None,
                    env: Mapping[str, str] | None = None, log: Any = None) -> dict[str, str]:
    """Run one rotation step; returns ``{"step", "secret", "action"}`` or raises
    :class:`RotationFailedError` (one line, nothing secret)."""
    if log is None:
        log = logger
    env = dict(Settings.environment() if env is None else env)
    step = event.get("Step") if isinstance(event, dict) else None
    secret_id = event.get("SecretId") if isinstance(event, dict) else None
    try:
        parsed = parse_event(event)
        if policy is None:
            try:
                policy = policy_source_from_env(env).get()
            except (PolicyLoadError, PolicyUnavailableError) as exc:
                raise RotationStateError(f"the access policy does not load: {exc}") from None
        if store is None:
            store = BotoSecretStore(default_client_factory()("secretsmanager"))
        outcome: StepOutcome = rotator_for(policy, store, env).run(parsed)
    except RotationError as exc:
        # what the event says is echoed only when it is well-formed (no newline, no hostile text)
        exc.step = exc.step or (step if step in STEPS else None)
        exc.secret = exc.secret or (secret_id if isinstance(secret_id, str) and SECRET_ID.fullmatch(secret_id)
                                    else None)
        line = exc.line()
        log.error(line, extra={"event": "rotation", "step": exc.step, "secret": exc.secret,
                               "outcome": "error", "error": type(exc).__name__})
        raise RotationFailedError(line) from None
    log.info(f"rotation {outcome.step} for {outcome.secret}: {outcome.action}",
             extra={"event": "rotation", "step": outcome.step, "secret": outcome.secret, "outcome": "ok"})
    return {"step": outcome.step, "secret": outcome.secret, "action": outcome.action}
