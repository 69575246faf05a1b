"""Parquet snapshots of the scoring state, written atomically.

Layout under the state directory (directories 0700, files 0600)::

    snap-<wal_seq:020d>/events.parquet    window of compact events (its request_id column is the
                                          set of seen request ids: idempotency is bounded by the
                                          window)
    snap-<wal_seq:020d>/accounts.parquet  per account: last_seen, dirty, and the last score,
                                          reasons and feature values (null if never scored)
    snap-<wal_seq:020d>/campaigns.parquet the campaigns of the last campaign pass (optional:
                                          absent from snapshots written before campaigns)
    snap-<wal_seq:020d>/meta.json         wal_seq (last log record included), window_end, time
    CURRENT                               name of the newest complete snapshot directory

(A snapshot at the same log position as the current one is named ``snap-<wal_seq>.<k>``: the
current snapshot is never touched before ``CURRENT`` names another.)

A snapshot is written into ``.snap-<wal_seq>.tmp/`` and renamed complete before ``CURRENT``
(replaced atomically) names it; older ones are deleted afterwards. A crash at any point leaves
the previous snapshot usable; a failed write removes its temporary directory, and
:func:`remove_stale_temps` (at start-up) those a crash left behind.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from service.fsync import FILE_MODE, atomic_write_text, fsync_path, private_dir, private_file

CURRENT = "CURRENT"
TEMP_GLOB = ".snap-*.tmp"

log = logging.getLogger("distillguard.state")


@dataclass
class SnapshotData:
    events: pl.DataFrame
    accounts: pl.DataFrame
    meta: dict[str, Any]
    campaigns: pl.DataFrame | None = None


def _write_files(tmp: Path, data: SnapshotData) -> None:
    data.events.write_parquet(tmp / "events.parquet", compression="zstd")
    data.accounts.write_parquet(tmp / "accounts.parquet", compression="zstd")
    if data.campaigns is not None:
        data.campaigns.write_parquet(tmp / "campaigns.parquet", compression="zstd")
    fd = os.open(tmp / "meta.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(data.meta, indent=2, default=str) + "\n")
    for f in tmp.iterdir():
        private_file(f)
        fsync_path(f)
    fsync_path(tmp)


def write_snapshot(root: str | Path, data: SnapshotData) -> Path:
    """Write ``data`` as a new snapshot under ``root`` and make it current; returns its dir.
    Raises OSError (the previous snapshot stays current; no temporary directory is left) when
    it cannot be written."""
    base = Path(root)  # (made private at start-up: see Durability.restore)
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    seq = int(data.meta["wal_seq"])
    name, k = f"snap-{seq:020d}", 0
    while (base / name).exists():  # same WAL position as the current one: never overwrite it
        k += 1
        name = f"snap-{seq:020d}.{k}"
    target = base / name
    tmp = base / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(mode=0o700)
        private_dir(tmp)
        _write_files(tmp, data)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_text(base / CURRENT, name + "\n")  # (its directory fsync covers the rename)
    for old in base.glob("snap-*"):
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    return target


def remove_stale_temps(root: str | Path) -> list[str]:
    """Delete the temporary directories of snapshots a crash interrupted; returns their names."""
    base = Path(root)
    if not base.is_dir():
        return []
    gone = []
    for tmp in base.glob(TEMP_GLOB):
        shutil.rmtree(tmp, ignore_errors=True)
        gone.append(tmp.name)
    if gone:
        log.info("removed %d unfinished snapshot directories: %s", len(gone), ", ".join(gone))
    return gone


def read_snapshot(root: str | Path) -> SnapshotData | None:
    """The current snapshot under ``root``, or None when there is none."""
    base = Path(root)
    pointer = base / CURRENT
    if not pointer.exists():
        return None
    snap = base / pointer.read_text().strip()
    meta = json.loads((snap / "meta.json").read_text())
    campaigns = snap / "campaigns.parquet"
    return SnapshotData(
        events=pl.read_parquet(snap / "events.parquet"),
        accounts=pl.read_parquet(snap / "accounts.parquet"),
        meta=meta,
        campaigns=pl.read_parquet(campaigns) if campaigns.exists() else None,
    )


def snapshot_time(meta: dict[str, Any]) -> datetime | None:
    value = meta.get("created_at")
    return datetime.fromisoformat(value) if isinstance(value, str) else None
