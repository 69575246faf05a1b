"""Campaign grouping: linked accounts as connected components, and what each group shares.

:func:`find_campaigns` turns the edges of :func:`detector.campaigns.linkage.link_accounts` into
campaigns (connected components of the edges with ``weight >= min_weight``; a component of at
least ``min_size`` accounts is a campaign with an opaque, deterministic id
``"C-" + sha1(sorted member ids)[:10]``); :func:`campaign_features` describes each campaign
(size, members' scores, volume, content and the evidence they share) for
:class:`detector.campaigns.scoring.CampaignScorer`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import polars as pl
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from detector.campaigns.linkage import EVIDENCE_KINDS, SOFT_FAMILIES

ASSIGNMENT_SCHEMA: dict[str, pl.DataType] = {"account_id": pl.String(), "campaign_id": pl.String()}
# member features summarised per campaign (mean), with the population median for comparison
CONTENT_FEATURES: tuple[str, ...] = ("cot_rate", "rubric_rate", "rewrite_rate", "bench_rate")
CONTENT_FEATURES += ("template_reuse", "high_max_tokens_share")
PACE = "requests_per_active_day"  # the account feature campaign volume balance reads
SOFT_KINDS = [k.name for k in EVIDENCE_KINDS if k.family in SOFT_FAMILIES]


def _campaign_id(members: Sequence[str]) -> str:
    return "C-" + hashlib.sha1("\n".join(sorted(members)).encode()).hexdigest()[:10]


def find_campaigns(
    edges: pl.DataFrame,
    account_ids: pl.Series | Sequence[str],
    *,
    min_weight: float = 1.0,
    min_size: int = 2,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(assignments, groups)``: ``account_id, campaign_id`` for every account (null when
    unlinked), and ``campaign_id, n_members, members`` per campaign (largest first)."""
    ids = pl.Series("account_id", list(account_ids), dtype=pl.String).unique().sort()
    index = pl.DataFrame({"account_id": ids, "i": pl.int_range(len(ids), eager=True)})
    strong = (
        edges.filter(pl.col("weight") >= min_weight)
        .join(index.rename({"account_id": "src", "i": "s"}), on="src")
        .join(index.rename({"account_id": "dst", "i": "d"}), on="dst")
    )
    n = len(ids)
    graph = coo_matrix(
        (np.ones(strong.height), (strong["s"].to_numpy(), strong["d"].to_numpy())), shape=(n, n)
    )
    _, comp = connected_components(graph, directed=False)
    labelled = pl.DataFrame({"account_id": ids, "comp": comp})
    groups = (
        labelled.group_by("comp")
        .agg(pl.col("account_id").sort().alias("members"))
        .with_columns(pl.col("members").list.len().cast(pl.Int64).alias("n_members"))
        .filter(pl.col("n_members") >= min_size)
    )
    cids = [_campaign_id(m) for m in groups["members"].to_list()]  # one loop per campaign
    groups = groups.with_columns(pl.Series("campaign_id", cids, dtype=pl.String))
    assignments = labelled.join(groups, on="comp", how="left").select(list(ASSIGNMENT_SCHEMA))
    groups = groups.select("campaign_id", "n_members", "members").sort(
        "n_members", "campaign_id", descending=[True, False]
    )
    return assignments, groups


def evidence_totals(evidence: pl.DataFrame) -> pl.DataFrame:
    """``kind, value, total``: how many accounts hold each evidence value."""
    return evidence.group_by("kind", "value").agg(pl.len().alias("total"))


