"""The identity proof, verified: parse it (:mod:`.proof`), send it to STS within one deadline
(:mod:`.sts_transport`), read the caller from the answer."""
from __future__ import annotations

from typing import Any, Protocol

from chalicelib.clock import SYSTEM_CLOCK, Clock
from chalicelib.vending.proof import ProofConfig, ProvenCaller, StsTransport, parse_identity_proof, parse_sts_answer
from chalicelib.vending.sts_transport import DeadlineStsTransport

__all__ = ["IdentityVerifier", "StsVerifier"]


class IdentityVerifier(Protocol):
    """Who signed an identity proof (:class:`StsVerifier`; a stand-in in tests)."""

    def verify(self, proof: Any) -> ProvenCaller:
        """The proven caller; raises :class:`~chalicelib.errors.IdentityProofError` when unproven."""


class StsVerifier:
    """parse → send to the configured endpoint → read the caller. One call per proof."""

    def __init__(
        self,
        config: ProofConfig,
        transport: StsTransport | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.config = config
        self.transport: StsTransport = transport if transport is not None else DeadlineStsTransport()
        self.clock = clock

    def verify(self, proof: Any) -> ProvenCaller:
        request = parse_identity_proof(proof, self.config, self.clock.now())
        answer = self.transport.send(request, self.config)
        return parse_sts_answer(answer, request.access_key_id)

