"""What one stage's stack holds besides Chalice's functions and API, in neither format.

:func:`stack_plan` reads the stage from ``.chalice/config.json`` and ``policies/deploy.yaml``
and names everything the stage owns; :mod:`devtools.deploy.sam` and
:mod:`devtools.deploy.terraform` render the same plan, so the two formats cannot drift:

- the SNS alert topic (optional e-mail subscription), the canary's DynamoDB state table, the
  fleet-wide rate-limit table (when ``RDSVEND_RATE_TABLE`` is set), the SSM parameter holding
  the access policy;
- the alarms of :func:`alarms` and the dashboard of :func:`dashboard_body`;
- the canary's on-failure destination (the alert topic), log groups kept when the stack is
  deleted, API stage throttling and access logs.

Every name carries the stage, so two stages never collide in one account. A function added
to :data:`devtools.deploy.settings.FUNCTIONS` gets its name, role name, retained log group and
error alarm from here without further edits; functions in :data:`SERVING` count as serving
callers (the vend-errors alarm), :data:`SCHEDULED` ones (EventBridge) get the not-running
alarm and the on-failure destination, and any other gets an errors alarm of its own.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from devtools.deploy.publish import ADVANCED_TIER_BYTES, STANDARD_TIER_BYTES
from devtools.deploy.settings import (
    FUNCTIONS,
    VENDING,
    DeployConfigError,
    DeploySettings,
    lambda_function_name,
    role_name,
    stage_settings,
)

__all__ = [
    "SERVING",
    "SCHEDULED",
    "Param",
    "PARAMETERS",
    "StackPlan",
    "MetricQuery",
    "AlarmSpec",
    "stack_plan",
    "physical_names",
    "stack_environment",
    "REGION_PLACEHOLDER",
    "alarms",
    "dashboard_body",
    "access_log_format",
    "parameter_tier",
]

#: Functions that answer callers: their errors are the "vend errors" alarm.
SERVING = VENDING
#: Scheduled functions: alarmed when they stop running or fail, failures sent to the topic.
SCHEDULED = ("canary",)

#: Where a dashboard widget's region goes: each format puts the stack's own region there.
REGION_PLACEHOLDER = "@@REGION@@"


@dataclass(frozen=True)
class Param:
    """A value chosen when deploying: a CloudFormation parameter / a Terraform variable."""

    cfn: str
    tf: str
    default: str | int
    description: str

    @property
    def number(self) -> bool:
        return isinstance(self.default, int)


ALERT_EMAIL = Param("AlertEmail", "alert_email", "",
                    "e-mail address subscribed to the alert topic (empty: no subscription)")
API_RATE = Param("ApiThrottleRateLimit", "api_throttle_rate_limit", 100,
                 "API stage steady-state request rate limit (requests per second)")
API_BURST = Param("ApiThrottleBurstLimit", "api_throttle_burst_limit", 200, "API stage burst limit (requests)")
DENIAL_SPIKE = Param("DenialSpikeThreshold", "denial_spike_threshold", 50,
                     "refused requests in 5 minutes that raise the denial-spike alarm")
PARAMETERS = (ALERT_EMAIL, API_RATE, API_BURST, DENIAL_SPIKE)


@dataclass(frozen=True)
class StackPlan:
    stage: str
    region: str
    account: str
    partition: str
    namespace: str  # POWERTOOLS_METRICS_NAMESPACE
    service: str  # POWERTOOLS_SERVICE_NAME
    functions: Mapping[str, str]  # Chalice name -> Lambda function name
    roles: Mapping[str, str]  # Chalice name -> IAM role name
    topic_name: str
    state_table: str
    rate_table: str | None
    grants_table: str | None
    policy_parameter: str  # "/rdsvend/<stage>/access-policy"
    api_name: str
    api_stage: str
    access_log_group: str
    dashboard: str
    schedule_rule: str  # Terraform's name for the canary's EventBridge rule
    retention_days: int | None
    xray: bool
    vpc_functions: frozenset[str] = frozenset()  # functions given subnet_ids

    def alarm_name(self, suffix: str) -> str:
        return f"rdsvend-{self.stage}-{suffix}"


def stack_plan(config: Mapping[str, Any], stage: str, deploy: DeploySettings) -> StackPlan:
    """What ``stage`` owns, named; ``deploy`` is that stage of ``policies/deploy.yaml``."""
    if deploy.stage and deploy.stage != stage:
        raise ValueError(f"deploy settings of stage '{deploy.stage}' given for stage '{stage}'")
    settings = stage_settings(config, stage)
    stage_cfg = config["stages"][stage]
    env = {**config.get("environment_variables", {}), **stage_cfg.get("environment_variables", {})}
    retention = stage_cfg.get("log_retention_in_days", config.get("log_retention_in_days"))
    return StackPlan(
        stage=stage, region=deploy.region, account=deploy.account, partition=deploy.partition,
        namespace=env.get("POWERTOOLS_METRICS_NAMESPACE", "rdsvend"),
        service=env.get("POWERTOOLS_SERVICE_NAME", "rdsvend"),
        functions={f: lambda_function_name(stage, f) for f in FUNCTIONS},
        roles={f: role_name(stage, f) for f in FUNCTIONS},
        topic_name=settings.topic_name,
        state_table=settings.state_table, rate_table=settings.rate_table, grants_table=settings.grants_table,
        policy_parameter=settings.policy_parameter,
        api_name=f"rdsvend-{stage}", api_stage=stage_cfg.get("api_gateway_stage", "api"),
        access_log_group=f"/aws/apigateway/rdsvend-{stage}/access",
        dashboard=f"rdsvend-{stage}", schedule_rule=f"rdsvend-{stage}-canary-schedule",
        retention_days=retention, xray=bool(stage_cfg.get("xray", config.get("xray", False))),
        vpc_functions=settings.vpc_functions,
    )


def stack_environment(plan: StackPlan, function: str, *, account: Any, topic: Any) -> dict[str, Any]:
    """What the stack adds to ``function``'s environment from where it is deployed (never a
    literal in .chalice/config.json): the account it runs in (the access policy's loader checks
    foreign databases with it), the canary's alert topic, the vend function's server id (the
    audience of the identity proofs callers send)."""
    env: dict[str, Any] = {"RDSVEND_SERVICE_ACCOUNT": account}
    if function in SCHEDULED or (function in VENDING and plan.grants_table):
        # the canary's alerts; the vending functions publish grant requests awaiting approval
        env["RDSVEND_ALERT_TOPIC"] = topic
    if function in SCHEDULED:
        # Whether the canary has a network path of its own (chalicelib.canary.setup).
        env["RDSVEND_CANARY_NETWORK"] = "vpc" if function in plan.vpc_functions else "none"
    if function == "vend":
        env["RDSVEND_SERVER_ID"] = _server_id(plan, account)
    return env


def _server_id(plan: StackPlan, account: Any) -> Any:
    if isinstance(account, dict):  # CloudFormation: the stack's own account
        return {"Fn::Sub": f"rdsvend-{plan.stage}.${{AWS::AccountId}}"}
    return f"rdsvend-{plan.stage}.{account}"


def physical_names(plan: StackPlan) -> dict[str, str]:
    """Every name ``plan``'s stack gives a resource in its account, by what it names."""
    names = {f"function {f}": n for f, n in plan.functions.items()}
    names.update({f"role {f}": n for f, n in plan.roles.items()})
    names.update({f"log group {f}": f"/aws/lambda/{n}" for f, n in plan.functions.items()})
    names.update({
        "topic": plan.topic_name, "state table": plan.state_table, "parameter": plan.policy_parameter,
        "api": plan.api_name, "access log group": plan.access_log_group, "dashboard": plan.dashboard,
        "schedule rule": plan.schedule_rule,
    })
    if plan.rate_table:
        names["rate table"] = plan.rate_table
    names.update({f"alarm {spec.key}": spec.name for spec in alarms(plan)})
    return names


