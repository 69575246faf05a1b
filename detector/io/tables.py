"""The side tables of an audit: the account table (``created_at``, payment, e-mail domain) and
generator labels, read from Parquet, CSV or NDJSON with their columns checked."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from detector.io.schema import ACCOUNT_SCHEMA, LABEL_SCHEMA, expand_paths


def read_table(path: str | Path, schema: dict[str, pl.DataType], what: str) -> pl.DataFrame:
    """Read a labels / account table (Parquet, CSV or NDJSON), checking its columns."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: {what} file not found")
    if p.suffix == ".csv":
        df = pl.read_csv(p)
    elif p.suffix in (".ndjson", ".jsonl"):
        df = pl.read_ndjson(p)
    else:
        df = pl.read_parquet(p)
    missing = [c for c in schema if c not in df.columns]
    if missing:
        raise ValueError(f"{p}: {what} lacks column(s) {missing}")
    return df.select([pl.col(c).cast(t) for c, t in schema.items()])


def sibling_table(log_paths: Sequence[str | Path], name: str) -> Path | None:
    """``accounts.parquet`` / ``labels.parquet`` beside the (first) local log file, if any
    (logs given as URIs, read by the Spark engine, have no sibling: pass the table)."""
    files = expand_paths([p for p in log_paths if "://" not in str(p)])
    cand = files[0].parent / name if files else None
    return cand if cand is not None and cand.exists() else None


def load_labels(path: str | Path) -> pl.DataFrame:
    return read_table(path, LABEL_SCHEMA, "labels")


def load_accounts(path: str | Path) -> pl.DataFrame:
    return read_table(path, ACCOUNT_SCHEMA, "account table")
