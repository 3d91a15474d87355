"""RDS-side checks: ``rds.found``, ``rds.iam_auth_enabled``, ``rds.endpoint``, ``rds.domain_joined``.

The facts come from an :class:`RdsFacts` adapter (boto3 for real, a dict for tests); the
verdicts are pure functions of the policy's :class:`Database` and those facts.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from chalicelib.aws.arn import dbuser_arn as _dbuser_arn
from chalicelib.aws.errors import aws_error
from chalicelib.aws.probe import AwsClients, probe
from chalicelib.aws.rds_resource import DESCRIBE_OPERATION, DomainMembership, RdsResource, describe_resource
from chalicelib.aws.reader import SearchedAs
from chalicelib.canary.model import CheckResult, errored, failed, passed, skipped, warned
from chalicelib.errors import ProbeError
from chalicelib.policy.model import Database

__all__ = [
    "DomainMembership",
    "RdsResource",
    "RdsFacts",
    "BotoRdsFacts",
    "InMemoryRdsFacts",
    "check_found",
    "check_iam_auth_enabled",
    "check_endpoint",
    "check_domain_joined",
    "effective_endpoint",
    "dbuser_arn",
]

#: States in which the database answers connections, though something is going on.
_BUSY_BUT_UP = frozenset({
    "backing-up", "modifying", "maintenance", "storage-optimization", "upgrading",
    "configuring-enhanced-monitoring", "configuring-iam-database-auth",
    "configuring-log-exports", "renaming", "resetting-master-credentials", "rebooting",
})
#: Domain membership statuses that mean "joined" (RDS reports joined / kerberos-enabled;
#: moto, which the local stack runs on, reports active).
_JOINED = frozenset({"joined", "kerberos-enabled", "active"})
_CLI_KIND = {"instance": "db-instance", "cluster": "db-cluster", "proxy": "db-proxy"}


def dbuser_arn(database: Database, resource: RdsResource, db_user: str) -> str | None:
    """``arn:PARTITION:rds-db:REGION:ACCOUNT:dbuser:RESOURCE_ID/USER``, or None if RDS did not say."""
    if not resource.resource_id or not resource.account:
        return None
    return _dbuser_arn(database.region, resource.account, resource.resource_id, db_user, resource.partition)


class RdsFacts(Protocol):
    def describe(self, database: Database) -> RdsResource | None:
        """The resource, None when RDS says it does not exist; :class:`ProbeError` otherwise."""

    def searched(self, database: Database) -> SearchedAs | None:
        """Where :meth:`describe` looked (account and principal), None when unknown."""


class InMemoryRdsFacts:
    """Facts from a dict: database name -> RdsResource, None (absent) or an exception to raise."""

    def __init__(self, resources: Mapping[str, RdsResource | None | Exception]) -> None:
        self.resources = dict(resources)

    def describe(self, database: Database) -> RdsResource | None:
        value = self.resources.get(database.name)
        if isinstance(value, Exception):
            raise value
        return value

    def searched(self, database: Database) -> SearchedAs | None:
        return None


class BotoRdsFacts:
    """DescribeDBInstances / DescribeDBClusters / DescribeDBProxies through :class:`AwsClients`,
    or, given ``readers`` (:class:`chalicelib.canary.accounts.AccountReaders`), in each
    database's account (through its reader role when the canary is elsewhere)."""

    def __init__(self, clients: AwsClients, readers: Any = None) -> None:
        self._clients = clients
        self._readers = readers

    def searched(self, database: Database) -> SearchedAs | None:
        return self._readers.searched(database) if self._readers is not None else None

    def describe(self, database: Database) -> RdsResource | None:
        if self._readers is not None:
            rds = self._readers.client(database, "rds")  # ProbeError when the reader role fails
        else:
            rds = self._clients.client("rds", database.region)
        try:
            with probe("rds", DESCRIBE_OPERATION[database.kind]):
                return describe_resource(rds, database)
        except (IndexError, KeyError):  # an answer without items
            return None
        except Exception as exc:
            error = aws_error(exc)
            if error is not None and error.not_found:  # probe() lets "no such database" through
                return None
            raise



# ----------------------------------------------------------------------------------- verdicts

def _what(database: Database) -> str:
    return f"{database.kind} '{database.identifier}' in {database.region}"


def _searched_details(searched: SearchedAs | None) -> dict[str, Any]:
    if searched is None or searched.vantage is None:
        return {}
    return {"searched_account": searched.vantage.account, "searched_as": searched.vantage.principal,
            "declared_account": searched.expected_account}


def check_found(database: Database, resource: RdsResource | None | ProbeError,
                searched: SearchedAs | None = None) -> CheckResult:
    """``searched``: where the describe looked; named whenever the resource could not be seen."""
    cid = "rds.found"
    where = f" ({searched})" if searched is not None else ""
    if isinstance(resource, ProbeError):
        fix = (searched.advice if searched is not None and searched.advice else
               "check that the canary can reach RDS and may call rds:Describe* "
               "(credentials, network path, throttling), then re-run")
        return errored(cid, f"could not describe {_what(database)}: {resource.cause}{where}", fix,
                       cause=resource.cause, code=resource.code, **_searched_details(searched))
    if resource is None:
        if searched is not None and searched.advice:
            return failed(cid, f"{_what(database)} was not found{where}", searched.advice,
                          identifier=database.identifier, kind=database.kind, **_searched_details(searched))
        return failed(cid, f"{_what(database)} does not exist{where}",
                      f"fix the {database.kind} identifier of database '{database.name}' in the "
                      f"access policy, or create the {database.kind} in {database.region}",
                      identifier=database.identifier, kind=database.kind, **_searched_details(searched))
    details = {"identifier": resource.identifier, "status": resource.status, "arn": resource.arn,
               "resource_id": resource.resource_id}
    if resource.status == "available":
        return passed(cid, f"{_what(database)} is available", **details)
    if resource.status in _BUSY_BUT_UP:
        return warned(cid, f"{_what(database)} is '{resource.status}' (still accepting connections)",
                      "nothing to change if this is planned maintenance; re-run when it is done",
                      **details)
    start = (f"aws rds start-{_CLI_KIND[database.kind]} --{_CLI_KIND[database.kind]}-identifier "
             f"{database.identifier}" if database.kind != "proxy" else "")
    fix = (f"start it ({start})" if resource.status == "stopped" and start else
           f"wait for or repair the {database.kind}: RDS reports status '{resource.status}'")
    return failed(cid, f"{_what(database)} is '{resource.status}', not available", fix, **details)


