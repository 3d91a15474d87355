"""Grants through the Chalice app (API Gateway events) and through direct invoke: the answers,
bad input as precise 4xx in the one error shape, and a token vended under a grant (its expiry
clipped to the grant's end; refused without a live grant). moto for DynamoDB and RDS."""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

import app as app_module
from chalicelib.aws.clients import ClientFactory
from chalicelib.aws.rds import EndpointResolver
from chalicelib.grants.service import GrantService
from chalicelib.grants.store import DynamoGrantStore, create_grants_table
from chalicelib.identity import identity_from_arn
from chalicelib.policy.loader import load_policy_text
from chalicelib.policy_source import StaticPolicySource
from chalicelib.routes.grants import set_grant_service
from chalicelib.routes.http import set_vending_service
from chalicelib.routes.invoke import handle_vend
from chalicelib.signer import TokenMinter
from chalicelib.vending.pipeline import VendingService
from chalicelib.vending.proof import ProvenCaller
from tests.support.events import load_event
from tests.support.grant_policies import APPROVER, GRANT_POLICY, REQUESTER, STRANGER

ASK = {"database": "orders-prod", "db_user": "orders_owner", "reason": "INC-7 vacuum", "duration_seconds": 120}


@pytest.fixture(scope="module")
def aws() -> Iterator[tuple[Any, ClientFactory]]:
    with mock_aws():
        rds = boto3.client("rds", region_name="us-east-1")
        rds.create_db_instance(DBInstanceIdentifier="orders-prod", Engine="postgres", DBInstanceClass="db.t3.micro",
                               MasterUsername="admin", MasterUserPassword="not-a-real-one", Port=5432,
                               EnableIAMDatabaseAuthentication=True)
        yield boto3.client("dynamodb", region_name="us-east-1"), ClientFactory()


#: the vending and grant services the app is wired with
Services = tuple[VendingService, GrantService]


@pytest.fixture
def services(aws: tuple[Any, ClientFactory], request: pytest.FixtureRequest,
             ) -> Iterator[Services]:
    dynamodb, clients = aws
    table = f"grants-{abs(hash(request.node.name)) % 10**8}"  # a table of its own per test
    create_grants_table(dynamodb, table)
    source = StaticPolicySource(load_policy_text(GRANT_POLICY, "g.yaml"))
    grants = GrantService(store=DynamoGrantStore(dynamodb, table), policy_source=source)
    vend = VendingService(policy_source=source, minter=TokenMinter(), resolver=EndpointResolver(clients),
                          grants=grants)
    set_vending_service(vend)
    set_grant_service(grants)
    yield vend, grants
    set_vending_service(None)
    set_grant_service(None)


def event(method: str, path: str, body: object = None, arn: str = REQUESTER, raw: str | None = None,
          resource: str | None = None, params: dict[str, str] | None = None) -> dict[str, Any]:
    ev = load_event("post_tokens")
    ev.update(httpMethod=method, path=path, resource=resource or path, pathParameters=params)
    ev["requestContext"].update(httpMethod=method, path=path, resourcePath=resource or path)
    ident = ev["requestContext"]["identity"]
    ident.update(userArn=arn, accountId=arn.split(":")[4], principalOrgId="o-abc123def4", sourceIp="10.1.2.3")
    ev["body"] = raw if raw is not None else (json.dumps(body) if body is not None else None)
    return ev


def call(ev: dict[str, Any]) -> tuple[int, Any]:
    answer = app_module.app(ev, None)
    return answer["statusCode"], json.loads(answer["body"])


def act(grant_id: str, verb: str, arn: str = APPROVER, raw: str | None = None) -> tuple[int, Any]:
    return call(event("POST", f"/v1/grants/{grant_id}/{verb}", arn=arn, raw=raw,
                      resource=f"/v1/grants/{{grant_id}}/{verb}", params={"grant_id": grant_id}))


def vend(arn: str = REQUESTER, db_user: str = "orders_owner") -> tuple[int, Any]:
    return call(event("POST", "/v1/tokens", {"database": "orders-prod", "db_user": db_user}, arn=arn))


