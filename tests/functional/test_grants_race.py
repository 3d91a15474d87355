"""Approvers racing in threads, against a DynamoDB that, like the real one, applies each
request atomically (moto's app behind a single-threaded server: moto's in-process backend
does not serialize concurrent conditional writes, DynamoDB does)."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

from chalicelib.grants.errors import GrantConflictError
from chalicelib.grants.model import Action
from chalicelib.grants.service import GrantService
from chalicelib.grants.store import DynamoGrantStore, create_grants_table
from chalicelib.identity import identity_from_arn
from chalicelib.policy.loader import load_policy_text
from chalicelib.policy_source import StaticPolicySource
from tests.support.grant_policies import APPROVER, DEPUTY, GRANT_POLICY, REQUESTER

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def dynamodb_url() -> Iterator[str]:
    server = make_server("127.0.0.1", 0, DomainDispatcherApplication(create_backend_app), threaded=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


def client(url: str) -> Any:
    return boto3.Session(aws_access_key_id="AKIDGRANTRACE", aws_secret_access_key="grant-race-secret",
                         region_name="us-east-1").client("dynamodb", endpoint_url=url)


def service(url: str) -> GrantService:
    """One service per racer, each with its own client, as separate Lambda instances have."""
    return GrantService(store=DynamoGrantStore(client(url), "grants-race"),
                        policy_source=StaticPolicySource(load_policy_text(GRANT_POLICY, "g.yaml")))


def _race(svc: GrantService, arn: str, action: Action, grant_id: str, barrier: threading.Barrier,
          outcomes: list[str]) -> None:
    barrier.wait()
    try:
        outcomes.append(svc.act(identity_from_arn(arn), grant_id, action, "r")["state"])
    except GrantConflictError:
        outcomes.append("conflict")


def test_racing_approvers_get_exactly_one_outcome(dynamodb_url: str) -> None:
    create_grants_table(client(dynamodb_url), "grants-race")
    asker = service(dynamodb_url)
    racers = [(service(dynamodb_url), arn, action) for arn, action in
              ((APPROVER, "approve"), (DEPUTY, "approve"), (APPROVER, "deny"), (DEPUTY, "deny"))]
    for _round in range(4):
        grant = asker.request(identity_from_arn(REQUESTER), {
            "database": "orders-prod", "db_user": "orders_owner", "reason": "race", "duration_seconds": 600}, "r")
        outcomes: list[str] = []
        barrier = threading.Barrier(len(racers))

        threads = [threading.Thread(target=_race, args=(*racer, grant["id"], barrier, outcomes))
                   for racer in racers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(outcomes).count("conflict") == 3, outcomes
        (winner,) = [o for o in outcomes if o != "conflict"]
        stored = asker.store.get(grant["id"])
        assert stored is not None and stored.state == winner
