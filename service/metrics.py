"""Prometheus metrics of the service, all on an injected :class:`CollectorRegistry`.

Naming: prefix ``distillguard_``, base units (seconds), counters end ``_total``. Nothing is
labelled by account except ``distillguard_top_account_score`` (label ``account_id`` only), a
custom collector rebuilt at each scrape from the latest rescoring summary and capped at N. Its
churn is bounded: at most N series at a time, and a new series only when an account enters the
top N (no rank label: a rank label made a new series at every reordering, several per account).
Sort by value for the ranking.

Counters and histograms are updated as things happen (ingest, rescoring passes). Everything that
describes the *current* state (accounts tracked, window size, score distribution, severity
bands, snapshot age, campaigns, the top-N) is read from the state at scrape time by
:class:`StateCollector`. The score distribution is a *gauge histogram* (OpenMetrics
``gaugehistogram``): bucket counts of the current scores, which may go down. An ordinary
``Histogram`` observed at each pass would instead accumulate every rescoring forever.
"""

from __future__ import annotations

import importlib.metadata
from collections import Counter as TallyCounter
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, Info
from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from detector.severity import SEVERITY_BANDS, bands_text
from service.ingest import REJECT_REASONS, REQUEST_REJECT_REASONS
from service.records import RescoreReport
from service.state import ScoringState
from service.wal import SkippedRecord

STORAGE_PARTS = ("log", "snapshot")
WAL_DAMAGE_KINDS = ("checksum", "header", "torn")

CAMPAIGN_SIZE_BUCKETS = (2, 3, 5, 10, 20, 50, 100, 500, 1000)
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
RESCORE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def package_version() -> str:
    try:
        return importlib.metadata.version("distillguard")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        return "unknown"


class StateCollector(Collector):
    """Current-state gauges and the top-N suspicious accounts, built at scrape time."""

    def __init__(self, top_n: int) -> None:
        self.top_n = top_n
        self.state: ScoringState | None = None

    def describe(self) -> Iterable[Metric]:
        return list(self._families(None))

    def collect(self) -> Iterable[Metric]:
        return list(self._families(self.state))

    def _families(self, st: ScoringState | None) -> Iterator[Metric]:
        ready = st is not None and st.ready and st.health.problem is None
        yield GaugeMetricFamily(
            "distillguard_state_ready",
            "1 while /readyz answers 200: the model loaded, the state restored and its storage "
            "(write-ahead log, snapshots) working.",
            value=1.0 if ready else 0.0,
        )
        failing = GaugeMetricFamily(
            "distillguard_storage_failing",
            "1 while a part of the state's storage is failing (log: write-ahead log writes; "
            "snapshot: the last snapshot), until it works again.",
            labels=["part"],
        )
        for part in STORAGE_PARTS:
            failing.add_metric([part], 1.0 if st is not None and st.health.failing(part) else 0.0)
        yield failing
        yield GaugeMetricFamily(
            "distillguard_accounts_tracked",
            "Accounts with events in the window.",
            value=st.n_accounts if st else 0,
        )
        yield GaugeMetricFamily(
            "distillguard_accounts_pending",
            "Accounts with events not yet reflected in their score (rescored at the next pass).",
            value=st.n_pending if st else 0,
        )
        yield GaugeMetricFamily(
            "distillguard_window_events",
            "Events held in the sliding window (compact, or queued for fingerprinting).",
            value=st.n_events if st else 0,
        )
        yield GaugeMetricFamily(
            "distillguard_fingerprint_queue_events",
            "Acknowledged events waiting to be fingerprinted into the window (counted in "
            "distillguard_window_events; their accounts are pending).",
            value=st.n_queued if st else 0,
        )
        end = st.window_end if st else None
        if end is not None:
            yield GaugeMetricFamily(
                "distillguard_window_end_timestamp_seconds",
                "Event time of the newest event in the window (Unix seconds).",
                value=end.timestamp(),
            )
        summary = st.summary if st else None
        sev = GaugeMetricFamily(
            "distillguard_accounts_by_severity",
            f"Scored accounts per severity band of the score ({bands_text()}; bands are "
            "exclusive).",
            labels=["severity"],
        )
        for band, _ in SEVERITY_BANDS:
            sev.add_metric([band], summary.by_severity.get(band, 0) if summary else 0)
        yield sev
        yield GaugeMetricFamily(
            "distillguard_flagged_accounts",
            "Accounts whose score is at or above the model's flag threshold.",
            value=summary.n_flagged if summary else 0,
        )
        buckets = [(_le(b), float(c)) for b, c in summary.buckets] if summary else []
        yield GaugeHistogramMetricFamily(
            "distillguard_account_score",
            "Distribution of the current account scores (0-100), refreshed at each rescoring.",
            buckets=[*buckets, ("+Inf", float(summary.n_scored if summary else 0))],
            gsum_value=summary.score_sum if summary else 0.0,
        )
        age = st.snapshot_age_s() if st else None
        if age is not None:
            yield GaugeMetricFamily(
                "distillguard_snapshot_age_seconds",
                "Seconds since the last completed state snapshot.",
                value=age,
            )
        yield from _campaign_families(st.campaigns if st else {})
        top = GaugeMetricFamily(
            "distillguard_top_account_score",
            f"Score of the {self.top_n} most suspicious accounts (the only metric labelled by "
            "account: at most N series at a time, a new one only when an account enters the "
            "top N; sort by value for the ranking).",
            labels=["account_id"],
        )
        for acc, score in (summary.top if summary else ())[: self.top_n]:
            top.add_metric([acc], score)
        yield top


