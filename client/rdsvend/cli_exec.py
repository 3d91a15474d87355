"""``rdsvend exec DATABASE DB_USER [options] -- COMMAND ...``: run a program logged in.

The program is set up for the database's engine, never left to find a server of its own:

- PostgreSQL: ``PGHOST PGPORT PGUSER PGDATABASE PGPASSWORD PGSSLMODE PGSSLROOTCERT``
  (libpq reads them: ``psql``, ``pg_dump``, psycopg ...);
- MySQL and MariaDB: a private option file (:mod:`rdsvend.mysql`), passed to the MySQL
  family's own clients and named in ``RDSVEND_MYSQL_DEFAULTS_FILE`` for other programs.

A client of the other engine (``psql`` for a MariaDB database, ``mariadb`` for a PostgreSQL
one) would ignore all of that and connect to whatever server the machine runs by default:
it is refused with one line naming the database's engine, before it runs.
"""
from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from typing import NoReturn

from rdsvend.api import VendedToken
from rdsvend.cliutil import fail
from rdsvend.connect import child_env
from rdsvend.mysql import MYSQL_CLIENTS, MysqlOptionError, is_mysql_family, mysql_command

__all__ = ["POSTGRES_CLIENTS", "split_command", "engine_mismatch", "run_logged_in"]

#: libpq's own programs (and pgcli), which read the ``PG*`` environment and nothing else.
POSTGRES_CLIENTS = frozenset({
    "psql", "pg_dump", "pg_dumpall", "pg_restore", "pg_isready", "pgbench", "createdb", "dropdb",
    "createuser", "dropuser", "vacuumdb", "reindexdb", "clusterdb", "pg_basebackup", "pg_receivewal",
    "pg_recvlogical", "pg_amcheck", "vacuumlo", "oid2name", "pgcli",
})


def split_command(args: Sequence[str]) -> tuple[list[str], list[str] | None]:
    """``exec``'s arguments split at the first ``--``: (rdsvend's part, the command) or
    (all, ``None``) without one. Options such as ``--url`` may then come after the positionals."""
    words = list(args)
    if "--" not in words:
        return words, None
    at = words.index("--")
    return words[:at], words[at + 1:]


def engine_mismatch(program: str, vended: VendedToken) -> str | None:
    """One line when ``program`` is a client of the other engine than ``vended``'s database."""
    name = os.path.basename(program)
    mysql = is_mysql_family(vended.engine)
    if mysql and name in POSTGRES_CLIENTS:
        return (f"'{name}' is a PostgreSQL client and '{vended.database}' is a {vended.engine} database: "
                f"use 'rdsvend exec {vended.database} {vended.db_user} -- mariadb' (or mysql)")
    if not mysql and name in MYSQL_CLIENTS:
        return (f"'{name}' is a MySQL-family client and '{vended.database}' is a {vended.engine} database: "
                f"use 'rdsvend exec {vended.database} {vended.db_user} -- psql'")
    return None


def _run(argv: list[str], env: dict[str, str], program: str) -> int:
    try:
        completed = subprocess.run(argv, env=env, check=False)
    except FileNotFoundError:
        fail(f"command not found: '{program}'", 127)
    except PermissionError:
        fail(f"command not executable: '{program}'", 126)
    code = completed.returncode
    return 128 - code if code < 0 else code


def run_logged_in(command: list[str], vended: VendedToken) -> NoReturn:
    """Run ``command`` set up for ``vended``'s engine and exit with its status."""
    mismatch = engine_mismatch(command[0], vended)
    if mismatch is not None:
        fail(mismatch, 2)
    if not is_mysql_family(vended.engine):
        raise SystemExit(_run(command, child_env(vended, os.environ), command[0]))
    try:
        with mysql_command(command, vended) as (argv, env):
            code = _run(argv, env, command[0])
    except MysqlOptionError as exc:
        fail(str(exc), 1)
    raise SystemExit(code)
