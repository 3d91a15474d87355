"""The ``local`` stage: built by the packaging code, deployed into the local organization as a
user deploys to AWS.

:func:`local_stage` makes the stage from the same inputs ``make package`` reads: the ``dev``
stage of ``.chalice/config.json`` renamed ``local`` (Chalice's names, tables and parameter for
``local``), and deploy settings for the local world's service account, region and
organization with the local access policy. Nothing is zipped and nothing reaches the internet.

:func:`deploy_local_stage` then creates, through the AWS API of the local stack (any
``client_for(service, account)``):

- in the service account, the service stack's resources: one role per function with the
  generated identity policy (:func:`devtools.deploy.documents.function_policy`, the same
  documents ``make package`` writes), the canary's state table, the rate-limit table, the
  grants table (with its indexes and TTL), the alert topic, the access-policy parameter, and
  the four functions registered in Lambda with their roles (so ``GetFunction`` answers with the
  role a function runs as);
- in every member account the member-roles template lists (never the management account, as
  a service-managed StackSet), that template rendered for the account: the same role names,
  paths, trust and policies CloudFormation would create.
"""
from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from chalicelib.grants.store import create_grants_table
from chalicelib.policy.loader import load_policy_text
from chalicelib.policy.model import AccessPolicy
from devtools.deploy.documents import function_policy
from devtools.deploy.member_roles import member_roles_template
from devtools.deploy.settings import FUNCTIONS, DeploySettings, StageSettings, load_chalice_config, stage_settings
from devtools.deploy.stack import StackPlan, stack_environment, stack_plan

__all__ = ["LOCAL", "LocalStage", "LocalDeployment", "local_stage", "deploy_local_stage", "render_for_account"]

LOCAL = "local"
PROJECT_DIR = Path(__file__).resolve().parents[2]
#: Lambda's trust for a function's execution role (what Chalice gives every role).
LAMBDA_TRUST = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}


@dataclass(frozen=True)
class LocalStage:
    config: Mapping[str, Any]  # .chalice/config.json with the stage "local"
    deploy: DeploySettings
    settings: StageSettings
    plan: StackPlan
    policy: AccessPolicy
    policy_text: str

    def documents(self) -> dict[str, dict[str, Any]]:
        """Each function's identity policy, as ``make package`` generates it for this stage."""
        return {f: function_policy(f, self.settings, self.policy, self.deploy) for f in FUNCTIONS}


@dataclass(frozen=True)
class LocalDeployment:
    roles: Mapping[str, str]  # function -> role ARN
    functions: Mapping[str, str]  # function -> Lambda function ARN
    member_roles: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # account -> role ARNs
    topic_arn: str = ""
    tables: tuple[str, ...] = ()
    parameter: str = ""


