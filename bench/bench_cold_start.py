"""``cold_start``: a new process that imports the app and serves its first vend, vs a new
process that imports boto3 and calls ``generate_db_auth_token`` once.

Both are timed as whole processes (interpreter start to exit, median of interleaved runs;
CPU time of the child, so a busy machine does not decide the ratio; wall time is reported
too), with the same environment: fake static credentials, tracing off. The app process loads a
small policy file through ``RDSVEND_POLICY`` and answers the ``POST /v1/tokens`` event of
``tests/events/post_tokens.json``; it must answer 200. The slowest imports of the app
process (``python -X importtime``) are reported alongside, to say where the time goes.
"""
from __future__ import annotations

import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.bench_vend import BENCH_ENV, ROOT, result

TARGET = 1.5
ROUNDS = 5
EVENT = ROOT / "tests" / "events" / "post_tokens.json"

POLICY = """\
version: 1
databases:
  orders-prod:
    engine: postgres
    region: us-east-1
    instance: orders-prod
    host: orders-prod.abc123xyz.us-east-1.rds.amazonaws.com
    port: 5432
    dbname: orders
    users:
      orders_app: {auth: iam, tier: service-user}
rules:
  - id: orders-api
    effect: allow
    principals: ["arn:aws:iam::111122223333:role/orders-api-*"]
    databases: [orders-prod]
    db_users: [orders_app]
    conditions:
      org_ids: [o-abc123def4]
      source_ips: [10.0.0.0/8]
"""

APP_SCRIPT = """\
import json, sys
import app as app_module
event = json.load(open(sys.argv[1]))
answer = app_module.app(event, None)
body = json.loads(answer["body"])
sys.exit(0 if answer["statusCode"] == 200 and body.get("token") else 3)
"""

BASELINE_SCRIPT = """\
import boto3
token = boto3.client("rds", region_name="us-east-1").generate_db_auth_token(
    DBHostname="orders-prod.abc123xyz.us-east-1.rds.amazonaws.com", Port=5432, DBUsername="orders_app")
assert token
"""


def _env(policy: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_", "RDSVEND_"))}
    env.update(BENCH_ENV)
    env["RDSVEND_POLICY"] = str(policy)
    env["PYTHONPATH"] = str(ROOT)
    return env


def _cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _once(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one new process running ``args`` to completion."""
    cpu, start = _cpu_of_children(), time.perf_counter()
    done = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, timeout=120, check=False)
    wall, cpu = time.perf_counter() - start, _cpu_of_children() - cpu
    if done.returncode != 0:
        last = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["exit status"]
        raise RuntimeError(f"{args[0]} process failed ({done.returncode}): {last[0][:200]}")
    return cpu, wall


def slowest_imports(env: dict[str, str], count: int = 6) -> list[dict[str, Any]]:
    """The app process's imports with the most self time (ms), from ``python -X importtime``."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", "import app"], cwd=ROOT, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120, check=False)
    rows = []
    for line in done.stderr.decode(errors="replace").splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if match:
            rows.append((int(match[1]), int(match[2]), match[4]))
    rows.sort(reverse=True)
    return [{"module": name, "self_ms": round(own / 1000, 1), "cumulative_ms": round(cum / 1000, 1)}
            for own, cum, name in rows[:count]]


def run() -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="rdsvend-bench-") as tmp:
        policy = Path(tmp) / "access.yaml"
        policy.write_text(POLICY)
        script = Path(tmp) / "first_vend.py"
        script.write_text(APP_SCRIPT)
        env = _env(policy)
        try:
            _once([str(script), str(EVENT)], env)  # warm the OS file cache, and fail early
            _once(["-c", BASELINE_SCRIPT], env)
            ours, base = [], []
            for _ in range(ROUNDS):
                base.append(_once(["-c", BASELINE_SCRIPT], env))
                ours.append(_once([str(script), str(EVENT)], env))
            imports = slowest_imports(env)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            return [result("cold_start", 0.0, "ms", None, None, f"ratio <= {TARGET}", False, error=str(exc))]
    value = statistics.median(c for c, _ in ours) * 1000
    baseline = statistics.median(c for c, _ in base) * 1000
    ratio = value / baseline
    return [result("cold_start", value, "ms (CPU)", baseline, ratio, f"ratio <= {TARGET}", ratio <= TARGET,
                   runs=ROUNDS, wall_ms=round(statistics.median(w for _, w in ours) * 1000, 1),
                   baseline_wall_ms=round(statistics.median(w for _, w in base) * 1000, 1),
                   slowest_imports=imports)]


if __name__ == "__main__":
    for line in run():
        print(json.dumps(line))
