"""Load and strictly validate an access policy file.

Every problem is a :class:`PolicyLoadError` naming the file, the rule (when there is one)
and the field. Unknown keys, duplicate keys and rule ids, rules naming nothing declared,
bad patterns, CIDRs and ARNs never load.

Databases in other accounts: a database's ``account`` is its own key, else its signer
role's account, else the service's own. ``service_account`` tells the loader which account
the service runs in (the service passes its own at run time; ``rdsvend policy check`` takes
``--service-account``). Without it the loader cannot tell which databases are foreign, so it
checks only what it can judge: roles in the database's declared account, and shapes.
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, cast

import yaml

from chalicelib.aws.arn import (  # the AWS name formats, also importable from here
    ACCOUNT_ID,
    DSQL_CLUSTER_ID,
    ORG_ID,
    REGION,
    ROLE_ARN,
    ROLE_NAME,
    dsql_host,
)
from chalicelib.errors import PolicyLoadError
from chalicelib.policy.bounds import POLICY_LIMITS
from chalicelib.policy.model import (
    DEFAULT_TTL_SECONDS,
    DSQL_ADMIN,
    DSQL_ADMIN_ACTION,
    DSQL_CONNECT_ACTION,
    MAX_TTL_SECONDS,
    AccessPolicy,
    CanarySettings,
    Conditions,
    Database,
    DbUser,
    Kind,
    Rule,
)
from chalicelib.policy.names import NameIndex
from chalicelib.policy.password_users import password_settings
from chalicelib.policy.placement import PLACEMENT_KEYS, placement
from chalicelib.policy.proxy_target import PROXY_TARGET_KEYS, proxy_target
from chalicelib.policy.strict_yaml import OversizedValue, strict_yaml_load

__all__ = ["load_policy_file", "load_policy_text", "MAX_POLICY_BYTES"]

MAX_POLICY_BYTES = 4 * 1024 * 1024

DATABASE_NAME = re.compile(r"[a-z0-9-]{1,63}")
RDS_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,62}")
HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*\.?")
DB_USER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$.-]{0,62}")
DB_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$-]{0,62}")
RULE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
NAME_PATTERN = re.compile(r"[A-Za-z0-9_$.*?-]{1,128}")
# arn:PARTITION:SERVICE::ACCOUNT:RESOURCE, each part allowed to carry * and ?
PRINCIPAL_ARN = re.compile(
    r"arn:(?P<partition>[a-z*?-]{1,32}):(?P<service>iam|sts|[*?][a-z*?]*):"
    r":(?P<account>[0-9*?]{1,12}):(?P<resource>[\w+=,.@/*?-]{1,1024})"
)

TOP_KEYS = {"version", "defaults", "databases", "rules", "canary"}
DEFAULTS_KEYS = {"reader_role_name"}
DATABASE_KEYS = {"engine", "region", "instance", "cluster", "proxy", "host", "port", "dbname",
                 "signer_role", "users"} | PLACEMENT_KEYS | PROXY_TARGET_KEYS
USER_KEYS = {"auth", "tier", "secret", "rotation", "action"}
RULE_KEYS = {"id", "effect", "principals", "databases", "db_users", "conditions", "grant", "approvers",
             "max_grant_seconds", "ttl_seconds"}
#: ``max_grant_seconds``: its default and its bounds (one minute to seven days)
DEFAULT_MAX_GRANT_SECONDS = 3600
MAX_GRANT_SECONDS_LIMIT = 7 * 86400
CONDITION_KEYS = {"org_ids", "source_ips"}
CANARY_KEYS = {"timeout_seconds", "concurrency", "ssl_root_cert"}

Engine = Literal["postgres", "mysql", "mariadb", "dsql"]
ENGINES = ("postgres", "mysql", "mariadb", "dsql")


def load_policy_file(path: str | Path, *, service_account: str | None = None) -> AccessPolicy:
    path = Path(path)
    source = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_POLICY_BYTES:
            raise PolicyLoadError(f"file is {size} bytes, more than {MAX_POLICY_BYTES}", source=source)
        raw = path.read_bytes()
    except PolicyLoadError:
        raise
    except OSError as exc:
        raise PolicyLoadError(f"cannot read file: {exc.strerror or exc}", source=source) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyLoadError("file is not UTF-8", source=source) from exc
    return load_policy_text(text, source=source, service_account=service_account)


def load_policy_text(text: str, source: str = "<policy>", *, service_account: str | None = None) -> AccessPolicy:
    """Parse and validate ``text``; ``service_account`` (12 digits, optional) is the account the
    service runs in, so databases outside it can be checked for a way to read them."""
    if service_account is not None and (not isinstance(service_account, str)
                                        or not ACCOUNT_ID.fullmatch(service_account)):
        raise PolicyLoadError(f"invalid service account '{_clip(str(service_account))}' (expected 12 digits)",
                              source=source)
    if len(text.encode("utf-8", "surrogatepass")) > MAX_POLICY_BYTES:
        raise PolicyLoadError(f"policy is larger than {MAX_POLICY_BYTES} bytes", source=source)
    try:
        data = strict_yaml_load(text, POLICY_LIMITS)  # refuses an oversized document while reading it
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise PolicyLoadError(f"invalid YAML: {exc.problem}{where}", source=source) from exc
    except (yaml.YAMLError, RecursionError) as exc:
        raise PolicyLoadError("invalid YAML", source=source) from exc
    return _Builder(source, service_account).policy(data)


class _Builder:
    def __init__(self, source: str, service_account: str | None = None) -> None:
        self.source = source
        self.service_account = service_account
        self.reader_role_name: str | None = None
        self.dsql_context = False  # True while a DSQL database's users are read
        self.names = _PolicyNames()

    def fail(self, message: str, *, rule: str | None = None, field: str | None = None) -> PolicyLoadError:
        return PolicyLoadError(message, source=self.source, rule=rule, field=field)

    # -- shapes -------------------------------------------------------------------------
    def mapping(self, value: Any, field: str, allowed: set[str], rule: str | None = None) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(f"must be a mapping, not {_kind(value)}", rule=rule, field=field)
        for key in value:
            if not isinstance(key, str):
                raise self.fail(f"key {key!r} must be a string", rule=rule, field=field)
            if key not in allowed:
                raise self.fail(f"unknown key '{key}'", rule=rule, field=field)
        return value

    def string(self, value: Any, field: str, pattern: re.Pattern[str] | None = None, *,
               rule: str | None = None, what: str = "value") -> str:
        if not isinstance(value, str):
            raise self.fail(f"must be a string, not {_kind(value)}", rule=rule, field=field)
        if pattern is not None and not pattern.fullmatch(value):
            raise self.fail(f"invalid {what} '{_clip(value)}'", rule=rule, field=field)
        return value

    def string_list(self, value: Any, field: str, *, rule: str | None) -> list[str]:
        if not isinstance(value, list) or not value:
            raise self.fail("must be a non-empty list of strings", rule=rule, field=field)
        for item in value:
            if not isinstance(item, str):
                raise self.fail(f"must hold strings, not {_kind(item)}", rule=rule, field=field)
        return value

    # -- document -----------------------------------------------------------------------
    def policy(self, data: Any) -> AccessPolicy:
        if data is None:
            raise self.fail("policy is empty")
        top = self.mapping(data, "policy", TOP_KEYS)
        version = top.get("version", 1)
        if version != 1 or isinstance(version, bool):
            raise self.fail(f"unsupported version '{_clip(str(version))}' (expected 1)", field="version")
        self.reader_role_name = self.defaults(top.get("defaults"))
        if "databases" not in top:
            raise self.fail("missing key 'databases'", field="databases")
        raw_dbs = self.mapping(top["databases"], "databases", set(top["databases"] or {})
                               if isinstance(top["databases"], dict) else set())
        if not raw_dbs:
            raise self.fail("must declare at least one database", field="databases")
        databases = {name: self.database(name, spec) for name, spec in raw_dbs.items()}
        raw_rules = top.get("rules")
        if raw_rules is None:
            raise self.fail("missing key 'rules'", field="rules")
        if not isinstance(raw_rules, list):
            raise self.fail(f"must be a list, not {_kind(raw_rules)}", field="rules")
        rules: list[Rule] = []
        seen: set[str] = set()
        for index, raw in enumerate(raw_rules):
            rule = self.rule(index, raw, databases)
            if rule.id in seen:
                raise self.fail(f"duplicate rule id '{rule.id}'", rule=rule.id, field="id")
            seen.add(rule.id)
            rules.append(rule)
        canary = self.canary(top.get("canary", {}))
        return AccessPolicy(databases=databases, rules=tuple(rules), canary=canary, source=self.source,
                            reader_role_name=self.reader_role_name)

    def defaults(self, raw: Any) -> str | None:
        if raw is None:
            return None
        spec = self.mapping(raw, "defaults", DEFAULTS_KEYS)
        name = spec.get("reader_role_name")
        if name is None:
            return None
        return self.string(name, "defaults.reader_role_name", ROLE_NAME, what="role name")

    def database(self, name: str, spec: Any) -> Database:
        field = f"databases.{_clip(name)}"
        if not DATABASE_NAME.fullmatch(name):
            raise self.fail(f"invalid database name '{_clip(name)}' (expected [a-z0-9-]{{1,63}})", field=field)
        spec = self.mapping(spec, field, DATABASE_KEYS)
        engine = self.string(spec.get("engine"), f"{field}.engine")
        if engine not in ENGINES:
            raise self.fail(f"invalid engine '{_clip(engine)}' (expected postgres, mysql, mariadb or dsql)",
                            field=f"{field}.engine")
        region = self.string(spec.get("region"), f"{field}.region", REGION, what="region")
        if engine == "dsql":
            return self.dsql_database(name, spec, field, region)
        kinds = [k for k in ("instance", "cluster", "proxy") if k in spec]
        if len(kinds) != 1:
            raise self.fail("needs exactly one of 'instance', 'cluster' or 'proxy'", field=field)
        kind = kinds[0]
        identifier = self.string(spec[kind], f"{field}.{kind}", RDS_IDENTIFIER, what=f"{kind} identifier")
        host = spec.get("host")
        if host is not None:
            host = self.string(host, f"{field}.host", HOSTNAME, what="host")
        port = spec.get("port")
        if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535):
            raise self.fail(f"invalid port '{_clip(str(port))}' (expected 1-65535)", field=f"{field}.port")
        dbname = spec.get("dbname")
        if dbname is not None:
            dbname = self.string(dbname, f"{field}.dbname", DB_NAME, what="dbname")
        signer_role = spec.get("signer_role")
        if signer_role is not None:
            signer_role = self.string(signer_role, f"{field}.signer_role", ROLE_ARN, what="role ARN")
        where = placement(spec, field, kind=kind, region=region, signer_role=signer_role, host=host, port=port,
                          service_account=self.service_account, reader_role_name=self.reader_role_name,
                          fail=self.fail, string=self.string)
        raw_users = spec.get("users")
        if not isinstance(raw_users, dict) or not raw_users:
            raise self.fail("must declare at least one user", field=f"{field}.users")
        users = {user: self.user(field, user, uspec) for user, uspec in raw_users.items()}
        target = proxy_target(spec, field, kind=kind, users=users, identifier=RDS_IDENTIFIER, fail=self.fail,
                              string=self.string)
        return Database(name=name, engine=cast(Engine, engine), region=region, kind=cast(Kind, kind),
                        identifier=identifier,
                        users=users, host=host, port=port, dbname=dbname, signer_role=signer_role,
                        account=where.account, reader_role=where.reader_role,
                        reader_role_explicit=where.reader_role_explicit, resource_id=where.resource_id,
                        target=target)

    def dsql_database(self, name: str, spec: Mapping[str, Any], field: str, region: str) -> Database:
        """An Aurora DSQL cluster: ``cluster: ID``; host, port and dbname default to DSQL's."""
        for key in ("instance", "proxy", "resource_id"):
            if key in spec:
                raise self.fail(f"'{key}' does not apply to an Aurora DSQL database (it names a 'cluster')",
                                field=f"{field}.{key}")
        if "cluster" not in spec:
            raise self.fail("an Aurora DSQL database needs 'cluster' (its 26-character cluster id)",
                            field=f"{field}.cluster")
        cluster = self.string(spec["cluster"], f"{field}.cluster", DSQL_CLUSTER_ID, what="DSQL cluster id")
        host = self.string(spec.get("host", dsql_host(cluster, region)), f"{field}.host", HOSTNAME, what="host")
        port = spec.get("port", 5432)
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise self.fail(f"invalid port '{_clip(str(port))}' (expected 1-65535)", field=f"{field}.port")
        dbname = self.string(spec.get("dbname", "postgres"), f"{field}.dbname", DB_NAME, what="dbname")
        signer_role = spec.get("signer_role")
        if signer_role is not None:
            signer_role = self.string(signer_role, f"{field}.signer_role", ROLE_ARN, what="role ARN")
        where = placement(spec, field, kind="cluster", region=region, signer_role=signer_role, host=host,
                          port=port, service_account=self.service_account, reader_role_name=self.reader_role_name,
                          fail=self.fail, string=self.string, needs_read=False)
        raw_users = spec.get("users")
        if not isinstance(raw_users, dict) or not raw_users:
            raise self.fail("must declare at least one user", field=f"{field}.users")
        users = {user: self.dsql_user(field, user, uspec) for user, uspec in raw_users.items()}
        return Database(name=name, engine="dsql", region=region, kind="cluster", identifier=cluster, users=users,
                        host=host, port=port, dbname=dbname, signer_role=signer_role, account=where.account,
                        reader_role=where.reader_role, reader_role_explicit=where.reader_role_explicit)

    def dsql_user(self, db_field: str, name: Any, spec: Any) -> DbUser:
        """``admin`` (signed with DbConnectAdmin) or a custom role (DbConnect); ``auth: iam`` only."""
        field = f"{db_field}.users.{_clip(str(name))}"
        auth = spec.get("auth") if isinstance(spec, dict) else None
        if auth in ("kerberos", "password"):
            raise self.fail(f"invalid auth '{auth}' (Aurora DSQL logs in with IAM tokens only: expected iam)",
                            field=f"{field}.auth")
        self.dsql_context = True
        try:
            user = self.user(db_field, name, spec)
        finally:
            self.dsql_context = False
        expected = DSQL_ADMIN_ACTION if user.name == DSQL_ADMIN else DSQL_CONNECT_ACTION
        action = spec.get("action", expected)
        if action not in (DSQL_ADMIN_ACTION, DSQL_CONNECT_ACTION):
            raise self.fail(f"invalid action '{_clip(str(action))}' (expected DbConnect or DbConnectAdmin)",
                            field=f"{field}.action")
        if action != expected:
            why = ("only the 'admin' role is signed with DbConnectAdmin" if action == DSQL_ADMIN_ACTION
                   else "the 'admin' role is signed with DbConnectAdmin")
            raise self.fail(f"action '{action}' does not fit role '{user.name}': {why}", field=f"{field}.action")
        return user

    def user(self, db_field: str, name: Any, spec: Any) -> DbUser:
        field = f"{db_field}.users.{_clip(str(name))}"
        if not isinstance(name, str) or not DB_USER_NAME.fullmatch(name):
            raise self.fail(f"invalid db user name '{_clip(str(name))}'", field=field)
        spec = self.mapping(spec, field, USER_KEYS)
        auth = spec.get("auth")
        if auth not in ("iam", "kerberos", "password"):
            raise self.fail(f"invalid auth '{_clip(str(auth))}' (expected iam, kerberos or password)",
                            field=f"{field}.auth")
        tier = spec.get("tier")
        if tier is not None and tier not in ("service-user", "service-admin"):
            raise self.fail(f"invalid tier '{_clip(str(tier))}' (expected service-user or service-admin)",
                            field=f"{field}.tier")
        if "action" in spec and not self.dsql_context:
            raise self.fail("'action' applies only to Aurora DSQL databases", field=f"{field}.action")
        secret, rotation = password_settings(spec, field, auth, self.fail)
        return DbUser(name=name, auth=auth, tier=tier, secret=secret, rotation=rotation)  # type: ignore[arg-type]  # auth and tier checked above

    def rule(self, index: int, raw: Any, databases: Mapping[str, Database]) -> Rule:
        label = f"#{index + 1}"
        if isinstance(raw, dict) and isinstance(raw.get("id"), str):
            label = _clip(raw["id"])
        spec = self.mapping(raw, f"rules[{index}]", RULE_KEYS, rule=label)
        if "id" not in spec:
            raise self.fail("missing key 'id'", rule=label, field="id")
        rule_id = self.string(spec["id"], "id", RULE_ID, rule=label, what="rule id")
        effect = spec.get("effect")
        if effect not in ("allow", "deny"):
            raise self.fail(f"invalid effect '{_clip(str(effect))}' (expected allow or deny)",
                            rule=rule_id, field="effect")
        principals = self.string_list(spec.get("principals"), "principals", rule=rule_id)
        for pattern in principals:
            self.principal_pattern(pattern, rule_id)
        db_patterns = self.string_list(spec.get("databases"), "databases", rule=rule_id)
        matched: set[str] = set()
        for pattern in db_patterns:
            self.string(pattern, "databases", NAME_PATTERN, rule=rule_id, what="pattern")
            hits = self.names.databases(databases).matching(pattern)
            if not hits:
                raise self.fail(f"'{_clip(pattern)}' names no declared database", rule=rule_id, field="databases")
            matched.update(hits)
        user_patterns = self.string_list(spec.get("db_users"), "db_users", rule=rule_id)
        for pattern in user_patterns:
            self.string(pattern, "db_users", NAME_PATTERN, rule=rule_id, what="pattern")
            if not self.names.any_user(databases, tuple(db_patterns), matched, pattern):
                raise self.fail(f"'{_clip(pattern)}' names no user declared in the rule's databases",
                                rule=rule_id, field="db_users")
        conditions = self.conditions(spec.get("conditions"), rule_id)
        grant_required, approvers, max_seconds = self.grant(spec, rule_id, effect)
        ttl = spec.get("ttl_seconds", DEFAULT_TTL_SECONDS)
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not 60 <= ttl <= MAX_TTL_SECONDS:
            raise self.fail(f"invalid ttl_seconds '{_clip(str(ttl))}' (expected 60-{MAX_TTL_SECONDS})",
                            rule=rule_id, field="ttl_seconds")
        return Rule(id=rule_id, effect=effect, principals=tuple(principals), databases=tuple(db_patterns),
                    db_users=tuple(user_patterns), conditions=conditions, grant_required=grant_required,
                    approvers=approvers, max_grant_seconds=max_seconds, ttl_seconds=ttl)

    def grant(self, spec: Mapping[str, Any], rule_id: str, effect: str) -> tuple[bool, tuple[str, ...], int]:
        """``grant: required``, ``approvers`` and ``max_grant_seconds``: all three or only the first
        two (the maximum has a default), on allow rules only."""
        grant = spec.get("grant")
        if grant is None:
            for key in ("approvers", "max_grant_seconds"):
                if key in spec:
                    raise self.fail(f"'{key}' needs 'grant: required'", rule=rule_id, field=key)
            return False, (), DEFAULT_MAX_GRANT_SECONDS
        if grant != "required":
            raise self.fail(f"invalid grant '{_clip(str(grant))}' (expected required)", rule=rule_id, field="grant")
        if effect != "allow":
            raise self.fail("only an allow rule can require a grant", rule=rule_id, field="grant")
        if "approvers" not in spec:
            raise self.fail("a rule with 'grant: required' needs approvers", rule=rule_id, field="approvers")
        approvers = self.string_list(spec["approvers"], "approvers", rule=rule_id)
        for pattern in approvers:
            self.principal_pattern(pattern, rule_id, field="approvers")
        max_seconds = spec.get("max_grant_seconds", DEFAULT_MAX_GRANT_SECONDS)
        if (isinstance(max_seconds, bool) or not isinstance(max_seconds, int)
                or not 60 <= max_seconds <= MAX_GRANT_SECONDS_LIMIT):
            raise self.fail(f"invalid max_grant_seconds '{_clip(str(max_seconds))}' "
                            f"(expected 60-{MAX_GRANT_SECONDS_LIMIT})", rule=rule_id, field="max_grant_seconds")
        return True, tuple(approvers), max_seconds

    def principal_pattern(self, pattern: str, rule_id: str, field: str = "principals") -> None:
        if pattern == "*":
            return
        match = PRINCIPAL_ARN.fullmatch(pattern)
        if match is None:
            raise self.fail(f"invalid principal ARN pattern '{_clip(pattern)}'", rule=rule_id, field=field)
        account = match["account"]
        if "*" not in account and "?" not in account and len(account) != 12:
            raise self.fail(f"invalid account in principal ARN pattern '{_clip(pattern)}'",
                            rule=rule_id, field=field)

    def conditions(self, raw: Any, rule_id: str) -> Conditions:
        if raw is None:
            return Conditions()
        spec = self.mapping(raw, "conditions", CONDITION_KEYS, rule=rule_id)
        org_ids = None
        if "org_ids" in spec:
            org_ids = tuple(self.string_list(spec["org_ids"], "conditions.org_ids", rule=rule_id))
            for org in org_ids:
                if not ORG_ID.fullmatch(org):
                    raise self.fail(f"invalid organization id '{_clip(org)}'", rule=rule_id,
                                    field="conditions.org_ids")
        source_ips = None
        if "source_ips" in spec:
            cidrs = self.string_list(spec["source_ips"], "conditions.source_ips", rule=rule_id)
            nets = []
            for cidr in cidrs:
                try:
                    nets.append(ipaddress.ip_network(cidr, strict=False))
                except ValueError:
                    raise self.fail(f"invalid CIDR '{_clip(cidr)}'", rule=rule_id,
                                    field="conditions.source_ips") from None
            source_ips = tuple(nets)
        return Conditions(org_ids=org_ids, source_ips=source_ips)

    def canary(self, raw: Any) -> CanarySettings:
        if raw is None:
            return CanarySettings()
        spec = self.mapping(raw, "canary", CANARY_KEYS)
        timeout = spec.get("timeout_seconds", 10)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 300:
            raise self.fail(f"invalid timeout '{_clip(str(timeout))}' (expected 0-300 seconds)",
                            field="canary.timeout_seconds")
        concurrency = spec.get("concurrency", 16)
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or not 1 <= concurrency <= 256:
            raise self.fail(f"invalid concurrency '{_clip(str(concurrency))}' (expected 1-256)",
                            field="canary.concurrency")
        cert = spec.get("ssl_root_cert")
        if cert is not None:
            cert = self.string(cert, "canary.ssl_root_cert")
        return CanarySettings(timeout_seconds=float(timeout), concurrency=concurrency, ssl_root_cert=cert)


