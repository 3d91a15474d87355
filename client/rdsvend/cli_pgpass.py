"""``rdsvend pgpass DATABASE DB_USER [--file PATH] [--watch [--every SECONDS]]``.

Without ``--watch``: one token, one line written, done. With ``--watch`` the line is
refreshed at half a token's life (or ``--every``). A failure that may pass (429, 5xx, the
service unreachable) is retried with exponential backoff (2, 4, 8 ... seconds, at most 60,
never sooner than ``Retry-After``) while the last line written stays in the file. A refusal
that retrying cannot change stops the watch at once, saying why: exit 1 for the service's
``forbidden`` (denied, or an unknown database or user) or ``invalid_request``, exit 2 for
missing or refused AWS credentials.
"""
from __future__ import annotations

import argparse
import sys
import time

from rdsvend.api import VendApi, VendedToken
from rdsvend.cliutil import describe, exit_code, fail, make_api
from rdsvend.errors import VendError
from rdsvend.mysql import is_mysql_family
from rdsvend.pgpass import default_pgpass_path, write_pgpass_entry

__all__ = ["MAX_BACKOFF_SECONDS", "backoff_seconds", "is_transient", "run_pgpass"]

MAX_BACKOFF_SECONDS = 60.0


def is_transient(exc: VendError) -> bool:
    """May the same request succeed later? (throttling, the service's or AWS's failure, no answer)"""
    return exc.retryable or (exc.status is not None and exc.status >= 500)


def backoff_seconds(failures: int, retry_after: float | None) -> float:
    """The wait before retry number ``failures`` (1, 2, ...): doubling from 2 s, at most 60 s,
    never less than the service's ``Retry-After``."""
    return max(retry_after or 0.0, min(MAX_BACKOFF_SECONDS, 2.0 ** min(failures, 10)))


def _vend_once(api: VendApi, args: argparse.Namespace, failures: int) -> VendedToken | None:
    """A token, or ``None`` after a transient failure (already reported and waited for)."""
    try:
        return api.vend(args.database, args.db_user)
    except VendError as exc:
        if not args.watch:
            fail(describe(exc, args.url), exit_code(exc))
        if not is_transient(exc):
            fail(f"{describe(exc, args.url)}; stopped watching: retrying cannot change this answer",
                 exit_code(exc))
        wait = backoff_seconds(failures + 1, exc.retry_after)
        print(f"rdsvend: error: {describe(exc, args.url)}; retrying in {wait:g} s", file=sys.stderr)
        time.sleep(wait)
        return None


def _write(target: str, vended: VendedToken) -> None:
    if is_mysql_family(vended.engine):
        fail(f"pgpass is for PostgreSQL; '{vended.database}' is a {vended.engine} database: use "
             f"'rdsvend exec {vended.database} {vended.db_user} -- mariadb' or --format json", 2)
    try:
        written = write_pgpass_entry(target, vended.host, vended.port, vended.dbname, vended.db_user, vended.token)
    except (OSError, ValueError) as exc:
        detail = getattr(exc, "strerror", "") or exc
        fail(f"cannot write '{target}': {exc.__class__.__name__}: {detail}", 2)
    expires = vended.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    print(f"rdsvend: wrote {vended.host}:{vended.port}:{vended.dbname or '*'}:{vended.db_user} "
          f"to {written} (expires {expires})", file=sys.stderr)


def run_pgpass(args: argparse.Namespace) -> None:
    if args.every is not None and not args.watch:
        fail("--every needs --watch", 2)
    target = args.file or str(default_pgpass_path())
    api = make_api(args.url)
    failures = 0
    while True:
        vended = _vend_once(api, args, failures)
        if vended is None:
            failures += 1
            continue
        failures = 0
        _write(target, vended)
        if not args.watch:
            return
        half_life = max(1.0, vended.ttl_seconds / 2)
        time.sleep(min(args.every, half_life) if args.every is not None else half_life)
