"""Signed calls to the local gateway as one of the world's callers."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from devtools.local.state import StackInfo

__all__ = ["signed_request"]


def signed_request(info: StackInfo, method: str, path: str, body: Any = None, *, caller: str = "allowed",
                   timeout: float = 10.0) -> tuple[int, Any]:
    """One SigV4-signed (``execute-api``) call to the gateway as a world caller: ``(status, json)``."""

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    keys = info.keys(caller)
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data is not None else {}
    request = AWSRequest(method=method, url=info.gateway_url + path, data=data, headers=headers)
    SigV4Auth(Credentials(keys.access_key_id, keys.secret_access_key, keys.session_token),
              "execute-api", info.region).add_auth(request)
    prepared = request.prepare()
    http_request = urllib.request.Request(prepared.url, data=data, method=method,
                                          headers=dict(prepared.headers.items()))
    try:
        with urllib.request.urlopen(http_request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")
