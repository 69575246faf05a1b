"""Accounts too large for one group: split by clock hours, merged from partial results.

One account may carry a large share of the traffic (a reseller, a bulk distiller with 100 M
requests). The feature code holds a group's events in memory (~150 bytes per event), so an
account with more than ``max_account_events`` events (:class:`detector.spark.engine.
SparkOptions`, default 5 M: ~0.75 GiB) is not handed to one worker whole. Its events are cut
into **time chunks of whole clock hours** (:func:`time_chunks`), about ``max_account_events``
events each at the account's mean rate; each chunk is a group of its own, run through THE
feature code (:func:`detector.pipeline.features`, with the whole window's bounds) like any
other group, and the chunks' feature rows are merged on the driver (:func:`merge_features`).
Memory per group is then bounded by the events of one chunk: at worst, an account's busiest
``chunk_h`` clock hours (one hour at the least), not by the account.

**Which features merge exactly.** Chunks are disjoint in time and cover whole clock hours, and
each chunk's row carries its number of events ``n_i``:

- exact (each feature declares its rule, ``Feature.merge``): ``requests_per_day`` and
  ``active_hours`` (sums), ``peak_per_minute`` (max),
  ``account_age_days`` (min), every share and mean over requests (means weighted by ``n_i``:
  ``high_max_tokens_share``, ``tiny_max_tokens_share``,
  ``n_gt1_share``, ``logprobs_share``, ``logit_bias_share``, ``stream_share``,
  ``tools_share``, ``error_share``, ``cot_rate``, ``rubric_rate``, ``rewrite_rate``,
  ``bench_rate``, ``non_latin_share``, ``system_prompt_share``, ``new_model_share``,
  ``mean_completion_tokens``, ``mean_prompt_chars``), ``logit_bias_tokens`` (weighted by the
  requests that set a bias) and ``completion_prompt_ratio`` (a ratio of sums, recovered from
  each chunk's ratio and completion total; exact when every chunk has completion tokens);
- approximate (they need the whole account's distinct values, order or histograms):
  ``max_tokens_saturation`` (a share of the requests with a roomy cap, whose number per chunk
  is not known), ``one_shot_tool_share`` (a conversation cut by a chunk boundary looks
  one-shot), distinct counts
  (``distinct_ips``, ``distinct_prefixes``, ``distinct_user_agents``,
  ``distinct_keys``, ``distinct_system_prompts``, ``topic_breadth``: the largest chunk's, a
  lower bound), ``template_reuse``, ``top_template_share``, ``near_dup_rate`` (duplicates
  across chunks are missed: a lower bound), ``hour_entropy``, ``topic_entropy``,
  ``single_turn_share``, ``turns_per_conversation``, ``iat_cv``, ``median_gap_s`` (weighted
  means of the chunks'), ``temperature_std`` (the within-chunk spread only, a lower bound)
  and ``ramp_up`` (from the chunks' counts either side of the account's middle hour).

Linkage evidence merges exactly (:func:`merge_evidence`): each chunk lists every value it used
with its count; counts are summed per account and value on Spark before the ``min_uses`` and
``max_values`` cuts of :func:`detector.campaigns.linkage.account_evidence` (the latter by its
own ``_most_used``, per large account).

The IP / key slices of a large multi-tenant account are computed per slicing value instead of
per account: its events are grouped by ``(account, ip)`` (then ``(account, api key)``)
buckets, so that every slice's events meet in one group and THE slice code
(:func:`detector.subaccounts.slice_features`) gives the slice's features exactly; only its
share of the account (a number in the reason's text) needs the whole account, and is
recomputed from the account's counts (:func:`slice_shares`). A worker then holds the events of
a few slices, never the account.
"""

from __future__ import annotations

import inspect
import math
from typing import TYPE_CHECKING

import polars as pl

from detector.campaigns.linkage import EVIDENCE_SCHEMA, _most_used, account_evidence
from detector.features import FEATURE_NAMES, FEATURES
from detector.features.unit import EXACT_MERGES
from detector.window import Window

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import Column, DataFrame, SparkSession

