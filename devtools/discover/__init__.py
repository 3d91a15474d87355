"""``rdsvend discover``: the organization's RDS databases, as an access-policy block to paste.

:mod:`.scan` reads AWS (accounts, a role in each, instances, clusters and proxies per region);
:mod:`.shape` turns what it found into yaml, json or a table (pure).
"""
