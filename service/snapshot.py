"""Parquet snapshots of the scoring state, written atomically.

Layout under the state directory::

    snap-<wal_seq:020d>/events.parquet    window of compact events (its request_id column is the
                                          set of seen request ids: idempotency is bounded by the
                                          window)
    snap-<wal_seq:020d>/accounts.parquet  per account: last_seen, dirty, and the last score,
                                          reasons and feature values (null if never scored)
    snap-<wal_seq:020d>/campaigns.parquet the campaigns of the last campaign pass (optional:
                                          absent from snapshots written before campaigns)
    snap-<wal_seq:020d>/meta.json         wal_seq (last log record included), window_end, time
    CURRENT                               name of the newest complete snapshot directory

A snapshot directory is complete before ``CURRENT`` (replaced atomically) names it; older ones
are deleted afterwards. A crash at any point leaves the previous snapshot usable.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from service.fsync import atomic_write_text, fsync_path

CURRENT = "CURRENT"


@dataclass
class SnapshotData:
    events: pl.DataFrame
    accounts: pl.DataFrame
    meta: dict[str, Any]
    campaigns: pl.DataFrame | None = None


def write_snapshot(root: str | Path, data: SnapshotData) -> Path:
    """Write ``data`` as a new snapshot under ``root`` and make it current; returns its dir."""
    base = Path(root)
    base.mkdir(parents=True, exist_ok=True)
    seq = int(data.meta["wal_seq"])
    name = f"snap-{seq:020d}"
    target = base / name
    tmp = base / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    data.events.write_parquet(tmp / "events.parquet", compression="zstd")
    data.accounts.write_parquet(tmp / "accounts.parquet", compression="zstd")
    if data.campaigns is not None:
        data.campaigns.write_parquet(tmp / "campaigns.parquet", compression="zstd")
    (tmp / "meta.json").write_text(json.dumps(data.meta, indent=2, default=str) + "\n")
    for f in tmp.iterdir():
        fsync_path(f)
    fsync_path(tmp)
    if target.exists():  # same WAL position as an earlier snapshot: replace it
        shutil.rmtree(target)
    tmp.rename(target)
    atomic_write_text(base / CURRENT, name + "\n")  # (its directory fsync covers the rename)
    for old in base.glob("snap-*"):
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    return target


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
