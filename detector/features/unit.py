"""What a feature is: :class:`Feature` (documentation + polars expression) and :class:`Example`.

A feature's value for one account is ``finish(agg)``: ``agg`` aggregates the account's compact
events in one of two passes (its ``stage``), ``finish`` (optional) turns the aggregated value
into the feature on the per-account row. :mod:`detector.features.compute` builds both passes
from :data:`detector.features.registry.FEATURES`; nothing is written twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np
import polars as pl

from detector.io.schema import ACCOUNT_SCHEMA, EVENT_SCHEMA

# "counted": one hash aggregation over the events as they come (sums, shares and means of
# integers: exact in any order). "grouped": the events sorted by account, so that order
# (gaps, the active span), distinct values and float sums see one contiguous, ordered slice;
# string columns arrive there as 64-bit hashes (equality is all they are used for).
Stage = Literal["counted", "grouped"]
# Inputs beyond the account's own events, each supplied by a small hook in compute.py:
# "window": the window bounds (columns WINDOW_START, WINDOW_END of the per-account row);
# "accounts": the account table (column created_at; the feature is null without one);
# "model_first_seen": per event, whether its model is new (MODEL_NEW) and until when (NEW_UNTIL).
Need = Literal["window", "accounts", "model_first_seen"]
# How a feature's values over disjoint time chunks of one account (each with its number of
# events) merge into the account's value, for an engine that cannot hold a giant account in one
# group (:mod:`detector.spark.skew`): "sum", "max", "min", "mean" (weighted by events) and
# "special" (its own exact rule) merge exactly; "lower_bound_max" (the largest chunk's: a
# distinct count), "approx_mean" (weighted mean of a feature that needs the whole account's
# order or distinct values) and "approx_special" (its own approximation) do not.
Merge = Literal[
    "sum", "max", "min", "mean", "special", "lower_bound_max", "approx_mean", "approx_special"
]
EXACT_MERGES: frozenset[str] = frozenset({"sum", "max", "min", "mean", "special"})

WINDOW_START = "__window_start"
WINDOW_END = "__window_end"
MODEL_NEW = "__model_new"
NEW_UNTIL = "__new_until"

EXAMPLE_T0 = datetime(2026, 11, 1, tzinfo=UTC)
EXAMPLE_ACCOUNT = "a"
# A plain request: what an example's events are unless they say otherwise (prompts without
# topic keywords or markers, each its own template).
_PLAIN_PROMPTS = (
    "tell me about owls",
    "what rhymes with orange",
    "name three green fruits",
    "why is the sky blue",
    "who painted the mona lisa",
    "how far away is the moon",
)
PLAIN_REQUEST: dict[str, Any] = {
    "account_id": EXAMPLE_ACCOUNT,
    "api_key_id": "k",
    "ip": "10.1.2.3",
    "user_agent": "ua",
    "model": "m",
    "endpoint": "chat.completions",
    "system_prompt": None,
    "prompt_tokens": 10,
    "completion_tokens": 20,
    "max_tokens": None,
    "temperature": None,
    "top_p": None,
    "n": 1,
    "logprobs": False,
    "top_logprobs": None,
    "logit_bias_size": 0,
    "tools_count": 0,
    "stream": False,
    "status": 200,
    "latency_ms": 100.0,
    "finish_reason": "stop",
    "conversation_id": None,
}


@dataclass(frozen=True)
class Example:
    """A few requests of one account and the feature's value on them (checked by
    ``tests/test_feature_examples.py`` through :func:`detector.features.account_features`).

    ``events``: per request, the canonical columns (:data:`detector.io.schema.EVENT_SCHEMA`)
    that differ from :data:`PLAIN_REQUEST`; request ``i`` is at ``i`` minutes after
    :data:`EXAMPLE_T0` unless it gives ``ts`` (a timedelta after T0). ``created``: when the
    account was created, relative to T0 (an account table is passed only when it is set).
    """

    events: tuple[Mapping[str, Any], ...]
    value: float | None
    created: timedelta | None = None

    def __post_init__(self) -> None:
        unknown = {c for e in self.events for c in e} - set(EVENT_SCHEMA)
        if unknown:
            raise ValueError(f"example events name no canonical column {sorted(unknown)}")

    def frame(self, *, plain: bool = False) -> pl.DataFrame:
        """The canonical events (``plain``: as many plain requests, a minute apart)."""
        rows = []
        for i, given in enumerate(self.events):
            row = {
                **PLAIN_REQUEST,
                "request_id": f"r{i}",
                "prompt": _PLAIN_PROMPTS[i % len(_PLAIN_PROMPTS)],
                "ts": timedelta(minutes=i),
                **({} if plain else given),
            }
            rows.append({**row, "ts": EXAMPLE_T0 + row["ts"]})
        return pl.DataFrame(rows, schema=EVENT_SCHEMA)

    def accounts(self) -> pl.DataFrame | None:
        """The account table ``account_features`` gets (None when ``created`` is not set)."""
        if self.created is None:
            return None
        schema = {c: ACCOUNT_SCHEMA[c] for c in ("account_id", "created_at")}
        return pl.DataFrame([(EXAMPLE_ACCOUNT, EXAMPLE_T0 + self.created)], schema, orient="row")


@dataclass(frozen=True)
class Feature:
    """One per-account feature: what it means and how it is computed.

    ``agg`` is the per-account aggregation, run in pass ``stage``. Without ``finish`` its value
    is the feature. With ``finish``, ``agg`` is named (``.alias("__...")``) and ``finish``
    computes the feature from that column on the per-account row; features finishing the same
    aggregated list (gap statistics, topic histogram) share one aggregation. ``needs`` names an
    input beyond the account's events (see :data:`Need`). ``merge`` says how its values over
    time chunks of one account combine (see :data:`Merge`).
    """

    name: str
    direction: str  # "up" | "down" | "none"
    formula: str
    why: str
    unit: str = ""  # how values read in reasons: "", "%", "/day", "h", "days", ...
    log: bool = False  # heavy-tailed count: models see log1p(value)
    agg: pl.Expr = field(kw_only=True, compare=False)
    example: Example = field(kw_only=True, compare=False)
    merge: Merge = field(kw_only=True)
    stage: Stage = field(default="counted", kw_only=True)
    finish: pl.Expr | None = field(default=None, kw_only=True, compare=False)
    needs: Need | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        if self.direction not in ("up", "down", "none") or self.stage not in (
            "counted",
            "grouped",
        ):
            raise ValueError(f"{self.name}: direction {self.direction!r}, stage {self.stage!r}")
        if self.finish is not None and not self.agg.meta.output_name().startswith("__"):
            raise ValueError(f"{self.name}: an aggregation to finish needs a '__' name")
        if self.needs == "accounts" and self.finish is None:
            raise ValueError(f"{self.name}: account-table columns are read in `finish`")
        if self.needs == "model_first_seen" and self.stage != "counted":
            raise ValueError(f"{self.name}: model novelty is joined to the counted pass only")


def share(condition: pl.Expr) -> pl.Expr:
    """Share of the account's requests for which ``condition`` holds."""
    return condition.cast(pl.Float64).mean()


