"""Read the organization: its accounts, then each account's DB instances, clusters and proxies,
and its Aurora DSQL clusters (``ListClusters``, then ``GetCluster`` each).

Accounts come from Organizations ``ListAccounts`` (through ``RDSVEND_ORG_ROLE_ARN`` when set,
else one's own credentials; an account in no organization is read alone), or from the
``accounts`` asked for. Each account is read through the role ``role_name`` assumed there
(one's own account with one's own credentials). An account that cannot be read is reported
with the reason and the principal that tried; the others are still read.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from chalicelib.aws.arn import role_arn
from chalicelib.aws.dsql import list_clusters
from chalicelib.aws.errors import aws_error
from chalicelib.aws.reader import CallerVantage, ReaderRoleError, ReaderSessions
from devtools.discover.shape import (
    AccountResult,
    Discovery,
    FoundDatabase,
    found_from_dsql,
    found_from_item,
    proxy_target_of,
)

__all__ = ["DEFAULT_ROLE_NAME", "DiscoverError", "ScanRequest", "list_accounts", "scan"]

DEFAULT_ROLE_NAME = "rdsvend-reader"
SESSION_NAME = "rdsvend-discover"

#: (kind, paginated operation, answer key)
_LISTINGS = (("instance", "describe_db_instances", "DBInstances"),
             ("cluster", "describe_db_clusters", "DBClusters"),
             ("proxy", "describe_db_proxies", "DBProxies"))


class DiscoverError(Exception):
    """The organization's accounts could not be listed: nothing can be discovered."""


@dataclass(frozen=True)
class ScanRequest:
    role_name: str = DEFAULT_ROLE_NAME
    regions: tuple[str, ...] = ("us-east-1",)
    accounts: tuple[str, ...] | None = None  # None: every active account of the organization
    default_role_name: str | None = None  # the policy's defaults.reader_role_name (for the yaml)
    org_role_arn: str | None = None


def _describe(exc: BaseException) -> str:
    """One line (an AWS message may hold newlines, or a whole XML document), at most 300 characters."""
    error = aws_error(exc)
    text = " ".join((str(error) if error is not None else type(exc).__name__).split())
    return text if len(text) <= 300 else text[:297] + "..."


def list_accounts(org: Any) -> list[str] | None:
    """Active account ids of the organization, or None when the caller's account is in none."""
    accounts: list[str] = []
    try:
        for page in org.get_paginator("list_accounts").paginate():
            accounts.extend(a["Id"] for a in page.get("Accounts", []) if a.get("Status", "ACTIVE") == "ACTIVE")
    except Exception as exc:
        error = aws_error(exc)
        if error is None:
            raise
        if error.code == "AWSOrganizationsNotInUseException":
            return None
        raise DiscoverError(f"cannot list the organization's accounts: {_describe(exc)}") from None
    return accounts


def _list_region(clients: Callable[..., Any], account: str, region: str) -> tuple[list[FoundDatabase], list[str]]:
    found: list[FoundDatabase] = []
    errors: list[str] = []
    rds = clients("rds", region)
    for kind, operation, key in _LISTINGS:
        try:
            for page in rds.get_paginator(operation).paginate():
                found.extend(found_from_item(account, region, kind, item) for item in page.get(key, []))  # type: ignore[arg-type]  # kind is a Kind literal
        except Exception as exc:
            if aws_error(exc) is None:
                raise
            name = "".join(part.capitalize() for part in operation.split("_")).replace("Db", "DB")
            errors.append(f"rds {name} in {region} failed: {_describe(exc)}")
    return [_with_target(rds, db, errors) if db.kind == "proxy" else db for db in found], errors


def _with_target(rds: Any, proxy: FoundDatabase, errors: list[str]) -> FoundDatabase:
    """The proxy with the instance or cluster registered behind it (DescribeDBProxyTargets)."""
    try:
        targets = rds.describe_db_proxy_targets(DBProxyName=proxy.identifier).get("Targets", [])
    except Exception as exc:
        if aws_error(exc) is None:
            raise
        errors.append(f"rds DescribeDBProxyTargets for '{proxy.identifier}' in {proxy.region} failed: "
                      f"{_describe(exc)}")
        return proxy
    return replace(proxy, target=proxy_target_of(targets))


def _list_dsql(clients: Callable[..., Any], account: str, region: str) -> tuple[list[FoundDatabase], str | None]:
    """The account's DSQL clusters in ``region``; a failure is a note (the RDS listing stands)."""
    try:
        return [found_from_dsql(account, c) for c in list_clusters(clients("dsql", region), region)], None
    except Exception as exc:
        if aws_error(exc) is None:
            raise
        return [], f"account {account}: dsql ListClusters in {region} failed: {_describe(exc)}"


def scan(session: Any, request: ScanRequest) -> Discovery:
    """Everything ``rdsvend discover`` prints, read with ``session`` (a boto3 session)."""
    sts = session.client("sts", region_name=request.regions[0])
    try:
        me = sts.get_caller_identity()
    except Exception as exc:
        if aws_error(exc) is None:
            raise
        raise DiscoverError(f"cannot tell who is asking (sts GetCallerIdentity failed: {_describe(exc)})") from None
    own_account, own_arn = str(me["Account"]), str(me["Arn"])
    partition = own_arn.split(":", 2)[1] if own_arn.startswith("arn:") else "aws"

    def own_clients(service: str, region: str | None = None) -> Any:
        return session.client(service, region_name=region)

    roles = ReaderSessions(lambda: sts, lambda role_session: (
        lambda service, region=None: role_session.client(service, region_name=region)),
        session_name=SESSION_NAME, caller=CallerVantage(lambda: sts))

    accounts: Iterable[str]
    if request.accounts is not None:
        accounts = request.accounts
    else:
        if request.org_role_arn:
            org_roles = ReaderSessions(lambda: sts, lambda role_session: (
                lambda service, region=None: role_session.client(service, region_name=region)),
                session_name=SESSION_NAME, caller=CallerVantage(lambda: sts), what="organization reader role")
            try:
                org = org_roles.clients(request.org_role_arn)("organizations", "us-east-1")
            except ReaderRoleError as exc:
                raise DiscoverError(f"cannot list the organization's accounts: {exc}") from None
        else:
            org = own_clients("organizations", "us-east-1")
        listed = list_accounts(org)
        accounts = listed if listed is not None else [own_account]

    results: list[AccountResult] = []
    databases: list[FoundDatabase] = []
    notes: list[str] = []
    for account in dict.fromkeys(accounts):
        if account == own_account:
            clients: Callable[..., Any] = own_clients
        else:
            role = role_arn(account, request.role_name, partition)
            try:
                clients = roles.clients(role)
            except ReaderRoleError as exc:
                results.append(AccountResult(account, "error", f"{exc.args[0]}"))
                continue
        errors: list[str] = []
        for region in request.regions:
            found, failed = _list_region(clients, account, region)
            databases.extend(found)
            errors.extend(failed)
            clusters, note = _list_dsql(clients, account, region)
            databases.extend(clusters)
            notes.extend([note] if note else [])
        results.append(AccountResult(account, "error", "; ".join(errors)) if errors else AccountResult(account, "ok"))
    return Discovery(accounts=tuple(results), databases=tuple(databases), role_name=request.role_name,
                     default_role_name=request.default_role_name, partition=partition, notes=tuple(notes))
