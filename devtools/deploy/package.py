"""`make package`: the deployable artefacts, built offline (no AWS call, no credentials).

1. Regenerates the functions' IAM policies and the API resource policy from
   ``policies/deploy.yaml``, the access policy and ``.chalice/config.json``
   (:mod:`devtools.deploy.roles`).
2. Runs ``chalice package`` for CloudFormation (SAM) into ``build/cloudformation/`` and for
   Terraform into ``build/terraform/``. Chalice pip-installs ``requirements.txt`` (the
   functions' runtime dependencies only) for the Lambda platform; that needs the package
   index (or ``PIP_NO_INDEX=1 PIP_FIND_LINKS=DIR`` with a wheelhouse), nothing else.
3. Trims each ``deployment.zip``: the code that never runs in Lambda (the CLI, the client,
   the local stack, this package) and the AWS SDK the Lambda Python runtime already provides
   (boto3, botocore and their dependencies: 16 MB zipped, most of the package).

Usage: ``python -m devtools.deploy.package [--stage dev|prod] [--out build]
[--project-dir .]``. Prints one line per artefact and the zip's size.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from chalicelib.errors import PolicyLoadError
from devtools.deploy.roles import (
    FUNCTIONS,
    lambda_function_name,
    load_chalice_config,
    load_deploy_settings,
    stale_policy_files,
    write_policy_files,
)

__all__ = [
    "FORMATS",
    "EXCLUDED_APP_DIRS",
    "RUNTIME_PROVIDED",
    "PackageResult",
    "package",
    "prune_zip",
    "main",
]

FORMATS = ("cloudformation", "terraform")

#: chalicelib packages that never run inside Lambda.
EXCLUDED_APP_DIRS = ("devtools/cli/", "client/rdsvend/", "devtools/deploy/", "devtools/local/")

#: Distributions the Lambda Python runtime provides (boto3 and its dependency closure).
RUNTIME_PROVIDED = frozenset(
    {"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3"}
)

PROJECT_DIR = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class PackageResult:
    pkg_format: str
    directory: Path
    template: Path
    zip_path: Path
    zip_bytes: int
    removed_files: int
    seconds: float


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _runtime_provided_files(archive: zipfile.ZipFile) -> set[str]:
    """Every file of a RUNTIME_PROVIDED distribution, as its wheel's ``RECORD`` lists them."""
    names = set(archive.namelist())
    drop: set[str] = set()
    for name in names:
        match = re.fullmatch(r"([^/]+)-[^-/]+\.dist-info/RECORD", name)
        if not match or _normalize(match.group(1)) not in RUNTIME_PROVIDED:
            continue
        for line in archive.read(name).decode("utf-8").splitlines():
            path = line.rsplit(",", 2)[0].strip().strip('"')
            if path:
                drop.add(path)
        dist_info = name.rsplit("/", 1)[0] + "/"
        drop.update(n for n in names if n.startswith(dist_info))
    return drop & names


def _excluded(name: str) -> bool:
    return (
        any(name.startswith(prefix) for prefix in EXCLUDED_APP_DIRS)
        or "/__pycache__/" in f"/{name}"
        or name.endswith(".pyc")
    )


def prune_zip(zip_path: Path) -> int:
    """Rewrite ``zip_path`` without excluded app code and runtime-provided distributions.

    Returns how many files were removed.
    """
    with zipfile.ZipFile(zip_path) as archive:
        drop = _runtime_provided_files(archive)
        keep = [info for info in archive.infolist() if info.filename not in drop and not _excluded(info.filename)]
        removed = len(archive.infolist()) - len(keep)
        if not removed:
            return 0
        tmp = zip_path.with_suffix(".tmp")
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as out:
            for info in keep:
                out.writestr(info, archive.read(info.filename), compress_type=zipfile.ZIP_DEFLATED)
    os.replace(tmp, zip_path)
    return removed


