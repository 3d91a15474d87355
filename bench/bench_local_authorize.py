"""``local_authorize``: what the local AWS's IAM enforcement adds to every request.

One signed ``secretsmanager:GetSecretValue`` request (a role session with three identity
policies, a boundary, an organization with two SCP levels above the account) goes through
moto's WSGI app in this process, 500 times with the enforcing middleware in front and 500
times without; the enforcer keeps its denial and allowed-requests logs in files, as the
stack does. Reports the time per request with enforcement (value), without (baseline) and
their ratio; ``ok`` while enforcement (signature check, operation and resource mapping, the
decision) costs less than half of what moto's own handling of the request does (ratio <= 1.5),
a target that holds on a loaded machine as on an idle one: the e2e suite sends every AWS call
through it.
"""
from __future__ import annotations

import io
import json
import tempfile
import time
from pathlib import Path
from typing import Any

N = 500
TARGET_RATIO = 1.5
REGION = "us-east-1"


def _doc(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _environ(url: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": parts.path or "/", "QUERY_STRING": "",
               "RAW_URI": parts.path or "/", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "5000",
               "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "http", "CONTENT_LENGTH": str(len(body)),
               "CONTENT_TYPE": headers.get("Content-Type", ""), "HTTP_HOST": parts.netloc}
    for name, value in headers.items():
        if name.lower() not in ("content-type", "content-length"):
            environ["HTTP_" + name.upper().replace("-", "_")] = value
    return environ


def _world() -> tuple[dict[str, str], str]:
    import boto3

    orgs = boto3.client("organizations", region_name=REGION)
    orgs.create_organization(FeatureSet="ALL")
    root = orgs.list_roots()["Roots"][0]["Id"]
    member = orgs.create_account(AccountName="m", Email="m@x.test")["CreateAccountStatus"]["AccountId"]
    ou = orgs.create_organizational_unit(ParentId=root, Name="ou")["OrganizationalUnit"]["Id"]
    orgs.move_account(AccountId=member, SourceParentId=root, DestinationParentId=ou)
    scp = orgs.create_policy(Name="deny-leave", Description="d", Type="SERVICE_CONTROL_POLICY", Content=_doc(
        {"Effect": "Deny", "Action": "organizations:LeaveOrganization", "Resource": "*"}))
    orgs.attach_policy(PolicyId=scp["Policy"]["PolicySummary"]["Id"], TargetId=ou)
    from moto.core.models import DEFAULT_ACCOUNT_ID

    iam = boto3.client("iam", region_name=REGION)
    boundary = iam.create_policy(PolicyName="b", PolicyDocument=_doc(
        {"Effect": "Allow", "Action": "secretsmanager:*", "Resource": "*"}))["Policy"]["Arn"]
    role = iam.create_role(RoleName="fn", PermissionsBoundary=boundary, AssumeRolePolicyDocument=_doc(
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:root"},
         "Action": "sts:AssumeRole"}))["Role"]["Arn"]
    for i in range(3):
        iam.put_role_policy(RoleName="fn", PolicyName=f"p{i}", PolicyDocument=_doc(
            {"Effect": "Allow", "Action": ["secretsmanager:GetSecretValue", f"s3:GetObject{i}"],
             "Resource": f"arn:aws:secretsmanager:{REGION}:*:secret:app/*"}))
    creds = boto3.client("sts", region_name=REGION).assume_role(RoleArn=role, RoleSessionName="bench")["Credentials"]
    boto3.client("secretsmanager", region_name=REGION).create_secret(Name="app/db", SecretString="x")
    return creds, role


def _signed(creds: dict[str, str]) -> tuple[str, bytes, dict[str, str]]:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = "http://127.0.0.1:5000/"
    body = json.dumps({"SecretId": "app/db"}).encode()
    request = AWSRequest(method="POST", url=url, data=body, headers={
        "X-Amz-Target": "secretsmanager.GetSecretValue", "Content-Type": "application/x-amz-json-1.1"})
    SigV4Auth(Credentials(creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"]),
              "secretsmanager", REGION).add_auth(request)
    return url, body, dict(request.headers.items())


def _time(app: Any, url: str, body: bytes, headers: dict[str, str]) -> tuple[float, str]:
    statuses: list[str] = []

    def start_response(status: str, _headers: Any, *_: Any) -> None:
        statuses.append(status)

    began = time.perf_counter()
    for _ in range(N):
        b"".join(app(_environ(url, body, headers), start_response))
    return (time.perf_counter() - began) / N * 1000, statuses[-1]


def run() -> list[dict[str, Any]]:
    from moto import mock_aws
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    from devtools.local.authorize import ALLOWED_LOG, DENIAL_LOG, AllowedLog, DenialLog, Enforcer
    from devtools.local.aws import MotoSecretLookup

    with mock_aws(), tempfile.TemporaryDirectory() as logs:
        creds, _role = _world()
        url, body, headers = _signed(creds)
        app = DomainDispatcherApplication(create_backend_app)
        enforced = Enforcer(app, MotoSecretLookup(), denials=DenialLog(Path(logs) / DENIAL_LOG),
                            allowed=AllowedLog(Path(logs) / ALLOWED_LOG))
        _time(app, url, body, headers)  # warm both paths
        plain_ms, plain_status = _time(app, url, body, headers)
        enforced_ms, enforced_status = _time(enforced, url, body, headers)
    added = enforced_ms - plain_ms
    return [{"name": "local_authorize", "value": round(enforced_ms, 3), "unit": "ms/request",
             "baseline": round(plain_ms, 3), "ratio": round(enforced_ms / plain_ms, 2),
             "added_ms": round(added, 3), "target_ratio": TARGET_RATIO,
             "ok": enforced_ms / plain_ms <= TARGET_RATIO and enforced_status.startswith("200")
             and plain_status.startswith("200")}]
