"""The rotation's view of Secrets Manager: a small protocol and its botocore implementation.

Every botocore failure becomes a :class:`RotationAwsError` naming the call and AWS's error
code (never a secret value); "no such version" is ``None``, not an error.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from chalicelib.aws.errors import aws_error
from chalicelib.rotation.errors import RotationAwsError

__all__ = ["SecretMeta", "SecretStore", "BotoSecretStore", "PASSWORD_EXCLUDE", "PASSWORD_LENGTH"]

#: characters a password never holds: they break DSNs, shells, URLs and SQL literals
PASSWORD_EXCLUDE = "/@\"'\\:;`$%&?#[]{}<>|^~ "
PASSWORD_LENGTH = 32
_NOT_FOUND = frozenset({"ResourceNotFoundException"})


@dataclass(frozen=True)
class SecretMeta:
    arn: str
    name: str
    rotation_enabled: bool
    #: version id -> its staging labels
    versions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    rotation_days: int | None = None
    last_rotated: datetime | None = None
    rotation_lambda: str | None = None

    def version_with(self, stage: str) -> str | None:
        return next((vid for vid, stages in self.versions.items() if stage in stages), None)


class SecretStore(Protocol):
    def describe(self, secret_id: str) -> SecretMeta: ...

    def value(self, secret_id: str, *, stage: str, version_id: str | None = None) -> str | None:
        """The SecretString of that stage (and version), or None when there is none."""

    def put_pending(self, secret_id: str, token: str, text: str) -> None: ...

    def move_current(self, secret_id: str, token: str, from_version: str | None) -> None: ...

    def random_password(self) -> str: ...


@contextlib.contextmanager
def _call(operation: str) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        error = aws_error(exc)
        if error is None:
            raise
        raise RotationAwsError(f"secretsmanager {operation} failed: {error.code}") from None


class BotoSecretStore:
    """Secrets Manager through a botocore/boto3 client (``client``: a ``secretsmanager`` client)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def describe(self, secret_id: str) -> SecretMeta:
        with _call("DescribeSecret"):
            answer = self._client.describe_secret(SecretId=secret_id)
        rules = answer.get("RotationRules") or {}
        days = rules.get("AutomaticallyAfterDays")
        versions = {str(k): tuple(v) for k, v in (answer.get("VersionIdsToStages") or {}).items()}
        return SecretMeta(arn=answer["ARN"], name=answer.get("Name", ""),
                          rotation_enabled=bool(answer.get("RotationEnabled")), versions=versions,
                          rotation_days=int(days) if isinstance(days, int) and days > 0 else None,
                          last_rotated=answer.get("LastRotatedDate"),
                          rotation_lambda=answer.get("RotationLambdaARN") or None)

    def value(self, secret_id: str, *, stage: str, version_id: str | None = None) -> str | None:
        kwargs: dict[str, Any] = {"SecretId": secret_id, "VersionStage": stage}
        if version_id is not None:
            kwargs["VersionId"] = version_id
        try:
            with _call("GetSecretValue"):
                try:
                    answer = self._client.get_secret_value(**kwargs)
                except Exception as exc:
                    error = aws_error(exc)
                    if error is not None and error.code in _NOT_FOUND:
                        return None
                    raise
        finally:
            kwargs.clear()
        text = answer.get("SecretString")
        return text if isinstance(text, str) else None

    def put_pending(self, secret_id: str, token: str, text: str) -> None:
        with _call("PutSecretValue"):
            self._client.put_secret_value(SecretId=secret_id, ClientRequestToken=token, SecretString=text,
                                          VersionStages=["AWSPENDING"])

    def move_current(self, secret_id: str, token: str, from_version: str | None) -> None:
        kwargs: dict[str, Any] = {"SecretId": secret_id, "VersionStage": "AWSCURRENT", "MoveToVersionId": token}
        if from_version is not None:
            kwargs["RemoveFromVersionId"] = from_version
        with _call("UpdateSecretVersionStage"):
            self._client.update_secret_version_stage(**kwargs)

    def random_password(self) -> str:
        with _call("GetRandomPassword"):
            answer = self._client.get_random_password(PasswordLength=PASSWORD_LENGTH,
                                                      ExcludeCharacters=PASSWORD_EXCLUDE,
                                                      RequireEachIncludedType=True)
        return str(answer["RandomPassword"])
