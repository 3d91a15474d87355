"""No function outside the tests is longer than 60 lines: past that, a function is usually two
steps, each of which deserves a name (ruff's complexity and pylint-derived rules catch the
branchy ones; this catches the long straight ones)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOPS = ("app.py", "chalicelib", "client/rdsvend", "devtools", "bench")
MAX_LINES = 60


def _length(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from ``def`` to the function's last line (docstring and comments included,
    decorators not)."""
    return (node.end_lineno or node.lineno) - node.lineno + 1


def _too_long(source: str, name: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source, filename=name)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _length(node) > MAX_LINES:
            found.append(f"{name}:{node.lineno} {node.name} ({_length(node)} lines)")
    return found


def _sources() -> list[Path]:
    paths: list[Path] = []
    for top in TOPS:
        base = ROOT / top
        paths += [base] if base.is_file() else sorted(base.rglob("*.py"))
    return paths


def test_no_function_outside_the_tests_is_longer_than_60_lines() -> None:
    offenders = [line for path in _sources()
                 for line in _too_long(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))]
    assert offenders == []


def test_the_walk_sees_every_top() -> None:
    names = {str(path.relative_to(ROOT)).split("/")[0] for path in _sources()}
    assert {"app.py", "chalicelib", "client", "devtools", "bench"} <= names


def test_the_count_tells_a_long_function_from_a_short_one() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES - 1))
    at_limit = f"@decorator\ndef fits():\n{body}\n"
    assert _too_long(at_limit, "m.py") == []
    over = f"class C:\n    async def method(self):\n    {body.replace(chr(10), chr(10) + '    ')}\n        y = 1\n"
    assert _too_long(over, "m.py") == ["m.py:2 method (61 lines)"]
    nested = f"def outer():\n    def inner():\n    {body.replace(chr(10), chr(10) + '    ')}\n        y = 1\n    return inner\n"
    assert [line.split(" ")[1] for line in _too_long(nested, "m.py")] == ["outer", "inner"]
