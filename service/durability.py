"""Durability of the scoring state: snapshots, and restore (the snapshot, then the write-ahead
log after it).

- **Log.** An accepted batch is appended to the write-ahead log (:mod:`service.wal`, fsync)
  before ingest returns (:meth:`service.window_store.WindowStore.ingest` does the append).
- **Snapshot.** :meth:`Durability.snapshot` rotates the log FIRST (a failure there changes
  nothing), then takes the queue and fingerprints it (a failure puts the events back in the
  queue), writes Parquet (compact events, accounts, campaigns: :mod:`service.snapshot`; a
  failure leaves the previous snapshot current and every log segment in place), and only then
  deletes the log segments it covers: every event of a deleted segment is in a durable
  snapshot, and raw prompt text stays on disk until the next snapshot at most.
- **Restore.** :meth:`Durability.restore` removes the temporary directories of interrupted
  snapshots, loads the snapshot into the window store and the pass coordinator, replays the log
  after it (fingerprinting its canonical events in chunks; damaged records are skipped and
  reported, :attr:`Durability.skipped`) and opens a new log segment. A snapshot fingerprinted
  by another version is refused (:class:`IncompatibleStateError`); one written for another
  model has every account rescored.

Locks: :mod:`service.locks` (a snapshot takes all five, in order; restore ``fp``, ``wal`` and
``fields``).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from detector.fingerprints import FINGERPRINT_VERSION
from detector.io.schema import EVENT_SCHEMA
from detector.models import DistillScorer
from service.fsync import private_dir
from service.live_campaigns import LiveCampaigns, pass_from_meta, pass_meta
from service.locks import StateLocks
from service.passes import PassCoordinator
from service.records import accounts_frame, accounts_from_frame, model_identity
from service.snapshot import (
    SnapshotData,
    read_snapshot,
    remove_stale_temps,
    snapshot_time,
    write_snapshot,
)
from service.wal import SkippedRecord, WriteAheadLog
from service.window_store import WindowStore, compact_schema

# fingerprint the queue in chunks of at most this many events while replaying the log
REPLAY_CHUNK = 50_000

log = logging.getLogger("distillguard.state")


def _upgrade(frame: pl.DataFrame, schema: pl.Schema) -> pl.DataFrame:
    """A frame written before an optional column joined ``schema`` (e.g. ``end_user_id``):
    the missing columns as nulls, in the schema's order; other frames as they are."""
    missing = [c for c in schema if c not in frame.columns]
    if not missing:
        return frame
    nulls = [pl.lit(None, dtype=schema[c]).alias(c) for c in missing]
    return frame.with_columns(nulls).select(list(schema))


class IncompatibleStateError(RuntimeError):
    """The state directory was written by a build whose fingerprints differ from this one's."""


def _check_fingerprint_version(meta: dict[str, object], state_dir: Path | None) -> None:
    """Refuse a snapshot whose compact events were fingerprinted differently (snapshots
    without the field predate version 2)."""
    found = meta.get("fingerprint_version", 1)
    if found != FINGERPRINT_VERSION:
        raise IncompatibleStateError(
            f"the snapshot in {state_dir} holds events fingerprinted by version {found}, this "
            f"build fingerprints with version {FINGERPRINT_VERSION}: their template and "
            "near-duplicate hashes would never match new events. Move that directory aside "
            "to start with an empty window (the log's raw batches after the snapshot can be "
            "replayed from your own logs with `distillguard replay`), or run the build that "
            "wrote it."
        )


class StorageHealth:
    """Which parts of the state's storage are failing, and why: ``"log"`` (a write-ahead log
    append, rotation or probe failed) and ``"snapshot"`` (the last snapshot failed), each until
    it next works. Read by ``/readyz``."""

    def __init__(self) -> None:
        self._failing: dict[str, str] = {}  # (single dict operations: atomic)

    def failed(self, part: str, reason: str) -> None:
        self._failing[part] = reason

    def ok(self, part: str) -> None:
        self._failing.pop(part, None)

    def failing(self, part: str) -> bool:
        return part in self._failing

    @property
    def problem(self) -> str | None:
        """What fails, in words (None: nothing)."""
        return "; ".join(self._failing[p] for p in sorted(self._failing)) or None


