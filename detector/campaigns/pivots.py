"""Pivots: from a suspicious campaign to the accounts that write what it writes.

Linkage finds a campaign from what its accounts share pairwise (networks, payment, arrival
bursts, synchronised timing, cohorts). A campaign that spreads over enough accounts leaves
some of them with no such link: accounts created on the first day of the log (when every
account is "new"), on IPs of their own, with everyone's user agents. What it cannot avoid is
*what it asks*: every account of a harvest sends the campaign's few prompt frames, so the
content values its found members hold far beyond chance are the campaign's fingerprint, and an
account outside it whose own traffic is mostly that fingerprint is one more member. An analyst
does the same by hand: pivot from a confirmed campaign on its indicators.

Content alone is not enough: an eval harness runs benchmark items in the very format a
benchmark sweep uses, a judge product sends the grading frames a rubric harvest sends. The
second axis is the dispatcher's: a campaign whose linked members run at one balanced pace
(requests per active day within a few tens of percent of each other, which ordinary accounts
never do: their volumes spread over orders of magnitude) is pivoted from, and an account joins
only when it also runs at that pace. Writing the campaign's frames *and* keeping its
dispatcher's pace is being one more of its accounts.

For a campaign ``C`` of ``m`` of ``N`` accounts and a content value ``v`` (a prompt template,
prompt ending, near-duplicate payload or system prompt) held by ``n_v`` accounts, ``c`` of them
in ``C``: ``v`` is a **fingerprint** of ``C`` when ``c >= min_members``, ``c >= min_lift * e`` with
``e = m * n_v / N``, and a Poisson count of mean ``e`` reaches ``c`` with probability below
``max_p`` (the test of :mod:`detector.campaigns.cohorts`, with membership of ``C`` as the
identity value). An account joins ``C`` when at least ``min_values`` distinct fingerprints of
``C`` are among its own evidence values and they carry at least ``min_share`` of its uses of
content values: a popular app's template shared with the campaign is one value among a normal
user's many; a member's traffic *is* the campaign's frames.

Only campaigns that already lift their members and are flagged as a group (suspicious, with
``min_core`` members or more) are pivoted from: a pivot extends a finding, it never makes one.
The pivot adds edges (each joining account chained to the campaign's first member, with the
fingerprint as evidence) and the campaigns are grouped and scored again, so joined accounts are
scored as members like any other. Members of campaigns that are not pivoted from stay where
linkage put them (two operators may use one public frame); fragments of one balanced operation
merge.
"""

from __future__ import annotations

import polars as pl

from detector.campaigns.cohorts import cohort_groups
from detector.campaigns.linkage import EDGE_SCHEMA, EVIDENCE_KINDS

CONTENT_KINDS = tuple(k.name for k in EVIDENCE_KINDS if k.family == "content")
# what the campaign wrote (its frames) rather than what it asks about (payloads, which public
# data sets share with honest users of the same data: an eval harness runs benchmark items)
FRAME_KINDS = ("tmpl", "tmpl_tail", "system_prompt")


def fingerprints(
    evidence: pl.DataFrame,
    campaigns: pl.DataFrame,
    n_accounts: int,
    *,
    min_members: int = 3,
    min_lift: float = 5.0,
    max_p: float = 1e-4,
) -> pl.DataFrame:
    """``campaign_id, kind, value``: the content values each of ``campaigns``
    (``campaign_id, members``) holds far beyond chance among ``n_accounts`` accounts whose
    evidence values are ``evidence`` (``account_id, kind, value, uses``)."""
    content = evidence.filter(pl.col("kind").is_in(CONTENT_KINDS)).select(
        "account_id", "kind", "value"
    )
    holders = content.group_by("kind", "value").agg(pl.len().cast(pl.UInt32).alias("n_v"))
    members = campaigns.select("campaign_id", pl.col("members").alias("account_id")).explode(
        "account_id"
    )
    sizes = members.group_by("campaign_id").agg(pl.len().cast(pl.UInt32).alias("n_u"))
    counts = (
        members.join(content, on="account_id")
        .group_by("campaign_id", "kind", "value")
        .agg(pl.len().cast(pl.UInt32).alias("c"))
        .filter(pl.col("c") >= min_members)
        .join(sizes, on="campaign_id")
        .join(holders, on=["kind", "value"])
    )
    found = cohort_groups(
        counts, n_accounts, min_members=min_members, min_lift=min_lift, max_p=max_p
    )
    return found.select("campaign_id", "kind", "value")


