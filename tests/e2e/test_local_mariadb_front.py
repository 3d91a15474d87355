"""End to end: the RDS-compatible MariaDB on its own (no moto): a real mariadbd behind the
front, real PyMySQL and ``mariadb`` clients over verified TLS, tokens made by botocore's
``generate_db_auth_token`` and checked by the real :class:`RdsTokenChecker`; only the AWS side
(which keys exist, whether the signer may connect) is an in-memory stand-in the tests control.

Covers what the shared-stack tests cannot: session tokens of 1.5 KB and more (moto's session
tokens are short), and hostile clients (oversized packets, silence, garbage, too many
connections) which must cost the front a bounded amount and leave it serving.
"""
from __future__ import annotations

import os
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.session
import pymysql
import pytest

from devtools.local.mariadb import mariadb_available
from devtools.local.mysql_front import FrontSettings
from devtools.local.rds_mysql import LocalMariaDB
from devtools.local.rdsauth import RdsInstance, RdsTokenChecker
from devtools.local.sigv4 import Credential, StaticSecretLookup

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not mariadb_available(), reason="no mariadb server binaries on this machine")]

ACCOUNT = "123456789012"
REGION = "us-east-1"
SESSION = Credential("ASIAE2ESESSION000077", "e2e/session+secret00000000000000000000000",
                     "IQoJb3JpZ2luX2VjE" + secrets.token_urlsafe(1500) + "==",
                     f"arn:aws:sts::{ACCOUNT}:assumed-role/rdsvend-signer/vend", ACCOUNT)
USER = "app_user"


class Permissions:
    def __init__(self) -> None:
        self.denied: set[str] = set()

    def __call__(self, credential: Credential, arn: str) -> tuple[bool, str]:
        return (arn not in self.denied, "test permissions")


@pytest.fixture(scope="module")
def permissions() -> Permissions:
    return Permissions()


@pytest.fixture(scope="module")
def front(permissions: Permissions) -> Iterator[LocalMariaDB]:
    db = LocalMariaDB(settings=FrontSettings(handshake_timeout=2.0, idle_timeout=600.0,
                                             max_handshake_packet=64 * 1024, max_connections=4,
                                             max_logins_per_peer=2))
    db.start()
    try:
        db.server.create_database("app")
        db.server.create_iam_user(USER)
        db.server.run_sql("GRANT SELECT ON app.* TO 'app_user'@'%'")
        checker = RdsTokenChecker(StaticSecretLookup([SESSION]), permission_check=permissions,
                                  endpoints=RdsInstance(REGION, ACCOUNT, "db-FRONTE2E00000000000000000",
                                                        frozenset({"localhost"}), db.port, "front-e2e"))
        db.set_checker(checker.check)
        yield db
    finally:
        db.stop()


def token(db: LocalMariaDB, user: str = USER) -> str:
    session = botocore.session.Session()
    session.set_credentials(SESSION.access_key_id, SESSION.secret_key, SESSION.session_token)
    rds: Any = session.create_client("rds", region_name=REGION)
    return str(rds.generate_db_auth_token("localhost", db.port, user, REGION))


def test_a_pymysql_session_sees_its_tls_version_and_cipher(front: LocalMariaDB) -> None:
    """As on RDS, a session's Ssl_version and Ssl_cipher name its TLS (the front speaks TLS to the
    backend too, at the client's version), never empty."""
    with front.connect(USER, token(front), database="app") as conn, conn.cursor() as cur:
        client_tls = conn._sock  # PyMySQL's TLS socket to the front
        cur.execute("SHOW STATUS LIKE 'Ssl_version'")
        assert cur.fetchone() == ("Ssl_version", client_tls.version())
        cur.execute("SHOW STATUS LIKE 'Ssl_cipher'")
        name, cipher = cur.fetchone()
        assert cipher and cipher == client_tls.cipher()[0]
        cur.execute("SELECT 1")  # the session still relays both ways after the status reads
        assert cur.fetchone() == (1,)


