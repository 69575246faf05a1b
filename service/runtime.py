"""The service's lifecycle: load the model, restore the state, run the background loops.

:class:`Runtime` is what the FastAPI lifespan starts and stops (``main.py`` only wires it):

- ``start``: load the scorer (a failure aborts start-up), then in the background: warm the
  fingerprint kernel and the model up (numba compiles the kernel on an installation's first
  run; models saved before 2026-11-22's numpy HBOS hold pyod's, which compiles on first use;
  the warm-up also loads the scoring code paths), restore the snapshot and replay the
  write-ahead log, mark the state ready and start the fingerprinting, rescoring and snapshot
  loops (a campaign pass is a rescoring pass of the whole window, run by the same loop when
  due). The fingerprinting loop turns the acknowledged batches queued by ingest into compact
  window events every ``FINGERPRINT_INTERVAL_S``, a chunk of all of them at a time.
- storage: while a part of the state's storage fails (:class:`service.durability.StorageHealth`:
  a log write, a snapshot), ``/readyz`` answers 503 with the reason; a probe retries the log
  every ``STORAGE_PROBE_INTERVAL_S`` (a durable write where it writes), a failed snapshot is
  retried after ``SNAPSHOT_RETRY_S`` (not the full interval); either success clears it.
- webhook (``webhook_url`` set): each pass's scores go to a :class:`service.webhook.SeverityWatch`
  whose notices a :class:`service.webhook.WebhookSink` delivers from its own task.
- ``stop``: stop the loops and write a final snapshot (only if the state was fully restored:
  a half-restored state must never overwrite a good snapshot).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import numpy as np
import polars as pl

from detector.features import FEATURE_NAMES
from detector.fingerprints import fingerprint_events
from detector.io.schema import empty_events
from detector.models import DistillScorer
from detector.severity import SEVERITY_BANDS
from detector.verdicts import allow_listed
from service import access_log
from service.live_campaigns import LiveCampaigns
from service.metrics import ServiceMetrics
from service.records import AccountScore
from service.settings import Settings, StateConfig
from service.state import ScoringState
from service.webhook import RANK, SeverityWatch, WebhookSink

log = logging.getLogger("distillguard.runtime")

FINGERPRINT_INTERVAL_S = 0.2  # 50k events/s -> 10k-event chunks (~half the per-event cost of 1k)
STORAGE_PROBE_INTERVAL_S = 2.0  # while the log fails: how often a probe tries it again
SNAPSHOT_RETRY_S = 10.0  # after a failed snapshot: the next try (at most snapshot_interval_s)


def warm_up(model: DistillScorer) -> None:
    """Fingerprint a dummy event and score dummy accounts, so that the first real batches and
    rescoring passes pay no compile cost: the fingerprint kernel is compiled by numba once per
    installation (~4 s, then cached on disk; loading the cache takes ~0.4 s). Scoring: one row,
    and several (only older model files hold pyod's numba HBOS, which compiles per array
    layout: a one-row matrix is C-contiguous, a taller one from polars is Fortran-ordered)."""
    fingerprint_events(empty_events().clear(1)).collect()
    for n in (1, 3):
        ids = [f"__warmup_{i}__" for i in range(n)]
        model.score(pl.DataFrame({"account_id": ids, **{f: np.zeros(n) for f in FEATURE_NAMES}}))


def pass_period(elapsed: float, interval: float, share: float) -> float:
    """Seconds from the start of a rescoring pass that took ``elapsed`` to the start of the
    next: ``interval``, or longer so that passes take at most ``share`` of the time."""
    return max(interval, elapsed / share)


def load_accounts_table(settings: Settings) -> pl.DataFrame | None:
    if settings.accounts_path is None:
        return None
    from detector.io.tables import load_accounts

    return load_accounts(settings.accounts_path)


class Runtime:
    """Owns the scoring state and its background tasks for one app instance."""

    def __init__(
        self, settings: Settings, metrics: ServiceMetrics, model: DistillScorer | None = None
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.model = model
        self.state: ScoringState | None = None
        self.error: str | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.ingest_slots: asyncio.Semaphore | None = None  # bodies in worker threads
        self.body_slots: asyncio.Semaphore | None = None  # bodies read or held in memory
        self.webhook: WebhookSink | None = None
        self.watch = SeverityWatch(RANK[settings.webhook_min_severity])

    async def start(self) -> None:
        s = self.settings
        self.ingest_slots = asyncio.Semaphore(s.ingest_workers)
        self.body_slots = asyncio.Semaphore(s.max_bodies_in_flight)
        access_log.install([*s.ingest_tokens, *s.read_tokens, *s.review_tokens])
        if self.model is None:
            self.model = await asyncio.to_thread(DistillScorer.load, s.model_path)
        accounts = await asyncio.to_thread(load_accounts_table, s)
        self.state = ScoringState(
            self.model,
            StateConfig.from_settings(s),
            state_dir=s.snapshot_path,
            accounts_table=accounts,
        )
        self.metrics.bind(self.state)
        self.metrics.set_model(self.model.info())
        if s.webhook_url is not None and s.webhook_secret:
            self.webhook = WebhookSink(
                s.webhook_url,
                s.webhook_secret,
                self.metrics.registry,
                max_attempts=s.webhook_max_attempts,
                backoff_s=s.webhook_backoff_s,
            )
            await self.webhook.start()
            self.state.passes.on_scored = self._notify
        if s.snapshot_path is None:
            log.warning("no snapshot_path: state is kept in memory only and lost at exit")
        self._tasks.append(asyncio.create_task(self._boot(), name="distillguard-boot"))

    async def _boot(self) -> None:
        assert self.state is not None and self.model is not None
        try:
            await asyncio.to_thread(warm_up, self.model)
            await asyncio.to_thread(self.state.restore)
        except Exception as exc:  # stay up but unready: /readyz and POSTs give the reason
            self.error = f"state restore failed: {type(exc).__name__}: {exc}"
            log.exception("state restore failed")
            return
        self.metrics.record_wal_damage(self.state.wal_skipped)
        if self.webhook is not None:  # what the restored state already shows is not news
            lowest = SEVERITY_BANDS[-1][1]
            views = self.state.top_accounts(lowest, max(self.state.n_accounts, 1))
            scores = [(v.account_id, v.score.score) for v in views if v.score is not None]
            self.watch.seed(scores, self.state.campaigns.values())
        self._tasks.append(
            asyncio.create_task(self._fingerprint_loop(), name="distillguard-fingerprint")
        )
        self._tasks.append(asyncio.create_task(self._rescore_loop(), name="distillguard-rescore"))
        if self.settings.snapshot_path is not None:
            self._tasks.append(
                asyncio.create_task(self._snapshot_loop(), name="distillguard-snapshot")
            )
            self._tasks.append(
                asyncio.create_task(self._storage_loop(), name="distillguard-storage")
            )

    async def rescore_once(self) -> None:
        assert self.state is not None
        report = await asyncio.to_thread(self.state.rescore)
        self.metrics.record_rescore(report)
        if report.duration_s > self.settings.rescore_interval_s:
            log.info(
                "%s pass took %.2f s (%d accounts, %d window events)",
                "campaign" if report.campaign_pass else "rescoring",
                report.duration_s,
                report.rescored,
                self.state.n_events,
            )

    async def snapshot_once(self) -> None:
        assert self.state is not None
        t0 = time.perf_counter()
        try:
            await asyncio.to_thread(self.state.snapshot)
        except Exception:
            self.metrics.snapshot_failures.inc()
            log.exception("snapshot failed")
            return
        self.metrics.snapshot_duration.observe(time.perf_counter() - t0)

    async def _fingerprint_loop(self) -> None:
        assert self.state is not None
        state = self.state
        while True:
            await asyncio.sleep(FINGERPRINT_INTERVAL_S)
            if state.n_queued:
                try:
                    await asyncio.to_thread(state.fingerprint_pending)
                except Exception:  # the events stay queued: the next round (or pass) retries
                    log.exception("fingerprinting failed")

    async def _rescore_loop(self) -> None:
        """A pass every ``rescore_interval_s`` (start to start), and never more than
        ``rescore_max_share`` of the time: after a pass of ``d`` seconds the next one starts
        ``d / rescore_max_share`` after it at the earliest. Under heavy ingest a pass costs
        more (more accounts touched, a bigger window) and the passes space out instead of
        taking the cores ingest needs; an event then waits about ``(1 + 1 / (2 * share))``
        pass durations (2 with the default share of 0.5)."""
        s = self.settings
        while True:
            started = time.monotonic()
            try:
                await self.rescore_once()
            except Exception:  # keep serving; the next pass retries the same accounts
                log.exception("rescoring pass failed")
            elapsed = time.monotonic() - started
            period = pass_period(elapsed, s.rescore_interval_s, s.rescore_max_share)
            await asyncio.sleep(max(0.0, period - elapsed))

    async def _snapshot_loop(self) -> None:
        assert self.state is not None
        interval = self.settings.snapshot_interval_s
        while True:
            failing = self.state.health.failing("snapshot")
            await asyncio.sleep(min(interval, SNAPSHOT_RETRY_S) if failing else interval)
            await self.snapshot_once()

    async def _storage_loop(self) -> None:
        """While the log is failing, probe it (a success reports it working again)."""
        assert self.state is not None
        state = self.state
        while True:
            await asyncio.sleep(STORAGE_PROBE_INTERVAL_S)
            if state.health.failing("log"):
                try:
                    if await asyncio.to_thread(state.probe_storage):
                        log.warning("write-ahead log writable again")
                except Exception:
                    log.exception("storage probe failed")

    def _notify(self, scored: dict[str, AccountScore], live: LiveCampaigns | None) -> None:
        """(The pass's thread.) Webhook notices of the accounts and campaigns of a pass that
        reached a new severity band."""
        assert self.state is not None and self.webhook is not None
        state = self.state
        notices = self.watch.account_notices(
            scored, allow_listed(state.verdicts.frame()), state.campaign_of
        )
        if live is not None:
            notices += self.watch.campaign_notices(live)
        self.webhook.submit(notices)

    def unready_reason(self) -> str | None:
        """Why the service cannot take traffic (None: it can): starting, a failed restore, or
        failing storage."""
        if self.error is not None:
            return self.error
        state = self.state
        if state is None or not state.ready:
            return "starting"
        return state.health.problem

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self.webhook is not None:
            await self.webhook.stop()
        state = self.state
        if state is not None and state.ready:
            if self.settings.snapshot_path is not None:
                await self.snapshot_once()
            state.close()
