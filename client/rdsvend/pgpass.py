"""Write or refresh one line of a libpq password file, atomically.

The line is ``hostname:port:database:username:password`` with ``:`` and ``\\`` escaped as
libpq expects. rdsvend's line is the one whose first four fields (unescaped) match; it is
written where libpq will use it (above any earlier line that matches the same connection),
every other line (comments, blank lines, other entries) is kept byte for byte. The new file
is written to a temporary file in the same directory, flushed to disk, given mode 0600 and
renamed over the old one, so a reader sees either the old file or the new one, never half of
either; writers take turns through a lock file beside it, so none loses another's line.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["escape_field", "split_line", "pgpass_line", "default_pgpass_path", "write_pgpass_entry", "lock_path"]


def escape_field(value: str) -> str:
    """Escape ``\\`` and ``:`` for a pgpass field."""
    return value.replace("\\", "\\\\").replace(":", "\\:")


def split_line(line: str) -> list[str]:
    """Split a pgpass line into its unescaped fields (libpq's reading of it)."""
    fields: list[str] = []
    current: list[str] = []
    chars = iter(line.rstrip("\r\n"))
    for char in chars:
        if char == "\\":
            current.append(next(chars, ""))
        elif char == ":" and len(fields) < 4:
            fields.append("".join(current))
            current = []
        else:
            current.append(char)
    fields.append("".join(current))
    return fields


def pgpass_line(host: str, port: int | str, dbname: str, user: str, password: str) -> str:
    for name, value in (("host", host), ("dbname", dbname), ("user", user), ("password", password)):
        if "\n" in value or "\r" in value:
            raise ValueError(f"pgpass field '{name}' contains a line break")
    return ":".join(escape_field(str(v)) for v in (host, port, dbname, user, password)) + "\n"


def default_pgpass_path() -> Path:
    """``PGPASSFILE`` if set, else ``~/.pgpass`` (libpq's own default on POSIX)."""
    configured = os.environ.get("PGPASSFILE")
    return Path(configured).expanduser() if configured else Path.home() / ".pgpass"


def write_pgpass_entry(
    path: str | os.PathLike[str],
    host: str,
    port: int | str,
    dbname: str | None,
    user: str,
    password: str,
) -> Path:
    """Write the line for host:port:dbname:user where libpq will use it; returns the file.

    ``dbname`` ``None`` (the service names no database) writes ``*``: any database. libpq
    uses the first line that matches a connection, so rdsvend's line goes just above the
    first line that could match the same connection (``*:*:*:orders_app:old`` would
    otherwise shadow it), or where it was, or at the end. Writers are serialized with a lock
    on ``.NAME.lock`` next to the file (``~/.pgpass``: ``~/.pgpass.lock``; removed after each
    write); a symlinked pgpass file is followed (its target is
    rewritten, the link stays).
    """
    target = Path(os.path.realpath(Path(path).expanduser()))
    database = "*" if dbname is None else dbname
    new_line = pgpass_line(host, port, database, user, password)
    key = [host, str(port), database, user]
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target):
        try:
            old = target.read_text(encoding="utf-8")
        except FileNotFoundError:
            old = ""
        _replace(target, "".join(_placed(old.splitlines(keepends=True), key, new_line)))
    return target


def _placed(lines: list[str], key: list[str], new_line: str) -> list[str]:
    """``lines`` without old copies of rdsvend's line, with ``new_line`` where libpq reads it first."""
    out: list[str] = []
    at: int | None = None
    for line in lines:
        fields = split_line(line) if line.strip() and not line.lstrip().startswith("#") else []
        if len(fields) == 5 and fields[:4] == key:
            at = len(out) if at is None else at
            continue  # rdsvend's own line (or a duplicate of it): rewritten at ``at``
        if at is None and len(fields) == 5 and _overlaps(fields[:4], key):
            at = len(out)  # an earlier line libpq would pick for our connection
        out.append(line)
    if at is None:
        if out and not out[-1].endswith("\n"):
            out[-1] += "\n"
        out.append(new_line)
    else:
        out.insert(at, new_line)
    return out


def _overlaps(fields: list[str], key: list[str]) -> bool:
    """Could one connection match both lines? (libpq: a field matches itself or ``*``)"""
    return all(a in (b, "*") or b == "*" for a, b in zip(fields, key, strict=True))


def lock_path(target: Path) -> Path:
    """The lock file beside ``target``: ``.pgpass`` -> ``.pgpass.lock``, ``pgpass`` -> ``.pgpass.lock``."""
    name = target.name if target.name.startswith(".") else f".{target.name}"
    return target.parent / f"{name}.lock"


@contextmanager
def _locked(target: Path) -> Iterator[None]:
    """An exclusive ``flock`` on :func:`lock_path` (the file itself is replaced by each write, so it
    cannot carry the lock). The lock file is removed by its holder before the lock is released;
    a writer that waited on a removed lock file takes a fresh one. Where ``fcntl`` is missing, no lock."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    path = lock_path(target)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        held = os.fstat(fd)
        if current is not None and (current.st_ino, current.st_dev) == (held.st_ino, held.st_dev):
            break
        os.close(fd)  # the holder before us removed this one: lock the file that is there now
    try:
        yield
    finally:
        try:
            os.unlink(path)
        finally:
            os.close(fd)  # closing releases the lock


def _replace(target: Path, text: str) -> None:
    """Temporary file in the same directory, fsync, mode 0600, rename over ``target``."""
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise
