"""What the ``rotate`` function needs in a stage's stack, from the access policy's
``auth: password`` users:

- its role may read, stage and describe exactly the declared secrets (and, for
  alternating-users secrets, the administrator's secret named ``master`` beside them, e.g.
  ``rdsvend/orders/master`` for ``rdsvend/orders/reports_legacy``) and draw random passwords;
- Secrets Manager may invoke it (a resource-based permission limited to the deploy account);
- every declared secret rotates on a schedule (every :data:`ROTATION_DAYS` days) through it.

:mod:`devtools.deploy.documents`, :mod:`devtools.deploy.sam` and :mod:`devtools.deploy.terraform`
call in here; nothing else of the stack changes.
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from chalicelib.aws.arn import secret_arn, secret_arn_parts
from chalicelib.policy.model import AccessPolicy

__all__ = ["ROTATE", "ROTATION_DAYS", "declared_secrets", "secret_resources", "rotate_statements",
           "canary_secret_statements", "sam_rotation_resources", "terraform_rotation_resources"]

#: Chalice's name of the rotation function
ROTATE = "rotate"
ROTATION_DAYS = 30


def declared_secrets(policy: AccessPolicy) -> list[tuple[str, str]]:
    """``(secret ARN, rotation)`` of every password user, in file order, each secret once."""
    seen: dict[str, str] = {}
    for _db, user in policy.targets():
        if user.auth == "password" and user.secret and user.secret not in seen:
            seen[user.secret] = user.rotation or "single-user"
    return list(seen.items())


def _with_suffix(arn: str) -> list[str]:
    """IAM resources for a secret ARN given with or without Secrets Manager's ``-xxxxxx``."""
    return [arn, f"{arn}-??????"]


def secret_resources(policy: AccessPolicy) -> tuple[list[str], list[str]]:
    """(the declared secrets, the administrators' secrets of alternating-users ones)."""
    declared: list[str] = []
    masters: list[str] = []
    for arn, rotation in declared_secrets(policy):
        declared += _with_suffix(arn)
        parts = secret_arn_parts(arn)
        if rotation == "alternating-users" and parts is not None:
            folder = parts["name"].rsplit("/", 1)[0] + "/" if "/" in parts["name"] else ""
            master = secret_arn(parts["region"], parts["account"], f"{folder}master", parts["partition"])
            masters += [m for m in _with_suffix(master) if m not in masters]
    return sorted(set(declared)), masters


def rotate_statements(policy: AccessPolicy) -> list[dict[str, Any]]:
    declared, masters = secret_resources(policy)
    statements: list[dict[str, Any]] = []
    if declared:
        statements.append({"Sid": "RotateDeclaredSecrets", "Effect": "Allow",
                           "Action": ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue",
                                      "secretsmanager:PutSecretValue", "secretsmanager:UpdateSecretVersionStage"],
                           "Resource": declared})
        statements.append({"Sid": "DrawRandomPasswords", "Effect": "Allow",
                           "Action": "secretsmanager:GetRandomPassword", "Resource": "*"})
    if masters:
        statements.append({"Sid": "ReadAdministratorSecrets", "Effect": "Allow",
                           "Action": "secretsmanager:GetSecretValue", "Resource": masters})
    return statements


def _key(arn: str) -> str:
    parts = secret_arn_parts(arn)
    name = parts["name"] if parts else arn
    slug = "".join(c for c in name.title() if c.isalnum())[:40]
    return slug + hashlib.sha256(arn.encode()).hexdigest()[:8]


def sam_rotation_resources(policy: AccessPolicy, account: Any, function_id: str) -> dict[str, Any]:
    """The permission for Secrets Manager to invoke the function and one rotation schedule per
    declared secret (CloudFormation resources to merge)."""
    secrets = declared_secrets(policy)
    if not secrets:
        return {}
    resources: dict[str, Any] = {
        "RotateInvokedBySecretsManager": {"Type": "AWS::Lambda::Permission", "Properties": {
            "FunctionName": {"Fn::GetAtt": [function_id, "Arn"]}, "Action": "lambda:InvokeFunction",
            "Principal": "secretsmanager.amazonaws.com", "SourceAccount": account}},
    }
    for arn, _rotation in secrets:
        resources[f"RotationSchedule{_key(arn)}"] = {
            "Type": "AWS::SecretsManager::RotationSchedule", "DependsOn": "RotateInvokedBySecretsManager",
            "Properties": {"SecretId": arn, "RotationLambdaARN": {"Fn::GetAtt": [function_id, "Arn"]},
                           "RotationRules": {"AutomaticallyAfterDays": ROTATION_DAYS}}}
    return resources


def terraform_rotation_resources(policy: AccessPolicy, account: Any) -> Mapping[str, dict[str, Any]]:
    """The same as :func:`sam_rotation_resources`, as Terraform resources by type."""
    secrets = declared_secrets(policy)
    if not secrets:
        return {}
    function = f"aws_lambda_function.{ROTATE}"
    return {
        "aws_lambda_permission": {"rotate_invoked_by_secretsmanager": {
            "function_name": f"${{{function}.function_name}}", "action": "lambda:InvokeFunction",
            "principal": "secretsmanager.amazonaws.com", "source_account": account}},
        "aws_secretsmanager_secret_rotation": {
            _key(arn).lower(): {"secret_id": arn, "rotation_lambda_arn": f"${{{function}.arn}}",
                                "rotation_rules": {"automatically_after_days": ROTATION_DAYS},
                                "depends_on": ["aws_lambda_permission.rotate_invoked_by_secretsmanager"]}
            for arn, _rotation in secrets},
    }


def canary_secret_statements(policy: AccessPolicy) -> list[dict[str, Any]]:
    """The canary reads each declared secret (secret.found, secret.rotation, db.password_login)."""
    declared, _masters = secret_resources(policy)
    if not declared:
        return []
    return [{"Sid": "ReadDeclaredSecrets", "Effect": "Allow",
             "Action": ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"], "Resource": declared}]