def pivot_edges(
    evidence: pl.DataFrame,
    campaigns: pl.DataFrame,
    n_accounts: int,
    paces: pl.DataFrame,
    *,
    band: float = 1.6,
    weight: float = 1.0,
    min_core: int = 5,
    min_score: float = 0.0,
    min_value_odds: float = 1.0,
    min_log_odds: float = 3.0,
) -> pl.DataFrame:
    """``src, dst, weight, evidence``: an edge of ``weight`` from each account outside a
    suspicious, balanced campaign of ``campaigns`` (``campaign_id, members, lift, score,
    strength_balance``: those that lift their members, score at least ``min_score``, have
    ``min_core`` members or more and balanced paces) that holds enough of its fingerprints
    (:func:`fingerprints`) and runs at its pace, to the campaign's first member. ``paces``:
    ``account_id, pace`` (requests per active day); an account runs at the campaign's pace
    within a factor ``band`` of its members' median.
    Each account joins the one campaign it is likeliest to belong to. Members of other
    campaigns do not join (two operators may share a public frame), except members of another
    pivoted campaign: fragments of one balanced operation, with its frames and pace, merge.

    Each fingerprint ``v`` an account holds multiplies the odds that it belongs to the
    campaign by ``(c / m) / ((n_v - c + 1) / (N - m))``: how much likelier a member holds ``v``
    than an account outside (whose holders include members not found yet, so the ratio errs
    low). Only values at least ``10 ** min_value_odds`` times likelier count (a popular value
    the campaign also uses says little, and a busy account holds many), and an account joins
    when their product reaches ``10 ** min_log_odds`` and one of them is a frame (a template,
    prompt ending or system prompt: near-duplicate payloads alone may be a public data set's
    items, which honest users of the same data share)."""
    core = campaigns.filter(
        (pl.col("lift") > 0)
        & (pl.col("score") >= min_score)
        & (pl.col("strength_balance") > 0)
        & (pl.col("members").list.len() >= min_core)
    ).select("campaign_id", "members", pl.col("members").list.len().alias("m"))
    if core.height == 0:
        return pl.DataFrame(schema=EDGE_SCHEMA)
    prints = fingerprints(evidence, core, n_accounts)
    if prints.height == 0:
        return pl.DataFrame(schema=EDGE_SCHEMA)
    content = evidence.filter(pl.col("kind").is_in(CONTENT_KINDS)).select(
        "account_id", "kind", "value"
    )
    # members of other campaigns stay where linkage put them, but fragments of one balanced
    # operation (its frames, its pace) are one campaign
    linked = (
        campaigns.join(core, on="campaign_id", how="anti")
        .select(pl.col("members").alias("account_id"))
        .explode("account_id")
    )
    members = core.select("campaign_id", pl.col("members").alias("account_id")).explode(
        "account_id"
    )
    holders = content.group_by("kind", "value").agg(pl.len().alias("n_v"))
    pace = paces.select("account_id", pl.col("pace").cast(pl.Float64))
    typical = (
        members.join(pace, on="account_id")
        .group_by("campaign_id")
        .agg(pl.col("pace").median().alias("typical"))
    )
    in_core = (
        members.join(content, on="account_id")
        .group_by("campaign_id", "kind", "value")
        .agg(pl.len().alias("c"))
    )
    odds = (
        prints.join(in_core, on=["campaign_id", "kind", "value"])
        .join(holders, on=["kind", "value"])
        .join(core.select("campaign_id", "m"), on="campaign_id")
        .select(
            "campaign_id",
            "kind",
            "value",
            (
                (pl.col("c") / pl.col("m"))
                / ((pl.col("n_v") - pl.col("c") + 1) / (n_accounts - pl.col("m")))
            )
            .log10()
            .alias("log_odds"),
        )
        .filter(pl.col("log_odds") >= min_value_odds)
    )
    hits = (
        content.join(odds, on=["kind", "value"])
        .join(members, on=["campaign_id", "account_id"], how="anti")
        .group_by("account_id", "campaign_id")
        .agg(
            pl.len().alias("n_values"),
            pl.col("log_odds").sum(),
            pl.col("kind").is_in(FRAME_KINDS).any().alias("frame"),
        )
        .filter((pl.col("log_odds") >= min_log_odds) & pl.col("frame"))
        .join(linked, on="account_id", how="anti")
        .join(pace, on="account_id")
        .join(typical, on="campaign_id")
        .filter(
            (pl.col("pace") <= band * pl.col("typical"))
            & (pl.col("pace") * band >= pl.col("typical"))
        )
        .sort("log_odds", "campaign_id", descending=[True, False])
        .unique("account_id", keep="first")  # the campaign it is likeliest to belong to
        .join(core.select("campaign_id", pl.col("members").list.first().alias("dst"), "m"),
              on="campaign_id")
    )  # fmt: skip
    return hits.select(
        pl.col("account_id").alias("src"),
        "dst",
        pl.lit(weight, dtype=pl.Float64).alias("weight"),
        pl.concat_list(
            pl.concat_str(
                pl.lit("writes what a suspicious campaign of "),
                pl.col("m").cast(pl.String),
                pl.lit(" accounts writes: "),
                pl.col("n_values").cast(pl.String),
                pl.lit(" of its prompt fingerprints, 1e"),
                pl.col("log_odds").floor().cast(pl.Int64).cast(pl.String),
                pl.lit(" times likelier in the campaign than outside; at its pace ("),
                pl.col("pace").round(0).cast(pl.Int64).cast(pl.String),
                pl.lit(" requests per active day, campaign median "),
                pl.col("typical").round(0).cast(pl.Int64).cast(pl.String),
                pl.lit(")"),
            )
        ).alias("evidence"),
    ).select([pl.col(c).cast(t) for c, t in EDGE_SCHEMA.items()])
