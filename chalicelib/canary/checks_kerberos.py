"""Checks for ``auth: kerberos`` users: ``iam.directory_role`` and ``db.rds_ad``
(``rds.domain_joined`` lives with the other RDS checks).

The directory role is the IAM role RDS uses to reach the directory (``DomainMemberships[].
IAMRoleName``): it needs the AWS managed policy ``AmazonRDSDirectoryServiceAccess`` and a
trust policy that lets ``rds.amazonaws.com`` assume it.
"""
from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from chalicelib.aws.errors import aws_error
from chalicelib.aws.probe import AwsClients, probe
from chalicelib.canary.checks_rds import RdsResource
from chalicelib.canary.model import CheckResult, errored, failed, passed, skipped, warned
from chalicelib.engines.base import DbConnectError
from chalicelib.engines.postgres_catalog import RoleFacts
from chalicelib.errors import ProbeError

__all__ = [
    "DIRECTORY_POLICY",
    "DirectoryRole",
    "DirectoryRoleFacts",
    "BotoDirectoryRoleFacts",
    "InMemoryDirectoryRoleFacts",
    "check_directory_role",
    "check_rds_ad",
]

DIRECTORY_POLICY = "AmazonRDSDirectoryServiceAccess"


@dataclass(frozen=True)
class DirectoryRole:
    name: str
    attached_policy_arns: tuple[str, ...]
    trusts_rds: bool


class DirectoryRoleFacts(Protocol):
    def describe(self, role_name: str, account: str | None = None) -> DirectoryRole | None:
        """The role (in ``account``, the database's, when known), None if it does not exist;
        :class:`ProbeError` if IAM could not be read."""


class InMemoryDirectoryRoleFacts:
    def __init__(self, roles: Mapping[str, DirectoryRole | Exception]) -> None:
        self.roles = dict(roles)

    def describe(self, role_name: str, account: str | None = None) -> DirectoryRole | None:
        value = self.roles.get(role_name)
        if isinstance(value, Exception):
            raise value
        return value


def _trusts_rds(document: Any) -> bool:
    if isinstance(document, str):
        document = json.loads(urllib.parse.unquote(document))
    statements = document.get("Statement", []) if isinstance(document, Mapping) else []
    if isinstance(statements, Mapping):
        statements = [statements]
    for stmt in statements:
        if not isinstance(stmt, Mapping) or stmt.get("Effect") != "Allow":
            continue
        principal = stmt.get("Principal") or {}
        services = principal.get("Service", []) if isinstance(principal, Mapping) else []
        services = [services] if isinstance(services, str) else list(services)
        if any(s in ("rds.amazonaws.com", "directoryservice.rds.amazonaws.com") for s in services):
            return True
    return False


class BotoDirectoryRoleFacts:
    """``iam_for(account)`` (:meth:`chalicelib.canary.accounts.AccountReaders.iam_for`), when
    given, reads the role in the database's account (through its reader role when needed)."""

    def __init__(self, clients: AwsClients, iam_for: Callable[[str], tuple[Any, Any]] | None = None) -> None:
        self._clients = clients
        self._iam_for = iam_for

    def describe(self, role_name: str, account: str | None = None) -> DirectoryRole | None:
        if self._iam_for is not None and account:
            iam = self._iam_for(account)[0]  # ProbeError when the reader role cannot be assumed
        else:
            iam = self._clients.client("iam")
        try:
            with probe("iam", "GetRole"):
                role = iam.get_role(RoleName=role_name)["Role"]
            arns: list[str] = []
            with probe("iam", "ListAttachedRolePolicies"):
                for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=role_name):
                    arns.extend(p["PolicyArn"] for p in page.get("AttachedPolicies", []))
        except Exception as exc:
            error = aws_error(exc)
            if error is not None and error.not_found:  # probe() lets "no such role" through
                return None
            raise
        return DirectoryRole(role_name, tuple(arns), _trusts_rds(role.get("AssumeRolePolicyDocument", {})))


