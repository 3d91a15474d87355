"""The local stack's world file (``policies/world.yaml``) as frozen dataclasses.

The world says what the local AWS holds before anything runs: an organization with OUs and
SCPs, accounts with roles, users and RDS instances, and which of them plays the service,
the signer and the callers. :mod:`devtools.local.aws` seeds moto from it.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from chalicelib.aws.arn import ACCOUNT_ID, ORG_ID, REGION
from chalicelib.errors import RdsvendError
from chalicelib.policy.password_users import ROTATIONS

__all__ = [
    "WorldError",
    "Scp",
    "Unit",
    "Organization",
    "Role",
    "User",
    "DbUserSpec",
    "DomainSpec",
    "DatabaseSpec",
    "DsqlClusterSpec",
    "DirectorySpec",
    "ProxySpec",
    "Account",
    "CallerRef",
    "World",
    "load_world",
    "load_world_text",
    "DEFAULT_WORLD",
]

#: The world file shipped in the repository.
DEFAULT_WORLD = Path(__file__).resolve().parents[2] / "policies" / "world.yaml"

_ACCOUNT = ACCOUNT_ID
_ORG_ID = ORG_ID
_NAME = re.compile(r"[\w+=,.@-]{1,64}")
_DB_ID = re.compile(r"[a-z][a-z0-9-]{0,62}")
_PG_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_FQDN = re.compile(r"(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+")
_SHORT = re.compile(r"[A-Z0-9][A-Z0-9-]{0,14}")
_POLICY_ARN = re.compile(r"arn:aws:iam::(aws|\d{12}):policy/([\w+=,.@-]+/)*[\w+=,.@-]{1,128}")


class WorldError(RdsvendError):
    """The world file is invalid. Names the file and the field."""

    def __init__(self, message: str, *, source: str = "<world>", field: str | None = None) -> None:
        self.source = source
        self.field = field
        where = source if field is None else f"{source}, field '{field}'"
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Scp:
    name: str
    description: str
    document: Mapping[str, Any]


@dataclass(frozen=True)
class Unit:
    name: str
    accounts: tuple[str, ...]
    scps: tuple[str, ...]


@dataclass(frozen=True)
class Organization:
    id: str
    management_account: str
    management_name: str
    units: tuple[Unit, ...]
    scps: Mapping[str, Scp]

    def unit_of(self, account: str) -> Unit | None:
        return next((u for u in self.units if account in u.accounts), None)


@dataclass(frozen=True)
class Role:
    name: str
    trust: Mapping[str, Any]  # the Principal element of the trust policy
    policies: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: databases whose vendable dbuser ARNs get an rds-db:connect policy at seed time
    rds_connect: tuple[str, ...] = ()
    #: ARNs of managed policies to attach (AWS managed ones included)
    managed_policies: tuple[str, ...] = ()
    #: DSQL clusters (of the same account) this role may dsql:DbConnect and dsql:DbConnectAdmin to
    dsql_connect: tuple[str, ...] = ()


@dataclass(frozen=True)
class User:
    name: str
    access_key: bool
    policies: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class DbUserSpec:
    name: str
    auth: str  # iam | kerberos | password
    tier: str | None = None
    #: a password user's rotation (``single-user`` | ``alternating-users``; None: single-user)
    rotation: str | None = None


@dataclass(frozen=True)
class DomainSpec:
    """The directory an instance is joined to, and the IAM role RDS reaches it through."""

    directory: str  # a directory's name in the same account
    iam_role: str  # a role's name in the same account


@dataclass(frozen=True)
class DirectorySpec:
    """An AWS Managed Microsoft AD of the account's Directory Service."""

    name: str  # the fully qualified domain name
    short_name: str


