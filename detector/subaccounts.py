"""Sub-account analysis: distillation hidden inside a multi-tenant account.

A reseller, proxy or platform account carries the traffic of many end customers. When one of
them distils, its requests are a small share of the account's (10 % in the ``reseller_mixed``
archetype), so the *account's* features barely move. But that end customer usually has its own
IP address or API key. This stage scores each such slice on its own:

1. **Candidates**: accounts with at least ``min_distinct`` distinct values of a slicing column
   (``ip``, ``api_key_id``, and ``end_user_id`` where the log carries the reseller's own
   customer ids: the one slice that isolates a distiller whose requests share the reseller's
   NAT with everyone else's). Single-IP / single-key accounts *are* their own slice.
2. **Slices**: the account's events with that value, when there are at least ``min_events`` of
   them (features of a handful of requests are noise). A slice's id is
   ``"<account>|<column>=<value>"``.
3. **Scoring**: THE feature code (:func:`detector.features.account_features`) over each slice,
   with the whole window's bounds and model first-seen times and the parent's account-table row,
   then the same fitted model's raw score.
4. **Lift**: a slice counts when, on its own, it would sit in the top ``slice_fpr`` (1 %) of
   the model's reference population (its calibrated tail share ``S <= slice_fpr``). The
   account's raw score becomes the slice's (if higher) and is read through the model's own
   calibration — the lift alone flags nothing: the account is flagged only if that score
   passes the flag threshold. The first reason names the slice ("traffic from ip 1.2.3.4
   (1052 requests, 10% of the account's) is on its own rarer than 1 in 3,700 normal
   accounts"),
   followed by the slice's own reasons, each named as the slice's ("ip 1.2.3.4: cot_rate
   high: 83% vs typical 0% ..."), not as the account's.

Slices are judged by unsupervised models only: a supervised model (fitted with labels) learned
its boundary on whole accounts, and on ``default`` it put most legitimate resellers' slices
beyond every labelled normal account; with it, this stage changes nothing.

Slices of legitimate resellers are their end users' ordinary traffic: in ``default`` none of
1,954 IP slices of legitimate resellers reached raw 1.1, far below the top 1 % of accounts,
while every ``reseller_mixed`` account had an IP slice above 2.5.
"""

from __future__ import annotations

import polars as pl

from detector.calibration import score_reading
from detector.features import FEATURE_NAMES, account_features
from detector.models import DistillScorer
from detector.window import Window

# slicing column -> the account feature that counts its distinct values
SLICE_COLUMNS = {
    "ip": "distinct_ips",
    "api_key_id": "distinct_keys",
    "end_user_id": "distinct_end_users",  # the reseller's own customer id, where logged
}
MIN_DISTINCT = 10
MIN_EVENTS = 50
SLICE_FPR = 0.01  # a slice counts when it alone would be in the top 1 % of the reference
_SEP = "|"
SLICE_FEATURE_SCHEMA: dict[str, pl.DataType] = {
    "account_id": pl.String(),
    **{name: pl.Float64() for name in FEATURE_NAMES},
}


