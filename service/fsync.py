"""Making files durable and private: the one fsync / atomic-write / permissions helper of the
write-ahead log (:mod:`service.wal`) and the snapshots (:mod:`service.snapshot`).

POSIX durability in three moves: ``fdatasync`` an open file after writing it (the log does,
record by record), ``fsync`` a file or a directory by path (:func:`fsync_path`; a directory's
fsync makes the creations, renames and deletions of its entries durable), and replace a small
file atomically (:func:`atomic_write_text`: write a temporary sibling, fsync it, rename it over
the target, fsync the directory).

Privacy: the state holds raw prompt text (the log) and account scores, so its directories are
made ``0700`` (:func:`private_dir`) and its files ``0600`` (:func:`private_file`), whatever the
process umask.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600

log = logging.getLogger("distillguard.state")


def fsync_path(path: Path) -> None:
    """``fsync`` the file or directory at ``path``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) if needed and make it ``0700``."""
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode != DIR_MODE:
        log.info("%s: permissions %o -> %o (state is private)", path, mode, DIR_MODE)
        path.chmod(DIR_MODE)
    return path


def private_file(path: Path) -> None:
    """Make the file at ``path`` ``0600``."""
    path.chmod(FILE_MODE)


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically and durably (mode ``0600``): a crash leaves the
    old content or the new one, never a mix (through ``.<name>.tmp`` in the same directory)."""
    tmp = path.parent / f".{path.name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    private_file(tmp)  # (an existing tmp keeps its mode through O_CREAT)
    fsync_path(tmp)
    os.replace(tmp, path)
    fsync_path(path.parent)
