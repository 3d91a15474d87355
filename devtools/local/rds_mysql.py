"""The local stack's RDS-compatible MariaDB: the backend mariadbd, TLS from a local CA, and the
front that checks IAM tokens (:mod:`devtools.local.mariadb`, :mod:`devtools.local.mysql_front`).

:class:`LocalMariaDB` is what the stack, the tests and the rotation code use:
``start(check=...)``, ``host``/``port``/``ca_path``, ``admin_dsn`` (the RDS-like master user,
over TLS), ``connect(user, password)`` (PyMySQL, TLS verified, cleartext auth), and the
backend's administration (``create_database``, ``create_iam_user``, ``create_password_user``,
``run_sql``) through ``server``.
"""
from __future__ import annotations

import logging
import os
import secrets
import ssl
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from chalicelib.vending.dsn import is_mysql_family
from devtools.local.mariadb import MASTER, MariaDBError, MariaDBServer, stop_mariadb_dir
from devtools.local.mysql_front import FrontSettings, MysqlFront
from devtools.local.tls import TlsMaterial, make_tls_material

__all__ = ["LocalMariaDB", "MariaDBError", "stop_mariadb_dir"]

log = logging.getLogger(__name__)


class LocalMariaDB:
    """A throwaway MariaDB reached like an RDS endpoint: TLS only, IAM tokens for IAM users."""

    def __init__(self, *, parent_dir: str | os.PathLike[str] | None = None, extra_names: Sequence[str] = (),
                 settings: FrontSettings | None = None, port: int = 0, master_password: str | None = None) -> None:
        self.server = MariaDBServer(parent_dir=parent_dir, master_password=master_password)
        self._port = port  # the front's; 0: any free port
        self._extra_names = tuple(extra_names)
        self._settings = settings or FrontSettings()
        self._tls_dir: Path | None = None
        self._tls: TlsMaterial | None = None
        self.front: MysqlFront | None = None
        self._check: Callable[[str, str], bool] = lambda user, token: False
        self._iam_enabled: Callable[[], bool] = lambda: True
        self._lock = threading.RLock()  # stop() waits for a start() running in another thread

    # --- lifecycle --------------------------------------------------------------------------
    def start(self) -> LocalMariaDB:
        """Start the backend, make the TLS material and open the front (which refuses every
        token until :meth:`set_checker` gives it the checker)."""
        with self._lock:
            return self._start()

    def _start(self) -> LocalMariaDB:
        try:
            self.server.start()
            self._tls_dir = self.server.base_dir / "tls"
            self._tls = make_tls_material(self._tls_dir, extra_names=self._extra_names, owner=None)
            self.front = MysqlFront(
                backend_socket=self.server.socket_path, tls_cert=self._tls.server_cert,
                tls_key=self._tls.server_key, plugins=self.server.auth_plugins,
                check=lambda user, token: self._check(user, token),
                backend_password=self.server.backend_password,
                iam_enabled=lambda: self._iam_enabled(), settings=self._settings, port=self._port,
                backend_ca=self.server.backend_ca,
            ).start()
        except BaseException:
            self.stop()
            raise
        return self

    def set_checker(self, check: Callable[[str, str], bool], iam_enabled: Callable[[], bool] | None = None) -> None:
        """The token checker (``RdsTokenChecker.check``) and whether the instance has IAM auth on."""
        self._check = check
        if iam_enabled is not None:
            self._iam_enabled = iam_enabled

    @property
    def token_check(self) -> Callable[[str, str], bool]:
        """The token checker the front uses now (see :meth:`set_checker`)."""
        return self._check

    def stop(self) -> None:
        with self._lock:
            if self.front is not None:
                self.front.stop()
                self.front = None
            self.server.stop()

    def __enter__(self) -> LocalMariaDB:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- what clients need ------------------------------------------------------------------
    @property
    def host(self) -> str:
        return "localhost"

    @property
    def port(self) -> int:
        if self.front is None:
            raise MariaDBError("the local mariadb is not started")
        return self.front.port

    @property
    def ca_path(self) -> Path:
        if self._tls is None:
            raise MariaDBError("the local mariadb is not started")
        return self._tls.ca_cert

    @property
    def pid(self) -> int | None:
        return self.server.pid

    @property
    def base_dir(self) -> Path:
        return self.server.base_dir

    @property
    def admin_dsn(self) -> str:
        """``mysql://admin:PASSWORD@localhost:PORT/?ssl-mode=VERIFY_IDENTITY``: holds a password."""
        return (f"mysql://{MASTER}:{quote(self.server.master_password, safe='')}@{self.host}:{self.port}/"
                "?ssl-mode=VERIFY_IDENTITY")

    def connect(self, user: str, password: str, *, database: str | None = None, ca_path: str | None = None,
                timeout: float = 10.0) -> Any:
        """A PyMySQL connection through the front: TLS verified against the CA, cleartext auth."""

        import pymysql

        ctx = ssl.create_default_context(cafile=str(ca_path or self.ca_path))
        return pymysql.connect(host=self.host, port=self.port, user=user, password=password, database=database,
                               ssl=ctx, connect_timeout=timeout, read_timeout=30, write_timeout=30,
                               autocommit=True, charset="utf8mb4")


# --- hooks for the stack server (devtools.local.server) -------------------------------------------

class MysqlStarter:
    """Starts one :class:`LocalMariaDB` per MySQL-family database of the world in the background
    (``mariadb-install-db`` takes seconds) while the stack starts the rest. Each one's dir is
    recorded in the state file (``mariadb``) before anything runs in it, so ``down`` finds it;
    ``databases`` can be stopped at any time (a stop waits for a start in flight). The caller
    keeps ``databases`` before :meth:`start`, so that a start interrupted at any point (Ctrl-C)
    stops every server a thread may still be starting."""

    def __init__(self, world: Any, save: Callable[..., None], state: dict[str, Any],
                 ports: Callable[[str], int] = lambda identifier: 0,
                 passwords: Callable[[str], str | None] = lambda identifier: None) -> None:
        self.databases: dict[str, LocalMariaDB] = {}
        self._errors: list[BaseException] = []
        self._threads: list[threading.Thread] = []
        for _account, spec in world.databases():
            if not is_mysql_family(spec.engine):
                continue
            db = LocalMariaDB(port=ports(spec.identifier), master_password=passwords(spec.identifier))
            self.databases[spec.identifier] = db
            save(mariadb=[*state.get("mariadb", []), str(db.server.prepare())])

    def start(self) -> MysqlStarter:
        """Start every database, each in its own thread."""
        for ident, db in self.databases.items():
            thread = threading.Thread(target=self._start, args=(db,), name=f"rdsvend-mariadb-{ident}", daemon=True)
            self._threads.append(thread)
            thread.start()
        return self

    def _start(self, db: LocalMariaDB) -> None:
        try:
            db.start()
        except BaseException as exc:  # noqa: BLE001 - reported by finish()
            self._errors.append(exc)

    def finish(self, save: Callable[..., None], state: dict[str, Any]) -> dict[str, LocalMariaDB]:
        """Wait for every start; record the fronts' ports; the first failure is raised."""
        for thread in self._threads:
            thread.join()
        if self._errors:
            raise self._errors[0]
        for db in self.databases.values():
            save(ports=[*state.get("ports", []), db.port])
        return self.databases


def start_mysql_databases(world: Any, save: Callable[..., None], state: dict[str, Any]) -> dict[str, LocalMariaDB]:
    """Start them all and wait (see :class:`MysqlStarter`)."""
    return MysqlStarter(world, save, state).start().finish(save, state)


def append_cas(ca_path: Path, databases: dict[str, LocalMariaDB]) -> None:
    """Add each MariaDB's CA to the stack's CA bundle (``PGSSLROOTCERT``)."""
    if not databases:
        return
    bundle = ca_path.read_bytes() if ca_path.exists() else b""
    ca_path.write_bytes(bundle + b"".join(db.ca_path.read_bytes() for db in databases.values()))
    os.chmod(ca_path, 0o644)


def iam_enabled_in_moto(account: str, region: str, identifier: str) -> Callable[[], bool]:
    """Whether moto (in this process) says the instance has IAM database authentication on."""

    def enabled() -> bool:
        from moto.rds.models import rds_backends

        instance = rds_backends[account][region].databases.get(identifier)
        return bool(instance is not None and instance.iam_database_authentication_enabled)

    return enabled


def setup_mysql_database(db: LocalMariaDB, spec: Any, check: Callable[[str, str], bool],
                         iam_enabled: Callable[[], bool]) -> None:
    """The database, its users (IAM users marked as such, password users with a random password)
    and the world's set-up statements; then the front starts checking tokens with ``check``."""

    server = db.server
    server.create_database(spec.dbname)
    for user in spec.users.values():
        if user.auth == "iam":
            server.create_iam_user(user.name)
        else:
            server.create_password_user(user.name, secrets.token_urlsafe(24))
    for statement in spec.setup_sql:
        server.run_sql(statement, database=spec.dbname)
    db.set_checker(check, iam_enabled)


def local_db_fields(clusters: dict[str, Any], mysql: dict[str, LocalMariaDB], ident: str) -> dict[str, Any]:
    """What the stack's state records about one local database server."""
    if ident in mysql:
        db = mysql[ident]
        return {"engine": "mariadb", "mariadb_pid": db.pid, "base_dir": str(db.base_dir), "admin_dsn": db.admin_dsn}
    return {"pg_pid": clusters[ident].pid, "base_dir": str(clusters[ident].base_dir)}


def mysql_admin_env(databases: Any) -> dict[str, str]:
    """``RDSVEND_LOCAL_MYSQL_ADMIN_DSN``: the RDS-like master user of the (first) local MariaDB."""
    for entry in (databases or {}).values():
        if entry.get("engine") == "mariadb" and entry.get("admin_dsn"):
            return {"RDSVEND_LOCAL_MYSQL_ADMIN_DSN": str(entry["admin_dsn"])}
    return {}


def stop_mysql_databases(databases: dict[str, LocalMariaDB]) -> None:
    for db in databases.values():
        try:
            db.stop()
        except Exception:  # noqa: BLE001 - keep stopping the rest
            log.exception("could not stop a local mariadb")
    databases.clear()