def account_slices(
    events: pl.DataFrame,
    features: pl.DataFrame,
    columns: tuple[str, ...] = tuple(SLICE_COLUMNS),
    min_distinct: int = MIN_DISTINCT,
    min_events: int = MIN_EVENTS,
) -> pl.DataFrame:
    """Events of the slices worth scoring, ``account_id`` replaced by the slice id and the
    parent account in ``parent_id``; plus ``slice_column``, ``slice_value``, ``slice_share``
    (the slice's share of its account's events). Candidate accounts are read off their
    ``features`` (``distinct_ips``, ``distinct_keys``)."""
    frames = []
    for col in columns:
        parents = features.filter(pl.col(SLICE_COLUMNS[col]) >= min_distinct).select("account_id")
        if parents.height == 0:
            continue
        ev = events.join(parents, on="account_id", how="semi").filter(pl.col(col).is_not_null())
        ev = ev.with_columns(
            pl.len().over("account_id", col).alias("__n"),
            pl.len().over("account_id").alias("__total"),
        ).filter(pl.col("__n") >= min_events)
        frames.append(
            ev.with_columns(
                pl.col("account_id").alias("parent_id"),
                (pl.col("account_id") + f"{_SEP}{col}=" + pl.col(col)).alias("account_id"),
                pl.lit(col).alias("slice_column"),
                pl.col(col).alias("slice_value"),
                (pl.col("__n") / pl.col("__total")).alias("slice_share"),
            ).drop("__n", "__total")
        )
    if not frames:
        return events.clear().with_columns(
            pl.lit(None, dtype=pl.String).alias("parent_id"),
            pl.lit(None, dtype=pl.String).alias("slice_column"),
            pl.lit(None, dtype=pl.String).alias("slice_value"),
            pl.lit(None, dtype=pl.Float64).alias("slice_share"),
        )
    return pl.concat(frames, how="vertical")


def lift_slices(
    model: DistillScorer,
    events: pl.DataFrame,
    features: pl.DataFrame,
    scored: pl.DataFrame,
    accounts: pl.DataFrame | None = None,
    window: Window | None = None,
    *,
    columns: tuple[str, ...] = tuple(SLICE_COLUMNS),
    min_distinct: int = MIN_DISTINCT,
    min_events: int = MIN_EVENTS,
    slice_fpr: float = SLICE_FPR,
) -> pl.DataFrame:
    """``scored`` (the output of ``model.score(features)`` for the accounts of ``events``) with
    accounts lifted by a slice that scores beyond the whole reference population on its own.

    ``window`` describes the whole window (as for :func:`account_features`); it defaults to
    ``events``' own, which is right when ``events`` is the whole window."""
    if not judges_slices(model):
        return scored
    meta, feats = slice_features(
        events,
        features,
        accounts,
        window,
        columns=columns,
        min_distinct=min_distinct,
        min_events=min_events,
    )
    return lift_by_slices(model, scored, meta, feats, slice_fpr)


def judges_slices(model: DistillScorer) -> bool:
    """Whether ``model`` judges slices at all: unsupervised models only."""
    # A supervised model's learned boundary does not transfer to slices: on `default` it
    # put 64% of legitimate resellers' slices beyond every labelled normal account.
    return getattr(model, "classifier_", None) is None


