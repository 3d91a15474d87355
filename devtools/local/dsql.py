"""A local Aurora DSQL cluster: a PostgreSQL that accepts only DSQL tokens, for its own host.

DSQL's authentication, as the local stack plays it (:class:`DsqlTokenChecker`). A login's
password is a token ``HOST/?Action=DbConnect[Admin]&X-Amz-...`` presigned with SigV4 for the
service ``dsql``; it is accepted when, all at once:

- the signature is valid for a key the account knows (long-term or STS session credentials);
- it is for this cluster: the signed host is one of the cluster's names (a DSQL token carries
  no port), the region is the cluster's, the signer is in the cluster's account;
- ``X-Amz-Expires`` is at most a week (DSQL's limit) and has not run out;
- the role logging in is ``admin`` and ``Action`` is ``DbConnectAdmin``, or it is another role
  and ``Action`` is ``DbConnect`` (the token names no role: the action is the only binding);
- the signer may ``dsql:DbConnect[Admin]`` on ``arn:aws:dsql:REGION:ACCOUNT:cluster/ID`` (live
  IAM and SCPs, judged by rdsvend's evaluator);
- for a role other than ``admin``: ``AWS IAM GRANT role TO 'arn'`` mapped the role to the
  signer's IAM role (or user), and the mapping still names the same principal: the unique id
  recorded when the grant was made equals the signer's current one. A role that was deleted
  and created again under the same name has a new unique id; its old mapping no longer
  matches (DSQL's silent failure: SQLSTATE 28000 while the grant still shows).

The mapping lives in the cluster: ``sys.iam_pg_role_mapping_table`` (with the unique id) and the
view ``sys.iam_pg_role_mappings`` with DSQL's columns (``iam_oid, arn, pg_role_oid,
pg_role_name, grantor_pg_role_oid, grantor_pg_role_name``: no unique id, as in DSQL). The local
equivalent of ``AWS IAM GRANT app TO 'arn'`` is ``SELECT sys.aws_iam_grant('app', 'arn')``
(``sys.aws_iam_revoke`` undoes it), or :meth:`LocalDsqlCluster.grant`. A grant made in SQL
records the principal's unique id at the next login attempt of the cluster (the local stack
has no hook into the statement itself); :meth:`LocalDsqlCluster.grant` records it at once.

Every refusal is logged with a reason (``signature:expired``, ``signature:bad_signature``,
``wrong_host``, ``wrong_action``, ``not_permitted:...``, ``no_mapping``, ``mapping_stale``); the
token never is.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from psycopg import sql

from chalicelib.aws.arn import dsql_cluster_arn
from chalicelib.aws.arn import iam_principal_of as principal_of
from chalicelib.clock import SYSTEM_CLOCK, Clock
from chalicelib.policy.model import DSQL_ADMIN, DSQL_ADMIN_ACTION, DSQL_CONNECT_ACTION
from chalicelib.signer.sigv4 import DSQL_MAX_EXPIRES, DSQL_SERVICE
from devtools.local.ldap import LdapResponder
from devtools.local.postgres import PostgresCluster
from devtools.local.rdsauth import TokenVerdict
from devtools.local.sigv4 import Credential, SecretLookup, SignatureError, VerifiedRequest, verify_presigned

__all__ = ["DsqlEndpoint", "DsqlTokenChecker", "LocalDsqlCluster", "Mapping", "principal_of", "refusal_code",
           "log_verdict", "start_dsql_clusters", "MAPPINGS_SQL"]

log = logging.getLogger(__name__)

#: ``(credential, action, cluster_arn) -> (allowed, why)``: may this signer connect?
DsqlPermissionCheck = Callable[[Credential, str, str], "tuple[bool, str]"]


@dataclass(frozen=True)
class Mapping:
    """One ``AWS IAM GRANT``: a database role mapped to an IAM principal ARN."""

    pg_role: str
    arn: str
    unique_id: str | None  # the principal's unique id when granted (None: not yet recorded)


@dataclass(frozen=True)
class DsqlEndpoint:
    """What DSQL knows about the cluster a token must be for."""

    identifier: str
    account: str
    region: str
    hosts: frozenset[str]

    def __post_init__(self) -> None:
        object.__setattr__(self, "hosts", frozenset(h.strip().lower().rstrip(".") for h in self.hosts if h.strip()))
        if not self.hosts:
            raise ValueError("a DSQL cluster needs at least one host name")

    @property
    def arn(self) -> str:
        return dsql_cluster_arn(self.region, self.account, self.identifier)


def refusal_code(verdict: TokenVerdict) -> str:
    """The class of a refusal, in the words the RDS refusals use."""
    reason = verdict.reason
    if reason == "signature:expired":
        return "ExpiredToken"
    if reason.startswith("could_not_check"):
        return "InternalError"
    if reason.startswith(("not_permitted", "no_mapping", "mapping_stale", "wrong_action")) or reason == "wrong_account":
        return "NotAuthorized"
    return "InvalidToken"


def log_verdict(verdict: TokenVerdict) -> None:
    """The cluster's log line for one login: who, the reason and its class; never the token."""
    if verdict.allowed:
        log.info("dsql token login accepted: user=%r principal=%s cluster=%s",
                 verdict.user, verdict.principal, verdict.instance)
    else:
        log.warning("dsql token login refused: user=%r reason=%s code=%s principal=%s cluster=%s",
                    verdict.user, verdict.reason, refusal_code(verdict), verdict.principal, verdict.instance)


