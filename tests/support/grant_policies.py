"""An access policy with ``grant: required`` rules, shared by the grants tests.

``oncall-*`` roles may ask for ``orders_owner`` on orders-prod (PostgreSQL) and ``shop_owner``
on shop-prod (MariaDB), each under a grant that ``dba-lead`` (or ``dba-deputy``) approves;
``orders-api-*`` roles vend ``orders_app`` as ever, with no grant.
"""
from __future__ import annotations

import textwrap

__all__ = ["ACCT", "GRANT_POLICY", "REQUESTER", "OTHER_REQUESTER", "APPROVER", "DEPUTY", "STRANGER", "APP"]

ACCT = "111122223333"
REQUESTER = f"arn:aws:iam::{ACCT}:role/oncall-alice"
OTHER_REQUESTER = f"arn:aws:iam::{ACCT}:role/oncall-bob"
APPROVER = f"arn:aws:iam::{ACCT}:role/dba-lead"
DEPUTY = f"arn:aws:iam::{ACCT}:role/dba-deputy"
STRANGER = f"arn:aws:iam::{ACCT}:role/marketing"
APP = f"arn:aws:iam::{ACCT}:role/orders-api-prod"

GRANT_POLICY = textwrap.dedent(
    f"""
    version: 1
    databases:
      orders-prod:
        engine: postgres
        region: us-east-1
        instance: orders-prod
        dbname: orders
        users:
          orders_app:   {{auth: iam, tier: service-user}}
          orders_owner: {{auth: iam, tier: service-admin}}
      shop-prod:
        engine: mariadb
        region: us-east-1
        instance: shop-prod
        host: shop.internal.example
        port: 3306
        users:
          shop_owner: {{auth: iam, tier: service-admin}}
    rules:
      - id: orders-api
        effect: allow
        principals: ["arn:aws:iam::{ACCT}:role/orders-api-*"]
        databases: [orders-prod]
        db_users: [orders_app]
      - id: oncall-owner
        effect: allow
        principals: ["arn:aws:iam::{ACCT}:role/oncall-*", "arn:aws:iam::{ACCT}:role/dba-*"]
        databases: [orders-prod, shop-prod]
        db_users: [orders_owner, shop_owner]
        grant: required
        approvers: ["arn:aws:iam::{ACCT}:role/dba-*"]
        max_grant_seconds: 7200
    """
)
