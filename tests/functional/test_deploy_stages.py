"""Stages: each with its own account, region, organization and access policy; two stages never
collide and never share power; the functions may assume exactly the member roles their stage's
databases resolve to, and the member-roles template creates exactly those, trusting that stage.

Nothing is packaged here (``make package``'s checks run before anything is built); decisions are
taken by rdsvend's own IAM evaluator on the generated documents.
"""
from __future__ import annotations

import json
import shutil
import textwrap
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from chalicelib.iam.evaluator import evaluate
from chalicelib.iam.model import RequestContext, parse_policy
from chalicelib.policy.loader import load_policy_text
from chalicelib.policy.model import AccessPolicy
from devtools.deploy.member_roles import member_role_arns, member_roles_template
from devtools.deploy.roles import (
    DeployConfigError,
    function_policy,
    load_chalice_config,
    load_deploy_file,
    load_stage_policy,
    render_policy_files,
    stage_settings,
)
from devtools.deploy.rotation import declared_secrets
from devtools.deploy.stack import physical_names, stack_plan
from devtools.deploy.stages import check_stages

ROOT = Path(__file__).resolve().parents[2]
CONFIG = load_chalice_config(ROOT)
DEPLOY = load_deploy_file(ROOT / "policies" / "deploy.yaml")
SERVICE = "111122223333"
MEMBER = "444455556666"
SIGNING = ("api_handler", "vend", "canary")


def _policies() -> dict[str, AccessPolicy]:
    return {stage: load_stage_policy(settings) for stage, settings in DEPLOY.stages.items()}


def _decide(document: dict[str, Any], action: str, resource: str) -> str:
    policy = parse_policy(document, source="generated")
    return evaluate(RequestContext(action, resource), identity_policies=[policy]).decision


# -- a database in another account ---------------------------------------------------------------
LEDGER = textwrap.dedent(f"""\
      ledger-prod:
        engine: postgres
        region: eu-west-1
        account: "{MEMBER}"
        instance: ledger-prod
        signer_role: arn:aws:iam::{MEMBER}:role/rdsvend-signer-prod
        users:
          ledger_app: {{auth: iam, tier: service-user}}
""")


def _prod_with_foreign_database(defaults: bool) -> AccessPolicy:
    text = (ROOT / "policies" / "access.yaml").read_text()
    text = text.replace("databases:\n", "databases:\n" + textwrap.indent(LEDGER, "  "), 1)
    if defaults:
        text = text.replace("version: 1\n", "version: 1\ndefaults:\n  reader_role_name: rdsvend-reader-prod\n", 1)
    else:
        text = text.replace(f"    signer_role: arn:aws:iam::{MEMBER}:role/rdsvend-signer-prod\n",
                            f"    signer_role: arn:aws:iam::{MEMBER}:role/rdsvend-signer-prod\n"
                            f"    reader_role: arn:aws:iam::{MEMBER}:role/team/ledger-reader-prod\n", 1)
    return load_policy_text(text, "access.yaml", service_account=SERVICE)


