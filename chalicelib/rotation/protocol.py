"""The Secrets Manager rotation protocol: four steps, each idempotent (Secrets Manager retries
a step until it succeeds, and a rotation may be resumed after any of them).

Before any step: rotation must be enabled on the secret and the token must be a version of it
staged AWSPENDING (a version already AWSCURRENT means the rotation is done: nothing to do), and
no other version may be AWSPENDING without being AWSCURRENT (another rotation in flight: the
rule RotateSecret applies, so two rotations never interleave).

Every secret the rotation logs in with (AWSPENDING, AWSCURRENT, AWSPREVIOUS, the master
secret) must name the same engine, host and port as AWSPENDING (and, for single-user, the same
username), and AWSPENDING must name the access policy's database (its engine, and its host and
port where the policy gives them): otherwise the step refuses with one line naming the field,
before it changes anything. A password set in setSecret is proven at once by logging in with
AWSPENDING; when that fails the old password is put back, so a password is never left where
no labelled version logs in.

- ``createSecret``: AWSPENDING gets a copy of AWSCURRENT with a new random password (and, for
  alternating users, the other login of the pair); an existing AWSPENDING value is kept.
- ``setSecret``: the database gets the pending password. Single-user: logs in with AWSPENDING
  first (already set: done), else AWSCURRENT, else AWSPREVIOUS (a rotation interrupted after
  setSecret), and changes its own password. Alternating users: logs in as the administrator
  (the ``masterarn`` secret), makes sure of the pair (:meth:`DbSession.ensure_pair`) and sets
  the other login's password; the login in AWSCURRENT is never touched.
- ``testSecret``: logs in with AWSPENDING (TLS verify-full) and judges the login's privileges
  by its tier (``db.tier``'s rules); alternating logins must act as the pair's owner role.
- ``finishSecret``: AWSCURRENT moves to the token's version (AWSPREVIOUS follows by itself).

Single-user rotation and the window between setSecret and finishSecret: PostgreSQL and
MariaDB hold one password per login, so from setSecret until finishSecret only the AWSPENDING
password works. The password is changed only in setSecret (never in createSecret), and
rdsvend's client retries once with AWSPENDING when AWSCURRENT is refused, so a client never
sees a window where neither works; an interrupted rotation is resumed from AWSPREVIOUS.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from chalicelib.engines.base import ENGINE_FAMILIES
from chalicelib.engines.secret import DbSecret, base_of, clone_of, owner_role_of
from chalicelib.policy.model import Database, DbUser
from chalicelib.rotation.engines import DbEngine, DbSession, engine_for
from chalicelib.rotation.errors import (
    RotationDbError,
    RotationError,
    RotationSecretError,
    RotationStateError,
    RotationTestError,
)
from chalicelib.rotation.event import RotationEvent
from chalicelib.rotation.secret import first_difference, login_fields, parse_secret
from chalicelib.rotation.store import SecretMeta, SecretStore

__all__ = ["Rotator", "StepOutcome"]


@dataclass(frozen=True)
class StepOutcome:
    step: str
    secret: str  # the secret's ARN
    action: str  # what the step did, in words (never a password)


class Rotator:
    """Runs one step of one rotation. ``user_for(meta)`` finds the access policy's password user
    that declares this secret (None: not declared, so not rotated)."""

    def __init__(self, store: SecretStore, user_for: Callable[[SecretMeta], DbUser | None], *,
                 ssl_root_cert: str | None = None, timeout: float = 10.0,
                 engine_for_secret: Callable[[DbSecret], DbEngine] = engine_for,
                 database_for: Callable[[SecretMeta], Database | None] | None = None) -> None:
        self._store = store
        self._user_for = user_for
        self._database_for = database_for
        self._ssl_root_cert = ssl_root_cert
        self._timeout = timeout
        self._engine_for = engine_for_secret

    def run(self, event: RotationEvent) -> StepOutcome:
        meta: SecretMeta | None = None
        try:
            meta = self._store.describe(event.secret_id)
            user = self._check_state(meta, event.token)
            if user is None:
                return StepOutcome(event.step, meta.arn, "nothing to do: the version is already AWSCURRENT")
            action = getattr(self, "_" + event.step)(meta, event.token, user)
            return StepOutcome(event.step, meta.arn, action)
        except RotationError as exc:
            exc.step = exc.step or event.step
            exc.secret = exc.secret or (meta.arn if meta is not None else event.secret_id)
            raise

    # -- the state every step starts from --------------------------------------------------------
    def _check_state(self, meta: SecretMeta, token: str) -> DbUser | None:
        if not meta.rotation_enabled:
            raise RotationStateError("rotation is not enabled on the secret")
        stages = meta.versions.get(token)
        if stages is None:
            raise RotationStateError(f"version {token} is not a version of the secret")
        user = self._user_for(meta)
        if user is None or user.auth != "password":
            raise RotationStateError("no auth: password user of the access policy declares this secret")
        if "AWSCURRENT" in stages:
            return None
        if "AWSPENDING" not in stages:
            raise RotationStateError(f"version {token} is not staged AWSPENDING")
        other = next((vid for vid, labels in meta.versions.items()
                      if vid != token and "AWSPENDING" in labels and "AWSCURRENT" not in labels), None)
        if other is not None:
            raise RotationStateError(
                f"version {other} is AWSPENDING too: another rotation is in flight; let it finish, or end it "
                f"with: aws secretsmanager update-secret-version-stage --secret-id {meta.arn} "
                f"--version-stage AWSPENDING --remove-from-version-id {other}")
        return user

    def _secret(self, secret_id: str, stage: str, version_id: str | None = None, *,
                what: str | None = None) -> DbSecret | None:
        text = self._store.value(secret_id, stage=stage, version_id=version_id)
        if text is None:
            return None
        return parse_secret(text, what=what or f"the {stage} value")

    def _current(self, meta: SecretMeta) -> DbSecret:
        current = self._secret(meta.arn, "AWSCURRENT")
        if current is None:
            raise RotationStateError("the secret has no AWSCURRENT value")
        return current

    def _pending(self, meta: SecretMeta, token: str) -> DbSecret:
        pending = self._secret(meta.arn, "AWSPENDING", token)
        if pending is None:
            raise RotationStateError(f"version {token} has no AWSPENDING value: run createSecret first")
        return pending

    def _login(self, secret: DbSecret) -> DbSession:
        return self._engine_for(secret).login(secret, ssl_root_cert=self._ssl_root_cert, timeout=self._timeout)

    def _try_login(self, secret: DbSecret | None) -> DbSession | None:
        if secret is None:
            return None
        try:
            return self._login(secret)
        except RotationDbError as exc:
            if exc.kind == "auth":
                return None
            raise

    # -- the four steps ----------------------------------------------------------------------------
    def _createSecret(self, meta: SecretMeta, token: str, user: DbUser) -> str:  # AWS's step name
        current = self._current(meta)
        self._check_login_name(current, user)
        if self._secret(meta.arn, "AWSPENDING", token) is not None:
            return "AWSPENDING already holds a new password"
        if user.rotation == "alternating-users":
            if current.masterarn is None:
                raise RotationSecretError("alternating-users rotation needs 'masterarn' in the secret")
            base = base_of(current.username)
            username = base if current.username != base else clone_of(base)
        else:
            username = current.username
        pending = current.with_login(username, self._store.random_password())
        self._store.put_pending(meta.arn, token, pending.to_json())
        return f"AWSPENDING created for login {username}"

    def _setSecret(self, meta: SecretMeta, token: str, user: DbUser) -> str:  # named after the Secrets Manager step
        pending = self._pending(meta, token)
        current = self._current(meta)
        self._check_login_name(pending, user)
        self._check_policy_place(meta, pending)
        if user.rotation == "alternating-users":
            _check_same("AWSCURRENT", current, pending, username=False)
            return self._set_alternating(meta, pending, current)
        _check_same("AWSCURRENT", current, pending, username=True)
        session = self._try_login(pending)
        if session is not None:
            session.close()
            return "the database already has the AWSPENDING password"
        previous = self._secret(meta.arn, "AWSPREVIOUS")
        for label, secret in (("AWSCURRENT", current), ("AWSPREVIOUS", previous)):
            if secret is None:
                continue
            _check_same(label, secret, pending, username=True)  # the server changed is the one AWSPENDING names
            session = self._try_login(secret)
            if session is None:
                continue
            try:
                session.set_password(pending.username, pending.password)
                self._prove(pending, session, secret)
            finally:
                session.close()
            return f"password of {pending.username} changed (logged in with {label})"
        raise RotationDbError(f"cannot log in as {pending.username} with AWSPENDING, AWSCURRENT or AWSPREVIOUS",
                              kind="auth")

    def _prove(self, pending: DbSecret, session: DbSession, old: DbSecret) -> None:
        """Log in with AWSPENDING right after setting its password; when that fails, put the old
        password back through ``session`` (still logged in) and refuse."""
        try:
            proof = self._login(pending)
        except RotationDbError as exc:
            session.set_password(old.username, old.password)
            raise RotationDbError(f"AWSPENDING does not log in after its password was set ({exc.kind}): "
                                  "the old password was put back", kind=exc.kind) from None
        proof.close()

    def _check_policy_place(self, meta: SecretMeta, pending: DbSecret) -> None:
        """AWSPENDING names the policy's database: its engine, and its host and port when given."""
        database = self._database_for(meta) if self._database_for is not None else None
        if database is None:
            return
        where = f"the access policy's database '{database.name}'"
        if ENGINE_FAMILIES.get(database.engine) != pending.family:
            raise RotationSecretError(f"AWSPENDING names engine '{pending.engine}', {where} is {database.engine}")
        if database.host is not None and database.host.lower().rstrip(".") != login_fields(pending)["host"]:
            raise RotationSecretError(f"AWSPENDING names host '{pending.host}', {where} host '{database.host}'")
        if database.port is not None and database.port != pending.port:
            raise RotationSecretError(f"AWSPENDING names port {pending.port}, {where} port {database.port}")

    def _set_alternating(self, meta: SecretMeta, pending: DbSecret, current: DbSecret) -> str:
        if pending.username == current.username:
            raise RotationSecretError("alternating-users rotation must switch to the other login of the pair")
        masterarn = pending.masterarn or current.masterarn
        if masterarn is None:
            raise RotationSecretError("alternating-users rotation needs 'masterarn' in the secret")
        master = self._secret(masterarn, "AWSCURRENT", what="the master secret")
        if master is None:
            raise RotationStateError("the master secret has no AWSCURRENT value")
        _check_same("the master secret", master, pending, username=False)
        # the administrator works in the secret's database: privileges and ownership are per database
        admin = self._login(_with_dbname(master, pending.dbname or master.dbname))
        base = base_of(pending.username)
        try:
            admin.ensure_pair(base, clone_of(base), owner_role_of(base))
            admin.set_password(pending.username, pending.password)
        finally:
            admin.close()
        return f"pair {base}/{clone_of(base)} ready, password of {pending.username} set"

    def _testSecret(self, meta: SecretMeta, token: str, user: DbUser) -> str:  # named after the Secrets Manager step
        pending = self._pending(meta, token)
        session = self._login(pending)
        try:
            verdict = session.tier_check(pending.username, user.tier)
            if verdict.status in ("fail", "error"):
                raise RotationTestError(f"AWSPENDING logs in as {pending.username}, but {verdict.message}")
            if user.rotation == "alternating-users":
                owner = owner_role_of(base_of(pending.username))
                acting = session.current_role()
                if acting != owner:
                    raise RotationTestError(f"{pending.username} acts as {acting}, not as the pair's owner role "
                                            f"{owner}: objects it creates would not be readable by the other login")
        finally:
            session.close()
        return f"AWSPENDING logs in as {pending.username}; {verdict.message}"

    def _finishSecret(self, meta: SecretMeta, token: str, user: DbUser) -> str:  # named after the Secrets Manager step
        current = meta.version_with("AWSCURRENT")
        self._store.move_current(meta.arn, token, current)
        return f"AWSCURRENT moved to version {token}"

    @staticmethod
    def _check_login_name(secret: DbSecret, user: DbUser) -> None:
        if base_of(secret.username) != user.name and secret.username != user.name:
            raise RotationSecretError(f"the secret's username '{secret.username}' is not the policy's user "
                                      f"'{user.name}' (or its clone)")


def _check_same(label: str, secret: DbSecret, pending: DbSecret, *, username: bool) -> None:
    """Refuse, naming the field, when ``secret`` (which the step would log in with) does not name
    the server (and, with ``username``, the login) AWSPENDING names."""
    difference = first_difference(secret, pending, username=username)
    if difference is not None:
        name, have, want = difference
        raise RotationSecretError(f"{label} names {name} '{have}' where AWSPENDING names '{want}': a password "
                                  f"set through it could not be proven; make the versions agree")


def _with_dbname(secret: DbSecret, dbname: str | None) -> DbSecret:
    return replace(secret, dbname=dbname)
