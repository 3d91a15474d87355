"""The pgpass writer: escaping, its own line only, atomic replace, mode 0600."""
from __future__ import annotations

import os
import stat
import threading
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rdsvend.pgpass import escape_field, pgpass_line, split_line, write_pgpass_entry
from tests.support.examples import examples

TOKEN = "db.example:5432/?Action=connect&DBUser=orders_app&X-Amz-Signature=ab\\cd"


def test_colon_and_backslash_are_escaped() -> None:
    assert escape_field("a:b\\c") == "a\\:b\\\\c"
    line = pgpass_line("db.example", 5432, "orders", "orders_app", TOKEN)
    assert line == (
        "db.example:5432:orders:orders_app:"
        "db.example\\:5432/?Action=connect&DBUser=orders_app&X-Amz-Signature=ab\\\\cd\n"
    )
    assert split_line(line) == ["db.example", "5432", "orders", "orders_app", TOKEN]


@settings(max_examples=examples(200))
@given(st.lists(st.text(alphabet=st.characters(blacklist_characters="\r\n"), max_size=30),
                min_size=5, max_size=5))
def test_escaping_round_trips_through_libpqs_reading(fields: list[str]) -> None:
    assert split_line(pgpass_line(*fields)) == fields


def test_line_breaks_are_refused() -> None:
    with pytest.raises(ValueError, match="password"):
        pgpass_line("h", 1, "d", "u", "tok\nevil:1:*:*:x")


def test_new_file_has_mode_0600_and_one_line(tmp_path: Path) -> None:
    path = tmp_path / "pgpass"
    write_pgpass_entry(path, "db.example", 5432, "orders", "orders_app", TOKEN)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert split_line(path.read_text()) == ["db.example", "5432", "orders", "orders_app", TOKEN]


def test_own_line_is_replaced_in_place_and_other_lines_are_untouched(tmp_path: Path) -> None:
    path = tmp_path / "pgpass"
    before = (
        "# my passwords\n"
        "other.example:5432:*:alice:s3cr\\:et\n"
        "\n"
        "db.example:5432:orders:orders_app:old-token\n"
        "db.example:5432:orders:orders_admin:keep-me\n"
        "*:*:*:bob:pw"  # no final newline
    )
    path.write_text(before)
    os.chmod(path, 0o644)
    write_pgpass_entry(path, "db.example", 5432, "orders", "orders_app", TOKEN)
    lines = path.read_text().splitlines(keepends=True)
    expected = before.splitlines(keepends=True)
    expected[3] = pgpass_line("db.example", 5432, "orders", "orders_app", TOKEN)
    assert lines == expected  # even the last line keeps its missing newline
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_escaped_line_of_ours_is_recognised_and_duplicates_dropped(tmp_path: Path) -> None:
    path = tmp_path / "pgpass"
    path.write_text("h\\:x:5432:d:u:one\nkeep:1:2:3:4\nh\\:x:5432:d:u:two\n")
    write_pgpass_entry(path, "h:x", 5432, "d", "u", "three")
    assert path.read_text() == "h\\:x:5432:d:u:three\nkeep:1:2:3:4\n"


def test_file_is_replaced_atomically_and_no_temp_file_is_left(tmp_path: Path) -> None:
    path = tmp_path / "pgpass"
    path.write_text("keep:1:2:3:4\n")
    inode_before = path.stat().st_ino
    write_pgpass_entry(path, "db.example", 5432, "orders", "orders_app", TOKEN)
    assert path.stat().st_ino != inode_before, "the file was rewritten in place, not renamed"
    # no temporary file and no lock file is left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pgpass"]


def test_the_lock_of_dot_pgpass_is_dot_pgpass_lock_and_is_removed(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import fcntl

    from rdsvend.pgpass import lock_path

    path = tmp_path / ".pgpass"
    assert lock_path(path).name == ".pgpass.lock"  # not "..pgpass.lock"
    locked: list[str] = []
    real_flock = fcntl.flock

    def recording_flock(fd: int, op: int) -> None:
        locked.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_flock(fd, op)

    monkeypatch.setattr(fcntl, "flock", recording_flock)
    write_pgpass_entry(path, "db.example", 5432, "orders", "orders_app", TOKEN)
    assert locked == [str(tmp_path / ".pgpass.lock")]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".pgpass"]


