"""Pivots: from a suspicious campaign to the accounts that write what it writes.

Linkage finds a campaign from what its accounts share pairwise (networks, payment, arrival
bursts, synchronised timing, cohorts). A campaign that spreads over enough accounts leaves
some of them with no such link: accounts created on the first day of the log (when every
account is "new"), on IPs of their own, with everyone's user agents. What it cannot avoid is
*what it asks*: every account of a harvest sends the campaign's few prompt frames, so the
content values its found members hold far beyond chance are the campaign's fingerprint. An
analyst does the same by hand: pivot from a confirmed campaign on its indicators.

Content alone is not enough: an eval harness runs benchmark items in the very format a
benchmark sweep uses, a judge product sends the grading frames a rubric harvest sends. Two
more axes decide. The dispatcher's: a campaign whose linked members run at one balanced pace
(requests per active day within a few tens of percent of each other, which ordinary accounts
never do: their volumes spread over orders of magnitude) is pivoted from, and an account joins
only when it also runs at that pace. And the account's whole profile: it joins only when most
of its features lie where the members' do (:func:`alike`). Writing the campaign's frames,
keeping its dispatcher's pace and looking like its accounts is being one more of them.

For a campaign ``C`` of ``m`` of ``N`` accounts and a content value ``v`` (a prompt template,
prompt ending, near-duplicate payload or system prompt) held by ``n_v`` accounts, ``c`` of them
in ``C``: ``v`` is a **fingerprint** of ``C`` when ``c >= min_members``, ``c >= min_lift * e`` with
``e = m * n_v / N``, and a Poisson count of mean ``e`` reaches ``c`` with probability below
``max_p`` (the test of :mod:`detector.campaigns.cohorts`, with membership of ``C`` as the
identity value). How much a fingerprint says is weighed against the accounts *unlike* the
campaign (:func:`pivot_edges`): a frame that honest products write too is weak.

Only campaigns that already lift their members and are flagged as a group (suspicious, with
``min_core`` members or more) are pivoted from: a pivot extends a finding, it never makes one.
The pivot adds edges (each joining account chained to the campaign's first member, with the
fingerprint as evidence) and the campaigns are grouped and scored again, so joined accounts are
scored as members like any other; the pipeline pivots again from the grown campaign until
nobody joins. Only accounts that linkage left out of every campaign join, each one campaign: a
pivot never merges campaigns (two operators may use one public frame).
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
    """``campaign_id, kind, value, c``: the content values each of ``campaigns``
    (``campaign_id, members``) holds far beyond chance among ``n_accounts`` accounts whose
    evidence values are ``evidence`` (``account_id, kind, value, uses``), and how many of its
    members hold each (``c``)."""
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
    return found.select("campaign_id", "kind", "value", "c")


def alike(
    features: pl.DataFrame,
    members: pl.DataFrame,
    candidates: pl.DataFrame,
    *,
    low: float = 0.05,
    high: float = 0.95,
) -> pl.DataFrame:
    """``account_id, campaign_id, alike``: for each candidate (``account_id, campaign_id``), the
    share of the numeric ``features`` on which its value lies within the campaign's members'
    (``campaign_id, account_id``) ``low``-``high`` quantile range. A feature the candidate or
    the campaign has no value for does not count."""
    cols = [c for c, t in features.schema.items() if c != "account_id" and t.is_numeric()]
    needed = pl.concat([members.select("account_id"), candidates.select("account_id")])
    long = features.join(needed.unique(), on="account_id", how="semi")
    long = long.select("account_id", *[pl.col(c).cast(pl.Float64) for c in cols]).unpivot(
        index="account_id", variable_name="feature", value_name="x"
    )
    bands = (
        members.join(long, on="account_id")
        .group_by("campaign_id", "feature")
        .agg(pl.col("x").quantile(low).alias("lo"), pl.col("x").quantile(high).alias("hi"))
    )
    eps = 1e-9
    return (
        candidates.select("account_id", "campaign_id")
        .join(long, on="account_id")
        .join(bands, on=["campaign_id", "feature"])
        .filter(pl.col("x").is_not_nan() & pl.col("lo").is_not_null())
        .group_by("account_id", "campaign_id")
        .agg(
            ((pl.col("x") >= pl.col("lo") - eps) & (pl.col("x") <= pl.col("hi") + eps))
            .mean()
            .alias("alike")
        )
    )


def pivot_edges(
    evidence: pl.DataFrame,
    campaigns: pl.DataFrame,
    features: pl.DataFrame,
    *,
    pace: str = "requests_per_active_day",
    band: float = 1.6,
    min_alike: float = 0.6,
    weight: float = 1.0,
    min_core: int = 5,
    min_score: float = 0.0,
    min_value_odds: float = 1.0,
    min_log_odds: float = 3.0,
) -> pl.DataFrame:
    """``src, dst, weight, evidence``: an edge of ``weight`` to the campaign's first member from
    each account that holds enough of the fingerprints (:func:`fingerprints`) of a suspicious,
    balanced campaign of ``campaigns`` (``campaign_id, members, lift, score, strength_balance``:
    those that lift their members, score at least ``min_score``, have ``min_core`` members or
    more and balanced paces), runs at its pace and is alike its members. ``features``: the
    account table (one row per account, :func:`detector.features.account_features`) of all
    ``N`` accounts; an account runs at the campaign's pace when its ``pace`` is within a factor
    ``band`` of the members' median, and is alike them when at least ``min_alike`` of its
    features lie in their 5-95 % range (:func:`alike`).

    Only accounts in no campaign join, each the one campaign it is likeliest to belong to: a
    pivot never moves a linked account nor merges campaigns (two operators may share a public
    frame, or even a pace).

    Each fingerprint ``v`` an account holds multiplies the odds that it belongs to the
    campaign by ``(c / m) / ((h + 1) / n)``: how much likelier a member holds ``v`` than one of
    the ``n`` accounts *unlike* the campaign (off its pace or unlike its members), ``h`` of
    which hold it. (Counting every account outside would count the members not found yet,
    and the more of them there are, the weaker their own campaign's fingerprints would read.)
    Only values at least ``10 ** min_value_odds`` times likelier count (a popular value
    the campaign also uses says little, and a busy account holds many), and an account joins
    when their product reaches ``10 ** min_log_odds`` and one of them is a frame (a template,
    prompt ending or system prompt: near-duplicate payloads alone may be a public data set's
    items, which honest users of the same data share). A frame that honest products write too
    (an agent product's tool frames) is held by accounts unlike the campaign, and reads weak."""
    n_accounts = features.height
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
    members = core.select("campaign_id", pl.col("members").alias("account_id")).explode(
        "account_id"
    )
    # linked accounts stay where linkage put them: two campaigns alike in frames and pace may
    # still be two operators
    linked = campaigns.select(pl.col("members").alias("account_id")).explode("account_id")
    paces = features.select("account_id", pl.col(pace).cast(pl.Float64).alias("pace"))
    typical = (
        members.join(paces, on="account_id")
        .group_by("campaign_id")
        .agg(pl.col("pace").median().alias("typical"))
    )
    # every account outside each campaign: at its pace and alike its members, or not
    outside = (
        features.select("account_id")
        .join(core.select("campaign_id"), how="cross")
        .join(members, on=["campaign_id", "account_id"], how="anti")
        .join(paces, on="account_id")
        .join(typical, on="campaign_id")
    )
    at_pace = (pl.col("pace") <= band * pl.col("typical")) & (
        pl.col("pace") * band >= pl.col("typical")
    )
    like = outside.filter(at_pace.fill_null(False)).join(linked, on="account_id", how="anti")
    like = like.join(alike(features, members, like), on=["account_id", "campaign_id"]).filter(
        pl.col("alike") >= min_alike
    )
    unlike = outside.join(like, on=["campaign_id", "account_id"], how="anti")
    n_unlike = unlike.group_by("campaign_id").agg(pl.len().alias("n_u"))
    in_unlike = (
        unlike.select("campaign_id", "account_id")
        .join(content, on="account_id")
        .join(
            prints.select("campaign_id", "kind", "value"),
            on=["campaign_id", "kind", "value"],
            how="semi",
        )
        .group_by("campaign_id", "kind", "value")
        .agg(pl.len().alias("h"))
    )
    odds = (
        prints.join(in_unlike, on=["campaign_id", "kind", "value"], how="left")
        .join(core.select("campaign_id", "m"), on="campaign_id")
        .join(n_unlike, on="campaign_id")
        .select(
            "campaign_id",
            "kind",
            "value",
            ((pl.col("c") / pl.col("m")) / ((pl.col("h").fill_null(0) + 1) / pl.col("n_u")))
            .log10()
            .alias("log_odds"),
        )
        .filter(pl.col("log_odds") >= min_value_odds)
    )
    hits = (
        like.select("account_id", "campaign_id", "pace", "typical", "alike")
        .join(content, on="account_id")
        .join(odds, on=["campaign_id", "kind", "value"])
        .group_by("account_id", "campaign_id")
        .agg(
            pl.len().alias("n_values"),
            pl.col("log_odds").sum(),
            pl.col("kind").is_in(FRAME_KINDS).any().alias("frame"),
            pl.col("pace", "typical", "alike").first(),
        )
        .filter((pl.col("log_odds") >= min_log_odds) & pl.col("frame"))
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
                pl.lit("); alike its members on "),
                (pl.col("alike") * 100).round(0).cast(pl.Int64).cast(pl.String),
                pl.lit(" % of the account features"),
            )
        ).alias("evidence"),
    ).select([pl.col(c).cast(t) for c, t in EDGE_SCHEMA.items()])
