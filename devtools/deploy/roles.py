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
    DeploySettings,
    StageSettings,
    lambda_function_name,
    load_chalice_config,
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


def render_policy_files(project_dir: str | Path, deploy_file: str | Path | None = None) -> dict[Path, str]:
    """Every policy file ``.chalice/config.json`` names, with the content it must have."""
    project = Path(project_dir).resolve()
    deploy = load_deploy_settings(deploy_file or project / "policies" / "deploy.yaml")
    policy = load_policy_file(deploy.access_policy)
    config = load_chalice_config(project)
    chalice_dir = project / ".chalice"
    files: dict[Path, str] = {}
    api_file = config.get("api_gateway_policy_file")
    if not isinstance(api_file, str):
        raise DeployConfigError("no api_gateway_policy_file", source=str(chalice_dir / "config.json"))
    files[(chalice_dir / api_file).resolve()] = dump(api_resource_policy(deploy))
    for stage in config.get("stages", {}):
        settings = stage_settings(config, stage, source=str(chalice_dir / "config.json"))
        for function, name in settings.policy_files.items():
            path = (chalice_dir / name).resolve()
            content = dump(function_policy(function, settings, policy, deploy))
            if files.get(path, content) != content:
                raise DeployConfigError(f"'{name}' is named for two functions that need different policies",
                                        source=str(chalice_dir / "config.json"))
            files[path] = content
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
            deploy = load_deploy_settings(project / "policies" / "deploy.yaml")
            clients = default_client_factory()
            try:
                ids = resource_ids_from_rds(load_policy_file(deploy.access_policy),
                                            lambda region: clients("rds", region))
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