class DsqlTokenChecker:
    """``check(user, token) -> bool`` for the cluster's LDAP responder."""

    def __init__(self, lookup: SecretLookup, *, cluster: DsqlEndpoint, permission_check: DsqlPermissionCheck,
                 mappings: Callable[[str], Iterable[Mapping]], principal_id: Callable[[Credential], str | None],
                 clock: Clock = SYSTEM_CLOCK, max_skew: timedelta = timedelta(minutes=5)) -> None:
        self._lookup = lookup
        self._cluster = cluster
        self._permission_check = permission_check
        self._mappings = mappings
        self._principal_id = principal_id
        self._clock = clock
        self._max_skew = max_skew

    def check(self, user: str, token: str) -> bool:
        verdict = self.verify(user, token)
        log_verdict(verdict)
        return verdict.allowed

    __call__ = check

    def verify(self, user: str, token: str) -> TokenVerdict:
        """The verdict for one login. Never raises; a failure to check is a refusal."""
        try:
            return self._verify(user, token)
        except Exception as exc:  # noqa: BLE001 - fail closed on anything unexpected
            return TokenVerdict(False, f"could_not_check:{type(exc).__name__}", user,
                                instance=self._cluster.identifier)

    def _verify(self, user: str, token: str) -> TokenVerdict:
        cluster = self._cluster
        name = cluster.identifier
        try:
            verified = verify_presigned(token, service=DSQL_SERVICE, lookup=self._lookup, now=self._clock.now(),
                                        max_expires=DSQL_MAX_EXPIRES, max_skew=self._max_skew)
        except SignatureError as exc:
            return TokenVerdict(False, f"signature:{exc.reason}", user, instance=name)
        principal = verified.credential.principal_arn
        mismatch = _mismatch(verified, cluster, user)
        if mismatch is not None:
            return TokenVerdict(False, mismatch, user, principal, name)
        action = verified.params["Action"]
        allowed, why = self._permission_check(verified.credential, f"dsql:{action}", cluster.arn)
        if allowed is not True:
            return TokenVerdict(False, f"not_permitted:{why}", user, principal, name, cluster.arn)
        if user != DSQL_ADMIN:
            refused = self._mapping_refusal(user, verified.credential)
            if refused is not None:
                return TokenVerdict(False, refused, user, principal, name, cluster.arn)
        return TokenVerdict(True, f"permitted:{why}", user, principal, name, cluster.arn)

    def _mapping_refusal(self, user: str, credential: Credential) -> str | None:
        wanted = principal_of(credential.principal_arn)
        rows = [m for m in self._mappings(user) if m.arn == wanted]
        if not rows:
            return "no_mapping"
        current = self._principal_id(credential)
        if current is None or all(m.unique_id != current for m in rows):
            return "mapping_stale"
        return None


def _mismatch(verified: VerifiedRequest, cluster: DsqlEndpoint, user: str) -> str | None:
    """What the token is bound to that this login is not: the cluster's endpoint, account and
    region, then the request (``/?Action=DbConnect``, or ``DbConnectAdmin`` for ``admin``)."""
    expected = DSQL_ADMIN_ACTION if user == DSQL_ADMIN else DSQL_CONNECT_ACTION
    checks = (
        ("wrong_host", verified.host.lower().rstrip(".") in cluster.hosts),
        ("wrong_account", verified.credential.account == cluster.account),
        ("wrong_region", verified.region == cluster.region),
        ("unexpected_parameters", verified.path == "/" and set(verified.params) == {"Action"}),
        ("wrong_action", verified.params.get("Action") == expected),
    )
    return next((reason for reason, holds in checks if not holds), None)


