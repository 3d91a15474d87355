"""What the operator commands share: the one-line failure, the access policy they load, the
``--policy`` option, and a quiet service log (a terminal wants the table, not Lambda's JSON)."""
from __future__ import annotations

import os
import sys
from typing import NoReturn

import click

from chalicelib.errors import PolicyLoadError, PolicyUnavailableError
from chalicelib.observability import logger
from chalicelib.policy.loader import load_policy_file
from chalicelib.policy.model import AccessPolicy
from chalicelib.policy_source import policy_source_from_env

__all__ = ["fail", "load_policy", "policy_option", "quiet_service_logs"]


def fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"rdsvend: {message}", err=True)
    sys.exit(code)


def load_policy(path: str | None) -> AccessPolicy:
    """The policy file at ``path``, else the one the environment names; a one-line exit 2 when it does not load."""
    try:
        if path is not None:
            return load_policy_file(path, service_account=os.environ.get("RDSVEND_SERVICE_ACCOUNT") or None)
        return policy_source_from_env().get()
    except (PolicyLoadError, PolicyUnavailableError) as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot read policy '{path}': {exc.strerror}")


def quiet_service_logs() -> None:
    """The signer logs each role it assumes (JSON, for Lambda); a terminal wants the table."""
    logger.setLevel("WARNING")


policy_option = click.option("--policy", "policy_path", type=click.Path(dir_okay=False), default=None,
                             help="access policy file (default: RDSVEND_POLICY, else policies/access.yaml)")
