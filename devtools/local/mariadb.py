"""A throwaway MariaDB for the local stack: the backend of the RDS-like MySQL front.

``mariadb-install-db`` into a private temp dir (0700; as the ``mysql`` account when we are
root, since mariadbd will not run as root), then ``mariadbd`` with networking off: it listens
only on a unix socket inside that dir, so nothing but this process (and root) can reach it.
Clients reach it through :class:`devtools.local.mysql_front.MysqlFront`, which speaks TLS with
the local CA and checks IAM tokens; the system MariaDB (port 3306) is never touched.

Who is an IAM user lives in the backend, as on RDS: the user's authentication names
``AWSAuthenticationPlugin`` (``IDENTIFIED VIA mysql_native_password USING '<hash>' OR
AWSAuthenticationPlugin USING 'RDS'``). The front reads that marker from
``mysql.global_priv`` at every login; ``ALTER USER ... IDENTIFIED BY ...`` removes it, and
token logins then fail with 1045, as on RDS. The first alternative (a password derived from
a per-server secret that only this object knows) is how the front logs in to the backend as
the user once the token passed the checker: no token ever reaches mariadbd.

Two accounts are made at start: ``rdsadmin`` (localhost only: the front's and the stack's
own) and ``admin`` (any host, like RDS's master user), both with random passwords.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from chalicelib.errors import RdsvendError
from devtools.local.processes import alive
from devtools.local.templates import binary_identity, copy_template
from devtools.local.tls import make_tls_material

__all__ = ["MariaDBServer", "MariaDBError", "IAM_PLUGIN", "stop_mariadb_dir", "mariadb_available",
           "DEFAULT_MARIADBD", "DEFAULT_INSTALL_DB"]

log = logging.getLogger(__name__)

DEFAULT_MARIADBD = Path("/usr/sbin/mariadbd")
DEFAULT_INSTALL_DB = Path("/usr/bin/mariadb-install-db")
OS_USER = "mysql"
IAM_PLUGIN = "AWSAuthenticationPlugin"
_ADMIN = "rdsadmin"
MASTER = "admin"


class MariaDBError(RdsvendError):
    """The local MariaDB could not start, answer or stop. One line, no secrets."""


def mariadb_available(mariadbd: Path = DEFAULT_MARIADBD, install_db: Path = DEFAULT_INSTALL_DB) -> bool:
    return mariadbd.exists() and install_db.exists()


def _owner() -> pwd.struct_passwd | None:
    """The account mariadbd runs as: ``mysql`` when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    return pwd.getpwnam(OS_USER)


def _chown_tree(path: Path) -> None:
    owner = _owner()
    if owner is None:
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, owner.pw_uid, owner.pw_gid)
        for name in [*dirs, *files]:
            os.chown(os.path.join(root, name), owner.pw_uid, owner.pw_gid, follow_symlinks=False)


