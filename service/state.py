"""The live scoring state: a sliding window of compact events and the latest account scores.

No HTTP here. :class:`ScoringState` is driven by the API (``ingest``) and by background tasks
(``rescore``, ``snapshot``); every method is thread-safe. The values it hands out are in
:mod:`service.records`.

- **Window.** An accepted batch is logged and acknowledged as canonical events, then queued;
  :meth:`ScoringState.fingerprint_pending` (a background loop of the runtime, every rescoring
  pass, and the ingest call itself when the queue is long) fingerprints the queue in one chunk
  (:func:`detector.fingerprints.fingerprint_events`: raw prompt text is dropped there; per event
  a 10,000-event chunk costs half what a 1,000-event batch does) into compact events, kept as
  polars frames and compacted into one at each pass. Raw text is held only in that short queue
  and in the write-ahead log until the next snapshot; never in the window or a snapshot.
  Time is *event* time: the window ends at the newest event seen and spans ``window``; older
  events are evicted, and rejected on arrival (``stale``).
- **Idempotency.** The set of seen request ids is exactly the window's ``request_id`` column.
- **Rescoring.** Each pass recomputes features only for the accounts touched since the last pass
  (or that lost events to eviction) by calling THE feature code,
  :func:`detector.features.account_features`, on those accounts' window events, then
  ``model.score`` (:mod:`service.rescoring`: a live score equals the offline one for the same
  window).
- **Campaigns.** Every ``campaign_interval_s`` seconds or ``campaign_every_passes`` passes
  (when the window changed), a pass rescores the WHOLE window and runs
  :func:`detector.campaigns.detect_campaigns` on it, as the offline audit does; between such
  passes, rescored accounts get their campaign's lift through the same
  :func:`detector.campaigns.apply_campaigns` (see :mod:`service.live_campaigns`).
- **Bounds.** Accounts idle past the window are forgotten; past ``max_accounts`` the least
  recently seen are dropped; past ``max_window_events`` the oldest events are evicted.
- **Durability.** An accepted batch is appended to the write-ahead log (fsync) before
  :meth:`ingest` returns; :meth:`snapshot` fingerprints the queue, writes Parquet (compact
  events, accounts, campaigns) and trims the log; :meth:`restore` loads the snapshot and
  replays (and fingerprints) the log after it.
- **Locks**, always taken in this order: ``_snap`` (one snapshot), ``_maint`` (one pass or
  snapshot), ``_fp`` (one fingerprinting of the queue), ``_wal_lock`` (log order: one ingest
  between its duplicate check and its apply), ``_lock`` (the fields; held briefly, never for
  I/O or polars work on the window).
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl

from detector.fingerprints import FINGERPRINT_VERSION, fingerprint_events
from detector.io.schema import EVENT_COLUMNS, TS_DTYPE, empty_events
from detector.models import DistillScorer
from service.live_campaigns import LiveCampaigns, pass_from_meta, pass_meta
from service.records import (
    AccountScore,
    AccountView,
    CampaignView,
    IngestResult,
    RescoreReport,
    accounts_frame,
    accounts_from_frame,
    model_identity,
)
from service.rescoring import score_accounts, score_window
from service.snapshot import SnapshotData, read_snapshot, snapshot_time, write_snapshot
from service.summary import ScoreSummary, summarise
from service.wal import WriteAheadLog, encode_frame

# fingerprint the queue in chunks of at most this many events while replaying the log
REPLAY_CHUNK = 50_000
# a pass appends its new events to the window as one chunk; past this many, one copy
MAX_WINDOW_CHUNKS = 16

log = logging.getLogger("distillguard.state")


_EPOCH = datetime(1970, 1, 1, tzinfo=ZoneInfo("UTC"))  # the tzinfo polars gives
_MICROSECOND = timedelta(microseconds=1)


def _micros(ts: datetime) -> int:
    """Microseconds since the epoch (the physical value of a ``TS_DTYPE`` timestamp)."""
    return (ts - _EPOCH) // _MICROSECOND


def _newest(accounts: list[str], micros: list[int]) -> dict[str, int]:
    """The newest microsecond of each account (C loops: the last of each account's values in
    time order)."""
    if micros == sorted(micros):  # the usual batch: in time order
        return dict(zip(accounts, micros, strict=True))
    order = sorted(range(len(micros)), key=micros.__getitem__)
    return dict(zip(map(accounts.__getitem__, order), map(micros.__getitem__, order), strict=True))


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


def compact_schema() -> pl.Schema:
    """Columns and dtypes of compact events (fingerprinted canonical events)."""
    return fingerprint_events(empty_events().lazy()).collect_schema()


class ScoringState:
    """Sliding window of compact events + per-account scores (see the module docstring)."""

    def __init__(
        self,
        model: DistillScorer,
        *,
        window: timedelta = timedelta(hours=24),
        max_accounts: int = 1_000_000,
        max_window_events: int = 5_000_000,
        top_n: int = 20,
        accounts_table: pl.DataFrame | None = None,
        state_dir: str | Path | None = None,
        wal_fsync: bool = True,
        max_queued_events: int = 200_000,
        campaigns: bool = True,
        campaign_interval_s: float = 30.0,
        campaign_every_passes: int = 0,
    ) -> None:
        self.model = model
        self.campaigns_enabled = campaigns
        self.campaign_interval_s = campaign_interval_s
        self.campaign_every_passes = campaign_every_passes
        self.window = window
        self.max_accounts = max_accounts
        self.max_window_events = max_window_events
        self.top_n = top_n
        self.max_queued_events = max_queued_events
        self.accounts_table = accounts_table
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.wal = (
            WriteAheadLog(self.state_dir / "wal", fsync=wal_fsync) if self.state_dir else None
        )
        self._lock = threading.RLock()  # guards everything below
        self._maint = threading.Lock()  # one rescoring pass (or snapshot) at a time
        self._snap = threading.Lock()  # one snapshot at a time
        self._fp = threading.Lock()  # one fingerprinting of the queue at a time
        self._wal_lock = threading.Lock()  # log order; ingest from duplicate check to apply
        self._frames: list[pl.DataFrame] = []  # compact events
        self._queue: list[pl.DataFrame] = []  # acknowledged canonical events, not yet compact
        self._queued = 0  # events in _queue
        self._fingerprinting = 0  # events taken from _queue, being fingerprinted
        self._n_events = 0  # in _frames, _queue and being fingerprinted
        self._seen: set[str] = set()
        self._last_seen: dict[str, datetime] = {}
        self._dirty: set[str] = set()
        self._inflight: set[str] = set()
        self._scores: dict[str, AccountScore] = {}
        self._window_end: datetime | None = None
        self.summary = ScoreSummary()
        self.live = LiveCampaigns()  # the last campaign pass (replaced whole)
        self._campaigns_stale = False  # the window changed since the last campaign pass
        self._campaigns_running = False  # a campaign pass is under way
        self._passes_since_campaigns = 0
        self._campaigns_clock: float | None = None  # monotonic time of the last campaign pass
        self.ready = False
        self.last_snapshot_at: datetime | None = None
        self.last_rescore_at: datetime | None = None

    # ------------------------------------------------------------------ ingest
    def ingest(self, events: pl.DataFrame) -> IngestResult:
        """Drop duplicates and stale rows, log the rest durably (canonical events) and queue
        them for fingerprinting; their accounts are pending from now on.

        No polars work on the window here, and none that waits for polars' thread pool (busy
        with rescoring passes): plain Python over the batch's ids, accounts and timestamps."""
        out = self._ingest(events)
        if out.accepted and self._queued > self.max_queued_events:  # the background loop lags
            self.fingerprint_pending()  # help it (after _wal_lock: lock order)
        return out

    def _ingest(self, events: pl.DataFrame) -> IngestResult:
        out = IngestResult()
        if events.height == 0:
            return out
        if events.columns != EVENT_COLUMNS:  # queued batches are concatenated
            events = events.select(EVENT_COLUMNS)
        if events.schema["ts"] != TS_DTYPE:
            events = events.with_columns(pl.col("ts").cast(TS_DTYPE))
        ids: list[str] = events["request_id"].to_list()
        micros: list[int] = events["ts"].to_physical().to_list()
        accounts: list[str] = events["account_id"].to_list()
        # the usual case's log record (every event new), encoded before taking the lock
        payload = encode_frame(events) if self.wal is not None else None
        with self._wal_lock:  # the only writer of _seen's additions and of _window_end
            seen = self._seen
            batch_ids = set(ids)
            rows: Sequence[int]
            if len(batch_ids) == len(ids) and seen.isdisjoint(batch_ids):
                rows = range(len(ids))  # the usual batch: every id new (C loops only) ...
                if min(micros) >= self._cut(max(micros)):  # ... and none stale
                    latest = _newest(accounts, micros)
                    return self._accept(out, events, rows, batch_ids, latest, payload)
            else:
                rows = [i for i, rid in enumerate(ids) if rid not in seen]
            out.duplicates = len(ids) - len(rows)
            if not rows:
                return out
            cut = self._cut(max(micros[i] for i in rows))
            keep: list[int] = []
            batch_ids = set()
            latest = {}
            for i in rows:
                rid, us = ids[i], micros[i]
                if us < cut:
                    out.stale_rows.append(i)
                elif rid in batch_ids:
                    out.duplicates += 1
                else:
                    batch_ids.add(rid)
                    keep.append(i)
                    acc = accounts[i]
                    if us > latest.get(acc, us - 1):
                        latest[acc] = us
            if not keep:
                return out
            return self._accept(out, events, keep, batch_ids, latest, payload)

    def _cut(self, newest: int) -> int:
        """(``_wal_lock`` held.) Microseconds before which events are stale, once events up to
        ``newest`` (microseconds) are in."""
        end = newest
        if self._window_end is not None:
            end = max(end, _micros(self._window_end))
        return end - self.window // _MICROSECOND

    def _accept(
        self,
        out: IngestResult,
        events: pl.DataFrame,
        keep: Sequence[int],
        ids: set[str],
        latest: dict[str, int],
        payload: bytes | None,
    ) -> IngestResult:
        """(``_wal_lock`` held.) Log the ``keep`` rows of ``events`` (``payload``: the log
        record of all of them) durably, then add them (``ids``; ``latest``: newest microsecond
        per account) to the queue."""
        accepted = events if len(keep) == events.height else events[list(keep)]
        if self.wal is not None:  # durable before acknowledging
            if payload is None or len(keep) != events.height:
                payload = encode_frame(accepted)
            out.seq = self.wal.append(payload)
        newest = [(acc, _EPOCH + us * _MICROSECOND) for acc, us in latest.items()]
        with self._lock:
            self._add(accepted, ids, newest, compact=False)
        out.accepted = accepted.height
        return out

    def _add(
        self,
        frame: pl.DataFrame,
        ids: set[str] | None = None,
        latest: list[tuple[str, datetime]] | None = None,
        *,
        compact: bool = True,
    ) -> None:
        """(Lock held.) Add accepted events: compact ones to the window, canonical ones to the
        fingerprinting queue; ``ids`` and ``latest`` (newest ts per account) when known."""
        if compact:
            self._frames.append(frame)
        else:
            self._queue.append(frame)
            self._queued += frame.height
        self._n_events += frame.height
        self._seen.update(ids if ids is not None else frame["request_id"].to_list())
        if latest is None:
            latest = frame.group_by("account_id").agg(pl.col("ts").max()).rows()
        last_seen = self._last_seen
        for acc, ts in latest:
            cur = last_seen.get(acc)
            if cur is None or ts > cur:
                last_seen[acc] = ts
        self._dirty.update(acc for acc, _ in latest)
        self._campaigns_stale = True
        end = max(ts for _, ts in latest)
        if self._window_end is None or end > self._window_end:
            self._window_end = end

    # ------------------------------------------------------------------ fingerprinting
    def fingerprint_pending(self, min_events: int = 1) -> int:
        """Fingerprint the queued (acknowledged, canonical) events into the window, in one
        chunk, when at least ``min_events`` wait; returns how many were fingerprinted."""
        with self._fp:
            with self._lock:
                if self._queued < max(min_events, 1):
                    return 0
                taken = self._take_queue()
            self._fingerprint_into_window(taken)
            return sum(f.height for f in taken)

    @property
    def n_queued(self) -> int:
        """Acknowledged events waiting to be fingerprinted."""
        return self._queued

    def _take_queue(self) -> list[pl.DataFrame]:
        """(``_fp`` and ``_lock`` held.) Empty the queue; its events are being fingerprinted
        until :meth:`_fingerprint_into_window` adds them to the window."""
        taken, self._queue = self._queue, []
        self._fingerprinting += self._queued
        self._queued = 0
        return taken

    def _fingerprint_into_window(self, taken: list[pl.DataFrame]) -> pl.DataFrame | None:
        """(``_fp`` held, not ``_lock``.) Compact events of ``taken`` (queue frames), appended
        to the window; on failure they go back to the queue."""
        if not taken:
            return None
        n = sum(f.height for f in taken)
        try:
            raw = pl.concat(taken, how="vertical") if len(taken) > 1 else taken[0]
            compact = fingerprint_events(raw.lazy()).collect()
        except BaseException:
            with self._lock:
                self._queue[:0] = taken
                self._queued += n
                self._fingerprinting -= n
            raise
        with self._lock:
            self._frames.append(compact)
            self._fingerprinting -= n
        return compact

    # ------------------------------------------------------------------ rescoring
    def rescore(self) -> RescoreReport:
        """One pass: compact and evict the window, then rescore the accounts that changed."""
        with self._maint:
            t0 = time.perf_counter()
            report = RescoreReport()
            with self._fp:  # the pass's window: every event acknowledged before `dirty`
                with self._lock:
                    taken = self._take_queue()
                    dirty, self._dirty = self._dirty, set()
                    self._inflight = dirty
                    end = self._window_end
                    dropped = self._pick_dropped_accounts()
                    whole = self._campaigns_due(bool(dropped))
                    if whole:  # events arriving from now on are not in this pass's window
                        self._campaigns_stale, self._campaigns_running = False, True
                try:
                    self._fingerprint_into_window(taken)
                except BaseException:  # (the events went back to the queue)
                    self._retry_later(dirty, whole)
                    raise
                with self._lock:
                    k = len(self._frames)
                    frames = self._frames[:k]
            window, removed = self._compact(frames, end, dropped, report)
            remaining = set(window["account_id"].unique().to_list())
            removed_ids = removed["request_id"].to_list()
            removed_accounts = set(removed["account_id"].unique().to_list()) - dropped
            with self._lock:
                self._frames = [window, *self._frames[k:]] if window.height else self._frames[k:]
                in_window = sum(f.height for f in self._frames)
                self._n_events = in_window + self._queued + self._fingerprinting
                self._seen.difference_update(removed_ids)
                for acc in removed_accounts:
                    if acc in remaining:
                        dirty.add(acc)  # lost events: its features changed
                    elif acc not in self._dirty:  # no events left, none arrived meanwhile
                        self._forget(acc)
                        report.evicted_accounts += 1
                if removed.height and not whole:
                    self._campaigns_stale = True
            live: LiveCampaigns | None = None
            try:
                if whole:
                    scored, live = self._score_window(window, report)
                else:
                    todo = dirty & remaining
                    scored = self._score_accounts(window, todo) if todo else {}
            except BaseException:
                self._retry_later(dirty, whole)
                raise
            with self._lock:
                for acc, rec in scored.items():
                    if acc in self._last_seen:
                        self._scores[acc] = rec
                if live is not None:
                    gone = [a for a in live.member_of if a not in self._last_seen]
                    for acc in gone:
                        del live.member_of[acc]
                    self.live, self._campaigns_running = live, False
                self._inflight = set()
                changed = bool(scored or dropped or report.evicted_accounts)
                triples = (
                    [(a, s.score, s.flagged) for a, s in self._scores.items()] if changed else []
                )
            if changed:
                self.summary = summarise(triples, self.top_n)
            report.rescored = len(scored)
            report.dropped_accounts = len(dropped)
            report.duration_s = time.perf_counter() - t0
            self.last_rescore_at = datetime.now(UTC)
            return report

    def _retry_later(self, dirty: set[str], whole: bool) -> None:
        """A pass failed: the next one retries its accounts (and its campaign pass)."""
        with self._lock:
            self._dirty |= {a for a in dirty if a in self._last_seen}
            self._inflight = set()
            if whole:
                self._campaigns_stale, self._campaigns_running = True, False

    def _campaigns_due(self, dropped: bool) -> bool:
        """(Lock held.) Is this pass a campaign pass? Counts the pass."""
        self._passes_since_campaigns += 1
        if not self.campaigns_enabled or not (self._campaigns_stale or dropped):
            return False
        if self._campaigns_clock is None:
            return True
        every = self.campaign_every_passes
        if every and self._passes_since_campaigns >= every:
            return True
        return time.monotonic() - self._campaigns_clock >= self.campaign_interval_s

    def _pick_dropped_accounts(self) -> set[str]:
        """(Lock held.) Past the account cap: forget the least recently seen accounts now."""
        excess = len(self._last_seen) - self.max_accounts
        if excess <= 0:
            return set()
        oldest = heapq.nsmallest(excess, self._last_seen.items(), key=lambda kv: kv[1])
        dropped = {acc for acc, _ in oldest}
        for acc in dropped:
            self._forget(acc)
            self._dirty.discard(acc)
        return dropped

    def _forget(self, acc: str) -> None:
        self._last_seen.pop(acc, None)
        self._scores.pop(acc, None)
        self.live.member_of.pop(acc, None)

    def _compact(
        self,
        frames: list[pl.DataFrame],
        end: datetime | None,
        dropped: set[str],
        report: RescoreReport,
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """One window frame without expired / capped / dropped events, and the removed rows."""
        if not frames:
            empty = pl.DataFrame(schema=compact_schema())
            return empty, empty
        window = frames[0]
        if len(frames) > 1:  # copy the new events once; the whole window only now and then
            new = pl.concat(frames[1:], how="vertical", rechunk=True)
            window = pl.concat([window, new], how="vertical", rechunk=False)
            if window.n_chunks() > MAX_WINDOW_CHUNKS:
                window = window.rechunk()
        removed: list[pl.DataFrame] = []
        if dropped:
            is_dropped = pl.col("account_id").is_in(
                pl.Series(sorted(dropped), dtype=pl.String).implode()
            )
            removed.append(window.filter(is_dropped))
            report.dropped_account_events = removed[-1].height
            window = window.filter(~is_dropped)
        oldest: datetime | None = window["ts"].min()  # type: ignore[assignment]
        if end is not None and oldest is not None and oldest < end - self.window:
            fresh = pl.col("ts") >= end - self.window
            removed.append(window.filter(~fresh))
            report.expired_events = removed[-1].height
            window = window.filter(fresh)
        over = window.height - self.max_window_events
        if over > 0:
            cut = window["ts"].sort()[over]  # drop the `over` oldest (and ties of the last)
            removed.append(window.filter(pl.col("ts") < cut))
            report.capped_events = removed[-1].height
            window = window.filter(pl.col("ts") >= cut)
        gone = pl.concat(removed) if removed else window.clear()
        return window, gone

    def _score_accounts(self, window: pl.DataFrame, accounts: set[str]) -> dict[str, AccountScore]:
        return score_accounts(window, accounts, self.model, self.accounts_table, self.live)

    def _score_window(
        self, window: pl.DataFrame, report: RescoreReport
    ) -> tuple[dict[str, AccountScore], LiveCampaigns]:
        """The campaign pass (see :func:`service.rescoring.score_window`)."""
        report.campaign_pass = True
        scored, live = score_window(window, self.model, self.accounts_table)
        self._campaigns_clock, self._passes_since_campaigns = time.monotonic(), 0
        report.campaigns = len(live.views)
        return scored, live

    # ------------------------------------------------------------------ queries
    @property
    def n_events(self) -> int:
        return self._n_events

    @property
    def n_accounts(self) -> int:
        return len(self._last_seen)

    @property
    def n_pending(self) -> int:
        with self._lock:
            return len(self._dirty | self._inflight)

    @property
    def window_end(self) -> datetime | None:
        return self._window_end

    @property
    def wal_seq(self) -> int:
        return self.wal.last_seq if self.wal is not None else 0

    @property
    def campaigns(self) -> dict[str, CampaignView]:
        """Campaigns of the last campaign pass, by id."""
        return self.live.views

    @property
    def campaign_of(self) -> dict[str, str]:
        """account_id -> campaign_id (members of the last pass's campaigns still tracked)."""
        return self.live.member_of

    @property
    def campaigns_current(self) -> bool:
        """The last campaign pass saw the window as it stands (no event added or evicted
        since)."""
        return self.live.last is not None and not (self._campaigns_stale or self._campaigns_running)

    def account(self, account_id: str) -> AccountView | None:
        with self._lock:
            last = self._last_seen.get(account_id)
            if last is None:
                return None
            pending = account_id in self._dirty or account_id in self._inflight
            return AccountView(account_id, last, pending, self._scores.get(account_id))

    def top_accounts(self, min_score: float = 0.0, limit: int = 100) -> list[AccountView]:
        """Scored accounts with ``score >= min_score``, highest first (ties by account id)."""
        with self._lock:
            hits = [(s.score, a, s) for a, s in self._scores.items() if s.score >= min_score]
            best = heapq.nsmallest(limit, hits, key=lambda t: (-t[0], t[1]))
            return [
                AccountView(
                    a,
                    self._last_seen[a],
                    a in self._dirty or a in self._inflight,
                    s,
                )
                for _, a, s in best
            ]

    def snapshot_age_s(self) -> float | None:
        if self.last_snapshot_at is None:
            return None
        return (datetime.now(UTC) - self.last_snapshot_at).total_seconds()

    # ------------------------------------------------------------------ durability
    def snapshot(self) -> Path | None:
        """Write a Parquet snapshot (the queue fingerprinted first: compact events only) and
        trim the write-ahead log; None without a state dir."""
        if self.state_dir is None:
            return None
        with self._snap:
            with self._maint, self._fp:  # never between a pass's eviction and its swap
                with self._wal_lock, self._lock:  # every logged event is in frames or taken
                    taken = self._take_queue()
                    frames = list(self._frames)
                    last_seen = dict(self._last_seen)
                    scores = dict(self._scores)
                    dirty = self._dirty | self._inflight
                    end = self._window_end
                    live, current = self.live, self.campaigns_current
                    seq = self.wal.rotate() if self.wal is not None else 0
                compact = self._fingerprint_into_window(taken)
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
                "window_hours": self.window.total_seconds() / 3600,
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
                with self._wal_lock:
                    self.wal.delete_through(seq)
            self.last_snapshot_at = now
            return path

    def restore(self) -> dict[str, int]:
        """Load the snapshot, replay the log after it (fingerprinting its canonical events in
        chunks), open a new log segment; mark ready."""
        counts = {"snapshot_events": 0, "snapshot_accounts": 0, "wal_batches": 0, "wal_events": 0}
        after = 0
        snap = read_snapshot(self.state_dir) if self.state_dir is not None else None
        with self._fp, self._wal_lock, self._lock:
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
                    keep = [i for i, rid in enumerate(ids) if rid not in self._seen]
                    if keep:  # (the log never repeats an id; this guards hand-made logs)
                        fresh = frame if len(keep) == len(ids) else frame[keep]
                        # records of compact events: logs written before the queue existed
                        self._add(fresh, compact="prompt" not in fresh.columns)
                    counts["wal_batches"] += 1
                    counts["wal_events"] += len(keep)
                    if self._queued >= REPLAY_CHUNK:
                        self._fingerprint_into_window(self._take_queue())
                self._fingerprint_into_window(self._take_queue())
                self.wal.open_segment()
            self.ready = True
        log.info("state restored: %s", counts)
        return counts

    def _load_snapshot(self, snap: SnapshotData) -> None:
        if snap.events.height:
            self._frames = [snap.events]
            self._n_events = snap.events.height
            self._seen = set(snap.events["request_id"].to_list())
        end = snap.meta.get("window_end")
        self._window_end = datetime.fromisoformat(end) if end else None
        self._last_seen, self._dirty, self._scores = accounts_from_frame(snap.accounts)
        last_pass = snap.meta.get("campaign_pass") or {}
        if snap.campaigns is not None:
            self.live = LiveCampaigns.from_table(snap.campaigns, pass_from_meta(last_pass))
            for acc in [a for a in self.live.member_of if a not in self._last_seen]:
                del self.live.member_of[acc]
        # a snapshot from before campaigns, or taken while events awaited a campaign pass
        current = snap.campaigns is not None and bool(last_pass.get("current"))
        self._campaigns_stale = bool(self._last_seen) and not current
        if snap.meta.get("model") != model_identity(self.model):
            log.warning("the model changed since the snapshot: rescoring every account")
            self._dirty = set(self._last_seen)
            self._campaigns_stale = bool(self._last_seen)
        self.summary = summarise(
            ((a, s.score, s.flagged) for a, s in self._scores.items()), self.top_n
        )

    def close(self) -> None:
        if self.wal is not None:
            with self._wal_lock:
                self.wal.close()
