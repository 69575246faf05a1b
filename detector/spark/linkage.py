"""Linkage on Spark: :func:`detector.campaigns.linkage.link_accounts`'s steps, with the big
tables (evidence, inverted index, candidate pairs, the values each pair shares) as Spark
joins and aggregations and each step's rule run by its own polars function per group.

1. **Evidence** ``account_id, kind, value, uses`` (built per group of accounts by
   :func:`detector.campaigns.linkage.account_evidence`, see :mod:`detector.spark.engine`).
2. **Inverted index**: holders per value (``groupBy(kind, value)``), values held by more than
   :func:`~detector.campaigns.linkage.group_cap` accounts dropped, each holder row weighted by
   :func:`~detector.campaigns.linkage.weighted` (rarity) per Arrow batch.
3. **Candidate pairs** per bucket of values (``groupBy(xxhash64(kind, value) mod G)``):
   :func:`~detector.campaigns.linkage._candidate_pairs` — all pairs of small groups,
   sorted-neighbourhood windows of ``fanout`` in large ones, so their number stays near
   ``N * fanout`` (no all-pairs), then deduplicated by Spark.
4. **What each pair shares**: pairs joined to the holder rows of both sides on Spark, then per
   bucket of pairs (``a mod G``, so that a pair's rows meet) :func:`~detector.campaigns.
   linkage.shared_per_kind`, :func:`~detector.campaigns.linkage.sync_candidates` and
   :func:`~detector.campaigns.linkage._sync_evidence` (time slots per account from the same
   :func:`~detector.campaigns.linkage.time_slot`), then
   :func:`~detector.campaigns.linkage.edge_weights`.
5. **On the driver**: the edges (pairs above ``min_edge``: a few per linked account) are
   collected; :func:`~detector.campaigns.grouping.find_campaigns` finds connected components
   (scipy) as the local engine does. The campaign members' evidence rows and the number of
   holders of each of their values come back for
   :func:`~detector.campaigns.grouping.campaign_features`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa

from detector.campaigns.cohorts import (
    COUNT_SCHEMA,
    IDENTITY,
    SOFT,
    cohort_counts,
    cohort_edges,
    cohort_groups,
    with_cohort_edges,
)
from detector.campaigns.grouping import find_campaigns
from detector.campaigns.linkage import (
    EDGE_SCHEMA,
    EVIDENCE_KINDS,
    EVIDENCE_SCHEMA,
    _candidate_pairs,
    _sync_evidence,
    account_index,
    edge_weights,
    group_cap,
    kind_table,
    link_accounts,
    named_edges,
    shared_per_kind,
    sync_candidates,
    time_slot,
    weighted,
)
from detector.campaigns.scoring import CampaignScorer, Links
from detector.spark import frames

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

# link_accounts' own defaults: one source for both engines
OPTIONS: dict[str, Any] = {
    name: p.default
    for name, p in inspect.signature(link_accounts).parameters.items()
    if p.kind is inspect.Parameter.KEYWORD_ONLY and name not in ("evidence", "kinds")
}
# cohort_counts' own defaults: one source for both engines
COHORT_OPTIONS: dict[str, Any] = {
    name: p.default
    for name, p in inspect.signature(cohort_counts).parameters.items()
    if p.kind is inspect.Parameter.KEYWORD_ONLY
}
PAIR_BUCKET = "__pb"
HELD_SCHEMA: dict[str, pl.DataType] = {
    **EVIDENCE_SCHEMA,
    "aidx": pl.UInt32(),
    "rank": pl.UInt64(),
    "kw": pl.Float64(),
    "cap": pl.Float64(),
    "soft": pl.Boolean(),
    "free": pl.Boolean(),
    "k": pl.UInt32(),
}
WEIGHTED_SCHEMA: dict[str, pl.DataType] = {**HELD_SCHEMA, "w": pl.Float64()}
PAIR_SCHEMA: dict[str, pl.DataType] = {"a": pl.UInt32(), "b": pl.UInt32()}
JOINED_SCHEMA: dict[str, pl.DataType] = {
    **PAIR_SCHEMA,
    "kind": pl.String(),
    "value": pl.String(),
    "w": pl.Float64(),
    PAIR_BUCKET: pl.Int64(),
}
PER_KIND_SCHEMA: dict[str, pl.DataType] = {
    **PAIR_SCHEMA,
    "kind": pl.String(),
    "w": pl.Float64(),
    "n": pl.UInt32(),
    "values": pl.List(pl.String()),
    PAIR_BUCKET: pl.Int64(),
}
SLOTS_SCHEMA: dict[str, pl.DataType] = {"account_id": pl.String(), "slots": pl.List(pl.Int64())}
SYNC_INPUT_SCHEMA: dict[str, pl.DataType] = {
    **PAIR_SCHEMA,
    "sa": pl.List(pl.Int64()),
    "sb": pl.List(pl.Int64()),
    PAIR_BUCKET: pl.Int64(),
}
WEIGHT_SCHEMA: dict[str, pl.DataType] = {
    **PAIR_SCHEMA,
    "weight": pl.Float64(),
    "evidence": pl.List(pl.String()),
}


def _weigh(n_accounts: int) -> Callable[[Any], Any]:
    def run(batches: Any) -> Any:
        for batch in batches:
            held = frames.from_spark(batch, HELD_SCHEMA).select(list(HELD_SCHEMA))
            yield from frames.to_spark(weighted(held, n_accounts), WEIGHTED_SCHEMA).to_batches()

    return run


def _pairs_fn(clique_max: int, fanout: int) -> Callable[[pa.Table], pa.Table]:
    def run(table: pa.Table) -> pa.Table:
        seeds = frames.from_spark(table, WEIGHTED_SCHEMA)
        vid = pl.struct("kind", "value").rank("dense").cast(pl.UInt32).alias("vid")
        pairs = _candidate_pairs(seeds.with_columns(vid), clique_max, fanout)
        return frames.to_spark(pairs, PAIR_SCHEMA)

    return run


def _per_kind_fn(readable: list[str]) -> Callable[[pa.Table], pa.Table]:
    def run(table: pa.Table) -> pa.Table:
        joined = frames.from_spark(table, JOINED_SCHEMA)
        bucket = int(joined[PAIR_BUCKET][0])
        out = shared_per_kind(joined.lazy(), readable).collect()
        return frames.to_spark(out.with_columns(pl.lit(bucket).alias(PAIR_BUCKET)), PER_KIND_SCHEMA)

    return run


def _sync_pairs_fn(kind_w: pl.DataFrame, min_edge: float) -> Callable[[pa.Table], pa.Table]:
    def run(table: pa.Table) -> pa.Table:
        per_kind = frames.from_spark(table, PER_KIND_SCHEMA)
        return frames.to_spark(sync_candidates(per_kind, kind_w, min_edge), PAIR_SCHEMA)

    return run


def _slots_fn(schema: dict[str, pl.DataType], bucket_s: int) -> Callable[[pa.Table], pa.Table]:
    def run(table: pa.Table) -> pa.Table:
        events = frames.from_spark(table, schema)
        slots = events.group_by("account_id").agg(time_slot(bucket_s).unique().alias("slots"))
        return frames.to_spark(slots, SLOTS_SCHEMA)

    return run


def _sync_fn(
    bucket_s: int, min_sync: int, sync_ratio: float, n_slots: int
) -> Callable[[pa.Table], pa.Table]:
    def run(table: pa.Table) -> pa.Table:
        rows = frames.from_spark(table, SYNC_INPUT_SCHEMA)
        bucket = int(rows[PAIR_BUCKET][0])
        slots = pl.concat(
            [
                rows.select(pl.col("a").alias("aidx"), pl.col("sa").alias("slots")),
                rows.select(pl.col("b").alias("aidx"), pl.col("sb").alias("slots")),
            ]
        ).unique("aidx")
        sync = _sync_evidence(slots, rows.select("a", "b"), bucket_s, min_sync, sync_ratio, n_slots)
        if sync.height == 0:
            return frames.to_spark(pl.DataFrame(schema=PER_KIND_SCHEMA), PER_KIND_SCHEMA)
        out = sync.with_columns(pl.lit(bucket).alias(PAIR_BUCKET))
        return frames.to_spark(out.select(list(PER_KIND_SCHEMA)), PER_KIND_SCHEMA)

    return run


def _edges_fn(
    kind_w: pl.DataFrame, soft_cap: float, min_edge: float
) -> Callable[[pa.Table], pa.Table]:
    use = {k.name: k for k in EVIDENCE_KINDS}

    def run(table: pa.Table) -> pa.Table:
        per_kind = frames.from_spark(table, PER_KIND_SCHEMA).drop(PAIR_BUCKET)
        edges = edge_weights(per_kind, kind_w, use, soft_cap, min_edge)
        return frames.to_spark(edges, WEIGHT_SCHEMA)

    return run


def _cohorts(spark: SparkSession, evidence: DataFrame, n_accounts: int) -> pl.DataFrame:
    """:func:`detector.campaigns.cohorts.cohort_counts` on Spark (the join of identity holders
    with their most used content values, counted per pair of values), then
    :func:`~detector.campaigns.cohorts.cohort_groups` on each batch of the counts, so that
    only the significant cohorts reach the driver."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    o = COHORT_OPTIONS
    sizes = evidence.groupBy("kind", "value").agg(F.count(F.lit(1)).alias("n"))
    held = evidence.join(sizes, ["kind", "value"]).where(F.col("n") >= o["min_members"])
    ident = held.where(F.col("kind").isin(*IDENTITY)).select(
        "account_id", F.col("kind").alias("ku"), F.col("value").alias("u"), F.col("n").alias("n_u")
    )
    order = Window.partitionBy("account_id", "kind").orderBy(F.desc("uses"), F.asc("value"))
    content = (
        held.where(F.col("kind").isin(*SOFT))
        .withColumn("__r", F.row_number().over(order))
        .where(F.col("__r") <= o["per_kind"])
        .select(
            "account_id",
            F.col("kind").alias("kv"),
            F.col("value").alias("v"),
            F.col("n").alias("n_v"),
        )
    )
    counts = (
        ident.join(content, "account_id")
        .groupBy("ku", "u", "kv", "v")
        .agg(
            F.count(F.lit(1)).alias("c"),
            F.first("n_u").alias("n_u"),
            F.first("n_v").alias("n_v"),
            F.sort_array(F.collect_list("account_id")).alias("members"),
        )
        .where(F.col("c") >= o["min_members"])
    )
    schema = {**COUNT_SCHEMA, "expected": pl.Float64(), "lift": pl.Float64(), "p": pl.Float64()}

    def significant(batches: Any) -> Any:
        for batch in batches:
            rows = frames.from_spark(batch, COUNT_SCHEMA).select(list(COUNT_SCHEMA))
            found = cohort_groups(rows, n_accounts).select(list(schema))
            yield from frames.to_spark(found, schema).to_batches()

    from detector.spark.engine import _to_polars

    return _to_polars(
        counts.select(*COUNT_SCHEMA).mapInArrow(significant, frames.ddl(schema)), schema
    )


