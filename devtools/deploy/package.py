"""`make package`: the deployable artefacts, built offline (no AWS call, no credentials).

1. Regenerates the functions' IAM policies and the API resource policy from
   ``policies/deploy.yaml``, the access policy and ``.chalice/config.json``
   (:mod:`devtools.deploy.roles`).
2. For every stage of ``.chalice/config.json``, one deployable stack per format, each in its
   own directory: ``build/<stage>/sam/`` (``sam.json``: ``chalice package`` with the merge
   template of :mod:`devtools.deploy.sam`) and ``build/<stage>/terraform/``
   (``chalice.tf.json`` adjusted by :mod:`devtools.deploy.terraform`, and ``rdsvend.tf.json``).
   Chalice pip-installs ``requirements.txt`` (the functions' runtime dependencies only) for
   the Lambda platform; that needs the package index (or ``PIP_NO_INDEX=1
   PIP_FIND_LINKS=DIR`` with a wheelhouse), nothing else.
3. The member-account roles (signer, reader) as a StackSet-ready template in
   ``build/<stage>/member-roles/`` (:mod:`devtools.deploy.member_roles`).
4. Rebuilds each ``deployment.zip`` from an allowlist: the project's own code is only what
   the functions run (:data:`LAMBDA_APP_CODE`: ``app.py`` and ``chalicelib/``; never the client,
   the operator CLI, the local stack, the deploy tooling or test fakes), plus the files the
   runtime dependencies' wheels list in their ``RECORD``, minus the AWS SDK the Lambda Python
   runtime already provides (boto3, botocore and their dependencies: 16 MB zipped).

Chalice writes into a scratch directory; only the generated files are then replaced in the
output directories. Anything else there (``terraform.tfstate``, ``.terraform/``, the lock
file, a packaged template) is never touched.

Usage: ``python -m devtools.deploy.package [--stage STAGE ...] [--out build]
[--project-dir .]`` (default: every stage). Prints one line per artefact and the zip's size.
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
from typing import Any, TypedDict

from chalicelib.errors import PolicyLoadError
from devtools.deploy.member_roles import MEMBER_ROLES_FILE, member_roles_template
from devtools.deploy.roles import (
    load_chalice_config,
    load_deploy_file,
    load_stage_policy,
    stale_policy_files,
    write_policy_files,
)
from devtools.deploy.sam import finish_sam_template, merge_template, unmerged_resources
from devtools.deploy.settings import DeployFile, DeploySettings
from devtools.deploy.stack import StackPlan, stack_plan
from devtools.deploy.stages import check_stages
from devtools.deploy.terraform import STACK_FILE, fix_chalice_terraform, terraform_stack

__all__ = [
    "FORMATS",
    "LAMBDA_APP_CODE",
    "RUNTIME_PROVIDED",
    "PackageResult",
    "package",
    "prune_zip",
    "main",
]

FORMATS = ("cloudformation", "terraform")

#: The project's own code in the Lambda package (a file, or a folder ending in "/"), and
#: Chalice's runtime router, which Chalice adds without a wheel of its own. Everything else in
#: the zip must belong to a runtime dependency's wheel (its dist-info RECORD).
LAMBDA_APP_CODE = ("app.py", "chalicelib/")
CHALICE_RUNTIME = ("chalice/__init__.py", "chalice/app.py")

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
    stage: str = "dev"


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


def _app_code(name: str) -> bool:
    return any(name == entry or (entry.endswith("/") and name.startswith(entry)) for entry in LAMBDA_APP_CODE)


def _distribution_files(archive: zipfile.ZipFile) -> set[str]:
    """Every file a bundled wheel's ``RECORD`` lists, its dist-info folder included."""
    names = set(archive.namelist())
    found: set[str] = set()
    for name in names:
        if not re.fullmatch(r"[^/]+\.dist-info/RECORD", name):
            continue
        for line in archive.read(name).decode("utf-8").splitlines():
            path = line.rsplit(",", 2)[0].strip().strip('"')
            if path:
                found.add(path)
        dist_info = name.rsplit("/", 1)[0] + "/"
        found.update(n for n in names if n.startswith(dist_info))
    return found & names


def _allowed(name: str, distributions: set[str]) -> bool:
    if "/__pycache__/" in f"/{name}" or name.endswith(".pyc") or name.endswith("/"):
        return False
    return _app_code(name) or name in CHALICE_RUNTIME or name in distributions


