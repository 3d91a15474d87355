"""SQLAlchemy: every new pool connection logs in with a current token.

The classic pitfall is to fetch a token once and bake it into the engine URL or a
``creator``: the pool then keeps opening connections with a token that expired fifteen
minutes later. The ``do_connect`` event runs for each new DBAPI connection, so the hook
asks the :class:`TokenClient` (cheap when cached) every time a connection is opened.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rdsvend.connect import connection_params
from rdsvend.errors import require_extra
from rdsvend.mysql import is_mysql_family, pymysql_params

if TYPE_CHECKING:  # pragma: no cover
    from sqlalchemy.engine import Engine

    from rdsvend.tokens import TokenClient

__all__ = ["install_token_hook", "create_engine"]


def install_token_hook(engine: Engine, client: TokenClient, database: str, db_user: str) -> None:
    """Give each new connection of ``engine`` host, port, dbname, user, TLS and a fresh token."""
    from sqlalchemy import event

    @event.listens_for(engine, "do_connect")
    def _provide_token(dialect: Any, conn_rec: Any, cargs: Any, cparams: dict[str, Any]) -> None:
        if dialect.name in ("mysql", "mariadb"):  # mysql+pymysql: TLS verified, cleartext auth
            mysql = pymysql_params(client.get(database, db_user))
            for key in ("host", "port", "user", "password", "ssl"):
                cparams[key] = mysql[key]
            cparams.pop("passwd", None)
            cparams.pop("db", None)
            if "database" in mysql:
                cparams["database"] = mysql["database"]
            return
        params = connection_params(client.get(database, db_user))
        for key in ("host", "port", "dbname", "user", "password"):
            if key in params:
                cparams[key] = params[key]
            else:  # no dbname from the service: the login's default database
                cparams.pop(key, None)
        cparams.pop("database", None)
        cparams.setdefault("sslmode", params["sslmode"])
        cparams.setdefault("sslrootcert", params["sslrootcert"])


def create_engine(client: TokenClient, database: str, db_user: str, **engine_kwargs: Any) -> Engine:
    """``sqlalchemy.create_engine("postgresql+psycopg://")`` with the token hook installed, or
    ``"mysql+pymysql://"`` when the database is of the MySQL family."""
    require_extra("rdsvend.sqla.create_engine()", "sqlalchemy", "sqlalchemy")
    import sqlalchemy

    mysql = is_mysql_family(client.get(database, db_user).engine)
    if mysql:
        require_extra("rdsvend.sqla.create_engine() for MySQL and MariaDB", "pymysql", "pymysql")
    else:
        require_extra("rdsvend.sqla.create_engine() for PostgreSQL", "psycopg", "psycopg")
    url = "mysql+pymysql://" if mysql else "postgresql+psycopg://"
    engine = sqlalchemy.create_engine(url, **engine_kwargs)
    install_token_hook(engine, client, database, db_user)
    return engine
