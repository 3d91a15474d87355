"""The local AWS's allowed-requests log (devtools.local.allowed): each distinct grant once, whichever
session of a role used it, read back in the order first seen."""
from __future__ import annotations

from pathlib import Path

import pytest

from chalicelib.aws.arn import iam_principal_of
from devtools.local.allowed import ALLOWED_LOG, Allowed, AllowedLog, read_allowed

ROLE = "arn:aws:iam::222222222222:role/rdsvend-local-vend"


@pytest.mark.parametrize(("principal", "identity"), [
    ("arn:aws:sts::222222222222:assumed-role/rdsvend-local-vend/rdsvend-local-vend", ROLE),
    ("arn:aws-cn:sts::222222222222:assumed-role/r/s", "arn:aws-cn:iam::222222222222:role/r"),
    ("arn:aws:iam::333333333333:user/orders-api", "arn:aws:iam::333333333333:user/orders-api"),
    ("arn:aws:iam::111111111111:root", "arn:aws:iam::111111111111:root"),
])
def test_a_session_is_taken_for_its_role(principal: str, identity: str) -> None:
    assert iam_principal_of(principal) == identity


def _line(session: str, action: str = "ssm:GetParameter", statement: str | int = "ReadAccessPolicy") -> Allowed:
    return Allowed(f"arn:aws:sts::222222222222:assumed-role/rdsvend-local-vend/{session}", action,
                   "arn:aws:ssm:us-east-1:222222222222:parameter/rdsvend/local/access-policy", "identity", ROLE,
                   "rdsvend-local-vend", statement)


def test_each_grant_is_written_once_whichever_session_used_it(tmp_path: Path) -> None:
    log = AllowedLog(tmp_path / ALLOWED_LOG)
    for line in (_line("one"), _line("two"), _line("one", "sts:AssumeRole", 0), _line("three")):
        log.record(line)
    assert read_allowed(tmp_path) == [_line("one"), _line("one", "sts:AssumeRole", 0)]
    assert len(log) == 2


def test_a_log_without_a_file_keeps_count_and_an_absent_file_reads_empty(tmp_path: Path) -> None:
    log = AllowedLog()
    log.record(_line("one"))
    assert len(log) == 1 and read_allowed(tmp_path) == []
