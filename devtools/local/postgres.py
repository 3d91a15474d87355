"""A throwaway, RDS-shaped PostgreSQL cluster for the local stack and the end-to-end tests.

``initdb`` in a temp dir (as the ``postgres`` account when we are root: PostgreSQL refuses
to run as root), a free loopback port, TLS only (``hostssl``, a CA and server certificate
made at start), and RDS's two roles: members of ``rds_iam`` log in through the ``ldap``
method against the bind-only responder that checks IAM tokens; everyone else with
``scram-sha-256``. ``rds_ad`` exists (NOLOGIN) as on RDS, for Kerberos users.

Clients reach it through a front (:mod:`devtools.local.pg_front`) on the instance's port,
which holds connections still logging in within per-address bounds; PostgreSQL itself listens
behind it on the same port number at another loopback address (:data:`BACKEND_HOST`), so that
``SHOW port`` names the endpoint's port, as on RDS.

The superuser has a random password (or the one given: the local stack keeps it across
restarts); ``admin_dsn`` connects as it with ``verify-full``. Stopping closes the front, shuts
the server down (fast mode), waits for every process, and removes the dir.
"""
from __future__ import annotations

import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from chalicelib.errors import PostgresError
from devtools.local.pg_front import PgFront
from devtools.local.processes import alive
from devtools.local.templates import binary_identity, copy_template
from devtools.local.tls import TlsMaterial, make_tls_material

__all__ = ["BACKEND_HOST", "PostgresCluster", "PostgresError", "DEFAULT_BIN_DIR", "stop_cluster_dir", "free_port"]

log = logging.getLogger(__name__)

DEFAULT_BIN_DIR = Path("/usr/lib/postgresql/15/bin")
OS_USER = "postgres"
LDAP_PREFIX = "cn="
LDAP_SUFFIX = ",dc=rdsvend"
#: Where PostgreSQL itself listens, behind its front on 127.0.0.1 (the same port number).
BACKEND_HOST = "127.0.54.32"


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (bind port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _as_root() -> bool:
    return os.geteuid() == 0


def _run_as_owner(argv: Sequence[str], *, cwd: Path, timeout: float,
                  stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    prefix = ["runuser", "-u", OS_USER, "--"] if _as_root() else []
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "TZ": "UTC"}
    return subprocess.run(
        [*prefix, *argv], cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=timeout,
        check=False,
    )


def _chown_tree(path: Path) -> None:
    if not _as_root():
        return
    entry = pwd.getpwnam(OS_USER)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in [*dirs, *files]:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid, follow_symlinks=False)


_INITDB_ARGS = ("--auth=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync", "--no-instructions")


def _initdb_into(bin_dir: Path, superuser: str, timeout: float) -> Callable[[Path], None]:
    """``initdb`` writing a cluster's data dir at the path given, with a throwaway password
    (every copy sets its own: :func:`_set_password`)."""
    def make(data: Path) -> None:
        work = data.parent
        pwfile = work / "initdb.pw"
        pwfile.write_text(secrets.token_urlsafe(24) + "\n", encoding="utf-8")
        _chown_tree(work)
        result = _run_as_owner([str(bin_dir / "initdb"), "-D", str(data), "-U", superuser, f"--pwfile={pwfile}",
                                *_INITDB_ARGS], cwd=work, timeout=timeout)
        pwfile.unlink()
        if result.returncode != 0:
            raise PostgresError(f"initdb failed: {result.stderr.strip()[-500:]}")
    return make


def _set_password(bin_dir: Path, base: Path, superuser: str, password: str, timeout: float) -> None:
    """Give the copied cluster's superuser its own password, in single-user mode (no server
    listens yet; the password goes through stdin, never a command line or a log)."""
    name = '"' + superuser.replace('"', '""') + '"'
    literal = "'" + password.replace("'", "''") + "'"
    result = _run_as_owner([str(bin_dir / "postgres"), "--single", "-D", str(base / "data"), "-j", "postgres"],
                           cwd=base, timeout=timeout, stdin=f"ALTER ROLE {name} PASSWORD {literal};\n")
    if result.returncode != 0:  # its output may echo the statement: not shown
        raise PostgresError("could not set the superuser's password in the new cluster")


