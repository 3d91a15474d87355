"""Policy loading is linear in the document and bounds every scalar.

- A policy inside every bound (19,999 users x 12,000 rules, about 1.9 MB) loads in well under
  3 s of CPU time (it took 20-50 s: the rules' user check was quadratic and the second YAML
  pass used the pure-Python parser). CPU time, not wall time: other processes on a shared
  machine do not make it fail; the same load is in ``make bench`` (``policy_load``).
- A 5,000-digit integer (or a value of 5,000 characters) is a one-line load error naming the
  field, in the loader, the service (a refusal, never a 500) and ``rdsvend policy check``.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from chalicelib.errors import ForbiddenError, PolicyLoadError
from chalicelib.identity import identity_from_arn
from chalicelib.policy.loader import load_policy_text
from chalicelib.policy_source import FilePolicySource
from chalicelib.vending.pipeline import VendingService

USERS, RULES = 19_999, 12_000


def big_policy(users: int = USERS, rules: int = RULES) -> str:
    """One database with ``users`` users; ``rules`` rules, each naming one user literally or a
    prefix pattern (every third), each with its own principal pattern."""
    lines = ["version: 1", "databases:", "  big:", "    engine: postgres", "    region: us-east-1",
             "    instance: big", "    users:"]
    lines += [f"      u{i}: {{auth: iam}}" for i in range(users)]
    lines.append("rules:")
    for r in range(rules):
        user = f"u{(r * 7919) % users}" if r % 3 else f"u{r % 100}*"
        lines.append(f"  - {{id: r{r}, effect: allow, principals: ['arn:aws:iam::111122223333:role/r{r}-*'], "
                     f"databases: [big], db_users: ['{user}']}}")
    return "\n".join(lines) + "\n"


def test_a_policy_of_19999_users_and_12000_rules_loads_in_linear_time() -> None:
    text = big_policy()
    assert 1_800_000 < len(text) < 2_200_000
    started = time.process_time()
    policy = load_policy_text(text, "big.yaml")
    took = time.process_time() - started
    assert len(policy.rules) == RULES and len(policy.databases["big"].users) == USERS
    assert took < 3.0, f"loading took {took:.1f} s of CPU time"


def test_a_rule_naming_no_declared_user_is_still_refused_in_a_big_policy() -> None:
    text = big_policy(users=2_000, rules=2_000).replace("db_users: ['u1*']", "db_users: ['x1*']", 1)
    with pytest.raises(PolicyLoadError) as caught:
        load_policy_text(text, "big.yaml")
    assert caught.value.field == "db_users" and "'x1*' names no user" in str(caught.value)


HUGE_INT = "9" * 5000
LONG_INT = "9" * 100
POLICY = """version: 1
databases:
  orders:
    engine: postgres
    region: us-east-1
    instance: orders
    port: PORT
    users:
      app: {auth: iam}
rules:
  - id: r1
    effect: allow
    principals: ["arn:aws:iam::111122223333:role/app"]
    databases: [orders]
    db_users: [app]
canary:
  timeout_seconds: TIMEOUT
"""


@pytest.mark.parametrize(("port", "timeout", "field", "message"), [
    (HUGE_INT, "10", "databases.orders.port", "invalid port '999999999999999999999999...'"),
    ("5432", HUGE_INT, "canary.timeout_seconds", "invalid timeout '999999999999999999999999...'"),
    ("5432", "0x" + "f" * 5000, "canary.timeout_seconds", "invalid timeout '0xffffffffffffffffffffff...'"),
    ('"' + "5" * 5000 + '"', "10", "databases.orders.port", "invalid port '555555555555555555555555...'"),
])
def test_an_oversized_number_or_value_is_one_line_naming_the_field(port: str, timeout: str, field: str,
                                                                   message: str) -> None:
    with pytest.raises(PolicyLoadError) as caught:
        load_policy_text(POLICY.replace("PORT", port).replace("TIMEOUT", timeout), "p.yaml")
    text = str(caught.value)
    assert caught.value.field == field and message in text and "\n" not in text and len(text) < 300


def test_an_oversized_list_item_names_its_field() -> None:
    with pytest.raises(PolicyLoadError) as caught:
        load_policy_text(POLICY.replace("PORT", "5432").replace("TIMEOUT", "10")
                         .replace('principals: ["arn', f'principals: [{LONG_INT}, "arn'), "p.yaml")
    assert caught.value.field == "principals" and "not a number of more than 18 digits" in str(caught.value)
    with pytest.raises(PolicyLoadError) as caught:
        load_policy_text(POLICY.replace("PORT", "5432").replace("TIMEOUT", "10")
                         .replace('principals: ["arn', f'principals: [{HUGE_INT}, "arn'), "p.yaml")
    assert caught.value.field == "principals" and "not a value of more than 4096 characters" in str(caught.value)


def test_the_service_refuses_rather_than_failing_on_a_huge_integer(tmp_path: Path) -> None:
    path = tmp_path / "access.yaml"
    path.write_text(POLICY.replace("PORT", HUGE_INT).replace("TIMEOUT", "10"))
    service = VendingService(policy_source=FilePolicySource(path), minter=None, resolver=None)  # type: ignore[arg-type]  # refused before minting or resolving
    caller = identity_from_arn("arn:aws:sts::111122223333:assumed-role/app/s", account="111122223333")
    with pytest.raises(ForbiddenError) as caught:
        service.vend(caller, {"database": "orders", "db_user": "app"}, "req-1")
    assert caught.value.code == "forbidden" and caught.value.reason == "policy_unavailable"


def test_policy_check_prints_one_line_for_a_huge_integer(tmp_path: Path) -> None:
    path = tmp_path / "access.yaml"
    path.write_text(POLICY.replace("PORT", HUGE_INT).replace("TIMEOUT", "10"))
    proc = subprocess.run([sys.executable, "-m", "rdsvend.cli", "policy", "check", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"rdsvend: {path}, field 'databases.orders.port': invalid port '999999999999999999999999...' (expected 1-65535)"]
