"""Value types the scoring state hands out, and the per-account table of a snapshot."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import polars as pl

from detector.features import FEATURE_NAMES
from detector.models import DistillScorer

TS = pl.Datetime("us", "UTC")


@dataclass(slots=True)
class AccountScore:
    """An account's latest score, and the window it was computed on."""

    score: float
    raw_score: float
    flagged: bool
    reasons: tuple[str, ...]
    features: np.ndarray  # float64, FEATURE_NAMES order, NaN = null
    n_events: int
    window_start: datetime
    window_end: datetime
    scored_at: datetime
    score_alone: float | None = None  # before campaign evidence; None: same as ``score``

    def feature_dict(self) -> dict[str, float | None]:
        return {
            n: (None if np.isnan(v) else float(v))
            for n, v in zip(FEATURE_NAMES, self.features, strict=True)
        }


@dataclass(frozen=True)
class AccountView:
    account_id: str
    last_seen: datetime
    pending: bool  # has events not yet reflected in its score
    score: AccountScore | None


@dataclass(frozen=True)
class CampaignView:
    """A group of linked accounts found by the last campaign pass (see
    :mod:`service.live_campaigns`)."""

    campaign_id: str
    score: float
    members: tuple[str, ...]
    reasons: tuple[str, ...] = ()
    lift: float = 0.0  # raw-score units added to its members (0: it lifts nobody)
    strength: float = 0.0  # 0-1, how unusual its typical member is on its own
    median_score: float | None = None  # its typical member's own score
    n_flagged_alone: int = 0  # members flagged on their own


@dataclass(frozen=True)
class CampaignPass:
    """What the last campaign pass saw, and when."""

    computed_at: datetime
    window_start: datetime | None
    window_end: datetime | None
    n_events: int
    n_accounts: int
    duration_s: float


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    stale_rows: list[int] = field(default_factory=list)  # 0-based rows of the input frame
    future_rows: list[int] = field(default_factory=list)  # 0-based rows, ahead of the clock
    future_limit: datetime | None = None  # the newest timestamp accepted
    dropped_accounts: int = 0  # accounts ingest dropped to hold max_accounts
    seq: int | None = None


@dataclass
class RescoreReport:
    rescored: int = 0
    campaign_pass: bool = False  # the pass rescored the whole window and found campaigns
    campaigns: int = 0  # campaigns found (campaign passes only)
    duration_s: float = 0.0
    expired_events: int = 0
    capped_events: int = 0
    dropped_account_events: int = 0
    evicted_accounts: int = 0
    dropped_accounts: int = 0


def _alone(rec: AccountScore | None) -> float | None:
    if rec is None:
        return None
    return rec.score if rec.score_alone is None else rec.score_alone


def accounts_frame(
    last_seen: dict[str, datetime], scores: dict[str, AccountScore], dirty: set[str]
) -> pl.DataFrame:
    """Per-account snapshot table (scores null for accounts never scored)."""
    ids = list(last_seen)
    recs = [scores.get(a) for a in ids]
    ts = TS
    nan_row = np.full(len(FEATURE_NAMES), np.nan)
    feats = np.array([r.features if r else nan_row for r in recs]).reshape(-1, len(FEATURE_NAMES))
    base = pl.DataFrame(
        {
            "account_id": pl.Series(ids, dtype=pl.String),
            "last_seen": pl.Series([last_seen[a] for a in ids], dtype=ts),
            "dirty": pl.Series([a in dirty for a in ids], dtype=pl.Boolean),
            "score": pl.Series([r.score if r else None for r in recs], dtype=pl.Float64),
            "score_alone": pl.Series([_alone(r) for r in recs], dtype=pl.Float64),
            "raw_score": pl.Series([r.raw_score if r else None for r in recs], dtype=pl.Float64),
            "flagged": pl.Series([r.flagged if r else None for r in recs], dtype=pl.Boolean),
            "reasons": pl.Series(
                [list(r.reasons) if r else None for r in recs], dtype=pl.List(pl.String)
            ),
            "n_events": pl.Series([r.n_events if r else None for r in recs], dtype=pl.Int64),
            "window_start": pl.Series([r.window_start if r else None for r in recs], dtype=ts),
            "window_end": pl.Series([r.window_end if r else None for r in recs], dtype=ts),
            "scored_at": pl.Series([r.scored_at if r else None for r in recs], dtype=ts),
        }
    )
    return base.with_columns(
        pl.Series(name, feats[:, j], dtype=pl.Float64) for j, name in enumerate(FEATURE_NAMES)
    )


def accounts_from_frame(
    frame: pl.DataFrame,
) -> tuple[dict[str, datetime], set[str], dict[str, AccountScore]]:
    """Inverse of :func:`accounts_frame`: last seen, dirty accounts, scores."""
    last_seen: dict[str, datetime] = {}
    dirty: set[str] = set()
    scores: dict[str, AccountScore] = {}
    values = frame.select(FEATURE_NAMES).to_numpy().astype(np.float64)
    if "score_alone" not in frame.columns:  # a snapshot from before campaigns
        frame = frame.with_columns(pl.col("score").alias("score_alone"))
    cols = ["account_id", "last_seen", "dirty", "score", "raw_score", "flagged", "reasons"]
    cols += ["n_events", "window_start", "window_end", "scored_at", "score_alone"]
    for i, row in enumerate(frame.select(cols).iter_rows()):
        acc, last, is_dirty, score, raw, flagged, reasons, n, lo, hi, at, alone = row
        last_seen[acc] = last
        if is_dirty:
            dirty.add(acc)
        if score is not None:
            scores[acc] = AccountScore(
                float(score), float(raw), bool(flagged), tuple(reasons or ()),
                values[i].copy(), int(n), lo, hi, at, float(alone),
            )  # fmt: skip
    return last_seen, dirty, scores


def model_identity(model: DistillScorer) -> dict[str, Any]:
    """What identifies a fitted model across restarts (a change rescores every account)."""
    info = model.info()
    out = {k: info.get(k) for k in ("trained_at", "n_train", "threshold", "features")}
    out["detectors"] = list(getattr(model, "detectors", ()))
    out["reference_sha1"] = model.calibration_sha1()
    return out
