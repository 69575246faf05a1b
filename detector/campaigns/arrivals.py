"""Arrival bursts: accounts that first appear in the log together, far more than usual.

An operator who creates accounts for a campaign brings them online in batches: in the request
log (with or without an account table) their first requests bunch into a few hours, while the
first requests of ordinary accounts spread out (new sign-ups, occasional users). This module
finds those hours and turns them into linkage evidence.

- Each account's **arrival** is the clock hour of its first request in the window.
- The **expected** arrivals of an hour are the median of the arrivals of the hours around it
  (``baseline_h`` either side): robust to the burst itself, and following the slow decline of
  first appearances over a window.
- An hour is a **burst** when its arrivals exceed the expected by at least ``min_excess``
  accounts and ``min_ratio`` times, and a Poisson count that high has probability below
  ``max_p`` (the many hours of a week are many chances). The window's first ``onset_h`` hours
  never are: every account already active appears then.
- Consecutive burst hours are one burst. Its **strength** is ``clip(log(r) / log(full_ratio),
  0, 1)`` with ``r`` its arrivals over their expected number.

:func:`arrival_evidence` gives, for each account arriving in a burst, an evidence row of kind
``arrival`` (the burst's first hour as its value) and the burst's strength. Arriving together
is not proof by itself (a class whose assignment opens at 9 am, a launch-day cohort):
:mod:`detector.campaigns.linkage` weighs it (kind ``arrival``, its full weight whatever the
burst's size: being a burst is what makes it evidence) with the other evidence the accounts
share.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
from scipy.stats import poisson

HOUR_US = 3_600_000_000


def first_requests(compact: pl.LazyFrame | pl.DataFrame) -> pl.DataFrame:
    """``account_id, first_ts``: each account's first request in the window."""
    return compact.lazy().group_by("account_id").agg(pl.col("ts").min().alias("first_ts")).collect()


def arrival_bursts(
    first: pl.DataFrame,
    *,
    baseline_h: int = 12,
    onset_h: int = 2,
    min_excess: int = 5,
    min_ratio: float = 3.0,
    max_p: float = 1e-6,
    full_ratio: float = 10.0,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(arrivals, bursts)`` from ``first`` (:func:`first_requests`): ``account_id, hour``
    (hours since the window's first one) for every account, and ``burst, first_hour,
    last_hour, arrivals, expected, strength`` for every burst (``burst``: the ISO time of its
    first hour)."""
    empty = pl.DataFrame(
        schema={
            "burst": pl.String,
            "first_hour": pl.Int64,
            "last_hour": pl.Int64,
            "arrivals": pl.Int64,
            "expected": pl.Float64,
            "strength": pl.Float64,
        }
    )
    if first.height == 0:
        return first.select("account_id", pl.lit(0, pl.Int64).alias("hour")), empty
    start_us = first.select(pl.col("first_ts").min().dt.epoch("us")).item()
    arrivals = first.select(
        "account_id",
        ((pl.col("first_ts").dt.epoch("us") - start_us) // HOUR_US).alias("hour"),
    )
    hours = arrivals["hour"].to_numpy()
    count = np.bincount(hours).astype(np.float64)
    n_hours = len(count)
    expected = np.array(
        [np.median(count[max(0, h - baseline_h) : h + baseline_h + 1]) for h in range(n_hours)]
    )
    expected = np.maximum(expected, 1.0)
    p = poisson.sf(count - 1, expected)  # P(X >= count)
    burst = (count - expected >= min_excess) & (count >= min_ratio * expected) & (p < max_p)
    burst[:onset_h] = False
    rows: list[tuple[int, int, float, float]] = []
    h = 0
    while h < n_hours:
        if not burst[h]:
            h += 1
            continue
        end = h
        while end + 1 < n_hours and burst[end + 1]:
            end += 1
        got, exp = float(count[h : end + 1].sum()), float(expected[h : end + 1].sum())
        rows.append((h, end, got, exp))
        h = end + 1
    if not rows:
        return arrivals, empty
    t0 = pl.select(pl.lit(start_us).cast(pl.Datetime("us", "UTC")).dt.truncate("1h")).item()
    out = pl.DataFrame(
        {
            "first_hour": [r[0] for r in rows],
            "last_hour": [r[1] for r in rows],
            "arrivals": [int(r[2]) for r in rows],
            "expected": [r[3] for r in rows],
        }
    ).with_columns(
        (pl.lit(t0) + pl.duration(hours=pl.col("first_hour")))
        .dt.strftime("%Y-%m-%dT%H:00Z")
        .alias("burst"),
        ((pl.col("arrivals") / pl.col("expected")).log() / math.log(full_ratio))
        .clip(0.0, 1.0)
        .alias("strength"),
    )
    return arrivals, out


def arrival_evidence(first: pl.DataFrame, **options: float) -> pl.DataFrame:
    """``account_id, kind, value, uses`` (the rows of
    :func:`detector.campaigns.linkage.account_evidence`): one per account that arrived in a
    burst, the burst's first hour as value (``first``: :func:`first_requests`; see
    :func:`arrival_bursts`, whose keyword arguments ``options`` are)."""
    arrivals, bursts = arrival_bursts(first, **options)  # type: ignore[arg-type]
    schema = {
        "account_id": pl.String,
        "kind": pl.String,
        "value": pl.String,
        "uses": pl.UInt32,
    }
    if bursts.height == 0:
        return pl.DataFrame(schema=schema)
    spans = bursts.select(
        "burst",
        pl.int_ranges("first_hour", pl.col("last_hour") + 1).alias("hour"),
    ).explode("hour")
    return (
        arrivals.join(spans, on="hour")
        .select(
            "account_id",
            pl.lit("arrival").alias("kind"),
            pl.col("burst").alias("value"),
            pl.lit(1, dtype=pl.UInt32).alias("uses"),
        )
        .cast(schema)  # type: ignore[arg-type]
        .sort("account_id")
    )
