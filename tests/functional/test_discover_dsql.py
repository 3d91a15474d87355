"""``rdsvend discover`` lists Aurora DSQL clusters (moto's DSQL backend), ready to paste as
``engine: dsql`` databases that load."""
from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from click.testing import CliRunner
from moto import mock_aws

from chalicelib.policy.loader import load_policy_text
from devtools.cli.main import cli


@pytest.fixture
def clusters(aws_env: Any) -> Any:
    with mock_aws():
        boto3.client("organizations", region_name="us-east-1").create_organization(FeatureSet="ALL")
        dsql = boto3.client("dsql", region_name="us-east-1")
        ledger = dsql.create_cluster(deletionProtectionEnabled=False)
        dsql.get_cluster(identifier=ledger["identifier"])  # moto: CREATING -> ACTIVE on the next read
        fresh = dsql.create_cluster(deletionProtectionEnabled=True)
        for name in ("RDSVEND_POLICY", "RDSVEND_ORG_ROLE_ARN", "AWS_PROFILE"):
            aws_env.delenv(name, raising=False)
        yield {"ledger": ledger["identifier"], "fresh": fresh["identifier"]}


def test_json_lists_dsql_clusters(clusters: dict[str, str]) -> None:
    result = CliRunner().invoke(cli, ["discover", "--format", "json"])
    assert result.exit_code == 0, result.output
    found = {d["identifier"]: d for d in json.loads(result.stdout)["databases"] if d["engine"] == "dsql"}
    assert set(found) == set(clusters.values())
    ledger = found[clusters["ledger"]]
    assert ledger["host"] == f"{clusters['ledger']}.dsql.us-east-1.on.aws" and ledger["port"] == 5432
    assert ledger["iam_auth"] is True and ledger["flags"] == [] and ledger["resource_id"] is None


def test_yaml_is_a_policy_block_that_loads(clusters: dict[str, str]) -> None:
    result = CliRunner().invoke(cli, ["discover", "--format", "yaml"])
    assert result.exit_code == 0, result.output
    block = result.stdout.replace("users: {}", "users: {admin: {auth: iam}}")
    policy = load_policy_text(block + "rules: []\n", "discovered.yaml")
    dsql = [db for db in policy.databases.values() if db.is_dsql]
    assert sorted(db.identifier for db in dsql) == sorted(clusters.values())
    assert all(db.host == f"{db.identifier}.dsql.us-east-1.on.aws" for db in dsql)