def _chalice_in_process(spec: dict) -> None:
    """What ``chalice package`` does, with config overrides; run in a child process (Chalice
    imports app.py and changes directory)."""
    from chalice.cli.factory import CLIFactory
    from chalice.deploy.validate import validate_lambda_architecture

    os.chdir(spec["project_dir"])
    factory = CLIFactory(spec["project_dir"], debug=False, environ=os.environ)
    config = factory.create_config_obj(spec["stage"], user_provided_params=dict(spec["overrides"]))
    validate_lambda_architecture(config)
    packager = factory.create_app_packager(
        config, factory.create_package_options(), spec["pkg_format"], "json", None
    )
    packager.package_app(config, spec["out"], spec["stage"])


def _chalice_package(spec: dict, env: dict[str, str]) -> None:
    code = "import json, sys; from devtools.deploy.package import _chalice_in_process as run; run(json.loads(sys.argv[1]))"
    done = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], env=env, cwd=spec["project_dir"],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise RuntimeError(f"chalice package --pkg-format {spec['pkg_format']} failed: "
                           f"{lines[-1] if lines else done.returncode}")


def _name_sam_functions(template_path: Path, stage: str) -> None:
    """Name the functions as Chalice does for Terraform and ``chalice deploy``. SAM leaves
    the names to CloudFormation, so neither the IAM policies' log ARNs nor callers granted
    ``lambda:InvokeFunction`` could name them. Also points the API handler's log group at
    the API handler: Chalice 1.34 writes ``${ApiHandler}``, a resource that does not exist."""
    from chalice.utils import to_cfn_resource_name

    template = json.loads(template_path.read_text(encoding="utf-8"))
    resources = template["Resources"]
    for name in FUNCTIONS:
        logical = "APIHandler" if name == "api_handler" else to_cfn_resource_name(name)
        if resources.get(logical, {}).get("Type") == "AWS::Serverless::Function":
            resources[logical]["Properties"]["FunctionName"] = lambda_function_name(stage, name)
    group = resources.get("ApiHandlerLogGroup", {}).get("Properties")
    if group is not None and "APIHandler" in resources:
        group["LogGroupName"] = {"Fn::Sub": "/aws/lambda/${APIHandler}"}
    template_path.write_text(json.dumps(template, indent=2) + "\n", encoding="utf-8")


def _add_terraform_log_groups(template_path: Path, stage: str, retention: int | None) -> None:
    """Chalice 1.34 refuses ``log_retention_in_days`` for Terraform; add the log groups here."""
    if not retention:
        return
    template = json.loads(template_path.read_text(encoding="utf-8"))
    functions = template["resource"].get("aws_lambda_function", {})
    groups = template["resource"].setdefault("aws_cloudwatch_log_group", {})
    for name, function in functions.items():
        groups[f"{name}_log_group"] = {"name": f"/aws/lambda/{function['function_name']}",
                                       "retention_in_days": retention}
        function.setdefault("depends_on", []).append(f"aws_cloudwatch_log_group.{name}_log_group")
    template_path.write_text(json.dumps(template, indent=2) + "\n", encoding="utf-8")


def _stage_project(project: Path, stage_dir: Path) -> None:
    """Copy what Chalice packages into ``stage_dir``: app.py, chalicelib/ (without the code
    that never runs in Lambda and without bytecode), requirements.txt, vendor/, .chalice's
    config and the policy files it names. Chalice's dependency cache
    (``.chalice/deployments``) survives between runs; everything else is replaced."""
    def ignore(directory: str, names: list[str]) -> set[str]:
        rel = Path(directory).relative_to(project).as_posix()
        return {n for n in names if n == "__pycache__" or n.endswith(".pyc")
                or f"{rel}/{n}/" in EXCLUDED_APP_DIRS}

    stage_dir.mkdir(parents=True, exist_ok=True)
    for name in ("app.py", "requirements.txt", "chalicelib", "vendor", "policies"):
        target = stage_dir / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        source = project / name
        if source.is_dir():
            shutil.copytree(source, target, ignore=ignore)
        elif source.exists():
            shutil.copy2(source, target)
    (stage_dir / ".chalice").mkdir(exist_ok=True)
    shutil.copy2(project / ".chalice" / "config.json", stage_dir / ".chalice" / "config.json")


