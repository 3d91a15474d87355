"""One ``auth: password`` user's checks, in order: the secret (found, rotated on time), then
the database (AWSCURRENT logs in, not an IAM-only login, privileges fit the tier) through the
engine the secret names (:mod:`.target_db`).

Role facts come from the administrator's connection when the canary has one for that server
(read before the login, so a user in ``rds_iam`` is named as such even though its login then
fails), else from the user's own password session after it logs in.
"""
from __future__ import annotations

from dataclasses import replace

from chalicelib.canary.checks_password import (
    SecretView,
    check_secret_found,
    check_secret_rotation,
)
from chalicelib.canary.model import errored, skipped
from chalicelib.canary.target_db import db_target_for, run_password_db
from chalicelib.canary.target_run import CanaryDeps, Deadline, TargetRun, guard
from chalicelib.errors import ProbeError
from chalicelib.policy.model import Database, DbUser

__all__ = ["run_password"]


def _read(deps: CanaryDeps, user: DbUser) -> SecretView | None | ProbeError:
    if deps.secrets is None:
        return ProbeError("the canary has no Secrets Manager reader configured")
    try:
        return deps.secrets.read(user.secret or "")
    except ProbeError as exc:
        return exc


def run_password(database: Database, user: DbUser, deps: CanaryDeps, deadline: Deadline, run: TargetRun,
                 rds_down: list[str]) -> None:
    guard(run, deadline, "secret.found")
    view = _read(deps, user)
    run.record(check_secret_found(user, view))
    guard(run, deadline, "secret.rotation")
    if isinstance(view, ProbeError):
        run.record(errored("secret.rotation", f"could not read the secret: {view.cause}"))
    else:
        run.record(check_secret_rotation(user, view))

    secret = view.current if isinstance(view, SecretView) and run.results["secret.found"].ok else None
    if secret is None:
        for cid in ("db.password_login", "db.not_iam", "db.tier"):
            run.record(skipped(cid, "not checked: the secret could not be read (secret.found)"))
        return
    target = db_target_for(secret.engine)
    login_user = replace(user, name=secret.username)
    run_password_db(target, secret, login_user, deps, deadline, run, database.dbname or target.default_dbname,
                    rds_down)
