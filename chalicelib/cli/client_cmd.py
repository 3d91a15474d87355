"""``rdsvend token | pgpass | passexec | exec``: a fresh token where a person or a tool needs it.

Every command makes one SigV4-signed call (the caller's usual AWS credentials) to the
rdsvend URL from ``--url`` or ``RDSVEND_URL``. A refusal from the service is one line on
stderr naming its code, exit 1; bad usage or a missing URL or credentials, exit 2.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from typing import NoReturn

import click

from chalicelib.client.api import VendApi, VendedToken, VendError
from chalicelib.client.connect import connection_params, libpq_env
from chalicelib.client.pgpass import default_pgpass_path, write_pgpass_entry

__all__ = ["token", "pgpass", "passexec", "exec_"]

_FORMATS = ("token", "json", "dsn", "env")
_LOCAL_ERRORS = frozenset({"no_credentials"})

url_option = click.option(
    "--url",
    envvar="RDSVEND_URL",
    metavar="URL",
    help="rdsvend API base URL (default: $RDSVEND_URL).",
)


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"rdsvend: error: {message}", err=True)
    sys.exit(code)


def _api(url: str | None) -> VendApi:
    if not url:
        _fail("no rdsvend URL: pass --url or set RDSVEND_URL", 2)
    try:
        return VendApi(url)
    except ValueError as exc:
        _fail(str(exc), 2)


def _vend(url: str | None, database: str, db_user: str) -> VendedToken:
    api = _api(url)
    try:
        return api.vend(database, db_user)
    except VendError as exc:
        _fail(_describe(exc), 2 if exc.code in _LOCAL_ERRORS else 1)


def _describe(exc: VendError) -> str:
    text = f"{exc.code}: {exc.message}"
    if exc.request_id:
        text += f" (request id {exc.request_id})"
    if exc.retry_after is not None and exc.retryable:
        text += f" (retry after {exc.retry_after:g} s)"
    return text


@click.command()
@click.argument("database")
@click.argument("db_user")
@click.option(
    "--format", "fmt", type=click.Choice(_FORMATS), default="token", show_default=True,
    help="token: the token only; json: the whole answer; dsn: a libpq connection string "
    "with the password; env: export lines for a shell.",
)
@url_option
def token(database: str, db_user: str, fmt: str, url: str | None) -> None:
    """Vend a token for DB_USER on DATABASE and print it."""
    vended = _vend(url, database, db_user)
    if fmt == "token":
        click.echo(vended.token)
    elif fmt == "json":
        click.echo(json.dumps(vended.to_body(), indent=2))
    elif fmt == "dsn":
        from psycopg.conninfo import make_conninfo

        click.echo(make_conninfo(**connection_params(vended)))
    else:
        for name, value in libpq_env(vended).items():
            click.echo(f"export {name}={shlex.quote(value)}")


@click.command()
@click.argument("database")
@click.argument("db_user")
@url_option
def passexec(database: str, db_user: str, url: str | None) -> None:
    """Print only the token (for pgAdmin's passexec_cmd)."""
    click.echo(_vend(url, database, db_user).token)


@click.command()
@click.argument("database")
@click.argument("db_user")
@click.option(
    "--file", "path", type=click.Path(dir_okay=False), default=None,
    help="pgpass file to update (default: $PGPASSFILE or ~/.pgpass).",
)
@click.option("--watch", is_flag=True, help="Keep running and refresh the line before it expires.")
@click.option(
    "--every", type=click.FloatRange(min=1.0), default=None, metavar="SECONDS",
    help="With --watch: refresh interval (at most half a token's life; default: half).",
)
@url_option
def pgpass(
    database: str, db_user: str, path: str | None, watch: bool, every: float | None, url: str | None
) -> None:
    """Write or refresh the line for DB_USER on DATABASE in a pgpass file."""
    if every is not None and not watch:
        _fail("--every needs --watch", 2)
    target = path or str(default_pgpass_path())
    api = _api(url)
    failures = 0
    while True:
        try:
            vended = api.vend(database, db_user)
        except VendError as exc:
            if not watch or exc.code in _LOCAL_ERRORS:
                _fail(_describe(exc), 2 if exc.code in _LOCAL_ERRORS else 1)
            failures += 1
            click.echo(f"rdsvend: error: {_describe(exc)}", err=True)
            time.sleep(max(exc.retry_after or 0.0, min(60.0, 2.0 ** failures)))
            continue
        failures = 0
        try:
            written = write_pgpass_entry(
                target, vended.host, vended.port, vended.dbname, vended.db_user, vended.token
            )
        except (OSError, ValueError) as exc:
            _fail(f"cannot write '{target}': {exc.__class__.__name__}: {getattr(exc, 'strerror', '') or exc}", 2)
        expires = vended.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        click.echo(
            f"rdsvend: wrote {vended.host}:{vended.port}:{vended.dbname}:{vended.db_user} "
            f"to {written} (expires {expires})",
            err=True,
        )
        if not watch:
            return
        half_life = max(1.0, vended.ttl_seconds / 2)
        time.sleep(min(every, half_life) if every is not None else half_life)


@click.command(name="exec", context_settings={"ignore_unknown_options": True})
@click.argument("database")
@click.argument("db_user")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@url_option
def exec_(database: str, db_user: str, command: tuple[str, ...], url: str | None) -> None:
    """Run COMMAND with PGHOST PGPORT PGUSER PGDATABASE PGPASSWORD PGSSLMODE PGSSLROOTCERT set.

    Example: rdsvend exec orders-prod orders_app -- psql -c 'select 1'
    """
    vended = _vend(url, database, db_user)
    env = {**os.environ, **libpq_env(vended)}
    try:
        completed = subprocess.run(list(command), env=env, check=False)
    except FileNotFoundError:
        _fail(f"command not found: '{command[0]}'", 127)
    except PermissionError:
        _fail(f"command not executable: '{command[0]}'", 126)
    code = completed.returncode
    sys.exit(128 - code if code < 0 else code)
