"""What ``rdsvend discover`` found, and its three renderings (yaml, json, table). Pure.

The yaml is a ``databases:`` block of the access policy, ready to paste: each database with
its engine, region, account, identifier and resource id, ``users: {}`` left for the operator
to fill, the signer role as a comment, and ``reader_role`` when the role discover read the
account through is not already the policy's ``defaults.reader_role_name``.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from chalicelib.aws.arn import role_arn
from chalicelib.aws.dsql import DsqlCluster
from chalicelib.aws.rds import resource_from_item

__all__ = ["FoundDatabase", "AccountResult", "Discovery", "found_from_item", "found_from_dsql", "to_json",
           "to_yaml", "to_table",
           "policy_engine", "FLAGS"]

Kind = Literal["instance", "cluster", "proxy"]

#: Every flag discover may set, in the order it prints them.
FLAGS = ("iam_auth_off", "kerberos_domain", "engine_without_iam_auth", "publicly_accessible", "not_active")

#: RDS engine (or proxy engine family) -> the access policy's engine; others have no IAM auth
_ENGINES = {
    "postgres": "postgres", "aurora-postgresql": "postgres", "postgresql": "postgres",
    "mysql": "mysql", "aurora-mysql": "mysql", "aurora": "mysql",
    "mariadb": "mariadb",
    "dsql": "dsql",  # Aurora DSQL: IAM tokens only
}
_NAME_CHARS = re.compile(r"[^a-z0-9-]+")


@dataclass(frozen=True)
class FoundDatabase:
    account: str
    region: str
    kind: Kind
    identifier: str
    engine: str  # as RDS names it (postgres, aurora-mysql, POSTGRESQL for a proxy ...)
    host: str | None
    port: int | None
    resource_id: str | None
    iam_auth: bool | None  # None: RDS did not say
    flags: tuple[str, ...] = ()
    #: a proxy's target, as the access policy names it: ("target_instance" | "target_cluster", id)
    target: tuple[str, str] | None = None
    #: a proxy's way in to its target: iam (DefaultAuthScheme IAM_AUTH) or secrets
    target_auth: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "account": self.account, "region": self.region, "kind": self.kind, "identifier": self.identifier,
            "engine": self.engine, "host": self.host, "port": self.port, "resource_id": self.resource_id,
            "iam_auth": self.iam_auth, "flags": list(self.flags)}
        if self.kind == "proxy":
            out["target"] = dict([self.target]) if self.target else None
            out["target_auth"] = self.target_auth
        return out


@dataclass(frozen=True)
class AccountResult:
    account: str
    status: Literal["ok", "error"]
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"account": self.account, "status": self.status, "error": self.error}


@dataclass(frozen=True)
class Discovery:
    accounts: tuple[AccountResult, ...]
    databases: tuple[FoundDatabase, ...]
    role_name: str = "rdsvend-reader"  # the role read through in each account
    default_role_name: str | None = None  # the policy's defaults.reader_role_name, if any
    partition: str = "aws"
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return all(a.status == "ok" for a in self.accounts)


def policy_engine(engine: str) -> str | None:
    """The access policy's engine for an RDS engine; None when it has no IAM authentication."""
    return _ENGINES.get(engine.lower())


def found_from_item(account: str, region: str, kind: Kind, item: dict[str, Any]) -> FoundDatabase:
    """One item of a Describe answer, with its flags."""
    resource = resource_from_item(kind, item)
    engine = str(resource.engine or "")
    port = resource.port
    if kind == "proxy" and port is None:
        family = policy_engine(engine)
        port = 5432 if family == "postgres" else 3306 if family else None
    flags = []
    if resource.iam_auth_enabled is False or (kind == "proxy" and resource.iam_auth_enabled is None):
        flags.append("iam_auth_off")
    if item.get("DomainMemberships"):
        flags.append("kerberos_domain")
    if policy_engine(engine) is None:
        flags.append("engine_without_iam_auth")
    if item.get("PubliclyAccessible"):
        flags.append("publicly_accessible")
    target_auth = None
    if kind == "proxy":
        target_auth = "iam" if str(item.get("DefaultAuthScheme") or "").upper() == "IAM_AUTH" else "secrets"
    return FoundDatabase(account=account, region=region, kind=kind, identifier=resource.identifier,
                         engine=engine, host=resource.host, port=port, resource_id=resource.resource_id,
                         iam_auth=resource.iam_auth_enabled, flags=tuple(flags), target_auth=target_auth)


def proxy_target_of(targets: list[dict[str, Any]]) -> tuple[str, str] | None:
    """The policy's target key and identifier from a ``DescribeDBProxyTargets`` answer."""
    for target in targets:
        kind = {"RDS_INSTANCE": "target_instance", "TRACKED_CLUSTER": "target_cluster"}.get(str(target.get("Type")))
        if kind and target.get("RdsResourceId"):
            return kind, str(target["RdsResourceId"])
    return None


