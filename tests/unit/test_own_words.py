"""The project speaks for itself: no code, help text or document cites the outside contract
document or its section numbers; where a user needs the contract, README.md or docs/ says it."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WHERE = ["chalicelib", "devtools", "client", "bench", "docs", "tests", "app.py", "README.md", "openapi.yaml",
         "Makefile", "pyproject.toml", "policies"]
CITATION = re.compile(r"\bSPEC\b|SPEC\.md")


def test_no_citation_of_an_outside_spec() -> None:
    found = []
    for entry in WHERE:
        base = ROOT / entry
        files = [base] if base.is_file() else [p for p in base.rglob("*") if p.is_file()]
        for path in files:
            if "__pycache__" in path.parts or path.suffix not in {"", ".py", ".md", ".yaml", ".yml", ".toml", ".txt"}:
                continue
            if path == Path(__file__).resolve():
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                if CITATION.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert found == []
