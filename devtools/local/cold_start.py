"""Lambda's new execution environments, for the functions the local stack runs in its process.

In AWS, once a function's configuration or code is updated, the next invocation runs in a new
execution environment: whatever the old one had cached (the access policy, signer credentials,
RDS endpoints) is gone. :class:`ColdStarts` is WSGI middleware in front of the local AWS that
watches for a successful ``UpdateFunctionConfiguration`` or ``UpdateFunctionCode`` and then
calls ``cold_start(function_name)`` before answering, so the caller's next request to that
function finds it started afresh (``aws lambda update-function-configuration --function-name
rdsvend-local-vend --description ...`` on the local stack).
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote

__all__ = ["ColdStarts", "updated_function"]

_UPDATE = re.compile(r"^/20\d\d-\d\d-\d\d/functions/(?P<name>[^/]+)/(?:configuration|code)$")


def updated_function(method: str, path: str) -> str | None:
    """The function an ``UpdateFunctionConfiguration``/``UpdateFunctionCode`` request names (its
    name, also when given as an ARN), or ``None`` for any other request."""
    if method != "PUT":
        return None
    match = _UPDATE.match(path)
    if match is None:
        return None
    name = unquote(match["name"])
    return name.split(":function:", 1)[1].split(":", 1)[0] if ":function:" in name else name


class ColdStarts:
    """WSGI middleware: ``cold_start(name)`` after each successful update of function ``name``."""

    def __init__(self, app: Any, cold_start: Callable[[str], None]) -> None:
        self.app = app
        self.cold_start = cold_start

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        name = updated_function(str(environ.get("REQUEST_METHOD", "")), str(environ.get("PATH_INFO", "")))
        if name is None:
            result: Iterable[bytes] = self.app(environ, start_response)
            return result
        status: list[str] = []

        def remember(line: str, headers: Any, *rest: Any) -> Any:
            status.append(line)
            return start_response(line, headers, *rest)

        body = list(self.app(environ, remember))
        if status and status[0].startswith("200"):
            self.cold_start(name)
        return body