def test_a_session_token_over_1_5_kb_logs_in_with_pymysql_and_the_cli(front: LocalMariaDB) -> None:
    tok = token(front)
    assert len(tok) > 1500
    with front.connect(USER, tok, database="app") as conn, conn.cursor() as cur:
        cur.execute("SELECT CURRENT_USER()")
        assert cur.fetchone() == ("app_user@%",)
    opt = front.base_dir / "client-test.cnf"
    fd = os.open(opt, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f'[client]\nuser={USER}\npassword="{tok}"\nhost=localhost\nport={front.port}\nprotocol=TCP\n'
                     f"ssl-ca={front.ca_path}\nssl-verify-server-cert\n")
    done = subprocess.run(["mariadb", f"--defaults-extra-file={opt}", "-N", "-e", "SELECT CURRENT_USER()"],
                          capture_output=True, text=True, timeout=30, check=False)
    opt.unlink()
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "app_user@%"


def test_refusals_name_the_checker_reason(front: LocalMariaDB, permissions: Permissions,
                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    permissions.denied.add(f"arn:aws:rds-db:{REGION}:{ACCOUNT}:dbuser:db-FRONTE2E00000000000000000/{USER}")
    try:
        with pytest.raises(pymysql.err.OperationalError) as err:
            front.connect(USER, token(front))
    finally:
        permissions.denied.clear()
    assert err.value.args[0] == 1045
    assert "reason=not_permitted:test permissions" in caplog.text
    assert "X-Amz-Signature" not in caplog.text


def test_the_server_certificate_is_verified(front: LocalMariaDB, tmp_path: Path) -> None:
    from devtools.local.tls import make_tls_material

    other = make_tls_material(tmp_path / "other", owner=None)
    with pytest.raises(pymysql.err.OperationalError) as err:
        front.connect(USER, token(front), ca_path=str(other.ca_cert))
    assert "CERTIFICATE_VERIFY_FAILED" in str(err.value)


def _raw(front: LocalMariaDB, source: str = "127.0.0.1") -> tuple[socket.socket, bytes]:
    """A connection (from ``source``, another loopback address for another peer) that reads the
    greeting and goes no further; the greeting is empty when the front cut it off at once."""
    sock = socket.create_connection(("127.0.0.1", front.port), timeout=5, source_address=(source, 0))
    head = sock.recv(4)
    if len(head) < 4:
        return sock, b""
    length = int.from_bytes(head[:3], "little")
    greeting = b""
    while len(greeting) < length:
        greeting += sock.recv(length - len(greeting))
    return sock, greeting


def _read_error(sock: socket.socket) -> bytes:
    data = b""
    sock.settimeout(5)
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk


def test_an_oversized_handshake_packet_is_refused_and_closed(front: LocalMariaDB) -> None:
    sock, greeting = _raw(front)
    assert greeting[:1] == b"\x0a"
    sock.sendall((10 * 1024 * 1024).to_bytes(3, "little") + b"\x01")
    answer = _read_error(sock)
    sock.close()
    assert answer[4:5] == b"\xff" and int.from_bytes(answer[5:7], "little") == 1153


def test_a_silent_client_is_dropped_after_the_handshake_timeout(front: LocalMariaDB) -> None:
    sock, _ = _raw(front)
    started = time.monotonic()
    sock.settimeout(10)
    assert sock.recv(1) == b""  # closed by the front
    assert time.monotonic() - started < 8
    sock.close()


def test_garbage_without_a_tls_request_is_refused(front: LocalMariaDB) -> None:
    sock, _ = _raw(front)
    sock.sendall((40).to_bytes(3, "little") + b"\x01" + b"\x00" * 4 + secrets.token_bytes(36))
    answer = _read_error(sock)
    sock.close()
    assert answer[4:5] == b"\xff" and int.from_bytes(answer[5:7], "little") == 3159


def test_idle_connections_in_their_login_never_lock_logins_out(front: LocalMariaDB) -> None:
    tok = token(front)
    held = [_raw(front)[0] for _ in range(6)]  # more than the 4 slots, none finishing its login
    try:
        # at once, while they still wait (a login used to get 1040 until they timed out)
        with front.connect(USER, tok) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
    finally:
        for sock in held:
            sock.close()


def test_too_many_logged_in_sessions_get_1040_and_the_front_keeps_serving(front: LocalMariaDB) -> None:
    sessions = [front.connect(USER, token(front)) for _ in range(4)]
    try:
        extra = socket.create_connection(("127.0.0.1", front.port), timeout=5)
        answer = _read_error(extra)
        extra.close()
        assert answer[4:5] == b"\xff" and int.from_bytes(answer[5:7], "little") == 1040
    finally:
        for conn in sessions:
            conn.close()
    deadline = time.monotonic() + 10
    while True:
        try:
            with front.connect(USER, token(front)) as conn, conn.cursor() as cur:
                cur.execute("SELECT 1")
                break
        except pymysql.err.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_a_70_kb_token_gets_an_error_naming_the_limit_not_a_dropped_connection(front: LocalMariaDB) -> None:
    with pytest.raises(pymysql.err.OperationalError) as err:
        front.connect(USER, "x" * 70 * 1024)
    assert err.value.args[0] == 1153, err.value.args  # the front's answer, not 2013 "Lost connection"
    assert "65536 bytes" in err.value.args[1]


def _closed(sock: socket.socket) -> bool:
    """Whether the front has closed ``sock`` (it sends nothing unasked during the login)."""
    sock.settimeout(0.5)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


def test_one_address_holds_at_most_its_share_of_connections_in_their_login(front: LocalMariaDB) -> None:
    pile = [_raw(front, "127.0.0.2")[0] for _ in range(6)]  # 6: more than the 4 slots
    try:
        # the front keeps the 2 newest of that address (its limit) and closed the others
        assert [_closed(sock) for sock in pile] == [True] * 4 + [False] * 2
    finally:
        for sock in pile:
            sock.close()


def test_a_login_in_progress_is_never_cut_off_for_another_addresses_connections(front: LocalMariaDB) -> None:
    checking, go_on = threading.Event(), threading.Event()
    check = front.token_check

    def slow_check(user: str, tok: str) -> bool:
        checking.set()
        go_on.wait(10)
        return check(user, tok)

    outcome: dict[str, object] = {}

    def login() -> None:
        try:
            with front.connect(USER, token(front)) as conn, conn.cursor() as cur:
                cur.execute("SELECT 1")
                outcome["rows"] = cur.fetchall()
        except pymysql.err.MySQLError as exc:
            outcome["error"] = exc

    front.set_checker(slow_check)
    thread = threading.Thread(target=login)
    thread.start()
    pile: list[socket.socket] = []
    try:
        assert checking.wait(10)  # the login is in its token check
        pile = [_raw(front, "127.0.0.2")[0] for _ in range(12)]  # three times the slots
        go_on.set()
        thread.join(20)
    finally:
        go_on.set()
        front.set_checker(check)
        for sock in pile:
            sock.close()
    # it used to be cut off ("Lost connection") to make room for the pile
    assert outcome == {"rows": ((1,),)}


def test_the_backend_is_not_reachable_over_tcp(front: LocalMariaDB) -> None:
    sock_path = front.server.socket_path
    assert oct(os.stat(sock_path.parent).st_mode & 0o777) == "0o700"
    cmdline = open(f"/proc/{front.pid}/cmdline", "rb").read().split(b"\0")
    assert b"--skip-networking" in cmdline


def test_a_login_whose_user_cannot_be_looked_up_is_refused(front: LocalMariaDB, caplog: pytest.LogCaptureFixture,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level("INFO")

    def broken(user: str) -> Any:
        raise OSError("backend gone")

    monkeypatch.setattr(front.front, "plugins", broken)
    with pytest.raises(pymysql.err.OperationalError) as err:
        front.connect(USER, token(front))
    assert err.value.args[0] == 1045
    assert "reason=could_not_check:OSError" in caplog.text