def slice_features(
    events: pl.DataFrame,
    features: pl.DataFrame,
    accounts: pl.DataFrame | None = None,
    window: Window | None = None,
    *,
    columns: tuple[str, ...] = tuple(SLICE_COLUMNS),
    min_distinct: int = MIN_DISTINCT,
    min_events: int = MIN_EVENTS,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(meta, feats)`` of the slices worth scoring: ``meta`` = ``account_id`` (the slice id),
    ``parent_id, slice_column, slice_value, slice_share, n``; ``feats`` their features by THE
    feature code over ``window`` (default: ``events``' own), with the parent's account-table
    row. A slice depends on its parent account's events only, so any split of ``events`` by
    account gives the same rows (the Spark engine computes them per account group)."""
    slices = account_slices(events, features, columns, min_distinct, min_events)
    meta = slices.group_by("account_id").agg(
        pl.col("parent_id").first(),
        pl.col("slice_column").first(),
        pl.col("slice_value").first(),
        pl.col("slice_share").first(),
        pl.len().cast(pl.UInt32).alias("n"),
    )
    if slices.height == 0:
        return meta, pl.DataFrame(schema=SLICE_FEATURE_SCHEMA)
    ctx = window if window is not None else Window.of(events)
    table = None
    if accounts is not None:
        table = meta.select("account_id", "parent_id").join(
            accounts.rename({"account_id": "parent_id"}), on="parent_id", how="inner"
        )
        table = table.drop("parent_id")
    feats = account_features(
        slices.drop("parent_id", "slice_column", "slice_value", "slice_share").lazy(),
        table,
        window_start=ctx.start,
        window_end=ctx.end,
        model_first_seen=ctx.model_first_seen,
    ).collect()
    return meta, feats


def lift_by_slices(
    model: DistillScorer,
    scored: pl.DataFrame,
    meta: pl.DataFrame,
    feats: pl.DataFrame,
    slice_fpr: float = SLICE_FPR,
) -> pl.DataFrame:
    """``scored`` with accounts lifted by their best slice (``meta``, ``feats``: from
    :func:`slice_features`) when it alone sits in the top ``slice_fpr`` of the reference."""
    if feats.height == 0:
        return scored
    raw = model.raw_score(feats)
    beyond = model.calibrator_.survival(raw) <= slice_fpr
    if not beyond.any():
        return scored
    hits = feats.filter(pl.Series(beyond))
    own = model.score(hits).join(meta, on="account_id", how="left")
    best = own.sort("raw_score", descending=True).group_by("parent_id", maintain_order=True).first()
    # the slice's own reasons, named as the slice's: "ip 1.2.3.4: cot_rate high: 83% vs ..."
    prefix = pl.format("{} {}: ", pl.col("slice_column"), pl.col("slice_value"))
    labelled = (
        best.select("account_id", prefix.alias("__p"), "reasons")
        .explode("reasons")
        .drop_nulls("reasons")
        .group_by("account_id", maintain_order=True)
        .agg((pl.col("__p") + pl.col("reasons")).alias("__labelled"))
    )
    best = best.join(labelled, on="account_id", how="left").with_columns(
        pl.col("__labelled").fill_null(pl.lit([], dtype=pl.List(pl.String))).alias("reasons"),
        pl.col("score").map_elements(score_reading, return_dtype=pl.String).alias("reading"),
    )
    joined = scored.join(
        best.select(
            pl.col("parent_id").alias("account_id"),
            pl.col("raw_score").alias("__slice_raw"),
            pl.col("reasons").alias("__slice_reasons"),
            "slice_column",
            "slice_value",
            "slice_share",
            "n",
            "reading",
        ),
        on="account_id",
        how="left",
    )
    lift = (pl.col("__slice_raw") > pl.col("raw_score")).fill_null(False)
    joined = joined.with_columns(lift.alias("__lift"))
    raw_new = (
        joined.select(pl.when("__lift").then("__slice_raw").otherwise("raw_score"))
        .to_series()
        .to_numpy()
    )
    headline = pl.format(
        "traffic from {} {} ({} requests, {}% of the account's) is on its own {}",
        pl.col("slice_column"),
        pl.col("slice_value"),
        pl.col("n"),
        (pl.col("slice_share") * 100).round(0).cast(pl.Int64),
        pl.col("reading"),
    )
    out = joined.with_columns(
        pl.Series("raw_score", raw_new),
        pl.Series("score", model.calibrate(raw_new)),
    ).with_columns(
        (pl.col("score") >= model.threshold_).alias("flagged"),
        pl.when("__lift")
        .then(pl.concat_list(headline, pl.col("__slice_reasons")))
        .otherwise(pl.col("reasons"))
        .alias("reasons"),
    )
    return out.select(scored.columns)


def score_with_slices(
    model: DistillScorer,
    events: pl.DataFrame,
    features: pl.DataFrame,
    accounts: pl.DataFrame | None = None,
    window: Window | None = None,
) -> pl.DataFrame:
    """The account scoring step of :mod:`detector.pipeline`: ``model.score(features)`` lifted
    by the accounts' slices (:func:`lift_slices`). ``events`` are the compact events of the
    accounts of ``features``; ``window`` the whole window they belong to."""
    return lift_slices(model, events, features, model.score(features), accounts, window)