# -- alarms -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class MetricQuery:
    id: str
    expression: str | None = None  # metric math or a Metrics Insights query
    namespace: str | None = None
    metric: str | None = None
    dimensions: tuple[tuple[str, str], ...] = ()
    stat: str = "Sum"
    period: int = 300
    returned: bool = True
    label: str | None = None


@dataclass(frozen=True)
class AlarmSpec:
    key: str  # CloudFormation logical id suffix / Terraform resource name
    name: str
    description: str
    queries: tuple[MetricQuery, ...]
    comparison: str
    threshold: int | Param
    periods: int = 1
    datapoints: int = 1
    missing: str = "notBreaching"


def _lambda_metric(qid: str, metric: str, function: str, period: int, returned: bool = True) -> MetricQuery:
    return MetricQuery(id=qid, namespace="AWS/Lambda", metric=metric, dimensions=(("FunctionName", function),),
                       period=period, returned=returned)


def alarms(plan: StackPlan) -> list[AlarmSpec]:
    ns = plan.namespace
    found: list[AlarmSpec] = [
        AlarmSpec(
            "CanaryTargetFailing", plan.alarm_name("canary-target-failing"),
            "A (database, db user) the canary checks has failed or erroring checks for two runs in a row. "
            "The canary's own alert names the target; rdsvend doctor explains it.",
            (MetricQuery("failing", expression=f"SELECT MAX(CanaryCheckFailed) FROM SCHEMA({ns}, database, db_user, "
                                               "service)", period=300),),
            "GreaterThanOrEqualToThreshold", 1, periods=2, datapoints=2),
        AlarmSpec(
            "DenialSpike", plan.alarm_name("denial-spike"),
            "Many refused token requests in 5 minutes: a caller lost its grant, a policy edit went wrong, "
            "or someone is probing. The audit lines say who and which reason.",
            (MetricQuery("denied", expression=f"SELECT SUM(RequestsDenied) FROM SCHEMA({ns}, reason, service)",
                         period=300),),
            "GreaterThanOrEqualToThreshold", DENIAL_SPIKE),
        AlarmSpec(
            "Api5xx", plan.alarm_name("api-5xx"),
            "The API answered 5xx: 503 when RDS or STS could not be reached, 500 on an internal error.",
            (MetricQuery("errors", namespace="AWS/ApiGateway", metric="5XXError",
                         dimensions=(("ApiName", plan.api_name), ("Stage", plan.api_stage))),),
            "GreaterThanOrEqualToThreshold", 5),
    ]
    serving = [f for f in FUNCTIONS if f in SERVING]
    if serving:
        queries = [_lambda_metric(f"e{i}", "Errors", plan.functions[f], 300, returned=False)
                   for i, f in enumerate(serving)]
        total = " + ".join(f"FILL({q.id}, 0)" for q in queries)
        found.append(AlarmSpec(
            "VendErrors", plan.alarm_name("vend-errors"),
            "A vending function failed or timed out (it answers every caller error itself, so this is a fault).",
            (*queries, MetricQuery("total", expression=total, label="function errors")),
            "GreaterThanOrEqualToThreshold", 1))
    for function in (f for f in FUNCTIONS if f not in SERVING and f not in SCHEDULED):
        # Any other function (invoked by another service): its failures alarm on their own.
        name = plan.functions[function]
        found.append(AlarmSpec(
            f"{_camel(function)}Errors", plan.alarm_name(f"{function}-errors"),
            f"{name} failed or timed out; its log says why.",
            (_lambda_metric("errors", "Errors", name, 300),),
            "GreaterThanOrEqualToThreshold", 1))
    for function in (f for f in FUNCTIONS if f in SCHEDULED):
        name = plan.functions[function]
        found.append(AlarmSpec(
            f"{_camel(function)}NotRunning", plan.alarm_name(f"{function}-not-running"),
            f"{name} has not run for 15 minutes (it runs every 5): its schedule is disabled or it is throttled.",
            (_lambda_metric("runs", "Invocations", name, 900),),
            "LessThanThreshold", 1, missing="breaching"))
        found.append(AlarmSpec(
            f"{_camel(function)}Errors", plan.alarm_name(f"{function}-errors"),
            f"{name} failed (no policy, a crash or a timeout): no verdicts this run. The failed event went to "
            "the alert topic.",
            (_lambda_metric("errors", "Errors", name, 300),),
            "GreaterThanOrEqualToThreshold", 1))
    return found


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[_-]", name))


