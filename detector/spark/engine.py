"""THE pipeline on Spark: the same stages as :func:`detector.pipeline.score`, with the events
spread over a cluster and the account table (one row per account) on the driver.

1. **Window** (Spark aggregations, collected): first and last timestamps, when each model first
   appeared (:class:`detector.window.Window`), and the accounts too large for one group
   (:mod:`detector.spark.skew`).
2. **Fingerprints** per partition: ``mapInArrow`` hands each Arrow batch of canonical events
   to :func:`detector.fingerprints.fingerprint_events` (the compiled kernel); raw prompt text
   stops there. The compact events are shuffled once into groups of accounts and persisted.
3. **Features** per group of accounts: ``groupBy(group).applyInArrow`` hands each group to
   :func:`detector.pipeline.features` (THE feature code) with the whole window's bounds and
   model first-seen times, as the local pipeline does for a subset of accounts. A group holds
   whole accounts (``xxhash64(account_id) mod G``, about ``group_events`` events each), so its
   rows are those of a pass over every account; one polars call per group instead of per
   account keeps the per-call overhead negligible. Accounts above ``max_account_events`` are
   split by time into several groups and merged (:mod:`detector.spark.skew`).
4. **The account table on the driver**: the feature table is collected (one row per account:
   ~0.4 KiB each, 4 GiB for 10 M accounts) and :func:`detector.pipeline.score_table` runs
   exactly as for the local engine: it fits the scorer on it when no model is given, scores,
   lifts accounts by their IP / key slices and scores campaigns. Slice features are computed
   per group on Spark (:func:`detector.subaccounts.slice_features`); linkage runs on Spark
   (:mod:`detector.spark.linkage`) and hands back the edges and the campaign members' evidence.
5. The audit's outputs are written by :func:`detector.audit.finish`, as for the local audit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa

from detector import pipeline
from detector.audit import AuditResult, finish
from detector.campaigns.arrivals import arrival_evidence
from detector.campaigns.linkage import EVENT_COLUMNS as LINK_COLUMNS
from detector.campaigns.linkage import EVIDENCE_SCHEMA, account_evidence
from detector.campaigns.scoring import CampaignScorer, Links
from detector.features import FEATURE_NAMES, account_features
from detector.fingerprints import fingerprint_events
from detector.io.schema import EVENT_SCHEMA, TS_DTYPE
from detector.models import DistillScorer
from detector.spark import frames, skew
from detector.spark.session import DEFAULT_MASTER, spark_session
from detector.subaccounts import (
    MIN_DISTINCT,
    SLICE_COLUMNS,
    SLICE_FEATURE_SCHEMA,
    judges_slices,
    lift_by_slices,
    slice_features,
)
from detector.window import Window

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

GROUP = "__grp"  # group of accounts (< n_groups), or one time chunk of a large account
Progress = Callable[[str], None]

FEATURE_SCHEMA: dict[str, pl.DataType] = {
    "account_id": pl.String(),
    **{name: pl.Float64() for name in FEATURE_NAMES},
}
# features of one group's accounts, with their events in the group and the group
GROUP_FEATURE_SCHEMA: dict[str, pl.DataType] = {
    **FEATURE_SCHEMA,
    skew.N_EVENTS: pl.Int64(),
    GROUP: pl.Int64(),
}
SLICE_META_SCHEMA: dict[str, pl.DataType] = {
    "parent_id": pl.String(),
    "slice_column": pl.String(),
    "slice_value": pl.String(),
    "slice_share": pl.Float64(),
    "n": pl.UInt32(),
}
SLICE_SCHEMA: dict[str, pl.DataType] = {**SLICE_FEATURE_SCHEMA, **SLICE_META_SCHEMA}
PARTIAL = "__partial"  # evidence of one time chunk of a large account (to be merged)


def _quiet(_stage: str) -> None:
    return None


@dataclass(frozen=True)
class SparkOptions:
    """How the work is cut. ``group_events``: events per group of accounts handed to one
    polars call (its memory: ~150 bytes per event); ``max_account_events``: accounts with more
    events are split by clock hours into groups of about this many (:mod:`detector.spark.skew`);
    ``min_groups``: at least this many groups (default: twice the cluster's cores)."""

    group_events: int = 1_000_000
    max_account_events: int = 5_000_000
    min_groups: int | None = None


@dataclass
class SparkScored:
    """:class:`detector.pipeline.Scored` plus what the Spark run measured."""

    scored: pipeline.Scored
    n_events: int
    stats: dict[str, Any] = field(default_factory=dict)


def _fingerprinter(
    in_schema: dict[str, pl.DataType], out_schema: dict[str, pl.DataType]
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            events = frames.from_spark(batch, in_schema)
            compact = fingerprint_events(events).collect()
            yield from frames.to_spark(compact, out_schema).to_batches()

    return run


def used_columns() -> dict[str, pl.DataType]:
    """The compact-event columns some stage reads: those THE feature code reads (found by
    running it on an empty frame without each column in turn, so that this follows the
    feature code), linkage's (:data:`detector.campaigns.linkage.EVENT_COLUMNS`) and the
    slicing columns. The others (``request_id``, ``latency_ms``, ...) are dropped as soon as
    the events are fingerprinted, before they are shuffled and persisted."""
    schema = frames.compact_schema()
    empty = pl.DataFrame(schema=schema)
    keep = {"account_id", "ts", "model", *LINK_COLUMNS, *SLICE_COLUMNS}
    for c in schema:
        try:
            account_features(empty.drop(c)).collect()
        except pl.exceptions.ColumnNotFoundError:
            keep.add(c)
    return {c: t for c, t in schema.items() if c in keep}


def _created(events: pl.DataFrame, with_created: bool) -> pl.DataFrame | None:
    """The account table rows (``account_id, created_at``) that came with a group's events."""
    if not with_created:
        return None
    return events.select("account_id", "created_at").unique("account_id")


def _feature_fn(
    schema: dict[str, pl.DataType], window: Window, with_created: bool
) -> Callable[[pa.Table], pa.Table]:
    def run(table: pa.Table) -> pa.Table:
        events = frames.from_spark(table, schema)
        group = int(events[GROUP][0])
        feats = pipeline.features(events, _created(events, with_created), window)
        sizes = events.group_by("account_id").agg(pl.len().cast(pl.Int64).alias(skew.N_EVENTS))
        out = feats.join(sizes, on="account_id").with_columns(pl.lit(group).alias(GROUP))
        return frames.to_spark(out, GROUP_FEATURE_SCHEMA)

    return run


def _slice_fn(
    schema: dict[str, pl.DataType],
    parents: pl.DataFrame,
    window: Window,
    with_created: bool,
    columns: tuple[str, ...] = tuple(SLICE_COLUMNS),
) -> Callable[[pa.Table], pa.Table]:
    def run(table: pa.Table) -> pa.Table:
        events = frames.from_spark(table, schema)
        acc = _created(events, with_created)
        meta, feats = slice_features(events, parents, acc, window, columns=columns)
        return frames.to_spark(feats.join(meta, on="account_id"), SLICE_SCHEMA)

    return run


def _evidence_fn(schema: dict[str, pl.DataType], n_groups: int) -> Callable[[pa.Table], pa.Table]:
    out_schema = {**EVIDENCE_SCHEMA, PARTIAL: pl.Boolean()}

    def run(table: pa.Table) -> pa.Table:
        events = frames.from_spark(table, schema)
        partial = int(events[GROUP][0]) >= n_groups
        # a time chunk of a large account: every value it used, to be summed over its chunks
        # before the min_uses / max_values cuts (skew.merge_evidence)
        opts = {"min_uses": 1, "max_values": skew.UNLIMITED} if partial else {}
        ev = account_evidence(events, None, **opts)
        return frames.to_spark(ev.with_columns(pl.lit(partial).alias(PARTIAL)), out_schema)

    return run


def _to_polars(sdf: DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Collect a (small) Spark frame to the driver as polars."""
    return frames.from_spark(sdf.toArrow(), schema).select(list(schema))


def _to_spark(spark: SparkSession, df: pl.DataFrame) -> DataFrame:
    """A (small) polars frame as a Spark frame."""
    schema = dict(df.schema)
    return spark.createDataFrame(frames.to_spark(df, schema), schema=frames.ddl(schema))


def _parallelism(spark: SparkSession) -> int:
    try:
        return int(spark.sparkContext.defaultParallelism)
    except Exception:  # Spark Connect has no SparkContext
        return int(spark.conf.get("spark.default.parallelism", "8") or 8)


def score_spark(
    spark: SparkSession,
    events: DataFrame,
    model: DistillScorer,
    accounts: pl.DataFrame | None = None,
    *,
    campaigns: bool = True,
    campaign_scorer: CampaignScorer | None = None,
    options: SparkOptions = SparkOptions(),
    progress: Progress = _quiet,
) -> SparkScored:
    """Score the accounts of ``events`` (canonical events on Spark, e.g. from
    :func:`detector.spark.read.read_events`) as :func:`detector.pipeline.score` does."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from detector.spark import linkage

    stats: dict[str, Any] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        stats[f"t_{name}_s"] = round(now - clock, 3)
        clock = now

    progress("window: bounds, when each model first appeared, account sizes")
    bounds = _to_polars(
        events.agg(F.count(F.lit(1)).alias("n"), F.min("ts").alias("lo"), F.max("ts").alias("hi")),
        {"n": pl.Int64(), "lo": TS_DTYPE, "hi": TS_DTYPE},
    )
    n_events = int(bounds["n"][0])
    if n_events == 0:
        raise ValueError("no events to audit")
    first_seen = _to_polars(
        events.groupBy("model").agg(F.min("ts").alias("first_ts")),
        {"model": pl.String(), "first_ts": TS_DTYPE},
    )
    window = Window(bounds["lo"][0], bounds["hi"][0], first_seen)
    large = _to_polars(
        events.groupBy("account_id")
        .agg(F.count(F.lit(1)).alias("n"))
        .where(F.col("n") > options.max_account_events),
        {"account_id": pl.String(), "n": pl.Int64()},
    )
    n_groups = max(
        options.min_groups or 2 * _parallelism(spark), math.ceil(n_events / options.group_events)
    )
    chunks = skew.time_chunks(large, window, options.max_account_events, first_group=n_groups)
    stats.update(n_events=n_events, n_groups=n_groups, n_large_accounts=large.height)
    stats["n_chunk_groups"] = int(chunks["n_chunks"].sum()) if chunks.height else 0
    lap("window")

    progress("fingerprinting events per partition (mapInArrow), grouping accounts")
    with_created = accounts is not None
    extra: dict[str, pl.DataType] = {GROUP: pl.Int64()}
    src = events
    if accounts is not None:
        created = accounts.select("account_id", pl.col("created_at").cast(TS_DTYPE))
        src = src.join(F.broadcast(_to_spark(spark, created)), "account_id", "left")
        extra["created_at"] = TS_DTYPE
    group = F.pmod(F.xxhash64("account_id"), F.lit(n_groups))
    if chunks.height:
        src = src.join(F.broadcast(_to_spark(spark, chunks)), "account_id", "left")
        group = F.when(F.col("first_group").isNull(), group).otherwise(skew.chunk_group())
    src = src.select(*EVENT_SCHEMA, *[c for c in extra if c != GROUP], group.alias(GROUP))
    in_schema = {**EVENT_SCHEMA, **extra}
    compact_schema = {**used_columns(), **extra}
    compact = (
        src.mapInArrow(_fingerprinter(in_schema, compact_schema), frames.ddl(compact_schema))
        .repartition(n_groups, GROUP)
        # on the executors' disks, not in the JVM heap: the heap stays free for the shuffles
        # and the Arrow transfers whatever the size of the log
        .persist(StorageLevel.DISK_ONLY)
    )
    compact.count()  # fingerprint once; every stage below reads the persisted compact events
    lap("fingerprints")

    progress("computing account features per group of accounts (applyInArrow)")
    grouped = compact.groupBy(GROUP).applyInArrow(
        _feature_fn(compact_schema, window, with_created), frames.ddl(GROUP_FEATURE_SCHEMA)
    )
    per_group = _to_polars(grouped, GROUP_FEATURE_SCHEMA)
    feats = skew.merge_features(per_group, n_groups, GROUP).sort("account_id")
    sizes = per_group.group_by(GROUP).agg(pl.col(skew.N_EVENTS).sum())
    chunk_sizes = sizes.filter(pl.col(GROUP) >= n_groups)[skew.N_EVENTS]
    stats["max_group_events"] = int(sizes[skew.N_EVENTS].to_numpy().max(initial=0))
    stats["max_chunk_events"] = int(chunk_sizes.to_numpy().max(initial=0))
    stats["n_accounts"] = feats.height
    stats["feature_table_mib"] = round(feats.estimated_size("mb"), 3)
    lap("features")

    def slices(fitted: DistillScorer, scored: pl.DataFrame) -> pl.DataFrame:
        if not judges_slices(fitted):
            return scored
        progress("features of IP / key slices of multi-tenant accounts (applyInArrow)")
        cols = list(SLICE_COLUMNS.values())
        parents = feats.select("account_id", *cols).filter(
            pl.any_horizontal(pl.col(c) >= MIN_DISTINCT for c in cols)
        )
        if parents.height == 0:
            return scored
        ids = _to_spark(spark, parents.select("account_id"))
        mine = compact.join(F.broadcast(ids), "account_id", "left_semi")
        ddl = frames.ddl(SLICE_SCHEMA)
        fn = _slice_fn(compact_schema, parents, window, with_created)
        parts = [mine.where(F.col(GROUP) < n_groups).groupBy(GROUP).applyInArrow(fn, ddl)]
        # a large account's events are split by slicing value: all of one slice's events meet
        # in one group (its share of the account is corrected below)
        big = mine.where(F.col(GROUP) >= n_groups)
        for col in SLICE_COLUMNS if chunks.height else ():
            by_value = F.pmod(F.xxhash64("account_id", col), F.lit(n_groups))
            fn = _slice_fn(compact_schema, parents, window, with_created, (col,))
            parts.append(big.withColumn(GROUP, by_value).groupBy(GROUP).applyInArrow(fn, ddl))
        sliced = parts[0]
        for part in parts[1:]:
            sliced = sliced.unionByName(part)
        table = _to_polars(sliced, SLICE_SCHEMA)
        if chunks.height:
            table = skew.slice_shares(table, big, list(SLICE_COLUMNS))
        stats["n_slices"] = table.height
        meta = table.select("account_id", *SLICE_META_SCHEMA)
        lifted = lift_by_slices(fitted, scored, meta, table.select(list(SLICE_FEATURE_SCHEMA)))
        lap("slices")
        return lifted

    def link() -> Links:
        progress("linkage on Spark: evidence, inverted index, bounded candidate pairs")
        cols = ["account_id", GROUP, *[c for c in LINK_COLUMNS if c in compact_schema]]
        parts = (
            compact.select(*cols)
            .groupBy(GROUP)
            .applyInArrow(
                _evidence_fn(compact_schema, n_groups),
                frames.ddl({**EVIDENCE_SCHEMA, PARTIAL: pl.Boolean()}),
            )
        )
        evidence = (
            skew.merge_evidence(spark, parts, PARTIAL)
            if chunks.height
            else parts.select(*EVIDENCE_SCHEMA)
        )
        if accounts is not None:  # payment and e-mail domain rows, from the account table
            table_rows = account_evidence(feats.select("account_id"), accounts)
            evidence = evidence.unionByName(_to_spark(spark, table_rows))
        # arrival bursts, from every account's first request (one row per account)
        first = _to_polars(
            compact.groupBy("account_id").agg(F.min("ts").alias("first_ts")),
            {"account_id": pl.String(), "first_ts": TS_DTYPE},
        )
        arrivals = arrival_evidence(first)
        if arrivals.height:
            evidence = evidence.unionByName(_to_spark(spark, arrivals))
        links = linkage.link(
            spark,
            compact,
            evidence,
            feats["account_id"],
            campaign_scorer,
            stats,
            group_column=GROUP,
            n_buckets=n_groups,
        )
        lap("linkage")
        return links

    progress("the account table on the driver: fit, score, slices, campaigns")
    scored = pipeline.score_table(
        feats,
        model,
        slices,
        link if campaigns else False,
        campaign_scorer=campaign_scorer,
        progress=progress,
    )
    lap("account_table")
    compact.unpersist()
    return SparkScored(scored, n_events, stats)


def audit(
    log_paths: Sequence[str | Path],
    out_dir: str | Path,
    model: DistillScorer | None = None,
    labels: pl.DataFrame | None = None,
    accounts: pl.DataFrame | None = None,
    *,
    campaigns: bool = True,
    master: str = DEFAULT_MASTER,
    spark: SparkSession | None = None,
    options: SparkOptions = SparkOptions(),
    progress: Progress = _quiet,
) -> AuditResult:
    """:func:`detector.audit.audit` on Spark: the same outputs (``accounts.parquet``,
    ``accounts.csv``, ``campaigns.parquet``, ``summary.json``, ``report.html``), from Parquet
    logs (local paths or URIs such as ``s3a://bucket/logs/``). ``spark``: a session to run on
    (default: :func:`detector.spark.session.spark_session` on ``master``). The summary gets
    ``engine: "spark"`` and the run's stage timings and sizes (``spark``)."""
    from detector.spark.read import read_events

    session = spark if spark is not None else spark_session(master)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    progress("reading and validating logs (Spark)")
    events = read_events(session, log_paths)
    run = score_spark(
        session,
        events,
        model if model is not None else DistillScorer(),
        accounts,
        campaigns=campaigns,
        options=options,
        progress=progress,
    )
    extra = {
        "engine": "spark",
        "spark": {"master": session.conf.get("spark.master", None), **run.stats},
    }
    return finish(out, run.scored, run.n_events, log_paths, labels, progress, None, extra)
