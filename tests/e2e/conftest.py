"""The end-to-end tier's shared fixture: one local stack for the whole session.

``local_stack`` is a :class:`devtools.local.stack.LocalStack` (moto server seeded from
policies/world.yaml, the RDS-shaped PostgreSQL with IAM token checking, the SigV4 gateway with
the Chalice app), running in a child process with its own state dir. Useful attributes:
``url`` (the API), ``moto_url``, ``ca_path``, ``admin_dsn``, ``env(caller)``, ``keys(caller)``
(``"allowed"`` / ``"denied"``), ``request(method, path, body, caller=...)`` (a SigV4-signed
call), ``info.databases["orders-local"]`` (host, port, dbname, resource_id), ``info.seeded``
(ids and credentials seeding made). Tests that change the world must put it back.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.local.postgres import DEFAULT_BIN_DIR
from devtools.local.stack import LocalStack


def _require_postgres() -> None:
    if not (Path(DEFAULT_BIN_DIR) / "initdb").exists():
        pytest.skip(f"PostgreSQL 15 binaries not found in {DEFAULT_BIN_DIR}")


_RUNNING: list[LocalStack] = []  # the session's stack, once started


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    _require_postgres()
    stack = LocalStack(tmp_path_factory.mktemp("rdsvend-local") / "state")
    stack.start()
    _RUNNING.append(stack)
    try:
        yield stack
    finally:
        _RUNNING.clear()
        report = stack.stop()
        assert report.clean, f"local stack left things behind: {report.leftovers}"


@pytest.fixture(scope="module", autouse=True)
def _no_refusals_carried_over() -> Iterator[None]:
    """Refused IAM logins a module made on purpose leave the instances' iam-db-auth-error logs when
    it ends (the canary's rds.auth_errors would rightly report them to the next module)."""
    yield
    if not _RUNNING:
        return
    import time

    from devtools.local.attribution import clear_refusal_logs

    time.sleep(0.5)  # the stack's CloudWatch writer sends in batches
    clear_refusal_logs(_RUNNING[0].info)
