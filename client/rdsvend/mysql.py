"""MySQL, MariaDB and Aurora MySQL: a vended token as a PyMySQL connection or a client's options.

RDS reads an IAM token as a password sent in clear (the ``mysql_clear_password`` client
plugin), so TLS with a verified server certificate is not optional: every connection made
here verifies the certificate against the CA bundle (``PGSSLROOTCERT`` when set, the name
the local stack's ``local env`` exports, else the RDS bundle shipped in the package) and the
host name (``VERIFY_IDENTITY``). MySQL clients have no environment variable for a CA file, so
rdsvend always passes it explicitly.

``rdsvend exec DATABASE DB_USER -- mariadb ...`` (or ``mysql``, ``mariadb-dump`` ...) never
puts the token on a command line (``ps`` shows those to everyone) nor in the environment
(``MYSQL_PWD`` is deprecated, inherited by every grandchild and readable in
``/proc/PID/environ``): it writes an option file, mode 0600 in a private 0700 temporary
directory, passes it as ``--defaults-extra-file`` (which MySQL and MariaDB clients accept
only as their first option, so it goes right after the program name), and deletes it when
the command exits. Other commands get the file's path in ``RDSVEND_MYSQL_DEFAULTS_FILE``.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from rdsvend.api import VendedToken
from rdsvend.errors import RdsvendClientError, require_extra
from rdsvend.trust import ssl_root_cert_path, tls_context

if TYPE_CHECKING:  # pragma: no cover
    from rdsvend.tokens import TokenClient

__all__ = ["MYSQL_FAMILY", "MYSQL_CLIENTS", "MysqlOptionError", "is_mysql_family", "pymysql_params", "connect",
           "option_file_text", "client_flavour", "mysql_command", "mysql_url"]

MYSQL_FAMILY = frozenset({"mysql", "mariadb"})
#: Programs that take ``--defaults-extra-file`` as their first option.
MYSQL_CLIENTS = frozenset({
    "mysql", "mariadb", "mysqldump", "mariadb-dump", "mysqladmin", "mariadb-admin", "mysqlshow",
    "mariadb-show", "mysqlcheck", "mariadb-check", "mysqlimport", "mariadb-import", "mysqlslap", "mariadb-slap",
})
DEFAULTS_ENV = "RDSVEND_MYSQL_DEFAULTS_FILE"


class MysqlOptionError(RdsvendClientError):
    """A value cannot be written into a MySQL option file safely (control characters)."""


def is_mysql_family(engine: str | None) -> bool:
    return engine in MYSQL_FAMILY


def pymysql_params(vended: VendedToken, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Keyword arguments for ``pymysql.connect``: TLS verified (CA and host name), token as password.

    PyMySQL answers a server's switch to ``mysql_clear_password`` with the password; over the
    verified TLS connection required here, that is what RDS expects.
    """
    params: dict[str, Any] = {
        "host": vended.host,
        "port": vended.port,
        "user": vended.db_user,
        "password": vended.token,
        "ssl": tls_context(ssl_root_cert_path(environ)),
    }
    if vended.dbname:
        params["database"] = vended.dbname
    return params


def connect(client: TokenClient, database: str, db_user: str, **kwargs: Any) -> Any:
    """A PyMySQL connection with a current token from ``client``; ``kwargs`` override/extend."""
    require_extra("rdsvend.connect() for MySQL and MariaDB", "pymysql", "pymysql")
    import pymysql

    params = pymysql_params(client.get(database, db_user))
    params.setdefault("connect_timeout", 10)
    params.update(kwargs)
    return pymysql.connect(**params)


def _value(name: str, value: str) -> str:
    """A double-quoted option-file value; refuses what could end the line or the quote early."""
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise MysqlOptionError(f"field '{name}' holds a control character; refusing to write it to an option file")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def option_file_text(vended: VendedToken, ca_path: str, flavour: str = "unknown") -> str:
    """The option file for ``vended``. ``flavour``: ``mariadb``, ``mysql`` (Oracle's clients) or
    ``unknown`` (options the other flavour lacks are then ``loose-``, i.e. ignored if unknown)."""
    lines = [
        "# written by rdsvend for one command; deleted when it exits",
        "[client]",
        f"user={_value('db_user', vended.db_user)}",
        f"password={_value('token', vended.token)}",
        f"host={_value('host', vended.host)}",
        f"port={int(vended.port)}",
        "protocol=TCP",  # "localhost" would otherwise mean a local unix socket
        f"ssl-ca={_value('ssl_root_cert', ca_path)}",
    ]
    if flavour == "mysql":
        lines.append("ssl-mode=VERIFY_IDENTITY")
    elif flavour == "unknown":
        lines += ["loose-ssl-mode=VERIFY_IDENTITY", "loose-ssl-verify-server-cert"]
    if flavour in ("mariadb", "unknown"):
        lines += ["[client-mariadb]", "ssl-verify-server-cert"]
    if vended.dbname:
        lines += ["[mysql]", f"database={_value('dbname', vended.dbname)}"]
    return "\n".join(lines) + "\n"


def client_flavour(program: str) -> str:
    """``mariadb`` or ``mysql`` from ``PROGRAM --version``; ``unknown`` when it cannot tell."""
    try:
        out = subprocess.run([program, "--version"], capture_output=True, text=True, timeout=5, check=False,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    text = (out.stdout + out.stderr).lower()
    if "mariadb" in text:
        return "mariadb"
    if "mysql" in text and "ver" in text:
        return "mysql"
    return "unknown"


@contextmanager
def mysql_command(command: Sequence[str], vended: VendedToken,
                  environ: Mapping[str, str] | None = None) -> Iterator[tuple[list[str], dict[str, str]]]:
    """``(argv, env)`` to run ``command`` logged in as ``vended``; the option file exists only
    inside the ``with`` block (0600 in a 0700 directory, removed on the way out)."""
    env = dict(os.environ if environ is None else environ)
    argv = list(command)
    program = os.path.basename(argv[0]) if argv else ""
    known = program in MYSQL_CLIENTS
    flavour = client_flavour(argv[0]) if known else "unknown"
    text = option_file_text(vended, ssl_root_cert_path(env), flavour)
    directory = tempfile.mkdtemp(prefix="rdsvend-mysql-")  # 0700
    try:
        path = os.path.join(directory, "client.cnf")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        if known:
            argv.insert(1, f"--defaults-extra-file={path}")
        env[DEFAULTS_ENV] = path
        env.pop("MYSQL_PWD", None)
        if flavour != "mariadb":
            env["LIBMYSQL_ENABLE_CLEARTEXT_PLUGIN"] = "1"  # Oracle's clients: allow the cleartext plugin
        yield argv, env
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def mysql_url(vended: VendedToken) -> str:
    """``mysql://USER:TOKEN@HOST:PORT/DBNAME?ssl-mode=VERIFY_IDENTITY`` (every part percent-encoded):
    the ``dsn`` with the password, for tools that take a URL. It holds the token: keep it out of
    command lines and logs."""
    host = f"[{vended.host}]" if ":" in vended.host else vended.host
    path = "/" + quote(vended.dbname, safe="") if vended.dbname else "/"
    return (f"mysql://{quote(vended.db_user, safe='')}:{quote(vended.token, safe='')}@{host}:{int(vended.port)}"
            f"{path}?ssl-mode=VERIFY_IDENTITY")
