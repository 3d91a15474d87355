"""rdsvend on the local stack is the ``local`` stage the packaging code builds, deployed into the
local organization as a user deploys it (devtools.local.deployment), and its functions run as
the roles that deployment made, with the local AWS enforcing IAM on every request.

- ``GetFunction`` answers with each function's role, and that role's policies are exactly the
  documents :mod:`devtools.deploy.documents` generates for stage ``local``;
- the member-roles template lands, rendered, in every member account it lists, never in the
  management account;
- the functions' calls are made with those roles (their AWS calls are refused, naming the role,
  while its policy is gone), and with them vend (HTTP and invoke), the canary (all green),
  rotation and the operator's audit succeed.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from botocore.config import Config

from chalicelib.canary.runner import run_canary
from chalicelib.policy.loader import load_policy_file, load_policy_text
from devtools.deploy.local_stage import LOCAL, LocalStage, local_stage, render_for_account
from devtools.deploy.member_roles import OPERATORS_PARAMETER, member_roles_template
from devtools.local.aws import AccountSessions
from devtools.local.canary import local_canary_deps
from devtools.local.deployment import org_reader_arn, resource_ids, role_policy_changed
from devtools.local.secrets import rotate_locally
from devtools.local.stack import LocalStack
from rdsvend import invoke_payload
from tests.support.local_shell import rdsvend, shell_env

pytestmark = pytest.mark.e2e

SERVICE = "222222222222"


@pytest.fixture(scope="module")
def stage(local_stack: LocalStack) -> LocalStage:
    """The local stage as the packaging code builds it from the stack's access policy."""
    info = local_stack.info
    text = Path(info.policy_path).read_text(encoding="utf-8")
    policy = load_policy_text(text, "local access policy", service_account=SERVICE)
    return local_stage(text, account=SERVICE, region=info.region, org_id=info.seeded.org_id,
                       resource_ids=resource_ids(policy, info.seeded),
                       org_role=org_reader_arn(info.seeded.management_account))


@pytest.fixture(scope="module")
def admin(local_stack: LocalStack) -> Callable[..., Any]:
    info = local_stack.info
    sessions = AccountSessions(info.moto_url, info.region, info.seeded.management_account)
    return lambda service, account=SERVICE: sessions.client(service, account)


def _document(iam: Any, role: str, name: str) -> dict[str, Any]:
    document = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
    parsed: dict[str, Any] = json.loads(document) if isinstance(document, str) else document
    return parsed


def test_get_function_answers_with_the_role_whose_policy_is_the_generated_document(
        local_stack: LocalStack, stage: LocalStage, admin: Callable[..., Any]) -> None:
    documents = stage.documents()
    lambda_, iam = admin("lambda"), admin("iam")
    for function, name in stage.plan.functions.items():
        role_arn = lambda_.get_function(FunctionName=name)["Configuration"]["Role"]
        role = role_arn.rsplit("/", 1)[1]
        assert role == f"rdsvend-{LOCAL}-{function}"
        (policy_name,) = iam.list_role_policies(RoleName=role)["PolicyNames"]
        assert iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"] == []
        assert _document(iam, role, policy_name) == documents[function], function
        # and the function runs with that role's session, as Lambda makes it
        assert local_stack.info.seeded.function(function).arn == f"arn:aws:sts::{SERVICE}:assumed-role/{role}/{name}"
    # the vend function may assume exactly the local policy's signers and the data account's reader
    vend = json.dumps(documents["vend"])
    assert "rdsvend-org-reader" not in vend and "rds-db:connect" not in vend
    assert f"arn:aws:iam::{local_stack.info.seeded.management_account}:role/rdsvend-org-reader" in json.dumps(
        documents["canary"])


def test_the_member_roles_are_the_template_rendered_in_each_member_account(
        local_stack: LocalStack, stage: LocalStage, admin: Callable[..., Any]) -> None:
    info = local_stack.info
    template = member_roles_template(stage.policy, stage.deploy, LOCAL)
    operator = info.seeded.callers["operator"].arn
    accounts = template["Metadata"]["rdsvend"]["accounts"]
    assert info.seeded.management_account not in accounts
    for account in accounts:
        iam = admin("iam", account)
        for props in render_for_account(template, account, parameters={OPERATORS_PARAMETER: operator}).values():
            role = iam.get_role(RoleName=props["RoleName"])["Role"]
            assert role["AssumeRolePolicyDocument"] == props["AssumeRolePolicyDocument"]
            for inline in props["Policies"]:
                assert _document(iam, props["RoleName"], inline["PolicyName"]) == inline["PolicyDocument"]
            assert iam.list_role_policies(RoleName=props["RoleName"])["PolicyNames"] == [
                p["PolicyName"] for p in props["Policies"]]
    # none in the management account (a service-managed StackSet never deploys there)
    names = {r["RoleName"] for r in admin("iam", info.seeded.management_account).list_roles()["Roles"]}
    assert not {n for n in names if n.startswith("rdsvend-") and n != "rdsvend-org-reader"}


def _invoke(local_stack: LocalStack, payload: dict[str, Any]) -> dict[str, Any]:
    keys = local_stack.keys("allowed")
    session = boto3.session.Session(aws_access_key_id=keys.access_key_id,
                                    aws_secret_access_key=keys.secret_access_key, region_name=local_stack.info.region)
    client = session.client("lambda", endpoint_url=local_stack.info.lambda_url, config=Config(retries={"max_attempts": 1}))
    answer: dict[str, Any] = json.loads(client.invoke(FunctionName="rdsvend-local-vend",
                                                      Payload=json.dumps(payload).encode())["Payload"].read())
    return answer