#: The mapping table, DSQL's view of it, and the local AWS IAM GRANT / REVOKE.
MAPPINGS_SQL = (
    "CREATE SCHEMA sys",
    """CREATE TABLE sys.iam_pg_role_mapping_table (
         iam_oid bigserial PRIMARY KEY,
         arn text NOT NULL,
         iam_unique_id text,
         pg_role_oid oid NOT NULL,
         grantor_pg_role_oid oid NOT NULL,
         UNIQUE (arn, pg_role_oid))""",
    """CREATE VIEW sys.iam_pg_role_mappings AS
         SELECT m.iam_oid, m.arn, m.pg_role_oid, r.rolname AS pg_role_name,
                m.grantor_pg_role_oid, g.rolname AS grantor_pg_role_name
           FROM sys.iam_pg_role_mapping_table m
           JOIN pg_roles r ON r.oid = m.pg_role_oid
           LEFT JOIN pg_roles g ON g.oid = m.grantor_pg_role_oid""",
    """CREATE FUNCTION sys.aws_iam_grant(pg_role name, iam_arn text) RETURNS void
         LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS $$
         INSERT INTO sys.iam_pg_role_mapping_table (arn, iam_unique_id, pg_role_oid, grantor_pg_role_oid)
         SELECT iam_arn, NULL, r.oid, (SELECT oid FROM pg_roles WHERE rolname = session_user)
           FROM pg_roles r WHERE r.rolname = pg_role
         ON CONFLICT (arn, pg_role_oid) DO UPDATE SET iam_unique_id = NULL,
           grantor_pg_role_oid = EXCLUDED.grantor_pg_role_oid $$""",
    """CREATE FUNCTION sys.aws_iam_revoke(pg_role name, iam_arn text) RETURNS void
         LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS $$
         DELETE FROM sys.iam_pg_role_mapping_table m USING pg_roles r
          WHERE m.pg_role_oid = r.oid AND r.rolname = pg_role AND m.arn = iam_arn $$""",
    "REVOKE ALL ON sys.iam_pg_role_mapping_table FROM PUBLIC",
    "GRANT USAGE ON SCHEMA sys TO PUBLIC",
    "GRANT SELECT ON sys.iam_pg_role_mappings TO PUBLIC",
    "REVOKE EXECUTE ON FUNCTION sys.aws_iam_grant(name, text), sys.aws_iam_revoke(name, text) FROM PUBLIC",
    "GRANT EXECUTE ON FUNCTION sys.aws_iam_grant(name, text), sys.aws_iam_revoke(name, text) TO admin",
)


