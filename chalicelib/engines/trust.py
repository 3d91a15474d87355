"""Which CA bundle every database login verifies the server against (the same for every engine)."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from chalicelib.policy.model import AccessPolicy
from chalicelib.settings import Settings

__all__ = ["BUNDLE_PATH", "ssl_root_cert_for"]

BUNDLE_PATH = Path(__file__).resolve().parent.parent / "data" / "rds-global-bundle.pem"


def _settings(env: Mapping[str, str] | Settings | None) -> Settings:
    return env if isinstance(env, Settings) else Settings.from_env(env)


def ssl_root_cert_for(policy: AccessPolicy, env: Mapping[str, str] | Settings) -> str:
    """The policy's ``canary.ssl_root_cert`` (relative to the policy file), else
    ``PGSSLROOTCERT``, else the shipped RDS global bundle."""
    configured = policy.canary.ssl_root_cert
    if configured:
        path = Path(configured)
        if not path.is_absolute():
            source = Path(policy.source)
            base = source.parent if source.suffix in (".yaml", ".yml", ".json") and source.exists() else Path.cwd()
            path = base / path
        return str(path)
    return _settings(env).ssl_root_cert or str(BUNDLE_PATH)


