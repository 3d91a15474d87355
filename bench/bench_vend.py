"""``vend``: full in-process vends/s over a 10,000-rule policy, and the peak RSS of that run.

One vend = identity from the API Gateway request context, the decision over the policy,
a freshly signed token (the token cache is off, so every vend signs), the audit record and
the metric. Baseline: botocore's ``generate_db_auth_token`` alone, same credentials, same
process. The measurement runs in a child process so its peak RSS is the vend path's own.

Also home of the helpers the other signer benchmarks share (:func:`generated_policy`,
:func:`rate`, :func:`quiet_observability`...).
"""
from __future__ import annotations

import contextlib
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RULES = 10_000
RSS_LIMIT_MB = 150.0
ACCESS_KEY, SECRET_KEY, SESSION_TOKEN = "ASIABENCHEXAMPLE0001", "bench/secret+key", "IQoJb3JpZ2luX2VjEBench=="
HOST, PORT, REGION = "db-0042.abc123xyz.us-east-1.rds.amazonaws.com", 5432, "us-east-1"
BENCH_ENV = {
    "AWS_ACCESS_KEY_ID": ACCESS_KEY,
    "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    "AWS_SESSION_TOKEN": SESSION_TOKEN,
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
    "POWERTOOLS_SERVICE_NAME": "rdsvend",
    "POWERTOOLS_METRICS_NAMESPACE": "rdsvend",
    "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon here
}


def bench_env() -> None:
    """Fake credentials and Powertools settings, before anything imports chalicelib."""
    for key, value in BENCH_ENV.items():
        os.environ.setdefault(key, value)
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SECURITY_TOKEN"):
        os.environ.pop(key, None)


# -- the policy ---------------------------------------------------------------------------
N_DATABASES = 200


def _account(i: int) -> str:
    return f"{100000000000 + i % 500}"


def caller_arn(rules: int) -> str:
    """The caller the last generated rule allows (an assumed-role session)."""
    i = rules - 1
    return f"arn:aws:sts::{_account(i)}:assumed-role/svc-{i:05d}-blue/i-0abc123"


def caller_request(rules: int) -> dict[str, str]:
    i = rules - 1
    return {"database": f"db-{i % N_DATABASES:04d}", "db_user": f"app_{i % N_DATABASES:04d}"}


def request_context(rules: int, request_id: str = "bench-1") -> dict[str, Any]:
    return {
        "requestId": request_id,
        "accountId": _account(rules - 1),
        "identity": {"userArn": caller_arn(rules), "accountId": _account(rules - 1),
                     "principalOrgId": "o-bench12345", "sourceIp": "10.1.2.3"},
    }


