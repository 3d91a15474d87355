"""The demo's just-in-time access story, also what the end-to-end tests run (PostgreSQL and
MariaDB): a token refused without a grant, a request with a reason, an approval by the
approver, a login under the grant (the token ending with the grant), the grant's end, and the
db user's session ended by the canary's run (the grant sweep), or at once on revoke.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from chalicelib.aws.clients import ClientFactory
from chalicelib.routes.wiring import sweep_grants
from devtools.local.canary import local_canary_env
from rdsvend.api import VendedToken
from rdsvend.connect import connection_params
from rdsvend.mysql import pymysql_params

__all__ = ["grants_step", "GrantStory", "run_canary_sweep", "open_session", "session_alive"]

#: (database, db user) behind the local policy's ``grant: required`` rule, per engine family
GRANTED = {"postgres": ("orders-local", "orders_owner"), "mariadb": ("shop-local", "shop_owner")}


def _when(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def run_canary_sweep(info: Any) -> dict[str, Any] | None:
    """What the scheduled canary's run does for grants, as the canary function on the local stack
    (its environment, the deployed canary function's role)."""

    env = local_canary_env(info)
    clients = ClientFactory(session=info.seeded.function("canary").session(info.region), endpoint_url=info.moto_url,
                            default_region=info.region)
    return sweep_grants("local-canary-run", env=env, clients=clients)


def open_session(vended: Any, ca_path: str) -> Any:
    """A login with the vended token (psycopg for PostgreSQL, PyMySQL for the MySQL family)."""
    if vended.engine == "postgres":
        import psycopg


        return psycopg.connect(**connection_params(vended, {"PGSSLROOTCERT": ca_path}), connect_timeout=10,
                               autocommit=True)
    import pymysql


    return pymysql.connect(**pymysql_params(vended, {"PGSSLROOTCERT": ca_path}), connect_timeout=10,
                           read_timeout=10, autocommit=True)


def session_alive(conn: Any) -> bool:
    """Whether the session still answers a query."""
    try:
        if hasattr(conn, "execute"):
            conn.execute("SELECT 1").fetchone()
        else:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                cur.fetchone()
        return True
    except Exception:  # noqa: BLE001 - any driver error means the server ended it
        return False


@dataclass
class GrantStory:
    """The story's steps on a running local stack; each returns what a test checks."""

    stack: Any
    engine: str
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def target(self) -> tuple[str, str]:
        return GRANTED[self.engine]

    def call(self, method: str, path: str, body: Any = None, caller: str = "allowed") -> tuple[int, Any]:
        """One signed call; a 503 is retried as its Retry-After says (twice at most), as a client does."""
        for _attempt in range(2):
            status, answer = self.stack.request(method, path, body, caller=caller)
            if status != 503:
                return status, answer
            time.sleep(1.0)
        last: tuple[int, Any] = self.stack.request(method, path, body, caller=caller)
        return last

    def token(self, caller: str = "allowed") -> tuple[int, Any]:
        database, db_user = self.target
        return self.call("POST", "/v1/tokens", {"database": database, "db_user": db_user}, caller=caller)

    def ask(self, seconds: int, reason: str) -> dict[str, Any]:
        database, db_user = self.target
        status, grant = self.call("POST", "/v1/grants", {
            "database": database, "db_user": db_user, "reason": reason, "duration_seconds": seconds})
        if status != 200:
            raise AssertionError(f"grant request answered {status}: {grant}")
        return dict(grant)

    def decide(self, grant_id: str, verb: str, caller: str = "approver") -> tuple[int, Any]:
        """approve | deny | revoke. After a 503 whose write had landed, the retry's 409 says the
        grant is already in the state asked for: the grant as listed then is the answer."""
        status, answer = self.call("POST", f"/v1/grants/{grant_id}/{verb}", None, caller=caller)
        past = {"approve": "approved", "deny": "denied", "revoke": "revoked"}[verb]
        if status == 409 and f"is {past}:" in str(answer.get("error", {}).get("message", "")):
            listed_status, listed = self.call("GET", "/v1/grants", caller=caller)
            for grant in listed.get("grants", []) if listed_status == 200 else []:
                if grant["id"] == grant_id and grant["state"] == past:
                    return 200, grant
        return status, answer

    def login(self) -> tuple[Any, Any]:

        status, body = self.token()
        if status != 200:
            raise AssertionError(f"the token under a live grant was refused: {status} {body}")
        vended = VendedToken.from_body(body, time.monotonic())
        return vended, open_session(vended, self.stack.ca_path)


def grants_step(demo: Any, say: Callable[..., None], failed: type[Exception]) -> None:
    """The narrated story (PostgreSQL)."""
    story = GrantStory(demo.stack, "postgres")
    database, db_user = story.target
    say(f"9. Just-in-time access: {db_user} on {database} sits behind a 'grant: required' rule. Without a "
        "grant, the caller's token request is refused.")
    status, body = story.token()
    if status != 403:
        raise failed(f"a token without a grant was not refused ({status})")
    say(f"Refused: HTTP {status} '{body['error']['code']}'. The audit line says why: no_live_grant.", 3)
    grant = story.ask(8, "INC-1234: repair a stuck migration")
    say(f"The caller asks (POST /v1/grants, or 'rdsvend grant request {database} {db_user} --for 8s --reason "
        f"...'): grant {grant['id']} is {grant['state']}; the alert topic tells the approvers.", 3)
    status, approved = story.decide(grant["id"], "approve")
    if status != 200 or approved["state"] != "approved":
        raise failed(f"the approver could not approve ({status})")
    say(f"The approver (rdsvend local env --as approver; rdsvend grant approve {grant['id']}) approves: "
        f"live until {approved['ends_at']}.", 3)
    vended, conn = story.login()
    if vended.expires_at > _when(approved["ends_at"]):
        raise failed("the token outlives the grant")
    say(f"A token, ending with the grant at {vended.expires_at:%H:%M:%SZ}, and a login as {db_user}: "
        f"the session is open ({'alive' if session_alive(conn) else 'dead'}).", 3)
    time.sleep(max(0.0, (_when(approved["ends_at"]) - datetime.now(UTC)).total_seconds()) + 1)
    status, _ = story.token()
    say(f"The grant ends: a new token is refused (HTTP {status}); the open session is still there "
        f"({'alive' if session_alive(conn) else 'dead'}): the database cannot tell which token opened it.", 3)
    report = run_canary_sweep(demo.stack.info) or {}
    ended = report.get("sessions_ended", {}).get(f"{database}/{db_user}", [])
    if session_alive(conn) or not ended:
        raise failed("the canary's run did not end the session of a db user with no live grant")
    say(f"The canary's next run (the grant sweep) writes the expiry, finds {len(ended)} session(s) of {db_user} "
        f"open with no live grant and ends them (pg_terminate_backend): the session is gone. Each step is an "
        "audit line ('rdsvend audit' shows them).", 3)
