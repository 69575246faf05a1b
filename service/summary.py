"""Aggregates of the current account scores, rebuilt after each rescoring pass.

The metrics collector reads the latest :class:`ScoreSummary` at scrape time, so a scrape costs
O(top_n), never O(accounts).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from detector.severity import SEVERITY_BANDS

# Upper bounds of the score histogram's buckets (cumulative, Prometheus style; +Inf added).
SCORE_BUCKETS: tuple[float, ...] = (10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 100.0)


@dataclass(frozen=True)
class ScoreSummary:
    """Distribution of the current scores and the top-N accounts."""

    n_scored: int = 0
    n_flagged: int = 0
    by_severity: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys((b for b, _ in SEVERITY_BANDS), 0)
    )
    buckets: tuple[tuple[float, int], ...] = tuple((b, 0) for b in SCORE_BUCKETS)
    score_sum: float = 0.0
    top: tuple[tuple[str, float], ...] = ()


def summarise(scored: Iterable[tuple[str, float, bool]], top_n: int) -> ScoreSummary:
    """Summary of ``(account_id, score, flagged)`` triples."""
    items = list(scored)
    if not items:
        return ScoreSummary()
    ids = [a for a, _, _ in items]
    scores = np.fromiter((s for _, s, _ in items), dtype=np.float64, count=len(items))
    flagged = int(sum(1 for _, _, f in items if f))
    by_sev: dict[str, int] = {}
    upper = np.inf
    for name, lower in SEVERITY_BANDS:
        by_sev[name] = int(((scores >= lower) & (scores < upper)).sum())
        upper = lower
    sorted_scores = np.sort(scores)
    buckets = tuple(
        (b, int(np.searchsorted(sorted_scores, b, side="right"))) for b in SCORE_BUCKETS
    )
    top: tuple[tuple[str, float], ...] = ()
    if top_n > 0:
        k = min(top_n, len(items))
        # highest score first, ties by account id (stable, deterministic ranks)
        idx = np.argpartition(-scores, k - 1)[:k] if k < len(items) else np.arange(len(items))
        cut = scores[idx].min()
        cand = np.nonzero(scores >= cut)[0]
        ordered = sorted(cand.tolist(), key=lambda i: (-scores[i], ids[i]))[:k]
        top = tuple((ids[i], float(scores[i])) for i in ordered)
    return ScoreSummary(
        n_scored=len(items),
        n_flagged=flagged,
        by_severity=by_sev,
        buckets=buckets,
        score_sum=float(scores.sum()),
        top=top,
    )
