"""Who holds a slot at a local database front (devtools.local.tcp_front.Admission): connections
still logging in never lock logins out, and one address cannot crowd out another's logins."""
from __future__ import annotations

import pytest

from devtools.local.tcp_front import Admission, FrontSettings


class Conn:
    def __init__(self, peer: str) -> None:
        self.peer = peer
        self.cut = False

    def abort(self) -> None:
        self.cut = True


def admitted(admission: Admission, peer: str) -> Conn:
    conn = Conn(peer)
    assert admission.admit(conn)
    return conn


def test_a_newcomer_over_its_addresses_limit_takes_that_addresses_oldest_login_only() -> None:
    admission = Admission(8, 2)
    other = admitted(admission, "127.0.0.1")
    first, second = admitted(admission, "127.0.0.2"), admitted(admission, "127.0.0.2")
    third = admitted(admission, "127.0.0.2")
    assert (first.cut, second.cut, third.cut, other.cut) == (True, False, False, False)
    assert admission.counts() == (3, {"127.0.0.1": 1, "127.0.0.2": 2})


def test_with_every_slot_taken_the_busiest_address_gives_up_its_oldest_login() -> None:
    admission = Admission(4, 4)
    login = admitted(admission, "127.0.0.1")
    pile = [admitted(admission, "127.0.0.2") for _ in range(3)]
    more = [admitted(admission, "127.0.0.2") for _ in range(5)]  # each takes one of its own address's slots
    assert not login.cut
    assert [c.cut for c in pile + more] == [True] * 5 + [False] * 3
    newcomer = admitted(admission, "127.0.0.3")  # a quiet address takes a slot of the busiest
    assert not login.cut and not newcomer.cut and sum(c.cut for c in pile + more) == 6
    assert admission.counts() == (4, {"127.0.0.1": 1, "127.0.0.2": 2, "127.0.0.3": 1})


def test_sessions_are_never_cut_and_a_newcomer_is_refused_when_every_slot_holds_one() -> None:
    admission = Admission(2, 2)
    sessions = [admitted(admission, "127.0.0.1"), admitted(admission, "127.0.0.2")]
    for conn in sessions:
        admission.logged_in(conn)
    assert not admission.admit(Conn("127.0.0.3"))
    assert not any(c.cut for c in sessions)
    admission.release(sessions[0])
    assert admission.admit(Conn("127.0.0.3"))


def test_a_cut_connection_ending_later_frees_nothing_twice() -> None:
    admission = Admission(2, 1)
    cut = admitted(admission, "127.0.0.2")
    kept = admitted(admission, "127.0.0.2")
    assert cut.cut
    admission.logged_in(cut)  # its thread may still finish its login: it no longer counts
    admission.release(cut)
    assert admission.counts() == (1, {"127.0.0.2": 1})
    admission.release(kept)
    assert admission.counts() == (0, {})


def test_the_per_address_limit_is_at_most_the_slots_and_bounds_are_positive() -> None:
    assert Admission(4, 16).max_logins_per_peer == 4
    with pytest.raises(ValueError, match="at least 1"):
        FrontSettings(max_logins_per_peer=0)
    with pytest.raises(ValueError, match="positive"):
        FrontSettings(handshake_timeout=0)
