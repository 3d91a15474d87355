"""Attribution: who was given a token, who was refused by the database, and why.

- :mod:`chalicelib.attribution.refusals`: the lines of RDS's ``iam-db-auth-error`` log export
  (write and parse), its log group names, and the ``IamDbAuthConnection*`` metric names;
- :mod:`chalicelib.attribution.join`: vends (the service's audit lines) and refusals joined by
  the signer session they name;
- :mod:`chalicelib.attribution.logs`: reading both from CloudWatch Logs.
"""