def test_the_story_over_http_and_the_token_never_outlives_the_grant(services: Services) -> None:
    status, body = vend()
    assert (status, body["error"]["code"]) == (403, "forbidden")  # no grant yet
    status, grant = call(event("POST", "/v1/grants", ASK))
    assert status == 200 and grant["state"] == "pending"
    assert set(grant) >= {"id", "state", "database", "db_user", "requester", "approver", "reason", "starts_at",
                          "ends_at"}
    status, listed = call(event("GET", "/v1/grants", arn=APPROVER))
    assert status == 200 and [g["id"] for g in listed["grants"]] == [grant["id"]]
    status, approved = act(grant["id"], "approve")
    assert (status, approved["state"], approved["approver"]) == (200, "approved", APPROVER)
    status, token = vend()
    assert status == 200, token
    ends = datetime.strptime(approved["ends_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    expires = datetime.strptime(token["expires_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert expires == ends, "the token's end is the grant's, not the signature's 15 minutes"
    assert 0 < token["ttl_seconds"] <= 120
    status, revoked = act(grant["id"], "revoke", arn=REQUESTER)
    assert (status, revoked["state"]) == (200, "revoked")
    status, body = vend()
    assert (status, body["error"]["code"]) == (403, "forbidden")


def test_ordinary_vends_never_read_the_grants_table(services: Services) -> None:
    vend_service, grants = services
    grants.store.table = "no-such-table"  # any read would be a 503
    status, body = vend(arn="arn:aws:iam::111122223333:role/orders-api-prod", db_user="orders_app")
    assert status == 200, body


def test_a_failing_grants_table_is_a_503_never_a_token(services: Services) -> None:
    _vend, grants = services
    grants.store.table = "no-such-table"
    status, body = vend()
    assert (status, body["error"]["code"]) == (503, "upstream_unavailable")


BAD_REQUESTS = {
    "duration over the maximum": ({**ASK, "duration_seconds": 7201}, 400, "invalid_request", "maximum of 7200"),
    "duration zero": ({**ASK, "duration_seconds": 0}, 400, "invalid_request", "'duration_seconds'"),
    "duration negative": ({**ASK, "duration_seconds": -1}, 400, "invalid_request", "'duration_seconds'"),
    "reason missing": ({k: v for k, v in ASK.items() if k != "reason"}, 400, "invalid_request",
                       "missing field 'reason'"),
    "reason over 1 KB": ({**ASK, "reason": "r" * 1025}, 400, "invalid_request", "longer than 1024 bytes"),
    "not an object": ([1, 2], 400, "invalid_request", "must be a JSON object"),
    "unknown database": ({**ASK, "database": "nope"}, 403, "forbidden", "not allowed"),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_grant_requests_are_precise_4xx(services: Services, case: str) -> None:
    body, status, code, text = BAD_REQUESTS[case]
    got_status, got = call(event("POST", "/v1/grants", body))
    assert (got_status, got["error"]["code"]) == (status, code)
    assert text in got["error"]["message"]
    assert set(got["error"]) == {"code", "message", "request_id"}


def test_bad_bodies_and_ids_and_own_approval(services: Services) -> None:
    status, body = call(event("POST", "/v1/grants", raw="{not json"))
    assert (status, body["error"]["code"]) == (400, "invalid_request")
    status, grant = call(event("POST", "/v1/grants", ASK))
    assert status == 200
    for unknown in ("g-00000000000000000000", "nope", "g-" + "f" * 300):
        status, body = act(unknown, "approve")
        assert (status, body["error"]) == (404, {"code": "not_found", "message": "no such grant",
                                                 "request_id": body["error"]["request_id"]})
    status, body = act(grant["id"], "approve", arn=STRANGER)
    assert (status, body["error"]["code"], body["error"]["message"]) == (404, "not_found", "no such grant")
    status, body = act(grant["id"], "approve", arn=REQUESTER)
    assert (status, body["error"]["code"]) == (403, "forbidden")
    assert "requester" in body["error"]["message"]
    status, body = act(grant["id"], "approve", raw='{"extra": 1}')
    assert (status, body["error"]["code"]) == (400, "invalid_request")
    status, _ = act(grant["id"], "deny")
    assert status == 200
    status, body = act(grant["id"], "approve")
    assert (status, body["error"]["code"]) == (409, "conflict")
    assert body["error"]["message"] == f"grant '{grant['id']}' is denied: it cannot be approved"


class FixedVerifier:
    """Stands in for the STS proof check (tested in test_invoke_vend.py): the caller is ``arn``."""

    def __init__(self, arn: str) -> None:
        self.arn = arn

    def verify(self, proof: Any) -> ProvenCaller:
        return ProvenCaller(arn=self.arn, account=self.arn.split(":")[4], user_id="AIDAFIXED",
                            access_key_id="AKIAFIXED")


def invoke(payload: dict[str, Any], arn: str = REQUESTER) -> dict[str, Any]:
    return handle_vend(payload, "inv-1", verifier=FixedVerifier(arn))


def test_the_same_through_direct_invoke(services: Services) -> None:
    proof = {"url": "https://sts.amazonaws.com/", "method": "POST", "headers": {}, "body": ""}
    grant = invoke({"action": "grant_request", **ASK, "identity": proof})
    assert grant["state"] == "pending", grant
    listed = invoke({"action": "grant_list", "identity": proof}, arn=APPROVER)
    assert [g["id"] for g in listed["grants"]] == [grant["id"]]
    approved = invoke({"action": "grant_approve", "grant_id": grant["id"], "identity": proof}, arn=APPROVER)
    assert approved["state"] == "approved"
    token = invoke({"database": "orders-prod", "db_user": "orders_owner", "identity": proof})
    assert token["expires_at"] == approved["ends_at"]
    again = invoke({"action": "grant_approve", "grant_id": grant["id"], "identity": proof}, arn=APPROVER)
    assert again["error"]["code"] == "conflict"
    assert invoke({"action": "grant_revoke", "grant_id": grant["id"], "identity": proof})["state"] == "revoked"


BAD_INVOKES: dict[str, tuple[dict[str, Any], str, str]] = {
    "unknown action": ({"action": "grant_everything"}, "invalid_request", "field 'action' must be one of"),
    "action not a string": ({"action": 7}, "invalid_request", "field 'action'"),
    "missing grant id": ({"action": "grant_approve"}, "invalid_request", "missing field 'grant_id'"),
    "extra field": ({"action": "grant_list", "database": "x"}, "invalid_request", "unknown field 'database'"),
    "unknown grant": ({"action": "grant_deny", "grant_id": "g-11111111111111111111"}, "not_found", "no such grant"),
    "grant id not a string": ({"action": "grant_deny", "grant_id": ["x"]}, "not_found", "no such grant"),
    "duration over": ({"action": "grant_request", **ASK, "duration_seconds": 10**9}, "invalid_request",
                      "'duration_seconds'"),
    "reason too long": ({"action": "grant_request", **ASK, "reason": "x" * 2000}, "invalid_request",
                        "longer than 1024 bytes"),
}


@pytest.mark.parametrize("case", sorted(BAD_INVOKES))
def test_bad_invoke_payloads_are_error_bodies(services: Services, case: str) -> None:
    payload, code, text = BAD_INVOKES[case]
    answer = invoke({**payload, "identity": {"url": "x"}}, arn=APPROVER)
    assert answer["error"]["code"] == code, answer
    assert text in answer["error"]["message"]


class Broken:
    def __getattr__(self, name: str) -> Any:
        raise RuntimeError("boom")


def _no_identity(ev: dict[str, Any]) -> dict[str, Any]:
    ev["requestContext"]["identity"] = {"userArn": None}
    return ev


Stage = Callable[[], dict[str, Any]]


def _scenarios(grants: GrantService | None) -> dict[tuple[str, str], dict[int, Stage]]:
    """(path template, method) -> status -> a function that sets the stage and returns the event
    (``grants`` None: the table only, to be listed and not run)."""
    def live() -> GrantService:
        assert grants is not None, "the scenarios were made to be listed only"
        return grants

    def new_grant() -> str:
        grant_id: str = live().request(identity_from_arn(REQUESTER), ASK, "r")["id"]
        return grant_id

    def on(verb: str, arn: str = APPROVER, raw: str | None = None, grant_id: str | None = None) -> dict[str, Any]:
        gid = grant_id or new_grant()
        return event("POST", f"/v1/grants/{gid}/{verb}", arn=arn, raw=raw,
                     resource=f"/v1/grants/{{grant_id}}/{verb}", params={"grant_id": gid})

    def decided(verb: str) -> dict[str, Any]:
        gid = new_grant()
        live().act(identity_from_arn(APPROVER), gid, "deny", "r")
        return on(verb, grant_id=gid)

    def broken(make: Stage) -> Stage:
        def stage() -> dict[str, Any]:
            ev = make()
            live().store = Broken()  # type: ignore[assignment]  # a store that fails on every use
            return ev
        return stage

    def missing(make: Stage) -> Stage:
        def stage() -> dict[str, Any]:
            ev = make()
            live().store.table = "no-such-table"
            return ev
        return stage

    def unconfigured(make: Stage) -> Stage:
        def stage() -> dict[str, Any]:
            set_grant_service(None)
            set_vending_service(VendingService(policy_source=live().policy_source, minter=TokenMinter(),
                                               resolver=EndpointResolver(ClientFactory())))
            return make()
        return stage

    def post() -> dict[str, Any]:
        return event("POST", "/v1/grants", ASK)

    def get() -> dict[str, Any]:
        return event("GET", "/v1/grants", arn=APPROVER)

    def on_grant(verb: str) -> dict[int, Stage]:
        return {
            200: lambda: on(verb, arn=REQUESTER if verb == "revoke" else APPROVER),
            400: lambda: on(verb, raw="[1]"),
            401: lambda: _no_identity(on(verb)),
            403: (lambda: on(verb, arn=REQUESTER)) if verb != "revoke" else unconfigured(lambda: on("revoke")),
            404: lambda: on(verb, grant_id="g-22222222222222222222"),
            409: lambda: decided(verb),
            500: broken(lambda: on(verb)),
            503: missing(lambda: on(verb)),
        }

    out: dict[tuple[str, str], dict[int, Stage]] = {
        ("/v1/grants", "post"): {200: post, 400: lambda: event("POST", "/v1/grants", raw="[]"),
                                 401: lambda: _no_identity(post()), 403: lambda: event("POST", "/v1/grants", ASK,
                                                                                       arn=STRANGER),
                                 500: broken(post), 503: missing(post)},
        ("/v1/grants", "get"): {200: get, 401: lambda: _no_identity(get()), 403: unconfigured(get),
                                500: broken(get), 503: missing(get)},
    }
    for verb in ("approve", "deny", "revoke"):
        out[(f"/v1/grants/{{grant_id}}/{verb}", "post")] = on_grant(verb)
    return out


def test_every_documented_grant_status_is_what_the_app_answers(aws: tuple[Any, ClientFactory],
                                                               request: pytest.FixtureRequest) -> None:
    from tests.functional.test_openapi import OPENAPI, schema_validator

    dynamodb, clients = aws
    for (path, method), statuses in _scenarios(None).items():
        documented = {int(code) for code in OPENAPI["paths"][path][method]["responses"]}
        assert documented == set(statuses), (path, method)
        for status in statuses:
            table = f"grants-doc-{abs(hash((path, method, status))) % 10**8}"
            create_grants_table(dynamodb, table)
            source = StaticPolicySource(load_policy_text(GRANT_POLICY, "g.yaml"))
            grants = GrantService(store=DynamoGrantStore(dynamodb, table), policy_source=source)
            set_vending_service(VendingService(policy_source=source, minter=TokenMinter(),
                                               resolver=EndpointResolver(clients), grants=grants))
            set_grant_service(grants)
            try:
                answer = app_module.app(_scenarios(grants)[(path, method)][status](), None)
            finally:
                set_vending_service(None)
                set_grant_service(None)
            assert answer["statusCode"] == status, (path, method, status, answer["body"])
            assert answer["headers"]["Cache-Control"] == "no-store"
            spec = OPENAPI["paths"][path][method]["responses"][str(status)]
            if "$ref" in spec:
                spec = OPENAPI["components"]["responses"][spec["$ref"].rsplit("/", 1)[1]]
            schema_validator(spec["content"]["application/json"]["schema"]).validate(json.loads(answer["body"]))