def generated_policy(rules: int = RULES) -> Any:
    """A realistic policy of ``rules`` rules over 200 databases.

    Mostly one allow per service role (its own account, its own database and user),
    every 10th a deny on owner users, every 7th with org and source-IP conditions, plus a
    few broad rules (``dba-*`` in any account, one whole account) that every decision sees.
    """
    import ipaddress

    from chalicelib.policy.model import AccessPolicy, Conditions, Database, DbUser, Rule

    databases = {}
    for k in range(N_DATABASES):
        name = f"db-{k:04d}"
        databases[name] = Database(
            name=name, engine="postgres", region=REGION, kind="instance", identifier=name,
            users={f"app_{k:04d}": DbUser(f"app_{k:04d}", "iam", "service-user"),
                   f"owner_{k:04d}": DbUser(f"owner_{k:04d}", "iam", "service-admin"),
                   f"etl_{k:04d}": DbUser(f"etl_{k:04d}", "kerberos")},
            host=f"{name}.abc123xyz.{REGION}.rds.amazonaws.com", port=PORT, dbname=f"d{k}")
    conditions = Conditions(org_ids=("o-bench12345",), source_ips=(ipaddress.ip_network("10.0.0.0/8"),))
    broad = [
        Rule("dba-anywhere", "allow", ("arn:aws:iam::*:role/dba-*",), ("*",), ("*",)),
        Rule("no-owner-from-ci", "deny", ("arn:aws:iam::*:role/dba-ci",), ("*",), ("owner_*",)),
        Rule("platform-account", "allow", ("arn:aws:iam::100000000007:role/*",), ("db-00*",), ("app_*",)),
        Rule("auditors", "allow", ("arn:aws:iam::*:role/auditor",), ("*",), ("app_*",), conditions),
    ]
    out = list(broad)
    for i in range(rules - len(broad)):
        k = i % N_DATABASES
        if i % 10 == 9:
            out.append(Rule(f"deny-{i:05d}", "deny", (f"arn:aws:iam::{_account(i)}:role/svc-{i:05d}-*",),
                            (f"db-{k:04d}",), (f"owner_{k:04d}",)))
        else:
            out.append(Rule(f"svc-{i:05d}", "allow", (f"arn:aws:iam::{_account(i)}:role/svc-{i:05d}-*",),
                            (f"db-{k:04d}",), (f"app_{k:04d}", "app_*") if i % 3 else (f"app_{k:04d}",),
                            conditions if i % 7 == 0 else Conditions()))
    # the benchmark caller's own rule is the last one
    i = rules - 1
    out[-1] = Rule(f"svc-{i:05d}", "allow", (f"arn:aws:iam::{_account(i)}:role/svc-{i:05d}-*",),
                   (f"db-{i % N_DATABASES:04d}",), (f"app_{i % N_DATABASES:04d}",), conditions)
    return AccessPolicy(databases=databases, rules=tuple(out), source=f"<generated {rules} rules>")


# -- measuring ----------------------------------------------------------------------------
def rate(fn: Callable[[], Any], *, seconds: float = 0.6, rounds: int = 3) -> float:
    """Operations per CPU second of this thread: the best of ``rounds`` runs of ~``seconds`` each.

    CPU time (``time.thread_time``) rather than wall time, so that other processes on a
    shared machine do not decide the ratio; both sides of a ratio are measured the same way.
    """
    clock = time.thread_time
    batch = 1
    while True:  # size a batch to ~20 ms
        start = clock()
        for _ in range(batch):
            fn()
        if clock() - start > 0.02:
            break
        batch *= 2
    best = 0.0
    for _ in range(rounds):
        done, start = 0, clock()
        while (elapsed := clock() - start) < seconds:
            for _ in range(batch):
                fn()
            done += batch
        best = max(best, done / elapsed)
    return best


@contextlib.contextmanager
def quiet_observability() -> Iterator[None]:
    """Audit lines and EMF metrics go to /dev/null (still formatted and written), not stdout."""
    from chalicelib.observability import logger

    handler = logger.registered_handler
    with open(os.devnull, "w") as devnull:
        old = handler.setStream(devnull)  # type: ignore[attr-defined]  # a StreamHandler here
        try:
            with contextlib.redirect_stdout(devnull):
                yield
        finally:
            handler.setStream(old)  # type: ignore[attr-defined]  # a StreamHandler here


def static_minter(*, cache_tokens: bool = False) -> Any:
    from chalicelib.signer import SigningCredentials, StaticCredentialsProvider, TokenMinter

    creds = SigningCredentials(ACCESS_KEY, SECRET_KEY, SESSION_TOKEN)
    return TokenMinter(credentials=StaticCredentialsProvider(creds), cache_tokens=cache_tokens)


def botocore_rds_client() -> Any:
    import botocore.session

    return botocore.session.get_session().create_client(
        "rds", region_name=REGION, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
        aws_session_token=SESSION_TOKEN)


