"""The demo's RDS Proxy step: vend through the proxy, log in, then break leg 2 (the proxy role's
grant) and let the canary name the leg and the fix; put the grant back."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from chalicelib.canary.explain import explain_target, render_checks
from chalicelib.canary.runner import run_canary
from chalicelib.policy.loader import load_policy_file
from devtools.local.aws import AccountSessions
from devtools.local.canary import local_canary_deps
from rdsvend.connect import connection_params

__all__ = ["proxy_step", "PROXY_DATABASE", "PROXY_DB_USER"]

PROXY_DATABASE = "orders-proxy"
PROXY_DB_USER = "orders_app"
PROXY_ROLE = "rds-proxy-access"


@contextmanager
def _proxy_role_without_grant(info: Any, account: str) -> Iterator[None]:
    iam = AccountSessions(info.moto_url, info.region, info.seeded.management_account).client("iam", account)
    arn = f"arn:aws:iam::{account}:policy/{PROXY_ROLE}-rds-connect"
    iam.detach_role_policy(RoleName=PROXY_ROLE, PolicyArn=arn)
    try:
        yield
    finally:
        iam.attach_role_policy(RoleName=PROXY_ROLE, PolicyArn=arn)


def _doctor(info: Any) -> Any:
    """The canary's checks for the proxy target, as ``rdsvend doctor`` runs them."""
    policy = load_policy_file(info.policy_path)
    one = replace(policy, databases={PROXY_DATABASE: policy.databases[PROXY_DATABASE]}, rules=())
    one = replace(one, databases={PROXY_DATABASE: replace(one.databases[PROXY_DATABASE], users={
        PROXY_DB_USER: one.databases[PROXY_DATABASE].users[PROXY_DB_USER]})})
    return run_canary(one, local_canary_deps(info, one)).targets[0]


def proxy_step(demo: Any, say: Callable[..., None], failed: type[Exception]) -> None:
    import psycopg

    info = demo.stack.info
    proxy = info.seeded.proxies[PROXY_DATABASE]
    say(f"8b. Through RDS Proxy: {PROXY_DATABASE} stands before {proxy.target}. A login crosses two IAM legs: "
        f"leg 1, the caller's token, signed for the proxy's endpoint and allowed on dbuser:{proxy.resource_id}/"
        f"{PROXY_DB_USER}; leg 2, the proxy's own login to its target with a token it signs under its role "
        f"{PROXY_ROLE} (DefaultAuthScheme IAM_AUTH), allowed on the target's db- resource id.")
    vended = demo.api().vend(PROXY_DATABASE, PROXY_DB_USER)
    if (vended.host, vended.port) != (proxy.host, proxy.port):
        raise failed("the answer is not the proxy's endpoint")
    params = connection_params(vended, {"PGSSLROOTCERT": demo.stack.ca_path})
    with psycopg.connect(**params, connect_timeout=10) as conn:
        row = conn.execute("SELECT current_user, current_setting('port')").fetchone()
    if row is None or row[0] != PROXY_DB_USER:
        raise failed("the login through the proxy is not the vended user")
    user, port = row
    say(f"Vended for {vended.host}:{vended.port} (the proxy); logged in as {user} with verify-full, and the "
        f"session runs on the target (server port {port}).", 3)
    say(f"Now someone detaches the proxy role's rds-db:connect policy. Callers' tokens are still accepted by "
        f"the proxy (leg 1), but the proxy cannot log in to {proxy.target} (leg 2). The canary says which:", 3)
    with _proxy_role_without_grant(info, proxy.account):
        again = connection_params(demo.api().vend(PROXY_DATABASE, PROXY_DB_USER), {"PGSSLROOTCERT": demo.stack.ca_path})
        try:
            psycopg.connect(**again, connect_timeout=10).close()
        except psycopg.OperationalError as exc:
            refusal = str(exc).strip().splitlines()[-1]
        else:
            raise failed("the login through the proxy worked without the proxy role's grant")
        say(f"A fresh token, a new login: {refusal}", 3)
        target = _doctor(info)
    for line in render_checks(target).splitlines():
        print("   " + line, flush=True)
    role = target.check("proxy.role_allows")
    if role is None or role.status != "fail" or role.details.get("leg") != 2:
        raise failed("the canary did not name leg 2 (proxy.role_allows)")
    say(explain_target(target).split("\n\n")[0], 3)
    say(f"Fix: {role.fix}", 3)
    healed = _doctor(info)
    if healed.status != "pass":
        raise failed(f"the proxy target is {healed.status} after the grant was put back")
    say(f"Policy re-attached: {healed.key} passes on both legs again.", 3)
