"""The local DSQL token checker without a server: every rule for its reason, hostile tokens
refused (never an exception), and the world file's DSQL clusters validated field by field."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.clock import FrozenClock
from chalicelib.signer.credentials import SigningCredentials
from chalicelib.signer.sigv4 import DsqlTokenSigner
from devtools.local.credentials import Credential, StaticSecretLookup
from devtools.local.dsql import DsqlEndpoint, DsqlTokenChecker, Mapping, refusal_code
from devtools.local.world import WorldError, load_world_text

NOW = datetime(2026, 12, 3, 20, 0, 0, tzinfo=UTC)
ACCOUNT = "111122223333"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/signer"
SESSION = Credential("ASIALOCALDSQL0000001", "secret", "token", f"arn:aws:sts::{ACCOUNT}:assumed-role/signer/s", ACCOUNT)
CLUSTER = DsqlEndpoint("a" * 26, ACCOUNT, "us-east-1", frozenset({"localhost"}))


def _checker(*, allowed: bool = True, mappings: tuple[Mapping, ...] = (Mapping("app", ROLE, "AROAONE"),),
             current: str = "AROAONE") -> DsqlTokenChecker:
    return DsqlTokenChecker(StaticSecretLookup([SESSION]), cluster=CLUSTER,
                            permission_check=lambda c, action, arn: (allowed, f"{action} on {arn}"),
                            mappings=lambda role: [m for m in mappings if m.pg_role == role],
                            principal_id=lambda c: current, clock=FrozenClock(NOW))


def _token(action: str = "DbConnect", *, host: str = "localhost", at: datetime = NOW, expires: int = 900,
           region: str = "us-east-1") -> str:
    creds = SigningCredentials(SESSION.access_key_id, SESSION.secret_key, SESSION.session_token)
    return DsqlTokenSigner().sign_dsql(creds, host=host, action=action, region=region, at=at, expires=expires)


@pytest.mark.parametrize("user,token,reason", [
    ("app", _token(), "permitted"),
    ("admin", _token("DbConnectAdmin"), "permitted"),
    ("admin", _token("DbConnect"), "wrong_action"),
    ("app", _token("DbConnectAdmin"), "wrong_action"),
    ("app", _token(at=NOW - timedelta(hours=1)), "signature:expired"),
    ("app", _token(at=NOW - timedelta(days=6), expires=604800), "permitted"),  # DSQL allows a week
    ("app", _token(host=f"{'b' * 26}.dsql.us-east-1.on.aws"), "wrong_host"),
    ("app", _token(region="eu-west-1"), "wrong_region"),
    ("app", _token()[:-4] + "0000", "signature:bad_signature"),
    ("nobody", _token(), "no_mapping"),
])
def test_each_rule_for_its_reason(user: str, token: str, reason: str) -> None:
    verdict = _checker().verify(user, token)
    assert verdict.reason.startswith(reason), verdict
    assert verdict.allowed is (reason == "permitted")


def test_a_mapping_to_a_recreated_role_is_stale() -> None:
    verdict = _checker(current="AROATWO").verify("app", _token())
    assert (verdict.allowed, verdict.reason, refusal_code(verdict)) == (False, "mapping_stale", "NotAuthorized")


def test_iam_denying_the_action_refuses() -> None:
    verdict = _checker(allowed=False).verify("admin", _token("DbConnectAdmin"))
    assert not verdict.allowed and verdict.reason.startswith("not_permitted:dsql:DbConnectAdmin")


@pytest.mark.parametrize("token", ["", "garbage", "localhost/?Action=DbConnect", "x" * 100_000,
                                   "localhost/?Action=DbConnect&X-Amz-Signature=zz&X-Amz-Credential=a%2Fb",
                                   "\x00\n'\"; DROP TABLE x"])
def test_hostile_tokens_are_refused_never_raised(token: str) -> None:
    verdict = _checker().verify("app", token)
    assert not verdict.allowed and refusal_code(verdict) in ("InvalidToken", "InternalError")


WORLD = """
version: 1
region: us-east-1
organization: {id: o-abcdefghij, management_account: {id: "111111111111"}, units: {U: {accounts: ["222222222222"]}}}
accounts:
  "111111111111": {name: m}
  "222222222222":
    name: s
    roles:
      fn: {trust: {Service: lambda.amazonaws.com}}
      signer: {trust: {AWS: "arn:aws:iam::222222222222:root"}, dsql_connect: [ledger]}
    users:
      api: {access_key: true}
    dsql_clusters:
      ledger:
        roles: {app: {grant: signer}}
service: {account: "222222222222"}
callers: {allowed: {account: "222222222222", user: api}, denied: {account: "222222222222", user: api}}
"""


def test_world_dsql_clusters_load() -> None:
    world = load_world_text(WORLD)
    ((_, cluster),) = world.dsql_clusters()
    assert cluster.roles == {"app": "signer"}
    assert world.accounts["222222222222"].roles["signer"].dsql_connect == ("ledger",)
    # a mapped role need not be the world's: the local stage's deployment makes the signer roles
    (_, elsewhere), = load_world_text(WORLD.replace("{grant: signer}", "{grant: rdsvend-ledger-signer}")).dsql_clusters()
    assert elsewhere.roles == {"app": "rdsvend-ledger-signer"}


@pytest.mark.parametrize("change,field", [
    (("app: {grant: signer}", "app: {grant: 'not a role'}"), "dsql_clusters.ledger.roles.app.grant"),
    (("app: {grant: signer}", "admin: {grant: signer}"), "dsql_clusters.ledger.roles.admin"),
    (("dsql_connect: [ledger]", "dsql_connect: [other]"), "roles.signer.dsql_connect"),
    (("roles: {app: {grant: signer}}", "roles: {app: {grant: signer, extra: 1}}"), "dsql_clusters.ledger.roles.app"),
])
def test_world_dsql_errors_name_the_field(change: tuple[str, str], field: str) -> None:
    with pytest.raises(WorldError) as err:
        load_world_text(WORLD.replace(*change))
    assert field in str(err.value) and "\n" not in str(err.value)
