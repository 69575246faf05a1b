"""The two passes that compute every feature, built from :data:`registry.FEATURES`.

``counted``: one hash aggregation per account over the events as they come (no sort).
``grouped``: the columns its features read (strings as 64-bit hashes) sorted by account once, so
that every account is one contiguous slice. The two are joined per account, the window bounds
(and the account table, when given) joined on, and each feature's ``finish`` applied.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from detector.features.registry import (
    FEATURE_NAMES,
    FEATURES,
    NEW_MODEL_GRACE_H,
    NEW_MODEL_H,
)
from detector.features.unit import MODEL_NEW, NEW_UNTIL, WINDOW_END, WINDOW_START, Need, Stage
from detector.fingerprints import fingerprint_events
from detector.io.schema import TS_DTYPE

ACCOUNT_KEY = "__acct"  # integer account key: the account id's categorical code


def _aggregations(stage: Stage) -> tuple[pl.Expr, ...]:
    """The aggregations of one pass: each feature's under its name, or (when it is finished)
    under the aggregation's own ``__`` name, computed once for all the features finishing it."""
    out: dict[str, pl.Expr] = {}
    for f in FEATURES:
        if f.stage != stage:
            continue
        agg = f.agg if f.finish is not None else f.agg.alias(f.name)
        name = agg.meta.output_name()
        if name in out and not out[name].meta.eq(agg):
            raise ValueError(f"{f.name}: another feature aggregates {name} differently")
        out[name] = agg
    return tuple(out.values())


def _finishes(stage: Stage | None, *needs: Need | None) -> tuple[pl.Expr, ...]:
    """The finishing steps of the features of ``stage`` (None: any) with one of ``needs``."""
    return tuple(
        f.finish.alias(f.name)
        for f in FEATURES
        if f.finish is not None and stage in (None, f.stage) and f.needs in needs
    )


_COUNTED = _aggregations("counted")
_GROUPED = _aggregations("grouped")
# the columns the grouped pass reads, in the order its aggregations first name them
_GROUPED_COLUMNS = tuple(dict.fromkeys(c for agg in _GROUPED for c in agg.meta.root_names()))
# A finishing step runs on its pass's per-account rows, or (when it needs more) once the
# per-account rows of both passes, the window and the account table are joined.
_COUNTED_FINISH = _finishes("counted", None)
_GROUPED_FINISH = _finishes("grouped", None)
_WINDOW_FINISH = _finishes(None, "window", "model_first_seen")
_ACCOUNTS_FINISH = _finishes(None, "accounts")
_NO_ACCOUNTS = tuple(
    pl.lit(None, pl.Float64).alias(f.name) for f in FEATURES if f.needs == "accounts"
)
_NEEDS_MODELS = any(f.needs == "model_first_seen" for f in FEATURES)


def _finish(lf: pl.LazyFrame, finishes: tuple[pl.Expr, ...]) -> pl.LazyFrame:
    return lf.with_columns(finishes) if finishes else lf


def _hashed(col: str) -> pl.Expr:
    """A string column as 64-bit hashes (nulls kept): distinct counts per account then compare
    integers, not strings. A collision inside one account is ~n²/2^65 unlikely."""
    return pl.when(pl.col(col).is_not_null()).then(pl.col(col).hash()).alias(col)


def _counted(events: pl.LazyFrame) -> pl.LazyFrame:
    per_account = events.group_by(ACCOUNT_KEY).agg(pl.col("account_id").first(), *_COUNTED)
    return _finish(per_account, _COUNTED_FINISH)


def _grouped(events: pl.LazyFrame) -> pl.LazyFrame:
    schema = events.collect_schema()
    columns = (
        _hashed(c) if schema.get(c) == pl.String else pl.col(c) for c in _GROUPED_COLUMNS
    )  # (a missing column: polars' ColumnNotFoundError, naming it)
    per_account = (
        events.select(ACCOUNT_KEY, *columns)
        .sort(ACCOUNT_KEY, maintain_order=True)
        .with_columns(pl.col(ACCOUNT_KEY).set_sorted())
        .group_by(ACCOUNT_KEY)
        .agg(*_GROUPED)
    )
    return _finish(per_account, _GROUPED_FINISH)


