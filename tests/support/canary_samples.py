"""One healthy canary target the unit tests share: the orders database (IAM service user and
admin, a Kerberos user), what RDS says about it, an IAM answer that allows, and its roles; and
``check_of``, one check of a report that must be there."""
from __future__ import annotations

from chalicelib.canary.checks_iam import ConnectFacts, SideVerdict
from chalicelib.canary.checks_rds import DomainMembership, RdsResource
from chalicelib.canary.model import CheckResult, TargetReport
from chalicelib.engines.postgres_catalog import RoleFacts
from chalicelib.policy.model import Database, DbUser

__all__ = ["HOST", "PORT", "RID", "SIGNER", "APP", "OWNER", "ETL", "DB", "RESOURCE", "allow", "healthy_roles",
           "check_of"]

HOST, PORT = "orders.abc.us-east-1.rds.amazonaws.com", 5432
RID = "db-ABCDEFGHIJKLMNOP"
SIGNER = "arn:aws:iam::222222222222:role/rdsvend-signer"

APP = DbUser("orders_app", "iam", "service-user")
OWNER = DbUser("orders_owner", "iam", "service-admin")
ETL = DbUser("etl_legacy", "kerberos")
DB = Database("orders", "postgres", "us-east-1", "instance", "orders-prod",
              {u.name: u for u in (APP, OWNER, ETL)}, dbname="orders", signer_role=SIGNER)

RESOURCE = RdsResource("instance", "orders-prod", "available", True, HOST, PORT, RID,
                       "arn:aws:rds:us-east-1:222222222222:db:orders-prod",
                       domains=(DomainMembership("d-123", "joined", "corp.example.com", "rds-directory"),))


def allow(principal: str, arn: str, account: str) -> ConnectFacts:
    return ConnectFacts(principal, arn, SideVerdict(True, "allowed", "identity"),
                        SideVerdict(True, "allowed", "scp"))


def healthy_roles() -> dict[str, RoleFacts]:
    return {
        "orders_app": RoleFacts("orders_app", True, rds_iam_path=("rds_iam",)),
        "orders_owner": RoleFacts("orders_owner", True, createrole=True, rds_iam_path=("rds_iam",),
                                  owned_schemas=("shop",)),
        "etl_legacy": RoleFacts("etl_legacy", True, rds_ad_path=("rds_ad",)),
    }


def check_of(report: TargetReport, check_id: str) -> CheckResult:
    """The report's ``check_id`` check; a report without it fails the test, naming what it has."""
    check = report.check(check_id)
    assert check is not None, f"no {check_id} in {[c.id for c in report.checks]}"
    return check
