"""Where the connectivity canary lives: for every (database, db user) of the policy,
prove that a freshly signed token really gets in, and say precisely what to fix when not.

- :mod:`model`: checks, target reports, the report, worst-status logic (pure);
- :mod:`checks_rds`, :mod:`checks_iam`, :mod:`checks_db`, :mod:`checks_kerberos`: one check
  id each, facts from small adapters, verdicts as pure functions;
- :mod:`target`: one target's checks in order, with their dependencies;
- :mod:`runner`: concurrency and per-target deadlines;
- :mod:`factory`: the real adapters, built from the environment;
- :mod:`alerts`, :mod:`emit`: SNS on status change (state in DynamoDB), logs and EMF metrics;
- :mod:`explain`: the doctor's paragraphs.
"""
