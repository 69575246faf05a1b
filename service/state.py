"""The live scoring state: a sliding window of compact events and the latest account scores.

No HTTP here. :class:`ScoringState` is what the API (``ingest``, the queries) and the runtime's
background tasks (``fingerprint_pending``, ``rescore``, ``snapshot``) call; every method is
thread-safe. It only composes three parts, one concern each, and forwards to them:

- :mod:`service.window_store` — the window: ingest (duplicate and stale checks, the log append,
  the fingerprinting queue), fingerprinting, eviction and the caps;
- :mod:`service.passes` — rescoring passes and campaign passes, the pending accounts, the
  scores and what is asked of them;
- :mod:`service.durability` — snapshots, and restore (snapshot + write-ahead log replay).

They share the locks of :mod:`service.locks` (which documents the order they are taken in).
The values handed out are in :mod:`service.records`. Its tunables come from
:class:`service.settings.Settings` only, through a :class:`service.settings.StateConfig`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import polars as pl

from detector.models import DistillScorer
from detector.verdicts import Verdict, VerdictStore
from service.durability import Durability, IncompatibleStateError, StorageHealth
from service.fsync import private_dir
from service.live_campaigns import LiveCampaigns
from service.locks import StateLocks
from service.passes import PassCoordinator
from service.records import AccountView, CampaignView, IngestResult, RescoreReport
from service.settings import StateConfig
from service.summary import ScoreSummary
from service.wal import SkippedRecord, WriteAheadLog
from service.window_store import WindowStore

__all__ = ["IncompatibleStateError", "ScoringState"]

VERDICTS_FILE = "verdicts.jsonl"


class ScoringState:
    """Window store + pass coordinator + durability for one ``model`` (see the module
    docstring). ``config``: from :meth:`StateConfig.from_settings` (None: the defaults of
    :class:`Settings`); ``state_dir``: where the log and snapshots go (None: memory only);
    ``accounts_table``: the optional account table passed to the feature code."""

    def __init__(
        self,
        model: DistillScorer,
        config: StateConfig | None = None,
        *,
        state_dir: str | Path | None = None,
        accounts_table: pl.DataFrame | None = None,
    ) -> None:
        self.config = config if config is not None else StateConfig.defaults()
        self.model = model
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.wal = None
        if self.state_dir is not None:
            private_dir(self.state_dir)
            self.wal = WriteAheadLog(self.state_dir / "wal")
        locks = StateLocks()
        self.store = WindowStore(self.config, locks, self.wal)
        self.passes = PassCoordinator(model, self.config, locks, self.store, accounts_table)
        self.store.on_added = self.passes.mark_changed  # new events: their accounts pending
        self.store.on_dropped = self.passes.forget_dropped  # the account cap, at ingest
        self.durability = Durability(
            self.state_dir, self.wal, locks, self.store, self.passes, model
        )
        self.ready = False  # set once restored
        self.health = StorageHealth()
        # the analyst's verdicts: state_dir/verdicts.jsonl (append-only, fsync'd), read at once
        self.verdicts = VerdictStore(
            self.state_dir / VERDICTS_FILE if self.state_dir is not None else None
        )
        self.passes.verdicts = self.verdicts.frame

    # ------------------------------------------------------------------ the window
    def ingest(self, events: pl.DataFrame) -> IngestResult:
        """Drop duplicates, stale rows and rows ahead of the clock, log the rest durably and
        queue them for fingerprinting (:meth:`WindowStore.ingest`). Raises OSError when the
        log cannot be written (the storage is then reported failing until it works again)."""
        try:
            out = self.store.ingest(events)
        except OSError as exc:
            self.health.failed("log", f"write-ahead log failing: {exc}")
            raise
        if out.seq is not None:
            self.health.ok("log")
        return out

    def fingerprint_pending(self, min_events: int = 1) -> int:
        """Fingerprint the queued events into the window, when at least ``min_events`` wait."""
        return self.store.fingerprint_pending(min_events)

    @property
    def window(self) -> timedelta:
        return self.store.window

    @property
    def window_end(self) -> datetime | None:
        return self.store.window_end

    @property
    def n_events(self) -> int:
        return self.store.n_events

    @property
    def n_queued(self) -> int:
        """Acknowledged events waiting to be fingerprinted."""
        return self.store.n_queued

    @property
    def n_accounts(self) -> int:
        return self.store.n_accounts

    # ------------------------------------------------------------------ passes and scores
    def rescore(self) -> RescoreReport:
        """One pass: compact and evict the window, rescore the accounts that changed."""
        return self.passes.rescore()

    @property
    def n_pending(self) -> int:
        return self.passes.n_pending

    @property
    def summary(self) -> ScoreSummary:
        return self.passes.summary

    @property
    def live(self) -> LiveCampaigns:
        """The last campaign pass."""
        return self.passes.live

    @property
    def campaigns(self) -> dict[str, CampaignView]:
        return self.passes.campaigns

    @property
    def campaign_of(self) -> dict[str, str]:
        return self.passes.campaign_of

    @property
    def campaigns_current(self) -> bool:
        return self.passes.campaigns_current

    @property
    def last_rescore_at(self) -> datetime | None:
        return self.passes.last_rescore_at

    def account(self, account_id: str) -> AccountView | None:
        return self.passes.account(account_id)

    def top_accounts(self, min_score: float = 0.0, limit: int = 100) -> list[AccountView]:
        """Scored accounts with ``score >= min_score``, highest first (ties by account id)."""
        return self.passes.top_accounts(min_score, limit)

    # ------------------------------------------------------------------ verdicts
    def record_verdict(self, verdict: Verdict) -> bool:
        """Keep ``verdict`` durably (written and fsync'd before returning; raises OSError when
        it cannot be) and rescore its account at the next pass. Returns whether the account
        has events in the window."""
        self.verdicts.record(verdict)
        with self.store.locks.fields:
            tracked = verdict.account_id in self.store.last_seen
            if tracked:  # the next pass applies it (a campaign pass too: lifts may change)
                self.passes.mark_changed([verdict.account_id])
        return tracked

    # ------------------------------------------------------------------ durability
    def snapshot(self) -> Path | None:
        """Write a snapshot and trim the log; None without a state dir. A failure is reported
        (the storage is failing until a snapshot succeeds) and raised."""
        try:
            path = self.durability.snapshot()
        except Exception as exc:
            self.health.failed("snapshot", f"snapshot failing: {type(exc).__name__}: {exc}")
            raise
        self.health.ok("snapshot")
        return path

    def probe_storage(self) -> bool:
        """While the log is failing, try a durable write where it writes
        (:meth:`WriteAheadLog.probe`): success reports it working again. True when the log
        is (now) working."""
        if self.wal is None or not self.health.failing("log"):
            return True
        with self.durability.locks.wal:
            try:
                self.wal.probe()
            except OSError as exc:
                self.health.failed("log", f"write-ahead log failing: {exc}")
                return False
        self.health.ok("log")
        return True

    @property
    def wal_skipped(self) -> list[SkippedRecord]:
        """Damaged log records the restore skipped."""
        return self.durability.skipped

    def restore(self) -> dict[str, int]:
        """Load the snapshot, replay the log after it; mark ready."""
        counts = self.durability.restore()
        self.ready = True
        return counts

    @property
    def wal_seq(self) -> int:
        return self.durability.wal_seq

    @property
    def last_snapshot_at(self) -> datetime | None:
        return self.durability.last_snapshot_at

    def snapshot_age_s(self) -> float | None:
        return self.durability.snapshot_age_s()

    def close(self) -> None:
        self.durability.close()
