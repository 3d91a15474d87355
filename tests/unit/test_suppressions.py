"""Every ``# type: ignore[...]`` and ``# noqa: ...`` left in the code says why, on the same line."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SUPPRESSION = re.compile(r"#\s*(type:\s*ignore|noqa)\b(?P<rest>.*)$")
EXPLAINED = re.compile(r"^(\[[-a-z, ]+\])?:?\s*[A-Z0-9, ]*\s*(#|-)\s*\S")


def test_every_suppression_says_why():
    bare = []
    for top in ("chalicelib", "client/rdsvend", "devtools"):
        for path in sorted((ROOT / top).rglob("*.py")):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                found = SUPPRESSION.search(line)
                if found and not EXPLAINED.match(found.group("rest").strip()):
                    bare.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert bare == []


def test_the_check_tells_a_reason_from_none():
    def explained(line: str) -> bool:
        found = SUPPRESSION.search(line)
        return bool(found and EXPLAINED.match(found.group("rest").strip()))

    assert explained("x = 1  # type: ignore[arg-type]  # checked above")
    assert explained("except Exception:  # noqa: BLE001 - never a traceback")
    assert not explained("x = 1  # type: ignore[arg-type]")
    assert not explained("except Exception:  # noqa: BLE001")
    assert not explained("import os  # noqa")
