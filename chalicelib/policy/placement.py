"""Where a database lives and how rdsvend reads it: ``account``, ``reader_role`` (or
``defaults.reader_role_name``) and ``resource_id`` of one database entry.

A database's account is its ``account`` key, else its signer role's account, else the
service's own (when the loader was told it). Its roles must be in that account. A database
outside the service's account needs a way to be read: a reader role, or ``host`` + ``port`` +
``resource_id`` (then vending reads nothing from RDS).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from chalicelib.aws.arn import ACCOUNT_ID, RESOURCE_ID, RESOURCE_ID_PREFIX, ROLE_ARN, partition_of_region, role_arn
from chalicelib.errors import PolicyLoadError

__all__ = ["PLACEMENT_KEYS", "Placement", "placement"]

PLACEMENT_KEYS = frozenset({"account", "reader_role", "resource_id"})


@dataclass(frozen=True)
class Placement:
    account: str | None  # None: the service's own, which the loader was not told
    reader_role: str | None
    reader_role_explicit: bool
    resource_id: str | None


def _account_of(arn: str) -> str:
    return arn.split(":", 5)[4]


def _partition_of(arn: str) -> str:
    return arn.split(":", 2)[1]


def placement(spec: Mapping[str, Any], field: str, *, kind: str, region: str, signer_role: str | None,
              host: str | None, port: int | None, service_account: str | None, reader_role_name: str | None,
              fail: Callable[..., PolicyLoadError], string: Callable[..., str],
              needs_read: bool = True) -> Placement:
    """The placement of the database at ``field``, or a load error naming the field.

    ``fail(message, field=...)`` and ``string(value, field)`` are the loader's (so messages and
    the file name are the same as for every other key). ``needs_read=False`` (an Aurora DSQL
    cluster, whose endpoint is known from its id) asks for no way to read a foreign account.
    """
    account = _account(spec, field, signer_role, service_account, fail, string)
    reader_role = spec.get("reader_role")
    explicit = reader_role is not None
    if reader_role is not None:
        reader_role = _reader_role(string(reader_role, f"{field}.reader_role"), field, account, signer_role, fail)
    elif reader_role_name is not None and account is not None:
        partition = _partition_of(signer_role) if signer_role else partition_of_region(region)
        reader_role = role_arn(account, reader_role_name, partition)
    resource_id = spec.get("resource_id")
    if resource_id is not None:
        resource_id = string(resource_id, f"{field}.resource_id")
        if not RESOURCE_ID[kind].fullmatch(resource_id):
            raise fail(f"invalid resource id '{_clip(resource_id)}' (expected "
                       f"{RESOURCE_ID_PREFIX[kind]}... for a {kind})", field=f"{field}.resource_id")
    foreign = account is not None and service_account is not None and account != service_account
    if needs_read and foreign and reader_role is None and (host is None or port is None or resource_id is None):
        missing = [key for key, value in (("host", host), ("port", port), ("resource_id", resource_id))
                   if value is None]
        raise fail(f"the database is in account {account}, not the service's account "
                   f"{service_account}: set reader_role (or defaults.reader_role_name) so rdsvend "
                   f"can read it, or give host, port and resource_id (missing: {', '.join(missing)})",
                   field=f"{field}.reader_role")
    return Placement(account, reader_role, explicit, resource_id)


def _account(spec: Mapping[str, Any], field: str, signer_role: str | None, service_account: str | None,
             fail: Callable[..., PolicyLoadError], string: Callable[..., str]) -> str | None:
    """The database's account: its ``account`` key, else its signer role's, else the service's;
    the signer role must be in it."""
    account = spec.get("account")
    if account is not None:
        if isinstance(account, int) and not isinstance(account, bool):
            raise fail(f"must be a quoted string of 12 digits, not the number {_clip(str(account))}",
                       field=f"{field}.account")
        account = string(account, f"{field}.account")
        if not ACCOUNT_ID.fullmatch(account):
            raise fail(f"invalid account '{_clip(account)}' (expected 12 digits)", field=f"{field}.account")
    elif signer_role is not None:
        account = _account_of(signer_role)
    else:
        account = service_account
    if signer_role is not None and account is not None and _account_of(signer_role) != account:
        raise fail(f"signer role '{_clip(signer_role)}' is in account {_account_of(signer_role)}, "
                   f"not the database's account {account}", field=f"{field}.signer_role")
    return account


def _reader_role(reader_role: str, field: str, account: str | None, signer_role: str | None,
                 fail: Callable[..., PolicyLoadError]) -> str:
    """A ``reader_role`` the policy names: a role ARN in the database's account and the signer's partition."""
    if not ROLE_ARN.fullmatch(reader_role):
        raise fail(f"invalid role ARN '{_clip(reader_role)}'", field=f"{field}.reader_role")
    if account is not None and _account_of(reader_role) != account:
        raise fail(f"reader role '{_clip(reader_role)}' is in account {_account_of(reader_role)}, "
                   f"not the database's account {account}", field=f"{field}.reader_role")
    if signer_role is not None and _partition_of(signer_role) != _partition_of(reader_role):
        raise fail(f"reader role '{_clip(reader_role)}' is in another partition than the signer role",
                   field=f"{field}.reader_role")
    return reader_role


def _clip(text: str, limit: int = 80) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 3] + "..."