N_EVENTS = "__n"
UNLIMITED = 2**31 - 1
_DEFAULTS = inspect.signature(account_evidence).parameters
MIN_USES: int = _DEFAULTS["min_uses"].default
MAX_VALUES: int = _DEFAULTS["max_values"].default


def _merging(*rules: str) -> tuple[str, ...]:
    """The features whose declared ``merge`` (:data:`detector.features.unit.Merge`) is one of
    ``rules``."""
    return tuple(f.name for f in FEATURES if f.merge in rules)


SUM = _merging("sum")
MAX = _merging("max")
MIN = _merging("min")
WEIGHTED = _merging("mean")
SPECIAL = ("logit_bias_tokens", "completion_prompt_ratio")  # merged by their own rules below
EXACT: tuple[str, ...] = _merging(*EXACT_MERGES)
LOWER_BOUND_MAX = _merging("lower_bound_max")
APPROX_WEIGHTED = _merging("approx_mean")
APPROX_SPECIAL = ("temperature_std", "ramp_up")  # approximated by their own rules below
APPROXIMATE: tuple[str, ...] = tuple(f for f in FEATURE_NAMES if f not in EXACT)
if set(_merging("special")) != set(SPECIAL) or set(_merging("approx_special")) != set(
    APPROX_SPECIAL
):
    raise RuntimeError("a feature declares a special merge rule that merge_features lacks")


def _epoch_hour(ts: object) -> int:
    return int(pl.Series([ts]).dt.epoch("s")[0]) // 3600