def _entropies(counts: pl.Series) -> pl.Series:
    """Shannon entropy (nats) of each list of value counts, summed by numpy in the lists'
    order (``np.add.reduceat``: one sequential sum per list), so that equal lists give equal
    values to the last bit whatever the memory layout of the column (polars' list kernels
    sum in lanes that depend on it). Null or empty lists give null."""
    lengths = counts.list.len().fill_null(0).to_numpy().astype(np.int64)
    flat = counts.explode().drop_nulls().cast(pl.Float64).to_numpy()
    out = np.full(len(counts), np.nan)
    full = lengths > 0
    if flat.size:
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))[full]
        total = np.add.reduceat(flat, starts)
        c_log_c = np.add.reduceat(flat * np.log(flat), starts)
        # log(c) - c log(c) / c is 0 only up to rounding: one value is exactly 0, and no
        # entropy is below it (a feature of +-4e-16 noise is binned as if it meant something)
        h = np.maximum(np.log(total) - c_log_c / total, 0.0)
        out[full] = np.where(lengths[full] == 1, 0.0, h)
    return pl.Series(counts.name, out, dtype=pl.Float64).fill_nan(None)


def entropy(counts: pl.Expr, norm: float) -> pl.Expr:
    """Shannon entropy of a list of value counts, divided by ``norm`` (the entropy of the
    evenest possible spread). The lists are sorted in their aggregation and summed in order
    (:func:`_entropies`), so that accounts with the same counts get the same value to the
    last bit."""
    return counts.map_batches(_entropies, return_dtype=pl.Float64) / norm


def of(agg: pl.Expr) -> pl.Expr:
    """The column that the named aggregation ``agg`` becomes on the per-account row."""
    return pl.col(agg.meta.output_name())