def _window(events: pl.LazyFrame, start: datetime | None, end: datetime | None) -> pl.LazyFrame:
    """Hook of ``needs="window"``: one row, the window bounds (default: the events' span)."""
    bounds = events.select(
        pl.col("ts").min().alias(WINDOW_START), pl.col("ts").max().alias(WINDOW_END)
    )
    if start is not None:
        bounds = bounds.with_columns(pl.lit(start).cast(TS_DTYPE).alias(WINDOW_START))
    if end is not None:
        bounds = bounds.with_columns(pl.lit(end).cast(TS_DTYPE).alias(WINDOW_END))
    return bounds


def _model_novelty(
    events: pl.LazyFrame, bounds: pl.LazyFrame, first_seen: pl.LazyFrame | pl.DataFrame | None
) -> pl.LazyFrame:
    """Hook of ``needs="model_first_seen"``: per model, whether it is new in the window (first
    seen more than NEW_MODEL_GRACE_H after the start) and until when requests on it count."""
    first = (
        first_seen.lazy().select("model", pl.col("first_ts").alias("__model_first"))
        if first_seen is not None
        else events.group_by("model").agg(pl.col("ts").min().alias("__model_first"))
    )
    grace = pl.duration(hours=NEW_MODEL_GRACE_H)
    return first.join(bounds, how="cross").select(
        "model",
        (pl.col("__model_first") > pl.col(WINDOW_START) + grace).alias(MODEL_NEW),
        (pl.col("__model_first") + pl.duration(hours=NEW_MODEL_H)).alias(NEW_UNTIL),
    )


def account_features(
    events: pl.LazyFrame | pl.DataFrame,
    accounts: pl.LazyFrame | pl.DataFrame | None = None,
    *,
    window_start: datetime | None = None,
    window_end: datetime | None = None,
    model_first_seen: pl.LazyFrame | pl.DataFrame | None = None,
) -> pl.LazyFrame:
    """One row per account: ``account_id`` + every feature in :data:`FEATURES` (Float64).

    ``events`` are compact events (from :func:`detector.fingerprints.fingerprint_events`); raw
    canonical events are fingerprinted first. ``accounts`` (optional account table) supplies
    ``created_at`` for ``account_age_days``. The window defaults to the events' time span.
    ``model_first_seen`` (``model, first_ts``) says when each model first appeared in the whole
    window, for callers that pass only some accounts' events (the live service); by default it
    is taken from ``events``. The input order does not matter.
    """
    lf = events.lazy()
    if "prompt" in lf.collect_schema().names():
        lf = fingerprint_events(lf)
    bounds = _window(lf, window_start, window_end)
    models = _model_novelty(lf, bounds, model_first_seen) if _NEEDS_MODELS else None
    lf = lf.with_columns(pl.col("account_id").cast(pl.Categorical).to_physical().alias(ACCOUNT_KEY))
    counted = lf.join(models, on="model", how="left") if models is not None else lf
    per_account = _counted(counted).join(_grouped(lf), on=ACCOUNT_KEY).join(bounds, how="cross")
    per_account = _finish(per_account, _WINDOW_FINISH)
    if accounts is not None:
        acc = accounts.lazy().select("account_id", "created_at")
        per_account = _finish(per_account.join(acc, on="account_id", how="left"), _ACCOUNTS_FINISH)
    else:  # features that need the account table are null without one
        per_account = _finish(per_account, _NO_ACCOUNTS)
    return per_account.select(
        "account_id", *[pl.col(n).cast(pl.Float64).fill_nan(None) for n in FEATURE_NAMES]
    ).sort("account_id")