class Durability:
    """Snapshots and restore of a window store and its pass coordinator under ``state_dir``
    (``wal/``: the log; ``snap-*/``, ``CURRENT``: snapshots). Without a state dir, restore
    starts empty and snapshots are skipped."""

    def __init__(
        self,
        state_dir: Path | None,
        wal: WriteAheadLog | None,
        locks: StateLocks,
        store: WindowStore,
        passes: PassCoordinator,
        model: DistillScorer,
    ) -> None:
        self.state_dir = state_dir
        self.wal = wal
        self.locks = locks
        self.store = store
        self.passes = passes
        self.model = model
        self.last_snapshot_at: datetime | None = None
        self.skipped: list[SkippedRecord] = []  # damaged log records the restore skipped

    @property
    def wal_seq(self) -> int:
        """Seq of the last record in the write-ahead log (0 without one)."""
        return self.wal.last_seq if self.wal is not None else 0

    def snapshot_age_s(self) -> float | None:
        if self.last_snapshot_at is None:
            return None
        return (datetime.now(UTC) - self.last_snapshot_at).total_seconds()

    # ------------------------------------------------------------------ snapshot
    def snapshot(self) -> Path | None:
        """Write a Parquet snapshot (the queue fingerprinted first: compact events only) and
        trim the write-ahead log; None without a state dir."""
        if self.state_dir is None:
            return None
        store, locks = self.store, self.locks
        with locks.snapshot:
            with locks.maint, locks.fp:  # never between a pass's eviction and its swap
                with locks.wal:  # every logged event is in frames or taken
                    # rotate first: if it fails, nothing is taken from the queue
                    seq = self.wal.rotate() if self.wal is not None else 0
                    with locks.fields:
                        taken = store.take_queue()
                        frames = list(store.frames)
                        last_seen = dict(store.last_seen)
                        end = store.window_end
                        scores, dirty, live, current = self.passes.snapshot_view()
                # (on failure the taken events go back to the queue)
                compact = store.fingerprint_into_window(taken)
            if compact is not None:
                frames.append(compact)
            now = datetime.now(UTC)
            events = (
                pl.concat(frames, how="vertical")
                if frames
                else pl.DataFrame(schema=compact_schema())
            )
            meta = {
                "wal_seq": seq,
                "fingerprint_version": FINGERPRINT_VERSION,
                "window_end": end.isoformat() if end else None,
                "window_hours": store.window.total_seconds() / 3600,
                "created_at": now.isoformat(),
                "n_events": events.height,
                "n_accounts": len(last_seen),
                "model": model_identity(self.model),
                "campaign_pass": pass_meta(live.last, current),
            }
            accounts = accounts_frame(last_seen, scores, dirty)
            path = write_snapshot(
                self.state_dir, SnapshotData(events, accounts, meta, campaigns=live.table)
            )
            if self.wal is not None:  # the raw text logged before the snapshot goes with it
                with locks.wal:
                    self.wal.delete_through(seq)
            self.last_snapshot_at = now
            return path

    # ------------------------------------------------------------------ restore
    def restore(self) -> dict[str, int]:
        """Load the snapshot, replay the log after it (fingerprinting its canonical events in
        chunks), open a new log segment; returns what was loaded."""
        counts = {"snapshot_events": 0, "snapshot_accounts": 0, "wal_batches": 0, "wal_events": 0}
        after = 0
        store = self.store
        if self.state_dir is not None:
            private_dir(self.state_dir)
            remove_stale_temps(self.state_dir)
        snap = read_snapshot(self.state_dir) if self.state_dir is not None else None
        with self.locks.fp, self.locks.wal, self.locks.fields:
            if snap is not None:
                _check_fingerprint_version(snap.meta, self.state_dir)
                after = int(snap.meta["wal_seq"])
                self._load_snapshot(snap)
                counts["snapshot_events"] = snap.events.height
                counts["snapshot_accounts"] = snap.accounts.height
                self.last_snapshot_at = snapshot_time(snap.meta)
            if self.wal is not None:
                self.wal.last_seq = max(self.wal.last_seq, after)
                for _seq, frame in self.wal.replay(after):
                    ids = frame["request_id"].to_list()
                    keep = [i for i, rid in enumerate(ids) if rid not in store.seen]
                    if keep:  # (the log never repeats an id; this guards hand-made logs)
                        fresh = frame if len(keep) == len(ids) else frame[keep]
                        # records of compact events: logs written before the queue existed
                        compact = "prompt" not in fresh.columns
                        schema = compact_schema() if compact else pl.Schema(EVENT_SCHEMA)
                        store.add(_upgrade(fresh, schema), compact=compact)
                    counts["wal_batches"] += 1
                    counts["wal_events"] += len(keep)
                    if store.n_queued >= REPLAY_CHUNK:
                        store.fingerprint_into_window(store.take_queue())
                store.fingerprint_into_window(store.take_queue())
                self.skipped = list(self.wal.skipped)
                counts["wal_records_skipped"] = len(self.skipped)
                self.wal.open_segment()
        if self.skipped:
            log.warning(
                "state restored, %d damaged write-ahead log record(s) skipped: %s",
                len(self.skipped),
                "; ".join(map(str, self.skipped[:20])),
            )
        log.info("state restored: %s", counts)
        return counts

    def _load_snapshot(self, snap: SnapshotData) -> None:
        """(``fields`` held.) ``snap`` into the (empty) store and coordinator."""
        end = snap.meta.get("window_end")
        last_seen, dirty, scores = accounts_from_frame(snap.accounts)
        events = _upgrade(snap.events, compact_schema())
        self.store.load(events, datetime.fromisoformat(end) if end else None, last_seen)
        last_pass = snap.meta.get("campaign_pass") or {}
        live = None
        if snap.campaigns is not None:
            live = LiveCampaigns.from_table(snap.campaigns, pass_from_meta(last_pass))
        # a snapshot from before campaigns, or taken while events awaited a campaign pass
        current = snap.campaigns is not None and bool(last_pass.get("current"))
        model_changed = snap.meta.get("model") != model_identity(self.model)
        if model_changed:
            log.warning("the model changed since the snapshot: rescoring every account")
        self.passes.load(scores, dirty, live, current, rescore_all=model_changed)

    def close(self) -> None:
        if self.wal is not None:
            with self.locks.wal:
                self.wal.close()
