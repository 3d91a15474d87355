"""Who the caller is: parse and canonicalise the IAM identity API Gateway (or STS) vouches for.

An assumed-role session ``arn:aws:sts::A:assumed-role/R/S`` is the role
``arn:aws:iam::A:role/R`` for matching, with the session name kept for audit. Root and
federated users keep their own kinds so a role or user pattern never matches them by accident.
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from chalicelib.aws.arn import ACCOUNT_ID, PARTITION
from chalicelib.errors import UnauthenticatedError

__all__ = ["CallerIdentity", "identity_from_arn", "identity_from_request_context", "MAX_ARN_LENGTH"]

Kind = Literal["user", "role", "assumed-role", "root", "federated-user"]
MAX_ARN_LENGTH = 2048

_ARN = re.compile(
    rf"arn:(?P<partition>{PARTITION.pattern}):(?P<service>iam|sts)::(?P<account>{ACCOUNT_ID.pattern}):(?P<resource>.+)"
)
_NAME = r"[\w+=,.@-]{1,128}"
_USER = re.compile(rf"user(?P<path>/(?:[\x21-\x7e]*/)?)(?P<name>{_NAME})")
_ROLE = re.compile(rf"role(?P<path>/(?:[\x21-\x7e]*/)?)(?P<name>{_NAME})")
_ASSUMED = re.compile(rf"assumed-role/(?P<name>{_NAME})/(?P<session>[\w+=,.@-]{{1,64}})")
_FEDERATED = re.compile(rf"federated-user/(?P<name>{_NAME})")


@dataclass(frozen=True)
class CallerIdentity:
    arn: str  # as presented
    principal: str  # canonical: what policy patterns match against
    kind: Kind
    account: str
    partition: str = "aws"
    name: str = ""
    session: str | None = None
    org_id: str | None = None
    source_ip: str | None = None

    def to_whoami(self) -> dict[str, Any]:
        return {"principal": self.principal, "arn": self.arn, "account": self.account,
                "org_id": self.org_id, "session": self.session}


def identity_from_arn(
    arn: Any,
    account: Any = None,
    org_id: Any = None,
    source_ip: Any = None,
) -> CallerIdentity:
    """Canonicalise a caller ARN; :class:`UnauthenticatedError` when it is not one we trust."""
    if not isinstance(arn, str) or not arn:
        raise UnauthenticatedError("no caller identity")
    if len(arn) > MAX_ARN_LENGTH:
        raise UnauthenticatedError("caller ARN is too long")
    match = _ARN.fullmatch(arn)
    if match is None:
        raise UnauthenticatedError("caller ARN is not an IAM or STS principal")
    partition, service, acct, resource = match["partition"], match["service"], match["account"], match["resource"]
    if account not in (None, "") and account != acct:
        raise UnauthenticatedError("caller account does not match its ARN")
    org = org_id if isinstance(org_id, str) and org_id else None
    ip = _valid_ip(source_ip)

    def caller(principal: str, kind: Kind, name: str, session: str | None = None) -> CallerIdentity:
        return CallerIdentity(arn=arn, principal=principal, kind=kind, account=acct, partition=partition,
                              name=name, session=session, org_id=org, source_ip=ip)

    if service == "iam":
        if resource == "root":
            return caller(arn, "root", "root")
        if m := _USER.fullmatch(resource):
            return caller(arn, "user", m["name"])
        if m := _ROLE.fullmatch(resource):
            return caller(arn, "role", m["name"])
    else:
        if m := _ASSUMED.fullmatch(resource):
            role_arn = f"arn:{partition}:iam::{acct}:role/{m['name']}"
            return caller(role_arn, "assumed-role", m["name"], m["session"])
        if m := _FEDERATED.fullmatch(resource):
            return caller(arn, "federated-user", m["name"])
    raise UnauthenticatedError("caller ARN is not an IAM or STS principal")


def identity_from_request_context(request_context: Mapping[str, Any] | None) -> CallerIdentity:
    """The caller as API Gateway's IAM authorizer filled ``requestContext.identity``."""
    if not isinstance(request_context, Mapping):
        raise UnauthenticatedError("no caller identity")
    identity = request_context.get("identity")
    if not isinstance(identity, Mapping):
        raise UnauthenticatedError("no caller identity")
    return identity_from_arn(
        identity.get("userArn"),
        account=identity.get("accountId"),
        org_id=identity.get("principalOrgId"),
        source_ip=identity.get("sourceIp"),
    )


def _valid_ip(value: Any) -> str | None:
    if not isinstance(value, str) or not value or len(value) > 64:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None
