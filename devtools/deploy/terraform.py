"""Terraform for one stage: what Chalice's ``chalice.tf.json`` needs changed, and the rest of
the stack in a file of its own (``rdsvend.tf.json``) that Terraform reads beside it.

Chalice 1.34 cannot merge a template into its Terraform output and pins Terraform
``< 1.4.0`` and the AWS provider ``< 5``. :func:`fix_chalice_terraform` changes only what
must change in Chalice's file:

- the version constraints (:data:`TERRAFORM_VERSION`, :data:`AWS_PROVIDER_VERSION`) and only
  the AWS provider (Chalice's deprecated ``null_data_source`` is read by nothing);
- postconditions on the account and region data sources: a plan in another account or
  region than the stage's stops at once, naming the expected one (the provider block, with
  the stage's region and ``allowed_account_ids``, is in ``rdsvend.tf.json``);
- the environment the stack gives from where it is deployed (account, alert topic, server id),
  and own-account ARNs in the roles' policies made the stack's own
  (:mod:`devtools.deploy.localize`);
- the names Chalice does not make unique per stage: the schedule rule (``canary-event`` in
  every stage) and the REST API;
- the API stage: Chalice lets the deployment create it (``stage_name``, deprecated in
  provider 5), which leaves nowhere to set access logs; the stage becomes an
  ``aws_api_gateway_stage`` of :func:`terraform_stack`, redeployed when the API changes;
- each function waits for its log group (declared here so retention applies from the start).

Everything else is added by :func:`terraform_stack` from the same plan as the SAM template.
"""
from __future__ import annotations

from typing import Any

from chalicelib.grants.store import TABLE_DEFINITION, TTL_ATTRIBUTE
from chalicelib.policy.loader import load_policy_text
from devtools.deploy.localize import TERRAFORM_PSEUDO, localize, localize_document, terraform_guard
from devtools.deploy.rotation import terraform_rotation_resources
from devtools.deploy.sam import MAX_EVENT_AGE_SECONDS
from devtools.deploy.settings import DeploySettings
from devtools.deploy.stack import (
    ALERT_EMAIL,
    API_BURST,
    API_RATE,
    PARAMETERS,
    REGION_PLACEHOLDER,
    SCHEDULED,
    AlarmSpec,
    MetricQuery,
    Param,
    StackPlan,
    access_log_format,
    alarms,
    dashboard_body,
    parameter_tier,
    stack_environment,
)

__all__ = ["TERRAFORM_VERSION", "AWS_PROVIDER_VERSION", "STACK_FILE", "fix_chalice_terraform", "terraform_stack",
           "grants_table_resource"]

#: Terraform (and OpenTofu) 1.5 and every later 1.x release.
TERRAFORM_VERSION = ">= 1.5.0, < 2.0.0"
#: The AWS provider 5.x (6.0 removed arguments Chalice's output still uses).
AWS_PROVIDER_VERSION = ">= 5.0.0, < 6.0.0"
#: rdsvend's own Terraform file, beside Chalice's chalice.tf.json.
STACK_FILE = "rdsvend.tf.json"


def fix_chalice_terraform(template: dict[str, Any], plan: StackPlan, deploy: DeploySettings) -> dict[str, Any]:
    """Chalice's Terraform with the changes of this module's docstring (edited in place)."""
    terraform = template["terraform"]
    terraform["required_version"] = TERRAFORM_VERSION
    # Only the AWS provider: Chalice's null_data_source (deprecated) is read by nothing.
    terraform["required_providers"] = {"aws": {"source": "hashicorp/aws", "version": AWS_PROVIDER_VERSION}}
    data = template.setdefault("data", {})
    data.pop("null_data_source", None)
    for kind, blocks in terraform_guard(deploy)["data"].items():
        for name, block in blocks.items():
            data.setdefault(kind, {}).setdefault(name, {}).update(block)
    resources = template["resource"]
    for rule in resources.get("aws_cloudwatch_event_rule", {}).values():
        if "schedule_expression" in rule:
            rule["name"] = plan.schedule_rule
    for api in resources.get("aws_api_gateway_rest_api", {}).values():
        api["name"] = plan.api_name
    for deployment in resources.get("aws_api_gateway_deployment", {}).values():
        deployment.pop("stage_name", None)
        deployment.pop("stage_description", None)
        deployment["triggers"] = {"redeployment": "${md5(local.chalice_api_swagger)}"}
    if "aws_api_gateway_deployment" in resources:
        template.setdefault("output", {})["EndpointURL"] = {"value": "${aws_api_gateway_stage.rest_api.invoke_url}/"}
    for key, function in resources.get("aws_lambda_function", {}).items():
        # Chalice's key is the function's Chalice name.
        variables = function.setdefault("environment", {}).setdefault("variables", {})
        variables.update(stack_environment(plan, key,
                                           account=TERRAFORM_PSEUDO["account"],
                                           topic="${aws_sns_topic.alerts.arn}"))
        if plan.retention_days and key in plan.functions:
            depends = function.setdefault("depends_on", [])
            if f"aws_cloudwatch_log_group.{key}_log_group" not in depends:
                depends.append(f"aws_cloudwatch_log_group.{key}_log_group")
    return localize_document(template, deploy, "terraform")


