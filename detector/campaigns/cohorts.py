"""Cohorts: accounts that hold an identity value and a content value together far more often
than chance allows.

Pairwise links weigh each shared value by how few accounts hold it, so a campaign that uses
many accounts dilutes its own evidence: 240 accounts behind four /24 ranges with one SDK and
three prompt templates share values that hundreds hold, and no pair of them adds up to a link.
What such a campaign cannot avoid is *coincidence on independent axes*: the holders of one
identity value (an IP range, an arrival burst, a payment method, an e-mail domain) are, far
beyond chance, the holders of one content or client value (a prompt template, a prompt
ending, a near-duplicate payload, a system prompt, a user agent). A popular app's template is
held by customers on every network; an office NAT's users write every kind of prompt; a
campaign's accounts do both together.

For an identity value ``u`` held by ``n_u`` of ``N`` accounts and a content value ``v`` held by
``n_v``, independence expects ``e = n_u * n_v / N`` accounts to hold both. A **cohort** is the
``c`` accounts holding both when ``c >= min_members``, ``c >= min_lift * e`` and a Poisson count
of mean ``e`` reaches ``c`` with probability below ``max_p`` (tens of thousands of pairs of
values are tried: a loose test would find cohorts by chance). Each account contributes its
``per_kind`` most used values of each content kind.

:func:`cohort_counts` is the heavy step (a join of identity holders with content holders);
:func:`cohort_groups` and :func:`cohort_edges` run on its small output, which is what the
Spark engine collects from its own count.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import polars as pl
from scipy.stats import poisson

from detector.campaigns.linkage import EDGE_SCHEMA, KIND_BY_NAME, SOFT_FAMILIES

SOFT = tuple(k for k, kind in KIND_BY_NAME.items() if kind.family in SOFT_FAMILIES)
IDENTITY = tuple(k for k, kind in KIND_BY_NAME.items() if kind.family not in SOFT_FAMILIES)
COUNT_SCHEMA: dict[str, pl.DataType] = {
    "ku": pl.String(),
    "u": pl.String(),
    "kv": pl.String(),
    "v": pl.String(),
    "c": pl.UInt32(),
    "n_u": pl.UInt32(),
    "n_v": pl.UInt32(),
    "members": pl.List(pl.String()),
}


def cohort_counts(
    evidence: pl.DataFrame, *, min_members: int = 3, per_kind: int = 8
) -> pl.DataFrame:
    """``ku, u, kv, v, c, n_u, n_v, members``: for every identity value ``u`` (kind ``ku``)
    and content or client value ``v`` (kind ``kv``) held together by at least ``min_members``
    accounts, how many hold both (``c``, and who), and how many hold each."""
    held = evidence.select("account_id", "kind", "value", "uses")
    sizes = held.group_by("kind", "value").agg(pl.len().cast(pl.UInt32).alias("n"))
    held = held.join(sizes, on=["kind", "value"]).filter(pl.col("n") >= min_members)
    ident = held.filter(pl.col("kind").is_in(IDENTITY)).select(
        "account_id",
        pl.col("kind").alias("ku"),
        pl.col("value").alias("u"),
        pl.col("n").alias("n_u"),
    )
    content = (
        held.filter(pl.col("kind").is_in(SOFT))
        .sort(["account_id", "kind", "uses", "value"], descending=[False, False, True, False])
        .filter(pl.int_range(pl.len()).over("account_id", "kind") < per_kind)
        .select(
            "account_id",
            pl.col("kind").alias("kv"),
            pl.col("value").alias("v"),
            pl.col("n").alias("n_v"),
        )
    )
    return (
        ident.join(content, on="account_id")
        .group_by("ku", "u", "kv", "v")
        .agg(
            pl.len().cast(pl.UInt32).alias("c"),
            pl.col("n_u").first(),
            pl.col("n_v").first(),
            pl.col("account_id").sort().alias("members"),
        )
        .filter(pl.col("c") >= min_members)
        .select([pl.col(c).cast(t) for c, t in COUNT_SCHEMA.items()])
    )


def cohort_groups(
    counts: pl.DataFrame,
    n_accounts: int,
    *,
    min_members: int = 3,
    min_lift: float = 5.0,
    max_p: float = 1e-8,
) -> pl.DataFrame:
    """The cohorts among ``counts`` (:func:`cohort_counts` rows of ``n_accounts`` accounts):
    those rows with ``expected`` (``e``), ``lift`` (``c / e``) and ``p`` (the Poisson
    probability of ``c`` or more) added, the significant ones only."""
    if counts.height == 0 or n_accounts == 0:
        return counts.with_columns(
            pl.lit(None, pl.Float64).alias(c) for c in ("expected", "lift", "p")
        ).clear()
    out = counts.with_columns(
        (pl.col("n_u").cast(pl.Float64) * pl.col("n_v") / n_accounts).alias("expected")
    ).with_columns((pl.col("c") / pl.col("expected")).alias("lift"))
    p = poisson.sf(out["c"].to_numpy().astype(np.float64) - 1, out["expected"].to_numpy())
    return out.with_columns(pl.Series("p", p, dtype=pl.Float64)).filter(
        (pl.col("c") >= min_members) & (pl.col("lift") >= min_lift) & (pl.col("p") < max_p)
    )


def _label(kind: str, value: str) -> str:
    k = KIND_BY_NAME[kind]
    return f"{k.singular} {value}" if k.readable else f"a {k.singular}"


def cohort_edges(groups: pl.DataFrame, weight: float = 1.0) -> pl.DataFrame:
    """``src, dst, weight, evidence``: each cohort's members chained in id order (a chain is
    enough to make them one connected campaign), ``weight`` each, with the coincidence as
    evidence ("IP range 1.2.3.0/24 with a prompt template: 60 accounts, 9.6x chance")."""
    rows: list[tuple[str, str, float, list[str]]] = []
    for ku, u, kv, v, c, lift, p, members in groups.select(
        "ku", "u", "kv", "v", "c", "lift", "p", "members"
    ).iter_rows():
        exponent = max(1, int(-math.log10(max(p, 1e-300))))
        text = (
            f"{_label(ku, u)} with {_label(kv, v)}: {c} accounts, {lift:.0f}x chance "
            f"(p < 1e-{exponent})"
        )
        rows.extend((a, b, weight, [text]) for a, b in itertools.pairwise(members))
    if not rows:
        return pl.DataFrame(schema=EDGE_SCHEMA)
    return pl.DataFrame(rows, schema=EDGE_SCHEMA, orient="row")


def with_cohort_edges(edges: pl.DataFrame, cohort: pl.DataFrame) -> pl.DataFrame:
    """``edges`` and the cohorts' ``cohort`` edges as one edge list: a pair in both keeps the
    larger weight and every evidence sentence."""
    if cohort.height == 0:
        return edges
    both = pl.concat([edges.select(list(EDGE_SCHEMA)), cohort.select(list(EDGE_SCHEMA))])
    return (
        both.group_by("src", "dst")
        .agg(
            pl.col("weight").max(),
            pl.col("evidence")
            .list.explode(keep_nulls=False, empty_as_null=False)
            .unique(maintain_order=True),
        )
        .sort("src", "dst")
    )
