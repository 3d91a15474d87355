"""Sample access policies the tests share.

``ORDERS_POLICY``: three PostgreSQL databases (orders-prod with IAM service user and admin and a
Kerberos user, reports with a policy-given host and port, ghost that RDS does not have) and
rules for the orders API role (allowed in organization o-abc123def4) and others; the HTTP API,
OpenAPI and observability tests vend against it. :func:`one_database_policy` writes the
smallest policy around one database, for tests about something else. :class:`PolicyEndpoints`
finds each database where its policy entry says (host and port), without RDS.
"""
from __future__ import annotations

import textwrap
from collections.abc import Sequence

from chalicelib.aws.rds import Endpoint, RdsDatabase

__all__ = ["ACCT", "ORDERS_POLICY", "POLICY", "PolicyEndpoints", "allow_rule", "one_database_policy"]

ACCT = "111122223333"
POLICY = textwrap.dedent(
    f"""
    version: 1
    databases:
      orders-prod:
        engine: postgres
        region: us-east-1
        instance: orders-prod
        dbname: orders
        users:
          orders_app:   {{auth: iam, tier: service-user}}
          orders_owner: {{auth: iam, tier: service-admin}}
          etl_legacy:   {{auth: kerberos}}
      reports:
        engine: postgres
        region: us-east-1
        instance: reports-db
        host: reports.internal.example
        port: 6432
        users:
          reporter: {{auth: iam}}
      ghost:
        engine: postgres
        region: us-east-1
        instance: ghost-db
        users:
          ghost_app: {{auth: iam}}
    rules:
      - id: orders-api
        effect: allow
        principals: ["arn:aws:iam::{ACCT}:role/orders-api-*"]
        databases: [orders-prod]
        db_users: [orders_app]
        conditions:
          org_ids: [o-abc123def4]
          source_ips: [10.0.0.0/8]
      - id: dba
        effect: allow
        principals: ["arn:aws:iam::{ACCT}:role/dba-*", "arn:aws:iam::444455556666:role/auditor"]
        databases: ["*"]
        db_users: ["*"]
      - id: no-owner-for-ci
        effect: deny
        principals: ["arn:aws:iam::{ACCT}:role/dba-ci"]
        databases: ["*"]
        db_users: [orders_owner]
    """
)

ORDERS_POLICY = POLICY


def allow_rule(rule_id: str, principals: Sequence[str], databases: Sequence[str] = ("orders-prod",),
               db_users: Sequence[str] = ("orders_app",)) -> str:
    """One ``effect: allow`` rule, as a YAML list item."""
    def flow(items: Sequence[str]) -> str:
        return "[" + ", ".join(items) + "]"

    quoted = ", ".join(f'"{p}"' for p in principals)
    return (f"- id: {rule_id}\n  effect: allow\n  principals: [{quoted}]\n"
            f"  databases: {flow(databases)}\n  db_users: {flow(db_users)}\n")


def one_database_policy(name: str = "orders-prod", *, engine: str = "postgres", region: str = "us-east-1",
                        kind: str = "instance", identifier: str | None = None,
                        users: str = "orders_app: {auth: iam, tier: service-user}", extra: str = "",
                        rules: Sequence[str] = (), more: str = "") -> str:
    """``version: 1`` with one database and ``rules`` (see :func:`allow_rule`). ``extra``: more keys
    of the database (YAML lines, e.g. ``host:``/``port:``); ``more``: more top-level keys."""
    keys = textwrap.indent(textwrap.dedent(extra).strip(), "    ") + "\n" if extra.strip() else ""
    user_lines = textwrap.indent(textwrap.dedent(users).strip(), "      ")
    rule_block = "rules:\n" + textwrap.indent("".join(rules), "  ") if rules else "rules: []\n"
    tail = textwrap.dedent(more).strip() + "\n" if more.strip() else ""
    return (f"version: 1\ndatabases:\n  {name}:\n    engine: {engine}\n    region: {region}\n"
            f"    {kind}: {identifier or name}\n{keys}    users:\n{user_lines}\n{rule_block}{tail}")


class PolicyEndpoints:
    """An endpoint source that reads no RDS: each database is at its policy's host and port."""

    def resolve(self, database: RdsDatabase) -> Endpoint:
        assert database.host is not None and database.port is not None, f"{database.identifier}: no host and port"
        return Endpoint(host=database.host, port=database.port, resource_id=None)
