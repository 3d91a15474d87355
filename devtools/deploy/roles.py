"""The policy files of the functions' roles and of the API (``python -m devtools.deploy.roles``).

``make package`` writes them; ``--check`` says which are stale. What they hold is decided in
:mod:`devtools.deploy.documents` from the inputs of :mod:`devtools.deploy.settings`; the
names of both stay importable from here.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from chalicelib.aws.clients import default_client_factory
from chalicelib.errors import IamFetchError, PolicyLoadError
from chalicelib.policy.loader import load_policy_file
from chalicelib.policy.model import AccessPolicy
from devtools.deploy.documents import (
    ResourceIdDirectory,
    api_resource_policy,
    connect_arns,
    function_policy,
    resource_ids_from_rds,
)
from devtools.deploy.settings import (
    FUNCTIONS,
    VENDING,
    DeployConfigError,
    DeployFile,
    DeploySettings,
    StageSettings,
    check_stages_agree,
    lambda_function_name,
    load_chalice_config,
    load_deploy_file,
    load_deploy_settings,
    stage_settings,
)

__all__ = [
    "FUNCTIONS",
    "VENDING",
    "lambda_function_name",
    "DeploySettings",
    "StageSettings",
    "DeployConfigError",
    "load_deploy_settings",
    "load_deploy_file",
    "DeployFile",
    "check_stages_agree",
    "load_stage_policy",
    "load_chalice_config",
    "stage_settings",
    "connect_arns",
    "ResourceIdDirectory",
    "function_policy",
    "api_resource_policy",
    "render_policy_files",
    "write_policy_files",
    "stale_policy_files",
    "dump",
    "resource_ids_from_rds",
    "main",
]


# -- files ----------------------------------------------------------------------------------
def dump(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2) + "\n"


def load_stage_policy(deploy: DeploySettings) -> AccessPolicy:
    """The stage's access policy, loaded as its functions load it (knowing their account)."""
    return load_policy_file(deploy.access_policy, service_account=deploy.account)


def render_policy_files(project_dir: str | Path, deploy_file: str | Path | None = None) -> dict[Path, str]:
    """Every policy file ``.chalice/config.json`` names, with the content it must have."""
    project = Path(project_dir).resolve()
    deploy_all = load_deploy_file(deploy_file or project / "policies" / "deploy.yaml")
    config = load_chalice_config(project)
    chalice_dir = project / ".chalice"
    config_source = str(chalice_dir / "config.json")
    check_stages_agree(deploy_all, config, config_source)
    files: dict[Path, str] = {}

    def put(name: str, content: str, what: str) -> None:
        path = (chalice_dir / name).resolve()
        if files.get(path, content) != content:
            raise DeployConfigError(f"'{name}' is named for two {what} that need different policies",
                                    source=config_source)
        files[path] = content

    for stage in config.get("stages", {}):
        deploy = deploy_all.stage(stage)
        settings = stage_settings(config, stage, source=config_source)
        api_file = config["stages"][stage].get("api_gateway_policy_file", config.get("api_gateway_policy_file"))
        if not isinstance(api_file, str):
            raise DeployConfigError("no api_gateway_policy_file", source=config_source)
        put(api_file, dump(api_resource_policy(deploy)), "stages")
        policy = load_stage_policy(deploy)
        for function, name in settings.policy_files.items():
            put(name, dump(function_policy(function, settings, policy, deploy)), "functions")
    return files


def write_policy_files(project_dir: str | Path) -> list[Path]:
    """Write what :func:`render_policy_files` says; returns the files that changed."""
    changed = []
    for path, content in render_policy_files(project_dir).items():
        if not path.exists() or path.read_text(encoding="utf-8") != content:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
            changed.append(path)
    return changed


def stale_policy_files(project_dir: str | Path) -> list[Path]:
    """The policy files that are missing or differ from what the inputs say."""
    return [
        path for path, content in render_policy_files(project_dir).items()
        if not path.exists() or path.read_text(encoding="utf-8") != content
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.deploy.roles",
        description="Write the functions' IAM policies and the API resource policy from policies/deploy.yaml.",
    )
    parser.add_argument("--project-dir", default=str(Path(__file__).resolve().parents[2]))
    parser.add_argument("--check", action="store_true", help="exit 1 when a policy file is stale; write nothing")
    parser.add_argument("--resource-ids", action="store_true",
                        help="print deploy.yaml's resource_ids block, read from RDS with your AWS credentials")
    args = parser.parse_args(argv)
    project = Path(args.project_dir)
    try:
        if args.resource_ids:
            clients = default_client_factory()
            ids: dict[str, str] = {}
            try:
                for deploy in load_deploy_file(project / "policies" / "deploy.yaml").stages.values():
                    ids.update(resource_ids_from_rds(load_stage_policy(deploy),
                                                     lambda region: clients("rds", region)))
            except IamFetchError as exc:
                print(f"roles: {exc}", file=sys.stderr)
                return 2
            print(yaml.safe_dump({"resource_ids": ids}, sort_keys=False), end="")
            return 0
        if args.check:
            stale = stale_policy_files(project)
            for path in stale:
                print(f"stale: {path}", file=sys.stderr)
            return 1 if stale else 0
        for path in write_policy_files(project):
            print(f"wrote {path}")
        return 0
    except PolicyLoadError as exc:
        print(f"roles: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