def found_from_dsql(account: str, cluster: DsqlCluster) -> FoundDatabase:
    """An Aurora DSQL cluster: always IAM-authenticated; flagged when it is not ACTIVE."""
    return FoundDatabase(account=account, region=cluster.region, kind="cluster", identifier=cluster.identifier,
                         engine="dsql", host=cluster.host, port=5432, resource_id=None, iam_auth=True,
                         flags=() if cluster.active else ("not_active",))


def to_json(discovery: Discovery) -> str:
    out: dict[str, Any] = {"accounts": [a.to_dict() for a in discovery.accounts],
                           "databases": [d.to_dict() for d in discovery.databases]}
    if discovery.notes:
        out["notes"] = list(discovery.notes)
    return json.dumps(out, indent=2)


def _names(databases: tuple[FoundDatabase, ...]) -> list[str]:
    """A policy name per database ([a-z0-9-]{1,63}), unique: the identifier, else with the
    account's last digits, else numbered."""
    taken: set[str] = set()
    names = []
    for db in databases:
        base = _NAME_CHARS.sub("-", db.identifier.lower()).strip("-")[:63] or "database"
        name = base
        if name in taken:
            name = f"{base[:58]}-{db.account[-4:]}"
        counter = 2
        while name in taken:
            name = f"{base[:55]}-{db.account[-4:]}-{counter}"
            counter += 1
        taken.add(name)
        names.append(name)
    return names


def to_yaml(discovery: Discovery) -> str:
    """The ``databases:`` block to paste into an access policy."""
    lines = [f"# rdsvend discover: {len(discovery.databases)} databases in "
             f"{sum(a.status == 'ok' for a in discovery.accounts)} accounts, read through role "
             f"'{discovery.role_name}'"]
    for result in discovery.accounts:
        if result.status != "ok":
            lines.append(f"# account {result.account} could not be read: {result.error}")
    lines.extend(f"# {note}" for note in discovery.notes)
    explicit_reader = discovery.role_name != discovery.default_role_name
    if not explicit_reader:
        lines.append(f"# each account is read through defaults.reader_role_name ({discovery.role_name})")
    lines.append("databases:")
    usable = [db for db in discovery.databases if policy_engine(db.engine) is not None]
    for db in discovery.databases:
        if policy_engine(db.engine) is None:
            lines.append(f"  # skipped {db.kind} '{db.identifier}' ({db.account}, {db.region}): engine "
                         f"'{db.engine}' has no IAM database authentication")
    for name, db in zip(_names(tuple(usable)), usable, strict=True):
        notes = [f for f in db.flags if f != "engine_without_iam_auth"]
        lines.append(f"  {name}:" + (f"  # {', '.join(notes)}" if notes else ""))
        lines.append(f"    engine: {policy_engine(db.engine)}")
        lines.append(f"    region: {db.region}")
        lines.append(f'    account: "{db.account}"')
        lines.append(f"    {db.kind}: {db.identifier}")
        if db.resource_id:
            lines.append(f"    resource_id: {db.resource_id}")
        if db.kind == "proxy":
            lines.append(f"    {db.target[0]}: {db.target[1]}" if db.target else
                         "    # target_instance: NAME  # no target registered: name the instance or cluster behind it")
            lines.append(f"    target_auth: {db.target_auth}")
        lines.append(f"    # signer_role: {role_arn(db.account, 'rdsvend-signer', discovery.partition)}")
        if explicit_reader:
            lines.append(f"    reader_role: {role_arn(db.account, discovery.role_name, discovery.partition)}")
        if db.engine == "dsql":
            lines.append("    users: {}  # admin: {auth: iam} (DbConnectAdmin), or custom roles: app: {auth: iam}")
        else:
            lines.append("    users: {}  # name the db users: app_user: {auth: iam}")
    if not usable:
        lines.append("  {}")
    return "\n".join(lines) + "\n"


def to_table(discovery: Discovery) -> str:
    header = ("ACCOUNT", "REGION", "KIND", "IDENTIFIER", "ENGINE", "ENDPOINT", "RESOURCE_ID", "IAM", "FLAGS")
    rows = [header]
    for db in discovery.databases:
        endpoint = f"{db.host}:{db.port}" if db.host else "-"
        iam = "on" if db.iam_auth else "off" if db.iam_auth is False else "?"
        rows.append((db.account, db.region, db.kind, db.identifier, db.engine, endpoint, db.resource_id or "-",
                     iam, ",".join(db.flags) or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    out = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    out.append("")
    for result in discovery.accounts:
        out.append(f"account {result.account}: " + ("ok" if result.status == "ok" else f"error: {result.error}"))
    out.extend(f"note: {note}" for note in discovery.notes)
    return "\n".join(out) + "\n"