def time_chunks(
    large: pl.DataFrame, window: Window, max_account_events: int, *, first_group: int
) -> pl.DataFrame:
    """``account_id, first_group, chunk_h, base_hour, n_chunks`` for each large account
    (``large``: ``account_id, n``): its events go to group ``first_group + hour // chunk_h -
    base_hour`` (``hour``: the event's epoch hour), chunks of ``chunk_h`` whole clock hours
    holding ``max_account_events`` events each at the account's mean rate."""
    start_h, end_h = _epoch_hour(window.start), _epoch_hour(window.end)
    span = end_h - start_h + 1
    rows = []
    group = first_group
    for account_id, n in large.sort("account_id").iter_rows():
        chunk_h = max(1, span // max(1, math.ceil(n / max_account_events)))
        base = start_h // chunk_h
        n_chunks = end_h // chunk_h - base + 1
        rows.append((account_id, group, chunk_h, base, n_chunks))
        group += n_chunks
    schema = {
        "account_id": pl.String(),
        "first_group": pl.Int64(),
        "chunk_h": pl.Int64(),
        "base_hour": pl.Int64(),
        "n_chunks": pl.Int64(),
    }
    return pl.DataFrame(rows, schema=schema, orient="row")


def chunk_group() -> Column:
    """The group of a large account's event (Spark), from the columns of :func:`time_chunks`."""
    from pyspark.sql import functions as F

    hour = F.floor(F.unix_seconds("ts") / 3600)
    return F.col("first_group") + F.floor(hour / F.col("chunk_h")) - F.col("base_hour")


def merge_features(per_group: pl.DataFrame, n_groups: int, group: str) -> pl.DataFrame:
    """One feature row per account from per-group rows: rows of ordinary groups (``group <
    n_groups``) as they are, the chunk rows of each large account merged (module docstring)."""
    whole = per_group.filter(pl.col(group) < n_groups).select("account_id", *FEATURE_NAMES)
    parts = per_group.filter(pl.col(group) >= n_groups)
    if parts.height == 0:
        return whole
    n = pl.col(N_EVENTS).cast(pl.Float64)

    def wmean(c: str, w: pl.Expr = n) -> pl.Expr:
        ok = pl.col(c).is_not_null()
        return ((pl.col(c) * w).filter(ok).sum() / w.filter(ok).sum()).alias(c)

    completions = pl.col("mean_completion_tokens") * n
    prompts = completions / pl.col("completion_prompt_ratio")
    with_prompts = pl.col("completion_prompt_ratio") > 0
    # ramp_up: the chunks' events either side of the account's middle chunk (an account's
    # chunks are consecutive groups)
    chunk = pl.col(group).cast(pl.Float64)
    mid = (chunk.min() + chunk.max()) / 2
    merged = (
        parts.group_by("account_id")
        .agg(
            *[pl.col(c).sum() for c in SUM],
            *[pl.col(c).max() for c in (*MAX, *LOWER_BOUND_MAX)],
            *[pl.col(c).min() for c in MIN],
            *[wmean(c) for c in (*WEIGHTED, *APPROX_WEIGHTED)],
            wmean("logit_bias_tokens", n * pl.col("logit_bias_share")),
            (completions.sum() / prompts.filter(with_prompts).sum().clip(lower_bound=1.0)).alias(
                "completion_prompt_ratio"
            ),
            (pl.col("temperature_std") ** 2 * n)
            .sum()
            .truediv(n.sum())
            .sqrt()
            .alias("temperature_std"),
            (
                n.filter(chunk > mid).sum() / n.filter(chunk <= mid).sum().clip(lower_bound=1.0)
            ).alias("ramp_up"),
        )
        .select("account_id", *[pl.col(c).fill_nan(None) for c in FEATURE_NAMES])
    )
    return pl.concat([whole, merged.cast(dict(whole.schema))])  # type: ignore[arg-type]


def slice_shares(table: pl.DataFrame, large: DataFrame, columns: list[str]) -> pl.DataFrame:
    """``table`` (slice features and meta) with the ``slice_share`` of large accounts' slices
    recomputed over the whole account: the slice's events over the account's events with a
    value in that column (as :func:`detector.subaccounts.account_slices` counts them)."""
    from pyspark.sql import functions as F

    from detector.spark import frames

    schema = {"parent_id": pl.String(), "slice_column": pl.String(), "__total": pl.Int64()}
    totals = []
    for col in columns:
        counts = (
            large.where(F.col(col).isNotNull())
            .groupBy(F.col("account_id").alias("parent_id"))
            .agg(F.count(F.lit(1)).alias("__total"))
            .withColumn("slice_column", F.lit(col))
        )
        totals.append(frames.from_spark(counts.toArrow(), schema).select(list(schema)))
    total = pl.concat(totals)
    return (
        table.join(total, on=["parent_id", "slice_column"], how="left")
        .with_columns(
            pl.when(pl.col("__total").is_not_null())
            .then(pl.col("n") / pl.col("__total"))
            .otherwise(pl.col("slice_share"))
            .alias("slice_share")
        )
        .drop("__total")
    )


def _top_values(table: pa.Table) -> pa.Table:
    """Each large account's :data:`MAX_VALUES` most used values per kind (THE linkage rule,
    :func:`detector.campaigns.linkage._most_used`)."""
    from detector.spark import frames

    values = frames.from_spark(table, EVIDENCE_SCHEMA)
    kept = [
        _most_used(
            values.filter(pl.col("kind") == kind).select("account_id", "value", "uses").lazy(),
            MAX_VALUES,
        )
        .with_columns(pl.lit(kind).alias("kind"))
        .collect()
        for kind in values["kind"].unique().sort().to_list()
    ]
    out = pl.concat(kept) if kept else values.clear()
    return frames.to_spark(out.select(list(EVIDENCE_SCHEMA)), EVIDENCE_SCHEMA)


def merge_evidence(spark: SparkSession, parts: DataFrame, partial: str) -> DataFrame:
    """Evidence rows ``account_id, kind, value, uses``: ordinary groups' as they are; the
    chunks' of large accounts summed per account and value, then cut as
    :func:`detector.campaigns.linkage.account_evidence` cuts them."""
    from pyspark.sql import functions as F

    from detector.spark import frames

    cols = list(EVIDENCE_SCHEMA)
    whole = parts.where(~F.col(partial)).select(*cols)
    summed = (
        parts.where(F.col(partial))
        .groupBy("account_id", "kind", "value")
        .agg(F.sum("uses").alias("uses"))
        .where(F.col("uses") >= MIN_USES)
    )
    top = summed.groupBy("account_id").applyInArrow(_top_values, frames.ddl(EVIDENCE_SCHEMA))
    return whole.unionByName(top.select(*cols))