def _value(threshold: int | Param) -> Any:
    return f"${{var.{threshold.tf}}}" if isinstance(threshold, Param) else threshold


def _query(query: MetricQuery) -> dict[str, Any]:
    out: dict[str, Any] = {"id": query.id, "return_data": query.returned}
    if query.label:
        out["label"] = query.label
    if query.expression is not None:
        out["expression"] = query.expression
        if query.expression.startswith("SELECT"):
            out["period"] = query.period
        return out
    out["metric"] = {"namespace": query.namespace, "metric_name": query.metric, "dimensions": dict(query.dimensions),
                     "period": query.period, "stat": query.stat}
    return out


def _alarm(spec: AlarmSpec) -> dict[str, Any]:
    return {
        "alarm_name": spec.name, "alarm_description": spec.description,
        "metric_query": [_query(q) for q in spec.queries],
        "comparison_operator": spec.comparison, "threshold": _value(spec.threshold),
        "evaluation_periods": spec.periods, "datapoints_to_alarm": spec.datapoints,
        "treat_missing_data": spec.missing,
        "alarm_actions": ["${aws_sns_topic.alerts.arn}"], "ok_actions": ["${aws_sns_topic.alerts.arn}"],
    }


def terraform_stack(plan: StackPlan, policy_text: str, deploy: DeploySettings) -> dict[str, Any]:
    """``rdsvend.tf.json``: the stage's resources besides Chalice's (the SAM merge template's twins)."""
    variables = {
        p.tf: {"type": "number" if p.number else "string", "default": p.default, "description": p.description}
        for p in PARAMETERS
    }
    resources = localize(_resources(plan, policy_text), deploy, "terraform",
                         skip=lambda path: path[:2] == ["aws_ssm_parameter", "access_policy"])
    return {
        "provider": terraform_guard(deploy)["provider"],
        "variable": variables,
        "resource": resources,
        "output": {
            "AlertTopicArn": {"value": "${aws_sns_topic.alerts.arn}"},
            "DashboardName": {"value": "${aws_cloudwatch_dashboard.main.dashboard_name}"},
            "AccessPolicyParameterName": {"value": "${aws_ssm_parameter.access_policy.name}"},
        },
    }


