"""Setup that is not finished yet, told apart from a failing target.

Right after a first deploy two steps are usually still to do, and without them every target's
checks error: the organization reader role (SCPs can be read only from the management account
or a delegated administrator) and a network path from the canary to the databases. Those are
not targets failing: :func:`pending_step` recognises them and names the step to take, so the
canary reports them as its own setup status (``CanarySetupPending``, one log line with the
step) and the failing-target alarm stays for real failures.

Recognised, and nothing else (any other error still counts as failing):

- ``org.scp_allows`` erroring because Organizations refused the read (access denied, not a
  delegated administrator) or the organization reader role could not be assumed;
- ``db.connect`` timing out or unreachable while the stack says the canary has no network path
  of its own (``RDSVEND_CANARY_NETWORK=none``: no ``subnet_ids``).
"""
from __future__ import annotations

from chalicelib.canary.model import CheckResult, TargetReport

__all__ = ["ORG_READER_STEP", "NETWORK_STEP", "pending_step", "pending_steps"]

ORG_READER_STEP = ("create the organization reader role in the management account (or make the service "
                   "account a delegated administrator) and set RDSVEND_ORG_ROLE_ARN for the canary "
                   "(docs/deploy.md, 'The canary in a member account')")
NETWORK_STEP = ("give the canary subnet_ids and security_group_ids that reach the databases "
                "(.chalice/config.json), then package and deploy again")

_REFUSED_READS = ("accessdenied", "access denied", "not authorized", "delegated administrator",
                  "awsorganizationsnotinuse")


def pending_step(check: CheckResult, *, network: str | None) -> str | None:
    """The setup step ``check`` is waiting for, or None when it is a verdict of its own."""
    if check.status != "error":
        return None
    if check.id == "org.scp_allows":
        cause = str(check.details.get("cause", check.message)).lower()
        return ORG_READER_STEP if any(word in cause for word in _REFUSED_READS) else None
    if check.id == "db.connect" and network == "none":
        return NETWORK_STEP if check.details.get("error_kind") in ("timeout", "refused") else None
    return None


def pending_steps(target: TargetReport, *, network: str | None) -> dict[str, str]:
    """Check id -> step, for the checks of ``target`` that wait for setup."""
    steps = {c.id: pending_step(c, network=network) for c in target.checks}
    return {cid: step for cid, step in steps.items() if step}