def _hba_value(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def _postmaster_pid(data_dir: Path) -> int | None:
    try:
        first = (data_dir / "postmaster.pid").read_text().split("\n", 1)[0].strip()
        return int(first)
    except (OSError, ValueError):
        return None


def stop_cluster_dir(
    base_dir: str | os.PathLike[str], *, bin_dir: Path = DEFAULT_BIN_DIR, timeout: float = 30.0
) -> None:
    """Stop whatever cluster runs from ``base_dir`` (left by a crashed run) and remove the dir."""
    base = Path(base_dir)
    data_dir = base / "data"
    pid = _postmaster_pid(data_dir)
    if pid is not None:
        result = _run_as_owner(
            [str(bin_dir / "pg_ctl"), "stop", "-D", str(data_dir), "-m", "fast", "-w", "-t", str(int(timeout))],
            cwd=base, timeout=timeout + 10,
        )
        if result.returncode != 0 and alive(pid):
            log.warning("local postgres: fast shutdown failed, sending SIGQUIT to %d", pid)
            try:
                os.kill(pid, signal.SIGQUIT)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if alive(pid):
            raise PostgresError(f"postgres process {pid} did not stop")
    shutil.rmtree(base, ignore_errors=True)


class PostgresCluster:
    """An RDS-shaped PostgreSQL on ``127.0.0.1``; a context manager.

    ``ldap_port`` is the bind-only responder's port; without one, members of ``rds_iam``
    cannot log in at all (fail closed). ``extra_names`` go into the server certificate
    (e.g. the RDS endpoint name the world gives the instance). ``port``: the endpoint's (a
    free one unless given). ``password``: the superuser's (default: a random one).
    """

    def __init__(
        self,
        *,
        ldap_port: int | None = None,
        extra_names: Sequence[str] = (),
        bin_dir: str | os.PathLike[str] = DEFAULT_BIN_DIR,
        parent_dir: str | os.PathLike[str] | None = None,
        superuser: str = "postgres",
        port: int | None = None,
        startup_timeout: float = 60.0,
        password: str | None = None,
    ) -> None:
        self._ldap_port = ldap_port
        self._extra_names = tuple(extra_names)
        self._bin = Path(bin_dir)
        self._parent = Path(parent_dir) if parent_dir is not None else None
        self._superuser = superuser
        self._wanted_port = port
        self._timeout = startup_timeout
        self._password = password or secrets.token_urlsafe(24)
        self._base: Path | None = None
        self._front: PgFront | None = None
        self._tls: TlsMaterial | None = None
        self._pid: int | None = None

    def __repr__(self) -> str:
        state = f"port={self.port}" if self.running and self._front is not None else "stopped"
        return f"PostgresCluster({state}, base={self._base})"

    # --- what clients need ------------------------------------------------------------------
    @property
    def host(self) -> str:
        return "localhost"

    @property
    def port(self) -> int:
        """The endpoint's port: where clients connect (the front)."""
        if self._front is None:
            raise PostgresError("the cluster is not started")
        return self._front.port


    @property
    def ca_path(self) -> Path:
        if self._tls is None:
            raise PostgresError("the cluster is not started")
        return self._tls.ca_cert

    @property
    def base_dir(self) -> Path:
        if self._base is None:
            raise PostgresError("the cluster is not started")
        return self._base

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def pid(self) -> int | None:
        """The postmaster's process id while running."""
        return self._pid

    @property
    def superuser(self) -> str:
        return self._superuser

    @property
    def running(self) -> bool:
        return self._pid is not None and alive(self._pid)

    def dsn(self, user: str, password: str | None = None, dbname: str = "postgres", **extra: Any) -> str:
        """A ``verify-full`` conninfo string for ``user`` (contains ``password`` when given)."""
        params: dict[str, Any] = {
            "host": self.host, "port": self.port, "dbname": dbname, "user": user,
            "sslmode": "verify-full", "sslrootcert": str(self.ca_path), "connect_timeout": 10,
        }
        if password is not None:
            params["password"] = password
        params.update(extra)
        return make_conninfo(**params)

    @property
    def admin_dsn(self) -> str:
        """The superuser's conninfo string. It holds a password: never log it."""
        return self.dsn(self._superuser, self._password)

    @property
    def superuser_password(self) -> str:
        """The superuser's password (given, or made at construction). Never log it."""
        return self._password

    # --- lifecycle --------------------------------------------------------------------------
    def start(self) -> PostgresCluster:
        if self._base is not None:
            return self
        base = Path(tempfile.mkdtemp(prefix="rdsvend-pg-", dir=self._parent))
        self._base = base
        try:
            self._initdb(base)
            self._listen(base)
            self._bootstrap_roles()
        except BaseException:
            self.stop()
            raise
        log.info("local postgres listening on 127.0.0.1:%d (the server on %s, pid %s, dir %s)", self.port,
                 BACKEND_HOST, self._pid, base)
        return self

    def _listen(self, base: Path) -> None:
        """The front on the endpoint's port, then PostgreSQL behind it on the same port number
        at :data:`BACKEND_HOST` (another free port when that one is taken there, unless the
        port was asked for)."""
        tls = self._tls
        assert tls is not None
        last_error = ""
        for _ in range(1 if self._wanted_port else 3):
            front = PgFront(backend_host=BACKEND_HOST, tls_cert=tls.server_cert, tls_key=tls.server_key,
                            ca_path=tls.ca_cert, port=self._wanted_port or 0)
            try:
                self._front = front.start()
            except OSError as exc:
                raise PostgresError(f"the endpoint cannot listen on 127.0.0.1:{self._wanted_port}: {exc}") from None
            last_error = self._start_server(base, front.port)
            if not last_error:
                return
            self._front = None
            front.stop()
            if _postmaster_pid(base / "data") is not None:
                break
        raise PostgresError(f"postgres did not start: {last_error}")

    def stop(self) -> None:
        """Close the front, fast shutdown, wait for the processes, remove the dir. Safe to call twice."""
        front, self._front = self._front, None
        if front is not None:
            front.stop()
        base, self._base = self._base, None
        self._pid = None
        self._tls = None
        if base is None:
            return
        stop_cluster_dir(base, bin_dir=self._bin, timeout=self._timeout)

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- admin ------------------------------------------------------------------------------
    def connect_admin(self, dbname: str = "postgres") -> psycopg.Connection[Any]:
        return psycopg.connect(self.dsn(self._superuser, self._password, dbname), autocommit=True)

    def run_sql(
        self, query: str | sql.SQL | sql.Composed, params: Sequence[Any] | None = None, *, dbname: str = "postgres"
    ) -> list[tuple[Any, ...]]:
        """Run one statement as the superuser (autocommit); return its rows, if any."""
        with self.connect_admin(dbname) as conn, conn.cursor() as cur:
            cur.execute(query, params)
            return list(cur.fetchall()) if cur.description is not None else []

    def create_iam_user(self, name: str, *, grants: Sequence[str] = ()) -> None:
        """A login role in ``rds_iam`` (logs in with IAM tokens only), plus extra role grants."""
        self.run_sql(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
        for role in ("rds_iam", *grants):
            self.run_sql(sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), sql.Identifier(name)))

    def create_password_user(self, name: str, password: str, *, grants: Sequence[str] = ()) -> None:
        """A login role that logs in with ``password`` (scram-sha-256)."""
        self.run_sql(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name), sql.Literal(password)))
        for role in grants:
            self.run_sql(sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), sql.Identifier(name)))

    def set_ldap_port(self, port: int | None) -> None:
        """Point ``rds_iam`` logins at another responder port and reload the configuration."""
        self._ldap_port = port
        self._write_hba(self.data_dir)
        self.run_sql("SELECT pg_reload_conf()")

    # --- internals --------------------------------------------------------------------------
    def _initdb(self, base: Path) -> None:
        if _as_root():
            entry = pwd.getpwnam(OS_USER)
            os.chown(base, entry.pw_uid, entry.pw_gid)
        os.chmod(base, 0o700)
        self._tls = make_tls_material(base / "tls", extra_names=self._extra_names, owner=OS_USER)
        (base / "run").mkdir(mode=0o700)
        _chown_tree(base)
        # A copy of a cluster initdb made once for these binaries and this superuser (initdb
        # costs a second or two of CPU per cluster); the copy gets its own superuser password.
        copy_template("pg", (binary_identity(self._bin / "initdb"), self._superuser, _INITDB_ARGS),
                      _initdb_into(self._bin, self._superuser, self._timeout), base / "data")
        _chown_tree(base / "data")
        _set_password(self._bin, base, self._superuser, self._password, self._timeout)
        data = base / "data"
        tls = self._tls
        settings = {
            "listen_addresses": f"'{BACKEND_HOST}'",  # behind the front, on the endpoint's port number
            "unix_socket_directories": f"'{base / 'run'}'",
            "ssl": "on",
            "ssl_cert_file": f"'{tls.server_cert}'",
            "ssl_key_file": f"'{tls.server_key}'",
            "ssl_min_protocol_version": "'TLSv1.2'",
            "password_encryption": "'scram-sha-256'",
            # the front (devtools.local.pg_front) lets 40 through: room for the superuser and for
            # server processes still exiting
            "max_connections": "50",
            # a connection that never finishes its login holds a server process only this long
            # (PostgreSQL's default is a minute: 500 idle connections locked every login out)
            "authentication_timeout": "'5s'",
            "shared_buffers": "32MB",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "log_connections": "on",
            "log_line_prefix": "'%m [%p] %q%u@%d '",
            "log_timezone": "'UTC'",
            "timezone": "'UTC'",
        }
        with open(data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("\n# rdsvend local stack\n")
            for key, value in settings.items():
                conf.write(f"{key} = {value}\n")
        self._write_hba(data)

    def _write_hba(self, data: Path) -> None:
        if self._ldap_port is None:
            iam = "reject"
        else:
            iam = (
                f"ldap ldapserver=127.0.0.1 ldapport={int(self._ldap_port)} "
                f"ldapprefix={_hba_value(LDAP_PREFIX)} ldapsuffix={_hba_value(LDAP_SUFFIX)}"
            )
        lines = [
            "# rdsvend local stack: TLS only, IAM tokens for rds_iam, passwords for the rest",
            "# TYPE   DATABASE  USER      ADDRESS        METHOD",
            f"hostssl  all       +rds_iam  127.0.0.1/32   {iam}",
            "hostssl  all       all       127.0.0.1/32   scram-sha-256",
        ]
        hba = data / "pg_hba.conf"
        hba.write_text("\n".join(lines) + "\n", encoding="utf-8")
        if _as_root():
            entry = pwd.getpwnam(OS_USER)
            os.chown(hba, entry.pw_uid, entry.pw_gid)
        os.chmod(hba, 0o600)

    def _start_server(self, base: Path, port: int) -> str:
        """Start PostgreSQL on ``port``: "" when it runs, else the tail of its log."""
        result = _run_as_owner(
            [
                str(self._bin / "pg_ctl"), "start", "-D", str(base / "data"), "-l", str(base / "postgres.log"),
                "-w", "-t", str(int(self._timeout)), "-o", f"-p {port}",
            ],
            cwd=base, timeout=self._timeout + 10,
        )
        if result.returncode != 0:
            return self._log_tail(base)
        self._pid = _postmaster_pid(base / "data")
        return ""

    @staticmethod
    def _log_tail(base: Path) -> str:
        try:
            return (base / "postgres.log").read_text(errors="replace").strip()[-800:]
        except OSError:
            return "(no log)"

    def _bootstrap_roles(self) -> None:
        for role in ("rds_iam", "rds_ad"):
            self.run_sql(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))

    def log_text(self) -> str:
        """The server log so far (connection attempts and refusals; never passwords)."""
        try:
            return (self.base_dir / "postgres.log").read_text(errors="replace")
        except OSError:
            return ""
