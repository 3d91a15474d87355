"""What every ``rdsvend`` client command shares: one-line errors, exit codes, the API handle.

Exit codes: 0 success; 1 the service said no (or could not be reached); 2 bad usage, no or
bad credentials, a URL that is not rdsvend's. Errors are one line on stderr.
"""
from __future__ import annotations

import os
import sys
from typing import NoReturn
from urllib.parse import urlsplit

from rdsvend.api import VendApi
from rdsvend.errors import VendError

__all__ = ["LOCAL_ERRORS", "LOCAL_STACK_ENV", "STACK_DOWN", "fail", "describe", "exit_code", "make_api"]

#: Errors of the caller's own setup, not the service's answer: exit 2.
LOCAL_ERRORS = frozenset({"no_credentials", "bad_credentials", "bad_url"})
#: Set by ``rdsvend local env`` (a checkout's local stack): the stack's state directory.
LOCAL_STACK_ENV = "RDSVEND_LOCAL_STACK"
STACK_DOWN = "the local stack is not running: rdsvend local up"


def fail(message: str, code: int) -> NoReturn:
    print(f"rdsvend: error: {message}", file=sys.stderr)
    sys.exit(code)


def exit_code(exc: VendError) -> int:
    return 2 if exc.code in LOCAL_ERRORS else 1


def _local_stack_down(url: str | None) -> bool:
    """In a local stack's shell, an unreachable loopback URL means the stack is down."""
    if not os.environ.get(LOCAL_STACK_ENV):
        return False
    host = urlsplit(url).hostname if url else None
    return host is None or host in ("127.0.0.1", "localhost", "::1")


def describe(exc: VendError, url: str | None = None) -> str:
    if exc.code == "unreachable" and _local_stack_down(url):
        return f"{STACK_DOWN} ({exc.message})"
    text = f"{exc.code}: {exc.message}"
    if exc.request_id:
        text += f" (request id {exc.request_id})"
    if exc.retry_after is not None and exc.retryable:
        text += f" (retry after {exc.retry_after:g} s)"
    if exc.code == "forbidden":
        text += " (a denial, an unknown database and an unknown user look alike: 'rdsvend databases' lists " \
                "what you may ask for, 'rdsvend whoami' who you are)"
    return text


def make_api(url: str | None) -> VendApi:
    if not url:
        hint = f" ({STACK_DOWN})" if os.environ.get(LOCAL_STACK_ENV) else ""
        fail(f"no rdsvend URL: pass --url or set RDSVEND_URL{hint}", 2)
    try:
        return VendApi(url)
    except ValueError as exc:
        fail(str(exc), 2)
