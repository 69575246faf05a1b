"""The webhook sink: a signed JSON notice when an account or a campaign newly reaches a severity
band (:mod:`detector.severity`), for a chat tool or a ticketing system.

**When.** After every rescoring pass, :class:`SeverityWatch` compares each rescored account's
band with the highest band already notified for it (and, after a campaign pass, each
campaign's); a notice goes out when an account or campaign reaches a band at or above
``webhook_min_severity`` that is higher than any it was notified for, so a score that wavers
around a bound notifies once. Allow-listed accounts never notify. At start, the bands of the
restored scores count as notified (a restart sends nothing again). A campaign whose members
change gets a new id; it inherits the notified band of the earlier campaign it shares most of
its members with, so a growing campaign does not notify at every pass.

**Delivery.** A background task POSTs the notices one at a time (JSON body; headers
``X-Distillguard-Event``, ``X-Distillguard-Delivery`` (the same id on every retry of a
notice), ``X-Distillguard-Timestamp`` (unix seconds) and ``X-Distillguard-Signature:
sha256=<hex>``, the HMAC-SHA256 with ``webhook_secret`` of ``"<timestamp>.<body>"``). A
timeout, a connection error, a 408, 429 or 5xx answer is retried after ``webhook_backoff_s``,
doubled after each failure (at most 300 s), up to ``webhook_max_attempts`` tries; another
answer of 400-499 is not retried. Notices wait in a queue of at most :data:`MAX_QUEUE`;
passes only enqueue them, so a slow or failing receiver never holds up ingest or scoring.
Metrics: ``distillguard_webhook_failures_total{reason}``,
``distillguard_webhook_deliveries_total``, ``distillguard_webhook_queue_length``.

**Payload** (``build_account_notice`` / ``build_campaign_notice``): ``event``
(``account.severity`` or ``campaign.severity``), ``text`` (one line a chat tool shows as is:
Slack's and Mattermost's incoming webhooks read ``text``), ``severity`` and
``previous_severity``, the id, ``score`` and its ``reading``, ``flagged``, the top reasons, and
``links`` to the API paths of the account, its campaign and its verdict.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge

from detector.calibration import score_reading
from detector.severity import SEVERITY_BANDS, severity
from service.live_campaigns import LiveCampaigns
from service.records import AccountScore, CampaignView

log = logging.getLogger("distillguard.webhook")

MAX_QUEUE = 10_000
MAX_BACKOFF_S = 300.0
TIMEOUT_S = 10.0
TOP_REASONS = 3
RETRIED_STATUS = frozenset({408, 429})
# band -> rank (0: no band)
RANK: dict[str | None, int] = {None: 0} | {
    name: len(SEVERITY_BANDS) - i for i, (name, _) in enumerate(SEVERITY_BANDS)
}


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 with ``secret`` of ``timestamp + "." + body``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def _account_path(account_id: str) -> str:
    return "/v1/accounts/" + quote(account_id, safe="")


def build_account_notice(
    account_id: str, rec: AccountScore, band: str, before: str | None, campaign: str | None
) -> dict[str, Any]:
    reasons = list(rec.reasons[:TOP_REASONS])
    headline = reasons[0].split(" — ")[0] if reasons else "a combination of moderate signals"
    path = _account_path(account_id)
    links = {"account": path, "verdict": path + "/verdict"}
    if campaign:
        links["campaign"] = f"/v1/campaigns/{quote(campaign, safe='')}"
    return {
        "event": "account.severity",
        "text": (
            f"distillguard: account {account_id} is now {band.upper()} (score {rec.score:.2f}, "
            f"{score_reading(rec.score)}): {headline}"
        ),
        "severity": band,
        "previous_severity": before,
        "account_id": account_id,
        "score": rec.score,
        "reading": score_reading(rec.score),
        "flagged": rec.flagged,
        "reasons": reasons,
        "campaign_id": campaign,
        "n_events": rec.n_events,
        "window_end": rec.window_end.isoformat(),
        "links": links,
    }


def build_campaign_notice(view: CampaignView, band: str, before: str | None) -> dict[str, Any]:
    reasons = list(view.reasons[:TOP_REASONS])
    return {
        "event": "campaign.severity",
        "text": (
            f"distillguard: campaign {view.campaign_id} ({len(view.members)} accounts) is now "
            f"{band.upper()} (score {view.score:.2f}, {score_reading(view.score)}): "
            f"{reasons[0] if reasons else ''}"
        ),
        "severity": band,
        "previous_severity": before,
        "campaign_id": view.campaign_id,
        "score": view.score,
        "reading": score_reading(view.score),
        "n_members": len(view.members),
        "members": list(view.members[:50]),
        "reasons": reasons,
        "links": {"campaign": f"/v1/campaigns/{quote(view.campaign_id, safe='')}"},
    }


@dataclass
class SeverityWatch:
    """The highest band notified per account and campaign (see the module docstring)."""

    min_rank: int = RANK["high"]
    accounts: dict[str, int] = field(default_factory=dict)
    campaigns: dict[str, int] = field(default_factory=dict)
    members: dict[str, frozenset[str]] = field(default_factory=dict)  # of notified campaigns

    def seed(self, scores: Iterable[tuple[str, float]], views: Iterable[CampaignView]) -> None:
        """The restored state's bands count as notified."""
        for acc, score in scores:
            if RANK[severity(score)]:
                self.accounts[acc] = RANK[severity(score)]
        for v in views:
            if RANK[severity(v.score)]:
                self.campaigns[v.campaign_id] = RANK[severity(v.score)]
                self.members[v.campaign_id] = frozenset(v.members)

    def account_notices(
        self,
        scored: dict[str, AccountScore],
        allowed: set[str],
        campaign_of: dict[str, str],
    ) -> list[dict[str, Any]]:
        out = []
        for acc, rec in scored.items():
            band = severity(rec.score)
            rank, before = RANK[band], self.accounts.get(acc, 0)
            if band is None or rank <= before or acc in allowed:
                continue
            self.accounts[acc] = rank
            if rank >= self.min_rank:
                previous = _band_of(before)
                out.append(build_account_notice(acc, rec, band, previous, campaign_of.get(acc)))
        return out

    def campaign_notices(self, live: LiveCampaigns) -> list[dict[str, Any]]:
        out = []
        for cid, view in live.views.items():
            band = severity(view.score)
            if band is None:
                continue
            before = self.campaigns.get(cid)
            if before is None:
                before = self._inherited(frozenset(view.members))
            rank = RANK[band]
            self.campaigns[cid] = max(rank, before)
            self.members[cid] = frozenset(view.members)
            if rank > before and rank >= self.min_rank:
                out.append(build_campaign_notice(view, band, _band_of(before)))
        return out

    def _inherited(self, members: frozenset[str]) -> int:
        """The band of the notified campaign sharing the most members with ``members`` (at
        least half of the smaller of the two); 0 when none does."""
        best, overlap = 0, 0
        for cid, theirs in self.members.items():
            shared = len(members & theirs)
            if shared * 2 >= min(len(members), len(theirs)) and shared > overlap:
                best, overlap = self.campaigns.get(cid, 0), shared
        return best