def _sql_string(value: str) -> str:
    """A single-quoted SQL literal (for the init file, which takes no parameters)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def stop_mariadb_dir(base_dir: str | os.PathLike[str], *, timeout: float = 30.0) -> None:
    """Stop the mariadbd running from ``base_dir`` (also one a crashed stack left) and remove the dir."""
    base = Path(base_dir)
    try:
        pid: int | None = int((base / "mariadbd.pid").read_text().strip())
    except (OSError, ValueError):
        pid = None
    if pid is not None and alive(pid):
        cmdline = ""
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            pass
        if str(base) in cmdline:  # ours: its command line names this dir
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
                time.sleep(0.2)
            if alive(pid):
                raise MariaDBError(f"mariadbd process {pid} did not stop")
    shutil.rmtree(base, ignore_errors=True)


class MariaDBServer:
    """A mariadbd on a unix socket in a private temp dir; a context manager."""

    def __init__(self, *, parent_dir: str | os.PathLike[str] | None = None, startup_timeout: float = 60.0,
                 mariadbd: Path = DEFAULT_MARIADBD, install_db: Path = DEFAULT_INSTALL_DB,
                 master_password: str | None = None) -> None:
        self._parent = Path(parent_dir) if parent_dir is not None else None
        self._timeout = startup_timeout
        self._mariadbd = Path(mariadbd)
        self._install_db = Path(install_db)
        self._secret = secrets.token_bytes(32)
        self._admin_password = secrets.token_urlsafe(24)
        #: the RDS-like master user's password (given, or a random one); never log it
        self.master_password = master_password or secrets.token_urlsafe(24)
        self._base: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        #: the CA of the backend's own TLS certificate: the front speaks TLS to the backend too, so
        #: a session's Ssl_version and Ssl_cipher name its TLS as on RDS
        self.backend_ca: Path | None = None

    def __repr__(self) -> str:
        return f"MariaDBServer(base={self._base}, pid={self.pid})"

    # --- where it is ------------------------------------------------------------------------
    @property
    def base_dir(self) -> Path:
        if self._base is None:
            raise MariaDBError("the local mariadb is not started")
        return self._base

    @property
    def socket_path(self) -> Path:
        return self.base_dir / "run" / "mariadbd.sock"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # --- lifecycle --------------------------------------------------------------------------
    def prepare(self) -> Path:
        """Make the server's private dir (so it can be recorded before anything runs in it)."""
        if self._base is None:
            self._base = Path(tempfile.mkdtemp(prefix="rdsvend-mariadb-", dir=self._parent))
        return self._base

    def start(self) -> MariaDBServer:
        if self._proc is not None:
            return self
        if not mariadb_available(self._mariadbd, self._install_db):
            raise MariaDBError(f"mariadb server binaries not found ({self._mariadbd}, {self._install_db})")
        self.prepare()
        assert self._base is not None
        try:
            self._install(self._base)
            self._run(self._base)
        except BaseException:
            self.stop()
            raise
        log.info("local mariadb backend on %s (pid %s)", self.socket_path, self.pid)
        return self

    def stop(self) -> None:
        """Stop mariadbd, wait for it, remove the dir. Safe to call twice."""
        base, self._base = self._base, None
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=self._timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if base is not None:
            stop_mariadb_dir(base)

    def __enter__(self) -> MariaDBServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _install(self, base: Path) -> None:
        os.chmod(base, 0o700)
        (base / "run").mkdir(mode=0o700)
        owner = _owner()
        init = base / "init.sql"
        statements = [
            "DELETE FROM mysql.global_priv WHERE User = ''",
            f"CREATE USER {_ADMIN}@localhost IDENTIFIED BY {_sql_string(self._admin_password)}",
            f"GRANT ALL PRIVILEGES ON *.* TO {_ADMIN}@localhost WITH GRANT OPTION",
            f"CREATE USER {MASTER}@'%' IDENTIFIED BY {_sql_string(self.master_password)}",
            # Like RDS's master user: broad, but no SUPER.
            f"GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, RELOAD, PROCESS, REFERENCES, INDEX, ALTER, "
            f"SHOW DATABASES, CREATE TEMPORARY TABLES, LOCK TABLES, EXECUTE, REPLICATION SLAVE, "
            f"REPLICATION CLIENT, CREATE VIEW, SHOW VIEW, CREATE ROUTINE, ALTER ROUTINE, CREATE USER, EVENT, "
            f"TRIGGER ON *.* TO {MASTER}@'%' WITH GRANT OPTION",
            # RDS's way for the master user to end another user's session (it has no SUPER):
            # CALL mysql.rds_kill(thread_id), run as the administrator.
            f"CREATE DEFINER={_ADMIN}@localhost PROCEDURE mysql.rds_kill(IN thread BIGINT) "
            "SQL SECURITY DEFINER KILL CONNECTION thread",
            "FLUSH PRIVILEGES",
        ]
        fd = os.open(init, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(";\n".join(statements) + ";\n")
        _chown_tree(base)
        options = ("--no-defaults", "--auth-root-authentication-method=socket", "--skip-test-db",
                   "--skip-name-resolve", *((f"--user={owner.pw_name}",) if owner is not None else ()))
        # A copy of the system tables mariadb-install-db made once for these binaries and options
        # (they hold no password: init.sql makes the users when the server starts).
        copy_template("mariadb", (binary_identity(self._install_db), binary_identity(self._mariadbd), options),
                      self._install_into(options), base / "data")
        _chown_tree(base / "data")

    def _install_into(self, options: Sequence[str]) -> Callable[[Path], None]:
        """``mariadb-install-db`` writing a data dir at the path given."""
        def make(data: Path) -> None:
            _chown_tree(data.parent)
            result = subprocess.run([str(self._install_db), *options, f"--datadir={data}"], cwd=data.parent,
                                    capture_output=True, text=True, timeout=self._timeout, check=False,
                                    env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8"})
            if result.returncode != 0:
                raise MariaDBError(f"mariadb-install-db failed: {(result.stderr or result.stdout).strip()[-400:]}")
        return make

    def _run(self, base: Path) -> None:
        owner = _owner()
        tls = make_tls_material(base / "backend-tls", owner=owner.pw_name if owner is not None else None)
        self.backend_ca = tls.ca_cert
        argv = [
            str(self._mariadbd), "--no-defaults", f"--datadir={base / 'data'}", f"--socket={self.socket_path}",
            "--skip-networking", f"--pid-file={base / 'mariadbd.pid'}", f"--log-error={base / 'error.log'}",
            f"--init-file={base / 'init.sql'}", "--skip-name-resolve", "--skip-log-bin",
            "--innodb-buffer-pool-size=16M", "--innodb-log-file-size=8M", "--max-connections=64",
            "--character-set-server=utf8mb4", "--default-time-zone=+00:00", "--innodb-flush-log-at-trx-commit=0",
            f"--ssl-cert={tls.server_cert}", f"--ssl-key={tls.server_key}",
        ]
        if owner is not None:
            argv.insert(2, f"--user={owner.pw_name}")
        self._proc = subprocess.Popen(argv, cwd=base, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
        deadline = time.monotonic() + self._timeout
        last = ""
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise MariaDBError(f"mariadbd exited with status {self._proc.returncode}: {self.log_tail()}")
            if self.socket_path.exists():
                try:
                    self.run_sql("SELECT 1")
                    return
                except Exception as exc:  # noqa: BLE001 - retried until the deadline
                    last = f"{type(exc).__name__}: {str(exc)[:200]}"
            time.sleep(0.1)
        raise MariaDBError(f"mariadbd did not answer within {self._timeout:g} s: {last or self.log_tail()}")

    def log_tail(self, limit: int = 600) -> str:
        try:
            return (self.base_dir / "error.log").read_text(errors="replace").strip()[-limit:]
        except (OSError, MariaDBError):
            return "(no log)"

    # --- administration (issue: one clean API for the stack, the tests and rotation) -------------
    def connect_admin(self, database: str | None = None, *, timeout: float = 10.0) -> Any:
        """A PyMySQL connection as the local administrator over the private socket (autocommit)."""
        import pymysql

        return pymysql.connect(unix_socket=str(self.socket_path), user=_ADMIN, password=self._admin_password,
                               database=database, autocommit=True, connect_timeout=timeout,
                               read_timeout=max(timeout, 30.0), write_timeout=max(timeout, 30.0),
                               charset="utf8mb4")

    def run_sql(self, statement: str, params: Sequence[Any] | None = None, *,
                database: str | None = None) -> list[tuple[Any, ...]]:
        """Run one statement as the administrator; its rows, if any. ``params`` are %s-bound."""
        conn = self.connect_admin(database)
        try:
            with conn.cursor() as cur:
                cur.execute(statement, params)
                return list(cur.fetchall()) if cur.description is not None else []
        finally:
            conn.close()

    def create_database(self, name: str) -> None:
        self.run_sql(f"CREATE DATABASE {quote_ident(name)}")

    def create_password_user(self, name: str, password: str, *, host: str = "%") -> None:
        """A user that logs in with ``password`` (mysql_native_password, through the front over TLS)."""
        self.run_sql("CREATE USER %s@%s IDENTIFIED BY %s", (name, host, password))

    def create_iam_user(self, name: str, *, host: str = "%") -> None:
        """A user identified with ``AWSAuthenticationPlugin`` (logs in with IAM tokens only).

        On RDS: ``CREATE USER name IDENTIFIED WITH AWSAuthenticationPlugin AS 'RDS'``. The plugin
        does not exist outside RDS, so the marker is written into ``mysql.global_priv`` next to
        the front's own way in (see the module docstring).
        """
        self.run_sql("CREATE USER %s@%s IDENTIFIED BY %s", (name, host, self.backend_password(name)))
        self.mark_iam(name, host=host)

    def mark_iam(self, name: str, *, host: str = "%") -> None:
        """(Re)attach the IAM marker to an existing user, keeping the front's way in."""
        marker = json.dumps([{}, {"plugin": IAM_PLUGIN, "authentication_string": "RDS"}])
        conn = self.connect_admin()
        try:
            with conn.cursor() as cur:
                cur.execute("UPDATE mysql.global_priv SET Priv = JSON_SET(Priv, '$.plugin', 'mysql_native_password', "
                            "'$.authentication_string', PASSWORD(%s), '$.auth_or', JSON_EXTRACT(%s, '$')) "
                            "WHERE User = %s AND Host = %s", (self.backend_password(name), marker, name, host))
                if cur.rowcount != 1:
                    raise MariaDBError(f"no user '{name}'@'{host}' to mark as an IAM user")
                cur.execute("FLUSH PRIVILEGES")
        finally:
            conn.close()

    def backend_password(self, user: str) -> str:
        """How the front logs in to the backend as IAM user ``user`` (never leaves this process)."""
        return hmac.new(self._secret, user.encode("utf-8"), hashlib.sha256).hexdigest()

    def auth_plugins(self, user: str, conn: Any = None) -> tuple[str, ...] | None:
        """The authentication plugins of ``user`` (any host), or None when there is no such user."""
        own = conn is None
        conn = conn or self.connect_admin()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT Priv FROM mysql.global_priv WHERE User = %s AND Host IN ('%%', 'localhost') "
                            "ORDER BY Host = '%%'", (user,))
                rows = cur.fetchall()
        finally:
            if own:
                conn.close()
        if not rows:
            return None
        plugins: list[str] = []
        for (priv,) in rows:
            try:
                data = json.loads(priv)
            except (TypeError, ValueError):
                continue
            plugins.append(str(data.get("plugin") or ""))
            for alt in data.get("auth_or") or ():
                if isinstance(alt, dict) and alt.get("plugin"):
                    plugins.append(str(alt["plugin"]))
        return tuple(p for p in plugins if p)


def quote_ident(name: str) -> str:
    """A backquoted MariaDB identifier, any character allowed."""
    return "`" + name.replace("`", "``") + "`"
