"""Making files durable: the one fsync / atomic-write helper of the write-ahead log
(:mod:`service.wal`) and the snapshots (:mod:`service.snapshot`).

POSIX durability in three moves: ``fdatasync`` an open file after writing it
(:func:`sync_data`), ``fsync`` a file or a directory by path (:func:`fsync_path`; a directory's
fsync makes the creations, renames and deletions of its entries durable), and replace a small
file atomically (:func:`atomic_write_text`: write a temporary sibling, fsync it, rename it over
the target, fsync the directory).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO


def fsync_path(path: Path) -> None:
    """``fsync`` the file or directory at ``path``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_data(fh: BinaryIO) -> None:
    """Flush ``fh`` and ``fdatasync`` it: its bytes are on disk when this returns."""
    fh.flush()
    os.fdatasync(fh.fileno())


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically and durably: a crash leaves the old content or
    the new one, never a mix (through ``.<name>.tmp`` in the same directory)."""
    tmp = path.parent / f".{path.name}.tmp"
    tmp.write_text(text)
    fsync_path(tmp)
    os.replace(tmp, path)
    fsync_path(path.parent)
