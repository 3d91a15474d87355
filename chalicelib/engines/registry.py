"""Which engine serves a database: ``engine_for("aurora-mysql")`` is the MySQL family's. Callers
ask here and never branch on an engine's name; a new family (Aurora DSQL) is one more entry."""
from __future__ import annotations

from typing import Any

from chalicelib.engines.base import ENGINE_FAMILIES, Engine
from chalicelib.engines.dsql import DsqlEngine
from chalicelib.engines.mysql import MysqlEngine
from chalicelib.engines.postgres import PostgresEngine

__all__ = ["engine_for", "family_of", "UnknownEngineError"]

_ENGINES: dict[str, Engine[Any]] = {"postgres": PostgresEngine(), "mysql": MysqlEngine(), "dsql": DsqlEngine()}
#: a policy's engine names: the secrets' (ENGINE_FAMILIES), and Aurora DSQL, which has no passwords
_FAMILIES = {**ENGINE_FAMILIES, "dsql": "dsql"}


class UnknownEngineError(ValueError):
    """No engine family serves this engine name."""


def family_of(engine: str) -> str:
    """The family of a policy's or a secret's ``engine`` (postgres, aurora-mysql, mariadb, ...)."""
    family = _FAMILIES.get(engine)
    if family is None:
        raise UnknownEngineError(f"engine '{engine}' is not supported")
    return family


def engine_for(engine: str) -> Engine[Any]:
    """The engine of a policy's or a secret's ``engine`` name."""
    return _ENGINES[family_of(engine)]