@dataclass(frozen=True)
class DatabaseSpec:
    identifier: str
    engine: str
    engine_version: str
    instance_class: str
    dbname: str
    users: Mapping[str, DbUserSpec]
    setup_sql: tuple[str, ...] = ()
    domain: DomainSpec | None = None
    #: RDS's limit of new IAM logins per second on this instance (past it: ThrottlingException)
    iam_auth_logins_per_second: int = 200
    #: the log types the instance exports to CloudWatch Logs (``iam-db-auth-error`` by default)
    log_exports: tuple[str, ...] = ("iam-db-auth-error",)

    def iam_users(self) -> list[str]:
        return [u.name for u in self.users.values() if u.auth == "iam"]


@dataclass(frozen=True)
class ProxySpec:
    """An RDS Proxy in front of one of the account's databases (the local stack's proxy front).

    ``role``: the proxy's own role (a role of the same account); the proxy signs its logins to
    the target with it (``auth: iam``, ``DefaultAuthScheme: IAM_AUTH``), so the role needs
    ``rds-db:connect`` on the target's users (``rds_connect: [TARGET]`` on the role).
    """

    name: str
    target: str  # a database identifier of the same account
    role: str
    auth: str = "iam"


@dataclass(frozen=True)
class DsqlClusterSpec:
    """An Aurora DSQL cluster: created in the local DSQL API, served by a local PostgreSQL that
    takes only DSQL tokens. ``roles``: database role -> the IAM role (same account) it is mapped
    to with ``AWS IAM GRANT`` at start; ``setup_sql`` runs once the roles exist."""

    name: str
    roles: Mapping[str, str]
    setup_sql: tuple[str, ...] = ()


@dataclass(frozen=True)
class Account:
    id: str
    name: str
    roles: Mapping[str, Role] = field(default_factory=dict)
    users: Mapping[str, User] = field(default_factory=dict)
    databases: Mapping[str, DatabaseSpec] = field(default_factory=dict)
    directories: Mapping[str, DirectorySpec] = field(default_factory=dict)
    proxies: Mapping[str, ProxySpec] = field(default_factory=dict)
    dsql_clusters: Mapping[str, DsqlClusterSpec] = field(default_factory=dict)


@dataclass(frozen=True)
class CallerRef:
    account: str
    user: str

    @property
    def arn(self) -> str:
        return f"arn:aws:iam::{self.account}:user/{self.user}"


@dataclass(frozen=True)
class World:
    region: str
    organization: Organization
    accounts: Mapping[str, Account]
    service_account: str
    execution_role: str
    signer_role: str
    allowed_caller: CallerRef
    denied_caller: CallerRef
    source: str = "<world>"
    #: a person in the service account who runs the canary, doctor and discover
    operator: CallerRef | None = None
    #: a person who approves just-in-time grants (``grant: required`` rules of the local policy)
    approver_caller: CallerRef | None = None

    @property
    def execution_role_arn(self) -> str:
        return f"arn:aws:iam::{self.service_account}:role/{self.execution_role}"

    @property
    def signer_role_arn(self) -> str:
        return f"arn:aws:iam::{self.service_account}:role/{self.signer_role}"

    def databases(self) -> list[tuple[Account, DatabaseSpec]]:
        return [(a, d) for a in self.accounts.values() for d in a.databases.values()]

    def database(self, identifier: str) -> tuple[Account, DatabaseSpec]:
        for account, db in self.databases():
            if db.identifier == identifier:
                return account, db
        raise KeyError(identifier)

    def proxies(self) -> list[tuple[Account, ProxySpec]]:
        return [(a, p) for a in self.accounts.values() for p in a.proxies.values()]

    def dsql_clusters(self) -> list[tuple[Account, DsqlClusterSpec]]:
        return [(a, c) for a in self.accounts.values() for c in a.dsql_clusters.values()]

    def member_accounts(self) -> list[Account]:
        mgmt = self.organization.management_account
        return [a for a in self.accounts.values() if a.id != mgmt]


