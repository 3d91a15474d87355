"""An access policy with ``grant: required`` rules, shared by the grants tests.

``oncall-*`` roles may ask for ``orders_owner`` on orders-prod (PostgreSQL) and ``shop_owner``
on shop-prod (MariaDB), each under a grant that ``dba-lead`` (or ``dba-deputy``) approves;
``orders-api-*`` roles vend ``orders_app`` as ever, with no grant.
"""
from __future__ import annotations

from tests.support.policies import ACCT, ORDERS_USERS, database, policy_text, rule

__all__ = ["ACCT", "GRANT_POLICY", "REQUESTER", "OTHER_REQUESTER", "APPROVER", "DEPUTY", "STRANGER", "APP"]

REQUESTER = f"arn:aws:iam::{ACCT}:role/oncall-alice"
OTHER_REQUESTER = f"arn:aws:iam::{ACCT}:role/oncall-bob"
APPROVER = f"arn:aws:iam::{ACCT}:role/dba-lead"
DEPUTY = f"arn:aws:iam::{ACCT}:role/dba-deputy"
STRANGER = f"arn:aws:iam::{ACCT}:role/marketing"
APP = f"arn:aws:iam::{ACCT}:role/orders-api-prod"

GRANT_POLICY = policy_text(
    [database(users=ORDERS_USERS, extra="dbname: orders"),
     database("shop-prod", engine="mariadb", users="shop_owner: {auth: iam, tier: service-admin}",
              extra="host: shop.internal.example\nport: 3306")],
    [rule("orders-api", [f"arn:aws:iam::{ACCT}:role/orders-api-*"]),
     rule("oncall-owner", [f"arn:aws:iam::{ACCT}:role/oncall-*", f"arn:aws:iam::{ACCT}:role/dba-*"],
          ["orders-prod", "shop-prod"], ["orders_owner", "shop_owner"],
          extra=f'grant: required\napprovers: ["arn:aws:iam::{ACCT}:role/dba-*"]\nmax_grant_seconds: 7200')],
)
