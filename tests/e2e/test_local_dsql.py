"""The local Aurora DSQL cluster end to end: a real PostgreSQL behind the DSQL token checker,
moto (in process) for IAM, STS, Organizations and the DSQL API, rdsvend's vending service and its
canary. Vending and a verify-full login; the refusals DSQL makes (a DbConnect token used as
admin, an expired token, a token for another cluster's host, a role with no mapping), each for
its reason; the canary naming a mapping whose role was recreated, and passing once it is granted
again."""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from moto import mock_aws

from chalicelib.aws.clients import ClientFactory
from chalicelib.aws.rds import EndpointResolver
from chalicelib.canary.iam_facts import LiveConnectEvaluator
from chalicelib.canary.model import TargetReport
from chalicelib.canary.target import run_target
from chalicelib.canary.target_dsql import DsqlCanaryDeps, DsqlClusterFacts, EngineMappings
from chalicelib.canary.target_run import CanaryDeps, Deadline
from chalicelib.errors import IamFetchError, IamPolicyError
from chalicelib.iam.connect import evaluate_rds_connect
from chalicelib.iam.model import parse_policy
from chalicelib.identity import identity_from_arn
from chalicelib.policy.loader import load_policy_text
from chalicelib.policy_source import StaticPolicySource
from chalicelib.signer import TokenMinter
from chalicelib.signer.credentials import SigningCredentials
from chalicelib.signer.sigv4 import DsqlTokenSigner
from chalicelib.vending.pipeline import VendingService
from devtools.local.aws import MotoSecretLookup
from devtools.local.dsql import DsqlTokenChecker, LocalDsqlCluster, log_verdict
from devtools.local.postgres import DEFAULT_BIN_DIR
from rdsvend.api import VendedToken
from rdsvend.connect import connection_params

pytestmark = pytest.mark.e2e

ACCOUNT = "123456789012"  # moto's default: the organization's management account
REGION = "us-east-1"
SIGNER = f"arn:aws:iam::{ACCOUNT}:role/ledger-signer"
CALLER = f"arn:aws:iam::{ACCOUNT}:user/ledger-api"


def _signer_role(iam: Any, cluster_arn: str) -> None:
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                                                      "Action": "sts:AssumeRole"}]}
    iam.create_role(RoleName="ledger-signer", AssumeRolePolicyDocument=json.dumps(trust))
    iam.put_role_policy(RoleName="ledger-signer", PolicyName="dsql-connect", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["dsql:DbConnect", "dsql:DbConnectAdmin"],
                                                "Resource": cluster_arn}]}))


class World:
    """What the tests share: the cluster, its checker, the vending service, the clients."""

    def __init__(self, cluster: LocalDsqlCluster, arn: str, ca: str, service: VendingService, iam: Any,
                 orgs: Any, lookup: MotoSecretLookup, policy: Any, refusals: list[str]) -> None:
        self.cluster, self.arn, self.ca, self.service = cluster, arn, ca, service
        self.iam, self.orgs, self.lookup, self.policy = iam, orgs, lookup, policy
        self.refusals = refusals  # the reason of each login the cluster's checker refused, in order

    def vend(self, db_user: str) -> VendedToken:
        answer = self.service.vend(identity_from_arn(CALLER, ACCOUNT), {"database": "ledger", "db_user": db_user},
                                   "req-1")
        return VendedToken.from_body(answer, 0.0)

    def login(self, db_user: str, token: str | None = None) -> str:
        vended = self.vend(db_user)
        params = connection_params(vended, {"PGSSLROOTCERT": self.ca})
        if token is not None:
            params["password"] = token
        with psycopg.connect(**params, connect_timeout=10) as conn:
            row = conn.execute("SELECT current_user").fetchone()
        assert row is not None  # SELECT current_user returns one row
        return str(row[0])

    def refusal(self, db_user: str, token: str | None = None) -> str:
        before = len(self.refusals)
        with pytest.raises(psycopg.OperationalError) as err:
            self.login(db_user, token)
        assert "authentication failed" in str(err.value)
        assert token is None or token not in str(err.value)
        return self.refusals[before]

    def canary(self, db_user: str) -> TargetReport:
        database = self.policy.databases["ledger"]
        deps = CanaryDeps(rds=None, connect=LiveConnectEvaluator(iam_client=self.iam, org_client=self.orgs),  # type: ignore[arg-type]  # a DSQL target reaches none of the None parts
                          directory=None, tokens=_Tokens(self.service.minter), db=None,  # type: ignore[arg-type]  # a DSQL target reaches none of the None parts
                          signer=_Signer(), dsql=DsqlCanaryDeps(
                              cluster=DsqlClusterFacts(lambda db: boto3.client("dsql", region_name=REGION)),
                              mappings=EngineMappings(), ssl_root_cert=self.ca))
        return run_target(database, database.users[db_user], deps, Deadline.after(20))


