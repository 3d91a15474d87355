"""The local stack's JSON-lines logs (refusals, allowed requests): one dataclass per line."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["append_record", "read_records"]

T = TypeVar("T")


def append_record(path: Path, record: Any) -> None:
    """Append ``record`` (a dataclass) to ``path`` as one JSON line."""
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(asdict(record)) + "\n")


def read_records(path: Path, kind: type[T]) -> list[T]:
    """Every line of ``path`` as a ``kind``, oldest first; none when there is no such file."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    return [kind(**json.loads(line)) for line in lines if line.strip()]
