"""Every ``# type: ignore[...]`` and ``# noqa: ...`` left in the code says why, on the same line, and
a ``noqa`` names a rule the linter runs (one it does not run suppresses nothing and misleads)."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TOPS = ("app.py", "chalicelib", "client/rdsvend", "devtools", "bench", "tests")
SUPPRESSION = re.compile(r"#\s*(type:\s*ignore|noqa)\b(?P<rest>.*)$")
EXPLAINED = re.compile(r"^(\[[-a-z, ]+\])?:?\s*[A-Z0-9, ]*\s*(#|-)\s*\S")
NOQA_CODES = re.compile(r"#\s*noqa:\s*(?P<codes>[A-Z]+[0-9]+(?:\s*,\s*[A-Z]+[0-9]+)*)")


def _lint_config() -> dict[str, Any]:
    config: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    lint: dict[str, Any] = config["tool"]["ruff"]["lint"]
    return lint


def _selected() -> tuple[str, ...]:
    """The rule codes and prefixes ruff selects (``[tool.ruff.lint] select``)."""
    return tuple(_lint_config()["select"])


def _ignored() -> tuple[str, ...]:
    """The rule codes and prefixes ruff leaves out of what it selects (``[tool.ruff.lint] ignore``)."""
    return tuple(_lint_config().get("ignore", ()))


def _lines() -> list[tuple[str, int, str]]:
    found = []
    for top in TOPS:
        base = ROOT / top
        paths = [base] if base.is_file() else sorted(base.rglob("*.py"))
        for path in paths:
            if path == Path(__file__).resolve():
                continue  # this file's own samples
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if SUPPRESSION.search(line):
                    found.append((str(path.relative_to(ROOT)), number, line))
    return found


def _explained(line: str) -> bool:
    found = SUPPRESSION.search(line)
    return bool(found and EXPLAINED.match(found.group("rest").strip()))


def _unselected(line: str, selected: tuple[str, ...], ignored: tuple[str, ...] = ()) -> list[str]:
    found = NOQA_CODES.search(line)
    if found is None:
        return []
    codes = [code.strip() for code in found.group("codes").split(",")]
    return [code for code in codes if not code.startswith(selected) or (ignored and code.startswith(ignored))]


def test_every_suppression_says_why() -> None:
    bare = [f"{path}:{number}: {line.strip()[:100]}" for path, number, line in _lines() if not _explained(line)]
    assert bare == []


def test_every_noqa_names_a_selected_rule() -> None:
    selected, ignored = _selected(), _ignored()
    stray = [f"{path}:{number}: {', '.join(_unselected(line, selected, ignored))}"
             for path, number, line in _lines() if _unselected(line, selected, ignored)]
    assert stray == []


def test_the_check_tells_a_reason_from_none() -> None:
    assert _explained("x = 1  # type: ignore[arg-type]  # checked above")
    assert _explained("except Exception:  # noqa: BLE001 - never a traceback")
    assert not _explained("x = 1  # type: ignore[arg-type]")
    assert not _explained("except Exception:  # noqa: BLE001")
    assert not _explained("import os  # noqa")


def test_the_check_tells_a_selected_rule_from_another() -> None:
    selected = ("E", "BLE", "PLR0402")
    assert _unselected("f = lambda: 1  # noqa: E731 - inline", selected) == []
    assert _unselected("except Exception:  # noqa: BLE001 - never a traceback", selected) == []
    assert _unselected("x._y  # noqa: SLF001 - private", selected) == ["SLF001"]
    assert _unselected("import a.b as b  # noqa: PLR0402, PLR2004 - both", selected) == ["PLR2004"]
    assert _unselected("if x == 403:  # noqa: PLR2004 - a status", ("PLR",), ("PLR2004",)) == ["PLR2004"]
    assert _unselected("return 1  # noqa: PLR0911 - a ladder", ("PLR",), ("PLR2004",)) == []
    assert "BLE" in _selected()
    assert "PLR" in _selected() and "PLR2004" in _ignored()
