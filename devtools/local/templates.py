"""Data dirs made once and copied: the local PostgreSQL and MariaDB servers start from a copy.

``initdb`` and ``mariadb-install-db`` cost one to three seconds of CPU each, and the local
stack and the end-to-end tests start dozens of servers a run, always with the same binaries
and options. :func:`copy_template` makes such a data dir once, keeps it in the temp dir under
a name derived from everything that shapes it (the binaries' identity, the options, the
account it runs as), and copies it for each server. Nothing secret is in a template: each
copy is given its own passwords when its server starts.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["copy_template", "binary_identity"]


def binary_identity(path: Path) -> tuple[str, int, int]:
    """What changes when a binary is replaced (an upgrade): its resolved path, size and mtime."""
    made = path.stat()
    return str(path.resolve()), made.st_size, made.st_mtime_ns


def copy_template(kind: str, identity: Sequence[object], make: Callable[[Path], None], dest: Path) -> None:
    """Copy into ``dest`` (which must not exist) the dir ``make(path)`` writes at ``path``.

    The template is made on first use, in a work dir renamed into place once ``make`` has
    finished, so a half-made one is never copied; two processes making it at once both make
    one and the first rename wins."""
    key = hashlib.sha256(repr((kind, tuple(identity), os.geteuid())).encode()).hexdigest()[:16]
    final = Path(tempfile.gettempdir()) / f"rdsvend-{kind}-template-{key}"
    if not final.is_dir():
        work = Path(tempfile.mkdtemp(prefix=f"rdsvend-{kind}-template-", suffix=".tmp"))
        try:
            make(work / "data")
            try:
                work.rename(final)
            except OSError:  # another process made it meanwhile: use theirs
                if not final.is_dir():
                    raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(final / "data", dest, symlinks=True)