@pytest.mark.parametrize(("defaults", "reader"), [
    (True, f"arn:aws:iam::{MEMBER}:role/rdsvend-reader-prod"),  # defaults.reader_role_name
    (False, f"arn:aws:iam::{MEMBER}:role/team/ledger-reader-prod"),  # an explicit reader_role
])
def test_a_database_in_another_account_gets_exactly_its_reader_and_signer_assumed_and_created(defaults: bool,
                                                                                              reader: str) -> None:
    policy = _prod_with_foreign_database(defaults)
    deploy = replace(DEPLOY.stage("prod"), resource_ids={**DEPLOY.stage("prod").resource_ids,
                                                         "ledger-prod": "db-LEDGERLEDGERLEDGERLEDGER1"})
    settings = stage_settings(CONFIG, "prod")
    signers = {f"arn:aws:iam::{SERVICE}:role/rdsvend-signer-prod", f"arn:aws:iam::{MEMBER}:role/rdsvend-signer-prod"}
    for function in SIGNING:
        document = function_policy(function, settings, policy, deploy)
        assumable = {r for s in document["Statement"] if "sts:AssumeRole" in json.dumps(s["Action"])
                     for r in s["Resource"]}
        assert assumable == signers | {reader}, function  # exactly these, nothing more
        assert _decide(document, "sts:AssumeRole", reader) == "allowed"
        assert _decide(document, "sts:AssumeRole", f"arn:aws:iam::{MEMBER}:role/rdsvend-reader-dev") == "implicitDeny"
        assert _decide(document, "sts:AssumeRole", f"arn:aws:iam::{MEMBER}:role/admin") == "implicitDeny"
        # Its RDS is read through the reader role, not with the function's own credentials.
        arn = f"arn:aws:rds:eu-west-1:{MEMBER}:db:ledger-prod"
        assert _decide(document, "rds:DescribeDBInstances", arn) == "implicitDeny"
    rotate = function_policy("rotate", settings, policy, deploy)
    assert "sts:" not in json.dumps(rotate)
    # The member-roles template creates those very names in that account, trusting prod's functions only.
    assert set(member_role_arns(policy, deploy)) == signers | {reader}
    template = member_roles_template(policy, deploy, "prod")
    entry = template["Mappings"]["Accounts"][MEMBER]
    name, path = reader.split(":role", 1)[1].rsplit("/", 1)[1], reader.split(":role", 1)[1].rsplit("/", 1)[0] + "/"
    assert (entry["ReaderRoleName"], entry["ReaderRolePath"]) == (name, path)
    assert entry["SignerRoleName"] == "rdsvend-signer-prod"
    assert entry["ConnectArns"] == [f"arn:aws:rds-db:eu-west-1:{MEMBER}:dbuser:db-LEDGERLEDGERLEDGERLEDGER1/ledger_app"]
    for role in ("SignerRole", "ReaderRole"):
        (trust,) = template["Resources"][role]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        trusted = [t["Fn::Sub"].rsplit("/", 1)[1] for t in trust["Condition"]["ArnEquals"]["aws:PrincipalArn"]]
        assert trusted == ["rdsvend-prod-api_handler", "rdsvend-prod-vend", "rdsvend-prod-canary"]
        assert not any("dev" in t for t in trusted)


# -- two stages -----------------------------------------------------------------------------
def test_the_shipped_stages_share_no_physical_name_role_or_secret() -> None:
    policies = _policies()
    check_stages(DEPLOY, CONFIG, policies)  # what make package runs first
    claimed: dict[str, str] = {}
    for stage, settings in DEPLOY.stages.items():
        names = list(physical_names(stack_plan(CONFIG, stage, settings)).values())
        names += member_role_arns(policies[stage], settings)
        assert len(names) >= 20
        for name in names:
            assert stage in name, (stage, name)  # every name the stage creates carries it
        # The secrets exist before rdsvend (it rotates them): each is the business of one stage.
        names += [secret for secret, _rotation in declared_secrets(policies[stage])]
        for name in names:
            assert claimed.setdefault(name, stage) == stage, (name, claimed[name], stage)
    assert DEPLOY.stage("dev").account == DEPLOY.stage("prod").account  # and yet they share an account


def _two_stages_with(tmp_path: Path, edit_dev: Callable[[str], str]) -> Path:
    """A copy of the project whose dev access policy is changed by ``edit_dev(text)``."""
    for name in ("policies", ".chalice"):
        shutil.copytree(ROOT / name, tmp_path / name)
    dev = tmp_path / "policies" / "access-dev.yaml"
    dev.write_text(edit_dev(dev.read_text()))
    return tmp_path


def _check(project: Path) -> None:
    deploy = load_deploy_file(project / "policies" / "deploy.yaml")
    check_stages(deploy, load_chalice_config(project),
                 {stage: load_stage_policy(settings) for stage, settings in deploy.stages.items()})


def test_two_stages_declaring_one_secret_are_refused(tmp_path: Path) -> None:
    project = _two_stages_with(tmp_path, lambda text: text.replace(
        "secret:rdsvend-dev/orders/reports_legacy", "secret:rdsvend/orders/reports_legacy"))
    with pytest.raises(DeployConfigError) as raised:
        _check(project)
    assert ("stages 'dev' and 'prod' both use the rotated secret "
            "'arn:aws:secretsmanager:us-east-1:111122223333:secret:rdsvend/orders/reports_legacy'") in str(raised.value)


