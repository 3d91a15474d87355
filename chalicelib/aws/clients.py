"""The one client factory: a lazily created boto3 client per (service, region), with
bounded retries and timeouts.

The vending function uses :data:`CLIENT_CONFIG`; the canary and the operator commands build
theirs with shorter timeouts (:class:`chalicelib.aws.probe.AwsClients`). ``AWS_ENDPOINT_URL``
(boto3's own setting) or ``endpoint_url`` points every client at the local stack.
Every client keeps the request deadline opened with
:func:`chalicelib.aws.deadline.upstream_deadline` (none open: the timeouts above alone).
"""
from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Any

from chalicelib.aws.deadline import bound_by_deadline

__all__ = ["ClientFactory", "default_client_factory", "CLIENT_CONFIG"]

#: Standard retry mode (throttling aware): 3 attempts in all, then give up: callers turn that
#: into a 503. botocore edits the dict it is given, so each client gets its own copy.
CLIENT_CONFIG: dict[str, Any] = {
    "retries": {"mode": "standard", "total_max_attempts": 3},
    "connect_timeout": 2,
    "read_timeout": 5,
}


class ClientFactory:
    """``factory(service, region)`` (or ``factory.client(service, region)``): one client each,
    created on first use from one boto3 session, never at import.

    - ``session_factory`` / ``session``: where the session comes from (default: a new
      ``boto3.session.Session()``);
    - ``config``: botocore ``Config`` arguments (default :data:`CLIENT_CONFIG`), copied per client;
    - ``endpoint_url``: one endpoint for every service (the local stack, a dead port in a test);
    - ``default_region``: for calls that name none; ``fallback_region`` when the session has
      no region either.
    """

    def __init__(self, session_factory: Callable[[], Any] | None = None, *, session: Any = None,
                 config: dict[str, Any] | None = None, endpoint_url: str | None = None,
                 default_region: str | None = None, fallback_region: str | None = None) -> None:
        self._session_factory = session_factory
        self._session: Any = session
        self._config = CLIENT_CONFIG if config is None else config
        self._endpoint_url = endpoint_url
        self._default_region = default_region
        self._fallback_region = fallback_region
        self._clients: dict[tuple[str, str | None], Any] = {}
        self._lock = threading.Lock()

    @property
    def session(self) -> Any:
        """The boto3 session every client is made from (created on first use): its credentials
        are the ones the clients sign with."""
        with self._lock:
            if self._session is None:
                import boto3

                self._session = (self._session_factory or boto3.session.Session)()
            return self._session

    def __call__(self, service: str, region: str | None = None) -> Any:
        key = (service, region or self._default_region)
        client = self._clients.get(key)
        if client is not None:
            return client
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                from botocore.config import Config

                if self._session is None:
                    import boto3

                    self._session = (self._session_factory or boto3.session.Session)()
                kwargs: dict[str, Any] = {"config": Config(**copy.deepcopy(self._config))}
                region_name = key[1]
                if region_name is None and self._fallback_region and self._session.region_name is None:
                    region_name = self._fallback_region
                kwargs["region_name"] = region_name
                if self._endpoint_url:
                    kwargs["endpoint_url"] = self._endpoint_url
                client = bound_by_deadline(self._session.client(service, **kwargs))
                self._clients[key] = client
            return client

    def client(self, service: str, region: str | None = None) -> Any:
        return self(service, region)


_default: ClientFactory | None = None


def default_client_factory() -> ClientFactory:
    global _default
    if _default is None:
        _default = ClientFactory()
    return _default