def _grant_list_by_invoke(local_stack: LocalStack) -> dict[str, Any]:
    keys = local_stack.keys("allowed")
    session = boto3.session.Session(aws_access_key_id=keys.access_key_id,
                                    aws_secret_access_key=keys.secret_access_key, region_name=local_stack.info.region)
    proof = invoke_payload("orders-local", "orders_app", local_stack.info.server_id, session=session,
                           endpoint_url=local_stack.info.moto_url)
    return _invoke(local_stack, {"action": "grant_list", "identity": proof["identity"]})


@pytest.mark.parametrize("function, session_name", [("api_handler", "rdsvend-local"), ("vend", "rdsvend-local-vend")])
def test_each_function_calls_aws_as_its_deployed_role(local_stack: LocalStack, admin: Callable[..., Any],
                                                      function: str, session_name: str) -> None:
    """With its role's policy gone, the function's own call (a grants table query) is refused by
    the local AWS naming that role's session; with it back, the same request succeeds."""
    role = f"rdsvend-local-{function}"

    def grants() -> dict[str, Any]:
        if function == "vend":
            return _grant_list_by_invoke(local_stack)
        status, body = local_stack.request("GET", "/v1/grants")
        return dict(body) if status == 200 else {"error": body, "status": status}

    before = len(local_stack.denials())
    with role_policy_changed(admin("iam"), role, role, lambda _doc: None):
        refused = grants()
    assert "error" in refused, refused
    # its first call refused: the access policy's parameter (a function starting afresh reads it
    # first, as deployed), or the grants table
    denied = [d for d in local_stack.denials()[before:] if d.action.startswith("dynamodb:") or
              d.action == "ssm:GetParameter"]
    assert denied and denied[0].principal == f"arn:aws:sts::{SERVICE}:assumed-role/{role}/{session_name}"
    assert denied[0].resource.endswith((":table/rdsvend-local-grants/index/by-requester",
                                        ":table/rdsvend-local-grants", ":parameter/rdsvend/local/access-policy"))
    assert "grants" in grants()


def test_vend_over_http_and_invoke_under_the_deployed_roles(local_stack: LocalStack) -> None:
    status, body = local_stack.request("POST", "/v1/tokens", {"database": "orders-local", "db_user": "orders_app"})
    assert status == 200, body
    with psycopg.connect(body["dsn"], password=body["token"], sslrootcert=local_stack.ca_path,
                         connect_timeout=10) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("orders_app",)
    keys = local_stack.keys("allowed")
    session = boto3.session.Session(aws_access_key_id=keys.access_key_id,
                                    aws_secret_access_key=keys.secret_access_key, region_name=local_stack.info.region)
    payload = invoke_payload("billing-local", "billing_app", local_stack.info.server_id, session=session,
                             endpoint_url=local_stack.info.moto_url)
    answer = _invoke(local_stack, payload)
    assert "token" in answer and answer["rule"] == "billing-api", answer.get("error")


def test_the_canary_is_all_green_as_the_deployed_canary_role(local_stack: LocalStack) -> None:
    info = local_stack.info
    canary = info.seeded.function("canary")
    sts = canary.session(info.region).client("sts", endpoint_url=info.moto_url)
    assert sts.get_caller_identity()["Arn"] == f"arn:aws:sts::{SERVICE}:assumed-role/rdsvend-local-canary/rdsvend-local-canary"
    policy = load_policy_file(info.policy_path)
    report = run_canary(policy, local_canary_deps(info, policy))
    failing = {(t.key, c.id): c.message for t in report.targets for c in t.checks if c.status not in ("pass", "skip")}
    assert failing == {}
    assert {t.status for t in report.targets} == {"pass"}


def test_rotation_as_the_deployed_rotate_role_and_the_new_password_logs_in(local_stack: LocalStack) -> None:
    info = local_stack.info
    sm = info.seeded.function("rotate").session(info.region).client("secretsmanager", endpoint_url=info.moto_url)
    name = "rdsvend/orders-local/ledger_batch"
    before = json.loads(sm.get_secret_value(SecretId=name)["SecretString"])
    rotate_locally(sm.describe_secret(SecretId=name)["ARN"], sm, policy=load_policy_file(info.policy_path),
                   env={"PGSSLROOTCERT": info.ca_path})
    after = json.loads(sm.get_secret_value(SecretId=name)["SecretString"])
    assert after["password"] != before["password"]
    with psycopg.connect(host=after["host"], port=after["port"], dbname=after["dbname"], user=after["username"],
                         password=after["password"], sslmode="verify-full", sslrootcert=info.ca_path,
                         connect_timeout=10) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("ledger_batch",)


def test_the_operators_audit_lists_what_the_deployed_functions_logged(local_stack: LocalStack) -> None:
    operator = shell_env(local_stack, "operator")

    def vends() -> dict[str, dict[str, Any]]:
        done = rdsvend(operator, "audit", "--json", "--database", "orders-local", "--since", "10m")
        assert done.returncode == 0, done.stderr
        return {e["request_id"]: e for e in json.loads(done.stdout)["entries"] if e["kind"] == "vend"}

    before = vends()
    status, body = local_stack.request("POST", "/v1/tokens", {"database": "orders-local", "db_user": "orders_app"})
    assert status == 200, body
    deadline, new = time.monotonic() + 10, dict[str, dict[str, Any]]()
    while not new and time.monotonic() < deadline:
        time.sleep(0.3)  # the function's log lines reach CloudWatch in batches
        new = {k: v for k, v in vends().items() if k not in before}
    (mine,) = new.values()
    assert (mine["rule"], mine["principal"], mine["decision"]) == ("orders-api", local_stack.keys("allowed").arn, "allow")
