"""Grants in DynamoDB (``RDSVEND_GRANTS_TABLE``): one item per grant, every change conditional.

Key ``id``. Indexes: ``by-requester`` (a caller's own grants), ``by-state`` (the pending ones
approvers see), ``by-subject`` (``DATABASE/DB_USER`` then requester: the live grant a vend
needs, and whether any remains when sessions are to be ended). Times are epoch seconds.

Every transition is one ``UpdateItem`` whose condition is the state it starts from, at the
time it is made (``pending_until``/``ends_at`` against now): approving twice, approving a
refused, revoked or expired grant and two approvers racing each give exactly one outcome; the
loser reads the grant back and is told its state. ``purge_at`` is the table's TTL attribute
(a day after the grant ended); nothing relies on when DynamoDB deletes an item, since every
read judges the time itself (:meth:`Grant.state_at`).
"""
from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib.aws.errors import aws_error
from chalicelib.errors import UpstreamUnavailableError
from chalicelib.grants.errors import GrantConflictError, GrantNotFoundError
from chalicelib.grants.model import Action, Grant, State, check_action

__all__ = ["DynamoGrantStore", "TABLE_DEFINITION", "TTL_ATTRIBUTE", "create_grants_table", "RETENTION_SECONDS"]

TTL_ATTRIBUTE = "purge_at"
#: An ended grant stays listable for a day, then DynamoDB's TTL may delete it.
RETENTION_SECONDS = 86400
_MAX_PAGES = 20

#: The table's key schema and indexes: what the deployment templates, the local stack and the
#: tests create (one definition).
TABLE_DEFINITION: dict[str, Any] = {
    "AttributeDefinitions": [
        {"AttributeName": "id", "AttributeType": "S"},
        {"AttributeName": "requester", "AttributeType": "S"},
        {"AttributeName": "state", "AttributeType": "S"},
        {"AttributeName": "subject", "AttributeType": "S"},
        {"AttributeName": "created_at", "AttributeType": "N"},
    ],
    "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
    "GlobalSecondaryIndexes": [
        {"IndexName": "by-requester", "Projection": {"ProjectionType": "ALL"},
         "KeySchema": [{"AttributeName": "requester", "KeyType": "HASH"},
                       {"AttributeName": "created_at", "KeyType": "RANGE"}]},
        {"IndexName": "by-state", "Projection": {"ProjectionType": "ALL"},
         "KeySchema": [{"AttributeName": "state", "KeyType": "HASH"},
                       {"AttributeName": "created_at", "KeyType": "RANGE"}]},
        {"IndexName": "by-subject", "Projection": {"ProjectionType": "ALL"},
         "KeySchema": [{"AttributeName": "subject", "KeyType": "HASH"},
                       {"AttributeName": "requester", "KeyType": "RANGE"}]},
    ],
    "BillingMode": "PAY_PER_REQUEST",
}


def create_grants_table(client: Any, name: str) -> None:
    """Create the grants table with its TTL (tests and the local stack; AWS gets it from the templates)."""
    client.create_table(TableName=name, **TABLE_DEFINITION)
    client.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True,
                                                                         "AttributeName": TTL_ATTRIBUTE})


def _epoch(at: datetime | None) -> int | None:
    return None if at is None else int(at.timestamp())


def _time(value: Any) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(int(value), UTC)


def _item(grant: Grant) -> dict[str, Any]:
    end = grant.ends_at or grant.pending_until
    fields: dict[str, Any] = {
        "id": grant.id, "database": grant.database, "db_user": grant.db_user, "subject": grant.subject,
        "requester": grant.requester, "rule": grant.rule, "reason": grant.reason,
        "duration_seconds": grant.duration_seconds, "state": grant.state,
        "created_at": _epoch(grant.created_at), "pending_until": _epoch(grant.pending_until),
        TTL_ATTRIBUTE: _epoch(end + timedelta(seconds=RETENTION_SECONDS)),
    }
    return {k: _wire(v) for k, v in fields.items()}


def _wire(value: Any) -> dict[str, str]:
    return {"N": str(value)} if isinstance(value, int) else {"S": str(value)}