class _Tokens:
    def __init__(self, minter: Any) -> None:
        self._minter = minter

    def token(self, database: Any, db_user: str, host: str, port: int, resource_id: str | None) -> str:
        return str(self._minter.mint(identity_from_arn(CALLER, ACCOUNT), database, db_user, host, port).token)


class _Signer:
    def principal(self, database: Any) -> str:
        return str(database.signer_role)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    if not (Path(DEFAULT_BIN_DIR) / "initdb").exists():
        pytest.skip(f"PostgreSQL 15 binaries not found in {DEFAULT_BIN_DIR}")
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
                                            "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL")}
    for key in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        os.environ.pop(key, None)
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=REGION)
    with mock_aws():
        orgs = boto3.client("organizations", region_name=REGION)
        orgs.create_organization(FeatureSet="ALL")
        dsql = boto3.client("dsql", region_name=REGION)
        created = dsql.create_cluster(deletionProtectionEnabled=False)
        dsql.get_cluster(identifier=created["identifier"])  # CREATING -> ACTIVE
        iam = boto3.client("iam", region_name=REGION)
        _signer_role(iam, created["arn"])
        iam.create_user(UserName="ledger-api")
        lookup = MotoSecretLookup()

        def role_id(arn: str) -> str | None:
            try:
                return str(iam.get_role(RoleName=arn.rsplit("/", 1)[1])["Role"]["RoleId"])
            except iam.exceptions.NoSuchEntityException:
                return None

        def permission(credential: Any, action: str, arn: str) -> tuple[bool, str]:
            raw = lookup.session_policy(credential.access_key_id)
            try:
                verdict = evaluate_rds_connect(credential.principal_arn, arn, iam_client=iam, org_client=orgs,
                                               account_id=credential.account, action=action,
                                               session_policy=parse_policy(raw, "session") if raw else None)
            except (IamFetchError, IamPolicyError) as exc:
                return False, f"could not evaluate {action}: {exc}"
            return verdict.allowed, verdict.combined.explanation

        cluster = LocalDsqlCluster(created["identifier"], ACCOUNT, REGION, role_id=role_id).start()
        refusals: list[str] = []
        checker = DsqlTokenChecker(lookup, cluster=cluster.endpoint, permission_check=permission,
                                   mappings=cluster.mappings,
                                   principal_id=lambda c: lookup.caller_id(c).split(":", 1)[0])

        def check(user: str, token: str) -> bool:
            verdict = checker.verify(user, token)
            log_verdict(verdict)
            if not verdict.allowed:
                refusals.append(verdict.reason)
            return verdict.allowed

        cluster.set_checker(check)
        for role in ("app_rw", "app_ro"):
            cluster.create_role(role)
        cluster.grant("app_rw", SIGNER)
        policy = load_policy_text(f"""
            version: 1
            databases:
              ledger:
                engine: dsql
                region: {REGION}
                cluster: {created['identifier']}
                host: localhost
                port: {cluster.port}
                signer_role: {SIGNER}
                users:
                  admin: {{auth: iam}}
                  app_rw: {{auth: iam}}
                  app_ro: {{auth: iam}}
            rules:
              - {{id: ledger, effect: allow, principals: ["{CALLER}"], databases: [ledger], db_users: ["*"]}}
            """, "dsql.yaml")
        service = VendingService(policy_source=StaticPolicySource(policy), minter=TokenMinter(cache_tokens=False),
                                 resolver=EndpointResolver(ClientFactory()))
        try:
            yield World(cluster, created["arn"], str(cluster.pg.ca_path), service, iam, orgs, lookup, policy, refusals)
        finally:
            cluster.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def test_vend_and_log_in_with_verify_full(world: World) -> None:
    vended = world.vend("admin")
    assert (vended.engine, vended.sslmode, vended.ssl_root_cert) == ("dsql", "verify-full", "system")
    assert vended.token.startswith("localhost/?Action=DbConnectAdmin&")
    assert world.login("admin") == "admin"
    assert world.login("app_rw") == "app_rw"
    rows = psycopg.connect(**connection_params(world.vend("app_rw"), {"PGSSLROOTCERT": world.ca})).execute(
        "SELECT arn, pg_role_name FROM sys.iam_pg_role_mappings").fetchall()
    assert rows == [(SIGNER, "app_rw")]


