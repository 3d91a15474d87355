"""The local stack's lifecycle: start everything, describe it, stop it (also after a crash).

Two halves:

- :class:`StackServer` runs the stack in *this* process: moto in server mode seeded from the
  world file, the bind-only LDAP responder with the RDS token checker, one RDS-shaped
  PostgreSQL per database in the world, and the SigV4 gateway with the Chalice app in
  process (configured, as the Lambda would be, through its environment). ``rdsvend local up``
  runs it in the foreground; ``python -m chalicelib.local.stack`` is what ``--detach`` spawns.
- :class:`LocalStack` is the context manager the tests and ``make demo`` use: it spawns the
  server as a detached child, waits until everything answers, and reads the state file.
  Keeping the stack out of the caller's process keeps moto's global state and the app's
  environment away from the caller's own boto3 clients.

Everything the stack starts is written to ``state.json`` in its state directory (by default
``.rdsvend/local/`` in the repository, which git ignores) as soon as it exists, so that
:func:`down` can stop it all and remove every temp dir even when the server died.
Everything binds 127.0.0.1.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

__all__ = [
    "REPO_ROOT",
    "DEFAULT_STATE_DIR",
    "DEFAULT_ACCESS",
    "StackError",
    "StackInfo",
    "StackServer",
    "LocalStack",
    "DownReport",
    "down",
    "read_state",
    "running_info",
    "signed_request",
    "spawn_detached",
    "listening_sockets",
    "listen_table",
    "UNSET_ENV",
]

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STATE_DIR = REPO_ROOT / ".rdsvend" / "local"
DEFAULT_ACCESS = REPO_ROOT / "policies" / "local-access.yaml"
STATE_FILE = "state.json"
LOG_FILE = "stack.log"
#: Variables a shell must drop to use the local caller's long-term keys.
UNSET_ENV = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE")


class StackError(RuntimeError):
    """The local stack could not start, answer or stop. One line, no secrets."""


# -- state file --------------------------------------------------------------------------------

def _proc_start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (guards against a recycled pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int | None, start_time: str | None = None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if start_time is not None and _proc_start_time(pid) != start_time:
        return False
    state = _proc_state(pid)
    return state not in ("Z", "X")


def _proc_state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _write_state(state_dir: Path, state: Mapping[str, Any]) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = state_dir / f".{STATE_FILE}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(state, handle, indent=1)
    os.replace(tmp, state_dir / STATE_FILE)


def read_state(state_dir: str | os.PathLike[str] = DEFAULT_STATE_DIR) -> dict[str, Any] | None:
    """The state file's content, or ``None`` when there is none (or it is unreadable)."""
    try:
        return json.loads((Path(state_dir) / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None


def running_info(state_dir: str | os.PathLike[str] = DEFAULT_STATE_DIR) -> StackInfo | None:
    """The running stack recorded in ``state_dir``, or ``None`` when none is up and ready."""
    state = read_state(state_dir)
    if not state or state.get("status") != "ready" or not _alive(state.get("pid"), state.get("proc_start")):
        return None
    return StackInfo.from_json(state["info"])


# -- what a running stack looks like ---------------------------------------------------------------

@dataclass(frozen=True)
class StackInfo:
    """Where everything listens and which credentials to use. Holds secrets: never log it."""

    state_dir: str
    pid: int
    region: str
    moto_url: str
    gateway_url: str
    ldap_port: int
    policy_path: str
    ca_path: str
    admin_dsn: str = field(repr=False)
    databases: Mapping[str, Mapping[str, Any]]  # identifier -> host, port, dbname, resource_id, account, pg_pid
    seeded: Any = field(repr=False)  # chalicelib.local.aws.SeededWorld

    def keys(self, caller: str = "allowed") -> Any:
        """The access key of the world's ``allowed`` or ``denied`` caller."""
        return self.seeded.callers[caller]

    def env(self, caller: str = "allowed") -> dict[str, str]:
        keys = self.keys(caller)
        return {
            "AWS_ENDPOINT_URL": self.moto_url,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ACCESS_KEY_ID": keys.access_key_id,
            "AWS_SECRET_ACCESS_KEY": keys.secret_access_key,
            "RDSVEND_URL": self.gateway_url,
            "RDSVEND_POLICY": self.policy_path,
            "PGSSLROOTCERT": self.ca_path,
            "RDSVEND_LOCAL_ADMIN_DSN": self.admin_dsn,
        }

    def ports(self) -> list[int]:
        from urllib.parse import urlsplit

        return [urlsplit(self.moto_url).port, urlsplit(self.gateway_url).port, self.ldap_port,
                *(int(d["port"]) for d in self.databases.values())]

    def to_json(self) -> dict[str, Any]:
        return {
            "state_dir": self.state_dir, "pid": self.pid, "region": self.region, "moto_url": self.moto_url,
            "gateway_url": self.gateway_url, "ldap_port": self.ldap_port, "policy_path": self.policy_path,
            "ca_path": self.ca_path, "admin_dsn": self.admin_dsn, "databases": dict(self.databases),
            "seeded": self.seeded.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StackInfo:
        from chalicelib.local.aws import SeededWorld

        return cls(
            state_dir=data["state_dir"], pid=int(data["pid"]), region=data["region"], moto_url=data["moto_url"],
            gateway_url=data["gateway_url"], ldap_port=int(data["ldap_port"]), policy_path=data["policy_path"],
            ca_path=data["ca_path"], admin_dsn=data["admin_dsn"], databases=dict(data["databases"]),
            seeded=SeededWorld.from_json(data["seeded"]),
        )


# -- the stack in this process ---------------------------------------------------------------------

class StackServer:
    """Runs the whole local stack in this process. ``start()`` returns once it all answers."""

    def __init__(
        self,
        *,
        state_dir: str | os.PathLike[str] = DEFAULT_STATE_DIR,
        world_path: str | os.PathLike[str] | None = None,
        access_path: str | os.PathLike[str] = DEFAULT_ACCESS,
    ) -> None:
        from chalicelib.local.world import DEFAULT_WORLD

        self.state_dir = Path(state_dir).resolve()
        self.world_path = Path(world_path or DEFAULT_WORLD)
        self.access_path = Path(access_path)
        self._state: dict[str, Any] = {}
        self._moto: Any = None
        self._ldap: Any = None
        self._clusters: dict[str, Any] = {}
        self._gateway: Any = None
        self._checker: Any = None
        self._sessions: Any = None
        self._lookup: Any = None
        self._verdicts: dict[tuple[str, str, str], tuple[int, tuple[bool, str]]] = {}
        self._verdicts_lock = threading.Lock()
        self.info: StackInfo | None = None

    # the LDAP responder starts before the checker can exist (PostgreSQL needs the
    # responder's port, the checker needs PostgreSQL's): until then, refuse everything.
    def _check_login(self, user: str, password: str) -> bool:
        checker = self._checker
        return bool(checker is not None and checker.check(user, password))

    def _save(self, **updates: Any) -> None:
        self._state.update(updates)
        _write_state(self.state_dir, self._state)

    def start(self) -> StackInfo:
        existing = read_state(self.state_dir)
        if existing and _alive(existing.get("pid"), existing.get("proc_start")) and existing.get("pid") != os.getpid():
            raise StackError(f"a local stack is already running from {self.state_dir} (pid {existing['pid']}); "
                             "run 'rdsvend local down' first")
        if existing:
            down(self.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._save(pid=os.getpid(), proc_start=_proc_start_time(os.getpid()), status="starting",
                   started_at=time.time(), ports=[], pg=[])
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> StackInfo:
        import psycopg.conninfo

        from chalicelib.local.aws import AccountSessions, MotoSecretLookup, MotoServer, seed_world
        from chalicelib.local.ldap import LdapResponder
        from chalicelib.local.postgres import PostgresCluster
        from chalicelib.local.rdsauth import RdsInstance, RdsTokenChecker
        from chalicelib.local.world import load_world

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        world = load_world(self.world_path)
        # moto imports a service's models on its first request (RDS pulls in EC2: seconds);
        # import them, and the app, while PostgreSQL's initdb runs in its own process.
        for key, value in _POWERTOOLS_DEFAULTS.items():
            os.environ.setdefault(key, value)
        warm = threading.Thread(target=_warm_imports, name="rdsvend-warm-imports", daemon=True)
        warm.start()
        if not world.databases():
            raise StackError(f"{self.world_path}: the world has no database")

        self._moto = MotoServer()
        moto_url = self._moto.start()
        self._save(ports=[*self._state["ports"], _port_of(moto_url)])

        self._ldap = LdapResponder(self._check_login).start()
        self._save(ports=[*self._state["ports"], self._ldap.port])

        # One RDS-shaped PostgreSQL per database in the world.
        for _account, spec in world.databases():
            cluster = PostgresCluster(ldap_port=self._ldap.port)
            self._clusters[spec.identifier] = cluster
            cluster.start()
            self._save(pg=[*self._state["pg"], str(cluster.base_dir)],
                       pg_pids=[*self._state.get("pg_pids", []), cluster.pid],
                       ports=[*self._state["ports"], cluster.port])
        ca_src = next(iter(self._clusters.values())).ca_path if self._clusters else None
        ca_path = self.state_dir / "ca.pem"
        if ca_src is not None:
            shutil.copyfile(ca_src, ca_path)
            os.chmod(ca_path, 0o644)

        warm.join()
        first = next(iter(self._clusters.values()))
        seeded = seed_world(world, moto_url, db_host=first.host,
                            db_port={ident: c.port for ident, c in self._clusters.items()},
                            master_password=secrets.token_urlsafe(18))

        self._lookup = MotoSecretLookup()
        self._sessions = AccountSessions(moto_url, world.region, world.organization.management_account)
        endpoints = {
            ident: RdsInstance(region=inst.region, account=inst.account, resource_id=inst.resource_id,
                               hosts=frozenset({inst.host}), port=inst.port, identifier=ident)
            for ident, inst in seeded.instances.items()
        }
        self._checker = RdsTokenChecker(self._lookup, endpoints=endpoints, permission_check=self._permission_check)

        for _account, spec in world.databases():
            _create_database(self._clusters[spec.identifier], spec)

        policy_path = self.state_dir / "access.yaml"
        _write_access_policy(self.access_path, policy_path, seeded, ca_path)

        self._gateway = _start_gateway(world, seeded, policy_path, self._lookup)
        self._save(ports=[*self._state["ports"], _port_of(self._gateway.url)])

        admin = psycopg.conninfo.conninfo_to_dict(first.admin_dsn)
        admin["sslrootcert"] = str(ca_path)
        databases = {
            ident: {"host": inst.host, "port": inst.port, "dbname": inst.dbname, "resource_id": inst.resource_id,
                    "account": inst.account, "pg_pid": self._clusters[ident].pid,
                    "base_dir": str(self._clusters[ident].base_dir)}
            for ident, inst in seeded.instances.items()
        }
        info = StackInfo(
            state_dir=str(self.state_dir), pid=os.getpid(), region=world.region, moto_url=moto_url,
            gateway_url=self._gateway.url, ldap_port=self._ldap.port, policy_path=str(policy_path),
            ca_path=str(ca_path), admin_dsn=psycopg.conninfo.make_conninfo(**admin), databases=databases,
            seeded=seeded,
        )
        _probe(info)
        self.info = info
        self._save(status="ready", info=info.to_json())
        return info

    def _permission_check(self, credential: Any, dbuser_arn: str) -> tuple[bool, str]:
        """May this signer ``rds-db:connect`` as that dbuser? Live IAM and SCP state, judged by
        rdsvend's evaluator. Anything that could not be evaluated is a refusal.

        A verdict only changes when IAM or Organizations state does, so it is reused until a
        write reaches either (the moto server counts them): exact, unlike a time-based cache.
        """
        generation = self._moto.generation if self._moto is not None else None
        key = (credential.access_key_id, credential.principal_arn, dbuser_arn)
        with self._verdicts_lock:
            cached = self._verdicts.get(key)
        if cached is not None and generation is not None and cached[0] == generation:
            return cached[1]
        result = self._evaluate_permission(credential, dbuser_arn)
        if generation is not None and self._moto is not None and self._moto.generation == generation:
            with self._verdicts_lock:
                self._verdicts[key] = (generation, result)
        return result

    def _evaluate_permission(self, credential: Any, dbuser_arn: str) -> tuple[bool, str]:
        from chalicelib.errors import IamFetchError, IamPolicyError
        from chalicelib.iam.connect import evaluate_rds_connect
        from chalicelib.iam.model import parse_policy

        try:
            raw_session = self._lookup.session_policy(credential.access_key_id)
            session_policy = parse_policy(raw_session, "session policy") if raw_session else None
            verdict = evaluate_rds_connect(
                credential.principal_arn, dbuser_arn,
                iam_client=self._sessions.client("iam", credential.account),
                org_client=self._sessions.client("organizations", self._sessions.management_account),
                account_id=credential.account,
                session_policy=session_policy,
            )
        except (IamFetchError, IamPolicyError) as exc:
            return False, f"could not evaluate rds-db:connect: {exc}"
        return verdict.allowed, verdict.combined.explanation

    def stop(self) -> None:
        """Stop everything this server started and remove the state it wrote."""
        for name, part in (("gateway", self._gateway), ("ldap", self._ldap)):
            if part is not None:
                try:
                    part.stop()
                except Exception:  # noqa: BLE001 - keep stopping the rest
                    log.exception("could not stop the %s", name)
        self._gateway = self._ldap = None
        for cluster in self._clusters.values():
            try:
                cluster.stop()
            except Exception:  # noqa: BLE001
                log.exception("could not stop a local postgres")
        self._clusters = {}
        if self._moto is not None:
            try:
                self._moto.stop()
            except Exception:  # noqa: BLE001
                log.exception("could not stop moto")
            self._moto = None
        self._checker = None
        _remove_state_dir(self.state_dir)
        try:
            self.state_dir.rmdir()  # only when empty (a detached server's log stays for 'down')
        except OSError:
            pass

    def serve_forever(self, ready: Any = None) -> None:
        """Start, report, and run until SIGINT or SIGTERM; then stop everything."""
        stop = threading.Event()
        started = threading.Event()

        def _signal(signum: int, _frame: Any) -> None:
            stop.set()
            if not started.is_set():
                raise KeyboardInterrupt  # abandon the start; start() cleans up what it made

        previous = {s: signal.signal(s, _signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            info = self.start()
            started.set()
            if ready is not None:
                ready(info)
            while not stop.wait(0.5):
                pass
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            self.stop()


_POWERTOOLS_DEFAULTS = {"POWERTOOLS_SERVICE_NAME": "rdsvend", "POWERTOOLS_METRICS_NAMESPACE": "rdsvend",
                        "POWERTOOLS_TRACE_DISABLED": "true"}


def _warm_imports() -> None:
    import importlib

    for module in ("moto.rds.models", "moto.iam.models", "moto.sts.models", "moto.organizations.models",
                   "moto.rds.responses", "moto.iam.responses", "chalicelib.iam.connect", "app"):
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001 - only a head start; the real import reports errors
            log.debug("warm import of %s failed", module)


def _port_of(url: str) -> int:
    from urllib.parse import urlsplit

    port = urlsplit(url).port
    assert port is not None
    return port


def _create_database(cluster: Any, spec: Any) -> None:
    """The database, its users (``rds_iam`` for IAM users, ``rds_ad`` for Kerberos ones) and the
    world's set-up statements, run as the superuser."""
    from psycopg import sql

    cluster.run_sql(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(spec.dbname)))
    for user in spec.users.values():
        if user.auth == "iam":
            cluster.create_iam_user(user.name)
        elif user.auth == "kerberos":
            # No password: on RDS such a user logs in with Kerberos only; here, not at all.
            cluster.run_sql(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(user.name)))
            cluster.run_sql(sql.SQL("GRANT rds_ad TO {}").format(sql.Identifier(user.name)))
        else:
            cluster.create_password_user(user.name, secrets.token_urlsafe(24))
    for statement in spec.setup_sql:
        cluster.run_sql(statement, dbname=spec.dbname)


def _write_access_policy(template: Path, target: Path, seeded: Any, ca_path: Path) -> None:
    """The access policy with each local database's real host and port, validated."""
    import yaml

    from chalicelib.policy.loader import load_policy_file

    data = yaml.safe_load(template.read_text(encoding="utf-8"))
    for name, spec in (data.get("databases") or {}).items():
        ident = spec.get("instance")
        inst = seeded.instances.get(ident)
        if inst is None:
            raise StackError(f"{template}: database '{name}' names instance '{ident}', which the world does not have")
        spec["host"], spec["port"] = inst.host, inst.port
    data.setdefault("canary", {})["ssl_root_cert"] = str(ca_path)
    header = (f"# Generated by the local stack from {template.name}: do not edit (it is rewritten at every start).\n")
    target.write_text(header + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    load_policy_file(target)


def _start_gateway(world: Any, seeded: Any, policy_path: Path, lookup: Any) -> Any:
    """Configure this process as the Lambda would be, import the app, put the gateway in front."""
    from chalicelib.local.aws import org_id_of
    from chalicelib.local.gateway import Gateway

    for key in ("AWS_PROFILE", "AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE"):
        os.environ.pop(key, None)
    os.environ.update({
        "RDSVEND_POLICY": str(policy_path),
        "AWS_ENDPOINT_URL": seeded.endpoint_url,
        "RDSVEND_STS_ENDPOINT": seeded.endpoint_url,
        "AWS_DEFAULT_REGION": world.region,
        "AWS_REGION": world.region,
        "AWS_LAMBDA_FUNCTION_NAME": "rdsvend-local-api_handler",
        **seeded.execution.env(),
    })
    for key, value in _POWERTOOLS_DEFAULTS.items():
        os.environ.setdefault(key, value)
    from app import app
    from chalicelib.routes.http import set_vending_service

    set_vending_service(None)  # built again, from this environment, on first use
    gateway = Gateway(app, lookup, region=world.region, account=world.service_account,
                      org_id_of=org_id_of, caller_id_of=lookup.caller_id)
    gateway.start()
    return gateway


def _probe(info: StackInfo, timeout: float = 10.0) -> None:
    """Everything answers: the gateway (a signed whoami), PostgreSQL (the superuser), LDAP (TCP)."""
    import psycopg

    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            status, _body = signed_request(info, "GET", "/v1/whoami")
            if status != 200:
                raise StackError(f"the gateway answered {status} to a signed whoami")
            with psycopg.connect(info.admin_dsn, connect_timeout=5) as conn:
                conn.execute("SELECT 1")
            with socket.create_connection(("127.0.0.1", info.ldap_port), timeout=2):
                pass
            return
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            last = f"{type(exc).__name__}: {str(exc)[:200]}"
            time.sleep(0.2)
    raise StackError(f"the local stack did not answer: {last}")


def signed_request(info: StackInfo, method: str, path: str, body: Any = None, *, caller: str = "allowed",
                   timeout: float = 10.0) -> tuple[int, Any]:
    """One SigV4-signed (``execute-api``) call to the gateway as a world caller: ``(status, json)``."""
    import urllib.error
    import urllib.request

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    keys = info.keys(caller)
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data is not None else {}
    request = AWSRequest(method=method, url=info.gateway_url + path, data=data, headers=headers)
    SigV4Auth(Credentials(keys.access_key_id, keys.secret_access_key, keys.session_token),
              "execute-api", info.region).add_auth(request)
    prepared = request.prepare()
    http_request = urllib.request.Request(prepared.url, data=prepared.body, method=method,
                                          headers=dict(prepared.headers.items()))
    try:
        with urllib.request.urlopen(http_request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


# -- stopping, also after a crash ------------------------------------------------------------------

@dataclass(frozen=True)
class DownReport:
    stopped: tuple[str, ...]
    leftovers: tuple[str, ...]  # what could not be stopped or removed (empty when all is gone)

    @property
    def clean(self) -> bool:
        return not self.leftovers


def _remove_state_dir(state_dir: Path) -> None:
    """Remove the files the stack writes, then the dir if nothing else is in it."""
    for name in (STATE_FILE, "access.yaml", "ca.pem"):
        try:
            (state_dir / name).unlink()
        except FileNotFoundError:
            pass
    for tmp in state_dir.glob(f".{STATE_FILE}.*.tmp"):
        tmp.unlink(missing_ok=True)


def down(state_dir: str | os.PathLike[str] = DEFAULT_STATE_DIR, *, timeout: float = 30.0) -> DownReport:
    """Stop the stack recorded in ``state_dir``: the server process, every PostgreSQL, every temp
    dir. Works when the server crashed (its PostgreSQL is stopped from its data dir)."""
    from chalicelib.local.postgres import PostgresError, stop_cluster_dir

    state_dir = Path(state_dir).resolve()
    state = read_state(state_dir)
    stopped: list[str] = []
    leftovers: list[str] = []
    if state is None:
        if state_dir.exists():
            _remove_state_dir(state_dir)
            _remove_log(state_dir)
        return DownReport((), ())
    pid = state.get("pid")
    if pid and pid != os.getpid() and _alive(pid, state.get("proc_start")):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid, state.get("proc_start")) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid, state.get("proc_start")):
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
        stopped.append(f"stack process {pid}")
        _reap(pid)
    for base in state.get("pg", []):
        if Path(base).exists():
            try:
                stop_cluster_dir(base, timeout=timeout)
                stopped.append(f"postgres in {base}")
            except (PostgresError, OSError) as exc:
                leftovers.append(f"postgres in {base}: {exc}")
    ours = {p for p in [pid, *state.get("pg_pids", [])] if p}
    for other in ours - {os.getpid()}:
        if _alive(other) and other != pid:
            leftovers.append(f"process {other} is still running")
    for port in state.get("ports", []):
        if _listening("127.0.0.1", int(port)):
            owner = _port_owner(int(port))
            # a port the kernel has since handed to someone else is not ours to report
            if owner is None or owner in ours:
                leftovers.append(f"something still listens on 127.0.0.1:{port}")
    _remove_state_dir(state_dir)
    _remove_log(state_dir)
    return DownReport(tuple(stopped), tuple(leftovers))


def _remove_log(state_dir: Path) -> None:
    (state_dir / LOG_FILE).unlink(missing_ok=True)
    try:
        state_dir.rmdir()
    except OSError:
        pass


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _port_owner(port: int) -> int | None:
    """The pid holding the LISTEN socket on ``port``, when this process may see it."""
    inodes = {f"socket:[{inode}]" for _addr, p, inode in listen_table() if p == port}
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                try:
                    if os.readlink(fd) in inodes:
                        return int(proc.name)
                except OSError:
                    continue
        except OSError:
            continue
    return None


def listening_sockets(pids: Iterable[int]) -> list[tuple[str, int, int]]:
    """``(address, port, pid)`` of every TCP socket in LISTEN state held by ``pids`` (Linux)."""
    inodes: dict[str, int] = {}
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes[target[8:-1]] = pid
        except OSError:
            continue
    return [(addr, port, inodes[inode]) for addr, port, inode in listen_table() if inode in inodes]


def listen_table() -> list[tuple[str, int, str]]:
    """``(address, port, socket inode)`` of every TCP socket in LISTEN state (Linux /proc)."""
    found = []
    for table, family in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 6)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, st, inode = fields[1], fields[3], fields[9]
            if st != "0A":  # 0A: LISTEN
                continue
            addr_hex, port_hex = local.split(":")
            found.append((_decode_addr(addr_hex, family), int(port_hex, 16), inode))
    return found


def _decode_addr(hex_addr: str, family: int) -> str:
    import ipaddress

    raw = bytes.fromhex(hex_addr)
    # /proc/net/tcp* stores each 32-bit word in host (little-endian) order
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.IPv4Address(words) if family == 4 else ipaddress.IPv6Address(words))


# -- a stack in a child process --------------------------------------------------------------------

def spawn_detached(state_dir: str | os.PathLike[str] = DEFAULT_STATE_DIR, *, timeout: float = 90.0,
                   world_path: str | None = None, access_path: str | None = None) -> StackInfo:
    """Start the stack as a detached process; return once everything answers."""
    state_dir = Path(state_dir).resolve()
    existing = read_state(state_dir)
    if existing and _alive(existing.get("pid"), existing.get("proc_start")):
        raise StackError(f"a local stack is already running from {state_dir} (pid {existing['pid']}); "
                         "run 'rdsvend local down' first")
    if existing:
        down(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "chalicelib.local.stack", "--state-dir", str(state_dir)]
    if world_path:
        argv += ["--world", str(world_path)]
    if access_path:
        argv += ["--access", str(access_path)]
    log_path = state_dir / LOG_FILE
    with open(log_path, "wb") as log_file:
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                 start_new_session=True, close_fds=True, cwd=str(REPO_ROOT))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = read_state(state_dir)
        if state and state.get("pid") == child.pid and state.get("status") == "ready":
            return StackInfo.from_json(state["info"])
        if child.poll() is not None:
            tail = _tail(log_path)
            down(state_dir)
            raise StackError(f"the local stack exited with status {child.returncode} while starting: {tail}")
        time.sleep(0.1)
    tail = _tail(log_path)
    down(state_dir)
    raise StackError(f"the local stack did not answer within {int(timeout)} s: {tail}")


def _tail(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    return lines[-1][:300] if lines else "(empty log)"


class LocalStack:
    """The local stack in a child process, as a context manager (tests, ``make demo``).

    >>> with LocalStack() as stack:          # doctest: +SKIP
    ...     stack.env()["RDSVEND_URL"]
    """

    def __init__(self, state_dir: str | os.PathLike[str] = DEFAULT_STATE_DIR, *, timeout: float = 90.0,
                 world_path: str | None = None, access_path: str | None = None) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.timeout = timeout
        self.world_path = world_path
        self.access_path = access_path
        self._info: StackInfo | None = None

    @property
    def info(self) -> StackInfo:
        if self._info is None:
            raise StackError("the local stack is not started")
        return self._info

    def start(self) -> LocalStack:
        self._info = spawn_detached(self.state_dir, timeout=self.timeout, world_path=self.world_path,
                                    access_path=self.access_path)
        return self

    def stop(self) -> DownReport:
        self._info = None
        return down(self.state_dir)

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # conveniences for tests and the demo
    def env(self, caller: str = "allowed") -> dict[str, str]:
        return self.info.env(caller)

    def keys(self, caller: str = "allowed") -> Any:
        return self.info.keys(caller)

    def request(self, method: str, path: str, body: Any = None, *, caller: str = "allowed") -> tuple[int, Any]:
        return signed_request(self.info, method, path, body, caller=caller)

    @property
    def url(self) -> str:
        return self.info.gateway_url

    @property
    def moto_url(self) -> str:
        return self.info.moto_url

    @property
    def ca_path(self) -> str:
        return self.info.ca_path

    @property
    def admin_dsn(self) -> str:
        return self.info.admin_dsn

    def pids(self) -> list[int]:
        """The stack process and every postmaster with its children."""
        pids = [self.info.pid]
        for db in self.info.databases.values():
            if db.get("pg_pid"):
                pids.append(int(db["pg_pid"]))
                pids.extend(_children(int(db["pg_pid"])))
        return pids


def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            children = (task / "children").read_text().split()
            out.extend(int(c) for c in children)
    except OSError:
        pass
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m chalicelib.local.stack --state-dir DIR``: the detached server."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m chalicelib.local.stack")
    parser.add_argument("--state-dir", default=str(DEFAULT_STATE_DIR))
    parser.add_argument("--world")
    parser.add_argument("--access")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    server = StackServer(state_dir=args.state_dir, world_path=args.world,
                         access_path=args.access or DEFAULT_ACCESS)
    try:
        server.serve_forever(ready=lambda info: print(f"local stack ready at {info.gateway_url}", flush=True))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - one line, the state is cleaned up by stop()
        print(f"local stack failed: {type(exc).__name__}: {str(exc)[:300]}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
