"""The IAM-enforcement step of ``make demo`` (plugged into :mod:`devtools.local.demo`): the local
AWS refuses what AWS would, in AWS's words, and logs which layer said no."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["enforce_step"]


def enforce_step(demo: Any, say: Callable[..., None], failed: type[Exception]) -> None:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError

    info = demo.stack.info
    keys = info.keys("denied")
    say(f"5a. The local AWS enforces IAM as AWS does. {keys.arn}, whose only grant is execute-api:Invoke, "
        "asks Secrets Manager for its secrets directly.")
    session = boto3.session.Session(aws_access_key_id=keys.access_key_id, aws_secret_access_key=keys.secret_access_key,
                                    region_name=info.region)
    client = session.client("secretsmanager", endpoint_url=info.moto_url, config=Config(retries={"max_attempts": 1}))
    try:
        client.list_secrets()
    except ClientError as exc:
        error = exc.response["Error"]
        say(f"{error['Code']}: {error['Message']}", 3)
    else:
        raise failed("the local AWS let a caller without a grant list the secrets")
    denial = next((d for d in reversed(demo.stack.denials()) if d.action == "secretsmanager:ListSecrets"), None)
    if denial is None:
        raise failed("the refusal was not logged")
    say(f"The stack's denial log: principal {denial.principal}, action {denial.action}, resource "
        f"{denial.resource}, decided by the {denial.layer} layer.", 3)
