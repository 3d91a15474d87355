"""One target's checks with in-memory adapters: each fault gives its own failing check."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from chalicelib.canary.checks_iam import ConnectFacts, Finding, InMemoryConnectEvaluator, SideVerdict
from chalicelib.canary.checks_kerberos import DirectoryRole, InMemoryDirectoryRoleFacts
from chalicelib.canary.checks_rds import DomainMembership, InMemoryRdsFacts, RdsResource
from chalicelib.canary.model import CheckResult, TargetReport
from chalicelib.canary.target import run_target
from chalicelib.canary.target_run import CanaryDeps, Deadline
from chalicelib.engines.postgres_catalog import RoleFacts
from chalicelib.errors import ProbeError
from chalicelib.policy.model import Database, DbUser
from tests.support.canary_fakes import CountingTokens, FixedSigner, MemoryAdmin, MemoryConnector, MemoryDatabase
from tests.support.canary_samples import (
    APP,
    DB,
    ETL,
    HOST,
    OWNER,
    PORT,
    RESOURCE,
    RID,
    SIGNER,
    allow,
    healthy_roles,
)


@dataclasses.dataclass
class World:
    resource: RdsResource | Exception | None = RESOURCE
    answer: Callable[[str, str, str], ConnectFacts | Exception] = allow
    server: MemoryDatabase = dataclasses.field(default_factory=lambda: MemoryDatabase(roles=healthy_roles()))
    admin: bool = False
    tokens: CountingTokens = dataclasses.field(default_factory=CountingTokens)
    directory: DirectoryRole | Exception = dataclasses.field(default_factory=lambda: DirectoryRole(
        "rds-directory", ("arn:aws:iam::aws:policy/service-role/AmazonRDSDirectoryServiceAccess",), True))

    def deps(self) -> CanaryDeps:
        servers = {(HOST, PORT): self.server}
        return CanaryDeps(
            rds=InMemoryRdsFacts({"orders": self.resource}),
            connect=InMemoryConnectEvaluator(self.answer),
            directory=InMemoryDirectoryRoleFacts({"rds-directory": self.directory}),
            tokens=self.tokens, db=MemoryConnector(servers), signer=FixedSigner(),
            admin=MemoryAdmin(servers) if self.admin else None,
        )

    def run(self, user: DbUser = APP, database: Database = DB) -> tuple[TargetReport, dict[str, CheckResult]]:
        report = run_target(database, user, self.deps(), Deadline.after(5))
        return report, {c.id: c for c in report.checks}


def not_passing(checks: dict[str, CheckResult]) -> dict[str, str]:
    return {cid: c.status for cid, c in checks.items() if c.status not in ("pass", "skip")}


@pytest.mark.parametrize("admin", [False, True])
def test_healthy_target_passes_every_check(admin: bool) -> None:
    report, checks = World(admin=admin).run()
    assert report.status == "pass", not_passing(checks)
    assert [c.id for c in report.checks] == ["rds.found", "rds.iam_auth_enabled", "rds.endpoint",
                                             "iam.signer_allows", "org.scp_allows", "rds.auth_errors",
                                             "db.connect", "db.rds_iam", "db.auth_conflict", "db.tier"]
    assert checks["db.connect"].details["latency_ms"] >= 0
    assert checks["db.connect"].details["sslmode"] == "verify-full"


def test_dbuser_arn_uses_the_resource_id_and_the_instance_account() -> None:
    world = World()
    deps = world.deps()
    run_target(DB, APP, deps, Deadline.after(5))
    assert isinstance(deps.connect, InMemoryConnectEvaluator)
    assert deps.connect.calls == [(SIGNER, f"arn:aws:rds-db:us-east-1:222222222222:dbuser:{RID}/orders_app",
                                   "222222222222")]


def test_instance_missing_fails_rds_found_and_skips_the_rest() -> None:
    report, checks = World(resource=None).run()
    assert not_passing(checks) == {"rds.found": "fail"}
    assert checks["db.connect"].status == "skip"


def test_stopped_instance_fails_only_rds_found_and_names_the_start_command() -> None:
    stopped = dataclasses.replace(RESOURCE, status="stopped")
    report, checks = World(resource=stopped, admin=True).run()
    assert not_passing(checks) == {"rds.found": "fail"}
    assert "start-db-instance" in checks["rds.found"].fix
    assert "rds.found" in checks["db.connect"].message


def test_iam_auth_disabled_is_its_own_failure() -> None:
    report, checks = World(resource=dataclasses.replace(RESOURCE, iam_auth_enabled=False)).run()
    assert not_passing(checks) == {"rds.iam_auth_enabled": "fail"}
    assert "--enable-iam-database-authentication" in checks["rds.iam_auth_enabled"].fix
    assert checks["db.connect"].status == "skip"


def test_instance_name_arn_in_signer_policy_is_named() -> None:
    bad_arn = "arn:aws:rds-db:us-east-1:222222222222:dbuser:orders-prod/orders_app"

    def answer(principal: str, arn: str, account: str) -> ConnectFacts:
        return ConnectFacts(principal, arn, SideVerdict(False, "implicitDeny", "identity", findings=(
            Finding("instance_name_arn", f"'{bad_arn}' names 'orders-prod', which looks like an instance "
                    "name", value=bad_arn),)), SideVerdict(True, "allowed", "scp"))

    report, checks = World(answer=answer).run()
    assert not_passing(checks) == {"iam.signer_allows": "fail"}
    assert bad_arn in checks["iam.signer_allows"].fix and RID in checks["iam.signer_allows"].fix


def test_scp_deny_names_policy_statement_and_level() -> None:
    def answer(principal: str, arn: str, account: str) -> ConnectFacts:
        return ConnectFacts(principal, arn, SideVerdict(True, "allowed", "identity"),
                            SideVerdict(False, "explicitDeny", "scp", "SCP 'NoDb' (p-abc123)", "DenyRdsDb",
                                        level="OU Services (ou-ab12-cdef3456)"))

    report, checks = World(answer=answer).run()
    assert not_passing(checks) == {"org.scp_allows": "fail"}
    msg = checks["org.scp_allows"].message
    assert "p-abc123" in msg and "DenyRdsDb" in msg and "OU Services" in msg


def test_management_account_passes_scp_and_says_why() -> None:
    def answer(principal: str, arn: str, account: str) -> ConnectFacts:
        return ConnectFacts(principal, arn, SideVerdict(True, "allowed", "identity"), None,
                            management_account=True)

    report, checks = World(answer=answer).run()
    assert checks["org.scp_allows"].status == "pass"
    assert "management account" in checks["org.scp_allows"].message


def test_rds_iam_revoked_with_admin_dsn_is_db_rds_iam_and_no_login_attempt() -> None:
    world = World(admin=True)
    world.server.roles["orders_app"] = RoleFacts("orders_app", True)
    report, checks = world.run()
    assert not_passing(checks) == {"db.rds_iam": "fail"}
    assert checks["db.rds_iam"].fix == "GRANT rds_iam TO orders_app;"
    assert world.server.logins == []


def test_rds_iam_revoked_without_admin_dsn_is_a_refused_login_explained() -> None:
    world = World()
    world.server.roles["orders_app"] = RoleFacts("orders_app", True)
    report, checks = world.run()
    assert not_passing(checks) == {"db.connect": "fail"}
    assert "PAM authentication failed" in checks["db.connect"].message
    assert "rds_iam" in checks["db.connect"].fix
    assert checks["db.rds_iam"].status == "skip"


def test_nested_rds_ad_is_an_auth_conflict_naming_the_path() -> None:
    world = World(admin=True)
    world.server.roles["orders_app"] = RoleFacts("orders_app", True, rds_iam_path=("rds_iam",),
                                                 rds_ad_path=("legacy_ad", "rds_ad"))
    report, checks = world.run()
    assert not_passing(checks) == {"db.auth_conflict": "fail"}
    assert "legacy_ad" in checks["db.auth_conflict"].message
    assert checks["db.auth_conflict"].fix.startswith("REVOKE legacy_ad FROM orders_app;")


@pytest.mark.parametrize("facts, expected", [
    (dict(superuser=True), "NOSUPERUSER"),
    (dict(createrole=True), "NOCREATEROLE"),
    (dict(createdb=True), "NOCREATEDB"),
    (dict(owned_schemas=("shop",)), "ALTER SCHEMA shop OWNER"),
    (dict(inherited=(("rds_superuser", "createrole"),)), "REVOKE rds_superuser FROM orders_app;"),
])
@pytest.mark.parametrize("admin", [False, True])
def test_service_user_with_too_much_privilege_fails_only_db_tier(
    facts: dict[str, Any],
    expected: str,
    admin: bool,
) -> None:
    world = World(admin=admin)
    world.server.roles["orders_app"] = RoleFacts("orders_app", True, rds_iam_path=("rds_iam",), **facts)
    report, checks = world.run()
    assert not_passing(checks) == {"db.tier": "fail"}
    assert expected in checks["db.tier"].fix


def test_service_admin_may_create_roles_and_own_schemas() -> None:
    report, checks = World().run(user=OWNER)
    assert checks["db.tier"].status == "pass"


def test_aws_unreachable_is_error_never_pass() -> None:
    cause = ProbeError("rds DescribeDBInstances failed: EndpointConnectionError", code="EndpointConnectionError")
    world = World(resource=cause)
    report, checks = world.run()
    assert report.status == "error"
    assert checks["rds.found"].status == "error" and "EndpointConnectionError" in checks["rds.found"].message
    for cid in ("rds.iam_auth_enabled", "iam.signer_allows", "org.scp_allows"):
        assert checks[cid].status != "pass"


def test_iam_read_failure_is_error_on_both_iam_checks() -> None:
    report, checks = World(answer=lambda *a: ProbeError("iam GetRole failed: AccessDenied")).run()
    assert checks["iam.signer_allows"].status == "error"
    assert checks["org.scp_allows"].status == "error"
    assert "AccessDenied" in checks["iam.signer_allows"].message


@pytest.mark.parametrize("behaviour, status", [("refused", "fail"), ("timeout", "error"), ("tls", "fail")])
def test_connection_problems_are_not_passes(behaviour: str, status: str) -> None:
    world = World()
    world.server.behaviour = behaviour
    report, checks = world.run()
    assert checks["db.connect"].status == status
    assert report.status == status


def test_token_signing_failure_is_an_error() -> None:
    report, checks = World(tokens=CountingTokens(fail="sts AssumeRole failed: AccessDenied")).run()
    assert checks["db.connect"].status == "error"
    assert "AssumeRole" in checks["db.connect"].message


def test_each_run_signs_a_fresh_token() -> None:
    world = World()
    world.run()
    world.run()
    assert len(world.tokens.issued) == 2


def test_kerberos_user_gets_directory_checks_instead_of_iam() -> None:
    world = World()
    report, checks = world.run(user=ETL)
    assert [c.id for c in report.checks] == ["rds.found", "rds.domain_joined", "rds.endpoint",
                                             "iam.directory_role", "db.rds_ad", "db.tier"]
    assert report.status == "pass", not_passing(checks)
    # read through the auth: iam sibling's token connection: no token was signed for etl_legacy
    assert [u for u, _, _ in world.tokens.issued] == ["orders_app"]


def test_kerberos_faults() -> None:
    unjoined = dataclasses.replace(RESOURCE, domains=(DomainMembership("d-123", "pending-join", None,
                                                                        "rds-directory"),))
    report, checks = World(resource=unjoined).run(user=ETL)
    assert checks["rds.domain_joined"].status == "fail"

    no_policy = DirectoryRole("rds-directory", (), True)
    report, checks = World(directory=no_policy).run(user=ETL)
    assert not_passing(checks) == {"iam.directory_role": "fail"}
    assert "AmazonRDSDirectoryServiceAccess" in checks["iam.directory_role"].fix

    world = World(admin=True)
    world.server.roles["etl_legacy"] = RoleFacts("etl_legacy", True)
    report, checks = world.run(user=ETL)
    assert not_passing(checks) == {"db.rds_ad": "fail"}


def test_deadline_already_spent_makes_every_unrun_check_an_error() -> None:
    report = run_target(DB, APP, World().deps(), Deadline.after(-1))
    assert report.status == "error"
    assert all(c.status == "error" for c in report.checks)
