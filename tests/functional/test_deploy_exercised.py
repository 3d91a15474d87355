"""The report of unexercised grants (devtools.deploy.exercised): every generated statement of the
``local`` stage, function roles and member-account roles, set against the allowed-requests log."""
from __future__ import annotations

from pathlib import Path

import pytest

from devtools.deploy.exercised import LOCALLY_UNEXERCISED, DeployedRole, render, report_of, stage_roles
from devtools.deploy.local_stage import LocalStage, local_stage
from devtools.local.allowed import Allowed
from tests.support.local_world import local_access_text

ROOT = Path(__file__).resolve().parents[2]
SERVICE, DATA, MANAGEMENT = "222222222222", "444444444444", "111111111111"
RESOURCE_IDS = {"orders-local": "db-AAAAAAAAAAAAAAAAAAAAAAAAAA", "billing-local": "db-BBBBBBBBBBBBBBBBBBBBBBBBBB",
                "shop-local": "db-CCCCCCCCCCCCCCCCCCCCCCCCCC",
                "orders-proxy": "prx-0aaaaaaaaaaaaaaaa", "shop-proxy": "prx-0bbbbbbbbbbbbbbbb"}
VEND_ROLE = f"arn:aws:iam::{SERVICE}:role/rdsvend-local-vend"
SESSION = f"arn:aws:sts::{SERVICE}:assumed-role/rdsvend-local-vend/rdsvend-local-vend"


@pytest.fixture(scope="module")
def stage() -> LocalStage:
    return local_stage(local_access_text(), account=SERVICE, region="us-east-1",
                       org_id="o-rdsvend001", resource_ids=RESOURCE_IDS)


def _line(action: str, resource: str, sid: str | int, *, owner: str = VEND_ROLE, policy: str = "rdsvend-local-vend",
          layer: str = "identity") -> Allowed:
    return Allowed(SESSION, action, resource, layer, owner, policy, sid)


def test_the_roles_are_the_functions_and_the_member_roles_with_their_generated_documents(stage: LocalStage) -> None:
    roles = {role.label: role for role in stage_roles(stage, MANAGEMENT)}
    assert {"api_handler", "vend", "canary", "rotate"} <= set(roles)
    assert roles["vend"].arn == VEND_ROLE and roles["vend"].policies == {"rdsvend-local-vend": stage.documents()["vend"]}
    members = {label for label in roles if " in " in label}
    assert f"rdsvend-reader in {DATA}" in members and f"rdsvend-signer in {SERVICE}" in members
    assert not any(label.endswith(MANAGEMENT) for label in roles)
    reader = roles[f"rdsvend-reader in {DATA}"]
    assert reader.arn == f"arn:aws:iam::{DATA}:role/rdsvend-reader"
    assert {s["Sid"] for doc in reader.policies.values() for s in doc["Statement"]} >= {"DescribeDatabases"}


def test_a_statement_is_exercised_by_the_actions_its_requests_used(stage: LocalStage) -> None:
    vend = [r for r in stage_roles(stage) if r.label == "vend"]
    signer = f"arn:aws:iam::{SERVICE}:role/rdsvend-signer"
    report = report_of(vend, [
        _line("sts:AssumeRole", signer, "AssumeDeclaredSignerRoles"),
        _line("sts:AssumeRole", signer, "AssumeDeclaredSignerRoles"),
        _line("ssm:GetParameter", "arn:aws:ssm:us-east-1:222222222222:parameter/rdsvend/local/access-policy",
              "ReadAccessPolicy"),
        # another role's statement of the same Sid, and a resource policy's grant, are not vend's
        _line("sts:SetSourceIdentity", signer, "AssumeDeclaredSignerRoles",
              owner=f"arn:aws:iam::{SERVICE}:role/rdsvend-local-canary", policy="rdsvend-local-canary"),
        _line("sts:SetSourceIdentity", signer, "AssumeDeclaredSignerRoles", layer="resource"),
    ], reviewed={})
    signers = report.used_by("vend", "AssumeDeclaredSignerRoles")
    assert len(signers.used) == 2 and signers.unused_actions == ("sts:SetSourceIdentity",)
    assert report.used_by("vend", "ReadAccessPolicy").unused_actions == ()
    missing = report.unexercised()
    assert ("vend", "AssumeDeclaredSignerRoles", "sts:SetSourceIdentity") in missing
    assert ("vend", "ReadAccessPolicy", "ssm:GetParameter") not in missing
    assert ("vend", "Tracing", "xray:PutTraceSegments") in missing
    assert set(report.unreviewed()) == set(missing)  # no reason given for any


def test_a_reviewed_reason_is_shown_and_a_stale_one_is_named(stage: LocalStage) -> None:
    vend = [r for r in stage_roles(stage) if r.label == "vend"]
    reviewed = {("vend", "Tracing", "xray:PutTraceSegments"): "no X-Ray daemon runs locally",
                ("vend", "ReadAccessPolicy", "ssm:GetParameter"): "reviewed once, exercised now"}
    report = report_of(vend, [_line("ssm:GetParameter", "arn:aws:ssm:us-east-1:222222222222:parameter/x",
                                    "ReadAccessPolicy")], reviewed=reviewed)
    assert report.unexercised()[("vend", "Tracing", "xray:PutTraceSegments")] == "no X-Ray daemon runs locally"
    assert ("vend", "Tracing", "xray:PutTraceSegments") not in report.unreviewed()
    assert report.stale() == [("vend", "ReadAccessPolicy", "ssm:GetParameter")]
    text = render(report)
    assert "vend: Tracing: xray:PutTraceSegments: not exercised locally: no X-Ray daemon runs locally" in text
    assert "vend: ReadAccessPolicy" not in text  # exercised: only with every=True
    assert "vend: ReadAccessPolicy: used ssm:GetParameter (1 resources)" in render(report, every=True)
    total = sum(len(s["Action"]) if isinstance(s["Action"], list) else 1 for s in stage.documents()["vend"]["Statement"])
    assert text.splitlines()[-1].startswith(f"1 of {total} granted actions exercised")


def test_a_statement_without_sid_is_named_by_its_index() -> None:
    role = DeployedRole("fn", "arn:aws:iam::1:role/fn", {"p": {"Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"},
        {"Effect": "Deny", "Action": "s3:*", "Resource": "*"}]}})
    report = report_of([role], [Allowed("x", "s3:GetObject", "arn:aws:s3:::b/k", "identity", "arn:aws:iam::1:role/fn",
                                        "p", 0)], reviewed={})
    assert report.unexercised() == {} and len(report.statements) == 1  # a Deny grants nothing


def test_the_reviewed_list_is_the_deployment_guides() -> None:
    guide = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    table = guide.split("| grant (role, statement, action) | why the local stack cannot use it |\n| --- | --- |\n")[1]
    rows = [line for line in table.split("\n\n")[0].splitlines() if line.startswith("| `")]
    listed = {tuple(part.strip("`") for part in row.split(" | ")[0][2:].split("` `")): row.split(" | ")[1].rstrip(" |")
              for row in rows}
    assert listed == dict(LOCALLY_UNEXERCISED)