def _localized(value: Any) -> Any:
    """``value`` with every ``dev`` name made the ``local`` stage's."""
    if isinstance(value, str):
        return re.sub(r"(?<![a-z])dev(?![a-z])", LOCAL, value)
    if isinstance(value, dict):
        return {k: _localized(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_localized(v) for v in value]
    return value


def local_stage(policy_text: str, *, account: str, region: str, org_id: str, resource_ids: Mapping[str, str],
                project_dir: Path = PROJECT_DIR, partition: str = "aws") -> LocalStage:
    """The stage ``local`` of the project's config, for the local world's service account;
    ``resource_ids``: the RDS resource id of each database (what deploy.yaml gives a real stage)."""
    config = json.loads(json.dumps(load_chalice_config(project_dir)))
    config["stages"] = {LOCAL: _localized(config["stages"]["dev"])}
    deploy = DeploySettings(partition=partition, account=account, region=region, org_id=org_id,
                            access_policy=Path("<local access policy>"), resource_ids=dict(resource_ids),
                            source="policies/world.yaml", stage=LOCAL)
    policy = load_policy_text(policy_text, "local access policy", service_account=account)
    return LocalStage(config=config, deploy=deploy, settings=stage_settings(config, LOCAL),
                      plan=stack_plan(config, LOCAL, deploy), policy=policy, policy_text=policy_text)


# -- the member-roles template, as CloudFormation renders it in one account -------------------
def _sub(text: str, names: Mapping[str, str]) -> str:
    return re.sub(r"\$\{([\w:]+)\}", lambda m: names[m.group(1)], text)


def render_for_account(template: Mapping[str, Any], account: str, partition: str = "aws",
                       parameters: Mapping[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """The roles the member-roles template creates in ``account`` (logical id -> properties),
    resolving its intrinsics as CloudFormation does; an account it does not map is refused."""
    mapping = template["Mappings"]["Accounts"]
    if account not in mapping:
        raise ValueError(f"the member-roles template has no entry for account {account}")
    names = {"AWS::AccountId": account, "AWS::Partition": partition,
             **{k: v["Default"] for k, v in template["Parameters"].items()}, **(parameters or {})}

    # the intrinsic functions the template uses, each given its argument
    intrinsics: dict[str, Callable[[Any], Any]] = {
        "Fn::Sub": lambda arg: _sub(arg, names),
        "Ref": lambda arg: names[arg],
        "Fn::FindInMap": lambda arg: mapping[resolve(arg[1])][arg[2]],
        "Fn::Equals": lambda arg: resolve(arg[0]) == resolve(arg[1]),
        "Fn::Not": lambda arg: not resolve(arg[0]),
    }

    def resolve(value: Any) -> Any:
        if isinstance(value, dict) and len(value) == 1:
            ((key, arg),) = value.items()
            if key in intrinsics:
                return intrinsics[key](arg)
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v) for v in value]
        return value

    conditions = {name: resolve(spec) for name, spec in template.get("Conditions", {}).items()}
    return {logical: resolve(resource["Properties"]) for logical, resource in template["Resources"].items()
            if conditions.get(resource.get("Condition", ""), True)}


# -- deploying ---------------------------------------------------------------------------------
def _placeholder_zip() -> bytes:
    """What Lambda is given to register a function the local stack runs in process."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "# the local stack runs rdsvend's handlers in process\n")
    return buffer.getvalue()


def _create_role(iam: Any, props: Mapping[str, Any]) -> str:
    arn = str(iam.create_role(RoleName=props["RoleName"], Path=props.get("Path", "/"),
                              AssumeRolePolicyDocument=json.dumps(props["AssumeRolePolicyDocument"]),
                              Description=props.get("Description", ""),
                              MaxSessionDuration=props.get("MaxSessionDuration", 3600))["Role"]["Arn"])
    for inline in props.get("Policies", []):
        iam.put_role_policy(RoleName=props["RoleName"], PolicyName=inline["PolicyName"],
                            PolicyDocument=json.dumps(inline["PolicyDocument"]))
    return arn


def _service_stack(stage: LocalStage, client_for: Callable[[str, str], Any]) -> LocalDeployment:
    plan, account = stage.plan, stage.deploy.account
    iam = client_for("iam", account)
    roles = {}
    for function, document in stage.documents().items():
        roles[function] = _create_role(iam, {
            "RoleName": plan.roles[function], "AssumeRolePolicyDocument": LAMBDA_TRUST,
            "Description": f"rdsvend {LOCAL}: the {function} function",
            "Policies": [{"PolicyName": plan.roles[function], "PolicyDocument": document}]})
    dynamodb = client_for("dynamodb", account)
    tables = [(plan.state_table, "target")] + ([(plan.rate_table, "caller")] if plan.rate_table else [])
    for name, key in tables:
        dynamodb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                              AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
                              KeySchema=[{"AttributeName": key, "KeyType": "HASH"}])
    if plan.grants_table:

        create_grants_table(dynamodb, plan.grants_table)
        tables.append((plan.grants_table, "id"))
    topic = str(client_for("sns", account).create_topic(Name=plan.topic_name)["TopicArn"])
    client_for("ssm", account).put_parameter(Name=plan.policy_parameter, Value=stage.policy_text, Type="String",
                                             Description=f"rdsvend {LOCAL} access policy")
    lambda_ = client_for("lambda", account)
    functions = {}
    for function, name in plan.functions.items():
        env = stack_environment(plan, function, account=account, topic=topic)
        env.update({"RDSVEND_POLICY": f"ssm:{plan.policy_parameter}"})
        functions[function] = str(lambda_.create_function(
            FunctionName=name, Runtime="python3.11", Role=roles[function], Handler="app.app",
            Code={"ZipFile": _placeholder_zip()}, Environment={"Variables": env},
            Description=f"rdsvend {LOCAL}: {function} (run in process by the local stack)")["FunctionArn"])
    return LocalDeployment(roles=roles, functions=functions, topic_arn=topic,
                           tables=tuple(name for name, _key in tables), parameter=plan.policy_parameter)


def deploy_local_stage(stage: LocalStage, client_for: Callable[[str, str], Any], *,
                       management_account: str) -> LocalDeployment:
    """Deploy ``stage``: the service stack in its account, the member roles in every member
    account the template lists (never ``management_account``)."""
    deployment = _service_stack(stage, client_for)
    template = member_roles_template(stage.policy, stage.deploy, LOCAL)
    members: dict[str, tuple[str, ...]] = {}
    for account in template["Metadata"]["rdsvend"]["accounts"]:
        if account == management_account:
            continue  # a service-managed StackSet never deploys there
        iam = client_for("iam", account)
        roles = render_for_account(template, account, stage.deploy.partition)
        members[account] = tuple(_create_role(iam, props) for props in roles.values())
    return replace(deployment, member_roles=members)
