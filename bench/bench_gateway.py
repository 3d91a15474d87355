"""``gateway_e2e``: p50 and p99 of a signed ``POST /v1/tokens`` through the local gateway.

The gateway runs in its own process, as under ``rdsvend local up``, in front of the real app
and pipeline (the generated 10,000-rule policy, static function credentials, token cache
off: every request signs). Eight callers, each its own process on its own kept-alive
connection, each send a request every :data:`INTERVAL_S` (staggered, 200 requests/s in all: a busy local stack,
below the gateway's capacity, so the figure is latency rather than queueing at saturation;
``saturated_rps`` reports that capacity with the same callers sending back to back). Every
request is signed with SigV4 before the clock starts, and is timed from its first byte sent
to the last byte of the answer read. Baseline: the app handler alone
(``app.app(event, context)``) for the same request, timed in this process.
Target: p50 under 5 ms (it was 44 ms when headers and body left in two writes without
``TCP_NODELAY``, and one request at a time).
"""
from __future__ import annotations

import copy
import http.client
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

from bench.bench_vend import ROOT, RULES, _account, bench_env, generated_policy, quiet_observability, result

TARGET_MS = 5.0
CALLERS = 8
PER_CALLER = 150
WARMUP = 20
INTERVAL_S = 0.04
REGION = "us-east-1"
# A caller whose rule has no source-IP condition (the gateway's callers come from 127.0.0.1).
_I = RULES - 6  # rule svc-09994: no conditions (the last generated rules are i <= 9995)
CALLER_ARN = f"arn:aws:sts::{_account(_I)}:assumed-role/svc-{_I:05d}-blue/i-1"
REQUEST = {"database": f"db-{_I % 200:04d}", "db_user": f"app_{_I % 200:04d}"}
ACCESS_KEY, SECRET_KEY = "AKIAGATEWAYBENCH0001", "gateway/bench+secret000000000000000000000"


def _percentiles(samples: list[float]) -> tuple[float, float]:
    import statistics

    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[49], cuts[98]


def serve() -> None:
    """The child: the gateway in front of the app; prints its URL, serves until stdin closes."""
    bench_env()
    import app as app_module
    from bench.bench_vend import static_minter, vending_service
    from chalicelib.routes.http import set_vending_service
    from devtools.local.gateway import Gateway
    from devtools.local.sigv4 import Credential, StaticSecretLookup

    set_vending_service(vending_service(generated_policy(RULES), static_minter(cache_tokens=False)))
    credential = Credential(ACCESS_KEY, SECRET_KEY, None, CALLER_ARN, _account(_I))
    gateway = Gateway(app_module.app, StaticSecretLookup([credential]), region=REGION, account="222222222222",
                      org_id_of=lambda account: "o-bench12345")
    url = gateway.start()
    print(url, flush=True)  # before stdout goes quiet
    with quiet_observability():
        sys.stdin.read()
        gateway.stop()


def _signed(url: str, count: int) -> list[tuple[str, dict[str, str], bytes]]:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    body = json.dumps(REQUEST).encode()
    creds = Credentials(ACCESS_KEY, SECRET_KEY)
    out = []
    for _ in range(count):
        request = AWSRequest(method="POST", url=url + "/v1/tokens", data=body,
                             headers={"Content-Type": "application/json"})
        SigV4Auth(creds, "execute-api", REGION).add_auth(request)
        out.append(("/v1/tokens", dict(request.headers.items()), body))
    return out


def _caller(url: str, requests: list[tuple[str, dict[str, str], bytes]], samples: list[float],
            statuses: dict[int, int], start: threading.Barrier, offset: float, interval: float) -> None:
    host, port = url[len("http://"):].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    start.wait()
    due = time.perf_counter() + offset
    for n, (path, headers, body) in enumerate(requests):
        if interval:
            time.sleep(max(0.0, due - time.perf_counter()))
            due += interval
        began = time.perf_counter()
        connection.request("POST", path, body=body, headers=headers)
        answer = connection.getresponse()
        answer.read()
        elapsed = (time.perf_counter() - began) * 1e3
        if n >= WARMUP:
            samples.append(elapsed)
            statuses[answer.status] = statuses.get(answer.status, 0) + 1
    connection.close()


