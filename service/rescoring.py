"""Scoring the accounts of the live window with THE pipeline (:mod:`detector.pipeline`).

- :func:`score_accounts`: the accounts touched since the last pass, scored on their window
  events with the whole window as context (its bounds and each model's first appearance), so
  that a score equals the offline audit's for the same window; the campaigns of the last
  campaign pass are applied to them (``campaigns=`` that pass's table).
- :func:`score_window`: the campaign pass — every account of the window, campaigns detected,
  exactly as the offline audit does.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import numpy as np
import polars as pl

from detector import pipeline
from detector.features import FEATURE_NAMES
from detector.models import DistillScorer
from detector.window import Window
from service.live_campaigns import TABLE_SCHEMA, LiveCampaigns
from service.records import AccountScore, CampaignPass


def score_accounts(
    window: pl.DataFrame,
    accounts: set[str],
    model: DistillScorer,
    accounts_table: pl.DataFrame | None,
    live: LiveCampaigns,
    verdicts: pl.DataFrame | None = None,
) -> dict[str, AccountScore]:
    """Features and scores of ``accounts`` over ``window``, with the campaign evidence of the
    last campaign pass (``live``) and the analyst's ``verdicts``."""
    ctx = Window.of(window)
    res = pipeline.score(
        window,
        model,
        accounts_table,
        only=accounts,
        window=ctx,
        campaigns=live.table,
        verdicts=verdicts,
    )
    mine = window.filter(pl.col("account_id").is_in(res.features["account_id"].implode()))
    return account_scores(res.accounts, res.alone, res.features, mine, (ctx.start, ctx.end))


def score_window(
    window: pl.DataFrame,
    model: DistillScorer,
    accounts_table: pl.DataFrame | None,
    verdicts: pl.DataFrame | None = None,
) -> tuple[dict[str, AccountScore], LiveCampaigns]:
    """The campaign pass: every account of ``window`` scored and campaigns detected, exactly
    as the offline audit does on the same events."""
    t0 = time.perf_counter()
    if window.height == 0:
        return {}, LiveCampaigns(last=CampaignPass(datetime.now(UTC), None, None, 0, 0, 0.0))
    ctx = Window.of(window)
    res = pipeline.score(
        window, model, accounts_table, window=ctx, campaigns=True, verdicts=verdicts
    )
    assert res.campaigns is not None
    table = res.campaigns.campaigns.select([pl.col(c).cast(t) for c, t in TABLE_SCHEMA.items()])
    scored = account_scores(res.accounts, res.alone, res.features, window, (ctx.start, ctx.end))
    done = CampaignPass(
        datetime.now(UTC),
        ctx.start,
        ctx.end,
        window.height,
        res.features.height,
        time.perf_counter() - t0,
    )
    return scored, LiveCampaigns.from_table(table, done)


def account_scores(
    final: pl.DataFrame,
    alone: pl.DataFrame,
    feats: pl.DataFrame,
    events: pl.DataFrame,
    bounds: tuple[datetime, datetime],
) -> dict[str, AccountScore]:
    """AccountScore per account of ``final`` (scores with campaign evidence), with its own
    score (``alone``), features (``feats``), event count (in ``events``) and the window
    ``bounds``."""
    counts = dict(events.group_by("account_id").len().iter_rows())
    row_of = {a: i for i, a in enumerate(feats["account_id"].to_list())}
    values = feats.select(FEATURE_NAMES).to_numpy().astype(np.float64)
    own = dict(zip(alone["account_id"].to_list(), alone["score"].to_list(), strict=True))
    now = datetime.now(UTC)
    out: dict[str, AccountScore] = {}
    rows = final.select("account_id", "score", "raw_score", "flagged", "reasons").iter_rows()
    for acc, score, raw, flagged, reasons in rows:
        out[acc] = AccountScore(
            score=float(score),
            raw_score=float(raw),
            flagged=bool(flagged),
            reasons=tuple(reasons or ()),
            features=values[row_of[acc]].copy(),
            n_events=int(counts.get(acc, 0)),
            window_start=bounds[0],
            window_end=bounds[1],
            scored_at=now,
            score_alone=float(own[acc]),
        )
    return out