def prune_zip(zip_path: Path) -> int:
    """Rewrite ``zip_path`` keeping only allowlisted app code and the runtime dependencies'
    wheels, without the distributions the Lambda runtime provides.

    Returns how many files were removed.
    """
    with zipfile.ZipFile(zip_path) as archive:
        drop = _runtime_provided_files(archive)
        distributions = _distribution_files(archive)
        keep = [info for info in archive.infolist()
                if info.filename not in drop and _allowed(info.filename, distributions)]
        removed = len(archive.infolist()) - len(keep)
        if not removed:
            return 0
        tmp = zip_path.with_suffix(".tmp")
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as out:
            for info in keep:
                out.writestr(info, archive.read(info.filename), compress_type=zipfile.ZIP_DEFLATED)
    os.replace(tmp, zip_path)
    return removed


class ChaliceSpec(TypedDict):
    """One ``chalice package`` run, handed to the child process as JSON."""

    project_dir: str
    stage: str
    pkg_format: str
    out: str
    overrides: dict[str, Any]
    merge_template: str | None


def _chalice_in_process(spec: ChaliceSpec) -> None:
    """What ``chalice package`` does, with config overrides; run in a child process (Chalice
    imports app.py and changes directory)."""
    from chalice.cli.factory import CLIFactory
    from chalice.deploy.validate import validate_lambda_architecture

    os.chdir(spec["project_dir"])
    factory = CLIFactory(spec["project_dir"], debug=False, environ=os.environ)
    config = factory.create_config_obj(spec["stage"], user_provided_params=dict(spec["overrides"]))
    validate_lambda_architecture(config)
    packager = factory.create_app_packager(
        config, factory.create_package_options(), spec["pkg_format"], "json", spec["merge_template"]
    )
    packager.package_app(config, spec["out"], spec["stage"])


def _chalice_package(spec: ChaliceSpec, env: dict[str, str]) -> None:
    code = ("import json, sys; from devtools.deploy.package import _chalice_in_process as run; "
            "run(json.loads(sys.argv[1]))")
    done = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], env=env, cwd=spec["project_dir"],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise RuntimeError(f"chalice package --pkg-format {spec['pkg_format']} failed: "
                           f"{lines[-1] if lines else done.returncode}")


def _stage_project(project: Path, stage_dir: Path) -> None:
    """Copy what Chalice packages into ``stage_dir``: app.py and chalicelib/ (without
    bytecode), requirements.txt, vendor/, .chalice's config and the policy files it names.
    Chalice's dependency cache (``.chalice/deployments``) survives between runs; everything
    else is replaced."""
    def ignore(directory: str, names: list[str]) -> set[str]:
        return {n for n in names if n == "__pycache__" or n.endswith(".pyc")}

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


#: Where each format goes under ``build/<stage>/``, and the template Chalice writes there.
DIRECTORIES = {"cloudformation": "sam", "terraform": "terraform"}
TEMPLATES = {"cloudformation": "sam.json", "terraform": "chalice.tf.json"}


def _replace_generated(scratch: Path, target: Path, names: list[str]) -> None:
    """Move Chalice's generated files from ``scratch`` into ``target``, replacing only those
    files: state, lock files and whatever else an operator keeps there stay."""
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        os.replace(scratch / name, target / name)
    shutil.rmtree(scratch)


def _write_json(path: Path, document: dict[str, Any]) -> None:
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def package(project_dir: str | Path = PROJECT_DIR, out: str | Path | None = None,
            stages: tuple[str, ...] | None = None, formats: tuple[str, ...] = FORMATS, *,
            regenerate: bool = True) -> list[PackageResult]:
    """Build ``formats`` of ``stages`` (default: every stage) into ``out/<stage>/<sam|terraform>/``
    and the member-account roles into ``out/<stage>/member-roles/``; returns what was written.

    ``regenerate=False`` refuses to package stale policy files instead of rewriting them.
    """

    project = Path(project_dir).resolve()
    out_dir = Path(out).resolve() if out else project / "build"
    deploy_file, config, policies = _checked_project(project, regenerate)
    stages = tuple(stages or config.get("stages", {}))
    for stage in stages:
        if stage not in config.get("stages", {}):
            raise RuntimeError(f"no stage '{stage}' in .chalice/config.json")
    source_dir = out_dir / ".stage"
    _stage_project(project, source_dir)
    env = dict(os.environ)
    env.setdefault("AWS_DEFAULT_REGION", deploy_file.stage(stages[0]).region)  # chalice wants one; nothing is called
    env["AWS_CHALICE_CLI_MODE"] = "true"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_DIR), env.get("PYTHONPATH")]))
    results = []
    for stage in stages:
        deploy = deploy_file.stage(stage)
        policy_text = deploy.access_policy.read_text(encoding="utf-8")
        build = _StageBuild(stage, deploy, stack_plan(config, stage, deploy), policy_text, source_dir, out_dir, env)
        roles_dir = out_dir / stage / "member-roles"
        roles_dir.mkdir(parents=True, exist_ok=True)
        _write_json(roles_dir / MEMBER_ROLES_FILE, member_roles_template(policies[stage], deploy, stage))
        results += [_package_format(build, pkg_format) for pkg_format in formats]
    _drop_stale_caches(source_dir)
    return results


