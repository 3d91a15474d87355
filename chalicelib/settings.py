"""The service's configuration: every environment variable it reads, named once, read here.

:meth:`Settings.from_env` is the only place the Lambda package reads ``os.environ``. The
functions build their services from it once per container (the vending service, the proof
verifier) or once per run (the canary, a rotation step); a test hands it a mapping instead.
The admin DSNs hold passwords: a :class:`Settings` never shows them in ``repr``.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "Settings",
    "POLICY", "SERVICE_ACCOUNT", "RATE_LIMIT", "RATE_TABLE", "SERVER_ID", "STS_ENDPOINT",
    "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_LAMBDA_FUNCTION_NAME", "AWS_SAM_LOCAL", "AWS_CHALICE_CLI_MODE",
    "SERVICE_NAME", "METRICS_NAMESPACE", "TRACE_DISABLED",
    "STATE_TABLE", "ALERT_TOPIC", "PGSSLROOTCERT", "CANARY_ADMIN_DSN", "LOCAL_ADMIN_DSN",
    "CANARY_MYSQL_ADMIN_DSN", "LOCAL_MYSQL_ADMIN_DSN", "ORG_ROLE_ARN", "SIGNER_PRINCIPAL",
    "CANARY_INTERVAL_SECONDS", "CANARY_NETWORK", "DEFAULT_NAME", "GRANTS_TABLE",
]

# -- rdsvend's own --------------------------------------------------------------------------
#: Where the access policy is: a file path, or ``ssm:/parameter/name``.
POLICY = "RDSVEND_POLICY"
#: The account the service runs in (spares an STS GetCallerIdentity).
SERVICE_ACCOUNT = "RDSVEND_SERVICE_ACCOUNT"
#: Per-caller vend limit, ``RATE/BURST`` or ``off``.
RATE_LIMIT = "RDSVEND_RATE_LIMIT"
#: DynamoDB table counting the limit fleet-wide.
RATE_TABLE = "RDSVEND_RATE_TABLE"
#: This deployment's id, bound into every identity proof (direct invoke).
SERVER_ID = "RDSVEND_SERVER_ID"
#: The STS endpoint identity proofs are checked against (default: the region's).
STS_ENDPOINT = "RDSVEND_STS_ENDPOINT"
#: DynamoDB table of just-in-time grants (``grant: required`` rules); unset: no rule can be met.
GRANTS_TABLE = "RDSVEND_GRANTS_TABLE"
#: The canary's state table and alert topic.
STATE_TABLE = "RDSVEND_STATE_TABLE"
ALERT_TOPIC = "RDSVEND_ALERT_TOPIC"
#: The canary's admin connection strings (hold passwords), the local stack's as a fallback.
CANARY_ADMIN_DSN = "RDSVEND_CANARY_ADMIN_DSN"
LOCAL_ADMIN_DSN = "RDSVEND_LOCAL_ADMIN_DSN"
CANARY_MYSQL_ADMIN_DSN = "RDSVEND_CANARY_MYSQL_ADMIN_DSN"
LOCAL_MYSQL_ADMIN_DSN = "RDSVEND_LOCAL_MYSQL_ADMIN_DSN"
#: The role the canary reads Organizations (SCPs) through.
ORG_ROLE_ARN = "RDSVEND_ORG_ROLE_ARN"
#: The principal the canary checks ``rds-db:connect`` for (default: its own).
SIGNER_PRINCIPAL = "RDSVEND_SIGNER_PRINCIPAL"
#: How often the canary runs (the window it reads refused logins over).
CANARY_INTERVAL_SECONDS = "RDSVEND_CANARY_INTERVAL_SECONDS"
#: Set by the stack: ``vpc`` when the canary has subnets of its own, ``none`` when it has no path to
#: private databases yet (a connect timeout is then setup to finish, not a failing target).
CANARY_NETWORK = "RDSVEND_CANARY_NETWORK"
# -- the platform's ---------------------------------------------------------------------------
AWS_REGION = "AWS_REGION"
AWS_DEFAULT_REGION = "AWS_DEFAULT_REGION"
AWS_LAMBDA_FUNCTION_NAME = "AWS_LAMBDA_FUNCTION_NAME"
AWS_SAM_LOCAL = "AWS_SAM_LOCAL"
AWS_CHALICE_CLI_MODE = "AWS_CHALICE_CLI_MODE"
PGSSLROOTCERT = "PGSSLROOTCERT"
SERVICE_NAME = "POWERTOOLS_SERVICE_NAME"
METRICS_NAMESPACE = "POWERTOOLS_METRICS_NAMESPACE"
TRACE_DISABLED = "POWERTOOLS_TRACE_DISABLED"

#: Service name and metrics namespace when Powertools' variables are not set.
DEFAULT_NAME = "rdsvend"


def _text(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


@dataclass(frozen=True)
class Settings:
    """The environment as the service understands it; ``None`` (or ``False``) when unset."""

    policy: str | None = None
    service_account: str | None = None
    rate_limit: str | None = None
    rate_table: str | None = None
    server_id: str | None = None
    sts_endpoint: str | None = None
    region: str | None = None  # AWS_REGION, else AWS_DEFAULT_REGION
    state_table: str | None = None
    grants_table: str | None = None
    alert_topic: str | None = None
    admin_dsn: str | None = field(default=None, repr=False)
    mysql_admin_dsn: str | None = field(default=None, repr=False)
    ssl_root_cert: str | None = None
    org_role_arn: str | None = None
    signer_principal: str | None = None
    canary_interval_seconds: str | None = None
    canary_network: str | None = None  # "vpc" | "none", set by the stack
    service_name: str = DEFAULT_NAME
    metrics_namespace: str = DEFAULT_NAME
    trace_disabled: bool = False
    in_lambda: bool = False  # AWS_LAMBDA_FUNCTION_NAME is set
    local_emulation: bool = False  # sam local or chalice local

    @staticmethod
    def environment() -> dict[str, str]:
        """A snapshot of the process environment, for a builder that hands it on to several parts."""
        return dict(os.environ)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``env``; by default the process environment, read now."""
        if env is None:
            env = os.environ
        return cls(
            policy=_text(env, POLICY),
            service_account=_text(env, SERVICE_ACCOUNT),
            rate_limit=env.get(RATE_LIMIT),
            rate_table=_text(env, RATE_TABLE),
            server_id=_text(env, SERVER_ID),
            sts_endpoint=_text(env, STS_ENDPOINT),
            region=env.get(AWS_REGION) or env.get(AWS_DEFAULT_REGION) or None,
            state_table=env.get(STATE_TABLE) or None,
            grants_table=_text(env, GRANTS_TABLE),
            alert_topic=env.get(ALERT_TOPIC) or None,
            admin_dsn=env.get(CANARY_ADMIN_DSN) or env.get(LOCAL_ADMIN_DSN) or None,
            mysql_admin_dsn=env.get(CANARY_MYSQL_ADMIN_DSN) or env.get(LOCAL_MYSQL_ADMIN_DSN) or None,
            ssl_root_cert=env.get(PGSSLROOTCERT) or None,
            org_role_arn=env.get(ORG_ROLE_ARN) or None,
            signer_principal=env.get(SIGNER_PRINCIPAL) or None,
            canary_interval_seconds=env.get(CANARY_INTERVAL_SECONDS) or None,
            canary_network=env.get(CANARY_NETWORK) or None,
            service_name=env.get(SERVICE_NAME) or DEFAULT_NAME,
            metrics_namespace=env.get(METRICS_NAMESPACE) or DEFAULT_NAME,
            trace_disabled=env.get(TRACE_DISABLED, "").lower() in ("1", "true", "yes"),
            in_lambda=bool(env.get(AWS_LAMBDA_FUNCTION_NAME)),
            local_emulation=bool(env.get(AWS_SAM_LOCAL) or env.get(AWS_CHALICE_CLI_MODE)),
        )
