"""The OpenAPI document matches the app: routes, methods, authorizers, status codes, bodies."""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from moto import mock_aws
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource

import app as app_module
from chalicelib.aws.clients import ClientFactory
from chalicelib.aws.rds import EndpointResolver
from chalicelib.policy.loader import load_policy_text
from chalicelib.policy_source import StaticPolicySource
from chalicelib.routes import http
from chalicelib.signer import TokenMinter
from chalicelib.vending.pipeline import VendingService
from chalicelib.vending.ratelimit import RateLimiter
from devtools.local.gateway import Gateway
from tests.support.events import load_event, token_event
from tests.support.policies import POLICY

OPENAPI = yaml.safe_load((Path(__file__).resolve().parents[2] / "openapi.yaml").read_text())


def test_document_is_valid_openapi() -> None:
    validate(OPENAPI)


def test_app_routes_and_methods_match_the_document() -> None:
    app_routes = {(path, method.lower()) for path, methods in app_module.app.routes.items() for method in methods}
    documented = {(path, method) for path, item in OPENAPI["paths"].items() for method in item}
    assert app_routes == documented
    for path, methods in app_module.app.routes.items():
        for entry in methods.values():
            assert type(entry.authorizer).__name__ == "IAMAuthorizer", path


class Broken:
    def mint(self, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    def index(self) -> Any:
        raise RuntimeError("boom")


def service(**overrides: Any) -> VendingService:
    args: dict[str, Any] = dict(policy_source=StaticPolicySource(load_policy_text(POLICY, "t.yaml")),
                                minter=TokenMinter(), resolver=EndpointResolver(ClientFactory()))
    args.update(overrides)
    return VendingService(**args)


def no_identity(ev: dict[str, Any]) -> dict[str, Any]:
    ev["requestContext"]["identity"] = {"userArn": None}
    return ev


def dba(ev: dict[str, Any]) -> dict[str, Any]:
    ev["requestContext"]["identity"]["userArn"] = "arn:aws:sts::111122223333:assumed-role/dba-x/s"
    return ev


#: (path, method) -> status -> (the event, the service's overrides)
SCENARIOS: dict[tuple[str, str], dict[int, tuple[Callable[[], dict[str, Any]], dict[str, Any]]]] = {
    ("/v1/tokens", "post"): {
        200: (lambda: token_event(), {}),
        400: (lambda: token_event(raw="[]"), {}),
        401: (lambda: no_identity(token_event()), {}),
        403: (lambda: token_event(ip="192.0.2.1"), {}),
        429: (lambda: token_event(), {"rate_limiter": RateLimiter(0.001, 1), "_twice": True}),
        500: (lambda: token_event(), {"minter": Broken()}),
        503: (lambda: dba(token_event({"database": "ghost", "db_user": "ghost_app"})), {}),
    },
    ("/v1/databases", "get"): {
        200: (lambda: load_event("get_databases"), {}),
        401: (lambda: no_identity(load_event("get_databases")), {}),
        403: (lambda: load_event("get_databases"), {"policy_source": "bad"}),
        500: (lambda: load_event("get_databases"), {"policy_source": Broken()}),
    },
    ("/v1/whoami", "get"): {
        200: (lambda: load_event("get_whoami"), {}),
        401: (lambda: no_identity(load_event("get_whoami")), {}),
        500: (lambda: load_event("get_whoami"), {"_break_identity": True}),
    },
}


@pytest.fixture(scope="module")
def aws() -> Iterator[None]:
    with mock_aws():
        boto3.client("rds", region_name="us-east-1").create_db_instance(
            DBInstanceIdentifier="orders-prod", Engine="postgres", DBInstanceClass="db.t3.micro",
            MasterUsername="admin", MasterUserPassword="not-a-real-one", EnableIAMDatabaseAuthentication=True)
        yield


GATEWAY_ONLY = {"GatewayRefused"}


def documented_response(path: str, method: str, status: int) -> dict[str, Any]:
    spec: dict[str, Any] = OPENAPI["paths"][path][method]["responses"][str(status)]
    if "$ref" in spec:
        spec = OPENAPI["components"]["responses"][spec["$ref"].rsplit("/", 1)[1]]
    return spec


def _in_spec(schema: Any) -> Any:
    """``schema`` with its local references pointed into the whole document."""
    if isinstance(schema, dict):
        return {k: ("urn:spec" + v if k == "$ref" and v.startswith("#") else _in_spec(v)) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_in_spec(item) for item in schema]
    return schema


def schema_validator(schema: Any) -> OAS30Validator:
    registry = Registry().with_resource("urn:spec", Resource.opaque(OPENAPI))
    return OAS30Validator(_in_spec(schema), registry=registry)


def test_every_documented_status_is_what_the_app_answers(aws: None, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    for (path, method), statuses in SCENARIOS.items():
        responses = OPENAPI["paths"][path][method]["responses"]
        documented = {int(code) for code, spec in responses.items() if spec.get("$ref", "").split("/")[-1]
                      not in GATEWAY_ONLY}  # API Gateway's own answers: tested on the local gateway
        assert documented == set(statuses), (path, method)
        for status, (make_event, given) in statuses.items():
            overrides = dict(given)
            twice = overrides.pop("_twice", False)
            broken_identity = overrides.pop("_break_identity", False)
            if overrides.get("policy_source") == "bad":
                bad = tmp_path / "bad.yaml"
                bad.write_text("version: 1\n")
                from chalicelib.policy_source import FilePolicySource

                overrides["policy_source"] = FilePolicySource(bad)
            http.set_vending_service(service(**overrides))
            if broken_identity:
                monkeypatch.setattr(http, "identity_from_request_context", Broken().index)
            try:
                if twice:
                    app_module.app(make_event(), None)
                answer = app_module.app(make_event(), None)
            finally:
                http.set_vending_service(None)
                monkeypatch.undo()
            assert answer["statusCode"] == status, (path, method, status, answer["body"])
            assert answer["headers"]["Cache-Control"] == "no-store"
            spec_response = OPENAPI["paths"][path][method]["responses"][str(status)]
            if "$ref" in spec_response:
                spec_response = OPENAPI["components"]["responses"][spec_response["$ref"].rsplit("/", 1)[1]]
            schema = spec_response["content"]["application/json"]["schema"]
            schema_validator(schema).validate(json.loads(answer["body"]))
            for header in spec_response.get("headers", {}):
                assert header in answer["headers"], (path, status, header)


# -- API Gateway's own answers, as the local gateway gives them, are documented too -----------------
@pytest.fixture(scope="module")
def local_gateway() -> Iterator[Gateway]:
    from devtools.local.sigv4 import StaticSecretLookup
    from tests.functional.test_local_gateway import USER

    gateway = Gateway(app_module.app, StaticSecretLookup([USER]), region="us-east-1", account="222222222222",
                      org_id_of=lambda account: None, caller_id_of=lambda credential: "ID")
    gateway.start()
    yield gateway
    gateway.stop()


@pytest.mark.parametrize(("method", "path", "signed"), [
    ("POST", "/v1/tokens", False), ("GET", "/v1/databases", False), ("GET", "/v1/whoami", False),
    ("GET", "/v1/whoami", "bad"), ("TRACE", "/v1/whoami", False), ("TRACE", "/v1/whoami", "bad"),
])
def test_the_gateways_own_refusals_are_documented(local_gateway: Gateway, method: str, path: str,
                                                  signed: bool | str) -> None:
    import requests

    from tests.functional.test_local_gateway import call

    if signed:
        response = call(local_gateway, method, path, secret="w" * 40)
    else:
        response = requests.request(method, local_gateway.url + path, timeout=10)
    assert response.status_code == 403, response.text  # never 401, never a 501 HTML page
    assert response.headers["Content-Type"] == "application/json" and response.headers["x-amzn-ErrorType"]
    documented_method = method.lower() if method.lower() in OPENAPI["paths"][path] else "get"
    spec = documented_response(path, documented_method, 403)
    schema_validator(spec["content"]["application/json"]["schema"]).validate(response.json())
    assert "TRACE" in OPENAPI["info"]["description"] and "never a 401" in OPENAPI["info"]["description"]
