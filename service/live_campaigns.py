"""Campaigns in the live service: the table of the last campaign pass, kept, served and
snapshotted.

A **campaign pass** (:func:`service.rescoring.score_window`) runs the pipeline
(:func:`detector.pipeline.score` with ``campaigns=True``) on the window as it stands — exactly
what the offline audit does, so right after a pass every account's live score equals the
offline score with campaigns on the same window. It runs every ``campaign_interval_s`` seconds
or every ``campaign_every_passes`` rescoring passes (whichever comes first), and only when the
window changed since the last one.

**Between passes** an account that receives events is rescored on its own and the last pass's
campaigns applied to it (:func:`detector.pipeline.score` with ``campaigns=`` this table): a
member of a lifting campaign gets ``max(raw, campaign median) + lift``, re-calibrated, with the
campaign as first reason. Accounts that appear after the last pass join a campaign at the next
one.

**Durability.** The campaign table of the last pass is written with each snapshot
(``campaigns.parquet``) and restored with it, so a restart serves the same campaigns and scores
at once; a pass then runs as soon as the window differs from the one it saw (log replay, or a
snapshot from before campaigns or from another model).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import polars as pl

from service.records import CampaignPass, CampaignView

# the campaign summary columns kept live and in snapshots (applying a pass reads the first six)
TABLE_SCHEMA: dict[str, pl.DataType] = {
    "campaign_id": pl.String(),
    "score": pl.Float64(),
    "lift": pl.Float64(),
    "median_raw": pl.Float64(),
    "evidence": pl.List(pl.String()),
    "members": pl.List(pl.String()),
    "n_members": pl.Int64(),
    "strength": pl.Float64(),
    "strength_balance": pl.Float64(),  # > 0: a balanced campaign, which lifts every member
    "median_score": pl.Float64(),
    "n_flagged_alone": pl.Int64(),
}


def _none_if_nan(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


@dataclass
class LiveCampaigns:
    """The campaigns of the last campaign pass (immutable once built; replaced whole)."""

    table: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=TABLE_SCHEMA))
    views: dict[str, CampaignView] = field(default_factory=dict)
    member_of: dict[str, str] = field(default_factory=dict)  # account_id -> campaign_id
    last: CampaignPass | None = None

    @classmethod
    def from_table(cls, table: pl.DataFrame, last: CampaignPass | None) -> LiveCampaigns:
        if "strength_balance" not in table.columns:  # snapshots written before it existed
            table = table.with_columns(pl.lit(0.0).alias("strength_balance"))
        table = table.select([pl.col(c).cast(t) for c, t in TABLE_SCHEMA.items()])
        views: dict[str, CampaignView] = {}
        member_of: dict[str, str] = {}
        for row in table.iter_rows(named=True):
            cid = row["campaign_id"]
            members = tuple(row["members"] or ())
            views[cid] = CampaignView(
                campaign_id=cid,
                score=float(row["score"]),
                members=members,
                reasons=tuple(row["evidence"] or ()),
                lift=float(row["lift"] or 0.0),
                strength=float(row["strength"] or 0.0),
                median_score=_none_if_nan(row["median_score"]),
                n_flagged_alone=int(row["n_flagged_alone"] or 0),
            )
            member_of.update(dict.fromkeys(members, cid))
        return cls(table, views, member_of, last)


def pass_meta(last: CampaignPass | None, current: bool) -> dict[str, Any]:
    """The snapshot's record of the last campaign pass (``current``: the window has not
    changed since)."""
    if last is None:
        return {"current": False}
    return {
        "current": current,
        "computed_at": last.computed_at.isoformat(),
        "window_start": last.window_start.isoformat() if last.window_start else None,
        "window_end": last.window_end.isoformat() if last.window_end else None,
        "n_events": last.n_events,
        "n_accounts": last.n_accounts,
        "duration_s": last.duration_s,
    }


def pass_from_meta(meta: Mapping[str, Any] | None) -> CampaignPass | None:
    if not meta or not meta.get("computed_at"):
        return None

    def ts(key: str) -> datetime | None:
        value = meta.get(key)
        return datetime.fromisoformat(value) if value else None

    computed = ts("computed_at")
    assert computed is not None
    return CampaignPass(
        computed_at=computed,
        window_start=ts("window_start"),
        window_end=ts("window_end"),
        n_events=int(meta.get("n_events") or 0),
        n_accounts=int(meta.get("n_accounts") or 0),
        duration_s=float(meta.get("duration_s") or 0.0),
    )
