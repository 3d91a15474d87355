"""rdsvend's IAM policy evaluator: a pure core plus thin AWS adapters.

- :mod:`chalicelib.iam.model`: ``parse_policy``, ``PolicyDocument``, ``RequestContext``.
- :mod:`chalicelib.iam.evaluator`: ``evaluate(...) -> Evaluation`` (AWS's evaluation logic).
- :mod:`chalicelib.iam.fetch`: a principal's policies and an account's SCP chain via boto3.
- :mod:`chalicelib.iam.rdsdb`: dbuser ARNs and the ``rds-db:connect`` flags.
- :mod:`chalicelib.iam.connect`: ``evaluate_rds_connect`` for the canary and the local stack.
- :mod:`chalicelib.iam.render`: the least-privilege signer policy for an access policy.
"""
from __future__ import annotations

from chalicelib.iam.evaluator import Evaluation, evaluate
from chalicelib.iam.model import PolicyDocument, RequestContext, parse_policy

__all__ = ["Evaluation", "PolicyDocument", "RequestContext", "evaluate", "parse_policy"]
