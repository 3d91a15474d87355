"""Runs the whole local stack in this process (:class:`StackServer`): moto in server mode seeded
from the world file, the bind-only LDAP responder with the RDS token checker, one RDS-shaped
PostgreSQL per database in the world, and the SigV4 gateway with the Chalice app in process
(configured, as the Lambda would be, through its environment). ``rdsvend local up`` runs it in
the foreground; ``python -m devtools.local.stack`` is what ``--detach`` spawns.
"""
from __future__ import annotations

import logging
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chalicelib.aws.arn import iam_principal_of
from chalicelib.errors import IamFetchError, IamPolicyError
from chalicelib.iam.connect import evaluate_rds_connect
from chalicelib.iam.fetch import source_parts
from chalicelib.iam.model import parse_policy
from chalicelib.routes.http import set_vending_service
from chalicelib.routes.invoke import set_verifier
from devtools.local.attribution import start_attribution
from devtools.local.authorize import ALLOWED_LOG, DENIAL_LOG, Allowed, AllowedLog, Denial, DenialLog, Enforcer
from devtools.local.aws import AccountSessions, MotoSecretLookup, MotoServer, seed_world
from devtools.local.botocore_models import share_loaded_models
from devtools.local.cold_start import ColdStarts
from devtools.local.deployment import LocalRun, deploy_local
from devtools.local.dsql import start_dsql_clusters
from devtools.local.lambda_invoke import FUNCTION as VEND_FUNCTION
from devtools.local.lambda_invoke import FUNCTION_NAME as VEND_FUNCTION_NAME
from devtools.local.lambda_invoke import start_vend_function, vend_handler
from devtools.local.last_run import LastRun, recall, remember
from devtools.local.ldap import LdapResponder
from devtools.local.permissions import assume_role_permission, identity_permission
from devtools.local.postgres import PostgresCluster
from devtools.local.provision import (
    API_FUNCTION,
    API_FUNCTION_NAME,
    POWERTOOLS_DEFAULTS,
    admin_dsn,
    create_database,
    port_of,
    prepare_grants,
    probe,
    seed_secrets,
    start_gateway,
    warm_imports,
    write_access_policy,
)
from devtools.local.proxy_fronts import prepare_proxies, start_proxy_fronts, stop_proxy_fronts
from devtools.local.rds_mysql import (
    MysqlStarter,
    append_cas,
    iam_enabled_in_moto,
    local_db_fields,
    mysql_admin_env,
    setup_mysql_database,
    stop_mysql_databases,
)
from devtools.local.rdsauth import RdsInstance, RdsTokenChecker
from devtools.local.secret_labels import install as keep_secret_labels
from devtools.local.sessions import management_root
from devtools.local.state import (
    DEFAULT_ACCESS,
    DEFAULT_STATE_DIR,
    StackError,
    StackInfo,
    alive,
    proc_start_time,
    read_state,
    write_state,
)
from devtools.local.sts_auth import StsSignatureCheck
from devtools.local.teardown import PROXY_TLS_DIR, down, remove_state_dir
from devtools.local.world import DEFAULT_WORLD, load_world

__all__ = ["StackServer"]

log = logging.getLogger("devtools.local.stack")

# -- the stack in this process ---------------------------------------------------------------------