def _resources(plan: StackPlan, policy_text: str) -> dict[str, dict[str, Any]]:
    """The stage's resources by Terraform type and name, before own-account ARNs are localized."""
    keep = {"prevent_destroy": True}  # logs outlive the stack: state rm them before a destroy
    retention = {"retention_in_days": plan.retention_days} if plan.retention_days else {}
    resources: dict[str, dict[str, Any]] = {
        "aws_sns_topic": {"alerts": {"name": plan.topic_name}},
        "aws_sns_topic_subscription": {"alert_email": {
            "count": f'${{var.{ALERT_EMAIL.tf} == "" ? 0 : 1}}',
            "topic_arn": "${aws_sns_topic.alerts.arn}", "protocol": "email",
            "endpoint": f"${{var.{ALERT_EMAIL.tf}}}"}},
        "aws_dynamodb_table": {"canary_state": {
            "name": plan.state_table, "billing_mode": "PAY_PER_REQUEST", "hash_key": "target",
            "attribute": [{"name": "target", "type": "S"}]}},
        "aws_ssm_parameter": {"access_policy": {
            "name": plan.policy_parameter, "type": "String", "value": policy_text,
            "tier": parameter_tier(policy_text),
            "description": f"rdsvend {plan.stage} access policy"}},
        "aws_cloudwatch_log_group": {
            "api_access": {"name": plan.access_log_group, **retention, "lifecycle": keep},
            **{f"{f}_log_group": {"name": f"/aws/lambda/{name}", **retention, "lifecycle": keep}
               for f, name in plan.functions.items() if plan.retention_days},
        },
        **_api_stage(plan),
        "aws_lambda_function_event_invoke_config": {
            f: {"function_name": f"${{aws_lambda_function.{f}.function_name}}", "maximum_retry_attempts": 0,
                "maximum_event_age_in_seconds": MAX_EVENT_AGE_SECONDS,
                "destination_config": {"on_failure": {"destination": "${aws_sns_topic.alerts.arn}"}}}
            for f in plan.functions if f in SCHEDULED},
        "aws_cloudwatch_metric_alarm": {_snake(spec.key): _alarm(spec) for spec in alarms(plan)},
        "aws_cloudwatch_dashboard": {"main": {
            "dashboard_name": plan.dashboard,
            "dashboard_body": dashboard_body(plan).replace(REGION_PLACEHOLDER, TERRAFORM_PSEUDO["region"])}},
    }

    for kind, items in terraform_rotation_resources(load_policy_text(policy_text), TERRAFORM_PSEUDO["account"]).items():
        resources.setdefault(kind, {}).update(items)
    if plan.rate_table:
        resources["aws_dynamodb_table"]["rate_limit"] = {
            "name": plan.rate_table, "billing_mode": "PAY_PER_REQUEST", "hash_key": "caller",
            "attribute": [{"name": "caller", "type": "S"}],
            "ttl": {"attribute_name": "expires_at", "enabled": True}}
    if plan.grants_table:
        resources["aws_dynamodb_table"]["grants"] = grants_table_resource(plan.grants_table)
    return resources


def _api_stage(plan: StackPlan) -> dict[str, dict[str, Any]]:
    """The API's stage (tracing, access logs) and its method settings (metrics, throttling)."""
    return {
        "aws_api_gateway_stage": {"rest_api": {
            "rest_api_id": "${aws_api_gateway_rest_api.rest_api.id}",
            "deployment_id": "${aws_api_gateway_deployment.rest_api.id}",
            "stage_name": plan.api_stage, "xray_tracing_enabled": plan.xray,
            "access_log_settings": {"destination_arn": "${aws_cloudwatch_log_group.api_access.arn}",
                                    "format": access_log_format()}}},
        "aws_api_gateway_method_settings": {"rest_api": {
            "rest_api_id": "${aws_api_gateway_rest_api.rest_api.id}",
            "stage_name": "${aws_api_gateway_stage.rest_api.stage_name}", "method_path": "*/*",
            "settings": {"metrics_enabled": True, "throttling_rate_limit": f"${{var.{API_RATE.tf}}}",
                         "throttling_burst_limit": f"${{var.{API_BURST.tf}}}"}}},
    }


def grants_table_resource(name: str) -> dict[str, Any]:
    """The grants table (chalicelib.grants.store's one definition) as Terraform writes it."""

    return {
        "name": name, "billing_mode": "PAY_PER_REQUEST",
        "hash_key": TABLE_DEFINITION["KeySchema"][0]["AttributeName"],
        "attribute": [{"name": a["AttributeName"], "type": a["AttributeType"]}
                      for a in TABLE_DEFINITION["AttributeDefinitions"]],
        "global_secondary_index": [
            {"name": i["IndexName"], "projection_type": i["Projection"]["ProjectionType"],
             **{("hash_key" if k["KeyType"] == "HASH" else "range_key"): k["AttributeName"] for k in i["KeySchema"]}}
            for i in TABLE_DEFINITION["GlobalSecondaryIndexes"]],
        "ttl": {"attribute_name": TTL_ATTRIBUTE, "enabled": True},
    }


def _snake(key: str) -> str:
    out = "".join(f"_{c.lower()}" if c.isupper() else c for c in key).lstrip("_")
    return out.replace("5xx", "_5xx")