def _drop_stale_caches(stage_dir: Path) -> None:
    """Keep only the newest dependency bundle Chalice cached (each is ~25 MB)."""
    cached = sorted((stage_dir / ".chalice" / "deployments").glob("*.zip"), key=lambda p: p.stat().st_mtime)
    for stale in cached[:-1]:
        stale.unlink()


def package(project_dir: str | Path = PROJECT_DIR, out: str | Path | None = None, stage: str = "dev",
            formats: tuple[str, ...] = FORMATS, *, regenerate: bool = True) -> list[PackageResult]:
    """Build every format into ``out/<format>/``; returns what was written.

    ``regenerate=False`` refuses to package stale policy files instead of rewriting them.
    """
    project = Path(project_dir).resolve()
    out_dir = Path(out).resolve() if out else project / "build"
    if regenerate:
        for path in write_policy_files(project):
            print(f"regenerated {path.relative_to(project)}", file=sys.stderr)
    elif stale := stale_policy_files(project):
        raise RuntimeError(f"stale policy files: {', '.join(p.name for p in stale)} (run make package)")
    deploy = load_deploy_settings(project / "policies" / "deploy.yaml")
    config = load_chalice_config(project)
    if stage not in config.get("stages", {}):
        raise RuntimeError(f"no stage '{stage}' in .chalice/config.json")
    retention = config["stages"][stage].get("log_retention_in_days", config.get("log_retention_in_days"))
    stage_dir = out_dir / ".stage"
    _stage_project(project, stage_dir)
    env = dict(os.environ)
    env.setdefault("AWS_DEFAULT_REGION", deploy.region)  # chalice wants one; nothing is called
    env["AWS_CHALICE_CLI_MODE"] = "true"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_DIR), env.get("PYTHONPATH")]))
    results = []
    for pkg_format in formats:
        target = out_dir / pkg_format
        if target.exists():
            shutil.rmtree(target)
        started = time.perf_counter()
        spec = {"project_dir": str(stage_dir), "stage": stage, "pkg_format": pkg_format, "out": str(target),
                "overrides": {}}
        if pkg_format == "terraform":
            spec["overrides"] = {"log_retention_in_days": 0}  # added below instead
        _chalice_package(spec, env)
        template = target / ("sam.json" if pkg_format == "cloudformation" else "chalice.tf.json")
        if pkg_format == "terraform":
            _add_terraform_log_groups(template, stage, retention)
        else:
            _name_sam_functions(template, stage)
        zip_path = target / "deployment.zip"
        removed = prune_zip(zip_path)
        results.append(PackageResult(pkg_format, target, template, zip_path, zip_path.stat().st_size,
                                     removed, time.perf_counter() - started))
    _drop_stale_caches(stage_dir)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.deploy.package", description=__doc__.splitlines()[0])
    parser.add_argument("--stage", default="dev", help="Chalice stage to package (default: dev)")
    parser.add_argument("--out", default=None, help="output directory (default: build/)")
    parser.add_argument("--project-dir", default=str(PROJECT_DIR))
    args = parser.parse_args(argv)
    try:
        results = package(args.project_dir, args.out, args.stage)
    except (PolicyLoadError, RuntimeError) as exc:
        print(f"package: {exc}", file=sys.stderr)
        return 2
    for result in results:
        print(f"{result.pkg_format}: {result.template} + {result.zip_path} "
              f"({result.zip_bytes / 1e6:.1f} MB, {result.seconds:.0f} s)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
