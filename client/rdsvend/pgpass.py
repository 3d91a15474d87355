"""Write or refresh one line of a libpq password file, atomically.

The line is ``hostname:port:database:username:password`` with ``:`` and ``\\`` escaped as
libpq expects. rdsvend's line is the one whose first four fields (unescaped) match; it is
replaced in place or appended, every other line (comments, blank lines, other entries) is
kept byte for byte. The new file is written to a temporary file in the same directory,
flushed to disk, given mode 0600 and renamed over the old one, so a reader sees either the
old file or the new one, never half of either.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["escape_field", "split_line", "pgpass_line", "default_pgpass_path", "write_pgpass_entry"]


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
    dbname: str,
    user: str,
    password: str,
) -> Path:
    """Replace (or append) the line for host:port:dbname:user; returns the file written.

    A symlinked pgpass file is followed: its target is rewritten, the link stays.
    """
    target = Path(os.path.realpath(Path(path).expanduser()))
    new_line = pgpass_line(host, port, dbname, user, password)
    key = [host, str(port), dbname, user]
    try:
        old = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        old = ""
    lines = old.splitlines(keepends=True)
    replaced = False
    out: list[str] = []
    for line in lines:
        if not line.lstrip().startswith("#") and split_line(line)[:4] == key:
            if not replaced:
                out.append(new_line)
                replaced = True
            continue  # a duplicate of our own line: drop it
        out.append(line)
    if not replaced:
        if out and not out[-1].endswith("\n"):
            out[-1] += "\n"
        out.append(new_line)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write("".join(out))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise
    return target
