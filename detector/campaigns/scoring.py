"""Campaigns: linked accounts grouped, described, scored, and their members' scores raised.

Pipeline, each step a pure function of polars frames or a small estimator:
:func:`detector.campaigns.linkage.link_accounts` (edges) -> :func:`find_campaigns` (assignments) ->
:func:`campaign_features` -> :meth:`CampaignScorer.score` (the campaign summary) ->
:func:`apply_campaigns` (account scores with campaign evidence); :func:`detect_campaigns` runs
them all.

**Grouping.** Connected components (scipy) of the edges with ``weight >= min_weight``; a
component of at least ``min_size`` accounts is a campaign with an opaque, deterministic id
``"C-" + sha1(sorted member ids)[:10]``.

**Campaign score** (0-100, on the *account* scale). Let ``m`` be the median raw score of the
members and ``S`` their median calibrated score. A campaign is *suspicious* when its typical
member is already unusual on its own: its strength ``pi = clip((S - gate) / (full - gate), 0,
1)`` (by default 0 below the 95th percentile of the reference population, 1 from the 99th).
Its evidence adds ``b = lift * pi * log2(n)`` to the raw score (more members with the same
unusual profile, linked by shared infrastructure, is stronger evidence; campaigns under
``min_size`` add nothing). The campaign score is the calibrated ``m + b``: the score its typical
member gets once the campaign is counted.

**Members.** In a suspicious campaign a member that scores at least ``member_floor`` (90) on
its own gets raw score ``raw + b`` if ``raw >= m``, else ``m - 0.1 (m - raw) + b`` (guilt by
association: drawn most of the way to the typical member, keeping the members' order, plus
the campaign's evidence),
re-read through the same calibration, with the campaign as first reason. Every other account
keeps its score, so "score >= t reads as a false-positive rate of 1 - t/100 on the reference
population" still holds outside suspicious campaigns. A legitimate group (a company behind one
NAT, users of one open-source app, a reseller's sub-accounts) has an ordinary typical member,
``pi = 0``, and lifts nobody; :func:`campaign_metrics` counts normal accounts lifted on
labelled data (0 on demo and stealth).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol, Self

import numpy as np
import polars as pl
from sklearn.base import BaseEstimator, clone

from detector.campaigns.arrivals import arrival_evidence, first_requests
from detector.campaigns.cohorts import (
    cohort_counts,
    cohort_edges,
    cohort_groups,
    with_cohort_edges,
)
from detector.campaigns.grouping import (
    CONTENT_FEATURES,
    PACE,
    campaign_features,
    find_campaigns,
)
from detector.campaigns.linkage import (
    EVIDENCE_KINDS,
    KIND_BY_NAME,
    account_evidence,
    link_accounts,
)

# a lifted member below its campaign's median keeps this share of its distance to it
SHRINK = 0.1
HEADLINE_KINDS = ("tmpl", "system_prompt", "ip_prefix", "ip", "payment", "email_domain")


def _listing(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _headline(row: dict[str, Any]) -> str:
    """ "412 accounts sharing 37 prompt templates and 3 IP ranges; volume balanced within 8 %"."""
    named = []
    for name in HEADLINE_KINDS:
        n = row.get(f"shared_{name}") or 0
        if n:
            k = KIND_BY_NAME[name]
            named.append(f"{n} {k.singular if n == 1 else k.label}")
    text = f"{row['n_members']} accounts" + (" sharing " + _listing(named) if named else "")
    if row.get("n_sync_links"):
        n = row["n_sync_links"]
        text += f"; {n} linked pair{'s' if n > 1 else ''} active in the same minutes"
    cv = row.get("volume_cv")
    if cv is not None and row["n_members"] >= 3 and cv < 0.25:
        text += f"; volume balanced within {100 * cv:.0f} %"
    return text


class Calibrated(Protocol):
    """What the campaign layer needs of the account model: its calibration (raw score ->
    0-100) and its flag threshold. :class:`detector.models.DistillScorer` is one."""

    threshold_: float

    def calibrate(self, raw: np.ndarray) -> np.ndarray: ...


class CampaignScorer(BaseEstimator):
    """Score campaigns 0-100 on the account model's scale and decide how much they lift members.

    ``fit(features)`` learns the population's typical content (the median of each of
    :data:`CONTENT_FEATURES` over every account), against which a campaign's members are
    described; ``score`` and :func:`apply_campaigns` read raw scores through the account
    model's own calibration, passed to them.

    Parameters
    ----------
    gate, full: calibrated scores (percentiles of the reference population) of the typical
        member at which the campaign's strength starts (0) and is full (1).
    lift: raw-score units added per doubling of the campaign's size at full strength.
    min_size: smaller campaigns are described but never lift.
    balanced_cv, balance_span: the group's own evidence — linked accounts whose request
        volumes are balanced (coefficient of variation across members ``volume_cv``): strength
        1 at ``balanced_cv - balance_span`` or below, 0 from ``balanced_cv`` (ordinary
        accounts' volumes vary by 50-150 %; an operator spreading its load over accounts
        evens them out), counting fully from ``min_size + 2`` members.
    member_floor: members lifted by their typical member's suspicion must score at least this
        on their own (a balanced campaign lifts every member).
    min_weight: edges weaker than this do not join a campaign.
    n_reasons: content reasons listed at most.

    >>> import polars as pl
    >>> from detector.models import DistillScorer
    >>> scorer = CampaignScorer().fit(pl.DataFrame({"cot_rate": [0.0, 0.1, 0.0]}))
    >>> scorer.typical_["cot_rate"]
    0.0
    """

    def __init__(
        self,
        gate: float = 95.0,
        full: float = 99.0,
        lift: float = 0.5,
        min_size: int = 3,
        balanced_cv: float = 0.3,
        balance_span: float = 0.15,
        member_floor: float = 90.0,
        min_weight: float = 1.0,
        n_reasons: int = 3,
    ) -> None:
        self.gate = gate
        self.full = full
        self.lift = lift
        self.min_size = min_size
        self.balanced_cv = balanced_cv
        self.balance_span = balance_span
        self.member_floor = member_floor
        self.min_weight = min_weight
        self.n_reasons = n_reasons

    def fit(self, features: pl.DataFrame) -> Self:
        """Learn the population's typical content from account ``features`` (one row per
        account; missing content columns are left out)."""
        cols = [c for c in CONTENT_FEATURES if c in features.columns]
        row = features.select([pl.col(c).median() for c in cols]).row(0, named=True) if cols else {}
        self.typical_: dict[str, float | None] = dict(row)
        return self

    def score(self, campaign_feats: pl.DataFrame, model: Calibrated) -> pl.DataFrame:
        """The campaign summary: ``campaign_id, score, n_members, members, evidence, lift,
        raw_score, strength, median_raw, median_score`` and every campaign feature; scores on
        ``model``'s calibration."""
        f = campaign_feats
        if "volume_cv" not in f.columns:
            f = f.with_columns(pl.lit(None, dtype=pl.Float64).alias("volume_cv"))
        big_enough = (pl.col("n_members") >= self.min_size).cast(pl.Float64)
        typical = ((pl.col("median_score") - self.gate) / (self.full - self.gate)).clip(0.0, 1.0)
        balance = (
            ((self.balanced_cv - pl.col("volume_cv")) / self.balance_span).clip(0.0, 1.0)
            * ((pl.col("n_members") - self.min_size + 1) / 3).clip(0.0, 1.0)
        ).fill_null(0.0)
        f = f.with_columns(
            (typical * big_enough).alias("strength_typical"),
            (balance * big_enough).alias("strength_balance"),
        ).with_columns(pl.max_horizontal("strength_typical", "strength_balance").alias("strength"))
        f = f.with_columns(
            (self.lift * pl.col("strength") * pl.col("n_members").cast(pl.Float64).log(2)).alias(
                "lift"
            )
        )
        raw = (f["median_raw"] + f["lift"]).to_numpy().astype(np.float64)
        f = f.with_columns(
            pl.Series("raw_score", raw), pl.Series("score", model.calibrate(raw), dtype=pl.Float64)
        )
        reasons = [self._reasons(row) for row in f.iter_rows(named=True)]
        f = f.with_columns(pl.Series("evidence", reasons, dtype=pl.List(pl.String)))
        first = ["campaign_id", "score", "n_members", "members", "evidence", "lift", "raw_score"]
        return f.select(first + [c for c in f.columns if c not in first]).sort(
            "score", "n_members", descending=True
        )

    def _reasons(self, row: dict[str, Any]) -> list[str]:
        out = [_headline(row)]
        for k in EVIDENCE_KINDS:
            top = row.get(f"top_{k.name}")
            if k.family in ("network", "account") and top:
                more = ", ..." if (row.get(f"shared_{k.name}") or 0) > len(top) else ""
                out.append(f"{k.label}: {', '.join(str(v) for v in top)}{more}")
        soft = [
            f"{row[f'shared_{k}']} {KIND_BY_NAME[k].label}"
            for k in ("tmpl_tail", "near_dup", "user_agent")
            if row.get(f"shared_{k}")
        ]
        if soft:
            out.append("also sharing " + _listing(soft))
        out.append(
            f"typical member scores {math.floor(10 * row['median_score']) / 10:.1f} on its own "
            f"({row['n_flagged_alone']} of {row['n_members']} flagged alone)"
        )
        cited = 0
        for c in CONTENT_FEATURES:
            v, t = row.get(c), self.typical_.get(c)
            if v is None or t is None or cited >= self.n_reasons:
                continue
            if v >= 0.2 and v >= 2 * t + 0.05:
                out.append(f"members' {c} {100 * v:.0f}% vs typical {100 * t:.0f}%")
                cited += 1
        if (row.get("strength_balance") or 0) > 0:
            out.append(
                f"request volumes balanced within {100 * row['volume_cv']:.0f} % across "
                f"{row['n_members']} accounts: one operator spreading its load (ordinary "
                "accounts' volumes vary by 50-150 %)"
            )
        if row["lift"] > 0:
            out.append(
                f"campaign evidence adds {row['lift']:.1f} to members' raw scores "
                f"(strength {row['strength']:.2f})"
            )
        return out


