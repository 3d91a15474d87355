"""The direct-invoke function observed as Lambda runs it: Lambda imports the handler's module
(``chalicelib.routes.invoke``), never ``app.py``, so the app's middleware is not around it.
A child process does exactly that, with moto's STS in server mode verifying each caller's
identity proof, and invokes the handler 100 times, as one warm Lambda instance would. What
it writes on stdout (log lines, audit lines, EMF metric documents) is what CloudWatch Logs
would receive.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e  # its child process starts a moto server: not in the fast tier

PROJECT = Path(__file__).resolve().parents[2]
INVOKES = 100

CHILD = r"""
import json, sys, textwrap
from types import SimpleNamespace

import chalicelib.routes.invoke as handler_module  # what Lambda imports for the function 'vend'
assert "app" not in sys.modules, "the test must not import app.py: Lambda does not"

import boto3
from moto.server import ThreadedMotoServer

from chalicelib.policy.loader import load_policy_text
from chalicelib.policy_source import StaticPolicySource
from chalicelib.routes.http import set_vending_service
from chalicelib.signer import TokenMinter
from chalicelib.vending.pipeline import VendingService
from chalicelib.vending.proof import ProofConfig
from chalicelib.vending.verifier import StsVerifier
from rdsvend import invoke_payload

N = int(sys.argv[1])
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
host, port = server.get_host_and_port()
url = f"http://{host}:{port}"
admin = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
admin.client("iam", endpoint_url=url).create_role(RoleName="invoker", AssumeRolePolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                              "Principal": {"AWS": "arn:aws:iam::123456789012:root"}}]}))
creds = admin.client("sts", endpoint_url=url).assume_role(
    RoleArn="arn:aws:iam::123456789012:role/invoker", RoleSessionName="fn")["Credentials"]
caller = boto3.Session(aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                       aws_session_token=creds["SessionToken"], region_name="us-east-1")
policy = load_policy_text(textwrap.dedent('''
    version: 1
    databases:
      orders-prod:
        engine: postgres
        region: us-east-1
        instance: orders-prod
        host: orders-prod.abc.us-east-1.rds.amazonaws.com
        port: 5432
        users:
          orders_app: {auth: iam, tier: service-user}
    rules:
      - id: invokers
        effect: allow
        principals: ["arn:aws:iam::123456789012:role/invoker"]
        databases: [orders-prod]
        db_users: [orders_app]
'''), "observability.yaml")
resolver = SimpleNamespace(resolve=lambda db: SimpleNamespace(host=db.host, port=db.port, resource_id=None))
set_vending_service(VendingService(policy_source=StaticPolicySource(policy), minter=TokenMinter(cache_tokens=False),
                                   resolver=resolver))
handler_module.set_verifier(StsVerifier(ProofConfig(sts_endpoint=url, server_id="rdsvend-test")))
payloads = [invoke_payload("orders-prod", "orders_app", "rdsvend-test", session=caller, endpoint_url=url)
            for _ in range(N)]
payloads.append(invoke_payload("orders-prod", "postgres", "rdsvend-test", session=caller, endpoint_url=url))
print("--- invocations start", flush=True)
answers = []
for i, payload in enumerate(payloads):
    context = SimpleNamespace(aws_request_id=f"lambda-req-{i:03d}", function_name="rdsvend-dev-vend")
    answers.append(handler_module.vend(payload, context))
print("--- invocations end", flush=True)
server.stop()
sys.stderr.write(json.dumps({"vended": sum("token" in a for a in answers[:N]),
                             "last": answers[-1].get("error", {}).get("code")}) + "\n")
"""


def run_child() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT), str(PROJECT / "client")]),
           "POWERTOOLS_SERVICE_NAME": "rdsvend", "POWERTOOLS_METRICS_NAMESPACE": "rdsvend"}
    env.pop("POWERTOOLS_METRICS_DISABLED", None)
    done = subprocess.run([sys.executable, "-c", CHILD, str(INVOKES)], cwd=PROJECT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout.split("--- invocations start\n", 1)[1].split("--- invocations end\n", 1)[0]
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return lines, json.loads(done.stderr.strip().splitlines()[-1])


def test_each_direct_invoke_flushes_its_metrics_and_carries_its_lambda_request_id() -> None:
    lines, summary = run_child()
    assert summary == {"vended": INVOKES, "last": "forbidden"}
    request_ids = [f"lambda-req-{i:03d}" for i in range(INVOKES)]

    # One EMF document per vend, flushed by the invocation that vended (not when Powertools'
    # 100-value buffer happens to fill), each counting exactly one token.
    flushed = [line for line in lines if "_aws" in line and "TokensVended" in line]
    assert len(flushed) == INVOKES
    assert all(line["TokensVended"] in (1.0, [1.0]) for line in flushed)
    assert all(line["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "rdsvend" for line in flushed)

    # One audit line per decision, correlated by the Lambda request id of its own invocation.
    audits = [line for line in lines if line.get("event") == "vend"]
    assert [a["correlation_id"] for a in audits[:INVOKES]] == request_ids
    assert [a["request_id"] for a in audits[:INVOKES]] == request_ids
    assert all(a["decision"] == "allow" and a["channel"] == "invoke" for a in audits[:INVOKES])
    assert len({a["correlation_id"] for a in audits}) == INVOKES + 1

    # The refusal is audited, counted by reason and correlated the same way.
    refused = audits[INVOKES]
    assert (refused["decision"], refused["correlation_id"]) == ("deny", f"lambda-req-{INVOKES:03d}")
    denied = [line for line in lines if "_aws" in line and "RequestsDenied" in line]
    assert len(denied) == 1 and denied[0]["reason"] == refused["reason"]

    # The function's own log lines carry it too: every "caller proven" line, in order.
    proven = [line["correlation_id"] for line in lines if line.get("message") == "direct invoke caller proven"]
    assert proven == [*request_ids, f"lambda-req-{INVOKES:03d}"]

    # Nothing signed or minted reaches stdout.
    text = "\n".join(json.dumps(line) for line in lines)
    assert "X-Amz-Signature" not in text and "Action=connect" not in text and "Credential=" not in text
