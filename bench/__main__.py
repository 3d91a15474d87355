"""Run every ``bench/bench_*.py`` module's ``run()`` and print its results as JSON lines.

Each ``run()`` returns a list of dicts with at least ``name``, ``value``, ``unit``,
``baseline`` and ``ratio``; every ratio is measured against its baseline in the same run.
``python -m bench NAME...`` runs only the named modules (``mint``, ``canary``...).
"""
from __future__ import annotations

import importlib
import json
import pkgutil
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    wanted = set(argv)
    here = Path(__file__).parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    failed = False
    for name in names:
        short = name.removeprefix("bench_")
        if wanted and short not in wanted:
            continue
        module = importlib.import_module(f"bench.{name}")
        for result in module.run():
            print(json.dumps(result, sort_keys=False), flush=True)
            if result.get("ok") is False:
                failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
