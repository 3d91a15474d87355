"""Just-in-time access: grants with a reason, an approver and an end (``grant: required`` rules).

:mod:`model` (pure: states, transitions, visibility), :mod:`store` (DynamoDB, conditional
writes), :mod:`service` (request, approve, deny, revoke, list, the live grant a vend needs, the
sweep that expires grants and ends their sessions), :mod:`errors` (what callers are told).
"""