class LocalDsqlCluster:
    """One DSQL cluster: a PostgreSQL on ``localhost`` behind its own LDAP responder, whose
    checker (set with :meth:`set_checker`, refusing everything until then) is a
    :class:`DsqlTokenChecker`. ``role_id(arn)`` tells a principal's current unique id (IAM)."""

    def __init__(self, identifier: str, account: str, region: str, *,
                 role_id: Callable[[str], str | None], parent_dir: str | None = None) -> None:
        self.identifier = identifier
        self.account = account
        self.region = region
        self._role_id = role_id
        self._checker: Callable[[str, str], bool] | None = None
        self._ldap = LdapResponder(self._check)
        self._pg: PostgresCluster | None = None
        self._parent_dir = parent_dir

    def _check(self, user: str, token: str) -> bool:
        checker = self._checker
        return bool(checker is not None and checker(user, token))

    def set_checker(self, checker: Callable[[str, str], bool] | None) -> None:
        self._checker = checker

    @property
    def pg(self) -> PostgresCluster:
        if self._pg is None:
            raise RuntimeError("the local DSQL cluster is not started")
        return self._pg

    @property
    def host(self) -> str:
        return self.pg.host

    @property
    def port(self) -> int:
        return self.pg.port

    @property
    def endpoint(self) -> DsqlEndpoint:
        return DsqlEndpoint(self.identifier, self.account, self.region, frozenset({self.host}))

    def start(self) -> LocalDsqlCluster:
        self._ldap.start()
        self._pg = PostgresCluster(ldap_port=self._ldap.port, parent_dir=self._parent_dir).start()
        try:
            self._pg.create_iam_user(DSQL_ADMIN)
            self._pg.run_sql("ALTER ROLE admin CREATEROLE")
            self._pg.run_sql("ALTER SCHEMA public OWNER TO admin")
            for statement in MAPPINGS_SQL:
                self._pg.run_sql(statement)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        pg, self._pg = self._pg, None
        try:
            if pg is not None:
                pg.stop()
        finally:
            self._ldap.stop()

    def create_role(self, name: str) -> None:
        """``CREATE ROLE name WITH LOGIN`` (DSQL roles log in with tokens only)."""
        self.pg.create_iam_user(name)

    def grant(self, pg_role: str, arn: str) -> None:
        """``AWS IAM GRANT pg_role TO 'arn'``, recording the principal's unique id now."""
        self.pg.run_sql(sql.SQL("SELECT sys.aws_iam_grant({}, {})").format(sql.Literal(pg_role), sql.Literal(arn)))
        self._record_ids()

    def revoke(self, pg_role: str, arn: str) -> None:
        self.pg.run_sql(sql.SQL("SELECT sys.aws_iam_revoke({}, {})").format(sql.Literal(pg_role), sql.Literal(arn)))

    def _record_ids(self) -> None:
        pending = self.pg.run_sql("SELECT iam_oid, arn FROM sys.iam_pg_role_mapping_table WHERE iam_unique_id IS NULL")
        for oid, arn in pending:
            unique_id = self._role_id(str(arn))
            if unique_id is not None:
                self.pg.run_sql("UPDATE sys.iam_pg_role_mapping_table SET iam_unique_id = %s WHERE iam_oid = %s",
                                (unique_id, oid))

    def mappings(self, pg_role: str) -> list[Mapping]:
        """The role's mappings (grants made in SQL get their unique id recorded first)."""
        self._record_ids()
        rows: list[tuple[Any, ...]] = self.pg.run_sql(
            "SELECT r.rolname, m.arn, m.iam_unique_id FROM sys.iam_pg_role_mapping_table m "
            "JOIN pg_roles r ON r.oid = m.pg_role_oid WHERE r.rolname = %s", (pg_role,))
        return [Mapping(str(r[0]), str(r[1]), None if r[2] is None else str(r[2])) for r in rows]

    def log_text(self) -> str:
        return self.pg.log_text()


def start_dsql_clusters(world: Any, seeded: Any, sessions: Any, lookup: Any,
                        permission_check: DsqlPermissionCheck) -> dict[str, LocalDsqlCluster]:
    """Every DSQL cluster of the world, served: its PostgreSQL with the DSQL token checker, its
    roles, their ``AWS IAM GRANT`` to the world's IAM roles, and its setup SQL (as the superuser)."""
    started: dict[str, LocalDsqlCluster] = {}
    try:
        for account, spec in world.dsql_clusters():
            info = seeded.dsql[spec.name]
            iam = sessions.client("iam", account.id)
            cluster = LocalDsqlCluster(info.identifier, info.account, info.region, role_id=_role_id_reader(iam))
            started[spec.name] = cluster.start()
            checker = DsqlTokenChecker(lookup, cluster=cluster.endpoint, permission_check=permission_check,
                                       mappings=cluster.mappings,
                                       principal_id=lambda c: str(lookup.caller_id(c)).split(":", 1)[0])
            cluster.set_checker(checker.check)
            for pg_role, iam_role in spec.roles.items():
                cluster.create_role(pg_role)
                cluster.grant(pg_role, f"arn:aws:iam::{account.id}:role/{iam_role}")
            for statement in spec.setup_sql:
                cluster.pg.run_sql(statement)
    except BaseException:
        for cluster in started.values():
            cluster.stop()
        raise
    return started


def _role_id_reader(iam: Any) -> Callable[[str], str | None]:
    """``arn -> RoleId`` (or a user's ``UserId``) read live from IAM; None when it is gone."""
    def read(arn: str) -> str | None:
        kind, _, name = arn.split(":", 5)[-1].partition("/")
        name = name.rsplit("/", 1)[-1]
        try:
            if kind == "user":
                return str(iam.get_user(UserName=name)["User"]["UserId"])
            return str(iam.get_role(RoleName=name)["Role"]["RoleId"])
        except iam.exceptions.NoSuchEntityException:
            return None
    return read