def _checked_project(project: Path, regenerate: bool) -> tuple[DeployFile, dict[str, Any], dict[str, Any]]:
    """The deploy file, the Chalice config and each stage's access policy, checked against each
    other; the generated policy files rewritten (``regenerate``) or refused when stale."""
    deploy_file = load_deploy_file(project / "policies" / "deploy.yaml")
    config = load_chalice_config(project)
    policies = {stage: load_stage_policy(settings) for stage, settings in deploy_file.stages.items()}
    check_stages(deploy_file, config, policies, str(project / ".chalice" / "config.json"))
    if regenerate:
        for path in write_policy_files(project):
            print(f"regenerated {path.relative_to(project)}", file=sys.stderr)
    elif stale := stale_policy_files(project):
        raise RuntimeError(f"stale policy files: {', '.join(p.name for p in stale)} (run make package)")
    return deploy_file, config, policies


@dataclass(frozen=True)
class _StageBuild:
    """What packaging one stage reads: its settings, plan and access policy, where the staged
    project is, where the output goes, and the environment Chalice runs in."""

    stage: str
    deploy: DeploySettings
    plan: StackPlan
    policy_text: str
    source_dir: Path
    out_dir: Path
    env: dict[str, str]


def _package_format(build: _StageBuild, pkg_format: str) -> PackageResult:
    """One stage in one format: Chalice's package, finished (SAM: merged and guarded; Terraform:
    fixed, plus the stack file), pruned, and swapped into ``out/<stage>/<format>/`` at once."""
    started = time.perf_counter()
    stage, out_dir = build.stage, build.out_dir
    target = out_dir / stage / DIRECTORIES[pkg_format]
    scratch = out_dir / ".work" / f"{stage}-{pkg_format}"
    if scratch.exists():
        shutil.rmtree(scratch)
    spec: ChaliceSpec = {"project_dir": str(build.source_dir), "stage": stage, "pkg_format": pkg_format,
                         "out": str(scratch), "overrides": {}, "merge_template": None}
    if pkg_format == "cloudformation":
        merge_file = out_dir / ".work" / f"{stage}-merge.json"
        merge_file.parent.mkdir(parents=True, exist_ok=True)
        _write_json(merge_file, merge_template(build.plan, build.policy_text))
        spec["merge_template"] = str(merge_file)
    else:
        spec["overrides"] = {"log_retention_in_days": 0}  # Chalice refuses it; rdsvend.tf.json has them
    _chalice_package(spec, build.env)
    template_name = TEMPLATES[pkg_format]
    template = json.loads((scratch / template_name).read_text(encoding="utf-8"))
    if pkg_format == "cloudformation":
        if missing := unmerged_resources(template):
            raise RuntimeError(f"merge template names resources Chalice did not make: {', '.join(missing)}")
        _write_json(scratch / template_name, finish_sam_template(template, build.deploy))
    else:
        _write_json(scratch / template_name, fix_chalice_terraform(template, build.plan, build.deploy))
        _write_json(scratch / STACK_FILE, terraform_stack(build.plan, build.policy_text, build.deploy))
    removed = prune_zip(scratch / "deployment.zip")
    generated = [template_name, "deployment.zip"] + ([STACK_FILE] if pkg_format == "terraform" else [])
    _replace_generated(scratch, target, generated)
    zip_path = target / "deployment.zip"
    return PackageResult(pkg_format, target, target / template_name, zip_path, zip_path.stat().st_size, removed,
                         time.perf_counter() - started, stage=stage)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.deploy.package", description=__doc__.splitlines()[0])
    parser.add_argument("--stage", action="append", default=None, dest="stages",
                        help="a Chalice stage to package (repeatable; default: every stage)")
    parser.add_argument("--out", default=None, help="output directory (default: build/)")
    parser.add_argument("--project-dir", default=str(PROJECT_DIR))
    args = parser.parse_args(argv)
    try:
        results = package(args.project_dir, args.out, tuple(args.stages or ()) or None)
    except (PolicyLoadError, RuntimeError) as exc:
        print(f"package: {exc}", file=sys.stderr)
        return 2
    for result in results:
        print(f"{result.stage} {result.pkg_format}: {result.template} + {result.zip_path} "
              f"({result.zip_bytes / 1e6:.1f} MB, {result.seconds:.0f} s)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