def test_a_dbconnect_token_used_as_admin_is_refused(world: World) -> None:
    token = world.vend("app_rw").token
    assert "Action=DbConnect&" in token
    assert world.refusal("admin", token) == "wrong_action"


def test_an_expired_token_is_refused(world: World) -> None:
    creds = world.service.minter.signing_credentials(identity_from_arn(CALLER, ACCOUNT),
                                                     world.policy.databases["ledger"], "admin")
    old = DsqlTokenSigner().sign_dsql(creds, host="localhost", action="DbConnectAdmin", region=REGION,
                                      at=datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2), expires=900)
    assert world.refusal("admin", old) == "signature:expired"


def test_a_token_for_another_clusters_host_is_refused(world: World) -> None:
    creds: SigningCredentials = world.service.minter.signing_credentials(
        identity_from_arn(CALLER, ACCOUNT), world.policy.databases["ledger"], "admin")
    other = DsqlTokenSigner().sign_dsql(creds, host=f"{'b' * 26}.dsql.{REGION}.on.aws", action="DbConnectAdmin",
                                        region=REGION, at=datetime.now(UTC).replace(microsecond=0))
    assert world.refusal("admin", other) == "wrong_host"


def test_a_role_with_no_mapping_is_refused_and_the_canary_names_the_grant(world: World) -> None:
    assert world.refusal("app_ro") == "no_mapping"
    report = world.canary("app_ro")
    checks = {c.id: c for c in report.checks}
    assert checks["dsql.found"].status == "pass" and checks["iam.signer_allows"].status == "pass"
    assert "dsql:DbConnect on" in checks["iam.signer_allows"].message
    assert checks["db.connect"].status == "fail"
    mapping = checks["dsql.role_mapping"]
    assert mapping.status == "fail" and "not mapped" in mapping.message
    assert mapping.fix == f"as admin, run: AWS IAM GRANT app_ro TO '{SIGNER}'"


def test_canary_names_a_recreated_role_and_passes_once_granted_again(world: World) -> None:
    report = world.canary("app_rw")
    assert report.status == "pass", [c.to_dict() for c in report.checks]
    world.iam.delete_role_policy(RoleName="ledger-signer", PolicyName="dsql-connect")
    world.iam.delete_role(RoleName="ledger-signer")
    _signer_role(world.iam, world.arn)  # same name, same policy, a new unique id
    world.service.minter = TokenMinter(cache_tokens=False)  # no credentials of the old role

    assert world.refusal("app_rw") == "mapping_stale"
    checks = {c.id: c for c in world.canary("app_rw").checks}
    assert checks["iam.signer_allows"].status == "pass" and checks["db.connect"].status == "fail"
    mapping = checks["dsql.role_mapping"]
    assert mapping.status == "fail"
    assert "deleted or recreated role" in mapping.message and "is present" in mapping.message
    assert mapping.fix == (f"as admin, map the role again: AWS IAM REVOKE app_rw FROM '{SIGNER}'; "
                           f"AWS IAM GRANT app_rw TO '{SIGNER}'")

    world.cluster.grant("app_rw", SIGNER)  # the local AWS IAM GRANT, run again
    assert world.login("app_rw") == "app_rw"
    assert world.canary("app_rw").status == "pass"


def test_refusals_are_logged_with_their_class_and_never_the_token(world: World, caplog: pytest.LogCaptureFixture) -> None:
    token = world.vend("app_rw").token
    with caplog.at_level("WARNING", logger="devtools.local.dsql"):
        world.refusal("admin", token)
    line = next(r.getMessage() for r in caplog.records if "dsql token login refused" in r.getMessage())
    assert "reason=wrong_action" in line and "code=NotAuthorized" in line
    assert token not in caplog.text and "X-Amz-Signature" not in caplog.text