class _PolicyNames:
    """Name indexes of the databases and of their users, built once per load: a rule's
    patterns are checked in time that does not grow with the number of rules x users."""

    def __init__(self) -> None:
        self._databases: NameIndex | None = None
        self._users: dict[str, NameIndex] = {}
        self._all_users: NameIndex | None = None
        self._answers: dict[tuple[tuple[str, ...], str], bool] = {}

    def databases(self, databases: Mapping[str, Database]) -> NameIndex:
        if self._databases is None:
            self._databases = NameIndex(databases)
        return self._databases

    def any_user(self, databases: Mapping[str, Database], db_patterns: tuple[str, ...], matched: set[str],
                 pattern: str) -> bool:
        """Whether ``pattern`` names a user of one of the ``matched`` databases (the ones
        ``db_patterns`` name: the key its answer is remembered by)."""
        key = (db_patterns, pattern)
        answer = self._answers.get(key)
        if answer is None:
            if len(matched) == len(databases):
                if self._all_users is None:
                    self._all_users = NameIndex(u for db in databases.values() for u in db.users)
                answer = self._all_users.any_match(pattern)
            else:
                answer = any(self._users_of(databases[name]).any_match(pattern) for name in matched)
            self._answers[key] = answer
        return answer

    def _users_of(self, database: Database) -> NameIndex:
        index = self._users.get(database.name)
        if index is None:
            index = self._users[database.name] = NameIndex(database.users)
        return index


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, OversizedValue):
        return f"{value.what} ('{value.text}')"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _clip(text: str, limit: int = 80) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 3] + "..."
