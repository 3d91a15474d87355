"""The template ``chalice package --merge-template`` merges into Chalice's SAM template.

Chalice deep-merges it: resources it does not have are added (topic, tables, parameter,
alarms, dashboard, access log group); keys of resources it has are set (function and role
names, the canary's on-failure destination, log groups kept on deletion, the API stage's
name, throttling, access logs and tracing). :func:`unmerged_resources` then checks that
every key merged into a Chalice resource met one: a resource Chalice renamed would otherwise
become a half resource without a type.
"""
from __future__ import annotations

from typing import Any

from chalice.utils import to_cfn_resource_name

from chalicelib.grants.store import TABLE_DEFINITION, TTL_ATTRIBUTE
from chalicelib.policy.loader import load_policy_text
from devtools.deploy.localize import localize, sam_rules
from devtools.deploy.rotation import sam_rotation_resources
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

__all__ = ["MAX_EVENT_AGE_SECONDS", "finish_sam_template", "function_id", "role_id", "log_group_id",
           "merge_template", "unmerged_resources", "TOPIC", "RETAIN"]

TOPIC = "AlertTopic"
#: Log groups outlive a deleted stack, but not a failed first create (a retained log group of a
#: rolled-back create would make the next create fail: its name is taken).
RETAIN = {"DeletionPolicy": "RetainExceptOnCreate", "UpdateReplacePolicy": "Retain"}
#: How long a scheduled run may wait in Lambda's async queue (the next run is 5 minutes away).
MAX_EVENT_AGE_SECONDS = 300


def function_id(function: str) -> str:
    """Chalice's logical id of ``function`` (the API handler is spelled ``APIHandler``)."""
    return "APIHandler" if function == "api_handler" else to_cfn_resource_name(function)


def role_id(function: str) -> str:
    return to_cfn_resource_name(f"{function}_role")


def log_group_id(function: str) -> str:
    return to_cfn_resource_name(f"{function}_log_group")


def _value(threshold: int | Param) -> Any:
    return {"Ref": threshold.cfn} if isinstance(threshold, Param) else threshold


def _query(query: MetricQuery) -> dict[str, Any]:
    out: dict[str, Any] = {"Id": query.id, "ReturnData": query.returned}
    if query.label:
        out["Label"] = query.label
    if query.expression is not None:
        out["Expression"] = query.expression
        if query.expression.startswith("SELECT"):
            out["Period"] = query.period  # a Metrics Insights query states its own period
        return out
    out["MetricStat"] = {
        "Metric": {"Namespace": query.namespace, "MetricName": query.metric,
                   "Dimensions": [{"Name": k, "Value": v} for k, v in query.dimensions]},
        "Period": query.period, "Stat": query.stat,
    }
    return out


def _alarm(spec: AlarmSpec) -> dict[str, Any]:
    return {"Type": "AWS::CloudWatch::Alarm", "Properties": {
        "AlarmName": spec.name, "AlarmDescription": spec.description,
        "Metrics": [_query(q) for q in spec.queries],
        "ComparisonOperator": spec.comparison, "Threshold": _value(spec.threshold),
        "EvaluationPeriods": spec.periods, "DatapointsToAlarm": spec.datapoints,
        "TreatMissingData": spec.missing,
        "AlarmActions": [{"Ref": TOPIC}], "OKActions": [{"Ref": TOPIC}],
    }}


def merge_template(plan: StackPlan, policy_text: str) -> dict[str, Any]:
    """What to merge into Chalice's template for ``plan``'s stage; ``policy_text`` is the
    validated access policy the stack stores in its SSM parameter."""
    resources = {**_added_resources(plan, policy_text), **_merged_keys(plan)}
    return {
        # An OpenApiVersion keeps SAM from adding a second API stage named "Stage" (without
        # throttling, access logs or tracing) beside the configured one.
        "Globals": {"Api": {"OpenApiVersion": "2.0"}},
        "Parameters": _parameters(),
        "Conditions": {"HasAlertEmail": {"Fn::Not": [{"Fn::Equals": [{"Ref": ALERT_EMAIL.cfn}, ""]}]}},
        "Resources": resources,
        "Outputs": {
            "AlertTopicArn": {"Value": {"Ref": TOPIC}},
            "DashboardName": {"Value": {"Ref": "Dashboard"}},
            "AccessPolicyParameterName": {"Value": {"Ref": "AccessPolicyParameter"}},
        },
    }


def _parameters() -> dict[str, Any]:
    """The stack's parameters (thresholds, limits, the alert e-mail), with their defaults."""
    parameters: dict[str, Any] = {}
    for param in PARAMETERS:
        parameters[param.cfn] = {"Type": "Number" if param.number else "String", "Default": param.default,
                                 "Description": param.description}
    parameters[ALERT_EMAIL.cfn]["AllowedPattern"] = r"^$|^[^@\s]+@[^@\s]+\.[^@\s]+$"
    return parameters


