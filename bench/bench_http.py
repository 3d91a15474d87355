"""``http_handler``: p50 and p99 of a full ``POST /v1/tokens`` through ``app.app(event, context)``.

The event is the API Gateway REST event of ``tests/events/post_tokens.json`` with the
benchmark caller; the pipeline is the production one over the generated 10,000-rule policy
with static function credentials and the token cache off (every request signs). Each
request is timed alone (a fresh copy of the event is made outside the timing). Baseline:
one botocore ``generate_db_auth_token`` call, timed the same way in the same run.
"""
from __future__ import annotations

import copy
import json
import statistics
import time
from collections.abc import Callable
from typing import Any, TypeVar

from bench.bench_vend import (
    HOST,
    PORT,
    REGION,
    ROOT,
    RULES,
    bench_env,
    botocore_rds_client,
    caller_request,
    generated_policy,
    quiet_observability,
    request_context,
    result,
    static_minter,
    vending_service,
)

T = TypeVar("T")

REQUESTS = 2000
WARMUP = 200


def _percentiles(samples: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[49], cuts[98]


def _timed(call: Callable[[T], None], make: Callable[[], T], count: int) -> list[float]:
    samples: list[float] = []
    for _ in range(count):
        arg = make()
        start = time.perf_counter()
        call(arg)
        samples.append((time.perf_counter() - start) * 1e6)
    return samples


def run() -> list[dict[str, Any]]:
    bench_env()
    import app as app_module
    from chalicelib.routes.http import set_vending_service

    template: dict[str, Any] = json.loads((ROOT / "tests" / "events" / "post_tokens.json").read_text())
    context = request_context(RULES)
    template["requestContext"]["identity"].update(context["identity"])
    template["requestContext"]["accountId"] = context["accountId"]
    template["body"] = json.dumps(caller_request(RULES))
    counter = [0]

    def make_event() -> dict[str, Any]:
        counter[0] += 1
        event = copy.deepcopy(template)
        event["requestContext"]["requestId"] = f"bench-http-{counter[0]}"
        return event

    statuses: dict[int, int] = {}

    def handle(event: dict[str, Any]) -> None:
        answer = app_module.app(event, None)
        statuses[answer["statusCode"]] = statuses.get(answer["statusCode"], 0) + 1

    client = botocore_rds_client()

    def token(_: Any) -> None:
        client.generate_db_auth_token(DBHostname=HOST, Port=PORT, DBUsername="app", Region=REGION)

    set_vending_service(vending_service(generated_policy(RULES), static_minter(cache_tokens=False)))
    try:
        with quiet_observability():
            _timed(handle, make_event, WARMUP)
            _timed(token, lambda: None, WARMUP)
            statuses.clear()
            ours = _timed(handle, make_event, REQUESTS)
            base = _timed(token, lambda: None, REQUESTS)
    finally:
        set_vending_service(None)
    p50, p99 = _percentiles(ours)
    b50, b99 = _percentiles(base)
    all_ok = statuses == {200: REQUESTS}
    return [
        result("http_handler", p50, "us (p50)", b50, p50 / b50, "report p50 and p99", all_ok,
               p99_us=round(p99, 1), baseline_p99_us=round(b99, 1), requests=REQUESTS, statuses=statuses,
               rules=RULES),
        result("http_handler_p99", p99, "us (p99)", b99, p99 / b99, "report", all_ok, requests=REQUESTS),
    ]