def link(
    spark: SparkSession,
    compact: DataFrame,
    evidence: DataFrame,
    account_ids: pl.Series,
    scorer: CampaignScorer | None,
    stats: dict[str, Any],
    *,
    group_column: str = "__grp",
    n_buckets: int = 8,
) -> Links:
    """:class:`detector.campaigns.scoring.Links` of every account of ``compact`` (compact
    events on Spark, grouped by ``group_column``), from their ``evidence`` (Spark rows
    ``account_id, kind, value, uses``), with :func:`link_accounts`' default options."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from detector.spark.engine import _to_polars, _to_spark

    o = OPTIONS
    ids = account_index(account_ids)
    n_acc = ids.height
    kind_w = kind_table()
    k_cap = group_cap(n_acc, o["max_group"], o["max_share"], o["clique_max"])
    readable = [k.name for k in EVIDENCE_KINDS if k.readable]
    evidence = evidence.persist(StorageLevel.MEMORY_AND_DISK)

    # the inverted index: holders per value, common values dropped, rarity weights
    held = evidence.join(_to_spark(spark, ids), "account_id").join(
        F.broadcast(_to_spark(spark, kind_w)), "kind"
    )
    values = (
        held.groupBy("kind", "value")
        .agg(F.count(F.lit(1)).alias("k"), F.first("free").alias("free"))
        .where((F.col("k") >= 2) & ((F.col("k") <= k_cap) | F.col("free")))
        .drop("free")
    )
    held = (
        held.join(values, ["kind", "value"])
        .select(*HELD_SCHEMA)
        .mapInArrow(_weigh(n_acc), frames.ddl(WEIGHTED_SCHEMA))
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    # candidate pairs from identity evidence, bounded per value group
    seeds = held.where(~F.col("soft") & (F.col("w") >= o["seed_min"]))
    pairs = (
        seeds.groupBy(F.pmod(F.xxhash64("kind", "value"), F.lit(n_buckets)))
        .applyInArrow(_pairs_fn(o["clique_max"], o["fanout"]), frames.ddl(PAIR_SCHEMA))
        .distinct()
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    stats["n_candidate_pairs"] = pairs.count()
    # every value each candidate pair shares, per bucket of pairs
    bucket = F.pmod(F.col("a"), F.lit(n_buckets))
    a_side = held.select(F.col("aidx").alias("a"), "kind", "value", "w")
    b_side = held.select(F.col("aidx").alias("b"), "kind", "value")
    joined = (
        pairs.join(a_side, "a")
        .join(b_side, ["b", "kind", "value"])
        .withColumn(PAIR_BUCKET, bucket)
        .select(*JOINED_SCHEMA)
    )
    per_kind = (
        joined.groupBy(PAIR_BUCKET)
        .applyInArrow(_per_kind_fn(readable), frames.ddl(PER_KIND_SCHEMA))
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    # synchronised activity among the pairs that could reach an edge with it
    sync_pairs = per_kind.groupBy(PAIR_BUCKET).applyInArrow(
        _sync_pairs_fn(kind_w, o["min_edge"]), frames.ddl(PAIR_SCHEMA)
    )
    schema = {"account_id": pl.String(), "ts": pl.Datetime("us", "UTC")}
    slots = (
        compact.select("account_id", "ts", group_column)
        .groupBy(group_column)
        .applyInArrow(_slots_fn(schema, o["bucket_s"]), frames.ddl(SLOTS_SCHEMA))
        .groupBy("account_id")
        .agg(F.array_distinct(F.flatten(F.collect_list("slots"))).alias("slots"))
        .join(_to_spark(spark, ids.select("account_id", "aidx")), "account_id")
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    extent = slots.agg(
        (F.max(F.array_max("slots")) - F.min(F.array_min("slots"))).alias("e")
    ).first()
    n_slots = max(int(extent["e"]) + 1, 1) if extent is not None and extent["e"] is not None else 1
    sync_in = (
        sync_pairs.join(slots.select(F.col("aidx").alias("a"), F.col("slots").alias("sa")), "a")
        .join(slots.select(F.col("aidx").alias("b"), F.col("slots").alias("sb")), "b")
        .withColumn(PAIR_BUCKET, bucket)
        .select(*SYNC_INPUT_SCHEMA)
    )
    timing = sync_in.groupBy(PAIR_BUCKET).applyInArrow(
        _sync_fn(o["bucket_s"], o["min_sync"], o["sync_ratio"], n_slots),
        frames.ddl(PER_KIND_SCHEMA),
    )
    weights = (
        per_kind.unionByName(timing)
        .groupBy(PAIR_BUCKET)
        .applyInArrow(_edges_fn(kind_w, o["soft_cap"], o["min_edge"]), frames.ddl(WEIGHT_SCHEMA))
    )
    edges = named_edges(_to_polars(weights, WEIGHT_SCHEMA), ids)
    if edges.height == 0:
        edges = pl.DataFrame(schema=EDGE_SCHEMA)
    min_weight = (scorer if scorer is not None else CampaignScorer()).min_weight
    cohorts = _cohorts(spark, evidence, account_ids.n_unique())
    stats["n_cohorts"] = cohorts.height
    edges = with_cohort_edges(edges, cohort_edges(cohorts, weight=min_weight))
    stats["n_edges"] = edges.height
    assignments, _ = find_campaigns(edges, account_ids, min_weight=min_weight)
    # the campaign members' evidence, and how many accounts hold each of their values
    members = assignments.drop_nulls("campaign_id").select("account_id")
    mine = evidence.join(F.broadcast(_to_spark(spark, members)), "account_id", "left_semi")
    member_rows = _to_polars(mine, EVIDENCE_SCHEMA)
    totals = _to_polars(
        evidence.groupBy("kind", "value")
        .agg(F.count(F.lit(1)).alias("total"))
        .join(F.broadcast(mine.select("kind", "value").distinct()), ["kind", "value"], "left_semi"),
        {"kind": pl.String(), "value": pl.String(), "total": pl.UInt32()},
    )
    for frame in (evidence, held, pairs, per_kind, slots):
        frame.unpersist()
    return Links(member_rows, edges, assignments, totals)
