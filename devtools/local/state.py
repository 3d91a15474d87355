"""The local stack's state file and what a running stack looks like (:class:`StackInfo`).

Everything the stack starts is written to ``state.json`` in its state directory (by default
``.rdsvend/local/`` in the repository, which git ignores) as soon as it exists, so that
:func:`devtools.local.teardown.down` can stop it all even when the server died.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from devtools.local.aws import SeededWorld
from devtools.local.canary import ORG_READER_ROLE
from devtools.local.processes import alive, proc_start_time
from devtools.local.rds_mysql import mysql_admin_env

__all__ = ["AUDIT_LOG_GROUP", "REPO_ROOT", "DEFAULT_STATE_DIR", "DEFAULT_ACCESS", "STATE_FILE", "LOG_FILE", "UNSET_ENV",
           "LOCAL_STACK_ENV", "LOCAL_ENV_NAMES",
           "StackError", "StackInfo", "read_state", "running_info", "write_state", "alive", "proc_start_time"]

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STATE_DIR = REPO_ROOT / ".rdsvend" / "local"
DEFAULT_ACCESS = REPO_ROOT / "policies" / "local-access.yaml"
STATE_FILE = "state.json"
LOG_FILE = "stack.log"
#: Variables a shell must drop to use the local caller's long-term keys.
UNSET_ENV = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE")
#: Set in a local stack's shell: the stack's state directory (the client then says "the local
#: stack is not running" where it would say "unreachable").
LOCAL_STACK_ENV = "RDSVEND_LOCAL_STACK"
#: Every variable ``rdsvend local env`` may export except ``RDSVEND_LOCAL_STACK``: with the
#: stack down it unsets them all, so an ``eval`` keeps no stale endpoint, key or DSN.
LOCAL_ENV_NAMES = (
    "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "RDSVEND_URL",
    "RDSVEND_POLICY", "PGSSLROOTCERT", "RDSVEND_LOCAL_ADMIN_DSN", "RDSVEND_LOCAL_MYSQL_ADMIN_DSN",
    "AWS_ENDPOINT_URL_LAMBDA", "RDSVEND_SERVER_ID", "RDSVEND_VEND_FUNCTION", "RDSVEND_ORG_ROLE_ARN",
    "RDSVEND_AUDIT_LOG_GROUPS",
)
#: the local vend function's log group, where its audit lines go (``RDSVEND_AUDIT_LOG_GROUPS`` in the stack's shell)
AUDIT_LOG_GROUP = "/aws/lambda/rdsvend-local"


class StackError(RuntimeError):
    """The local stack could not start, answer or stop. One line, no secrets."""

# -- state file --------------------------------------------------------------------------------

def write_state(state_dir: Path, state: Mapping[str, Any]) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = state_dir / f".{STATE_FILE}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(state, handle, indent=1)
    os.replace(tmp, state_dir / STATE_FILE)


def _mysql_admin_env(databases: Any) -> dict[str, str]:
    return mysql_admin_env(databases)


def read_state(state_dir: str | os.PathLike[str] = DEFAULT_STATE_DIR) -> dict[str, Any] | None:
    """The state file's content, or ``None`` when there is none (or it is unreadable)."""
    try:
        state = json.loads((Path(state_dir) / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def running_info(state_dir: str | os.PathLike[str] = DEFAULT_STATE_DIR) -> StackInfo | None:
    """The running stack recorded in ``state_dir``, or ``None`` when none is up and ready."""
    state = read_state(state_dir)
    if not state or state.get("status") != "ready" or not alive(state.get("pid"), state.get("proc_start")):
        return None
    return StackInfo.from_json(state["info"])


# -- what a running stack looks like ---------------------------------------------------------------

@dataclass(frozen=True)
class StackInfo:
    """Where everything listens and which credentials to use. Holds secrets: never log it."""

    state_dir: str
    pid: int
    region: str
    moto_url: str
    gateway_url: str
    ldap_port: int
    policy_path: str
    ca_path: str
    admin_dsn: str = field(repr=False)
    databases: Mapping[str, Mapping[str, Any]]  # identifier -> host, port, dbname, resource_id, account, pg_pid
    seeded: Any = field(repr=False)  # devtools.local.aws.SeededWorld
    lambda_url: str = ""  # the local Lambda Invoke API (AWS_ENDPOINT_URL_LAMBDA)
    server_id: str = ""  # the vend function's RDSVEND_SERVER_ID
    function_name: str = "rdsvend-local-vend"
    admin_dsns: Mapping[str, str] = field(default_factory=dict, repr=False)  # identifier -> superuser DSN

    def keys(self, caller: str = "allowed") -> Any:
        """The access key of the world's ``allowed`` or ``denied`` caller, or its ``operator``."""
        return self.seeded.callers[caller]

    @property
    def org_role_arn(self) -> str:
        """The management account's organization reader role (SCPs, accounts)."""

        return f"arn:aws:iam::{self.seeded.management_account}:role/{ORG_READER_ROLE}"

    def env(self, caller: str = "allowed") -> dict[str, str]:
        """A shell's environment as ``caller``: ``allowed`` / ``denied`` (the world's callers) or
        ``operator`` (a person in the service account; adds ``RDSVEND_ORG_ROLE_ARN``)."""
        keys = self.keys(caller)
        out = {
            "AWS_ENDPOINT_URL": self.moto_url,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ACCESS_KEY_ID": keys.access_key_id,
            "AWS_SECRET_ACCESS_KEY": keys.secret_access_key,
            "RDSVEND_URL": self.gateway_url,
            "RDSVEND_POLICY": self.policy_path,
            "PGSSLROOTCERT": self.ca_path,
            "RDSVEND_LOCAL_ADMIN_DSN": self.admin_dsn,
            "RDSVEND_AUDIT_LOG_GROUPS": AUDIT_LOG_GROUP,
            **_mysql_admin_env(self.databases),
            LOCAL_STACK_ENV: self.state_dir,
        }
        if self.lambda_url:
            out.update({"AWS_ENDPOINT_URL_LAMBDA": self.lambda_url, "RDSVEND_SERVER_ID": self.server_id,
                        "RDSVEND_VEND_FUNCTION": self.function_name})
        if caller == "operator":
            out["RDSVEND_ORG_ROLE_ARN"] = self.org_role_arn
        return out

    def ports(self) -> list[int]:
        urls = [self.moto_url, self.gateway_url, *([self.lambda_url] if self.lambda_url else [])]
        url_ports = [port for port in (urlsplit(url).port for url in urls) if port is not None]
        return [*url_ports, self.ldap_port, *(int(d["port"]) for d in self.databases.values())]

    def to_json(self) -> dict[str, Any]:
        return {
            "state_dir": self.state_dir, "pid": self.pid, "region": self.region, "moto_url": self.moto_url,
            "gateway_url": self.gateway_url, "ldap_port": self.ldap_port, "policy_path": self.policy_path,
            "ca_path": self.ca_path, "admin_dsn": self.admin_dsn, "databases": dict(self.databases),
            "seeded": self.seeded.to_json(), "lambda_url": self.lambda_url, "server_id": self.server_id,
            "function_name": self.function_name, "admin_dsns": dict(self.admin_dsns),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StackInfo:
        return cls(
            state_dir=data["state_dir"], pid=int(data["pid"]), region=data["region"], moto_url=data["moto_url"],
            gateway_url=data["gateway_url"], ldap_port=int(data["ldap_port"]), policy_path=data["policy_path"],
            ca_path=data["ca_path"], admin_dsn=data["admin_dsn"], databases=dict(data["databases"]),
            seeded=SeededWorld.from_json(data["seeded"]), lambda_url=data.get("lambda_url", ""),
            server_id=data.get("server_id", ""), function_name=data.get("function_name", "rdsvend-local-vend"),
            admin_dsns=dict(data.get("admin_dsns") or {}),
        )