def _le(bound: float) -> str:
    return f"{bound:g}"


def _campaign_families(campaigns: dict[str, Any]) -> Iterator[Metric]:
    """Campaign metrics from the last live campaign pass (``state.campaigns``)."""
    sizes = [len(getattr(c, "members", ())) for c in campaigns.values()]
    yield GaugeMetricFamily(
        "distillguard_campaigns", "Campaigns (groups of linked accounts) detected.", len(sizes)
    )
    yield GaugeHistogramMetricFamily(
        "distillguard_campaign_size",
        "Distribution of campaign sizes (member accounts).",
        buckets=[
            *[(str(b), float(sum(s <= b for s in sizes))) for b in CAMPAIGN_SIZE_BUCKETS],
            ("+Inf", float(len(sizes))),
        ],
        gsum_value=float(sum(sizes)),
    )


class ServiceMetrics:
    """Every metric of the service, registered on ``registry`` (never the global one)."""

    def __init__(self, registry: CollectorRegistry, *, top_n: int) -> None:
        self.registry = registry
        r = registry
        self.events_ingested = Counter(
            "distillguard_events_ingested",
            "Events accepted into the window (valid, new request_id, inside the window).",
            registry=r,
        )
        self.events_duplicate = Counter(
            "distillguard_events_duplicate",
            "Events ignored because their request_id is already in the window (replays).",
            registry=r,
        )
        self.events_rejected = Counter(
            "distillguard_events_rejected",
            "Events (lines) rejected, by reason.",
            ["reason"],
            registry=r,
        )
        for reason in REJECT_REASONS:
            self.events_rejected.labels(reason)
        self.requests_rejected = Counter(
            "distillguard_ingest_requests_rejected",
            "POST /v1/events requests refused as a whole, by reason.",
            ["reason"],
            registry=r,
        )
        for reason in REQUEST_REJECT_REASONS:
            self.requests_rejected.labels(reason)
        self.ingest_duration = Histogram(
            "distillguard_ingest_batch_duration_seconds",
            "Time to ingest one POST /v1/events body: read, wait for a worker, decode, "
            "validate, fingerprint, write-ahead log (fsync) and apply.",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.rescore_duration = Histogram(
            "distillguard_rescore_duration_seconds",
            "Duration of one rescoring pass (window compaction, eviction, features, scoring).",
            buckets=RESCORE_BUCKETS,
            registry=r,
        )
        self.accounts_rescored = Counter(
            "distillguard_accounts_rescored", "Account rescorings performed.", registry=r
        )
        self.accounts_evicted = Counter(
            "distillguard_accounts_evicted",
            "Accounts forgotten because they were idle past the window.",
            registry=r,
        )
        self.accounts_dropped = Counter(
            "distillguard_accounts_dropped",
            "Accounts dropped (least recently seen first) to stay under max_accounts, by "
            "ingest (as it takes the count past the cap) or by a pass.",
            registry=r,
        )
        self.window_events_evicted = Counter(
            "distillguard_window_events_evicted",
            "Events removed from the window: expired (older than the window), cap "
            "(max_window_events) or account_dropped (max_accounts).",
            ["reason"],
            registry=r,
        )
        for reason in ("expired", "cap", "account_dropped"):
            self.window_events_evicted.labels(reason)
        self.snapshot_duration = Histogram(
            "distillguard_snapshot_duration_seconds",
            "Time to write one state snapshot.",
            buckets=RESCORE_BUCKETS,
            registry=r,
        )
        self.snapshot_failures = Counter(
            "distillguard_snapshot_failures", "Snapshots that failed to be written.", registry=r
        )
        self.wal_records_corrupt = Counter(
            "distillguard_wal_records_corrupt",
            "Damaged write-ahead log records skipped at start-up, by kind: checksum (a payload "
            "whose checksum fails, skipped by its length), header (a damaged header: skipped "
            "to the next valid record), torn (an incomplete record at a segment's end: a write "
            "never acknowledged, or truncated). The log names each file and offset.",
            ["kind"],
            registry=r,
        )
        for kind in WAL_DAMAGE_KINDS:
            self.wal_records_corrupt.labels(kind)
        self.model_info = Info(
            "distillguard_model", "The loaded scorer (label values only).", registry=r
        )
        self.state_collector = StateCollector(top_n)
        r.register(self.state_collector)

    def bind(self, state: ScoringState) -> None:
        """Expose ``state`` through the scrape-time collector."""
        self.state_collector.state = state

    def set_model(self, info: dict[str, Any]) -> None:
        self.model_info.info(
            {
                "version": str(info.get("distillguard") or package_version()),
                "trained_at": str(info.get("trained_at") or ""),
                "format_version": str(info.get("format_version") or ""),
                "supervised": str(info.get("supervised")).lower(),
                "threshold": f"{info.get('threshold') or 0:g}",
            }
        )

    def record_ingest(
        self,
        accepted: int,
        duplicates: int,
        rejected: dict[int, str],
        duration_s: float,
        dropped_accounts: int = 0,
    ) -> None:
        self.accounts_dropped.inc(dropped_accounts)
        self.events_ingested.inc(accepted)
        self.events_duplicate.inc(duplicates)
        for reason, n in TallyCounter(rejected.values()).items():
            self.events_rejected.labels(reason).inc(n)
        self.ingest_duration.observe(duration_s)

    def record_wal_damage(self, skipped: list[SkippedRecord]) -> None:
        for rec in skipped:
            self.wal_records_corrupt.labels(rec.reason).inc()

    def record_rescore(self, report: RescoreReport) -> None:
        self.rescore_duration.observe(report.duration_s)
        self.accounts_rescored.inc(report.rescored)
        self.accounts_evicted.inc(report.evicted_accounts)
        self.accounts_dropped.inc(report.dropped_accounts)
        self.window_events_evicted.labels("expired").inc(report.expired_events)
        self.window_events_evicted.labels("cap").inc(report.capped_events)
        self.window_events_evicted.labels("account_dropped").inc(report.dropped_account_events)
