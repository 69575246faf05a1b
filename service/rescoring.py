"""Scoring the accounts of the live window with THE feature code and the loaded model.

- :func:`score_accounts`: the accounts touched since the last pass, on their window events.
  :func:`detector.features.account_features`'s only cross-account inputs are the window bounds
  (passed explicitly) and each model's first appearance in the whole window (passed as
  ``model_first_seen``), so a score equals the offline
  ``score_with_slices(model, ...)`` (the model's score, lifted by IP / key slices of
  multi-tenant accounts) for the same window. The campaigns of the
  last campaign pass are then applied (:meth:`service.live_campaigns.LiveCampaigns.apply`).
- :func:`score_window`: the campaign pass — every account of the window, then
  :func:`detector.campaigns.detect_campaigns`, as the offline audit does.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import numpy as np
import polars as pl

from detector.features import FEATURE_NAMES, account_features
from detector.models import DistillScorer
from detector.subaccounts import score_with_slices
from service.live_campaigns import LiveCampaigns, campaign_pass
from service.records import AccountScore, CampaignPass


def _bounds(window: pl.DataFrame) -> tuple[datetime, datetime]:
    lo: datetime = window["ts"].min()  # type: ignore[assignment]
    hi: datetime = window["ts"].max()  # type: ignore[assignment]
    return lo, hi


def score_accounts(
    window: pl.DataFrame,
    accounts: set[str],
    model: DistillScorer,
    accounts_table: pl.DataFrame | None,
    live: LiveCampaigns,
) -> dict[str, AccountScore]:
    """Features and scores of ``accounts`` over ``window``, with the campaign evidence of the
    last campaign pass (``live``)."""
    ids = pl.Series("account_id", sorted(accounts), dtype=pl.String)
    mine = pl.col("account_id").is_in(ids.implode())
    sub = window.filter(mine)
    # when each model first appears in the whole window ("new model" feature)
    first_seen = window.group_by("model").agg(pl.col("ts").min().alias("first_ts"))
    lo, hi = _bounds(window)
    feats = account_features(
        sub.lazy(), accounts_table, window_start=lo, window_end=hi, model_first_seen=first_seen
    ).collect()
    alone = score_with_slices(
        model,
        sub,
        feats,
        accounts_table,
        window_start=lo,
        window_end=hi,
        model_first_seen=first_seen,
    )
    return account_scores(live.apply(alone, model), alone, feats, sub, (lo, hi))


def score_window(
    window: pl.DataFrame, model: DistillScorer, accounts_table: pl.DataFrame | None
) -> tuple[dict[str, AccountScore], LiveCampaigns]:
    """The campaign pass: every account of ``window`` scored and campaigns detected, exactly
    as the offline audit does on the same events."""
    t0 = time.perf_counter()
    if window.height == 0:
        return {}, LiveCampaigns(last=CampaignPass(datetime.now(UTC), None, None, 0, 0, 0.0))
    lo, hi = _bounds(window)
    feats = account_features(
        window.lazy(), accounts_table, window_start=lo, window_end=hi
    ).collect()
    alone = score_with_slices(model, window, feats, accounts_table, window_start=lo, window_end=hi)
    final, table = campaign_pass(window, alone, feats, accounts_table, model)
    scored = account_scores(final, alone, feats, window, (lo, hi))
    done = CampaignPass(
        datetime.now(UTC), lo, hi, window.height, feats.height, time.perf_counter() - t0
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
