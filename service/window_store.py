"""The window store: the sliding window of compact events, its fingerprinting queue, the seen
request ids and each account's last event; ingest's duplicate and stale checks, eviction and
the caps.

- **Ingest.** :meth:`WindowStore.ingest` drops duplicate and stale rows of a batch, appends the
  rest to the write-ahead log (fsync) and queues them as canonical events: the batch is
  acknowledged then, before any fingerprinting. No polars work on the window there, and none
  that waits for polars' thread pool (busy with rescoring passes): plain Python over the batch's
  ids, accounts and timestamps.
- **Fingerprinting.** :meth:`WindowStore.fingerprint_pending` (the runtime's background loop,
  every rescoring pass, and ingest itself when the queue is long) fingerprints the queue in one
  chunk (:func:`detector.fingerprints.fingerprint_events`: raw prompt text is dropped there; per
  event a 10,000-event chunk costs half what a 1,000-event batch does) into compact events,
  kept as polars frames and compacted into one at each pass. Raw text is held only in that
  short queue and in the write-ahead log until the next snapshot; never in the window.
- **Time** is *event* time: the window ends at the newest event seen and spans ``window``;
  older events are evicted (:meth:`WindowStore.compact`), and rejected on arrival (``stale``).
  Event time is bounded by the server clock: an event more than ``future_skew`` ahead of it is
  rejected on arrival (``future``), and the window end never passes ``now + future_skew`` (a
  restored one included), so one bad client clock cannot expire the window.
- **Idempotency.** The set of seen request ids is exactly the window's ``request_id`` column
  (plus the queue's).
- **Caps.** An ingest that takes the tracked accounts past ``max_accounts`` drops the least
  recently seen ones at once (down to 99 % of the cap; their events leave the window at the
  next pass, :meth:`WindowStore.take_dropped`); past ``max_window_events`` the oldest events
  are evicted at each pass.

Locks: :mod:`service.locks` (``fp``, ``wal``, ``fields``). Which accounts await a new score is
not kept here: every addition is reported to :attr:`WindowStore.on_added` (the pass
coordinator) while ``fields`` is held.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl

from detector.fingerprints import fingerprint_events
from detector.io.schema import EVENT_COLUMNS, TS_DTYPE, empty_events
from service.locks import StateLocks
from service.records import IngestResult, RescoreReport
from service.settings import StateConfig
from service.wal import WriteAheadLog, encode_frame

# a pass appends its new events to the window as one chunk; past this many, one copy
MAX_WINDOW_CHUNKS = 16

_EPOCH = datetime(1970, 1, 1, tzinfo=ZoneInfo("UTC"))  # the tzinfo polars gives
_MICROSECOND = timedelta(microseconds=1)

log = logging.getLogger("distillguard.state")


def _now_micros() -> int:
    """The server clock, in microseconds since the epoch."""
    return time.time_ns() // 1000


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


def compact_schema() -> pl.Schema:
    """Columns and dtypes of compact events (fingerprinted canonical events)."""
    return fingerprint_events(empty_events().lazy()).collect_schema()


def _nobody(accounts: Iterable[str]) -> None:
    """The default :attr:`WindowStore.on_added` and ``on_dropped``: nobody listens."""


class WindowStore:
    """Compact events of the window, the queue of events to fingerprint, seen ids and each
    account's last event (see the module docstring)."""

    def __init__(self, config: StateConfig, locks: StateLocks, wal: WriteAheadLog | None) -> None:
        self.window = config.window
        self.future_skew = config.future_skew
        self.max_accounts = config.max_accounts
        # past the cap, ingest drops accounts down to this many (one scan per 1 % of churn)
        self.accounts_after_drop = config.max_accounts - config.max_accounts // 100
        self.max_window_events = config.max_window_events
        self.max_queued_events = config.max_queued_events
        self.locks = locks
        self.wal = wal  # accepted batches are logged here before ingest returns
        # called with ``fields`` held, with the accounts of every addition
        self.on_added: Callable[[Iterable[str]], None] = _nobody
        # called with ``fields`` held, with the accounts ingest dropped to hold the cap
        self.on_dropped: Callable[[Iterable[str]], None] = _nobody
        # guarded by ``fields``:
        self.frames: list[pl.DataFrame] = []  # compact events
        self._queue: list[pl.DataFrame] = []  # acknowledged canonical events, not yet compact
        self._queued = 0  # events in _queue
        self._fingerprinting = 0  # events taken from _queue, being fingerprinted
        self._n_events = 0  # in frames, _queue and being fingerprinted
        self.seen: set[str] = set()  # request ids of those events
        self.last_seen: dict[str, datetime] = {}  # account -> its newest event's ts
        self._dropped: set[str] = set()  # dropped by ingest; their events await the next pass
        self._window_end: datetime | None = None

    # ------------------------------------------------------------------ ingest
    def ingest(self, events: pl.DataFrame) -> IngestResult:
        """Drop duplicates and stale rows, log the rest durably (canonical events) and queue
        them for fingerprinting; their accounts are pending from now on."""
        out = self._ingest(events)
        if out.accepted and self._queued > self.max_queued_events:  # the background loop lags
            self.fingerprint_pending()  # help it (after ``wal``: lock order)
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
        limit = _now_micros() + self.future_skew // _MICROSECOND  # newest acceptable event
        out.future_limit = _EPOCH + limit * _MICROSECOND
        with self.locks.wal:  # the only writer of seen's additions and of the window end
            seen = self.seen
            batch_ids = set(ids)
            rows: Sequence[int]
            newest = max(micros)
            if len(batch_ids) == len(ids) and seen.isdisjoint(batch_ids):
                rows = range(len(ids))  # the usual batch: every id new (C loops only) ...
                if newest <= limit and min(micros) >= self._cut(newest):  # ... none stale or
                    latest = _newest(accounts, micros)  # ahead of the clock
                    return self._accept(out, events, rows, batch_ids, latest, payload)
            else:
                rows = [i for i, rid in enumerate(ids) if rid not in seen]
            out.duplicates = len(ids) - len(rows)
            if not rows:
                return out
            in_time = [micros[i] for i in rows if micros[i] <= limit]
            cut = self._cut(max(in_time)) if in_time else 0
            keep: list[int] = []
            batch_ids = set()
            latest = {}
            for i in rows:
                rid, us = ids[i], micros[i]
                if us > limit:
                    out.future_rows.append(i)
                elif us < cut:
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
        """(``wal`` held.) Microseconds before which events are stale, once events up to
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
        """(``wal`` held.) Log the ``keep`` rows of ``events`` (``payload``: the log record of
        all of them) durably, then add them (``ids``; ``latest``: newest microsecond per
        account) to the queue."""
        accepted = events if len(keep) == events.height else events[list(keep)]
        if self.wal is not None:  # durable before acknowledging
            if payload is None or len(keep) != events.height:
                payload = encode_frame(accepted)
            out.seq = self.wal.append(payload)
        newest = [(acc, _EPOCH + us * _MICROSECOND) for acc, us in latest.items()]
        with self.locks.fields:
            self.add(accepted, ids, newest, compact=False)
            if len(self.last_seen) > self.max_accounts:
                out.dropped_accounts = len(self._drop_least_recent(self.accounts_after_drop))
        out.accepted = accepted.height
        return out

    def add(
        self,
        frame: pl.DataFrame,
        ids: set[str] | None = None,
        latest: list[tuple[str, datetime]] | None = None,
        *,
        compact: bool = True,
    ) -> None:
        """(``fields`` held.) Add accepted events: compact ones to the window, canonical ones to
        the fingerprinting queue; ``ids`` and ``latest`` (newest ts per account) when known."""
        if compact:
            self.frames.append(frame)
        else:
            self._queue.append(frame)
            self._queued += frame.height
        self._n_events += frame.height
        self.seen.update(ids if ids is not None else frame["request_id"].to_list())
        if latest is None:
            latest = frame.group_by("account_id").agg(pl.col("ts").max()).rows()
        last_seen = self.last_seen
        for acc, ts in latest:
            cur = last_seen.get(acc)
            if cur is None or ts > cur:
                last_seen[acc] = ts
        if self._dropped:  # back before the pass removed their events: they stay
            self._dropped.difference_update(acc for acc, _ in latest)
        self.on_added(acc for acc, _ in latest)
        end = self._bounded(max(ts for _, ts in latest))
        if self._window_end is None or end > self._window_end:
            self._window_end = end

    def _bounded(self, end: datetime) -> datetime:
        """``end``, or ``now + future_skew`` when it is later (events logged by a build without
        the bound, or a server clock set back since they arrived)."""
        limit = _EPOCH + (_now_micros() + self.future_skew // _MICROSECOND) * _MICROSECOND
        if end > limit:
            log.warning("window end %s is ahead of the clock: bounded to %s", end, limit)
            return limit
        return end

    # ------------------------------------------------------------------ fingerprinting
    def fingerprint_pending(self, min_events: int = 1) -> int:
        """Fingerprint the queued (acknowledged, canonical) events into the window, in one
        chunk, when at least ``min_events`` wait; returns how many were fingerprinted."""
        with self.locks.fp:
            with self.locks.fields:
                if self._queued < max(min_events, 1):
                    return 0
                taken = self.take_queue()
            self.fingerprint_into_window(taken)
            return sum(f.height for f in taken)

    def take_queue(self) -> list[pl.DataFrame]:
        """(``fp`` and ``fields`` held.) Empty the queue; its events are being fingerprinted
        until :meth:`fingerprint_into_window` adds them to the window."""
        taken, self._queue = self._queue, []
        self._fingerprinting += self._queued
        self._queued = 0
        return taken

    def fingerprint_into_window(self, taken: list[pl.DataFrame]) -> pl.DataFrame | None:
        """(``fp`` held; ``fields`` need not be.) Compact events of ``taken`` (queue frames),
        appended to the window; on failure they go back to the queue."""
        if not taken:
            return None
        n = sum(f.height for f in taken)
        try:
            raw = pl.concat(taken, how="vertical") if len(taken) > 1 else taken[0]
            compact = fingerprint_events(raw.lazy()).collect()
        except BaseException:
            with self.locks.fields:
                self._queue[:0] = taken
                self._queued += n
                self._fingerprinting -= n
            raise
        with self.locks.fields:
            self.frames.append(compact)
            self._fingerprinting -= n
        return compact

    # ------------------------------------------------------------------ eviction and caps
    def drop_over_cap(self) -> set[str]:
        """(``fields`` held.) Past ``max_accounts``: forget the least recently seen accounts
        now (their events leave the window at the next :meth:`compact`); returns them."""
        if len(self.last_seen) <= self.max_accounts:
            return set()
        return self._drop_least_recent(self.max_accounts, notify=False)

    def _drop_least_recent(self, keep: int, *, notify: bool = True) -> set[str]:
        """(``fields`` held.) Forget all but the ``keep`` most recently seen accounts; their
        events stay until a pass takes them (:meth:`take_dropped`). ``notify``: tell
        :attr:`on_dropped`."""
        excess = len(self.last_seen) - keep
        oldest = heapq.nsmallest(excess, self.last_seen.items(), key=lambda kv: kv[1])
        dropped = {acc for acc, _ in oldest}
        for acc in dropped:
            del self.last_seen[acc]
        self._dropped |= dropped
        if notify:
            self.on_dropped(dropped)
        return dropped

    def take_dropped(self) -> set[str]:
        """(``fields`` held.) The accounts dropped since the last call, to leave the window."""
        dropped, self._dropped = self._dropped, set()
        return dropped

    def redrop(self, accounts: set[str]) -> None:
        """(``fields`` held.) ``accounts`` (from :meth:`take_dropped`) still have events in the
        window: the next pass removes them."""
        self._dropped |= accounts

    def compact(
        self,
        frames: list[pl.DataFrame],
        end: datetime | None,
        dropped: set[str],
        report: RescoreReport,
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """(No lock: polars work.) ``frames`` (the window's, in order) as one frame without
        expired (before ``end - window``), capped or ``dropped`` accounts' events; and the
        removed rows. Counts them in ``report``."""
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

    def swap_compacted(self, window: pl.DataFrame, k: int, removed_ids: list[str]) -> None:
        """(``fields`` held.) The first ``k`` frames become ``window`` (their :meth:`compact`
        result; frames added since stay behind it); ``removed_ids`` are no longer seen."""
        self.frames = [window, *self.frames[k:]] if window.height else self.frames[k:]
        in_window = sum(f.height for f in self.frames)
        self._n_events = in_window + self._queued + self._fingerprinting
        self.seen.difference_update(removed_ids)

    def forget(self, account: str) -> None:
        """(``fields`` held.) ``account`` has no event left in the window."""
        self.last_seen.pop(account, None)

    # ------------------------------------------------------------------ restore
    def load(
        self,
        events: pl.DataFrame,
        window_end: datetime | None,
        last_seen: dict[str, datetime],
    ) -> None:
        """(``fields`` held, store empty.) The window of a snapshot: its compact ``events``."""
        if events.height:
            self.frames = [events]
            self._n_events = events.height
            self.seen = set(events["request_id"].to_list())
        self._window_end = self._bounded(window_end) if window_end is not None else None
        self.last_seen = last_seen

    # ------------------------------------------------------------------ queries
    @property
    def n_events(self) -> int:
        """Events in the window, queued or being fingerprinted included."""
        return self._n_events

    @property
    def n_queued(self) -> int:
        """Acknowledged events waiting to be fingerprinted."""
        return self._queued

    @property
    def n_accounts(self) -> int:
        return len(self.last_seen)

    @property
    def window_end(self) -> datetime | None:
        """Event time of the newest event accepted."""
        return self._window_end