def _handler_alone() -> list[float]:
    import app as app_module
    from bench.bench_vend import static_minter, vending_service
    from chalicelib.routes.http import set_vending_service

    template = json.loads((ROOT / "tests" / "events" / "post_tokens.json").read_text())
    template["requestContext"]["identity"].update(
        {"userArn": CALLER_ARN, "accountId": _account(_I), "principalOrgId": "o-bench12345", "sourceIp": "127.0.0.1"})
    template["requestContext"]["accountId"] = _account(_I)
    template["body"] = json.dumps(REQUEST)
    set_vending_service(vending_service(generated_policy(RULES), static_minter(cache_tokens=False)))
    samples = []
    try:
        with quiet_observability():
            for n in range(WARMUP + CALLERS * PER_CALLER):
                event = copy.deepcopy(template)
                event["requestContext"]["requestId"] = f"bench-gw-{n}"
                began = time.perf_counter()
                answer = app_module.app(event, None)
                elapsed = (time.perf_counter() - began) * 1e3
                if answer["statusCode"] != 200:
                    raise RuntimeError(f"the app answered {answer['statusCode']}")
                if n >= WARMUP:
                    samples.append(elapsed)
    finally:
        set_vending_service(None)
    return samples


def run() -> list[dict[str, Any]]:
    bench_env()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", "from bench.bench_gateway import serve; serve()"],
                             cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdin is not None
        import select

        ready, _, _ = select.select([child.stdout], [], [], 120)
        url = child.stdout.readline().strip() if ready else ""
        if not url.startswith("http://"):
            return [result("gateway_e2e", 0.0, "ms (p50)", None, None, f"p50 < {TARGET_MS:g} ms", False,
                           error="the gateway did not start")]
        samples, statuses, _ = _load(url, INTERVAL_S)
        _, saturated_statuses, elapsed = _load(url, 0.0)
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
    p50, p99 = _percentiles(samples)
    b50, b99 = _percentiles(_handler_alone())
    all_ok = statuses == saturated_statuses == {200: CALLERS * PER_CALLER}
    return [result("gateway_e2e", p50, "ms (p50)", b50, p50 / b50, f"p50 < {TARGET_MS:g} ms",
                   all_ok and p50 < TARGET_MS, p99_ms=round(p99, 2), baseline_p99_ms=round(b99, 2),
                   callers=CALLERS, interval_ms=INTERVAL_S * 1e3, requests=len(samples), statuses=statuses,
                   saturated_rps=round(CALLERS * (WARMUP + PER_CALLER) / elapsed), saturated_statuses=saturated_statuses,
                   rules=RULES)]


def _load(url: str, interval: float) -> tuple[list[float], dict[int, int], float]:
    """Eight callers at once, each its own process (callers do not share a GIL, as real ones
    do not); their latencies (ms), statuses, and the wall time of it all."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(CALLERS + 1)
    queue = context.Queue()
    signed = [_signed(url, WARMUP + PER_CALLER) for _ in range(CALLERS)]
    processes = [context.Process(target=_caller_process, args=(url, signed[k], barrier, k * interval / CALLERS,
                                                               interval, queue)) for k in range(CALLERS)]
    for process in processes:
        process.start()
    barrier.wait()
    started = time.perf_counter()
    answers = [queue.get(timeout=300) for _ in processes]
    elapsed = time.perf_counter() - started
    for process in processes:
        process.join(30)
    samples: list[float] = []
    statuses: dict[int, int] = {}
    for part, count in answers:
        samples.extend(part)
        for status, n in count.items():
            statuses[status] = statuses.get(status, 0) + n
    return samples, statuses, elapsed


def _caller_process(url: str, requests: list[tuple[str, dict[str, str], bytes]], barrier: Any, offset: float,
                    interval: float, queue: Any) -> None:
    samples: list[float] = []
    statuses: dict[int, int] = {}
    _caller(url, requests, samples, statuses, barrier, offset, interval)
    queue.put((samples, statuses))