def _plain(item: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, typed in item.items():
        if "S" in typed:
            out[key] = typed["S"]
        elif "N" in typed:
            out[key] = int(typed["N"])
    return out


def grant_from_item(item: Mapping[str, Any]) -> Grant:
    v = _plain(item)
    created, pending_until = _time(v["created_at"]), _time(v["pending_until"])
    assert created is not None and pending_until is not None  # written by put_new, always present
    return Grant(id=v["id"], database=v["database"], db_user=v["db_user"], requester=v["requester"],
                 rule=v["rule"], reason=v["reason"], duration_seconds=int(v["duration_seconds"]),
                 state=v["state"], created_at=created, pending_until=pending_until,
                 approver=v.get("approver"), decided_at=_time(v.get("decided_at")),
                 starts_at=_time(v.get("starts_at")), ends_at=_time(v.get("ends_at")),
                 revoked_by=v.get("revoked_by"))


#: action -> (target state, condition over the stored item at :now)
_CONDITIONS: dict[Action, tuple[State, str]] = {
    "approve": ("approved", "#s = :pending AND pending_until > :now AND requester <> :actor"),
    "deny": ("denied", "#s = :pending AND pending_until > :now AND requester <> :actor"),
    "revoke": ("revoked", "(#s = :pending AND pending_until > :now) OR (#s = :approved AND ends_at > :now)"),
    "expire": ("expired", "(#s = :pending AND pending_until <= :now) OR (#s = :approved AND ends_at <= :now)"),
}


def _update(grant: Grant, action: Action, actor: str, now: datetime) -> tuple[dict[str, str], dict[str, Any]]:
    """The attributes an action sets besides the state (name -> placeholder) and their values."""
    if action == "approve":
        ends = now + timedelta(seconds=grant.duration_seconds)
        return ({"approver": ":actor", "decided_at": ":now", "starts_at": ":now", "ends_at": ":ends",
                 TTL_ATTRIBUTE: ":purge"},
                {":actor": {"S": actor}, ":ends": _wire(_epoch(ends)),
                 ":purge": _wire(_epoch(ends + timedelta(seconds=RETENTION_SECONDS)))})
    if action == "deny":
        return {"approver": ":actor", "decided_at": ":now"}, {":actor": {"S": actor}}
    if action == "revoke":
        return {"revoked_by": ":by"}, {":by": {"S": actor}}
    return {}, {}


def _already_done(current: Grant, action: Action, actor: str) -> bool:
    """Whether ``current`` is exactly what ``actor`` doing ``action`` writes."""
    if current.state != _CONDITIONS[action][0]:
        return False
    if action in ("approve", "deny"):
        return current.approver == actor
    if action == "revoke":
        return current.revoked_by == actor
    return True


class DynamoGrantStore:
    """Grants in one DynamoDB table; every AWS failure is ``upstream_unavailable`` (dynamodb)."""

    def __init__(self, client: Any, table: str) -> None:
        self.table = table
        self._client = client

    def _call(self, operation: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._client, operation)(TableName=self.table, **kwargs)
        except Exception as exc:
            error = aws_error(exc)
            if error is None or error.code == "ConditionalCheckFailedException":
                raise
            raise UpstreamUnavailableError("dynamodb", retry_after=2,
                                           detail=f"{operation}: {error.code}") from None

    def put_new(self, grant: Grant) -> None:
        """Write a new grant. A retried put whose first attempt was written (botocore retries a
        call whose answer was lost) finds its own item: that is success, not a conflict."""
        try:
            self._call("put_item", Item=_item(grant), ConditionExpression="attribute_not_exists(id)")
        except Exception as exc:
            error = aws_error(exc)
            if error is None or error.code != "ConditionalCheckFailedException":
                raise
            stored = self.get(grant.id)
            if stored is None or (stored.requester, _epoch(stored.created_at)) != (grant.requester,
                                                                                  _epoch(grant.created_at)):
                raise

    def get(self, grant_id: str) -> Grant | None:
        answer = self._call("get_item", Key={"id": {"S": grant_id}}, ConsistentRead=True)
        item = answer.get("Item")
        return None if item is None else grant_from_item(item)

    def transition(self, grant: Grant, action: Action, actor: str, now: datetime) -> Grant:
        """Move ``grant`` by ``action`` if the stored item still allows it at ``now``; otherwise
        :class:`GrantConflictError` with the state it is in (or not found if it is gone)."""
        target, condition = _CONDITIONS[action]
        sets, values = _update(grant, action, actor, now)
        values.update({":target": {"S": target}, ":pending": {"S": "pending"}, ":approved": {"S": "approved"},
                       ":now": {"N": str(_epoch(now))}})
        if ":actor" in condition:
            values[":actor"] = {"S": actor}
        expression = "SET #s = :target" + "".join(f", {k} = {v}" for k, v in sets.items())
        used = set(re.findall(r":\w+", condition + " " + expression))
        values = {k: v for k, v in values.items() if k in used}  # DynamoDB refuses unused values
        try:
            answer = self._call("update_item", Key={"id": {"S": grant.id}}, UpdateExpression=expression,
                                ConditionExpression=condition, ExpressionAttributeNames={"#s": "state"},
                                ExpressionAttributeValues=values, ReturnValues="ALL_NEW")
        except Exception as exc:
            error = aws_error(exc)
            if error is None or error.code != "ConditionalCheckFailedException":
                raise
            current = self.get(grant.id)
            if current is None:
                raise GrantNotFoundError(grant.id) from None
            if _already_done(current, action, actor):  # a retried update whose first attempt was written
                return current
            check_action(current, action, actor, now)  # raises the precise refusal
            raise GrantConflictError(grant.id, current.state_at(now), action) from None
        return grant_from_item(answer["Attributes"])

    def _query(self, index: str, condition: str, values: dict[str, Any]) -> Iterator[Grant]:
        kwargs: dict[str, Any] = {"IndexName": index, "KeyConditionExpression": condition,
                                  "ExpressionAttributeValues": values}
        if "#s" in condition:
            kwargs["ExpressionAttributeNames"] = {"#s": "state"}
        for _page in range(_MAX_PAGES):
            answer = self._call("query", **kwargs)
            yield from (grant_from_item(item) for item in answer.get("Items", []))
            last = answer.get("LastEvaluatedKey")
            if not last:
                return
            kwargs["ExclusiveStartKey"] = last

    def by_requester(self, principal: str) -> list[Grant]:
        return list(self._query("by-requester", "requester = :p", {":p": {"S": principal}}))

    def in_state(self, state: State) -> list[Grant]:
        return list(self._query("by-state", "#s = :s", {":s": {"S": state}}))

    def for_subject(self, database: str, db_user: str, requester: str | None = None) -> list[Grant]:
        values: dict[str, Any] = {":subject": {"S": f"{database}/{db_user}"}}
        condition = "subject = :subject"
        if requester is not None:
            condition += " AND requester = :p"
            values[":p"] = {"S": requester}
        return list(self._query("by-subject", condition, values))
