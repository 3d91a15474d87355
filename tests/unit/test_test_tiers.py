"""The fast tier stays fast: every test module that starts a server (PostgreSQL, MariaDB, a moto
server, the LDAP responder, the local stack) carries the ``e2e`` marker, so ``make test-fast``
(``pytest -m "not e2e"``) starts none."""
from __future__ import annotations

import ast
import re
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
STARTS_A_SERVER = re.compile(r"\b(PostgresCluster|MariaDBServer|LocalMariaDB|ThreadedMotoServer|MotoServer|LocalStack|"
                             r"StackServer|LdapResponder|MysqlFront|spawn_detached)\(|\blocal_stack\b")


def _marked_e2e(tree: ast.Module) -> bool:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets):
            return "pytest.mark.e2e" in ast.unparse(node.value)
    return False


def test_every_module_that_starts_a_server_is_marked_e2e() -> None:
    unmarked = []
    for path in sorted(TESTS.rglob("test_*.py")):
        if path == Path(__file__).resolve():
            continue
        text = path.read_text(encoding="utf-8")
        if STARTS_A_SERVER.search(text) and not _marked_e2e(ast.parse(text)):
            unmarked.append(str(path.relative_to(TESTS)))
    assert unmarked == []


def test_the_check_tells_marked_from_unmarked() -> None:
    assert _marked_e2e(ast.parse("import pytest\npytestmark = pytest.mark.e2e\n"))
    assert _marked_e2e(ast.parse("import pytest\npytestmark = [pytest.mark.e2e, pytest.mark.skipif(True, reason='')]"))
    assert not _marked_e2e(ast.parse("import pytest\npytestmark = pytest.mark.skipif(True, reason='')\n"))
    assert STARTS_A_SERVER.search("with PostgresCluster() as pg:") and not STARTS_A_SERVER.search("pg.run_sql()")
