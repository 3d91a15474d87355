"""Connections for password users (users that cannot use IAM auth), whose password lives in
a Secrets Manager secret that rdsvend rotates.

:class:`PasswordSource` reads the secret with botocore: AWSCURRENT, cached (``ttl`` seconds),
and AWSPENDING on demand. :func:`connect_password` logs in with AWSCURRENT over TLS
(``verify-full`` for PostgreSQL, verified CA and host name for the MySQL family) and, when the
database refuses the password, retries once with AWSPENDING: during a rotation the database
has the new password from setSecret until finishSecret makes it AWSCURRENT, and after
finishSecret a cached AWSCURRENT is the old one.

>>> from rdsvend import connect_password
>>> arn = "arn:aws:secretsmanager:us-east-1:222222222222:secret:rdsvend/orders/reports"
>>> conn = connect_password(arn)  # doctest: +SKIP
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rdsvend.errors import RdsvendClientError
from rdsvend.trust import ssl_root_cert_path, tls_context

__all__ = ["DbLogin", "PasswordSource", "SecretReadError", "connect_password", "is_auth_failure"]

_MYSQL_ENGINES = frozenset({"mysql", "mariadb", "aurora-mysql", "aurora"})


class SecretReadError(RdsvendClientError):
    """The secret could not be read, or is not a database secret (RDS convention). The message
    names the secret and the field, never the password."""


@dataclass(frozen=True)
class DbLogin:
    """One version of the secret: where to connect and as whom. ``repr`` hides the password."""

    engine: str
    host: str
    port: int
    username: str
    password: str = field(repr=False)
    dbname: str | None = None

    @property
    def mysql_family(self) -> bool:
        return self.engine in _MYSQL_ENGINES


def _parse(text: Any, where: str) -> DbLogin:
    try:
        data = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise SecretReadError(f"{where} is not a JSON object")
    for key in ("engine", "host", "username", "password"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise SecretReadError(f"{where} has no string '{key}'")
    port = data.get("port", 3306 if data["engine"] in _MYSQL_ENGINES else 5432)
    try:
        port = int(port)
    except (TypeError, ValueError):
        raise SecretReadError(f"{where} has an invalid 'port'") from None
    dbname = data.get("dbname")
    return DbLogin(engine=data["engine"], host=data["host"], port=port, username=data["username"],
                   password=data["password"], dbname=dbname if isinstance(dbname, str) else None)


class PasswordSource:
    """A password user's secret. ``client``: a botocore ``secretsmanager`` client (default: one
    from botocore's default session, in the secret ARN's region). Thread-safe."""

    def __init__(self, secret_id: str, *, client: Any = None, region: str | None = None, ttl: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.secret_id = secret_id
        self._client = client
        self._region = region or (secret_id.split(":")[3] if secret_id.startswith("arn:") else None)
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._current: tuple[float, DbLogin] | None = None

    def __repr__(self) -> str:
        return f"PasswordSource({self.secret_id!r})"

    def _sm(self) -> Any:
        if self._client is None:
            import botocore.session

            self._client = botocore.session.get_session().create_client("secretsmanager", region_name=self._region)
        return self._client

    def _read(self, stage: str) -> DbLogin | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = self._sm().get_secret_value(SecretId=self.secret_id, VersionStage=stage)
        except ClientError as exc:
            code = (exc.response.get("Error") or {}).get("Code", "ClientError")
            if code == "ResourceNotFoundException" and stage != "AWSCURRENT":
                return None
            raise SecretReadError(f"cannot read {stage} of {self.secret_id}: {code}") from None
        except BotoCoreError as exc:
            raise SecretReadError(f"cannot read {stage} of {self.secret_id}: {type(exc).__name__}") from None
        return _parse(answer.get("SecretString"), f"{stage} of {self.secret_id}")

    def current(self, *, refresh: bool = False) -> DbLogin:
        """AWSCURRENT, from the cache while it is younger than ``ttl``."""
        with self._lock:
            cached = self._current
            if cached is not None and not refresh and self._clock() - cached[0] < self._ttl:
                return cached[1]
        login = self._read("AWSCURRENT")
        assert login is not None
        with self._lock:
            self._current = (self._clock(), login)
        return login

    def pending(self) -> DbLogin | None:
        """AWSPENDING (a rotation in flight, or the one just finished), or None. Never cached."""
        return self._read("AWSPENDING")


def is_auth_failure(exc: BaseException) -> bool:
    """Did the database refuse the password (not the network, TLS or anything else)?"""
    args = getattr(exc, "args", ())
    if args and args[0] == 1045:  # MySQL family: ER_ACCESS_DENIED_ERROR
        return True
    text = str(exc).lower()
    return "password authentication failed" in text or "authentication failed for user" in text


def _open(login: DbLogin, environ: Mapping[str, str] | None, kwargs: Mapping[str, Any]) -> Any:
    ca = ssl_root_cert_path(environ)
    if login.mysql_family:
        import pymysql

        params: dict[str, Any] = {"host": login.host, "port": login.port, "user": login.username,
                                  "password": login.password, "ssl": tls_context(ca), "connect_timeout": 10}
        if login.dbname:
            params["database"] = login.dbname
        params.update(kwargs)
        return pymysql.connect(**params)
    import psycopg

    pg: dict[str, Any] = {"host": login.host, "port": login.port, "user": login.username,
                          "password": login.password, "sslmode": "verify-full", "sslrootcert": ca,
                          "connect_timeout": 10}
    if login.dbname:
        pg["dbname"] = login.dbname
    pg.update(kwargs)
    return psycopg.connect(**pg)


def connect_password(secret: str | PasswordSource, *, environ: Mapping[str, str] | None = None,
                     **kwargs: Any) -> Any:
    """A connection as the secret's user (psycopg for PostgreSQL, PyMySQL for the MySQL family),
    with AWSCURRENT, retried once with AWSPENDING when the database refuses the password.
    ``kwargs`` go to the driver (they cannot weaken TLS for PostgreSQL: sslmode is verify-full
    unless you pass another explicitly). Raises the driver's error when both are refused."""
    source = secret if isinstance(secret, PasswordSource) else PasswordSource(secret)
    current = source.current()
    try:
        return _open(current, environ, kwargs)
    except Exception as exc:
        if not is_auth_failure(exc):
            raise
        first = exc
    pending = source.pending()
    if pending is None or pending == current:
        pending = source.current(refresh=True)  # the cache may hold a version rotated away since
        if pending == current:
            raise first
    try:
        connection = _open(pending, environ, kwargs)
    except Exception as exc:
        if is_auth_failure(exc):
            raise exc from None
        raise
    source.current(refresh=True)  # a finished rotation: the next connect starts from the new AWSCURRENT
    return connection
