"""In-memory adapters for the canary's edges: a database that lives in a dict, a token source
that counts, a fixed signer. Used by the unit tests and by anyone trying the canary without
AWS; the real ones are in :mod:`chalicelib.engines`, :mod:`factory` and :mod:`iam_facts`."""
from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from chalicelib.engines.base import ConnectParams, DbConnectError
from chalicelib.engines.postgres_catalog import RoleFacts
from chalicelib.errors import ProbeError
from chalicelib.policy.model import Database

__all__ = ["MemoryDatabase", "MemoryConnector", "CountingTokens", "FixedSigner", "MemoryAdmin"]


@dataclass
class MemoryDatabase:
    """Roles of one server, and how it answers logins.

    A login succeeds when the role exists, is in ``rds_iam`` (and not ``rds_ad``) and the
    password is a token ``accept`` approves; ``behaviour`` may force an error kind.
    """

    roles: dict[str, RoleFacts] = field(default_factory=dict)
    accept: Callable[[ConnectParams], bool] = lambda params: params.password.startswith("token:")
    behaviour: str | None = None  # None | "refused" | "timeout" | "tls" | "hang"
    hang: threading.Event = field(default_factory=threading.Event)
    logins: list[str] = field(default_factory=list)


class _Session:
    def __init__(self, db: MemoryDatabase) -> None:
        self._db = db

    def user_facts(self, role: str) -> RoleFacts:
        return self._db.roles.get(role, RoleFacts(role=role, exists=False))

    def close(self) -> None:
        pass


class MemoryConnector:
    """``(host, port) -> MemoryDatabase``."""

    def __init__(self, servers: Mapping[tuple[str, int], MemoryDatabase]) -> None:
        self.servers = dict(servers)

    def connect(self, params: ConnectParams) -> _Session:
        db = self.servers.get((params.host, params.port))
        if db is None or db.behaviour == "refused":
            raise DbConnectError("refused", f"connection to server at \"{params.host}\", port "
                                 f"{params.port} failed: Connection refused")
        if db.behaviour == "hang":
            db.hang.wait()  # until the test lets go: only the runner's backstop ends this
            raise DbConnectError("timeout", "timeout expired")
        if db.behaviour == "timeout":
            raise DbConnectError("timeout", "timeout expired")
        if db.behaviour == "tls":
            raise DbConnectError("tls", "SSL error: certificate verify failed")
        db.logins.append(params.user)
        facts = db.roles.get(params.user)
        if (facts is None or not facts.in_rds_iam or facts.in_rds_ad or not db.accept(params)):
            raise DbConnectError("auth", f"FATAL:  PAM authentication failed for user \"{params.user}\"")
        return _Session(db)


@dataclass
class CountingTokens:
    """Tokens ``token:<user>@<host>:<port>:<n>``; ``fail`` makes signing raise."""

    fail: str | None = None
    issued: list[tuple[str, str, int]] = field(default_factory=list)

    def token(self, database: Database, db_user: str, host: str, port: int,
              resource_id: str | None) -> str:
        if self.fail:
            raise ProbeError(self.fail, service="sts")
        self.issued.append((db_user, host, port))
        return f"token:{db_user}@{host}:{port}:{len(self.issued)}"


@dataclass
class FixedSigner:
    arn: str = "arn:aws:iam::222222222222:role/rdsvend-signer"

    def principal(self, database: Database) -> str:
        return database.signer_role or self.arn


class MemoryAdmin:
    """An administrator's view of servers: ``(host, port) -> MemoryDatabase``."""

    def __init__(self, servers: Mapping[tuple[str, int], MemoryDatabase]) -> None:
        self.servers = dict(servers)

    def covers(self, host: str | None, port: int | None) -> bool:
        return (host, port) in self.servers

    def user_facts(self, host: str, port: int, dbname: str, role: str, timeout: float) -> RoleFacts:
        db = self.servers[(host, port)]
        if db.behaviour in ("refused", "timeout", "hang"):
            raise DbConnectError("refused", "admin connection refused")
        return db.roles.get(role, RoleFacts(role=role, exists=False))
