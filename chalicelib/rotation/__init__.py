"""Password rotation through the Secrets Manager rotation protocol (the ``rotate`` function).

- :mod:`event`: the rotation event, parsed strictly;
- :mod:`secret`: the database secret (RDS convention, :mod:`chalicelib.engines.secret`) as a step reads it;
- :mod:`store`: Secrets Manager (protocol + botocore);
- :mod:`protocol`: the four idempotent steps, single-user and alternating-users;
- :mod:`engines`: the databases (:mod:`chalicelib.engines`), always over TLS verify-full;
- :mod:`handler`: the function's body (policy lookup, one log line per step).
"""
from __future__ import annotations
