"""The RDS Proxy checks as pure verdicts: proxy.target from DescribeDBProxyTargets answers,
proxy.role_allows from the role's evaluation, and which leg a check or a refusal is on."""
from __future__ import annotations

from typing import Any

import pytest

from chalicelib.canary.checks_iam import ConnectFacts, SideVerdict
from chalicelib.canary.checks_proxy import (
    ProxyTargets,
    check_proxy_target,
    check_role_allows,
    leg_of_refusal,
    on_leg,
)
from chalicelib.canary.model import passed
from chalicelib.errors import ProbeError
from chalicelib.iam.proxy_leg import ProxyFacts, proxy_facts
from chalicelib.policy.loader import load_policy_text
from chalicelib.policy.model import Database
from tests.support.policies import policy_text
from tests.support.proxies import proxy_database

ROLE = "arn:aws:iam::111122223333:role/orders-proxy-role"
TARGET_ARN = "arn:aws:rds-db:us-east-1:111122223333:dbuser:db-ABC/orders_app"
ALLOW = SideVerdict(True, "allowed", "identity", "p", 0)
DENY = SideVerdict(False, "implicitDeny", "identity", None, None, "no statement allows it")


def db(auth: str = "iam") -> Database:
    return load_policy_text(policy_text([proxy_database(target_auth=auth)])).databases["orders-proxy"]


def target(state: str = "AVAILABLE", ident: str = "orders-prod", **health: str) -> dict[str, Any]:
    return {"RdsResourceId": ident, "Type": "RDS_INSTANCE", "TargetHealth": {"State": state, **health}}


@pytest.mark.parametrize(("targets", "status", "words"), [
    (ProxyTargets((target(),)), "pass", "registered behind proxy 'orders-proxy' and available"),
    (ProxyTargets((target("REGISTERING"),)), "warn", "still registering"),
    (ProxyTargets((target("UNAVAILABLE", Reason="AUTH_FAILURE", Description="bad creds"),)), "fail",
     "UNAVAILABLE: AUTH_FAILURE bad creds"),
    (ProxyTargets((target(ident="other-db"),)), "fail", "is not registered behind proxy 'orders-proxy' (it has: other-db)"),
    (ProxyTargets(()), "fail", "(it has none)"),
    (ProbeError("rds DescribeDBProxyTargets failed: Throttling"), "error", "could not list the proxy's targets"),
    (None, "skip", "RDS has no such proxy"),
])
def test_proxy_target_states(targets: ProxyTargets | ProbeError | None, status: str, words: str) -> None:
    result = check_proxy_target(db(), targets)
    assert result.status == status and words in result.message
    assert result.details["leg"] == 2
    if status == "fail":
        assert result.message.startswith("leg 2: proxy to target: ")
    if "not registered" in words or "none" in words:
        assert result.fix == ("register it: aws rds register-db-proxy-targets --db-proxy-name orders-proxy "
                              "--db-instance-identifiers orders-prod")


def connect_facts(identity: SideVerdict = ALLOW, scp: SideVerdict | None = ALLOW) -> ConnectFacts:
    return ConnectFacts(ROLE, TARGET_ARN, identity, scp)


FACTS = ProxyFacts(ROLE, "IAM_AUTH", ())


def test_role_allows_passes_and_names_what() -> None:
    result = check_role_allows(db(), FACTS, [("rds-db:connect", TARGET_ARN, connect_facts())])
    assert result.status == "pass" and result.details["resource"] == TARGET_ARN and result.details["leg"] == 2


@pytest.mark.parametrize(("verdict", "words", "fix"), [
    (connect_facts(identity=DENY), "is not allowed rds-db:connect", "rdsvend policy render --only proxy-role"),
    (connect_facts(identity=SideVerdict(False, "explicitDeny", "identity", "no-db", "S1")),
     "is explicitly denied rds-db:connect on " + TARGET_ARN + " (policy no-db, statement S1)", "orders-proxy-role"),
    (connect_facts(scp=SideVerdict(False, "explicitDeny", "scp", "p-123", 0, level="ou-abc")),
     "an SCP at ou-abc keeps the proxy's role", "every SCP level"),
])
def test_role_allows_failures_name_the_role_and_the_fix(
    verdict: ConnectFacts | ProbeError,
    words: str,
    fix: str,
) -> None:
    result = check_role_allows(db(), FACTS, [("rds-db:connect", TARGET_ARN, verdict)])
    assert result.status == "fail" and words in result.message and fix in result.fix
    assert result.message.startswith("leg 2: proxy to target: ")


