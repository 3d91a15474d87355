"""Where the token is signed: rdsvend's RDS IAM auth token minter.

:class:`TokenMinter` turns (caller, database, db user, endpoint) into a :class:`MintedToken`
whose ``expires_at`` is honest: ``min(signed_at + 900 s, signing credentials' expiry) - 30 s``.
The SigV4 presigner (:mod:`.sigv4`) is byte-identical to botocore's
``generate_db_auth_token``; signer roles (:mod:`.roles`) are assumed per caller with a
session policy scoped to one dbuser ARN.
"""
from __future__ import annotations

from chalicelib.signer.botocore_credentials import BotocoreCredentialsProvider
from chalicelib.signer.credentials import SigningCredentials, StaticCredentialsProvider
from chalicelib.signer.minter import MintedToken, TokenCache, TokenMinter, honest_expiry
from chalicelib.signer.sigv4 import RdsTokenSigner

__all__ = [
    "MintedToken",
    "TokenMinter",
    "TokenCache",
    "honest_expiry",
    "RdsTokenSigner",
    "SigningCredentials",
    "StaticCredentialsProvider",
    "BotocoreCredentialsProvider",
]
