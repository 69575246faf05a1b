"""The pass coordinator: rescoring passes, campaign-pass scheduling, the accounts awaiting a
score, and the scores.

- **Pending accounts.** An account is *dirty* from the moment the window store adds one of its
  events (:meth:`PassCoordinator.mark_changed`, called by the store) until a pass takes it; it
  is *in flight* while that pass runs. Both read as ``pending`` (its score does not reflect
  all its events yet). A failed pass puts its accounts back.
- **Rescoring.** Each pass (:meth:`PassCoordinator.rescore`) fingerprints the queue, compacts
  and evicts the window (:meth:`service.window_store.WindowStore.compact`), then recomputes
  features only for the accounts touched since the last pass (or that lost events to
  eviction) by calling THE feature code on those accounts' window events, then
  ``model.score`` (:func:`service.rescoring.score_accounts`: a live score equals the offline
  one for the same window). Accounts left with no events are forgotten.
- **Campaigns.** Every ``campaign_interval_s`` seconds or ``campaign_every_passes`` passes
  (when the window changed), a pass rescores the WHOLE window and detects campaigns on it, as
  the offline audit does (:func:`service.rescoring.score_window`); between such passes,
  rescored accounts get their campaign's lift (see :mod:`service.live_campaigns`).
- **Summary.** After a pass that changed any score, the distribution and top-N of the scores
  are summarised once (:mod:`service.summary`) for the metrics.

Locks: :mod:`service.locks` (``maint``, ``fp``, ``fields``).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import polars as pl

from detector.models import DistillScorer
from service.live_campaigns import LiveCampaigns
from service.locks import StateLocks
from service.records import AccountScore, AccountView, CampaignView, RescoreReport
from service.rescoring import score_accounts, score_window
from service.settings import StateConfig
from service.summary import ScoreSummary, summarise
from service.window_store import WindowStore


def _no_verdicts() -> pl.DataFrame | None:
    return None


def _nobody_listens(scored: dict[str, AccountScore], live: LiveCampaigns | None) -> None:
    return None


class PassCoordinator:
    """Rescoring passes over a :class:`WindowStore`, and the scores they produce (see the
    module docstring)."""

    def __init__(
        self,
        model: DistillScorer,
        config: StateConfig,
        locks: StateLocks,
        store: WindowStore,
        accounts_table: pl.DataFrame | None,
    ) -> None:
        self.model = model
        self.accounts_table = accounts_table
        self.top_n = config.top_n
        self.campaigns_enabled = config.campaigns
        self.campaign_interval_s = config.campaign_interval_s
        self.campaign_every_passes = config.campaign_every_passes
        self.locks = locks
        self.store = store
        # guarded by ``fields``:
        self._dirty: set[str] = set()  # accounts with events since the last pass took them
        self._inflight: set[str] = set()  # accounts of the pass under way
        self._scores: dict[str, AccountScore] = {}
        self.live = LiveCampaigns()  # the last campaign pass (replaced whole)
        self._campaigns_stale = False  # the window changed since the last campaign pass
        self._campaigns_running = False  # a campaign pass is under way
        self._passes_since_campaigns = 0
        self._campaigns_clock: float | None = None  # monotonic time of the last campaign pass
        # replaced whole after a pass (read without a lock):
        self.summary = ScoreSummary()
        self.last_rescore_at: datetime | None = None
        # the analyst's current verdicts (service.state sets it: its verdict store)
        self.verdicts: Callable[[], pl.DataFrame | None] = _no_verdicts
        # told the scores of every pass (and its campaigns, on a campaign pass), after the pass,
        # in the pass's thread (the runtime's webhook notices; must be quick)
        self.on_scored: Callable[[dict[str, AccountScore], LiveCampaigns | None], None] = (
            _nobody_listens
        )

    def mark_changed(self, accounts: Iterable[str]) -> None:
        """(``fields`` held.) Events of ``accounts`` were added to the window: they are pending,
        and the campaigns no longer describe the window."""
        self._dirty.update(accounts)
        self._campaigns_stale = True

    # ------------------------------------------------------------------ the pass
    def rescore(self) -> RescoreReport:
        """One pass: compact and evict the window, then rescore the accounts that changed."""
        store, locks = self.store, self.locks
        with locks.maint:
            t0 = time.perf_counter()
            report = RescoreReport()
            with locks.fp:  # the pass's window: every event acknowledged before `dirty`
                with locks.fields:
                    taken = store.take_queue()
                    dirty, self._dirty = self._dirty, set()
                    self._inflight = dirty
                    end = store.window_end
                    dropped, report.dropped_accounts = self._drop_over_cap()
                    whole = self._campaigns_due(bool(dropped))
                    if whole:  # events arriving from now on are not in this pass's window
                        self._campaigns_stale, self._campaigns_running = False, True
                try:
                    store.fingerprint_into_window(taken)
                except BaseException:  # (the events went back to the queue)
                    self._retry_later(dirty, whole, dropped)
                    raise
                with locks.fields:
                    frames = list(store.frames)
            try:
                window, removed = store.compact(frames, end, dropped, report)
            except BaseException:
                self._retry_later(dirty, whole, dropped)
                raise
            remaining = set(window["account_id"].unique().to_list())
            removed_ids = removed["request_id"].to_list()
            removed_accounts = set(removed["account_id"].unique().to_list()) - dropped
            with locks.fields:
                store.swap_compacted(window, len(frames), removed_ids)
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
            with locks.fields:
                tracked = store.last_seen
                for acc, rec in scored.items():
                    if acc in tracked:
                        self._scores[acc] = rec
                if live is not None:
                    gone = [a for a in live.member_of if a not in tracked]
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
            report.duration_s = time.perf_counter() - t0
            self.last_rescore_at = datetime.now(UTC)
        if scored or live is not None:
            self.on_scored(scored, live)
        return report

    def _retry_later(self, dirty: set[str], whole: bool, dropped: set[str] | None = None) -> None:
        """A pass failed: the next one retries its accounts (and its campaign pass; and the
        removal of the ``dropped`` accounts' events, when it failed before removing them)."""
        with self.locks.fields:
            tracked = self.store.last_seen
            if dropped:
                self.store.redrop({a for a in dropped if a not in tracked})
            self._dirty |= {a for a in dirty if a in tracked}
            self._inflight = set()
            if whole:
                self._campaigns_stale, self._campaigns_running = True, False

    def _campaigns_due(self, dropped: bool) -> bool:
        """(``fields`` held.) Is this pass a campaign pass? Counts the pass."""
        self._passes_since_campaigns += 1
        if not self.campaigns_enabled or not (self._campaigns_stale or dropped):
            return False
        if self._campaigns_clock is None:
            return True
        every = self.campaign_every_passes
        if every and self._passes_since_campaigns >= every:
            return True
        return time.monotonic() - self._campaigns_clock >= self.campaign_interval_s

    def _drop_over_cap(self) -> tuple[set[str], int]:
        """(``fields`` held.) Past the account cap: forget the least recently seen accounts.
        Returns them with those ingest dropped since the last pass (their events go now), and
        how many this pass dropped."""
        now = self.store.drop_over_cap()
        self.forget_dropped(now)
        return self.store.take_dropped(), len(now)

    def forget_dropped(self, accounts: Iterable[str]) -> None:
        """(``fields`` held.) The store dropped ``accounts`` (the cap): forget their scores."""
        for acc in accounts:
            self._forget(acc)
            self._dirty.discard(acc)

    def _forget(self, acc: str) -> None:
        """(``fields`` held.) ``acc`` leaves the window: its last event, score, campaign."""
        self.store.forget(acc)
        self._scores.pop(acc, None)
        self.live.member_of.pop(acc, None)

    def _score_accounts(self, window: pl.DataFrame, accounts: set[str]) -> dict[str, AccountScore]:
        return score_accounts(
            window, accounts, self.model, self.accounts_table, self.live, self.verdicts()
        )

    def _score_window(
        self, window: pl.DataFrame, report: RescoreReport
    ) -> tuple[dict[str, AccountScore], LiveCampaigns]:
        """The campaign pass (see :func:`service.rescoring.score_window`)."""
        report.campaign_pass = True
        scored, live = score_window(window, self.model, self.accounts_table, self.verdicts())
        self._campaigns_clock, self._passes_since_campaigns = time.monotonic(), 0
        report.campaigns = len(live.views)
        return scored, live

    # ------------------------------------------------------------------ snapshot and restore
    def snapshot_view(
        self,
    ) -> tuple[dict[str, AccountScore], set[str], LiveCampaigns, bool]:
        """(``fields`` held.) What a snapshot keeps of the coordinator: the scores, the pending
        accounts, the last campaign pass and whether it describes the window as it stands."""
        return dict(self._scores), self._dirty | self._inflight, self.live, self.campaigns_current

    def load(
        self,
        scores: dict[str, AccountScore],
        dirty: set[str],
        live: LiveCampaigns | None,
        current: bool,
        rescore_all: bool,
    ) -> None:
        """(``fields`` held, after the store's :meth:`WindowStore.load`.) The coordinator's part
        of a snapshot: ``live`` is its campaign pass (None: taken before campaigns),
        ``current`` whether that pass saw the snapshot's window; ``rescore_all`` when the model
        changed since."""
        tracked = self.store.last_seen
        self._scores, self._dirty = scores, dirty
        if live is not None:
            for acc in [a for a in live.member_of if a not in tracked]:
                del live.member_of[acc]
            self.live = live
        self._campaigns_stale = bool(tracked) and not current
        if rescore_all:
            self._dirty = set(tracked)
            self._campaigns_stale = bool(tracked)
        self.summary = summarise(
            ((a, s.score, s.flagged) for a, s in self._scores.items()), self.top_n
        )

    # ------------------------------------------------------------------ queries
    @property
    def n_pending(self) -> int:
        with self.locks.fields:
            return len(self._dirty | self._inflight)

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
        with self.locks.fields:
            last = self.store.last_seen.get(account_id)
            if last is None:
                return None
            pending = account_id in self._dirty or account_id in self._inflight
            return AccountView(account_id, last, pending, self._scores.get(account_id))

    def top_accounts(self, min_score: float = 0.0, limit: int = 100) -> list[AccountView]:
        """Scored accounts with ``score >= min_score``, highest first (ties by account id)."""
        with self.locks.fields:
            last_seen = self.store.last_seen
            hits = [(s.score, a, s) for a, s in self._scores.items() if s.score >= min_score]
            best = heapq.nsmallest(limit, hits, key=lambda t: (-t[0], t[1]))
            return [
                AccountView(a, last_seen[a], a in self._dirty or a in self._inflight, s)
                for _, a, s in best
            ]
