"""Canonical events on Spark, from Parquet: local files, directories and globs (each file's
schema checked as the local reader checks it, naming the file and field), or URIs Spark reads
itself (``s3a://bucket/logs/``, ``hdfs://...``, ``abfss://...``: their schema is checked on
what Spark reads). Required columns with nulls stop the audit with the file, row and field
of the first ones, as the local reader does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from detector.io.schema import (
    EVENT_SCHEMA,
    MAX_REPORTED_PROBLEMS,
    NULLABLE_EVENT_COLUMNS,
    REQUIRED_EVENT_COLUMNS,
    EventSchemaError,
    Problem,
    _castable,
    _scan_parquet,
    expand_paths,
)
from detector.io.tally import InputTally
from detector.spark.frames import ddl

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def is_uri(path: str | Path) -> bool:
    return "://" in str(path)


def parquet_inputs(paths: Sequence[str | Path]) -> list[str]:
    """The Parquet inputs: local files (directories and globs expanded, each file's schema
    checked) and URIs as given. Other local formats are refused with a clear message."""
    local = [p for p in paths if not is_uri(p)]
    files = expand_paths(local) if local else []
    problems = [
        Problem(
            str(f),
            None,
            None,
            "the Spark engine reads Parquet only: audit NDJSON with --engine local, or "
            "write it as Parquet first",
        )
        for f in files
        if not f.name.lower().endswith(".parquet")
    ]
    if problems:
        raise EventSchemaError(problems)
    for f in files:
        _scan_parquet(f, validate=False, tally=InputTally())  # schema only: names file, field
    return [str(f) for f in files] + [str(p) for p in paths if is_uri(p)]


def read_events(spark: SparkSession, paths: Sequence[str | Path]) -> DataFrame:
    """Canonical events (exactly :data:`EVENT_SCHEMA`, in Spark types) from Parquet."""
    from pyspark.sql import functions as F

    inputs = parquet_inputs(paths)
    if not inputs:
        raise FileNotFoundError("no event files given")
    raw = spark.read.parquet(*inputs)
    have = {f.name: f.dataType for f in raw.schema.fields}
    source = inputs[0] if len(inputs) == 1 else f"{inputs[0]} (and {len(inputs) - 1} more)"
    problems = []
    for field in EVENT_SCHEMA:
        if field not in have and field not in NULLABLE_EVENT_COLUMNS:
            problems.append(Problem(source, None, field, "missing required column", "row"))
        elif field in have and not _fits(_polars_type(have[field]), EVENT_SCHEMA[field]):
            problems.append(
                Problem(source, None, field, f"wrong type {have[field].simpleString()}", "row")
            )
    if problems:
        raise EventSchemaError(problems)
    types = dict(item.split(" ", 1) for item in ddl(EVENT_SCHEMA).replace("`", "").split(", "))
    events = raw.select(
        [(F.col(f) if f in have else F.lit(None)).cast(types[f]).alias(f) for f in EVENT_SCHEMA]
    )
    _check_nulls(raw, [c for c in REQUIRED_EVENT_COLUMNS if c in have], source)
    return events


def _check_nulls(raw: DataFrame, required: list[str], source: str) -> None:
    """Raise naming the file, row and field of the first nulls in required columns."""
    from pyspark.sql import functions as F

    counts = raw.select([F.sum(F.col(c).isNull().cast("int")).alias(c) for c in required]).first()
    bad = [c for c in required if counts is not None and counts[c]]
    if not bad:
        return
    null = F.col(bad[0]).isNull()
    for c in bad[1:]:
        null = null | F.col(c).isNull()
    first = (
        raw.where(null)
        .select(
            F.col("_metadata.file_path").alias("__file"),
            (F.col("_metadata.row_index") + 1).alias("__row"),
            *bad,
        )
        .orderBy("__file", "__row")
        .limit(MAX_REPORTED_PROBLEMS)
        .collect()
    )
    found = [
        Problem(_local(row["__file"]) or source, row["__row"], c, "is required but null", "row")
        for row in first
        for c in bad
        if row[c] is None
    ]
    raise EventSchemaError(found[:MAX_REPORTED_PROBLEMS])


def _local(path: str | None) -> str | None:
    """``file:/a/b.parquet`` -> ``/a/b.parquet``; other URIs as they are."""
    return path[len("file:") :] if path and path.startswith("file:") else path


def _fits(have: pl.DataType, want: pl.DataType) -> bool:
    return have == want or _castable(have, want)


def _polars_type(spark_type: object) -> pl.DataType:
    """The polars dtype of a Spark type, for :func:`detector.io.schema._castable`."""
    return {
        "StringType": pl.String(),
        "BooleanType": pl.Boolean(),
        "ByteType": pl.Int8(),
        "ShortType": pl.Int16(),
        "IntegerType": pl.Int32(),
        "LongType": pl.Int64(),
        "FloatType": pl.Float32(),
        "DoubleType": pl.Float64(),
        "TimestampType": pl.Datetime("us", "UTC"),
        "TimestampNTZType": pl.Datetime("us"),
    }.get(type(spark_type).__name__, pl.Object())