# -- dashboard ----------------------------------------------------------------------------------
def dashboard_body(plan: StackPlan) -> str:
    ns, region = plan.namespace, REGION_PLACEHOLDER

    def insights(title: str, query: str, y: int, x: int, stat_label: str = "") -> dict[str, Any]:
        return {"type": "metric", "x": x, "y": y, "width": 12, "height": 6,
                "properties": {"title": title, "region": region, "view": "timeSeries", "period": 300,
                               "metrics": [[{"expression": query, "id": "q1", "label": stat_label or title}]]}}

    def metrics(title: str, rows: list[list[Any]], y: int, x: int, stat: str = "Sum") -> dict[str, Any]:
        return {"type": "metric", "x": x, "y": y, "width": 12, "height": 6,
                "properties": {"title": title, "region": region, "view": "timeSeries", "stat": stat,
                               "period": 300, "metrics": rows}}

    refusals = ("IamDbAuthConnectionFailure", "IamDbAuthConnectionFailureInvalidToken",
                "IamDbAuthConnectionFailureInsufficientPermissions", "IamDbAuthConnectionFailureThrottling")
    widgets = [
        metrics("Tokens vended", [[ns, "TokensVended", "service", plan.service]], 0, 0),
        insights("Refused requests by reason",
                 f"SELECT SUM(RequestsDenied) FROM SCHEMA({ns}, reason, service) GROUP BY reason", 0, 12),
        insights("Canary: failed checks per target (0 = passing)",
                 f"SELECT MAX(CanaryCheckFailed) FROM SCHEMA({ns}, database, db_user, service) "
                 "GROUP BY database, db_user", 6, 0),
        insights("Canary: connect latency per target (ms)",
                 f"SELECT AVG(ConnectLatency) FROM SCHEMA({ns}, database, db_user, service) "
                 "GROUP BY database, db_user", 6, 12),
        metrics("RDS IAM logins refused (this account)",
                [[{"expression": f'SELECT SUM({m}) FROM SCHEMA("AWS/RDS", DBInstanceIdentifier)',
                   "id": f"r{i}", "label": m}] for i, m in enumerate(refusals)], 12, 0),
        metrics("API requests and errors",
                [["AWS/ApiGateway", m, "ApiName", plan.api_name, "Stage", plan.api_stage]
                 for m in ("Count", "4XXError", "5XXError")], 12, 12),
        metrics("Function errors and throttles",
                [["AWS/Lambda", m, "FunctionName", name] for name in plan.functions.values()
                 for m in ("Errors", "Throttles")], 18, 0),
        metrics("Canary runs", [["AWS/Lambda", "Invocations", "FunctionName", plan.functions[f]]
                                for f in FUNCTIONS if f in SCHEDULED], 18, 12),
        metrics("Fleet rate limit: requests decided by one instance alone",
                [[ns, "RateLimitFallback", "service", plan.service]], 24, 0),
        insights("Canary: setup steps pending per target (its log line says which step)",
                 f"SELECT MAX(CanarySetupPending) FROM SCHEMA({ns}, database, db_user, service) "
                 "GROUP BY database, db_user", 24, 12),
    ]
    return json.dumps({"widgets": widgets}, separators=(",", ":"))


def access_log_format() -> str:
    """One JSON line per API request: who called what and how it ended; never a header's value."""
    fields = {
        "requestId": "$context.requestId", "time": "$context.requestTime", "caller": "$context.identity.userArn",
        "account": "$context.identity.accountId", "sourceIp": "$context.identity.sourceIp",
        "method": "$context.httpMethod", "path": "$context.resourcePath", "status": "$context.status",
        "latencyMs": "$context.responseLatency", "bytes": "$context.responseLength",
        "error": "$context.error.message", "integrationError": "$context.integrationErrorMessage",
    }
    return json.dumps(fields, separators=(",", ":"))


def parameter_tier(policy_text: str, source: str = "access policy") -> str:
    """The SSM tier the access policy needs; a policy no parameter can hold is an error."""
    size = len(policy_text.encode("utf-8"))
    if size > ADVANCED_TIER_BYTES:
        raise DeployConfigError(f"policy is {size} bytes, an SSM parameter holds at most {ADVANCED_TIER_BYTES}",
                                source=source)
    return "Standard" if size <= STANDARD_TIER_BYTES else "Advanced"
