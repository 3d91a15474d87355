"""Where the token is signed: rdsvend's RDS IAM auth token minter (SPEC 4).

:class:`TokenMinter` turns (caller, database, db user, endpoint) into a :class:`MintedToken`
whose ``expires_at`` is honest: ``min(signed_at + 900 s, signing credentials' expiry) - 30 s``.
"""
from __future__ import annotations

from chalicelib.signer.minter import MintedToken, TokenMinter

__all__ = ["MintedToken", "TokenMinter"]
