"""Sample access policies the tests share, and the one builder they are written with.

``ORDERS_POLICY``: three PostgreSQL databases (orders-prod with IAM service user and admin and a
Kerberos user, reports with a policy-given host and port, ghost that RDS does not have) and
rules for the orders API role (allowed in organization o-abc123def4) and others; the HTTP API,
OpenAPI and observability tests vend against it. :func:`one_database_policy` writes the
smallest policy around one database, for tests about something else. A policy of several
databases is :func:`policy_text` over :func:`database` blocks and :func:`rule` items
(``tests.support.grant_policies`` and the RDS Proxy tests' policies are built so).
:class:`PolicyEndpoints` finds each database where its policy entry says (host and port),
without RDS.
"""
from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence

from chalicelib.aws.rds import Endpoint, RdsDatabase

__all__ = ["ACCT", "ORDERS_POLICY", "POLICY", "ORDERS_USERS", "PolicyEndpoints", "allow_rule", "database",
           "one_database_policy", "policy_text", "rule"]

ACCT = "111122223333"
#: orders-prod's IAM service user and admin (the samples' usual pair)
ORDERS_USERS = ("orders_app:   {auth: iam, tier: service-user}\n"
                "orders_owner: {auth: iam, tier: service-admin}")
_PLAIN = re.compile(r"^[A-Za-z0-9_.-]+$")


def _flow(items: Sequence[str], *, quote: bool = False) -> str:
    """A YAML flow list; items a plain scalar cannot hold (``*``, ARNs) are double-quoted."""
    return "[" + ", ".join(f'"{i}"' if quote or not _PLAIN.match(i) else i for i in items) + "]"


def _lines(text: str, indent: str) -> str:
    """``text`` (YAML lines, any common indent) indented by ``indent``, ending in a newline ("" if empty)."""
    return textwrap.indent(textwrap.dedent(text).strip(), indent) + "\n" if text.strip() else ""


def database(name: str = "orders-prod", *, engine: str = "postgres", region: str = "us-east-1",
             kind: str = "instance", identifier: str | None = None,
             users: str = "orders_app: {auth: iam, tier: service-user}", extra: str = "") -> str:
    """One entry of ``databases:`` (indented for it). ``kind``: ``instance``, ``cluster`` or
    ``proxy``; ``extra``: more keys of the database (YAML lines, e.g. ``host:``/``port:``)."""
    return (f"  {name}:\n    engine: {engine}\n    region: {region}\n    {kind}: {identifier or name}\n"
            f"{_lines(extra, '    ')}    users:\n{_lines(users, '      ')}")


def rule(rule_id: str, principals: Sequence[str], databases: Sequence[str] = ("orders-prod",),
         db_users: Sequence[str] = ("orders_app",), *, effect: str = "allow", extra: str = "") -> str:
    """One rule, as a YAML list item; ``extra``: more keys of the rule (``conditions:``, ``grant:`` ...)."""
    return (f"- id: {rule_id}\n  effect: {effect}\n  principals: {_flow(principals, quote=True)}\n"
            f"  databases: {_flow(databases)}\n  db_users: {_flow(db_users)}\n{_lines(extra, '  ')}")


def allow_rule(rule_id: str, principals: Sequence[str], databases: Sequence[str] = ("orders-prod",),
               db_users: Sequence[str] = ("orders_app",)) -> str:
    """One ``effect: allow`` rule, as a YAML list item."""
    return rule(rule_id, principals, databases, db_users)


def policy_text(databases: Sequence[str], rules: Sequence[str] = (), more: str = "") -> str:
    """``version: 1`` with ``databases`` (see :func:`database`) and ``rules`` (see :func:`rule`),
    the rules last unless ``more`` (more top-level keys) follows them."""
    rule_block = "rules:\n" + textwrap.indent("".join(rules), "  ") if rules else "rules: []\n"
    return f"version: 1\ndatabases:\n{''.join(databases)}{rule_block}{_lines(more, '')}"


def one_database_policy(name: str = "orders-prod", *, engine: str = "postgres", region: str = "us-east-1",
                        kind: str = "instance", identifier: str | None = None,
                        users: str = "orders_app: {auth: iam, tier: service-user}", extra: str = "",
                        rules: Sequence[str] = (), more: str = "") -> str:
    """``version: 1`` with one database and ``rules`` (see :func:`allow_rule`). ``extra``: more keys
    of the database (YAML lines, e.g. ``host:``/``port:``); ``more``: more top-level keys."""
    return policy_text([database(name, engine=engine, region=region, kind=kind, identifier=identifier,
                                 users=users, extra=extra)], rules, more)


POLICY = policy_text(
    [database(users=ORDERS_USERS + "\netl_legacy:   {auth: kerberos}", extra="dbname: orders"),
     database("reports", identifier="reports-db", users="reporter: {auth: iam}",
              extra="host: reports.internal.example\nport: 6432"),
     database("ghost", identifier="ghost-db", users="ghost_app: {auth: iam}")],
    [rule("orders-api", [f"arn:aws:iam::{ACCT}:role/orders-api-*"],
          extra="conditions:\n  org_ids: [o-abc123def4]\n  source_ips: [10.0.0.0/8]"),
     rule("dba", [f"arn:aws:iam::{ACCT}:role/dba-*", "arn:aws:iam::444455556666:role/auditor"], ["*"], ["*"]),
     rule("no-owner-for-ci", [f"arn:aws:iam::{ACCT}:role/dba-ci"], ["*"], ["orders_owner"], effect="deny")],
)

ORDERS_POLICY = POLICY


class PolicyEndpoints:
    """An endpoint source that reads no RDS: each database is at its policy's host and port."""

    def resolve(self, database: RdsDatabase) -> Endpoint:
        assert database.host is not None and database.port is not None, f"{database.identifier}: no host and port"
        return Endpoint(host=database.host, port=database.port, resource_id=None)