def _band_of(rank: int) -> str | None:
    return next((name for name, r in RANK.items() if r == rank and name), None)


class WebhookMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.failures = Counter(
            "distillguard_webhook_failures",
            "Failed webhook tries, by reason: status (a 4xx or 5xx answer), transport (timeout, "
            "connection), gave_up (a notice dropped after its last try or a 4xx), queue_full "
            "(the oldest waiting notice dropped).",
            ["reason"],
            registry=registry,
        )
        self.deliveries = Counter(
            "distillguard_webhook_deliveries",
            "Webhook notices delivered (answered 2xx).",
            registry=registry,
        )
        self.queue = Gauge(
            "distillguard_webhook_queue_length",
            "Webhook notices waiting to be delivered (retries included).",
            registry=registry,
        )
        for reason in ("status", "transport", "gave_up", "queue_full"):
            self.failures.labels(reason)


@dataclass
class _Notice:
    body: bytes
    event: str
    delivery: str


class WebhookSink:
    """Queues notices from any thread and delivers them from one asyncio task (module
    docstring)."""

    def __init__(
        self,
        url: str,
        secret: str,
        registry: CollectorRegistry,
        *,
        max_attempts: int = 8,
        backoff_s: float = 1.0,
        timeout_s: float = TIMEOUT_S,
        max_queue: int = MAX_QUEUE,
    ) -> None:
        self.url = url
        self.secret = secret
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.max_queue = max_queue
        self.metrics = WebhookMetrics(registry)
        self._queue: deque[_Notice] = deque()
        self._ready = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="distillguard-webhook")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def submit(self, notices: list[dict[str, Any]]) -> None:
        """Queue ``notices`` (from any thread; never blocks)."""
        if not notices or self._loop is None:
            return
        sent_at = datetime.now(UTC).isoformat(timespec="seconds")
        items = [
            _Notice(
                json.dumps(n | {"sent_at": sent_at}).encode(), str(n["event"]), uuid.uuid4().hex
            )
            for n in notices
        ]
        try:
            self._loop.call_soon_threadsafe(self._enqueue, items)
        except RuntimeError:  # the loop closed (shutdown) while a pass was finishing
            log.warning("webhook: %d notices not queued (shutting down)", len(items))

    def _enqueue(self, items: list[_Notice]) -> None:
        for item in items:
            if len(self._queue) >= self.max_queue:
                self._queue.popleft()
                self.metrics.failures.labels("queue_full").inc()
            self._queue.append(item)
        self.metrics.queue.set(len(self._queue))
        self._ready.set()

    async def _run(self) -> None:
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            while True:
                await self._ready.wait()
                if not self._queue:
                    self._ready.clear()
                    continue
                notice = self._queue[0]
                try:
                    await self._deliver(client, notice)
                except asyncio.CancelledError:
                    raise
                except Exception:  # never let one notice stop the sink
                    log.exception("webhook delivery failed unexpectedly")
                    self.metrics.failures.labels("gave_up").inc()
                if self._queue and self._queue[0] is notice:
                    self._queue.popleft()
                self.metrics.queue.set(len(self._queue))

    async def _deliver(self, client: httpx.AsyncClient, notice: _Notice) -> None:
        wait = self.backoff_s
        for attempt in range(1, self.max_attempts + 1):
            stamp = str(int(time.time()))
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "distillguard-webhook",
                "X-Distillguard-Event": notice.event,
                "X-Distillguard-Delivery": notice.delivery,
                "X-Distillguard-Timestamp": stamp,
                "X-Distillguard-Signature": signature(self.secret, stamp, notice.body),
            }
            retry = True
            try:
                r = await client.post(self.url, content=notice.body, headers=headers)
            except httpx.HTTPError as exc:
                self.metrics.failures.labels("transport").inc()
                log.warning("webhook try %d failed: %s", attempt, exc)
            else:
                if r.is_success:
                    self.metrics.deliveries.inc()
                    return
                self.metrics.failures.labels("status").inc()
                retry = r.status_code >= 500 or r.status_code in RETRIED_STATUS
                log.warning("webhook try %d answered %d", attempt, r.status_code)
            if not retry or attempt == self.max_attempts:
                break
            await asyncio.sleep(wait)
            wait = min(wait * 2, MAX_BACKOFF_S)
        self.metrics.failures.labels("gave_up").inc()
        log.error("webhook notice %s given up", notice.delivery)