def _added_resources(plan: StackPlan, policy_text: str) -> dict[str, Any]:
    """The resources Chalice does not make: the alert topic and its subscription, the tables,
    the access policy's parameter, the access log group, the dashboard, the alarms, rotation."""
    resources: dict[str, Any] = {
        TOPIC: {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": plan.topic_name}},
        "AlertEmailSubscription": {"Type": "AWS::SNS::Subscription", "Condition": "HasAlertEmail",
                                   "Properties": {"Protocol": "email", "TopicArn": {"Ref": TOPIC},
                                                  "Endpoint": {"Ref": ALERT_EMAIL.cfn}}},
        "CanaryStateTable": {"Type": "AWS::DynamoDB::Table", "Properties": {
            "TableName": plan.state_table, "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": "target", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "target", "KeyType": "HASH"}]}},
        "AccessPolicyParameter": {"Type": "AWS::SSM::Parameter", "Properties": {
            "Name": plan.policy_parameter, "Type": "String", "Value": policy_text,
            "Tier": parameter_tier(policy_text),
            "Description": f"rdsvend {plan.stage} access policy"}},
        "ApiAccessLogGroup": {"Type": "AWS::Logs::LogGroup", **RETAIN, "Properties": {
            "LogGroupName": plan.access_log_group,
            **({"RetentionInDays": plan.retention_days} if plan.retention_days else {})}},
        "Dashboard": {"Type": "AWS::CloudWatch::Dashboard", "Properties": {
            "DashboardName": plan.dashboard,
            "DashboardBody": {"Fn::Sub": dashboard_body(plan).replace(REGION_PLACEHOLDER, "${AWS::Region}")}}},
    }
    if plan.rate_table:
        resources["RateLimitTable"] = {"Type": "AWS::DynamoDB::Table", "Properties": {
            "TableName": plan.rate_table, "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": "caller", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "caller", "KeyType": "HASH"}],
            "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True}}}
    if plan.grants_table:

        resources["GrantsTable"] = {"Type": "AWS::DynamoDB::Table", "Properties": {
            "TableName": plan.grants_table, **TABLE_DEFINITION,
            "TimeToLiveSpecification": {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}}}
    for spec in alarms(plan):
        resources[f"{spec.key}Alarm"] = _alarm(spec)

    resources.update(sam_rotation_resources(load_policy_text(policy_text), {"Ref": "AWS::AccountId"},
                                            function_id("rotate")))
    return resources


def _merged_keys(plan: StackPlan) -> dict[str, Any]:
    """Keys set on Chalice's own resources: the functions' names, environment and (scheduled
    ones) on-failure destination, the roles' names, log groups kept, the API stage's settings."""
    resources: dict[str, Any] = {}
    for function, name in plan.functions.items():
        # The account the service runs in: the access policy's loader checks that every
        # database elsewhere is readable (Chalice merges these variables into its own).
        props: dict[str, Any] = {"FunctionName": name, "Environment": {"Variables": stack_environment(
            plan, function, account={"Ref": "AWS::AccountId"}, topic={"Ref": TOPIC})}}
        if function in SCHEDULED:
            # Asynchronous (EventBridge) runs: no retry and no queueing past the next run (5
            # minutes away); a failed or expired run's event goes to the alert topic.
            props["EventInvokeConfig"] = {
                "MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": MAX_EVENT_AGE_SECONDS,
                "DestinationConfig": {"OnFailure": {"Type": "SNS", "Destination": {"Ref": TOPIC}}}}
        resources[function_id(function)] = {"Properties": props}
        resources[role_id(function)] = {"Properties": {"RoleName": plan.roles[function]}}
        if plan.retention_days:
            resources[log_group_id(function)] = {**RETAIN, "Properties": {
                "LogGroupName": {"Fn::Sub": f"/aws/lambda/${{{function_id(function)}}}"}}}
    resources["RestAPI"] = {"Properties": {
        "Name": plan.api_name,
        "TracingEnabled": plan.xray,
        "MethodSettings": [{"ResourcePath": "/*", "HttpMethod": "*", "MetricsEnabled": True,
                            "ThrottlingRateLimit": {"Ref": API_RATE.cfn},
                            "ThrottlingBurstLimit": {"Ref": API_BURST.cfn}}],
        "AccessLogSetting": {"DestinationArn": {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]},
                             "Format": access_log_format()},
    }}
    return resources


def finish_sam_template(template: dict[str, Any], deploy: DeploySettings) -> dict[str, Any]:
    """Chalice's merged template, refusing another account or region than the stage's (its
    ``Rules``) and with own-account ARNs made the stack's own (the access policy's text in its
    parameter stays as written)."""
    template["Rules"] = sam_rules(deploy)
    template["Resources"] = localize(
        template["Resources"], deploy, "cloudformation",
        skip=lambda path: path[:3] == ["AccessPolicyParameter", "Properties", "Value"])
    return template


def unmerged_resources(template: dict[str, Any]) -> list[str]:
    """Logical ids left without a ``Type``: keys merged into a resource Chalice did not make."""
    return sorted(k for k, v in template.get("Resources", {}).items() if "Type" not in v)
