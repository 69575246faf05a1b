"""THE scoring pipeline, in memory: the one place where its stages are strung together.

    events --fingerprint--> compact events --features--> one row per account
           --score (with IP / key slices)--> account scores alone
           --campaigns (link, group, score, lift members)--> final scores with reasons

:func:`fit` trains a scorer; :func:`score` runs the stages on a window of events. The offline
audit (:mod:`detector.audit`: files in, files out), the live service's rescoring and campaign
passes (:mod:`service.rescoring`), the benchmarks and the tests all call these two functions,
so a change to a stage is made once and reaches every flow.

>>> from synthetic_logs.generate import generate
>>> g = generate("demo", seed=3, scale=0.2)
>>> model = fit(g.events, g.accounts)
>>> result = score(g.events, model, g.accounts)
>>> result.accounts.columns
['account_id', 'score', 'raw_score', 'flagged', 'reasons', 'campaign_id']
>>> set(result.accounts["account_id"]) == set(g.events["account_id"])
True
>>> result.campaigns is not None  # campaigns were detected over the whole window
True
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, replace

import polars as pl
from sklearn.base import clone

from detector.campaigns.cohorts import with_cohort_edges
from detector.campaigns.grouping import PACE, find_campaigns
from detector.campaigns.pivots import pivot_edges
from detector.campaigns.scoring import (
    CampaignResult,
    CampaignScorer,
    Links,
    apply_campaigns,
    link_campaigns,
    score_campaigns,
)
from detector.features import account_features
from detector.fingerprints import fingerprint_events
from detector.models import DistillScorer
from detector.subaccounts import judges_slices, lift_by_slices, slice_features
from detector.verdicts import apply_verdicts
from detector.window import Window

Frame = pl.DataFrame | pl.LazyFrame


Progress = Callable[[str], None]
# a self-fitted model's calibration reference is narrowed to the accounts outside suspicious
# campaigns, and the campaigns rescored on it, until the campaigns' members stop changing
MAX_REFERENCE_ROUNDS = 4


def _quiet(_stage: str) -> None:
    return None


def is_fitted(model: DistillScorer) -> bool:
    return hasattr(model, "calibrator_")


@dataclass
class Scored:
    """What :func:`score` returns.

    ``features``: one row per scored account (:data:`detector.features.FEATURES`);
    ``alone``: ``account_id, score, raw_score, flagged, reasons`` — each account on its own
    (lifted by its IP / key slices), before campaign evidence;
    ``accounts``: the final scores, ``alone`` plus campaign evidence and ``campaign_id``;
    ``campaigns``: the campaign detection of this pass (edges, assignments, summary), or None
    when campaigns were off or applied from an earlier pass; ``model``: the scorer used
    (fitted here when :func:`score` was given an unfitted one)."""

    features: pl.DataFrame
    alone: pl.DataFrame
    accounts: pl.DataFrame
    model: DistillScorer
    campaigns: CampaignResult | None = None


def compact_events(events: Frame) -> pl.DataFrame:
    """Events as compact events (fingerprinted: hashes and markers, no raw text). Canonical
    events are fingerprinted (a lazy frame on polars' streaming engine, so that raw prompt text
    is never held whole); compact events pass through."""
    lf = events.lazy()
    if "prompt" not in lf.collect_schema().names():
        return lf.collect() if isinstance(events, pl.LazyFrame) else events
    return fingerprint_events(lf).collect(engine="streaming")


def features(
    compact: pl.DataFrame, accounts: pl.DataFrame | None = None, window: Window | None = None
) -> pl.DataFrame:
    """The features of every account in ``compact`` over ``window`` (default: the events'
    own span)."""
    if window is None:
        return account_features(compact, accounts).collect()
    return account_features(
        compact,
        accounts,
        window_start=window.start,
        window_end=window.end,
        model_first_seen=window.model_first_seen,
    ).collect()


def fit(
    events: Frame,
    accounts: pl.DataFrame | None = None,
    labels: pl.DataFrame | None = None,
    scorer: DistillScorer | None = None,
) -> DistillScorer:
    """A scorer fitted on the accounts of ``events``: a clone of ``scorer`` (default
    :class:`DistillScorer`), with ``labels`` (``account_id, is_attack``) when given — its
    calibration reference is then the labelled normal accounts. Without labels the whole
    pipeline runs on the log, campaigns included, and the calibration reference is every
    account that is not a member of a suspicious campaign (see :func:`score`)."""
    unfitted = clone(scorer if scorer is not None else DistillScorer())
    compact = compact_events(events)
    if labels is not None:
        return unfitted.fit(features(compact, accounts), labels)
    return score(compact, unfitted, accounts).model


def score(
    events: Frame,
    model: DistillScorer,
    accounts: pl.DataFrame | None = None,
    *,
    only: Collection[str] | None = None,
    window: Window | None = None,
    campaigns: bool | pl.DataFrame = True,
    campaign_scorer: CampaignScorer | None = None,
    progress: Progress = _quiet,
    verdicts: pl.DataFrame | None = None,
) -> Scored:
    """Score the accounts of ``events`` (canonical or compact events of one window).

    ``model``: a fitted scorer, or an unfitted one to fit (unsupervised) on these very
    accounts first — the self-fit audit of a log with no model trained elsewhere. A self-fitted
    model's calibration reference (the accounts taken for normal) starts as every account;
    with campaigns, the members that suspicious campaigns lift are then left out of it and the
    campaigns rescored, until the members stop changing (at most
    :data:`MAX_REFERENCE_ROUNDS` times): a hydra of hundreds of accounts would otherwise make
    its own members look ordinary.
    ``only``: score just these accounts; the rest of ``events`` still defines the window (its
    bounds and when each model first appeared), so their scores equal those of a pass over
    every account. ``window`` overrides that context (default: :meth:`Window.of` ``events``).
    ``campaigns``: True detects campaigns over all of ``events`` (and needs ``only=None``);
    False scores accounts alone; a campaign table from an earlier pass (the ``campaigns``
    summary of a :class:`CampaignResult`: ``campaign_id, members, lift, median_raw, score,
    evidence``) applies that pass's campaigns to the accounts scored now, as the live service
    does between campaign passes. ``progress`` is told each stage as it starts.
    ``verdicts``: the analyst's current verdicts (:mod:`detector.verdicts`): allow-listed
    accounts are never flagged and no campaign lifts them (:func:`apply_verdicts`)."""
    # --- verdicts (issue 16): the one place they reach scoring. Score as without them, then
    # apply them to the final scores (and to the campaign pass's own copy of them).
    if verdicts is not None and verdicts.height:
        res = score(
            events, model, accounts, only=only, window=window, campaigns=campaigns,
            campaign_scorer=campaign_scorer, progress=progress,
        )  # fmt: skip
        found = res.campaigns
        if found is not None:
            found = replace(found, accounts=apply_verdicts(found.accounts, res.alone, verdicts))
        final = apply_verdicts(res.accounts, res.alone, verdicts)
        return replace(res, accounts=final, campaigns=found)
    # --- end verdicts
    if only is not None and campaigns is True:
        raise ValueError("campaign detection needs every account: pass campaigns=False or a table")
    compact = compact_events(events)
    ctx = window if window is not None else Window.of(compact)
    mine = compact
    if only is not None:
        ids = pl.Series("account_id", sorted(only), dtype=pl.String)
        mine = compact.filter(pl.col("account_id").is_in(ids.implode()))
    progress("computing account features")
    feats = features(mine, accounts, ctx)

    computed: list[tuple[pl.DataFrame, pl.DataFrame]] = []  # the slices' features, once

    def slices(fitted: DistillScorer, scored: pl.DataFrame) -> pl.DataFrame:
        if not judges_slices(fitted):
            return scored
        if not computed:
            computed.append(slice_features(mine, feats, accounts, ctx))
        return lift_by_slices(fitted, scored, *computed[0])

    def link() -> Links:
        return link_campaigns(compact, feats["account_id"], accounts, scorer=campaign_scorer)

    return score_table(
        feats,
        model,
        slices,
        link if campaigns is True else campaigns,
        campaign_scorer=campaign_scorer,
        progress=progress,
    )


MAX_PIVOTS = 16  # pivots from a campaign, each from what the previous one grew (until none)
SliceLift = Callable[[DistillScorer, pl.DataFrame], pl.DataFrame]


def _pivoted(
    base: Links,
    alone: pl.DataFrame,
    feats: pl.DataFrame,
    model: DistillScorer,
    campaign_scorer: CampaignScorer | None,
) -> tuple[CampaignResult, Links]:
    """Campaigns scored on ``base`` links, then extended by the pivots from the suspicious ones
    (:mod:`detector.campaigns.pivots`) and scored again, as long as a pivot joins anyone; and
    the links with the pivots' edges. The Spark engine's links hold the evidence of campaign
    members only (``totals`` set), which a pivot cannot search: there the campaigns stay as
    linked."""
    found = score_campaigns(base, alone, feats, model, scorer=campaign_scorer)
    if base.totals is not None:
        return found, base
    scorer = campaign_scorer or CampaignScorer()
    links = base
    # a campaign grown by a pivot holds more of its fingerprints: pivot again from it, up to
    # MAX_PIVOTS times (joiners must be alike its members and at its pace, which keeps a frame
    # it shares with honest users from bringing those users in)
    for _ in range(MAX_PIVOTS):
        extra = pivot_edges(
            base.evidence,
            found.campaigns,
            feats,
            pace=PACE,
            band=1.0 + 2.0 * scorer.balanced_cv,
            weight=scorer.min_weight,
            min_score=model.threshold_,
        )
        if extra.height == 0:
            break
        edges = with_cohort_edges(links.edges, extra)
        assignments, _ = find_campaigns(edges, feats["account_id"], min_weight=scorer.min_weight)
        links = Links(base.evidence, edges, assignments)
        found = score_campaigns(links, alone, feats, model, scorer=campaign_scorer)
    return found, links


def score_table(
    feats: pl.DataFrame,
    model: DistillScorer,
    slices: SliceLift,
    campaigns: Callable[[], Links] | bool | pl.DataFrame,
    *,
    campaign_scorer: CampaignScorer | None = None,
    progress: Progress = _quiet,
) -> Scored:
    """The stages of :func:`score` on the table of accounts (one row per account, small enough
    for one machine), whichever engine computed it — :func:`score` here, the Spark engine
    (:mod:`detector.spark`) on a cluster: fit ``model`` if unfitted, score ``feats``, lift
    accounts by their IP / key slices (``slices(model, scored)``), then campaigns.

    ``campaigns``: a function returning the :class:`Links` of these accounts (campaigns are
    detected), or as :func:`score`'s ``campaigns`` (False, or a table from an earlier pass)."""
    self_fit = not is_fitted(model)
    if self_fit:
        progress("no trained model: fitting one on these accounts (unsupervised)")
        model = clone(model).fit(feats)
    progress("scoring accounts and their IP / key slices")
    alone = slices(model, model.score(feats))
    if callable(campaigns):
        progress("linking accounts into campaigns")
        links = campaigns()
        found, links = _pivoted(links, alone, feats, model, campaign_scorer)
        left_out: set[str] = set()
        for _ in range(MAX_REFERENCE_ROUNDS if self_fit else 0):
            lifted = set(found.lifted().to_list())
            if lifted == left_out:
                break  # the reference already leaves out exactly these members
            left_out = lifted
            keep = feats.filter(~pl.col("account_id").is_in(sorted(lifted)))
            model.set_reference(
                model.raw_score(keep),
                kind=f"accounts not in suspicious campaigns ({len(lifted)} members left out)",
            )
            alone = slices(model, model.score(feats))
            # the pivots' links carry over: a round only pivots from what it newly flags
            found, links = _pivoted(links, alone, feats, model, campaign_scorer)
        return Scored(feats, alone, found.accounts, model, found)
    if campaigns is False or campaigns is True or campaigns.height == 0:
        final = alone.with_columns(pl.lit(None, dtype=pl.String).alias("campaign_id"))
        return Scored(feats, alone, final, model)
    assignments = (
        campaigns.select("campaign_id", pl.col("members").alias("account_id"))
        .explode("account_id")
        .join(alone.select("account_id"), on="account_id", how="semi")
        .select("account_id", "campaign_id")
    )
    final = apply_campaigns(
        alone, assignments, campaigns, model, scorer=campaign_scorer, features=feats
    )
    return Scored(feats, alone, final, model)
