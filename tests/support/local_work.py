"""The local stage's normal work as named steps (:class:`~tests.support.least_privilege.Step`),
each acting as a user or a function would on a running local stack, and each raising
:class:`~tests.support.least_privilege.StepFailedError` when the work did not succeed:

- ``vend <db>/<user>``: ``POST /v1/tokens`` as the allowed caller (the ``api_handler``
  function), then a login with the token over TLS verify-full;
- ``invoke <db>/<user>``: a direct invoke of the ``vend`` function with an identity proof,
  then a login;
- ``grants <channel>``: a just-in-time grant asked for, approved, used for a token and a login,
  listed and revoked (``http`` through the API, ``invoke`` through the ``vend`` function);
- ``canary <db>``: the canary's checks of one database, as the ``canary`` function, every
  target green; ``canary scheduled <db>``: the scheduled function's run (the policy read from
  its parameter, the grant sweep, the checks, the state table, an alert for a target whose
  status changed) for a policy of that one database;
- ``rotate <db>/<user>``: the ``rotate`` function's four steps for a password user, then a
  login with the new password;
- ``grants expire``: a one-second grant left to end, its expiry written by the canary's sweep;
- ``discover`` and ``audit``: what an operator runs at a terminal (``rdsvend discover`` through
  the member accounts' reader roles, ``rdsvend audit`` over the functions' logs).

Each function acts with its deployed role's credentials and its deployed environment (the
access policy read from the stage's SSM parameter, its tables and topic).
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import boto3
import psycopg
import pymysql
from botocore.config import Config
from click.testing import CliRunner

from chalicelib.aws.clients import ClientFactory
from chalicelib.canary.runner import run_canary
from chalicelib.canary.scheduled import run_scheduled
from chalicelib.engines.trust import ssl_root_cert_for
from chalicelib.policy.model import AccessPolicy
from chalicelib.policy.password_users import secret_arn_parts
from chalicelib.policy.patterns import compile_pattern
from chalicelib.policy_source import policy_source_from_env
from chalicelib.rotation.engines import engine_for
from chalicelib.rotation.handler import RotationFailedError
from chalicelib.rotation.secret import parse_secret
from chalicelib.rotation.store import BotoSecretStore
from chalicelib.routes.wiring import sweep_grants
from devtools.cli.main import cli
from devtools.deploy.local_stage import LocalStage
from devtools.local.canary import local_canary_deps, local_canary_env
from devtools.local.secrets import rotate_locally
from devtools.local.sessions import Keys
from rdsvend import invoke_payload
from rdsvend.api import VendedToken
from rdsvend.connect import connection_params
from rdsvend.mysql import pymysql_params
from tests.support.least_privilege import Step, StepFailedError

__all__ = ["LocalWork", "login"]

_ONE_TRY = Config(retries={"max_attempts": 1, "mode": "standard"})


def login(vended: VendedToken, ca_path: str) -> None:
    """One login with the vended token and a query, closed again (psycopg or PyMySQL)."""
    if vended.engine in ("postgres", "dsql"):


        with psycopg.connect(**connection_params(vended, {"PGSSLROOTCERT": ca_path}), connect_timeout=10) as conn:
            conn.execute("SELECT 1").fetchone()
        return


    conn = pymysql.connect(**pymysql_params(vended, {"PGSSLROOTCERT": ca_path}), connect_timeout=10, read_timeout=10)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
    finally:
        conn.close()


@dataclasses.dataclass
class LocalWork:
    """The steps on ``stack`` (a :class:`devtools.local.stack.LocalStack`)."""

    stack: Any
    #: the access policy the stack serves (what the steps are made from)
    policy: AccessPolicy
    #: the local stage the stack deployed (each function's environment as deployed)
    stage: LocalStage
    #: an administrator's client in the service account (``admin(service)``)
    admin: Callable[[str], Any]
    _env: dict[str, str] = dataclasses.field(default_factory=dict, repr=False)
    _canary_deps: list[Any] = dataclasses.field(default_factory=list, repr=False)

    def cold_start(self) -> None:
        """The functions run here start afresh: the canary's clients and cached credentials go
        (between its steps they are kept, as one warm Lambda environment keeps them)."""
        self._canary_deps.clear()

    def keys_for(self, function: str) -> Keys:
        """The credentials the deployed ``function`` runs with."""
        keys: Keys = self.stack.info.seeded.function(function)
        return keys

    def environment(self, function: str) -> dict[str, str]:
        """``function``'s environment as deployed (the policy from its SSM parameter, the
        stage's tables and topic), pointed at the local AWS, with its credentials."""
        info = self.stack.info
        topic = f"arn:{self.stage.deploy.partition}:sns:{info.region}:{self.stage.deploy.account}:" \
                f"{self.stage.plan.topic_name}"
        return {**self.stage.environment(function, topic), "AWS_ENDPOINT_URL": info.moto_url,
                "AWS_DEFAULT_REGION": info.region, "PGSSLROOTCERT": info.ca_path, **self.keys_for(function).env()}

    def clients(self, function: str) -> Any:
        """``function``'s AWS clients (its role's credentials, the local AWS)."""
        info = self.stack.info
        return ClientFactory(session=self.keys_for(function).session(info.region), endpoint_url=info.moto_url,
                             default_region=info.region)

    def served_policy(self, function: str) -> AccessPolicy:
        """The access policy as ``function`` reads it when it starts (its ``RDSVEND_POLICY``)."""
        policy: AccessPolicy = policy_source_from_env(self.environment(function), self.clients(function)).get()
        return policy

    # -- callers ---------------------------------------------------------------------------------
    def _caller_session(self, caller: str) -> boto3.session.Session:
        keys = self.stack.keys(caller)
        return boto3.session.Session(aws_access_key_id=keys.access_key_id, aws_secret_access_key=keys.secret_access_key,
                                     region_name=self.stack.info.region)

    def _http(self, method: str, path: str, body: Any = None, caller: str = "allowed") -> Any:
        status, answer = self.stack.request(method, path, body, caller=caller)
        if status != 200:
            raise StepFailedError(f"{method} {path} answered {status}: {json.dumps(answer)[:300]}")
        return answer

    def _invoke(self, payload: Mapping[str, Any], caller: str = "allowed") -> Any:
        session = self._caller_session(caller)
        client = session.client("lambda", endpoint_url=self.stack.info.lambda_url, config=_ONE_TRY)
        answer = client.invoke(FunctionName="rdsvend-local-vend", Payload=json.dumps(payload).encode())
        body = json.loads(answer["Payload"].read())
        if answer["StatusCode"] != 200 or answer.get("FunctionError") or "error" in body:
            raise StepFailedError(f"invoke answered {answer['StatusCode']}: {json.dumps(body)[:300]}")
        return body

    def _proof(self, caller: str = "allowed") -> dict[str, Any]:
        """The identity proof of a direct invoke (the payload's other fields are the action's)."""
        session = self._caller_session(caller)
        payload: dict[str, Any] = invoke_payload("-", "-", self.stack.info.server_id, session=session,
                                                 endpoint_url=self.stack.info.moto_url)
        return {key: value for key, value in payload.items() if key not in ("database", "db_user")}

    # -- vend and invoke -------------------------------------------------------------------------
    def vend(self, database: str, db_user: str, caller: str = "allowed") -> None:
        body = self._http("POST", "/v1/tokens", {"database": database, "db_user": db_user}, caller=caller)
        login(VendedToken.from_body(body, time.monotonic()), self.stack.ca_path)

    def invoke(self, database: str, db_user: str, caller: str = "allowed") -> None:
        payload = {**self._proof(caller), "database": database, "db_user": db_user}
        body = self._invoke(payload, caller)
        login(VendedToken.from_body(body, time.monotonic()), self.stack.ca_path)

    # -- just-in-time grants ---------------------------------------------------------------------
    def grants(self, channel: str, database: str, db_user: str) -> None:
        """Ask, have the approver approve (through the API: approvers do not invoke), use, list and
        revoke: ``http`` through the API, ``invoke`` through the ``vend`` function."""
        ask = {"database": database, "db_user": db_user, "reason": "least-privilege proof", "duration_seconds": 600}
        if channel == "http":
            grant = self._http("POST", "/v1/grants", ask)
            self._http("POST", f"/v1/grants/{grant['id']}/approve", None, caller="approver")
            self.vend(database, db_user)
            self._http("GET", "/v1/grants")
            self._http("POST", f"/v1/grants/{grant['id']}/revoke", None)
            return
        grant = self._invoke({**self._proof(), "action": "grant_request", **ask})
        self._http("POST", f"/v1/grants/{grant['id']}/approve", None, caller="approver")
        self.invoke(database, db_user)
        self._invoke({**self._proof(), "action": "grant_list"})
        self._invoke({**self._proof(), "action": "grant_revoke", "grant_id": grant["id"]})

    def grant_expires(self, database: str, db_user: str) -> None:
        """A grant of one second, approved and left to end: the canary's grant sweep writes
        its expiry."""
        ask = {"database": database, "db_user": db_user, "reason": "least-privilege proof", "duration_seconds": 1}
        grant = self._http("POST", "/v1/grants", ask)
        approved = self._http("POST", f"/v1/grants/{grant['id']}/approve", None, caller="approver")
        ends = datetime.strptime(approved["ends_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        time.sleep(max(0.0, (ends - datetime.now(UTC)).total_seconds()) + 1.0)
        swept = sweep_grants("least-privilege-proof", env=self._canary_env(), clients=self.clients("canary")) or {}
        if grant["id"] not in swept.get("expired", []) or swept.get("problems"):
            raise StepFailedError(f"the grant sweep did not write the expiry of grant {grant['id']}, or failed: "
                                  f"{swept}")

    # -- an operator at a terminal -----------------------------------------------------------------
    def operator(self, *args: str) -> str:
        """``rdsvend ARGS`` in the operator's shell (``eval "$(rdsvend local env --as operator)"``),
        run here rather than in a new process (as quick as the other steps)."""
        env: dict[str, str | None] = {k: None for k in os.environ if k.startswith(("AWS_", "RDSVEND_"))}
        env.update(self.stack.info.env("operator"))
        done = CliRunner().invoke(cli, list(args), env=env)
        if done.exit_code != 0:
            raise StepFailedError(f"rdsvend {' '.join(args)} exited {done.exit_code}: {done.output.strip()[-400:]}")
        return done.stdout

    def discover(self) -> None:
        accounts = sorted({str(db["account"]) for db in self.stack.info.databases.values()})
        found = json.loads(self.operator("discover", "--format", "json", "--accounts", ",".join(accounts)))
        failing = [a for a in found["accounts"] if a["status"] != "ok"]
        notes = found.get("notes", [])
        if failing or notes or not found["databases"]:
            raise StepFailedError(f"rdsvend discover: {failing or notes or 'no database found'}")

    def audit(self) -> None:
        entries = json.loads(self.operator("audit", "--json", "--since", "1h"))["entries"]
        if not any(e["kind"] == "vend" for e in entries):
            raise StepFailedError("rdsvend audit shows no vend")

    # -- the canary ------------------------------------------------------------------------------
    def _canary_env(self) -> dict[str, str]:
        """The canary function's environment on the local stack: as deployed, with the local
        network path and administrator connections (read once)."""
        if not self._env:
            deployed = self.environment("canary")
            self._env.update({**deployed, **local_canary_env(self.stack.info), "RDSVEND_POLICY": deployed["RDSVEND_POLICY"]})
            self._env.pop("RDSVEND_CANARY_NETWORK", None)  # the local stack's databases are reachable
        return self._env

    def canary(self, database: str) -> None:
        """The canary's checks of ``database``, as the canary function: every target green."""
        if not self._canary_deps:
            self._canary_deps.append(local_canary_deps(self.stack.info, self.policy, env=self._canary_env()))
        deps = self._canary_deps[0]
        targets = [(db, user) for db, user in self.policy.targets() if db.name == database]
        _green(run_canary(self.policy, deps, targets=targets).targets)

    def scheduled_canary(self, database: str | None = None) -> None:
        """The scheduled function's run: the policy read, the grant sweep, every target checked,
        the state table read and written, and an alert for a target whose recorded status was
        ``fail`` (set here first, as a failing run before this one would have left it). With
        ``database``, the run of a stage whose policy declares only that database."""
        env, clients = self._canary_env(), self.clients("canary")
        policy = self.served_policy("canary")
        if database is not None:
            policy = dataclasses.replace(policy, databases={database: policy.databases[database]})
        db, user = policy.targets()[0]
        self.admin("dynamodb").put_item(TableName=env["RDSVEND_STATE_TABLE"], Item={
            "target": {"S": f"{db.name}/{user.name}"}, "status": {"S": "fail"},
            "changed_at": {"S": "2026-01-01T00:00:00+00:00"}, "problems": {"L": []}})
        swept = sweep_grants("least-privilege-proof", env=env, clients=clients) or {}
        if swept.get("problems"):
            raise StepFailedError(f"the grant sweep failed: {swept['problems'][0]}")
        answer = run_scheduled(event_id="least-privilege-proof", env=env, policy=policy,
                               deps=local_canary_deps(self.stack.info, policy, env=env), clients=clients)
        if answer["alerts"] < 1:
            raise StepFailedError(f"no alert for {db.name}/{user.name}, whose recorded status was fail")
        summary = answer["summary"]
        if summary.get("fail") or summary.get("error"):
            raise StepFailedError(f"the scheduled canary is not green: {summary}")

    # -- rotation --------------------------------------------------------------------------------
    def rotate(self, database: str, db_user: str) -> None:

        policy = self.served_policy("rotate")
        user = policy.databases[database].users[db_user]
        parts = secret_arn_parts(str(user.secret))
        assert parts is not None
        env = self.environment("rotate")
        client = self.clients("rotate")("secretsmanager")
        try:
            rotate_locally(parts["name"], client, policy=policy, env=env, log_to=_Quiet(), resume=True)
        except RotationFailedError as exc:
            raise StepFailedError(str(exc)) from exc
        current = parse_secret(BotoSecretStore(client).value(parts["name"], stage="AWSCURRENT"), what="AWSCURRENT")
        engine_for(current).login(current, ssl_root_cert=ssl_root_cert_for(policy, env), timeout=10).close()

    # -- all of it -------------------------------------------------------------------------------
    def _rule_for(self, database: str, db_user: str) -> tuple[str, Any] | None:
        """The world's caller an allow rule names for (database, db user), and that rule;
        ``None`` when no rule names one of them."""
        for caller in ("allowed", "operator"):
            arn = self.stack.keys(caller).arn
            for rule in self.policy.rules:
                if (rule.effect == "allow" and any(compile_pattern(p).matches(arn) for p in rule.principals)
                        and any(compile_pattern(p).matches(database) for p in rule.databases)
                        and any(compile_pattern(p).matches(db_user) for p in rule.db_users)):
                    return caller, rule
        return None

    def steps(self) -> list[Step]:
        """Every step, in an order that leaves the stack as it found it. A direct invoke carries
        no source IP and no organization id: it is tried where the rule asks for neither."""
        rules = {(db.name, user.name): self._rule_for(db.name, user.name)
                 for db, user in self.policy.targets() if user.auth == "iam"}
        vendable = [(d, u, found[0], found[1]) for (d, u), found in rules.items()
                    if found and not found[1].grant_required]
        granted = [(d, u) for (d, u), found in rules.items()
                   if found and found[1].grant_required and found[0] == "allowed"]
        passwords = [(db.name, user.name) for db, user in self.policy.targets() if user.auth == "password"]
        steps = [Step(f"vend {d}/{u}", _bound(self.vend, d, u, c)) for d, u, c, _rule in vendable]
        steps += [Step(f"invoke {d}/{u}", _bound(self.invoke, d, u, c)) for d, u, c, rule in vendable
                  if rule.conditions.org_ids is None and rule.conditions.source_ips is None]
        if granted:
            d, u = granted[0]
            steps += [Step(f"grants {channel}", _bound(self.grants, channel, d, u)) for channel in ("http", "invoke")]
            steps.append(Step("grants expire", _bound(self.grant_expires, d, u)))
        steps += [Step(f"rotate {d}/{u}", _bound(self.rotate, d, u)) for d, u in passwords]
        steps += [Step(f"canary {name}", _bound(self.canary, name)) for name in self.policy.databases]
        # the scheduled function's own work (policy, grant sweep, state table, alert) on the database
        # with the fewest users: the checks of every target ran above
        smallest = min(self.policy.databases.values(), key=lambda db: len(db.users)).name
        steps.append(Step(f"canary scheduled {smallest}", _bound(self.scheduled_canary, smallest)))
        steps += [Step("discover", self.discover), Step("audit", self.audit)]
        return steps


def _green(targets: Any) -> None:
    bad = [f"{t.key} is {t.status}" + (f" ({t.problems[0].id}: {t.problems[0].message})" if t.problems else "")
           for t in targets if t.status not in ("pass", "warn")]
    if bad:
        raise StepFailedError("; ".join(bad)[:600])


def _bound(fn: Callable[..., None], *args: str) -> Callable[[], None]:
    return lambda: fn(*args)


class _Quiet:
    """The rotate function's log, unread here (its failures are raised)."""

    def info(self, *_: Any, **__: Any) -> None:
        pass

    error = warning = info
