"""``rdsvend rotate DATABASE DB_USER``: rotate a password user's secret now.

In AWS: Secrets Manager's RotateSecret (which invokes the ``rotate`` function four times),
then wait until the new version is AWSCURRENT. On the local stack (``AWS_ENDPOINT_URL`` on
loopback, or ``--local``), whose AWS cannot invoke Lambda: the same four steps, run here
against the local Secrets Manager by the function's own code. Either way, the new AWSCURRENT
must then log in over TLS verify-full.

Exit codes: 0 the new AWSCURRENT logs in, 1 the rotation or that login failed, 2 bad usage
(unknown database or user, not an ``auth: password`` user, a policy that does not load).
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import click

from devtools.cli.common import fail, load_policy, policy_option, quiet_service_logs

__all__ = ["rotate", "on_local_stack"]

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def on_local_stack(env: dict[str, str] | os._Environ[str]) -> bool:
    """The local stack's shell (``eval "$(rdsvend local env)"``) points AWS at loopback."""
    host = urlsplit(env.get("AWS_ENDPOINT_URL") or "").hostname
    return host in _LOOPBACK


def _client(region: str) -> Any:
    import boto3

    return boto3.session.Session().client("secretsmanager", region_name=region)


def _rotate_in_aws(client: Any, arn: str, wait: float) -> None:
    from chalicelib.aws.errors import aws_error

    try:
        token = client.rotate_secret(SecretId=arn)["VersionId"]
    except Exception as exc:
        error = aws_error(exc)
        if error is None:
            raise
        fail(f"RotateSecret failed for {arn}: {error.code}", 1)
    deadline = time.monotonic() + wait
    pause = 0.25  # a quick rotation is seen at once; a slow one is asked about every 2 s
    while True:
        try:
            stages = client.describe_secret(SecretId=arn).get("VersionIdsToStages", {})
        except Exception as exc:
            if aws_error(exc) is None:
                raise
            fail(f"DescribeSecret failed for {arn}: {type(exc).__name__}", 1)
        if "AWSCURRENT" in stages.get(token, ()):
            return
        if time.monotonic() > deadline:
            fail(f"version {token} of {arn} is not AWSCURRENT after {wait:g} s: read the rotate "
                  "function's log (it names the step that failed)", 1)
        time.sleep(pause)
        pause = min(2.0, pause * 2)


class _Quiet:
    """The function logs JSON for CloudWatch; at a terminal, its one error line goes to stderr."""

    def info(self, *_: Any, **__: Any) -> None:
        pass

    error = info


@click.command("rotate")
@click.argument("database")
@click.argument("db_user")
@policy_option
@click.option("--local/--aws", "local", default=None,
              help="run the four steps here against the local stack's Secrets Manager (default when "
                   "AWS_ENDPOINT_URL is on loopback), or call RotateSecret in AWS")
@click.option("--wait", type=click.FloatRange(min=1, max=3600), default=300.0, show_default=True,
              help="AWS: seconds to wait for the new version to become AWSCURRENT")
@click.option("--resume", is_flag=True,
              help="local stack: finish a rotation in flight (one that was interrupted) instead of refusing")
def rotate(database: str, db_user: str, policy_path: str | None, local: bool | None, wait: float,
           resume: bool) -> None:
    """Rotate the password of DB_USER (an auth: password user) of DATABASE now."""
    from chalicelib.engines.trust import ssl_root_cert_for
    from chalicelib.policy.password_users import secret_arn_parts
    from chalicelib.rotation.engines import engine_for
    from chalicelib.rotation.errors import RotationError
    from chalicelib.rotation.handler import RotationFailedError
    from chalicelib.rotation.store import BotoSecretStore

    policy = load_policy(policy_path)
    db = policy.databases.get(database)
    if db is None:
        fail(f"unknown database '{database}' in {policy.source}")
    user = db.users.get(db_user)
    if user is None:
        fail(f"unknown db user '{db_user}' of database '{database}' in {policy.source}")
    if user.auth != "password" or not user.secret:
        fail(f"'{db_user}' of '{database}' is an auth: {user.auth} user; only auth: password users are rotated")
    parts = secret_arn_parts(user.secret)
    assert parts is not None  # the loader checked it
    env = dict(os.environ)
    local = on_local_stack(env) if local is None else local
    quiet_service_logs()
    client = _client(parts["region"])
    try:
        if local:
            from devtools.local.secrets import rotate_locally

            # moto matches a secret by its full ARN or its name: the policy's ARN may lack the suffix
            rotate_locally(parts["name"], client, policy=policy, env=env, log_to=_Quiet(), resume=resume)
        else:
            _rotate_in_aws(client, user.secret, wait)
        secret_id = parts["name"] if local else user.secret
        store = BotoSecretStore(client)
        from chalicelib.rotation.secret import parse_secret

        current = parse_secret(store.value(secret_id, stage="AWSCURRENT"), what="AWSCURRENT")
        session = engine_for(current).login(current, ssl_root_cert=ssl_root_cert_for(policy, env),
                                            timeout=policy.canary.timeout_seconds)
        session.close()
    except RotationFailedError as exc:
        fail(str(exc), 1)
    except RotationError as exc:
        fail(f"after the rotation of {user.secret}: {exc.message}", 1)
    click.echo(f"{database}/{db_user}: rotated ({user.rotation}); AWSCURRENT logs in as {current.username} "
               f"over TLS verify-full")
    sys.exit(0)
