"""``grant: required`` rules: what loads, what does not (one line naming the field), what the
decision says, and the warning ``policy check`` gives for a grant that can be walked around."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from chalicelib.decision import PolicyIndex
from chalicelib.errors import PolicyLoadError
from chalicelib.identity import identity_from_arn
from chalicelib.policy.grant_rules import grant_bypasses, granted_pairs
from chalicelib.policy.loader import load_policy_text
from devtools.cli.main import cli
from tests.support.grant_policies import APP, APPROVER, GRANT_POLICY, REQUESTER, STRANGER


def _with_rule_lines(old: str, new: str) -> str:
    assert old in GRANT_POLICY
    return GRANT_POLICY.replace(old, new)


def test_grant_rule_loads_with_its_approvers_and_maximum() -> None:
    policy = load_policy_text(GRANT_POLICY, "g.yaml")
    rule = policy.rule("oncall-owner")
    assert rule is not None and rule.grant_required
    assert rule.approvers == ("arn:aws:iam::111122223333:role/dba-*",)
    assert rule.max_grant_seconds == 7200
    standing = policy.rule("orders-api")
    assert standing is not None and not standing.grant_required


def test_maximum_defaults_to_an_hour() -> None:
    policy = load_policy_text(_with_rule_lines("    max_grant_seconds: 7200\n", ""), "g.yaml")
    assert policy.rule("oncall-owner").max_grant_seconds == 3600  # type: ignore[union-attr]  # the rule exists: the policy above names it


BAD = {
    "no approvers": ('    approvers: ["arn:aws:iam::111122223333:role/dba-*"]\n', "",
                     "field 'approvers': a rule with 'grant: required' needs approvers"),
    "empty approvers": ('approvers: ["arn:aws:iam::111122223333:role/dba-*"]', "approvers: []",
                        "field 'approvers': must be a non-empty list of strings"),
    "bad approver": ('approvers: ["arn:aws:iam::111122223333:role/dba-*"]', 'approvers: ["dba"]',
                     "field 'approvers': invalid principal ARN pattern 'dba'"),
    "grant not required": ("grant: required", "grant: optional",
                           "field 'grant': invalid grant 'optional' (expected required)"),
    "max too big": ("max_grant_seconds: 7200", "max_grant_seconds: 9999999",
                    "field 'max_grant_seconds': invalid max_grant_seconds '9999999' (expected 60-604800)"),
    "max zero": ("max_grant_seconds: 7200", "max_grant_seconds: 0",
                 "field 'max_grant_seconds': invalid max_grant_seconds '0'"),
    "max a string": ("max_grant_seconds: 7200", "max_grant_seconds: 2h",
                     "field 'max_grant_seconds': invalid max_grant_seconds '2h'"),
    "max without grant": ("    grant: required\n    approvers: [\"arn:aws:iam::111122223333:role/dba-*\"]\n", "",
                          "field 'max_grant_seconds': 'max_grant_seconds' needs 'grant: required'"),
    "grant on deny": ("  - id: oncall-owner\n    effect: allow", "  - id: oncall-owner\n    effect: deny",
                      "field 'grant': only an allow rule can require a grant"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_grant_settings_are_one_line_naming_rule_and_field(case: str) -> None:
    old, new, expected = BAD[case]
    text = GRANT_POLICY.replace(old, new)
    assert text != GRANT_POLICY, case
    with pytest.raises(PolicyLoadError) as caught:
        load_policy_text(text, "g.yaml")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("g.yaml, rule 'oncall-owner', ")
    assert expected in message


def test_decision_says_a_grant_is_needed_and_a_standing_allow_wins() -> None:
    index = PolicyIndex(load_policy_text(GRANT_POLICY, "g.yaml"))
    needs = index.decide(identity_from_arn(REQUESTER), "orders-prod", "orders_owner")
    assert (needs.allowed, needs.rule, needs.grant_required) == (True, "oncall-owner", True)
    standing = index.decide(identity_from_arn(APP), "orders-prod", "orders_app")
    assert (standing.allowed, standing.grant_required) == (True, False)
    stranger = index.decide(identity_from_arn(STRANGER), "orders-prod", "orders_owner")
    assert (stranger.allowed, stranger.reason) == (False, "no_matching_rule")


def test_granted_pairs_and_no_bypass_in_the_sample() -> None:
    policy = load_policy_text(GRANT_POLICY, "g.yaml")
    assert granted_pairs(policy) == [("orders-prod", "orders_owner"), ("shop-prod", "shop_owner")]
    assert grant_bypasses(policy) == []


BYPASS = GRANT_POLICY + """  - id: break-glass
    effect: allow
    principals: ["arn:aws:iam::111122223333:role/ops"]
    databases: [orders-prod]
    db_users: ["orders_*"]
"""


def test_policy_check_warns_when_a_rule_without_grant_reaches_the_same_db_user(tmp_path: Path) -> None:
    path = tmp_path / "bypass.yaml"
    path.write_text(BYPASS)
    result = CliRunner().invoke(cli, ["policy", "check", str(path), "--service-account", "111122223333"])
    assert result.exit_code == 0, result.output
    assert ("warning: db user 'orders_owner' of 'orders-prod' needs a grant under one rule but rule "
            "'break-glass' reaches it without one") in result.output
    assert "shop_owner" not in result.output


def test_approver_identity_is_matched_as_rules_match_callers() -> None:
    from chalicelib.decision import principal_matches

    rule = load_policy_text(GRANT_POLICY, "g.yaml").rule("oncall-owner")
    assert rule is not None
    assert principal_matches(rule.approvers, identity_from_arn("arn:aws:sts::111122223333:assumed-role/dba-lead/s"))
    assert principal_matches(rule.approvers, identity_from_arn(APPROVER))
    assert not principal_matches(rule.approvers, identity_from_arn(REQUESTER))
