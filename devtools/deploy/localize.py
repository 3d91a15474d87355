"""No account or region literal where the stack's own would do.

The functions' policies are generated from ``policies/deploy.yaml`` (the stage's account and
region), and Chalice copies them into its templates as they are. Here every ARN of the stage's
own account in a template becomes the stack's own: ``${AWS::Partition}``, ``${AWS::Region}``
and ``${AWS::AccountId}`` in CloudFormation (``Fn::Sub``), the ``aws_partition``,
``aws_region`` and ``aws_caller_identity`` data sources in Terraform. ARNs of other accounts
(a database account's signer and reader roles, AWS managed policies) stay as written.

What remains are the deliberate guards: the CloudFormation ``Rules`` and the Terraform
provider block and data-source postconditions that stop a deploy into another account or
region than the stage's, naming the expected one (:func:`sam_rules`, :func:`terraform_guard`).
"""
from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devtools.deploy.settings import DeploySettings

__all__ = ["localize", "localize_document", "sam_rules", "terraform_guard", "SAM_PSEUDO", "TERRAFORM_PSEUDO",
           "own_arn_pattern"]

#: The stack's own partition, region and account in each format.
SAM_PSEUDO = {"partition": "${AWS::Partition}", "region": "${AWS::Region}", "account": "${AWS::AccountId}"}
TERRAFORM_PSEUDO = {"partition": "${data.aws_partition.chalice.partition}",
                    "region": "${data.aws_region.chalice.name}",
                    "account": "${data.aws_caller_identity.chalice.account_id}"}


def own_arn_pattern(deploy: DeploySettings) -> re.Pattern[str]:
    """An ARN prefix of the stage's account: ``arn:PARTITION:SERVICE:REGION?:ACCOUNT:``."""
    return re.compile(rf"arn:{re.escape(deploy.partition)}:(?P<service>[\w-]+):(?P<region>[a-z0-9*-]*)"
                      rf":{re.escape(deploy.account)}:")


def _rewrite(text: str, deploy: DeploySettings, pseudo: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        region = match["region"]
        if region == deploy.region:
            region = pseudo["region"]
        return f"arn:{pseudo['partition']}:{match['service']}:{region}:{pseudo['account']}:"

    return own_arn_pattern(deploy).sub(one, text)


def localize(value: Any, deploy: DeploySettings, fmt: str, skip: Callable[[list[str]], bool] | None = None,
             path: list[str] | None = None) -> Any:
    """``value`` with every own-account ARN made the stack's own (``fmt``: cloudformation |
    terraform); ``skip(path)`` leaves a subtree as it is (the access policy's text)."""
    path = path or []
    if skip is not None and skip(path):
        return value
    if isinstance(value, dict):
        if fmt == "cloudformation" and len(value) == 1 and next(iter(value)).startswith("Fn::"):
            return value  # an intrinsic function already
        return {k: localize(v, deploy, fmt, skip, [*path, str(k)]) for k, v in value.items()}
    if isinstance(value, list):
        return [localize(v, deploy, fmt, skip, [*path, str(i)]) for i, v in enumerate(value)]
    return _localize_leaf(value, deploy, fmt)


def _localize_leaf(value: Any, deploy: DeploySettings, fmt: str) -> Any:
    """A string naming an own-account ARN, made the stack's own: Terraform's interpolation, or a
    CloudFormation ``Fn::Sub`` (its own ``${`` escaped); anything else as it is."""
    if not isinstance(value, str) or not own_arn_pattern(deploy).search(value):
        return value
    if fmt == "terraform":
        return _rewrite(value, deploy, TERRAFORM_PSEUDO)
    return {"Fn::Sub": _rewrite(value.replace("${", "${!"), deploy, SAM_PSEUDO)}


def localize_document(document: dict[str, Any], deploy: DeploySettings, fmt: str) -> dict[str, Any]:
    """:func:`localize` over a whole template: its top-level sections, each localized."""
    return {key: localize(value, deploy, fmt, None, [key]) for key, value in document.items()}


def _where(deploy: DeploySettings) -> str:
    return (f"rdsvend {deploy.stage} is set up for account {deploy.account} in {deploy.region} "
            f"(policies/{Path(deploy.source).name})")


def sam_rules(deploy: DeploySettings) -> dict[str, Any]:
    """CloudFormation ``Rules``: the stack is refused before anything is created when it is
    deployed into another account or region than the stage's."""
    where = _where(deploy)
    return {
        "StageAccount": {"Assertions": [{
            "Assert": {"Fn::Equals": [{"Ref": "AWS::AccountId"}, deploy.account]},
            "AssertDescription": f"{where}: deploy it there, or change the stage's account"}]},
        "StageRegion": {"Assertions": [{
            "Assert": {"Fn::Equals": [{"Ref": "AWS::Region"}, deploy.region]},
            "AssertDescription": f"{where}: deploy it there, or change the stage's region"}]},
    }


def terraform_guard(deploy: DeploySettings) -> dict[str, Any]:
    """The provider block (the stage's region; only the stage's account) and postconditions on
    the data sources, so a plan in another account or region stops at once, naming the
    expected one."""
    where = _where(deploy)
    return {
        "provider": {"aws": {"region": deploy.region, "allowed_account_ids": [deploy.account]}},
        "data": {
            "aws_caller_identity": {"chalice": {"lifecycle": {"postcondition": [{
                "condition": f'${{self.account_id == "{deploy.account}"}}',
                "error_message": f"{where}: these credentials are for another account."}]}}},
            "aws_region": {"chalice": {"lifecycle": {"postcondition": [{
                "condition": f'${{self.name == "{deploy.region}"}}',
                "error_message": f"{where}: the provider is set for another region."}]}}},
        },
    }