def load_world(path: str | Path = DEFAULT_WORLD) -> World:
    """Read and validate a world file; :class:`WorldError` names the field that is wrong."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise WorldError(f"cannot read the file ({exc.strerror})", source=str(path)) from exc
    return load_world_text(text, source=str(path))


def load_world_text(text: str, source: str = "<world>") -> World:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise WorldError(f"not valid YAML ({exc.__class__.__name__})", source=source) from exc
    return _Parser(source).world(data)


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, message: str, field_: str) -> WorldError:
        return WorldError(message, source=self.source, field=field_)

    def mapping(self, value: Any, field_: str, allowed: AbstractSet[str],
                required: AbstractSet[str] = frozenset()) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail("must be a mapping", field_)
        for key in value:
            if key not in allowed:
                raise self.fail(f"unknown key '{key}'", field_)
        for key in required:
            if key not in value:
                raise self.fail(f"missing key '{key}'", field_)
        return value

    def entries(self, value: Any, field_: str) -> dict[str, Any]:
        """A mapping of names to entries (absent or null: none); anything else is refused."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail("must be a mapping of names", field_)
        return value

    def string(self, value: Any, field_: str, pattern: re.Pattern[str] | None = None) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail("must be a non-empty string", field_)
        if pattern is not None and not pattern.fullmatch(value):
            raise self.fail(f"invalid value '{value}'", field_)
        return value

    def strings(self, value: Any, field_: str, pattern: re.Pattern[str] | None = None) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise self.fail("must be a list", field_)
        return tuple(self.string(v, f"{field_}[{i}]", pattern) for i, v in enumerate(value))

    def documents(self, value: Any, field_: str) -> dict[str, Mapping[str, Any]]:
        value = self.entries(value, field_)
        out: dict[str, Mapping[str, Any]] = {}
        for name, doc in value.items():
            self.string(name, field_, _NAME)
            if not isinstance(doc, dict) or "Statement" not in doc:
                raise self.fail("must be an IAM policy document with a 'Statement'", f"{field_}.{name}")
            out[name] = doc
        return out

    def world(self, data: Any) -> World:
        top = self.mapping(data, "world", {"version", "region", "organization", "accounts", "service", "callers",
                                           "operator"},
                           {"version", "region", "organization", "accounts", "service", "callers"})
        if top["version"] != 1:
            raise self.fail(f"unsupported version '{top['version']}'", "version")
        region = self.string(top["region"], "region", REGION)
        accounts = self.accounts(top["accounts"])
        org = self.organization(top["organization"], accounts)
        svc = self.mapping(top["service"], "service", {"account", "execution_role", "signer_role"},
                           {"account", "execution_role", "signer_role"})
        service_account = self.string(svc["account"], "service.account", _ACCOUNT)
        if service_account not in accounts:
            raise self.fail(f"unknown account '{service_account}'", "service.account")
        if service_account == org.management_account:
            raise self.fail("the service must live in a member account", "service.account")
        roles = accounts[service_account].roles
        for key in ("execution_role", "signer_role"):
            if svc[key] not in roles:
                raise self.fail(f"no role '{svc[key]}' in account {service_account}", f"service.{key}")
        callers = self.mapping(top["callers"], "callers", {"allowed", "denied", "approver"}, {"allowed", "denied"})
        refs = {k: self.caller(v, f"callers.{k}", accounts) for k, v in callers.items()}
        operator = self.caller(top["operator"], "operator", accounts) if "operator" in top else None
        if operator is not None and operator.account != service_account:
            raise self.fail(f"the operator must be in the service account {service_account}", "operator.account")
        return World(region=region, organization=org, accounts=accounts, service_account=service_account,
                     execution_role=svc["execution_role"], signer_role=svc["signer_role"],
                     allowed_caller=refs["allowed"], denied_caller=refs["denied"], source=self.source,
                     operator=operator, approver_caller=refs.get("approver"))

    def caller(self, value: Any, field_: str, accounts: Mapping[str, Account]) -> CallerRef:
        spec = self.mapping(value, field_, {"account", "user"}, {"account", "user"})
        account = self.string(spec["account"], f"{field_}.account", _ACCOUNT)
        user = self.string(spec["user"], f"{field_}.user", _NAME)
        if account not in accounts or user not in accounts[account].users:
            raise self.fail(f"no user '{user}' in account '{account}'", field_)
        if not accounts[account].users[user].access_key:
            raise self.fail(f"user '{user}' has no access key", field_)
        return CallerRef(account, user)

    def organization(self, value: Any, accounts: Mapping[str, Account]) -> Organization:
        spec = self.mapping(value, "organization", {"id", "management_account", "units", "scps"},
                            {"id", "management_account", "units"})
        org_id = self.string(spec["id"], "organization.id", _ORG_ID)
        mgmt = self.mapping(spec["management_account"], "organization.management_account",
                            {"id", "name"}, {"id"})
        mgmt_id = self.string(mgmt["id"], "organization.management_account.id", _ACCOUNT)
        scps: dict[str, Scp] = {}
        for name, raw in self.entries(spec.get("scps"), "organization.scps").items():
            f = f"organization.scps.{name}"
            self.string(name, f, _NAME)
            item = self.mapping(raw, f, {"description", "document"}, {"document"})
            doc = item["document"]
            if not isinstance(doc, dict) or "Statement" not in doc:
                raise self.fail("must be an IAM policy document with a 'Statement'", f"{f}.document")
            scps[name] = Scp(name, str(item.get("description") or name), doc)
        units = []
        placed: set[str] = set()
        for name, raw in self.entries(spec["units"], "organization.units").items():
            f = f"organization.units.{name}"
            self.string(name, f, _NAME)
            item = self.mapping(raw, f, {"accounts", "scps"}, {"accounts"})
            members = self.strings(item["accounts"], f"{f}.accounts", _ACCOUNT)
            for acct in members:
                if acct not in accounts:
                    raise self.fail(f"unknown account '{acct}'", f"{f}.accounts")
                if acct == mgmt_id:
                    raise self.fail("the management account stays under the root", f"{f}.accounts")
                if acct in placed:
                    raise self.fail(f"account '{acct}' is in two units", f"{f}.accounts")
                placed.add(acct)
            unit_scps = self.strings(item.get("scps") or [], f"{f}.scps")
            for s in unit_scps:
                if s not in scps:
                    raise self.fail(f"unknown SCP '{s}'", f"{f}.scps")
            units.append(Unit(name, members, unit_scps))
        for acct in accounts:
            if acct != mgmt_id and acct not in placed:
                raise self.fail(f"account '{acct}' is in no unit", "organization.units")
        return Organization(org_id, mgmt_id, str(mgmt.get("name") or "management"), tuple(units), scps)

    def roles(self, value: Any, f: str) -> dict[str, Role]:
        roles = {}
        for name, given in self.entries(value, f"{f}.roles").items():
            rf = f"{f}.roles.{name}"
            self.string(name, rf, _NAME)
            r = self.mapping(given, rf, {"trust", "policies", "rds_connect", "managed_policies", "dsql_connect"},
                             {"trust"})
            if not isinstance(r["trust"], dict) or not r["trust"]:
                raise self.fail("must be a trust policy Principal mapping", f"{rf}.trust")
            roles[name] = Role(name, r["trust"], self.documents(r.get("policies"), f"{rf}.policies"),
                               self.strings(r.get("rds_connect") or [], f"{rf}.rds_connect", _DB_ID),
                               self.strings(r.get("managed_policies") or [], f"{rf}.managed_policies",
                                            _POLICY_ARN),
                               self.strings(r.get("dsql_connect") or [], f"{rf}.dsql_connect", _DB_ID))
        return roles

    def accounts(self, value: Any) -> dict[str, Account]:
        out = {}
        for key, raw in self.entries(value, "accounts").items():
            acct = str(key)
            out[acct] = self.account(acct, raw)
        for account in out.values():
            self.check_role_targets(account)
        return out

    def account(self, acct: str, raw: Any) -> Account:
        f = f"accounts.{acct}"
        self.string(acct, f, _ACCOUNT)
        spec = self.mapping(raw, f, {"name", "roles", "users", "databases", "directories", "proxies",
                                     "dsql_clusters"}, {"name"})
        roles = self.roles(spec.get("roles"), f)
        users = {name: self.user(name, u, f"{f}.users.{name}")
                 for name, u in self.entries(spec.get("users"), f"{f}.users").items()}
        dbs = {name: self.database(name, d, f"{f}.databases.{name}")
               for name, d in self.entries(spec.get("databases"), f"{f}.databases").items()}
        directories = {name: self.directory(name, d, f"{f}.directories.{name}")
                       for name, d in self.entries(spec.get("directories"), f"{f}.directories").items()}
        for name, spec_db in dbs.items():
            df = f"{f}.databases.{name}.domain"
            if spec_db.domain is not None and spec_db.domain.directory not in directories:
                raise self.fail(f"no directory '{spec_db.domain.directory}' in account {acct}", f"{df}.directory")
            if spec_db.domain is not None and spec_db.domain.iam_role not in roles:
                raise self.fail(f"no role '{spec_db.domain.iam_role}' in account {acct}", f"{df}.iam_role")
        proxies = {name: self.proxy(name, p, f"{f}.proxies.{name}", dbs, roles)
                   for name, p in self.entries(spec.get("proxies"), f"{f}.proxies").items()}
        clusters = {name: self.dsql_cluster(name, c, f"{f}.dsql_clusters.{name}", roles)
                    for name, c in self.entries(spec.get("dsql_clusters"), f"{f}.dsql_clusters").items()}
        return Account(acct, self.string(spec["name"], f"{f}.name"), roles, users, dbs, directories,
                       proxies=proxies, dsql_clusters=clusters)

    def user(self, name: str, value: Any, uf: str) -> User:
        self.string(name, uf, _NAME)
        u = self.mapping(value or {}, uf, {"access_key", "policies"})
        return User(name, bool(u.get("access_key", False)), self.documents(u.get("policies"), f"{uf}.policies"))

    def directory(self, name: str, value: Any, df: str) -> DirectorySpec:
        self.string(name, df, _FQDN)
        d = self.mapping(value or {}, df, {"short_name"}, {"short_name"})
        return DirectorySpec(name, self.string(d["short_name"], f"{df}.short_name", _SHORT))

    def check_role_targets(self, account: Account) -> None:
        """Every database, proxy and DSQL cluster a role may connect to is in the role's account."""
        for role in account.roles.values():
            for db in role.rds_connect:
                if db not in account.databases and db not in account.proxies:
                    raise self.fail(f"no database '{db}' in account {account.id}",
                                    f"accounts.{account.id}.roles.{role.name}.rds_connect")
            for cluster in role.dsql_connect:
                if cluster not in account.dsql_clusters:
                    raise self.fail(f"no DSQL cluster '{cluster}' in account {account.id}",
                                    f"accounts.{account.id}.roles.{role.name}.dsql_connect")

    def database(self, name: str, value: Any, f: str) -> DatabaseSpec:
        self.string(name, f, _DB_ID)
        spec = self.mapping(value, f, {"engine", "engine_version", "instance_class", "dbname", "users", "setup_sql",
                                       "domain", "iam_auth_logins_per_second", "log_exports"},
                            {"engine", "dbname", "users"})
        if spec["engine"] not in ("postgres", "mariadb"):
            raise self.fail(f"the local stack runs postgres or mariadb, not '{spec['engine']}'", f"{f}.engine")
        users = {}
        for uname, given in self.entries(spec["users"], f"{f}.users").items():
            uf = f"{f}.users.{uname}"
            self.string(uname, uf, _PG_NAME)
            u = self.mapping(given, uf, {"auth", "tier", "rotation"}, {"auth"})
            if u["auth"] not in ("iam", "kerberos", "password"):
                raise self.fail(f"invalid value '{u['auth']}'", f"{uf}.auth")
            if u.get("tier") not in (None, "service-user", "service-admin"):
                raise self.fail(f"invalid value '{u['tier']}'", f"{uf}.tier")
            users[uname] = DbUserSpec(uname, u["auth"], u.get("tier"), self.rotation(u, uf))
        return DatabaseSpec(
            identifier=name,
            engine=spec["engine"],
            engine_version=str(spec.get("engine_version") or ("15.4" if spec["engine"] == "postgres" else "10.11.9")),
            instance_class=str(spec.get("instance_class") or "db.t4g.micro"),
            dbname=self.string(spec["dbname"], f"{f}.dbname", _PG_NAME),
            users=users,
            setup_sql=self.strings(spec.get("setup_sql") or [], f"{f}.setup_sql"),
            domain=self.domain(spec.get("domain"), f"{f}.domain"),
            iam_auth_logins_per_second=self.rate(spec.get("iam_auth_logins_per_second", 200),
                                                 f"{f}.iam_auth_logins_per_second"),
            log_exports=self.strings(spec.get("log_exports", ["iam-db-auth-error"]), f"{f}.log_exports",
                                     re.compile(r"iam-db-auth-error|postgresql|upgrade|error|general|slowquery|audit")),
        )

    def proxy(self, name: str, value: Any, f: str, dbs: Mapping[str, DatabaseSpec],
              roles: Mapping[str, Role]) -> ProxySpec:
        self.string(name, f, _DB_ID)
        spec = self.mapping(value, f, {"target", "role", "auth"}, {"target", "role"})
        target = self.string(spec["target"], f"{f}.target", _DB_ID)
        if target not in dbs:
            raise self.fail(f"no database '{target}' in the same account", f"{f}.target")
        if name in dbs:
            raise self.fail(f"'{name}' is also a database's name", f)
        role = self.string(spec["role"], f"{f}.role", _NAME)
        if role not in roles:
            raise self.fail(f"no role '{role}' in the same account", f"{f}.role")
        auth = spec.get("auth", "iam")
        if auth != "iam":
            raise self.fail(f"the local stack's proxies log in to their target with iam, not '{auth}'", f"{f}.auth")
        return ProxySpec(name, target, role, auth)

    def dsql_cluster(self, name: str, value: Any, f: str, roles: Mapping[str, Role]) -> DsqlClusterSpec:
        self.string(name, f, _DB_ID)
        spec = self.mapping(value or {}, f, {"roles", "setup_sql"})
        mapped: dict[str, str] = {}
        for pg_role, grant in self.entries(spec.get("roles"), f"{f}.roles").items():
            rf = f"{f}.roles.{pg_role}"
            self.string(pg_role, rf, _PG_NAME)
            if pg_role == "admin":
                raise self.fail("'admin' is DSQL's own role (signed with DbConnectAdmin): it needs no grant", rf)
            item = self.mapping(grant, rf, {"grant"}, {"grant"})
            role = self.string(item["grant"], f"{rf}.grant", _NAME)
            if role not in roles:
                raise self.fail(f"no role '{role}' in the cluster's account", f"{rf}.grant")
            mapped[pg_role] = role
        return DsqlClusterSpec(name, mapped, self.strings(spec.get("setup_sql") or [], f"{f}.setup_sql"))

    def rotation(self, user: Mapping[str, Any], f: str) -> str | None:
        """A password user's ``rotation`` (as the access policy takes it); no other user has one."""
        if "rotation" not in user:
            return None
        if user["auth"] != "password":
            raise self.fail(f"'rotation' is only for auth: password users, not auth: {user['auth']}", f"{f}.rotation")
        if user["rotation"] not in ROTATIONS:
            raise self.fail(f"invalid rotation '{str(user['rotation'])[:40]}' (expected single-user or "
                            "alternating-users)", f"{f}.rotation")
        return str(user["rotation"])

    def rate(self, value: Any, f: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100000:
            raise self.fail(f"invalid value '{str(value)[:40]}': a whole number of logins per second, 1..100000", f)
        return value

    def domain(self, value: Any, f: str) -> DomainSpec | None:
        if value is None:
            return None
        spec = self.mapping(value, f, {"directory", "iam_role"}, {"directory", "iam_role"})
        return DomainSpec(self.string(spec["directory"], f"{f}.directory", _FQDN),
                          self.string(spec["iam_role"], f"{f}.iam_role", _NAME))
