"""Ending every session of a db user (placeholder until the engine modules land)."""
from __future__ import annotations

from chalicelib.grants.service import SessionEnder
from chalicelib.settings import Settings

__all__ = ["database_sessions"]


def database_sessions(settings: Settings) -> SessionEnder | None:
    return None
