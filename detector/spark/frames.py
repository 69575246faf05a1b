"""Polars frames <-> the Arrow batches Spark hands to Python workers.

Spark has no unsigned 64-bit integer: the fingerprint hashes (``tmpl``, ``nd1``, ...; UInt64
in polars) travel as Int64 with the same 64 bits (:func:`to_spark` reinterprets them, and
:func:`from_spark` back), so every equality the features and linkage count is unchanged.
Timestamps travel as Spark ``timestamp`` (UTC instants) and come back as polars
``Datetime("us", "UTC")`` whatever the session's time zone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import polars as pl
import pyarrow as pa

from detector.io.schema import EVENT_SCHEMA, TS_DTYPE

# polars dtype -> (Spark DDL type, Arrow type on the wire)
_WIRE: dict[type[pl.DataType], tuple[str, pa.DataType]] = {
    pl.String: ("string", pa.string()),
    pl.Boolean: ("boolean", pa.bool_()),
    pl.Int16: ("smallint", pa.int16()),
    pl.Int32: ("int", pa.int32()),
    pl.Int64: ("bigint", pa.int64()),
    pl.UInt32: ("bigint", pa.int64()),
    pl.UInt64: ("bigint", pa.int64()),  # reinterpreted: same bits
    pl.Float32: ("float", pa.float32()),
    pl.Float64: ("double", pa.float64()),
    pl.Datetime: ("timestamp", pa.timestamp("us", tz="UTC")),
}


def _wire(dtype: pl.DataType) -> tuple[str, pa.DataType]:
    if isinstance(dtype, pl.List):
        inner = dtype.inner
        ddl, arrow = _wire(inner if isinstance(inner, pl.DataType) else inner())
        return f"array<{ddl}>", pa.list_(arrow)
    try:
        return _WIRE[dtype.base_type()]
    except KeyError:
        raise TypeError(f"no Spark type for polars {dtype}") from None


def ddl(schema: Mapping[str, pl.DataType]) -> str:
    """Spark DDL (``"a string, b double"``) of a polars schema."""
    return ", ".join(f"`{name}` {_wire(t)[0]}" for name, t in schema.items())


def arrow_schema(schema: Mapping[str, pl.DataType]) -> pa.Schema:
    """The Arrow schema Spark expects back for a polars schema (see :func:`ddl`)."""
    return pa.schema([pa.field(name, _wire(t)[1]) for name, t in schema.items()])


def to_spark(df: pl.DataFrame, schema: Mapping[str, pl.DataType]) -> pa.Table:
    """``df`` (columns of ``schema``) as the Arrow table Spark expects for ``ddl(schema)``."""
    out = df.select(
        [
            pl.col(c).reinterpret(signed=True)
            if t == pl.UInt64
            else pl.col(c).cast(pl.Int64)
            if t == pl.UInt32
            else pl.col(c)
            for c, t in schema.items()
        ]
    )
    return out.to_arrow(compat_level=pl.CompatLevel.oldest()).cast(arrow_schema(schema))


def from_spark(
    data: pa.Table | pa.RecordBatch | Iterable[pa.RecordBatch], schema: Mapping[str, pl.DataType]
) -> pl.DataFrame:
    """Arrow data from Spark as a polars frame of ``schema`` (hashes back to UInt64,
    timestamps in UTC). Columns not in ``schema`` are kept as they come."""
    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    elif not isinstance(data, pa.Table):
        data = pa.Table.from_batches(list(data))
    df = pl.from_arrow(data)
    assert isinstance(df, pl.DataFrame)
    fixes = []
    for c, t in schema.items():
        if c not in df.columns:
            continue
        if t == pl.UInt64:
            fixes.append(pl.col(c).reinterpret(signed=False))
        elif isinstance(t, pl.Datetime):
            have = df.schema[c]
            col = pl.col(c)
            if isinstance(have, pl.Datetime) and have.time_zone is None:
                col = col.dt.replace_time_zone("UTC")
            fixes.append(col.dt.convert_time_zone("UTC").cast(t))
        elif df.schema[c] != t:
            fixes.append(pl.col(c).cast(t))
    return df.with_columns(fixes) if fixes else df


def compact_schema() -> dict[str, pl.DataType]:
    """The compact-event schema (:func:`detector.fingerprints.fingerprint_events`' output)."""
    from detector.fingerprints import fingerprint_events

    return dict(fingerprint_events(pl.DataFrame(schema=EVENT_SCHEMA)).collect_schema())


ACCOUNT_CREATED = {"account_id": pl.String(), "created_at": TS_DTYPE}