def test_concurrent_readers_never_see_a_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "pgpass"
    filler = "".join(f"host{i}:5432:db:user{i}:{'x' * 200}\n" for i in range(200))
    path.write_text(filler)
    stop = threading.Event()
    bad: list[int] = []

    def reader() -> None:
        while not stop.is_set():
            text = path.read_text()
            if not text.startswith(filler) or not text.endswith("\n"):
                bad.append(len(text))

    thread = threading.Thread(target=reader)
    thread.start()
    for n in range(100):
        write_pgpass_entry(path, "db.example", 5432, "orders", "orders_app", f"{TOKEN}-{n}")
    stop.set()
    thread.join()
    assert bad == []
    assert split_line(path.read_text().splitlines()[-1])[4] == f"{TOKEN}-99"


def test_symlinked_pgpass_is_updated_at_its_target(tmp_path: Path) -> None:
    target = tmp_path / "real-pgpass"
    target.write_text("keep:1:2:3:4\n")
    link = tmp_path / ".pgpass"
    link.symlink_to(target)
    write_pgpass_entry(link, "db.example", 5432, "orders", "orders_app", TOKEN)
    assert link.is_symlink()
    assert target.read_text().startswith("keep:1:2:3:4\n")
    assert "orders_app" in target.read_text()


def libpq_password(text: str, host: str, port: str, dbname: str, user: str) -> str | None:
    """The password libpq takes from a pgpass file: the first line whose host, port, database
    and user each equal the connection's or are ``*`` (comments and short lines skipped)."""
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        fields = split_line(line)
        if len(fields) == 5 and all(f in ("*", want) for f, want in zip(fields[:4], (host, port, dbname, user), strict=True)):
            return fields[4]
    return None


def test_a_shadowing_line_above_cannot_hide_rdsvends_line(tmp_path: Path) -> None:
    path = tmp_path / "pgpass"
    path.write_text("# mine\nother:1:2:3:4\n*:*:*:orders_app:old\ndb.example:5432:*:orders_app:older\n")
    write_pgpass_entry(path, "db.example", 5432, "orders", "orders_app", TOKEN)
    text = path.read_text()
    assert libpq_password(text, "db.example", "5432", "orders", "orders_app") == TOKEN
    # placed just above the first line that matched, everything else kept in order
    assert text.splitlines()[:3] == ["# mine", "other:1:2:3:4", pgpass_line("db.example", 5432, "orders", "orders_app", TOKEN).rstrip("\n")]
    assert text.splitlines()[3:] == ["*:*:*:orders_app:old", "db.example:5432:*:orders_app:older"]
    # other connections still get their own lines
    assert libpq_password(text, "elsewhere", "5432", "orders", "orders_app") == "old"
    # a refresh keeps its place and leaves no second copy
    write_pgpass_entry(path, "db.example", 5432, "orders", "orders_app", TOKEN + "2")
    assert libpq_password(path.read_text(), "db.example", "5432", "orders", "orders_app") == TOKEN + "2"
    assert path.read_text().count("orders_app:db.example") == 1


def test_no_database_writes_a_star_that_wins_over_later_lines(tmp_path: Path) -> None:
    path = tmp_path / "pgpass"
    path.write_text("db.example:5432:orders_app:orders_app:stale\n")
    write_pgpass_entry(path, "db.example", 5432, None, "orders_app", TOKEN)
    text = path.read_text()
    assert split_line(text.splitlines()[0])[:4] == ["db.example", "5432", "*", "orders_app"]
    # libpq's default database is the user name: rdsvend's line is the one it takes
    assert libpq_password(text, "db.example", "5432", "orders_app", "orders_app") == TOKEN


def _writer(path: str, name: str, rounds: int, barrier: Barrier) -> None:
    for n in range(rounds):
        barrier.wait()
        write_pgpass_entry(path, f"{name}-{n}.example", 5432, "orders", "app", f"token-{name}-{n}")


def test_two_processes_writing_at_once_never_lose_a_line(tmp_path: Path) -> None:
    import multiprocessing

    path = tmp_path / "pgpass"
    rounds = 150
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(2)
    writers = [context.Process(target=_writer, args=(str(path), name, rounds, barrier)) for name in ("a", "b")]
    for process in writers:
        process.start()
    for process in writers:
        process.join(120)
    assert [p.exitcode for p in writers] == [0, 0]
    hosts = {split_line(line)[0] for line in path.read_text().splitlines()}
    missing = {f"{name}-{n}.example" for name in "ab" for n in range(rounds)} - hosts
    assert not missing, f"{len(missing)} lines lost, e.g. {sorted(missing)[:3]}"