def apply_campaigns(
    account_scores: pl.DataFrame,
    assignments: pl.DataFrame,
    campaigns: pl.DataFrame,
    model: Calibrated,
    *,
    scorer: CampaignScorer | None = None,
    features: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Members of lifting campaigns: raised towards the campaign median, plus its lift, re-read
    through ``model``'s calibration, the campaign first among their reasons; ``campaign_id``
    filled for every member; flagged at ``model``'s threshold.

    A campaign lifting on its typical member's suspicion lifts only the members that score at
    least ``scorer.member_floor`` on their own: should a legitimate group be merged into it by
    a stray link, its ordinary members stay put. A balanced campaign (its own evidence of one
    operator) lifts every member whose pace conforms to the campaign's (requests per active
    day within a factor ``1 + 2 * balanced_cv`` of its members' median; read from
    ``features``, without which balance lifts nobody the floor does not).
    Columns: account_id, score, raw_score, flagged, reasons, campaign_id."""
    cs = scorer if scorer is not None else CampaignScorer()
    member_floor = cs.member_floor
    balanced = (
        pl.col("strength_balance") if "strength_balance" in campaigns.columns else pl.lit(0.0)
    )
    camp = campaigns.select(
        "campaign_id",
        (balanced > 0).alias("__balanced"),
        pl.col("lift").alias("__lift"),
        pl.col("median_raw").alias("__m"),
        pl.col("score").alias("__cscore"),
        pl.col("evidence").list.first().alias("__head"),
    )
    base = account_scores.drop("campaign_id", strict=False)
    df = base.join(assignments.select("account_id", "campaign_id"), on="account_id", how="left")
    df = df.join(camp, on="campaign_id", how="left")
    conforms = pl.lit(False)
    pace = PACE if features is not None and PACE in features.columns else "requests_per_day"
    if features is not None and pace in features.columns:
        volume = assignments.join(
            features.select("account_id", pl.col(pace).alias("__rpd")), on="account_id"
        )
        typical = volume.group_by("campaign_id").agg(pl.col("__rpd").median().alias("__med"))
        df = df.join(volume.select("account_id", "__rpd"), on="account_id", how="left").join(
            typical, on="campaign_id", how="left"
        )
        band = 1.0 + 2.0 * cs.balanced_cv
        ratio = pl.col("__rpd") / pl.col("__med")
        conforms = ((ratio <= band) & (ratio >= 1.0 / band)).fill_null(False)
    lifted = (pl.col("__lift").fill_null(0.0) > 0) & (
        (pl.col("score") >= member_floor) | (pl.col("__balanced").fill_null(False) & conforms)
    )
    # members below the campaign's median are drawn most of the way up to it (guilt by
    # association), keeping their order so that no two lifted members tie
    below = pl.col("raw_score") < pl.col("__m")
    drawn = pl.when(below).then(pl.col("__m") + SHRINK * (pl.col("raw_score") - pl.col("__m")))
    new_raw = (
        pl.when(lifted)
        .then(drawn.otherwise(pl.col("raw_score")) + pl.col("__lift"))
        .otherwise(pl.col("raw_score"))
    )
    df = df.with_columns(new_raw.alias("__raw"), lifted.alias("__lifted"))
    raw = df["__raw"].to_numpy().astype(np.float64)
    new_score = np.where(df["__lifted"].to_numpy(), model.calibrate(raw), df["score"].to_numpy())
    reason = pl.format(
        "{} campaign {} (campaign score {}): {}",
        pl.when(pl.col("__lifted")).then(pl.lit("member of")).otherwise(pl.lit("linked to")),
        pl.col("campaign_id"),
        pl.col("__cscore").round(1),
        pl.col("__head"),
    )
    return (
        df.with_columns(
            pl.Series("score", new_score, dtype=pl.Float64),
            pl.col("__raw").alias("raw_score"),
            pl.when(pl.col("campaign_id").is_not_null() & pl.col("__head").is_not_null())
            .then(pl.concat_list(reason, pl.col("reasons")))
            .otherwise(pl.col("reasons"))
            .alias("reasons"),
        )
        .with_columns((pl.col("flagged") | (pl.col("score") >= model.threshold_)).alias("flagged"))
        .select("account_id", "score", "raw_score", "flagged", "reasons", "campaign_id")
    )


@dataclass
class Links:
    """What linkage found, before any score: it depends on the events alone, so a pipeline
    that recalibrates scores links once and scores campaigns again."""

    evidence: pl.DataFrame  # account_id, kind, value (account_evidence)
    edges: pl.DataFrame  # src, dst, weight, evidence
    assignments: pl.DataFrame  # account_id, campaign_id (null: in no campaign)
    # kind, value, total: holders of each value among all accounts, when ``evidence`` holds
    # only some accounts' rows (the Spark engine keeps the campaign members' rows only)
    totals: pl.DataFrame | None = None


@dataclass
class CampaignResult:
    edges: pl.DataFrame  # src, dst, weight, evidence
    assignments: pl.DataFrame  # account_id, campaign_id
    campaigns: pl.DataFrame  # the campaign summary (CampaignScorer.score)
    accounts: pl.DataFrame  # account scores with campaign evidence and campaign_id

    def lifted(self) -> pl.Series:
        """Ids of the accounts whose score the campaign evidence raised."""
        first = self.accounts["reasons"].list.first().fill_null("")
        return self.accounts.filter(first.str.starts_with("member of campaign"))["account_id"]


def link_campaigns(
    compact: pl.LazyFrame | pl.DataFrame,
    account_ids: pl.Series,
    accounts: pl.DataFrame | None,
    *,
    scorer: CampaignScorer | None = None,
    link_options: dict[str, Any] | None = None,
) -> Links:
    """Evidence, weighted edges and campaign assignments of ``account_ids`` (the accounts of
    ``compact``): :func:`account_evidence` with the arrival bursts
    (:func:`detector.campaigns.arrivals.arrival_evidence`), :func:`link_accounts` and the
    cohorts' links (:mod:`detector.campaigns.cohorts`), then :func:`find_campaigns`."""
    min_weight = (scorer if scorer is not None else CampaignScorer()).min_weight
    arrivals = arrival_evidence(first_requests(compact))
    evidence = pl.concat([account_evidence(compact, accounts), arrivals])
    edges = link_accounts(compact, accounts, evidence=evidence, **(link_options or {}))
    cohorts = cohort_groups(cohort_counts(evidence), account_ids.n_unique())
    edges = with_cohort_edges(edges, cohort_edges(cohorts, weight=min_weight))
    assignments, _ = find_campaigns(edges, account_ids, min_weight=min_weight)
    return Links(evidence, edges, assignments)


