"""What the local stack keeps from one run to the next, so the shells opened on it stay valid.

``rdsvend local up`` listens on the previous run's ports when they are free, gives the
world's callers (the allowed and the denied caller, the operator) the previous run's access
keys, and each database's administrator (PostgreSQL's superuser, MariaDB's master user) the
previous run's password, so the DSNs ``local env`` exports (``RDSVEND_LOCAL_ADMIN_DSN``,
``RDSVEND_LOCAL_MYSQL_ADMIN_DSN``) stay the same: a shell that ran
``eval "$(rdsvend local env)"`` before a restart keeps working after it. A port another
program took meanwhile is replaced by a free one (that shell then needs a new ``eval``). The
file is ``<state dir>.last-run.json`` beside the state directory (by default
``.rdsvend/local.last-run.json``), mode 0600: ``rdsvend local down`` leaves it, so the next
``up`` finds it; delete it to start afresh. A file that does not parse is ignored, and so is
any key or password in it that does not look like one the stack makes. It holds secrets: it
is never logged.
"""
from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["LastRun", "last_run_path", "recall", "remember", "port_is_free"]

_KEY_ID = re.compile(r"^[A-Z0-9]{16,128}$")
_SECRET = re.compile(r"^[A-Za-z0-9/+=]{16,128}$")
_PASSWORD = re.compile(r"^[A-Za-z0-9_-]{16,128}$")  # secrets.token_urlsafe's alphabet


@dataclass(frozen=True)
class LastRun:
    """Ports by part (``moto``, ``ldap``, ``gateway``, ``lambda``, ``db:<identifier>``), the
    callers' keys by ``ACCOUNT/USER``: ``(access key id, secret access key)``, and the databases'
    administrator passwords by ``db:<identifier>``."""

    ports: Mapping[str, int] = field(default_factory=dict)
    keys: Mapping[str, tuple[str, str]] = field(default_factory=dict, repr=False)
    passwords: Mapping[str, str] = field(default_factory=dict, repr=False)

    def port(self, part: str) -> int:
        """The previous run's port of ``part`` when nothing listens on it now; else 0 (any free port)."""
        port = self.ports.get(part, 0)
        return port if port and port_is_free(port) else 0

    def password(self, part: str) -> str | None:
        """The previous run's administrator password of ``part`` (``db:<identifier>``); None: a new one."""
        return self.passwords.get(part)


def last_run_path(state_dir: str | os.PathLike[str]) -> Path:
    state = Path(state_dir).resolve()
    return state.parent / f"{state.name}.last-run.json"


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _ports(raw: Any) -> dict[str, int]:
    if not isinstance(raw, dict):
        return {}
    return {str(k): v for k, v in raw.items() if isinstance(v, int) and 1024 <= v <= 65535}


def _keys(raw: Any) -> dict[str, tuple[str, str]]:
    if not isinstance(raw, dict):
        return {}
    out = {}
    for name, pair in raw.items():
        if (isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)
                and _KEY_ID.match(pair[0]) and _SECRET.match(pair[1])):
            out[str(name)] = (pair[0], pair[1])
    return out


def _passwords(raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict):
        return {}
    return {str(k): v for k, v in raw.items() if isinstance(v, str) and _PASSWORD.match(v)}


def recall(state_dir: str | os.PathLike[str]) -> LastRun:
    """The previous run, or an empty one (no file, or one that does not parse)."""
    try:
        data = json.loads(last_run_path(state_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return LastRun()
    if not isinstance(data, dict):
        return LastRun()
    return LastRun(_ports(data.get("ports")), _keys(data.get("keys")), _passwords(data.get("passwords")))


def remember(state_dir: str | os.PathLike[str], run: LastRun) -> None:
    """Write ``run`` atomically, 0600."""
    path = last_run_path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({"ports": dict(run.ports), "keys": {k: list(v) for k, v in run.keys.items()},
                   "passwords": dict(run.passwords)}, handle, indent=1)
    os.replace(tmp, path)