def _shared_values(
    members: pl.DataFrame,
    evidence: pl.DataFrame,
    min_share: float,
    totals: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """``campaign_id, shared_<kind>..., top_<kind>...``: values of each kind held by at least 2
    members, mostly by this campaign's members (not gmail.com), and for content and client
    values by at least ``min_share`` of them; the most held readable values. ``totals``
    (:func:`evidence_totals` of every account's evidence) defaults to those of ``evidence``."""
    total = totals if totals is not None else evidence_totals(evidence)
    held = (
        evidence.join(members, on="account_id")
        .group_by("campaign_id", "kind", "value")
        .agg(pl.len().alias("holders"), pl.first("n_members"))
        .join(total, on=["kind", "value"])
        .filter(
            (pl.col("holders") >= 2)
            & (2 * pl.col("holders") >= pl.col("total"))
            & (
                ~pl.col("kind").is_in(SOFT_KINDS)
                | (pl.col("holders") >= (min_share * pl.col("n_members")).ceil())
            )
        )
        .group_by("campaign_id", "kind")
        .agg(
            pl.len().cast(pl.Int64).alias("count"),
            # most held first; ties by value, so that the summary is reproducible
            pl.col("value")
            .sort_by(["holders", "value"], descending=[True, False])
            .head(3)
            .alias("top"),
        )
    )
    out = members.select("campaign_id").unique()
    for kind in EVIDENCE_KINDS:  # one small join per kind
        if kind.name == "timing":
            continue
        k = held.filter(pl.col("kind") == kind.name)
        cols = [pl.col("count").alias(f"shared_{kind.name}")]
        if kind.readable:
            cols.append(pl.col("top").alias(f"top_{kind.name}"))
        out = out.join(k.select("campaign_id", *cols), on="campaign_id", how="left")
    return out.with_columns(pl.col("^shared_.*$").fill_null(0))


def campaign_features(
    assignments: pl.DataFrame,
    account_scores: pl.DataFrame,
    features: pl.DataFrame | None = None,
    evidence: pl.DataFrame | None = None,
    edges: pl.DataFrame | None = None,
    *,
    min_share: float = 0.02,
    value_totals: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """One row per campaign: size, members, their scores, volume, content and shared evidence.

    ``features`` (account features) adds volume (``requests_per_day`` summed, ``volume_cv``:
    the interquartile range over 1.349 median of the members' ``requests_per_active_day``, a
    robust coefficient of variation) and the members' content means;
    ``evidence`` (:func:`account_evidence`) adds ``shared_<kind>`` counts and ``top_<kind>``
    values (``value_totals``: :func:`evidence_totals` of every account's evidence when
    ``evidence`` holds only some accounts' rows); ``edges`` adds the links inside each
    campaign (``n_links``, ``mean_link_weight``, ``n_sync_links``: links with synchronised
    activity)."""
    members = (
        assignments.drop_nulls("campaign_id")
        .join(account_scores.select("account_id", "score", "raw_score", "flagged"), on="account_id")
        .with_columns(pl.len().over("campaign_id").alias("n_members"))
    )
    out = members.group_by("campaign_id").agg(
        pl.len().cast(pl.Int64).alias("n_members"),
        pl.col("account_id").sort().alias("members"),
        pl.col("raw_score").median().alias("median_raw"),
        pl.col("score").median().alias("median_score"),
        pl.col("score").mean().alias("mean_score"),
        pl.col("flagged").sum().cast(pl.Int64).alias("n_flagged_alone"),
    )
    if features is not None:
        pace_col = PACE if PACE in features.columns else "requests_per_day"
        cols = [c for c in ("requests_per_day", *CONTENT_FEATURES) if c in features.columns]
        rpd, pace = pl.col("requests_per_day"), pl.col(pace_col)
        vol = (
            members.join(
                features.select("account_id", *dict.fromkeys([*cols, pace_col])), on="account_id"
            )
            .group_by("campaign_id")
            .agg(
                rpd.sum(),
                # robust (interquartile) coefficient of variation of the members' own pace
                # (requests per day of their active span: accounts started on different days
                # of the window run at the same pace): a few odd members do not hide that the
                # rest are balanced
                ((pace.quantile(0.75) - pace.quantile(0.25)) / (1.349 * pace.median()))
                .fill_null(0.0)
                .fill_nan(0.0)
                .alias("volume_cv"),
                *[pl.col(c).mean() for c in cols if c != "requests_per_day"],
            )
        )
        out = out.join(vol, on="campaign_id", how="left")
    if evidence is not None:
        shared = _shared_values(
            members.select("account_id", "campaign_id", "n_members"),
            evidence,
            min_share,
            value_totals,
        )
        out = out.join(shared, on="campaign_id", how="left")
    if edges is not None:
        camp = members.select("account_id", "campaign_id")
        link = (
            edges.join(camp.rename({"account_id": "src"}), on="src")
            .join(camp.rename({"account_id": "dst", "campaign_id": "c2"}), on="dst")
            .filter(pl.col("campaign_id") == pl.col("c2"))
            .group_by("campaign_id")
            .agg(
                pl.len().cast(pl.Int64).alias("n_links"),
                pl.col("weight").mean().alias("mean_link_weight"),
                pl.col("evidence")
                .list.eval(pl.element().str.starts_with("active together"))
                .list.any()
                .sum()
                .cast(pl.Int64)
                .alias("n_sync_links"),
            )
        )
        out = out.join(link, on="campaign_id", how="left")
    return out.sort("n_members", "campaign_id", descending=[True, False])