def score_campaigns(
    links: Links,
    account_scores: pl.DataFrame,
    features: pl.DataFrame,
    model: Calibrated,
    *,
    scorer: CampaignScorer | None = None,
) -> CampaignResult:
    """Describe and score the linked campaigns and raise their members' scores.

    ``account_scores`` are the scores of the linked accounts on their own (with their slices)
    by ``model``; ``features`` their features; lifted scores stay on ``model``'s calibration
    and are flagged at its threshold."""
    cs = clone(scorer) if scorer is not None else CampaignScorer()
    cs.fit(features)
    feats = campaign_features(
        links.assignments,
        account_scores,
        features,
        links.evidence,
        links.edges,
        value_totals=links.totals,
    )
    campaigns = cs.score(feats, model)
    scored = apply_campaigns(
        account_scores, links.assignments, campaigns, model, scorer=cs, features=features
    )
    return CampaignResult(links.edges, links.assignments, campaigns, scored)


def detect_campaigns(
    compact: pl.LazyFrame | pl.DataFrame,
    account_scores: pl.DataFrame,
    features: pl.DataFrame,
    accounts: pl.DataFrame | None,
    model: Calibrated,
    *,
    scorer: CampaignScorer | None = None,
    link_options: dict[str, Any] | None = None,
) -> CampaignResult:
    """Link, group, describe and score campaigns, and raise their members' scores
    (:func:`link_campaigns` then :func:`score_campaigns`)."""
    links = link_campaigns(
        compact, account_scores["account_id"], accounts, scorer=scorer, link_options=link_options
    )
    return score_campaigns(links, account_scores, features, model, scorer=scorer)
