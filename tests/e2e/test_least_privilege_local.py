"""Least privilege, proven both ways, on the deployed ``local`` stage with the local AWS enforcing IAM.

One local stack for the module: ``rdsvend local up`` deploys the local stage (each function's
role with its generated document, the member-roles template in the member accounts), and the
functions run as those roles. First the stage's normal work runs (tests.support.local_work:
vend over HTTP and direct invoke wherever a rule lets it through, just-in-time grants asked,
used, revoked and left to expire, every password user rotated, the canary of every database and
the scheduled canary with its alert, ``rdsvend discover`` and ``rdsvend audit``): all of it
succeeds, and the local AWS's allowed-requests log says which step first used which generated
statement.

Then one named test per generated statement: the statement is taken out of the deployed role
(``PutRolePolicy`` without it), the functions the stack runs start afresh
(``UpdateFunctionConfiguration``: a new execution environment, nothing cached), the quickest
step that used the statement runs again and fails, and the local AWS logged AccessDenied for
that role on one of the statement's actions; then the statement is put back. Where a refusal is
meant not to fail the work (:data:`DEGRADES`), the test says so and still requires the
AccessDenied.

A statement no step used cannot be proven this way: the report of unexercised grants
(``rdsvend local exercised``) must then list exactly the reviewed ones, each with its reason
(:data:`devtools.deploy.exercised.LOCALLY_UNEXERCISED`, docs/deploy.md).
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from chalicelib.aws.arn import iam_principal_of
from chalicelib.policy.loader import load_policy_file, load_policy_text
from devtools.cli.main import cli
from devtools.deploy.exercised import LOCALLY_UNEXERCISED, DeployedRole, grants_of, report_of, stage_roles
from devtools.deploy.local_stage import LocalStage, local_stage
from devtools.local.allowed import read_allowed
from devtools.local.aws import AccountSessions
from devtools.local.deployment import org_reader_arn, running_stage
from devtools.local.postgres import DEFAULT_BIN_DIR
from devtools.local.stack import LocalStack
from devtools.local.world import load_world
from tests.support.least_privilege import Step, WorkLog, without_statement
from tests.support.local_work import LocalWork
from tests.support.local_world import local_access_text

pytestmark = pytest.mark.e2e

#: (role, Sid) -> why taking the statement out leaves the work succeeding (still refused, and logged)
DEGRADES: dict[tuple[str, str], str] = {
    ("api_handler", "CountCallerRequests"): "the fleet-wide rate limit falls back to each instance's own count",
    ("vend", "CountCallerRequests"): "the fleet-wide rate limit falls back to each instance's own count",
    ("api_handler", "PublishGrantRequests"): "a grant request stands when the approvers cannot be told; they list it",
    ("vend", "PublishGrantRequests"): "a grant request stands when the approvers cannot be told; they list it",
}
#: the Lambda functions the local stack runs in its own process, started afresh before each re-run
IN_PROCESS = ("rdsvend-local", "rdsvend-local-vend")


def _collected_stage() -> LocalStage:
    """The local stage as ``local up`` builds it from the shipped world and access policy (resource
    ids made up: they name no statement); what the tests below are named after."""
    world = load_world()
    text = local_access_text(world)
    policy = load_policy_text(text, "local access policy", service_account=world.service_account)
    prefix = {"instance": "db-", "cluster": "cluster-", "proxy": "prx-"}
    ids = {db.name: prefix[db.kind] + "A" * 26 for db in policy.databases.values() if not db.is_dsql}
    return local_stage(text, account=world.service_account, region=world.region, org_id=world.organization.id,
                       resource_ids=ids, org_role=org_reader_arn(world.organization.management_account))


def _statements() -> list[tuple[str, str]]:
    management = load_world().organization.management_account
    return [(grant.label, str(grant.sid)) for role in stage_roles(_collected_stage(), management)
            for grant in grants_of(role)]


STATEMENTS = _statements()


@dataclass
class Proof:
    stack: LocalStack
    stage: LocalStage
    roles: list[DeployedRole]
    work: LocalWork
    log: WorkLog
    steps: dict[str, Step]
    sessions: AccountSessions

    def role(self, label: str) -> DeployedRole:
        return next(r for r in self.roles if r.label == label)

    def cold_start(self) -> None:
        """New execution environments for the functions the stack runs (as after a deploy)."""
        client = self.sessions.client("lambda", self.stage.deploy.account)
        for name in IN_PROCESS:
            client.update_function_configuration(FunctionName=name, Description=f"least-privilege proof {time.time()}")
        self.work.cold_start()


@pytest.fixture(scope="module")
def proof(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proof]:
    if not (Path(DEFAULT_BIN_DIR) / "initdb").exists():
        pytest.skip(f"PostgreSQL 15 binaries not found in {DEFAULT_BIN_DIR}")
    stack = LocalStack(tmp_path_factory.mktemp("least-privilege") / "state")
    stack.start()
    try:
        info = stack.info
        stage = running_stage(Path(info.policy_path).read_text(encoding="utf-8"), info.seeded, info.region)
        sessions = AccountSessions(info.moto_url, info.region, info.seeded.management_account)
        work = LocalWork(stack, load_policy_file(info.policy_path), stage,
                         admin=lambda service: sessions.client(service, stage.deploy.account))
        steps = work.steps()
        log = WorkLog(Path(info.state_dir))
        log.run(steps)
        yield Proof(stack, stage, stage_roles(stage, info.seeded.management_account), work, log,
                    {s.name: s for s in steps}, sessions)
    finally:
        report = stack.stop()
        assert report.clean, f"local stack left things behind: {report.leftovers}"


def test_the_normal_work_succeeds_under_the_generated_roles(proof: Proof) -> None:
    assert proof.log.failures == {}
    generated = {iam_principal_of(role.arn) for role in proof.roles}
    refused = [d.line() for d in proof.stack.denials() if iam_principal_of(d.principal) in generated]
    assert refused == []


def test_a_named_test_for_every_deployed_statement(proof: Proof) -> None:
    deployed = [(grant.label, str(grant.sid)) for role in proof.roles for grant in grants_of(role)]
    assert sorted(deployed) == sorted(STATEMENTS)
    # and what is deployed is what the packaging code generates: each role's inline policies, read back
    for role in proof.roles:
        account, name = role.arn.split(":")[4], role.arn.rsplit("/", 1)[1]
        iam = proof.sessions.client("iam", account)
        names = iam.list_role_policies(RoleName=name)["PolicyNames"]
        assert {n: iam.get_role_policy(RoleName=name, PolicyName=n)["PolicyDocument"] for n in names} == role.policies


def test_the_unexercised_grants_are_exactly_the_reviewed_ones(proof: Proof) -> None:
    report = report_of(proof.roles, read_allowed(proof.stack.state_dir))
    assert report.unreviewed() == [], "granted, used by no step, and no reviewed reason why"
    assert report.stale() == [], "reviewed as unexercised, but no longer generated or exercised now"


def test_rdsvend_local_exercised_lists_them_with_their_reasons(proof: Proof) -> None:
    done = CliRunner().invoke(cli, ["local", "exercised", "--check", "--state-dir", str(proof.stack.state_dir)])
    assert done.exit_code == 0, done.output
    lines = done.stdout.splitlines()
    for (role, sid, action), why in LOCALLY_UNEXERCISED.items():
        assert f"{role}: {sid}: {action}: not exercised locally: {why}" in lines
    total = sum(len(g.actions) for role in proof.roles for g in grants_of(role))
    assert lines[-1] == (f"{total - len(LOCALLY_UNEXERCISED)} of {total} granted actions exercised; "
                         f"{len(LOCALLY_UNEXERCISED)} not ({len(LOCALLY_UNEXERCISED)} with a reviewed reason, 0 without)")
    every = CliRunner().invoke(cli, ["local", "exercised", "--all", "--state-dir", str(proof.stack.state_dir)])
    assert "vend: AssumeDeclaredSignerRoles: used sts:AssumeRole, sts:SetSourceIdentity" in every.stdout


def _role_ref(arn: str) -> tuple[str, str]:
    return arn.split(":")[4], arn.rsplit("/", 1)[1]


@pytest.mark.parametrize(("label", "sid"), STATEMENTS, ids=[f"{label} {sid}" for label, sid in STATEMENTS])
def test_without_the_statement_the_work_that_used_it_is_refused(proof: Proof, label: str, sid: str) -> None:
    role = proof.role(label)
    grant = next(g for g in grants_of(role) if str(g.sid) == sid)
    steps = proof.log.steps_using(grant.role, grant.policy, grant.sid)
    if not steps:
        reviewed = {action for (who, statement, action) in LOCALLY_UNEXERCISED if (who, statement) == (label, sid)}
        assert reviewed == set(grant.actions), (
            f"no step of the work used {label}'s {sid}, and not every action of it has a reviewed reason "
            f"(devtools.deploy.exercised.LOCALLY_UNEXERCISED): {sorted(set(grant.actions) - reviewed)}")
        return
    step = proof.steps[steps[0]]
    account, name = _role_ref(role.arn)
    before = len(proof.stack.denials())
    with without_statement(proof.sessions.client("iam", account), name, grant.policy, sid):
        proof.cold_start()
        try:
            step.run()
        except Exception as exc:  # noqa: BLE001 - any failure of the work is what this test wants to see
            failure: str | None = f"{type(exc).__name__}: {exc}"
        else:
            failure = None
    actions = {a.lower() for a in grant.actions}
    named = [d for d in proof.stack.denials()[before:]
             if iam_principal_of(d.principal) == iam_principal_of(role.arn) and d.action.lower() in actions]
    assert named, (f"without {label}'s {sid}, '{step.name}' ({'failed: ' + failure[:300] if failure else 'succeeded'})"
                   f" and the local AWS refused {role.arn} none of {sorted(actions)}")
    assert named[0].message().startswith("User: ") and f"is not authorized to perform: {named[0].action}" in \
        named[0].message()
    why = DEGRADES.get((label, sid))
    if why is None:
        assert failure is not None, f"without {label}'s {sid}, '{step.name}' still succeeded ({named[0].line()})"
    else:
        assert failure is None, f"'{step.name}' was meant to go on without {label}'s {sid} ({why}): {failure}"
