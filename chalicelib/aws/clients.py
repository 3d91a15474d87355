"""One lazily created boto3 client per (service, region), with bounded retries and timeouts.

``AWS_ENDPOINT_URL`` (boto3's own setting) points every client at the local stack.
"""
from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["ClientFactory", "default_client_factory", "CLIENT_CONFIG"]

#: Standard retry mode (throttling aware): 3 attempts in all, then give up: callers turn that
#: into a 503. botocore edits the dict it is given, so each client gets its own copy.
CLIENT_CONFIG: dict[str, Any] = {
    "retries": {"mode": "standard", "total_max_attempts": 3},
    "connect_timeout": 2,
    "read_timeout": 5,
}


class ClientFactory:
    def __init__(self, session_factory: Callable[[], Any] | None = None) -> None:
        self._session_factory = session_factory
        self._session: Any = None
        self._clients: dict[tuple[str, str | None], Any] = {}
        self._lock = threading.Lock()

    def __call__(self, service: str, region: str | None = None) -> Any:
        key = (service, region)
        client = self._clients.get(key)
        if client is not None:
            return client
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                import boto3
                from botocore.config import Config

                if self._session is None:
                    self._session = (self._session_factory or boto3.session.Session)()
                config = Config(**copy.deepcopy(CLIENT_CONFIG))
                client = self._session.client(service, region_name=region, config=config)
                self._clients[key] = client
            return client


_default: ClientFactory | None = None


def default_client_factory() -> ClientFactory:
    global _default
    if _default is None:
        _default = ClientFactory()
    return _default
