"""Reader-role sessions and the "where did we look" wording (no AWS: an STS stand-in that
answers like STS, since these tests are about caching, refresh and messages)."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from chalicelib.aws.reader import CallerVantage, ReaderRoleError, ReaderSessions, SearchedAs, Vantage
from chalicelib.clock import FrozenClock

ROLE = "arn:aws:iam::222222222222:role/rdsvend-reader"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
START = datetime(2026, 1, 1, tzinfo=UTC)


class FakeSts:
    def __init__(self, clock: FrozenClock, fail: str | None = None) -> None:
        self.clock = clock
        self.fail = fail
        self.assumed: list[str] = []

    def assume_role(self, RoleArn: str, RoleSessionName: str) -> dict[str, Any]:  # boto3's names
        self.assumed.append(RoleArn)
        if self.fail:
            raise ClientError({"Error": {"Code": self.fail, "Message": f"no; key {SECRET}"}}, "AssumeRole")
        return {"Credentials": {"AccessKeyId": f"ASIA{len(self.assumed)}", "SecretAccessKey": SECRET,
                                "SessionToken": "session-token-value",
                                "Expiration": self.clock.now() + timedelta(hours=1)},
                "AssumedRoleUser": {"Arn": f"arn:aws:sts::222222222222:assumed-role/rdsvend-reader/{RoleSessionName}"}}

    def get_caller_identity(self) -> dict[str, str]:
        return {"Account": "111111111111", "Arn": "arn:aws:iam::111111111111:user/alice"}


def sessions(clock: FrozenClock, sts: FakeSts) -> ReaderSessions:
    return ReaderSessions(lambda: sts, lambda session: (lambda service, region=None: ("client", service, session)),
                          clock=clock, caller=CallerVantage(lambda: sts))


def test_one_assume_role_per_role_until_near_expiry() -> None:
    clock = FrozenClock(START)
    sts = FakeSts(clock)
    readers = sessions(clock, sts)
    first = readers.clients(ROLE)
    assert readers.clients(ROLE) is first and sts.assumed == [ROLE]
    assert readers.vantage(ROLE) == Vantage("222222222222",
                                            "arn:aws:sts::222222222222:assumed-role/rdsvend-reader/rdsvend-reader",
                                            ROLE)
    clock.advance(50 * 60)  # 10 minutes left: still used
    assert readers.clients(ROLE) is first and len(sts.assumed) == 1
    clock.advance(6 * 60)  # 4 minutes left: refreshed
    assert readers.clients(ROLE) is not first and len(sts.assumed) == 2


def test_a_role_that_cannot_be_assumed_names_role_caller_and_code_never_a_secret() -> None:
    clock = FrozenClock(START)
    readers = sessions(clock, FakeSts(clock, fail="AccessDenied"))
    with pytest.raises(ReaderRoleError) as caught:
        readers.clients(ROLE)
    assert str(caught.value) == (f"could not assume reader role '{ROLE}' as arn:aws:iam::111111111111:user/alice "
                                 "(account 111111111111): AccessDenied")
    assert SECRET not in str(caught.value) and SECRET not in repr(readers)
    assert caught.value.code == "AccessDenied" and not caught.value.throttled
    readers_throttled = sessions(clock, FakeSts(clock, fail="Throttling"))
    with pytest.raises(ReaderRoleError) as throttled:
        readers_throttled.clients(ROLE)
    assert throttled.value.throttled


def test_credentials_never_in_repr() -> None:
    clock = FrozenClock(START)
    readers = sessions(clock, FakeSts(clock))
    readers.clients(ROLE)
    assert SECRET not in repr(readers) and "session-token-value" not in repr(readers)


def test_caller_vantage_uses_the_configured_account_without_sts() -> None:
    class NoSts:
        def get_caller_identity(self) -> dict[str, str]:
            raise AssertionError("STS must not be called")

    assert CallerVantage(lambda: NoSts(), account="111111111111").account() == "111111111111"


@pytest.mark.parametrize(
    "vantage, declared, text, advice",
    [
        (Vantage("111111111111", "arn:aws:iam::111111111111:user/alice"), "111111111111",
         "searched account 111111111111 as arn:aws:iam::111111111111:user/alice", None),
        (Vantage("111111111111", "arn:aws:iam::111111111111:user/alice"), None,
         "searched account 111111111111 as arn:aws:iam::111111111111:user/alice", None),
        (Vantage("111111111111", "arn:aws:iam::111111111111:user/alice"), "222222222222",
         "searched account 111111111111 as arn:aws:iam::111111111111:user/alice; the database is declared in "
         "account 222222222222", "run with credentials that can read account 222222222222"),
        (None, "222222222222", "could not tell which account was searched (STS GetCallerIdentity failed)", None),
    ],
)
def test_searched_as_wording(vantage: Vantage | None, declared: str | None, text: str, advice: str | None) -> None:
    searched = SearchedAs(vantage, declared)
    assert str(searched) == text
    if advice is None:
        assert searched.advice is None
    else:
        assert searched.advice is not None and searched.advice.startswith(advice)
        assert "rdsvend local env --as operator" in searched.advice and "reader_role" in searched.advice