def vending_service(policy: Any, minter: Any) -> Any:
    from chalicelib.aws.rds import EndpointResolver
    from chalicelib.policy_source import StaticPolicySource
    from chalicelib.vending.pipeline import VendingService

    def no_aws(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the benchmark policy names host and port: no RDS call expected")

    return VendingService(policy_source=StaticPolicySource(policy), minter=minter, resolver=EndpointResolver(no_aws))


def peak_rss_mb() -> float:
    """This process's peak RSS. ``VmHWM`` belongs to the process image, so unlike ``ru_maxrss``
    (which Linux carries over from the forking parent across exec) it is the child's own."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def result(name: str, value: float, unit: str, baseline: float | None, ratio: float | None, target: str,
           ok: bool, **extra: Any) -> dict[str, Any]:
    return {"name": name, "value": round(value, 2), "unit": unit,
            "baseline": None if baseline is None else round(baseline, 2),
            "ratio": None if ratio is None else round(ratio, 3), "target": target, "ok": bool(ok), **extra}


# -- the child process --------------------------------------------------------------------
def _child_vend() -> dict[str, Any]:
    bench_env()
    from chalicelib.identity import identity_from_request_context

    policy = generated_policy(RULES)
    service = vending_service(policy, static_minter(cache_tokens=False))
    client = botocore_rds_client()
    request = caller_request(RULES)
    context = request_context(RULES)
    counter = [0]

    def vend() -> None:
        counter[0] += 1
        body = service.vend(identity_from_request_context(context), dict(request), f"bench-{counter[0]}")
        if not body["token"]:
            raise AssertionError("empty token")

    def baseline() -> None:
        client.generate_db_auth_token(DBHostname=HOST, Port=PORT, DBUsername=request["db_user"], Region=REGION)

    with quiet_observability():
        vend()  # fail before timing if the pipeline denies
        first = service.vend(identity_from_request_context(context), dict(request), "bench-check")
        assert first["rule"] == f"svc-{RULES - 1:05d}", first["rule"]
        vends, base = [], []
        for _ in range(2):  # interleaved, best of each
            base.append(rate(baseline, rounds=2))
            vends.append(rate(vend, rounds=2))
    return {"vends_per_s": max(vends), "baseline_per_s": max(base), "peak_rss_mb": peak_rss_mb()}


def _child_baseline_rss() -> dict[str, Any]:
    bench_env()
    import boto3

    boto3.client("rds", region_name=REGION).generate_db_auth_token(
        DBHostname=HOST, Port=PORT, DBUsername="app", Region=REGION)
    return {"peak_rss_mb": peak_rss_mb()}


def _run_child(which: str) -> dict[str, Any]:
    env = {**os.environ, **BENCH_ENV, "PYTHONPATH": str(ROOT)}
    env.pop("AWS_SECURITY_TOKEN", None)
    done = subprocess.run([sys.executable, "-m", "bench.bench_vend", which], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=240, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"bench child '{which}' failed: {done.stderr.strip().splitlines()[-1:]}")
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])  # the child prints one object
    return answer


def run() -> list[dict[str, Any]]:
    try:
        measured = _run_child("--child")
        base_rss = _run_child("--baseline-rss")["peak_rss_mb"]
    except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
        return [result("vend", 0.0, "vends/s", None, None, "ratio >= 1", False, error=str(exc)[:300])]
    ratio = measured["vends_per_s"] / measured["baseline_per_s"]
    rss = measured["peak_rss_mb"]
    return [
        result("vend", measured["vends_per_s"], "vends/s", measured["baseline_per_s"], ratio,
               "ratio >= 1", ratio >= 1.0, rules=RULES),
        result("vend_peak_rss", rss, "MB", base_rss, rss / base_rss, f"value < {RSS_LIMIT_MB:.0f} MB",
               rss < RSS_LIMIT_MB, rules=RULES),
    ]


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "--child":
        print(json.dumps(_child_vend()))
    elif mode == "--baseline-rss":
        print(json.dumps(_child_baseline_rss()))
    else:
        for line in run():
            print(json.dumps(line))
