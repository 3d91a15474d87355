"""Database engines: one module per family, behind one interface (:mod:`.base`).

- :mod:`.base`: the interface (:class:`~.base.Engine`, :class:`~.base.EngineSession`), connect
  parameters, the error every engine raises, the tier verdict;
- :mod:`.postgres` (with :mod:`.postgres_catalog`): PostgreSQL, RDS and Aurora;
- :mod:`.mysql` (with :mod:`.mysql_grants`): MySQL, MariaDB, Aurora MySQL;
- :mod:`.dsql`: Aurora DSQL (PostgreSQL's login and catalogs, and the IAM role mappings);
- :mod:`.secret`: the database secret in the RDS convention, and the alternating pair's names;
- :mod:`.registry`: :func:`~.registry.engine_for`, the one place an engine name is looked up.

Each engine imports its driver (psycopg, PyMySQL) on its first login, in its ``driver()``:
the service's other functions start without them.
"""
from __future__ import annotations
