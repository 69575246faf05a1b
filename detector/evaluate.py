"""Evaluation against ground-truth labels: ranking metrics, recall at fixed false-positive rates,
per-archetype recall / false-positive rate, and time-to-detect.

Everything is read from the 0-100 ``score`` a user sees (strictly increasing in the raw score,
so rankings are the raw score's). ``recall_at_fpr`` places the threshold at the (1 - fpr)
quantile of the *normal* accounts' scores in the evaluated data, so it measures the ranking
itself; ``flagged_*`` and ``by_archetype`` use the model's own ``flagged`` decision (its
calibrated threshold), which is what an analyst sees, and ``by_archetype`` also the rates at
those label-derived thresholds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import numpy as np
import polars as pl
from sklearn.metrics import adjusted_rand_score, average_precision_score, roc_auc_score

FPR_LEVELS: tuple[float, ...] = (0.001, 0.01)


def _labelled(scores: pl.DataFrame, labels: pl.DataFrame) -> pl.DataFrame:
    joined = scores.join(
        labels.select("account_id", "is_attack", "archetype"), on="account_id", how="inner"
    )
    if joined.height == 0:
        raise ValueError("no scored account has a label: are these the right labels?")
    return joined


def recall_at_fpr(y: np.ndarray, raw: np.ndarray, fpr: float) -> float:
    """Share of positives scoring above the (1 - fpr) quantile of the negatives."""
    neg = raw[~y]
    if not len(neg) or not y.any():
        return float("nan")
    thr = np.quantile(neg, 1.0 - fpr, method="higher")
    return float((raw[y] > thr).mean())


def metrics(scores: pl.DataFrame, labels: pl.DataFrame) -> dict[str, Any]:
    """Metrics of ``scores`` (account_id, score, flagged) against ``labels``."""
    df = _labelled(scores, labels)
    y = df["is_attack"].to_numpy().astype(bool)
    raw = df["score"].to_numpy().astype(float)
    flagged = df["flagged"].to_numpy().astype(bool)
    both = bool(y.any() and (~y).any())
    out: dict[str, Any] = {
        "n_accounts": df.height,
        "n_attack": int(y.sum()),
        "roc_auc": float(roc_auc_score(y, raw)) if both else None,
        "pr_auc": float(average_precision_score(y, raw)) if both else None,
        "recall_at_fpr": {str(f): recall_at_fpr(y, raw, f) for f in FPR_LEVELS} if both else {},
        "flagged_recall": float(flagged[y].mean()) if y.any() else None,
        "flagged_fp_rate": float(flagged[~y].mean()) if (~y).any() else None,
    }
    neg = raw[~y]
    cuts = {
        str(f): float(np.quantile(neg, 1.0 - f, method="higher")) if len(neg) else np.inf
        for f in FPR_LEVELS
    }
    by: dict[str, dict[str, Any]] = {}
    per = df.group_by("archetype", "is_attack").agg(
        pl.len().alias("n"),
        pl.col("flagged").mean().alias("rate"),
        *[(pl.col("score") > c).mean().alias(f"at_{f}") for f, c in cuts.items()],
    )
    for row in per.sort("archetype").iter_rows(named=True):
        key = "recall" if row["is_attack"] else "fp_rate"
        by[row["archetype"]] = {
            "kind": "attack" if row["is_attack"] else "normal",
            "n": int(row["n"]),
            key: float(row["rate"]),
            "at_fpr": {f: float(row[f"at_{f}"]) for f in cuts},
        }
    out["by_archetype"] = by
    return out


def time_to_detect(
    events: pl.LazyFrame | pl.DataFrame,
    labels: pl.DataFrame,
    score_window: Callable[[pl.LazyFrame], pl.DataFrame],
    cutoffs_hours: Sequence[float] = (1, 2, 4, 8, 12, 24, 48, 72, 120, 168),
) -> dict[str, Any]:
    """Hours and requests from each attacker's first request until it is first flagged.

    ``score_window(events_before_cutoff)`` must return ``account_id, flagged`` (e.g. features
    + scorer on that prefix of the log). Attackers never flagged by the last cutoff count as
    undetected.
    """
    lf = events.lazy()
    start = lf.select(pl.col("ts").min()).collect().item()
    end = lf.select(pl.col("ts").max()).collect().item()
    attackers = labels.filter(pl.col("is_attack")).select("account_id", "archetype")
    first = (
        lf.join(attackers.lazy(), on="account_id", how="semi")
        .group_by("account_id")
        .agg(pl.col("ts").min().alias("first_ts"))
        .collect()
    )
    detected: dict[str, Any] = {}
    hours_total = (end - start).total_seconds() / 3600.0
    cuts = [h for h in sorted(cutoffs_hours) if h < hours_total] + [hours_total + 1e-6]
    for h in cuts:  # the last cut-off takes the whole log
        cut = start + timedelta(hours=h)
        window = lf.filter(pl.col("ts") < cut)
        flagged = score_window(window).filter(pl.col("flagged")).select("account_id")
        new = flagged.join(attackers, on="account_id", how="semi")["account_id"].to_list()
        for acct in new:
            detected.setdefault(acct, cut)
    if not detected:
        return {
            "detected_share": 0.0,
            "median_hours": None,
            "median_requests": None,
            "n_attackers": first.height,
        }
    det = pl.DataFrame(
        {"account_id": list(detected), "cut": list(detected.values())},
        schema={"account_id": pl.String, "cut": first["first_ts"].dtype},
    ).join(first, on="account_id")
    counts = (
        lf.join(det.lazy(), on="account_id")
        .filter(pl.col("ts") < pl.col("cut"))
        .group_by("account_id")
        .len()
        .collect()
    )
    det = det.join(counts, on="account_id", how="left").with_columns(
        ((pl.col("cut") - pl.col("first_ts")).dt.total_seconds() / 3600.0).alias("hours")
    )
    return {
        "detected_share": det.height / max(first.height, 1),
        "median_hours": float(det["hours"].median()),  # type: ignore[arg-type]
        "median_requests": float(det["len"].median()),  # type: ignore[arg-type]
        "n_attackers": first.height,
    }


def campaign_metrics(
    assignments: pl.DataFrame,
    labels: pl.DataFrame,
    scores_without: pl.DataFrame,
    scores_with: pl.DataFrame,
    fpr: float = 0.001,
) -> dict[str, Any]:
    """Campaign detection quality against generator labels.

    - ``ari``: adjusted Rand index of found campaigns against the true ``campaign_id`` over
      attack accounts (an unlinked account, or a solo attacker, is its own cluster);
    - ``campaigns_detected``: share of true multi-account campaigns with a majority of their
      members in one found campaign;
    - ``recall_without`` / ``recall_with``: recall of all attackers, and
      ``member_recall_*`` of members of true multi-account campaigns, at ``fpr`` (threshold
      from the normals' scores, as :func:`detector.evaluate.recall_at_fpr`);
    - ``normals_lifted`` / ``normals_newly_flagged``: normal accounts whose score the campaign
      evidence raised, and that it pushed into the flagged range."""
    lab = labels.select("account_id", "is_attack", "campaign_id").join(
        assignments.select("account_id", pl.col("campaign_id").alias("found")),
        on="account_id",
        how="left",
    )
    sizes = lab.filter(pl.col("is_attack")).group_by("campaign_id").agg(pl.len().alias("size"))
    lab = lab.join(sizes, on="campaign_id", how="left").with_columns(
        (pl.col("is_attack") & (pl.col("size").fill_null(0) >= 2)).alias("in_campaign")
    )
    att = lab.filter(pl.col("is_attack")).with_columns(
        pl.col("campaign_id").fill_null(pl.col("account_id")),
        pl.col("found").fill_null(pl.col("account_id")),
    )
    ari = (
        float(adjusted_rand_score(att["campaign_id"].to_list(), att["found"].to_list()))
        if att.height
        else None
    )
    best = (
        att.filter(pl.col("in_campaign") & (pl.col("found") != pl.col("account_id")))
        .group_by("campaign_id", "found")
        .len()
        .group_by("campaign_id")
        .agg(pl.col("len").max().alias("best"))
    )
    share = sizes.filter(pl.col("size") >= 2).join(best, on="campaign_id", how="left")
    n_true = share.height
    detected = int((share["best"].fill_null(0) * 2 > share["size"]).sum())

    def recalls(scores: pl.DataFrame) -> tuple[float, float]:
        d = lab.join(scores.select("account_id", "score"), on="account_id")
        y = d["is_attack"].to_numpy().astype(bool)
        raw = d["score"].to_numpy().astype(np.float64)
        member = d["in_campaign"].to_numpy().astype(bool)
        keep = member | ~y
        return recall_at_fpr(y, raw, fpr), recall_at_fpr(y[keep], raw[keep], fpr)

    r0, m0 = recalls(scores_without)
    r1, m1 = recalls(scores_with)
    both = scores_without.join(scores_with, on="account_id", suffix="_1").join(
        lab.filter(~pl.col("is_attack")), on="account_id", how="semi"
    )
    return {
        "ari": ari,
        "n_true_campaigns": n_true,
        "campaigns_detected": detected / n_true if n_true else None,
        "n_found_campaigns": int(assignments["campaign_id"].drop_nulls().n_unique()),
        "fpr": fpr,
        "recall_without": r0,
        "recall_with": r1,
        "member_recall_without": m0,
        "member_recall_with": m1,
        "normals_lifted": int((both["score_1"] > both["score"]).sum()),
        "normals_newly_flagged": int((both["flagged_1"] & ~both["flagged"]).sum()),
    }