class StackServer:
    """Runs the whole local stack in this process. ``start()`` returns once it all answers."""

    def __init__(
        self,
        *,
        state_dir: str | os.PathLike[str] = DEFAULT_STATE_DIR,
        world_path: str | os.PathLike[str] | None = None,
        access_path: str | os.PathLike[str] = DEFAULT_ACCESS,
        enforce: bool = True,
    ) -> None:

        self.state_dir = Path(state_dir).resolve()
        self.world_path = Path(world_path or DEFAULT_WORLD)
        self.access_path = Path(access_path)
        #: every request to the local AWS is authorized as AWS would (devtools.local.authorize)
        self.enforce = enforce
        self._enforcer: Any = None
        self._allowed: AllowedLog | None = None  # what the local AWS allowed, and which statement did
        self._state: dict[str, Any] = {}
        self._moto: Any = None
        self._ldap: Any = None
        self._clusters: dict[str, Any] = {}
        self._mysql: dict[str, Any] = {}  # identifier -> devtools.local.rds_mysql.LocalMariaDB
        self._dsql: dict[str, Any] = {}  # world name -> devtools.local.dsql.LocalDsqlCluster
        self._gateway: Any = None
        self._proxies: list[Any] = []  # the RDS Proxy fronts (devtools.local.proxy_fronts)
        self._lambda: Any = None
        self._vend_session: Any = None  # the vend function's role session (its new environments get it)
        self._checker: Any = None
        self._attribution: Any = None
        self._sessions: Any = None
        self._lookup: Any = None
        self._verdicts: dict[tuple[str, str, str, str], tuple[int, tuple[bool, str]]] = {}
        self._verdicts_lock = threading.Lock()
        self.info: StackInfo | None = None
        #: the previous run's ports and keys, kept when free (devtools.local.last_run)
        self.last_run = recall(self.state_dir)

    # the LDAP responder starts before the checker can exist (PostgreSQL needs the
    # responder's port, the checker needs PostgreSQL's): until then, refuse everything.
    def _check_login(self, user: str, password: str) -> bool:
        checker = self._checker
        return bool(checker is not None and checker.check(user, password))

    def _save(self, **updates: Any) -> None:
        self._state.update(updates)
        write_state(self.state_dir, self._state)

    def start(self) -> StackInfo:
        share_loaded_models()  # one copy of botocore's models for the sessions of every account
        existing = read_state(self.state_dir)
        if existing and alive(existing.get("pid"), existing.get("proc_start")) and existing.get("pid") != os.getpid():
            raise StackError(f"a local stack is already running from {self.state_dir} (pid {existing['pid']}); "
                             "run 'rdsvend local down' first")
        if existing:
            down(self.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._save(pid=os.getpid(), proc_start=proc_start_time(os.getpid()), status="starting",
                   started_at=time.time(), ports=[], pg=[])
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> StackInfo:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        world = load_world(self.world_path)
        # moto imports a service's models on its first request (RDS pulls in EC2: seconds);
        # import them, and the app, while PostgreSQL's initdb runs in its own process.
        for key, value in POWERTOOLS_DEFAULTS.items():
            os.environ.setdefault(key, value)
        warm = threading.Thread(target=warm_imports, name="rdsvend-warm-imports", daemon=True)
        warm.start()
        if not world.databases():
            raise StackError(f"{self.world_path}: the world has no database")

        moto_url = self._start_moto(world)
        self._ldap = LdapResponder(self._check_login).start()
        self._save(ports=[*self._state["ports"], self._ldap.port])
        ca_path = self._start_databases(world)
        proxy_tls, proxy_ports = prepare_proxies(world, self.state_dir / PROXY_TLS_DIR, ca_path,
                                                    lambda name: self.last_run.port(f"db:{name}"))

        warm.join()
        first = next(iter(self._clusters.values()))
        seeded = seed_world(world, moto_url, db_host=first.host,
                            db_port={**{i: c.port for i, c in self._clusters.items()},
                                     **{i: m.port for i, m in self._mysql.items()}},
                            master_password=secrets.token_urlsafe(18), known_keys=self.last_run.keys,
                            proxy_ports=proxy_ports)
        self._start_checkers(world, seeded, moto_url, ca_path)
        self._create_databases(world)

        # The RDS Proxy fronts: leg 1 checked like an instance's tokens, leg 2 signed as the proxy's role.
        self._proxies = start_proxy_fronts(seeded.proxies, seeded.instances, proxy_tls, ca_bundle=str(ca_path),
                                           sessions=self._sessions, lookup=self._lookup,
                                           permission_check=self._permission_check)
        self._save(ports=[*self._state["ports"], *proxy_ports.values()])

        policy_path = self.state_dir / "access.yaml"
        write_access_policy(self.access_path, policy_path, seeded, ca_path, world,
                            dsql={name: (c.identifier, c.host, c.port) for name, c in self._dsql.items()})
        seed_secrets(policy_path, seeded, {**self._clusters, **self._mysql}, self._sessions)
        # rdsvend itself, as a user deploys it: the local stage (devtools.local.deployment)
        run = deploy_local(world, seeded, self._sessions, policy_path.read_text(encoding="utf-8"))
        seeded = run.seeded
        self._start_fronts(world, seeded, run)

        info = self._stack_info(world, seeded, moto_url, policy_path, ca_path)
        prepare_grants({
            "RDSVEND_CANARY_ADMIN_DSN": info.admin_dsn,
            **{k.replace("LOCAL", "CANARY"): v for k, v in mysql_admin_env(info.databases).items()}})
        probe(info)
        self.info = info
        self._save(status="ready", info=info.to_json())
        remember(self.state_dir, _this_run(info, self._admin_passwords()))
        return info

    def _start_moto(self, world: Any) -> str:
        """The local AWS (moto in server mode), every request to it checked as AWS would; its URL."""
        self._moto = MotoServer(port=self.last_run.port("moto"))
        moto_url: str = self._moto.start()
        keep_secret_labels()  # one AWSCURRENT, AWSPREVIOUS where AWS puts it
        self._guard_moto(MotoSecretLookup(), world.organization.management_account)
        self._save(ports=[*self._state["ports"], port_of(moto_url)])
        return moto_url

    def _start_databases(self, world: Any) -> Path:
        """One RDS-shaped database per database of the world: PostgreSQL here, the MySQL family
        started in the background meanwhile; the path of the bundle of their CAs."""
        # The MySQL-family databases start in the background meanwhile (devtools.local.rds_mysql).
        mysql_starter = MysqlStarter(world, self._save, self._state,
                                     ports=lambda ident: self.last_run.port(f"db:{ident}"),
                                     passwords=lambda ident: self.last_run.password(f"db:{ident}"))
        self._mysql = mysql_starter.databases  # kept before any starts: stop() then stops them all
        mysql_starter.start()
        # One RDS-shaped PostgreSQL per database in the world.
        for _account, spec in world.databases():
            if spec.engine != "postgres":
                continue  # the MySQL family: below
            cluster = PostgresCluster(ldap_port=self._ldap.port,
                                      port=self.last_run.port(f"db:{spec.identifier}") or None,
                                      password=self.last_run.password(f"db:{spec.identifier}"))
            self._clusters[spec.identifier] = cluster
            cluster.start()
            self._save(pg=[*self._state["pg"], str(cluster.base_dir)],
                       pg_pids=[*self._state.get("pg_pids", []), cluster.pid],
                       ports=[*self._state["ports"], cluster.port])
        # Each cluster has its own CA: ca.pem is the bundle of them all (as RDS's global bundle is).
        ca_path = self.state_dir / "ca.pem"
        ca_path.write_bytes(b"".join(Path(c.ca_path).read_bytes() for c in self._clusters.values()))
        os.chmod(ca_path, 0o644)
        mysql_starter.finish(self._save, self._state)
        append_cas(ca_path, self._mysql)
        return ca_path

    def _start_checkers(self, world: Any, seeded: Any, moto_url: str, ca_path: Path) -> None:
        """What checks a token login: RDS's checker behind attribution (the IAM auth switch,
        throttling, the refusal log, metrics: devtools.local.attribution), and the DSQL clusters'."""
        self._lookup = MotoSecretLookup()
        self._sessions = AccountSessions(moto_url, world.region, world.organization.management_account)
        endpoints = {
            ident: RdsInstance(region=inst.region, account=inst.account, resource_id=inst.resource_id,
                               hosts=frozenset({inst.host}), port=inst.port, identifier=ident)
            for ident, inst in seeded.instances.items()
        }
        checker = RdsTokenChecker(self._lookup, endpoints=endpoints, permission_check=self._permission_check)
        self._attribution = start_attribution(world, seeded, self._sessions, checker)
        self._checker = self._attribution.guard
        self._start_dsql(world, seeded, ca_path)

    def _create_databases(self, world: Any) -> None:
        """Each database's users and schema (and, for the MySQL family, its IAM switch as RDS has it)."""
        for account, spec in world.databases():
            if spec.identifier in self._mysql:
                setup_mysql_database(self._mysql[spec.identifier], spec, self._check_login,
                                     iam_enabled_in_moto(account.id, world.region, spec.identifier))
                continue
            create_database(self._clusters[spec.identifier], spec)

    def _start_fronts(self, world: Any, seeded: Any, run: LocalRun) -> None:
        """The API gateway with the API handler in process, and the Invoke API of the vend function:
        each with its deployed environment (the policy from its SSM parameter, the stage's tables and
        topic) and its role's credentials; an update of either starts it afresh."""
        environment = run.stage.environment(API_FUNCTION, run.deployment.topic_arn)
        self._gateway = start_gateway(world, seeded, environment, self._lookup, self._enforcer,
                                      port=self.last_run.port("gateway"))
        self._save(ports=[*self._state["ports"], port_of(self._gateway.url)])
        self._vend_session = seeded.function(VEND_FUNCTION).session(world.region)
        self._lambda = start_vend_function(
            region=world.region, account=world.service_account, lookup=self._lookup,
            iam_client_for=lambda account: self._sessions.client("iam", account),
            org_client=self._sessions.client("organizations", self._sessions.management_account),
            session=self._vend_session, denials=self._enforcer, org_id=seeded.org_id,
            port=self.last_run.port("lambda"))
        self._save(ports=[*self._state["ports"], port_of(self._lambda.url)])
        # an update of a function's configuration or code starts it afresh, as Lambda does
        self._moto.wrap(lambda app: ColdStarts(app, self._cold_start))

    def _stack_info(self, world: Any, seeded: Any, moto_url: str, policy_path: Path, ca_path: Path) -> StackInfo:
        """What a shell needs of the running stack: its endpoints, the databases (instances and
        proxies) and the administrators' DSNs."""
        import psycopg.conninfo

        first = next(iter(self._clusters.values()))
        admin = psycopg.conninfo.conninfo_to_dict(first.admin_dsn)
        admin["sslrootcert"] = str(ca_path)
        databases = {
            ident: {"host": inst.host, "port": inst.port, "dbname": inst.dbname, "resource_id": inst.resource_id,
                    "account": inst.account, **local_db_fields(self._clusters, self._mysql, ident)}
            for ident, inst in seeded.instances.items()
        }
        databases.update({  # the RDS Proxies, where their fronts listen
            name: {"host": p.host, "port": p.port, "dbname": p.dbname, "resource_id": p.resource_id,
                   "account": p.account, "kind": "proxy", "target": p.target, "engine": p.engine}
            for name, p in seeded.proxies.items()})
        return StackInfo(
            state_dir=str(self.state_dir), pid=os.getpid(), region=world.region, moto_url=moto_url,
            gateway_url=self._gateway.url, ldap_port=self._ldap.port, policy_path=str(policy_path),
            ca_path=str(ca_path), admin_dsn=psycopg.conninfo.make_conninfo("", **admin), databases=databases,
            seeded=seeded, lambda_url=self._lambda.url, server_id=os.environ["RDSVEND_SERVER_ID"],
            admin_dsns={ident: admin_dsn(c, ca_path) for ident, c in self._clusters.items()},
        )

    def _admin_passwords(self) -> dict[str, str]:
        """Each database's administrator password (PostgreSQL's superuser, MariaDB's master user), by
        identifier: what the DSNs ``local env`` exports hold, kept for the next run."""
        return {**{ident: c.superuser_password for ident, c in self._clusters.items()},
                **{ident: m.server.master_password for ident, m in self._mysql.items()}}

    def _cold_start(self, function_name: str) -> None:
        """A new execution environment for the function ``function_name`` this process runs
        (the API handler's, or vend's): nothing it had cached is kept. The canary and rotate
        functions run where they are invoked, not here."""
        if function_name == API_FUNCTION_NAME:
            set_vending_service(None)
        elif function_name == VEND_FUNCTION_NAME and self._lambda is not None:
            set_verifier(None)
            self._lambda.handler = vend_handler(self._vend_session)
        log.info("local lambda: %s starts afresh", function_name)

    def _start_dsql(self, world: Any, seeded: Any, ca_path: Path) -> None:
        """The world's Aurora DSQL clusters (devtools.local.dsql), their CAs added to the bundle."""

        self._dsql = start_dsql_clusters(world, seeded, self._sessions, self._lookup, self._dsql_permission)
        for cluster in self._dsql.values():
            self._save(pg=[*self._state["pg"], str(cluster.pg.base_dir)],
                       pg_pids=[*self._state.get("pg_pids", []), cluster.pg.pid],
                       ports=[*self._state["ports"], cluster.port])
            with open(ca_path, "ab") as bundle:
                bundle.write(Path(cluster.pg.ca_path).read_bytes())

    def _dsql_permission(self, credential: Any, action: str, cluster_arn: str) -> tuple[bool, str]:
        """May this signer ``action`` (dsql:DbConnect[Admin]) on the cluster? As :meth:`_permission_check`."""
        return self._permission_check(credential, cluster_arn, action)

    def _guard_moto(self, lookup: Any, management_account: str) -> None:
        """Every request to the local AWS authenticated and authorized as AWS would
        (:mod:`devtools.local.authorize`); with ``enforce=False``, only STS's signature checks and
        AssumeRole decisions (moto makes neither)."""
        if self.enforce:
            denials = DenialLog(self.state_dir / DENIAL_LOG)
            self._allowed = AllowedLog(self.state_dir / ALLOWED_LOG)
            self._moto.wrap(lambda app: Enforcer(app, lookup, roots=[management_root(management_account)],
                                                 denials=denials, allowed=self._allowed))
            self._enforcer = denials
            return

        may_assume = assume_role_permission(identity_permission(
            lambda account: self._sessions.client("iam", account),
            _LazyOrgClient(self), "sts:AssumeRole"))
        self._moto.wrap(lambda app: StsSignatureCheck(app, lookup, assume_role=may_assume))

    def _permission_check(self, credential: Any, dbuser_arn: str, action: str = "rds-db:connect") -> tuple[bool, str]:
        """May this signer ``rds-db:connect`` as that dbuser? Live IAM and SCP state, judged by
        rdsvend's evaluator. Anything that could not be evaluated is a refusal.

        A verdict only changes when IAM or Organizations state does, so it is reused until a
        write reaches either (the moto server counts them): exact, unlike a time-based cache.
        """
        generation = self._moto.generation if self._moto is not None else None
        key = (credential.access_key_id, credential.principal_arn, dbuser_arn, action)
        with self._verdicts_lock:
            cached = self._verdicts.get(key)
        if cached is not None and generation is not None and cached[0] == generation:
            return cached[1]
        result = self._evaluate_permission(credential, dbuser_arn, action)
        if generation is not None and self._moto is not None and self._moto.generation == generation:
            with self._verdicts_lock:
                self._verdicts[key] = (generation, result)
        return result

    def _evaluate_permission(self, credential: Any, dbuser_arn: str,
                             action: str = "rds-db:connect") -> tuple[bool, str]:
        """The decision, recorded as the local AWS records its own (allowed and denial logs)."""
        principal = credential.principal_arn
        try:
            raw_session = self._lookup.session_policy(credential.access_key_id)
            session_policy = parse_policy(raw_session, "session policy") if raw_session else None
            verdict = evaluate_rds_connect(
                principal, dbuser_arn,
                iam_client=self._sessions.client("iam", credential.account),
                org_client=self._sessions.client("organizations", self._sessions.management_account),
                account_id=credential.account,
                session_policy=session_policy,
                action=action,
            )
        except (IamFetchError, IamPolicyError) as exc:
            self._record_denial(Denial(principal, action, dbuser_arn, "identity", False, f"could not evaluate: {exc}"))
            return False, f"could not evaluate {action}: {exc}"
        combined = verdict.combined
        if verdict.allowed and self._allowed is not None:
            owner, name = source_parts(combined.policy or "")
            statement = "" if combined.statement is None else combined.statement
            owner = owner or iam_principal_of(principal)
            self._allowed.record(Allowed(principal, action, dbuser_arn, "identity", owner, name, statement))
        elif not verdict.allowed:
            self._record_denial(Denial(principal, action, dbuser_arn, str(combined.layer),
                                       combined.decision == "explicitDeny", combined.explanation))
        return verdict.allowed, combined.explanation

    def _record_denial(self, denial: Denial) -> None:
        if isinstance(self._enforcer, DenialLog):
            self._enforcer.record(denial)

    def stop(self) -> None:
        """Stop everything this server started and remove the state it wrote."""
        for name, part in (("lambda", self._lambda), ("gateway", self._gateway), ("ldap", self._ldap)):
            if part is not None:
                try:
                    part.stop()
                except Exception:  # noqa: BLE001 - keep stopping the rest
                    log.exception("could not stop the %s", name)
        self._gateway = self._ldap = self._lambda = None
        stop_proxy_fronts(self._proxies)
        if self._attribution is not None:
            try:
                self._attribution.stop()  # sends what is queued while moto still answers
            except Exception:  # noqa: BLE001 - keep stopping the rest
                log.exception("could not stop the CloudWatch writer")
            self._attribution = None

        stop_mysql_databases(self._mysql)
        for dsql in self._dsql.values():
            try:
                dsql.stop()
            except Exception:  # noqa: BLE001 - stop the rest whatever one does
                log.exception("could not stop a local DSQL cluster")
        self._dsql = {}
        for cluster in self._clusters.values():
            try:
                cluster.stop()
            except Exception:  # noqa: BLE001 - stop the rest whatever one does
                log.exception("could not stop a local postgres")
        self._clusters = {}
        if self._moto is not None:
            try:
                self._moto.stop()
            except Exception:  # noqa: BLE001 - stop the rest whatever one does
                log.exception("could not stop moto")
            self._moto = None
        self._checker = None
        remove_state_dir(self.state_dir)
        try:
            self.state_dir.rmdir()  # only when empty (a detached server's log stays for 'down')
        except OSError:
            pass

    def serve_forever(self, ready: Callable[[StackInfo], None] | None = None) -> None:
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


def _this_run(info: StackInfo, passwords: dict[str, str]) -> LastRun:
    """The ports a shell holds (the AWS endpoint, the API, the Invoke API, each database), the
    world's callers' keys and the databases' administrator passwords (``passwords``: by
    identifier), for the next run."""
    ports = {"moto": port_of(info.moto_url), "gateway": port_of(info.gateway_url),
             **({"lambda": port_of(info.lambda_url)} if info.lambda_url else {}),
             **{f"db:{ident}": int(db["port"]) for ident, db in info.databases.items()}}
    keys = {f"{k.account}/{k.arn.rsplit('/', 1)[-1]}": (k.access_key_id, k.secret_access_key)
            for k in info.seeded.callers.values()}
    return LastRun(ports, keys, {f"db:{ident}": password for ident, password in passwords.items()})


class _LazyOrgClient:
    """The management account's Organizations client of a running stack, once it exists."""

    def __init__(self, server: StackServer) -> None:
        self._server = server

    def __getattr__(self, name: str) -> Any:
        sessions = self._server._sessions
        return getattr(sessions.client("organizations", sessions.management_account), name)
