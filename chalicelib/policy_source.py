"""Where the access policy comes from: ``RDSVEND_POLICY`` = a file path or ``ssm:/name``.

``RDSVEND_SERVICE_ACCOUNT`` (the account the service runs in, optional) is handed to the
loader, so a database in another account that rdsvend could not read does not load.

A file is re-read when it changes; an SSM parameter is cached 60 s. A policy that does not
load raises (:class:`PolicyLoadError` / :class:`PolicyUnavailableError`): the caller of
:meth:`index` turns that into a refusal, never into a stale or empty allow.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from chalicelib.aws.clients import default_client_factory
from chalicelib.aws.errors import aws_error
from chalicelib.clock import SYSTEM_CLOCK, Clock
from chalicelib.decision import PolicyIndex
from chalicelib.errors import PolicyLoadError, PolicyUnavailableError
from chalicelib.policy.loader import load_policy_file, load_policy_text
from chalicelib.policy.model import AccessPolicy
from chalicelib.settings import Settings

__all__ = ["PolicySource", "FilePolicySource", "SsmPolicySource", "StaticPolicySource",
           "policy_source_from_env", "SSM_CACHE_SECONDS", "DEFAULT_POLICY_PATH"]

SSM_CACHE_SECONDS = 60.0
RETRY_FAILED_SECONDS = 5.0
DEFAULT_POLICY_PATH = "policies/access.yaml"


class PolicySource(Protocol):
    def get(self) -> AccessPolicy: ...

    def index(self) -> PolicyIndex: ...


class StaticPolicySource:
    def __init__(self, policy: AccessPolicy) -> None:
        self._index = PolicyIndex(policy)

    def get(self) -> AccessPolicy:
        return self._index.policy

    def index(self) -> PolicyIndex:
        return self._index


class FilePolicySource:
    def __init__(self, path: str | Path, *, service_account: str | None = None) -> None:
        self.path = Path(path)
        self.service_account = service_account
        self._stamp: tuple[int, int] | None = None
        self._index: PolicyIndex | None = None
        self._lock = threading.Lock()

    def get(self) -> AccessPolicy:
        return self.index().policy

    def index(self) -> PolicyIndex:
        try:
            st = self.path.stat()
        except OSError as exc:
            raise PolicyUnavailableError(f"cannot read policy file '{self.path}': {exc.strerror}") from exc
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            if self._index is None or stamp != self._stamp:
                self._index = None  # a file that no longer loads must not leave the old one in force
                self._stamp = stamp
                self._index = PolicyIndex(load_policy_file(self.path, service_account=self.service_account))
            return self._index


class SsmPolicySource:
    def __init__(self, parameter: str, client_factory: Callable[[], Any], *, clock: Clock = SYSTEM_CLOCK,
                 ttl: float = SSM_CACHE_SECONDS, service_account: str | None = None) -> None:
        self.parameter = parameter
        self.service_account = service_account
        self._client_factory = client_factory
        self._clock = clock
        self._ttl = ttl
        self._loaded_at: float | None = None
        self._index: PolicyIndex | None = None
        self._error: Exception | None = None
        self._lock = threading.Lock()

    def get(self) -> AccessPolicy:
        return self.index().policy

    def index(self) -> PolicyIndex:
        with self._lock:
            now = self._clock.monotonic()
            if self._loaded_at is not None:
                age = now - self._loaded_at
                if self._index is not None and age < self._ttl:
                    return self._index
                if self._error is not None and age < RETRY_FAILED_SECONDS:
                    raise self._error
            self._index, self._error = None, None
            self._loaded_at = now
            try:
                self._index = PolicyIndex(self._fetch())
            except (PolicyLoadError, PolicyUnavailableError) as exc:
                self._error = exc
                raise
            return self._index

    def _fetch(self) -> AccessPolicy:
        source = f"ssm:{self.parameter}"
        try:
            answer = self._client_factory().get_parameter(Name=self.parameter, WithDecryption=True)
            text = answer["Parameter"]["Value"]
        except (KeyError, TypeError) as exc:  # a malformed answer
            raise PolicyUnavailableError(f"cannot read {source}: {type(exc).__name__}") from None
        except Exception as exc:
            error = aws_error(exc)
            if error is None:
                raise
            raise PolicyUnavailableError(f"cannot read {source}: {error.code}") from None
        return load_policy_text(text, source=source, service_account=self.service_account)


def policy_source_from_env(env: Mapping[str, str] | None = None,
                           client_factory: Callable[..., Any] | None = None) -> PolicySource:
    settings = Settings.from_env(env)
    where = settings.policy or DEFAULT_POLICY_PATH
    service_account = settings.service_account
    if where.startswith("ssm:"):
        name = where[len("ssm:"):]
        if not name:
            raise PolicyUnavailableError("RDSVEND_POLICY 'ssm:' names no parameter")
        if client_factory is None:
            client_factory = default_client_factory()
        region = settings.region
        return SsmPolicySource(name, lambda: client_factory("ssm", region), service_account=service_account)
    return FilePolicySource(where, service_account=service_account)