def test_role_allows_could_not_read_is_an_error_never_a_pass() -> None:
    result = check_role_allows(db(), FACTS, [("rds-db:connect", TARGET_ARN, ProbeError("iam GetRole failed"))])
    assert result.status == "error"


def test_a_proxy_that_does_not_log_in_with_iam_is_named() -> None:
    result = check_role_allows(db(), ProxyFacts(ROLE, "NONE", ()), [("rds-db:connect", TARGET_ARN, connect_facts())])
    assert result.status == "fail" and "--default-auth-scheme IAM_AUTH" in result.fix


def test_no_role_and_no_secret() -> None:
    assert "names no IAM role" in check_role_allows(db(), ProxyFacts(None, "IAM_AUTH", ()), []).message
    no_secret = check_role_allows(db("secrets"), ProxyFacts(ROLE, None, ()), [])
    assert no_secret.status == "fail" and "names no secret" in no_secret.message


def test_secrets_mode_read_is_judged_by_identity() -> None:
    secret = "arn:aws:secretsmanager:us-east-1:111122223333:secret:p"
    facts = ProxyFacts(ROLE, None, (secret,))
    ok = check_role_allows(db("secrets"), facts, [("secretsmanager:GetSecretValue", secret, ALLOW)])
    assert ok.status == "pass"
    no = check_role_allows(db("secrets"), facts, [("secretsmanager:GetSecretValue", secret, DENY)])
    assert no.status == "fail" and "secretsmanager:GetSecretValue" in no.message and "kms:Decrypt" in no.fix


def test_proxy_facts_from_describe() -> None:
    facts = proxy_facts({"RoleArn": ROLE, "DefaultAuthScheme": "IAM_AUTH",
                         "Auth": [{"SecretArn": "arn:aws:secretsmanager:us-east-1:1:secret:a"}, {"IAMAuth": "REQUIRED"}]})
    assert facts == ProxyFacts(ROLE, "IAM_AUTH", ("arn:aws:secretsmanager:us-east-1:1:secret:a",))
    assert proxy_facts({"RoleArn": "not-an-arn"}).role_arn is None


@pytest.mark.parametrize(("message", "failed", "leg"), [
    ('IAM authentication failed for user "a" at RDS Proxy "p" (leg 1: caller to proxy)', [], 1),
    ('RDS Proxy "p" could not log in to its target as "a" (leg 2: proxy to target): PAM ...', [], 2),
    ("RDS Proxy 'p' has no available target (target_not_registered)", [], 2),
    ("PAM authentication failed for user", ["proxy.role_allows"], 2),
    ("PAM authentication failed for user", ["iam.signer_allows", "proxy.target"], None),
    ("timeout", [], None),
])
def test_which_leg_refused(message: str, failed: list[str], leg: int | None) -> None:
    assert leg_of_refusal(message, failed) == leg


def test_on_leg_prefixes_failures_only() -> None:
    ok = on_leg(passed("proxy.target", "fine"), 2)
    assert ok.message == "fine" and ok.details == {"leg": 2, "leg_name": "leg 2: proxy to target"}
    assert on_leg(ok, None) is ok


def test_a_target_that_cannot_be_read_is_an_error_never_a_skip_or_a_pass() -> None:
    result = check_role_allows(db(), FACTS, [], cannot="could not describe the target instance 'orders-prod': timeout")
    assert result.status == "error" and result.details["leg"] == 2 and "timeout" in result.message
    assert check_role_allows(db(), None, [], why_not="rds.found did not describe the proxy").status == "skip"
