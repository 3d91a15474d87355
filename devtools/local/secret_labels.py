"""Secrets Manager's staging labels as AWS keeps them, in the local AWS.

AWS keeps exactly one version labelled ``AWSCURRENT``; whenever ``AWSCURRENT`` moves (by
``PutSecretValue`` with the default stages, or ``UpdateSecretVersionStage``), ``AWSPREVIOUS``
moves to the version that had it, and every other label stays where it was. moto does not
quite: ``UpdateSecretVersionStage`` moves the labels but not the version moto answers for a
plain ``GetSecretValue``, and a later ``PutSecretValue`` then labels the *old* version
``AWSPREVIOUS`` (dropping its other labels) and leaves two versions ``AWSCURRENT``.

:func:`install` corrects both in the moto of this process (the local stack calls it once at
start): the current version is always the one labelled ``AWSCURRENT``.
"""
from __future__ import annotations

import threading
from typing import Any

__all__ = ["install", "current_version"]

_INSTALLED = threading.Lock()
_done = False


def current_version(secret: Any) -> str | None:
    """The id of the version labelled ``AWSCURRENT``, if any."""
    return next((vid for vid, v in secret.versions.items() if "AWSCURRENT" in v["version_stages"]), None)


def _reset_default_version(self: Any, secret_version: dict[str, Any], version_id: str) -> None:
    """``AWSCURRENT`` (and the labels the new version is given) move to ``version_id``; the
    version that had ``AWSCURRENT`` gets ``AWSPREVIOUS`` and keeps its other labels."""
    labels = [label for label in secret_version["version_stages"] if label != "AWSCURRENT"]
    previous = current_version(self)
    for vid, version in self.versions.items():
        if vid == version_id:
            continue
        stages = version["version_stages"]
        for label in labels:
            if label in stages:
                stages.remove(label)
        if previous is not None and previous != version_id and "AWSPREVIOUS" in stages:
            stages.remove("AWSPREVIOUS")
    if previous is not None and previous != version_id:
        stages = self.versions[previous]["version_stages"]
        stages.remove("AWSCURRENT")
        stages.append("AWSPREVIOUS")
    if "AWSPREVIOUS" in secret_version["version_stages"] and previous is not None:
        secret_version["version_stages"].remove("AWSPREVIOUS")
    self.versions[version_id] = secret_version
    self.default_version_id = version_id


def install() -> None:
    """Patch moto's Secrets Manager of this process (idempotent)."""
    global _done
    from moto.secretsmanager.models import FakeSecret, SecretsManagerBackend

    with _INSTALLED:
        if _done:
            return
        setattr(FakeSecret, "reset_default_version", _reset_default_version)  # noqa: B010 - patching moto
        original = SecretsManagerBackend.update_secret_version_stage

        def update_secret_version_stage(self: Any, secret_id: str, version_stage: str, remove_from_version_id: str,
                                        move_to_version_id: str) -> tuple[str, str]:
            answer: tuple[str, str] = original(self, secret_id, version_stage, remove_from_version_id,
                                               move_to_version_id)
            secret = self.secrets[secret_id]
            current = current_version(secret)
            if current is not None:
                secret.default_version_id = current
            return answer

        setattr(SecretsManagerBackend, "update_secret_version_stage", update_secret_version_stage)  # noqa: B010 - patching moto
        _done = True
