"""moto in server mode, in this process, on a free loopback port; it counts the calls that
may have changed IAM or Organizations state (a cache of what IAM and SCPs allow is exact while
that count stays the same)."""
from __future__ import annotations

import io
import re
import threading
from typing import Any
from urllib.parse import parse_qs

__all__ = ["MotoServer"]

_READ_PREFIXES = ("Get", "List", "Describe", "Simulate", "Generate")
_WATCHED_SERVICES = frozenset({"iam", "organizations"})


class _WriteCounter:
    """WSGI wrapper counting requests that may change IAM or Organizations state.

    A cache of what IAM and SCPs allow stays exact while this count stays the same: any
    Create/Put/Attach/Detach/Delete/Update... call to ``iam`` or ``organizations`` moves it.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.generation = 0
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if self._is_write(environ):
            with self._lock:
                self.generation += 1
        return self.app(environ, start_response)

    @staticmethod
    def _is_write(environ: dict[str, Any]) -> bool:
        auth = environ.get("HTTP_AUTHORIZATION", "")
        scope = re.search(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/", auth)
        service = scope.group(1) if scope else ""
        if service not in _WATCHED_SERVICES:
            return False
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target:
            action = target.rsplit(".", 1)[-1]
        else:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
            params = parse_qs(environ.get("QUERY_STRING", "")) | parse_qs(body.decode("utf-8", "replace"))
            action = (params.get("Action") or [""])[0]
        return not action.startswith(_READ_PREFIXES)


class MotoServer:
    """moto's threaded server on 127.0.0.1, on a free port, in this process.

    ``generation`` counts the calls that may have changed IAM or Organizations state.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        from moto.moto_server.threaded_moto_server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
        self._counter: _WriteCounter | None = None
        self.url: str | None = None

    @property
    def generation(self) -> int:
        return self._counter.generation if self._counter is not None else 0

    def start(self) -> str:
        self._server.start()
        wsgi_server = self._server._server  # werkzeug's server, made by start()
        assert wsgi_server is not None
        self._counter = _WriteCounter(wsgi_server.app)
        wsgi_server.app = self._counter
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        return self.url

    def wrap(self, middleware: Any) -> None:
        """Put a WSGI middleware (``middleware(app) -> app``) in front of the started server."""
        wsgi_server = self._server._server
        assert wsgi_server is not None, "start() first"
        wsgi_server.app = middleware(wsgi_server.app)

    def stop(self) -> None:
        if self.url is not None:
            self._server.stop()
            self.url = None