def check_directory_role(resource: RdsResource | None,
                         role: DirectoryRole | ProbeError | None) -> CheckResult:
    cid = "iam.directory_role"
    if resource is None:
        return skipped(cid, "not checked: rds.found did not describe the resource")
    memberships = [d for d in resource.domains if d.iam_role_name]
    if not memberships:
        return skipped(cid, "not checked: the resource names no directory IAM role "
                       "(see rds.domain_joined)")
    name = memberships[0].iam_role_name
    if isinstance(role, ProbeError):
        return errored(cid, f"could not read IAM role {name}: {role.cause}",
                       "let the canary call iam:GetRole and iam:ListAttachedRolePolicies, then "
                       "re-run", role=name, cause=role.cause)
    if role is None:
        return failed(cid, f"directory IAM role {name} does not exist",
                      f"create role {name} trusted by rds.amazonaws.com with the managed policy "
                      f"{DIRECTORY_POLICY}, or point the domain membership at one", role=name)
    return _directory_role_verdict(cid, name, role)


def _directory_role_verdict(cid: str, name: str | None, role: DirectoryRole) -> CheckResult:
    """Whether an existing directory role lets RDS reach the directory: the managed policy, and trust."""
    has_policy = any(arn.endswith(f"/{DIRECTORY_POLICY}") for arn in role.attached_policy_arns)
    details = {"role": name, "attached_policies": list(role.attached_policy_arns),
               "trusts_rds": role.trusts_rds}
    if not has_policy:
        return failed(cid, f"directory IAM role {name} lacks {DIRECTORY_POLICY}: RDS cannot reach "
                      "the directory and Kerberos logins fail",
                      f"aws iam attach-role-policy --role-name {name} --policy-arn "
                      f"arn:aws:iam::aws:policy/service-role/{DIRECTORY_POLICY}", **details)
    if not role.trusts_rds:
        return failed(cid, f"directory IAM role {name} does not trust rds.amazonaws.com",
                      f"add rds.amazonaws.com as a trusted service principal of {name}", **details)
    return passed(cid, f"directory IAM role {name} has {DIRECTORY_POLICY}", **details)


def check_rds_ad(user: str, facts: RoleFacts | DbConnectError | None, why: str = "") -> CheckResult:
    cid = "db.rds_ad"
    if facts is None:
        return skipped(cid, f"not checked: {why or 'no database session'}")
    if isinstance(facts, DbConnectError):
        return errored(cid, f"could not read the catalogs: {facts.message}", error_kind=facts.kind)
    if not facts.exists:
        return failed(cid, f"role {user} does not exist in the database",
                      f"CREATE USER \"{user}\" WITH LOGIN; GRANT rds_ad TO \"{user}\"; (the name "
                      "must match the Kerberos principal, e.g. user@EXAMPLE.COM)", role=user)
    if not facts.rds_ad_exists:
        return failed(cid, "the rds_ad role does not exist: Kerberos authentication is not set up "
                      "on this database", "join the instance to a directory (rds.domain_joined)",
                      role=user)
    return _rds_ad_membership(cid, user, facts)


def _rds_ad_membership(cid: str, user: str, facts: RoleFacts) -> CheckResult:
    """Whether an existing role logs in by Kerberos: a member of rds_ad, and of rds_ad alone."""
    if not facts.in_rds_ad:
        return failed(cid, f"{user} is not a member of rds_ad: Kerberos logins fail",
                      f"GRANT rds_ad TO {user};", role=user)
    if facts.in_rds_iam:
        return warned(cid, f"{user} is in rds_ad, but also in rds_iam: RDS allows one method "
                      "per user", f"REVOKE {(facts.rds_iam_path or ('rds_iam',))[0]} FROM {user};",
                      role=user, path=list(facts.rds_ad_path or ()))
    return passed(cid, f"{user} is a member of rds_ad", role=user, path=list(facts.rds_ad_path or ()))