def check_iam_auth_enabled(database: Database, resource: RdsResource | None) -> CheckResult:
    cid = "rds.iam_auth_enabled"
    if resource is None:
        return skipped(cid, "not checked: rds.found did not describe the resource")
    if resource.iam_auth_enabled:
        return passed(cid, f"IAM database authentication is enabled on {_what(database)}")
    if database.kind == "proxy":
        fix = (f"set IAMAuth to REQUIRED in the auth settings of proxy '{database.identifier}' "
               "(aws rds modify-db-proxy --auth ...)")
    else:
        flag = _CLI_KIND[database.kind]
        fix = (f"aws rds modify-{flag} --{flag}-identifier {database.identifier} "
               "--enable-iam-database-authentication --apply-immediately")
    return failed(cid, f"IAM database authentication is disabled on {_what(database)}: every "
                  "token is refused with \"PAM authentication failed for user\"", fix,
                  IAMDatabaseAuthenticationEnabled=False)


def effective_endpoint(database: Database, resource: RdsResource | None) -> tuple[str | None, int | None]:
    """Where the canary connects: the policy's host/port, else RDS's endpoint."""
    host = database.host or (resource.host if resource else None)
    port = database.port or (resource.port if resource else None) or (database.default_port if host else None)
    return host, port


def check_endpoint(database: Database, resource: RdsResource | None) -> CheckResult:
    cid = "rds.endpoint"
    if resource is None:
        if database.host:
            return skipped(cid, "not checked: rds.found did not describe the resource",
                           policy_host=database.host, policy_port=database.port)
        return skipped(cid, "not checked: the policy names no host and RDS did not describe one")
    rds_host, rds_port = resource.host, resource.port or database.default_port
    host, port = effective_endpoint(database, resource)
    details = {"policy_host": database.host, "policy_port": database.port, "rds_host": rds_host,
               "rds_port": rds_port, "host": host, "port": port}
    if not rds_host and not database.host:
        return failed(cid, f"RDS reports no endpoint for {_what(database)} and the policy names none",
                      "wait until the resource has an endpoint, or set host/port in the policy",
                      **details)
    if not rds_host:
        return warned(cid, f"RDS reports no endpoint; the policy's {host}:{port} is used",
                      "confirm that the policy's host/port reach this database", **details)
    return _compare_endpoint(cid, database, resource, (host, port), (rds_host, rds_port), details)


def _compare_endpoint(cid: str, database: Database, resource: RdsResource, used: tuple[str | None, int | None],
                      reported: tuple[str, int | None], details: dict[str, Any]) -> CheckResult:
    """Where the canary connects against the endpoint RDS reports: the same, or a warning naming both."""
    (host, port), (rds_host, rds_port) = used, reported
    same_host = host is not None and host.rstrip(".").lower() == rds_host.rstrip(".").lower()
    if same_host and database.kind == "proxy" and resource.port is None:  # RDS names no proxy port
        return passed(cid, f"connecting to the proxy endpoint {host}:{port} (RDS does not report a proxy's "
                      "port; the policy's is used)", **details)
    if same_host and port == rds_port:
        return passed(cid, f"connecting to the RDS endpoint {host}:{port}", **details)
    return warned(
        cid, f"the policy's {host}:{port} differs from the RDS endpoint {rds_host}:{rds_port}",
        "fine if this is on purpose (a tunnel, a DNS alias with a matching certificate); otherwise "
        "remove host/port from the policy or correct them. Tokens are bound to the host name the "
        "client connects to", **details)


def check_domain_joined(database: Database, resource: RdsResource | None) -> CheckResult:
    cid = "rds.domain_joined"
    if resource is None:
        return skipped(cid, "not checked: rds.found did not describe the resource")
    if database.kind == "proxy":
        return failed(cid, f"proxy '{database.identifier}' cannot use Kerberos authentication",
                      "connect Kerberos users to the instance or cluster, not through RDS Proxy")
    joined = [d for d in resource.domains if d.status.lower() in _JOINED]
    if joined:
        first = joined[0]
        return passed(cid, f"{_what(database)} is joined to directory {first.domain}",
                      domain=first.domain, fqdn=first.fqdn, iam_role_name=first.iam_role_name)
    if resource.domains:
        first = resource.domains[0]
        return failed(cid, f"{_what(database)} is in directory {first.domain} with status "
                      f"'{first.status}', not 'joined'",
                      "repair the domain membership (check the directory's reachability and the "
                      "domain IAM role), then wait for status 'joined'",
                      domain=first.domain, status=first.status, iam_role_name=first.iam_role_name)
    flag = _CLI_KIND[database.kind]
    return failed(cid, f"{_what(database)} is not joined to any directory: Kerberos logins fail",
                  f"aws rds modify-{flag} --{flag}-identifier {database.identifier} --domain "
                  "<directory id> --domain-iam-role-name <role with AmazonRDSDirectoryServiceAccess>",
                  domains=[])
