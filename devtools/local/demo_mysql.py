"""The demo's MySQL-family step: vend a token for the local MariaDB and log in with PyMySQL."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rdsvend.mysql import pymysql_params

__all__ = ["mysql_step", "MYSQL_DATABASE", "MYSQL_DB_USER"]

MYSQL_DATABASE = "shop-local"
MYSQL_DB_USER = "shop_app"


def mysql_step(demo: Any, say: Callable[..., None], failed: type[Exception]) -> None:
    import pymysql


    say(f"4b. MySQL family: the same call for {MYSQL_DB_USER} on {MYSQL_DATABASE}, a MariaDB reached like an RDS "
        "endpoint. The answer names the client plugin that carries the token (the cleartext plugin, inside "
        "TLS); the server front checks the token with the same checker as PostgreSQL's.")
    vended = demo.api().vend(MYSQL_DATABASE, MYSQL_DB_USER)
    say(f"Got a token of {len(vended.token)} characters for engine {vended.engine}, auth_plugin "
        f"{vended.auth_plugin}; DSN {vended.dsn}", 3)
    params = pymysql_params(vended, {"PGSSLROOTCERT": demo.stack.ca_path})
    conn = pymysql.connect(**params, connect_timeout=10, read_timeout=30)
    try:
        tls = conn._sock.version() if hasattr(conn._sock, "version") else None
        with conn.cursor() as cur:
            cur.execute("SELECT CURRENT_USER()")
            (user,) = cur.fetchone()
            cur.execute("SELECT name, price_cents FROM items ORDER BY id")
            rows = cur.fetchall()
    finally:
        conn.close()
    if not str(user).startswith(f"{MYSQL_DB_USER}@") or not tls:
        raise failed("the MariaDB connection is not the vended user over TLS")
    listed = ", ".join(f"{name} ({cents / 100:.2f})" for name, cents in rows)
    say(f"Connected as {user} over {tls} with the server certificate and host name verified. "
        f"SELECT name, price_cents FROM items: {listed}.", 3)
    say(f"From a shell: rdsvend exec {MYSQL_DATABASE} {MYSQL_DB_USER} -- mariadb -e 'SELECT * FROM items' "
        "(the token goes to a private option file, never the command line).", 3)