def test_two_stages_naming_one_member_role_are_refused(tmp_path: Path) -> None:
    project = _two_stages_with(tmp_path, lambda text: text.replace("role/rdsvend-signer-dev",
                                                                   "role/rdsvend-signer-prod"))
    with pytest.raises(DeployConfigError) as raised:
        _check(project)
    assert "both use the role 'arn:aws:iam::111122223333:role/rdsvend-signer-prod'" in str(raised.value)


def test_two_stages_writing_one_metrics_namespace_are_refused(tmp_path: Path) -> None:
    project = _two_stages_with(tmp_path, lambda text: text)
    path = project / ".chalice" / "config.json"
    config = json.loads(path.read_text())
    config["stages"]["dev"]["environment_variables"]["POWERTOOLS_METRICS_NAMESPACE"] = "rdsvend-prod"
    path.write_text(json.dumps(config))
    with pytest.raises(DeployConfigError, match="both use the metrics namespace 'rdsvend-prod'"):
        _check(project)


@pytest.mark.parametrize("where", ["config", "deploy"])
def test_a_stage_only_one_file_has_is_refused_naming_both_files(tmp_path: Path, where: str) -> None:
    project = _two_stages_with(tmp_path, lambda text: text)
    if where == "config":
        path = project / ".chalice" / "config.json"
        config = json.loads(path.read_text())
        config["stages"]["qa"] = config["stages"]["dev"]
        path.write_text(json.dumps(config))
    else:
        path = project / "policies" / "deploy.yaml"
        path.write_text(path.read_text().replace("  prod:\n", "  qa:\n    account: \"111122223333\"\n"
                                                 "    region: us-east-1\n    org_id: o-a1b2c3d4e5\n"
                                                 "    access_policy: access-dev.yaml\n  prod:\n", 1))
    with pytest.raises(DeployConfigError) as raised:
        render_policy_files(project)  # make package's first step
    message = str(raised.value)
    assert "stage 'qa'" in message and "deploy.yaml" in message and "config.json" in message


def test_dev_functions_cannot_sign_for_or_read_a_prod_only_database() -> None:
    policies = _policies()
    prod_only = set(policies["prod"].databases) - set(policies["dev"].databases)
    assert prod_only == {"orders-prod", "billing-aurora"}
    settings = stage_settings(CONFIG, "dev")
    deploy = DEPLOY.stage("dev")
    prod_deploy = DEPLOY.stage("prod")
    from devtools.deploy.documents import connect_arns

    prod_arns = connect_arns(policies["prod"], prod_deploy)
    assert prod_arns  # prod signs billing-aurora's user itself
    for function in (*SIGNING, "rotate"):
        document = function_policy(function, settings, policies["dev"], deploy)
        for arn in prod_arns:
            assert _decide(document, "rds-db:connect", arn) == "implicitDeny", (function, arn)
        for role in member_role_arns(policies["prod"], prod_deploy):
            assert _decide(document, "sts:AssumeRole", role) == "implicitDeny", (function, role)
    # and prod's member roles trust prod's functions only
    template = member_roles_template(policies["prod"], prod_deploy, "prod")
    assert "rdsvend-dev" not in json.dumps(template["Resources"])


def test_make_package_refuses_a_stage_mismatch_in_one_line_before_building(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from devtools.deploy.package import main

    project = _two_stages_with(tmp_path, lambda text: text)
    for name in ("app.py", "requirements.txt"):
        shutil.copy2(ROOT / name, project / name)
    path = project / ".chalice" / "config.json"
    config = json.loads(path.read_text())
    del config["stages"]["prod"]
    path.write_text(json.dumps(config))
    assert main(["--project-dir", str(project), "--out", str(tmp_path / "build")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "stage 'prod' is in" in err and "config.json" in err
    assert not (tmp_path / "build").exists()  # nothing was built
