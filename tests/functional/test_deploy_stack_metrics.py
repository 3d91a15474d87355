"""The stack's alarms and dashboard query the metrics the functions really emit: the same
namespace, metric names and dimension sets (a Metrics Insights SCHEMA(...) matches only the
exact dimension set, and an alarm on a metric nobody emits never fires). The EMF documents
are produced by the real emitters and read back from stdout."""
from __future__ import annotations

import io
import json
import re
from contextlib import redirect_stdout
from datetime import UTC, datetime
from pathlib import Path

import pytest

from chalicelib.canary.emit import emit_metrics
from chalicelib.canary.model import CheckResult, Report, TargetReport
from chalicelib.observability import count_denied, count_rate_limit_fallback, count_vended, invocation
from devtools.deploy.settings import FUNCTIONS, load_chalice_config, load_deploy_file
from devtools.deploy.stack import alarms, dashboard_body, stack_plan

ROOT = Path(__file__).resolve().parents[2]
CONFIG = load_chalice_config(ROOT)
DEPLOY = load_deploy_file(ROOT / "policies" / "deploy.yaml")


def emitted() -> dict[str, set[tuple[str, frozenset[str]]]]:
    """metric name -> {(namespace, dimension set)} of what the emitters write."""
    at = datetime(2026, 11, 27, tzinfo=UTC)
    report = Report(at, at, (TargetReport("orders-prod", "orders_app", (
        CheckResult("db.connect", "pass", "ok", details={"latency_ms": 12.5}),
        CheckResult("iam.signer_allows", "fail", "denied"),
        # setup not finished (no organization reader role yet): CanarySetupPending
        CheckResult("org.scp_allows", "error", "could not read the SCP chain", "",
                    {"cause": "AccessDeniedException"}))),))
    out = io.StringIO()
    with redirect_stdout(out):
        with invocation("req-1"):
            count_vended("orders-prod")
            count_denied("no_rule")
            count_rate_limit_fallback()
        emit_metrics(report)
    found: dict[str, set[tuple[str, frozenset[str]]]] = {}
    for line in out.getvalue().splitlines():
        if '"_aws"' not in line:
            continue
        document = json.loads(line)
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                for dims in directive["Dimensions"]:
                    found.setdefault(metric["Name"], set()).add((directive["Namespace"], frozenset(dims)))
    return found


def queried(text: str) -> set[tuple[str, str, frozenset[str]]]:
    """(metric, namespace, dimensions) of every SELECT ... FROM SCHEMA(...) in ``text``."""
    out = set()
    for metric, schema in re.findall(r"SELECT \w+\((\w+)\) FROM SCHEMA\(([^)]*)\)", text):
        namespace, *dims = [part.strip().strip('"').strip("\\").strip('"') for part in schema.split(",")]
        out.add((metric, namespace, frozenset(dims)))
    return out


@pytest.mark.parametrize("stage", list(CONFIG["stages"]))
def test_every_own_metric_the_stack_queries_is_emitted_with_that_namespace_and_dimensions(stage: str) -> None:
    plan = stack_plan(CONFIG, stage, DEPLOY.stage(stage))
    # Each stage's functions write to the stage's own namespace (POWERTOOLS_METRICS_NAMESPACE in its
    # environment); the emitters here write to this process's, so compare the dimension sets.
    assert plan.namespace == f"rdsvend-{stage}"
    metrics = {name: {dims for _ns, dims in found} for name, found in emitted().items()}
    texts = [dashboard_body(plan)] + [q.expression or "" for a in alarms(plan) for q in a.queries]
    found = queried("\n".join(texts))
    own = [(m, ns, dims) for m, ns, dims in found if ns == plan.namespace]
    assert {m for m, _, _ in own} == {"CanaryCheckFailed", "ConnectLatency", "RequestsDenied", "CanarySetupPending"}
    assert all(ns in (plan.namespace, "AWS/RDS") for _m, ns, _d in found)  # never another stage's
    for metric, _namespace, dims in own:
        assert dims in metrics[metric], (metric, metrics[metric])
    # Plain metric widgets: TokensVended and RateLimitFallback, dimension {service}.
    for widget in json.loads(dashboard_body(plan))["widgets"]:
        for row in widget["properties"]["metrics"]:
            if isinstance(row[0], str) and row[0].startswith("rdsvend"):
                assert row[0] == plan.namespace
                name, dims = row[1], frozenset(row[2::2])
                assert dims in metrics[name], (name, metrics[name])


@pytest.mark.parametrize("key", ["RDSVEND_ALERT_TOPIC", "RDSVEND_SERVER_ID", "RDSVEND_SERVICE_ACCOUNT"])
def test_a_value_the_stack_sets_from_its_own_account_is_refused_in_the_config(key: str) -> None:
    from devtools.deploy.settings import DeployConfigError

    config = json.loads(json.dumps(CONFIG))
    config["stages"]["dev"]["lambda_functions"]["canary"]["environment_variables"][key] = (
        "arn:aws:sns:eu-west-1:999988887777:elsewhere")
    with pytest.raises(DeployConfigError) as raised:
        stack_plan(config, "dev", DEPLOY.stage("dev"))
    assert f"{key} is set by the stack" in str(raised.value) and "function 'canary'" in str(raised.value)


def test_a_function_added_later_gets_an_errors_alarm(monkeypatch: pytest.MonkeyPatch) -> None:
    from devtools.deploy import stack

    monkeypatch.setattr(stack, "FUNCTIONS", (*FUNCTIONS, "rotate"))
    plan = stack_plan(CONFIG, "dev", DEPLOY.stage("dev"))
    plan = type(plan)(**{**plan.__dict__, "functions": {**plan.functions, "rotate": "rdsvend-dev-rotate"}})
    names = {a.name: a for a in stack.alarms(plan)}
    rotate = names["rdsvend-dev-rotate-errors"]
    assert rotate.queries[0].dimensions == (("FunctionName", "rdsvend-dev-rotate"),)
