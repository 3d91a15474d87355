"""Direct invoke on the local stack: Lambda's Invoke API for ``rdsvend-local-vend`` at
``AWS_ENDPOINT_URL_LAMBDA``, the real ``vend`` handler behind it, identity proofs checked by
the local AWS's STS. The README's example runs as written in a ``local env`` shell.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from devtools.local.stack import LocalStack
from rdsvend import invoke_payload
from tests.support.local_shell import shell_env

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
FUNCTION = "rdsvend-local-vend"


def readme_invoke_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    (block,) = [str(b) for b in blocks if "invoke_payload(" in b]
    return block


def lambda_client(stack: LocalStack, caller: str = "allowed", **config: Any) -> tuple[boto3.session.Session, Any]:
    keys = stack.keys(caller)
    session = boto3.session.Session(aws_access_key_id=keys.access_key_id,
                                    aws_secret_access_key=keys.secret_access_key, region_name=stack.info.region)
    return session, session.client("lambda", endpoint_url=stack.info.lambda_url,
                                   config=Config(retries={"max_attempts": 1}, **config))


def invoke(stack: LocalStack, payload: Any, caller: str = "allowed", function: str = FUNCTION) -> tuple[int, Any]:
    _session, client = lambda_client(stack, caller)
    answer = client.invoke(FunctionName=function, Payload=json.dumps(payload).encode())
    return answer["StatusCode"], json.loads(answer["Payload"].read())


def proof_payload(stack: LocalStack, database: str, db_user: str, caller: str = "allowed",
                  server_id: str | None = None) -> dict[str, Any]:
    session, _client = lambda_client(stack, caller)
    return invoke_payload(database, db_user, server_id or stack.info.server_id, session=session,
                          endpoint_url=stack.info.moto_url)


def test_the_readme_example_runs_as_written_in_a_local_env_shell(local_stack: LocalStack, tmp_path: Path) -> None:
    example = tmp_path / "example.py"
    example.write_text(readme_invoke_example())
    env = shell_env(local_stack, "caller")
    assert env["AWS_ENDPOINT_URL_LAMBDA"] == local_stack.info.lambda_url
    assert env["RDSVEND_VEND_FUNCTION"] == FUNCTION
    assert env["RDSVEND_SERVER_ID"] == "rdsvend-local.222222222222"  # rdsvend-STAGE.ACCOUNT, as deployed
    done = subprocess.run([sys.executable, str(example)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    rule, expires_at = done.stdout.split()
    assert rule == "billing-api"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", expires_at)


def test_the_example_server_id_matches_what_a_deployment_configures() -> None:
    from devtools.deploy.settings import load_chalice_config, load_deploy_settings
    from devtools.deploy.stack import stack_environment, stack_plan

    # The stack sets it from the account it is deployed to: the prod stage's, in policies/deploy.yaml.
    deploy = load_deploy_settings(REPO / "policies" / "deploy.yaml", "prod")
    plan = stack_plan(load_chalice_config(REPO), "prod", deploy)
    prod = stack_environment(plan, "vend", account=deploy.account, topic=None)["RDSVEND_SERVER_ID"]
    assert prod == "rdsvend-prod.111122223333"
    example = readme_invoke_example()
    assert prod in example and "rdsvend-prod-vend" in example


def test_a_direct_invoke_vends_a_token_that_logs_in(local_stack: LocalStack) -> None:
    import psycopg

    status, body = invoke(local_stack, proof_payload(local_stack, "billing-local", "billing_app"))
    assert status == 200 and body["rule"] == "billing-api", body
    with psycopg.connect(host=body["host"], port=body["port"], dbname=body["dbname"], user="billing_app",
                         password=body["token"], sslmode="verify-full", sslrootcert=local_stack.ca_path,
                         connect_timeout=10) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("billing_app",)


def test_a_rule_with_source_ips_never_matches_a_direct_invoke(local_stack: LocalStack) -> None:
    status, body = invoke(local_stack, proof_payload(local_stack, "orders-local", "orders_app"))
    assert status == 200 and body["error"]["code"] == "forbidden"
    assert "token" not in body


def test_a_proof_for_another_server_is_refused(local_stack: LocalStack) -> None:
    payload = proof_payload(local_stack, "billing-local", "billing_app", server_id="rdsvend-prod.111122223333")
    status, body = invoke(local_stack, payload)
    assert status == 200 and body["error"]["code"] == "unauthenticated"


def test_a_tampered_proof_is_refused_by_the_local_sts(local_stack: LocalStack) -> None:
    payload = proof_payload(local_stack, "billing-local", "billing_app")
    auth = payload["identity"]["headers"]["Authorization"]
    payload["identity"]["headers"]["Authorization"] = auth[:-4] + ("0000" if not auth.endswith("0000") else "1111")
    status, body = invoke(local_stack, payload)
    assert status == 200 and body["error"]["code"] == "unauthenticated"
    assert "token" not in body


def test_a_caller_without_lambda_invoke_permission_is_refused_like_lambda(local_stack: LocalStack) -> None:
    _session, client = lambda_client(local_stack, "denied")
    with pytest.raises(ClientError) as err:
        client.invoke(FunctionName=FUNCTION, Payload=b"{}")
    error = err.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert error["Error"]["Code"] == "AccessDeniedException"
    assert "lambda:InvokeFunction" in error["Error"]["Message"]
    assert local_stack.info.seeded.callers["denied"].arn in error["Error"]["Message"]


@pytest.mark.parametrize("name", [
    "rdsvend-local-vend", f"arn:aws:lambda:us-east-1:222222222222:function:{FUNCTION}",
    f"222222222222:function:{FUNCTION}", f"{FUNCTION}:$LATEST"])
def test_the_function_answers_to_its_name_and_arns(local_stack: LocalStack, name: str) -> None:
    status, body = invoke(local_stack, {"database": "billing-local"}, function=name)
    assert status == 200 and body["error"]["code"] == "invalid_request"  # reached the handler


def test_another_function_is_not_found(local_stack: LocalStack) -> None:
    _session, client = lambda_client(local_stack)
    with pytest.raises(ClientError) as err:
        client.invoke(FunctionName="rdsvend-local-canary", Payload=b"{}")
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


@pytest.mark.parametrize("payload, code", [
    (b"not json", "InvalidRequestContentException"),
    (b"\xff\xfe", "InvalidRequestContentException"),
    (b"[" * 100_000 + b"]" * 100_000, "InvalidRequestContentException"),  # an answer, not a dropped connection
])
def test_a_payload_that_is_not_json_is_a_400(local_stack: LocalStack, payload: bytes, code: str) -> None:
    _session, client = lambda_client(local_stack)
    with pytest.raises(ClientError) as err:
        client.invoke(FunctionName=FUNCTION, Payload=payload)
    assert err.value.response["Error"]["Code"] == code
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


@pytest.mark.parametrize("payload", [[1, 2], None, "text", {"database": "x" * 40_000, "db_user": "a", "identity": {}}])
def test_hostile_json_payloads_get_the_functions_precise_error(
    local_stack: LocalStack,
    payload: dict[str, Any] | list[Any] | str | None,
) -> None:
    status, body = invoke(local_stack, payload)
    assert status == 200 and body["error"]["code"] == "invalid_request", body


def test_an_oversized_payload_is_refused_before_the_function(local_stack: LocalStack) -> None:
    _session, client = lambda_client(local_stack)
    with pytest.raises(ClientError) as err:
        client.invoke(FunctionName=FUNCTION, Payload=b" " * (6 * 1024 * 1024 + 1))
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413


def test_unsigned_and_badly_signed_invokes_are_refused(local_stack: LocalStack) -> None:
    url = f"{local_stack.info.lambda_url}/2015-03-31/functions/{FUNCTION}/invocations"
    unsigned = requests.post(url, data=b"{}", timeout=10)
    assert unsigned.status_code == 403
    assert unsigned.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    keys = local_stack.keys("allowed")
    wrong = boto3.session.Session(aws_access_key_id=keys.access_key_id, aws_secret_access_key="not-the-secret",
                                  region_name=local_stack.info.region).client(
        "lambda", endpoint_url=local_stack.info.lambda_url, config=Config(retries={"max_attempts": 1}))
    with pytest.raises(ClientError) as err:
        wrong.invoke(FunctionName=FUNCTION, Payload=b"{}")
    assert err.value.response["Error"]["Code"] == "InvalidSignatureException"


def test_no_token_or_proof_reaches_the_stack_log(local_stack: LocalStack) -> None:
    payload = proof_payload(local_stack, "billing-local", "billing_app")
    status, body = invoke(local_stack, payload)
    assert status == 200 and "token" in body
    log = (Path(local_stack.info.state_dir) / "stack.log").read_text(errors="replace")
    signature = payload["identity"]["headers"]["Authorization"].rsplit("Signature=", 1)[1]
    assert body["token"] not in log
    assert signature not in log
    assert local_stack.keys("allowed").secret_access_key not in log


@pytest.mark.parametrize("secret, code", [("not-the-secret", "SignatureDoesNotMatch"), (None, None)])
def test_the_local_sts_checks_signatures_as_sts_does(local_stack: LocalStack, secret: str | None,
                                                     code: str | None) -> None:
    keys = local_stack.keys("allowed")
    sts = boto3.session.Session(aws_access_key_id=keys.access_key_id,
                                aws_secret_access_key=secret or keys.secret_access_key,
                                region_name=local_stack.info.region).client(
        "sts", endpoint_url=local_stack.info.moto_url, config=Config(retries={"max_attempts": 1}))
    if code is None:
        assert sts.get_caller_identity()["Arn"] == keys.arn
        return
    with pytest.raises(ClientError) as err:
        sts.get_caller_identity()
    assert err.value.response["Error"]["Code"] == code
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
