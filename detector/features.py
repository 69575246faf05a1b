"""Per-account features over a window of compact events (see :mod:`detector.fingerprints`).

``account_features(events) -> LazyFrame`` is THE feature code: the offline audit, training and
the streaming service all call it (the service on its sliding window of compact events). It is
a pure polars function of a LazyFrame, so it can also run per account group on a distributed
engine.

Every feature is documented in :data:`FEATURES`: its formula, why it matters, and its *risk
direction* — ``up`` (more is suspicious), ``down`` (less is suspicious) or ``none`` (context
only, never scored).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import polars as pl

from detector.fingerprints import TOPICS, fingerprint_events
from detector.io.schema import TS_DTYPE


@dataclass(frozen=True)
class Feature:
    name: str
    direction: str  # "up" | "down" | "none"
    formula: str
    why: str
    unit: str = ""  # how values read in reasons: "", "%", "/day", "h", "days", ...
    log: bool = False  # heavy-tailed count: models see log1p(value)


N_TOPICS = len(TOPICS)  # every topic a compact event can carry (detector.fingerprints)
HOURS_PER_DAY = 24

FEATURES: tuple[Feature, ...] = (
    # ---- volume and timing
    Feature(
        "requests_per_day",
        "up",
        "requests / window length in days (min 1 day)",
        "distillation needs volume; bulk harvesters run far above human use",
        "/day",
        True,
    ),
    Feature(
        "active_hours",
        "up",
        "distinct clock hours (date+hour) with at least one request",
        "scripts keep hours busy that people sleep through",
        "h",
        True,
    ),
    Feature(
        "hour_entropy",
        "up",
        f"Shannon entropy of the hour-of-day histogram / log({HOURS_PER_DAY})",
        "1.0 = traffic spread evenly over the day (24/7 automation); humans are diurnal",
    ),
    Feature(
        "iat_cv",
        "none",
        "std / mean of inter-arrival gaps (s)",
        "burstiness: context for analysts; both bots and people can be bursty",
    ),
    Feature(
        "median_gap_s",
        "none",
        "median seconds between consecutive requests",
        "scripted pipelines send the next request within a second or two",
        "s",
        True,
    ),
    Feature(
        "peak_per_minute",
        "none",
        "most requests in any one minute",
        "harvesting pipelines run in parallel bursts",
        "",
        True,
    ),
    # ---- tokens and parameters
    Feature(
        "completion_prompt_ratio",
        "up",
        "sum(completion_tokens) / sum(prompt_tokens)",
        "distillers want long answers to short questions",
        "",
        True,
    ),
    Feature(
        "mean_completion_tokens",
        "up",
        "mean completion tokens per request",
        "reasoning traces and full solutions are long",
        "",
        True,
    ),
    Feature(
        "max_tokens_saturation",
        "up",
        "share of requests that stop at max_tokens",
        "asking for as much output as the cap allows",
        "%",
    ),
    Feature(
        "high_max_tokens_share",
        "up",
        "share of requests with max_tokens >= 4096",
        "distillers set the cap at the model's maximum",
        "%",
    ),
    Feature(
        "tiny_max_tokens_share",
        "up",
        "share of requests with max_tokens <= 4",
        "max_tokens=1 probes recover logits one token at a time",
        "%",
    ),
    Feature(
        "n_gt1_share",
        "up",
        "share of requests with n > 1",
        "several samples per prompt multiply what is harvested",
        "%",
    ),
    Feature(
        "logprobs_share",
        "up",
        "share of requests asking for logprobs",
        "log-probabilities leak the output distribution (logit extraction)",
        "%",
    ),
    Feature(
        "logit_bias_share",
        "up",
        "share of requests with a logit_bias",
        "logit_bias sweeps recover the output projection",
        "%",
    ),
    Feature(
        "logit_bias_tokens",
        "up",
        "mean number of biased tokens per request that sets a logit_bias (null: none does)",
        "a classifier biases its few label tokens; extraction sweeps bias hundreds of tokens "
        "per request to read the output projection (the API allows up to 300)",
        "",
        True,
    ),
    Feature(
        "temperature_std",
        "up",
        "standard deviation of temperature (set values)",
        "temperature sweeps probe the sampling distribution",
    ),
    Feature(
        "stream_share",
        "none",
        "share of streamed requests",
        "interactive products stream; harvesting scripts rarely do",
        "%",
    ),
    Feature(
        "tools_share",
        "none",
        "share of requests sending tool definitions",
        "agentic use: context (agent products do this legitimately)",
        "%",
    ),
    Feature(
        "error_share",
        "none",
        "share of requests with HTTP status >= 400",
        "rate-limit pressure and broken clients: context",
        "%",
    ),
    # ---- content
    Feature(
        "template_reuse",
        "up",
        "1 - distinct(template) / requests",
        "highly repetitive prompt templates around varying payloads",
        "%",
    ),
    Feature(
        "top_template_share",
        "none",
        "share of requests using the most common template",
        "one narrow task (batch jobs) vs a sweep: context",
        "%",
    ),
    Feature(
        "near_dup_rate",
        "up",
        "share of requests with a near-duplicate (MinHash band) in the same account",
        "payload sweeps reuse most of the text",
        "%",
    ),
    Feature(
        "topic_breadth",
        "up",
        "distinct coarse topics",
        "capability sweeps cover many areas; a product covers a few",
    ),
    Feature(
        "topic_entropy",
        "up",
        f"Shannon entropy of the topic histogram / log({N_TOPICS}) (the number of topics)",
        "evenly spread topics = systematic coverage",
    ),
    Feature(
        "cot_rate",
        "up",
        "share of prompts eliciting step-by-step reasoning",
        "reasoning-trace harvesting",
        "%",
    ),
    Feature(
        "rubric_rate",
        "up",
        "share of prompts with grading rubrics",
        "using the model as a reward model / grader",
        "%",
    ),
    Feature(
        "rewrite_rate",
        "up",
        "share of 'rewrite this safely' prompts",
        "harvesting safety behaviour",
        "%",
    ),
    Feature(
        "bench_rate",
        "up",
        "share of benchmark-style prompts (multiple choice, Answer:, code stubs)",
        "capability benchmarks as training data",
        "%",
    ),
    Feature(
        "non_latin_share",
        "none",
        "share of prompts in a non-Latin script",
        "language: context",
        "%",
    ),
    Feature(
        "system_prompt_share",
        "none",
        "share of requests with a system prompt",
        "products send a system prompt; raw harvesting often does not",
        "%",
    ),
    Feature("distinct_system_prompts", "none", "distinct system prompts", "context"),
    Feature("mean_prompt_chars", "none", "mean prompt length in characters", "context", "", True),
    # ---- infrastructure
    Feature(
        "distinct_ips", "none", "distinct client IPs", "context (resellers have many)", "", True
    ),
    Feature(
        "distinct_prefixes",
        "none",
        "distinct /24 (IPv4) or /64 (IPv6) prefixes",
        "context",
        "",
        True,
    ),
    Feature("distinct_user_agents", "none", "distinct user agents", "context"),
    Feature("distinct_keys", "none", "distinct API keys", "context", "", True),
    # ---- conversations
    Feature(
        "single_turn_share",
        "none",
        "share of requests outside any multi-request conversation",
        "harvesting is one-shot: no follow-ups, no conversation",
        "%",
    ),
    Feature(
        "turns_per_conversation",
        "none",
        "mean requests per conversation id (0 when none)",
        "people follow up; scripts do not",
    ),
    # ---- lifecycle and model pivot
    Feature(
        "account_age_days",
        "down",
        "days from account creation to its first request in the "
        "window (null without an account table)",
        "fresh accounts made for a campaign",
        "days",
        True,
    ),
    Feature(
        "ramp_up",
        "up",
        "requests in the 2nd half of the account's active span / 1st half",
        "campaign accounts ramp up fast",
        "",
        True,
    ),
    Feature(
        "new_model_share",
        "up",
        "share of requests on a model within 24 h of that model's first appearance in the window",
        "distillers move to a new model within a day",
        "%",
    ),
)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
FEATURE_BY_NAME: dict[str, Feature] = {f.name: f for f in FEATURES}
SCORED_FEATURES: tuple[str, ...] = tuple(f.name for f in FEATURES if f.direction != "none")

NEW_MODEL_GRACE_H = 1.0  # a model first seen within this long after window start is not "new"


def _share(expr: pl.Expr) -> pl.Expr:
    return expr.cast(pl.Float64).mean()


def _entropy(counts: str, norm: float) -> pl.Expr:
    """Normalised Shannon entropy of a list of value counts. The lists are sorted (see
    :func:`_grouped`) so that accounts with the same counts get the same value to the last bit
    (a float sum depends on its order; polars drops a sort before an aggregation)."""
    entropy = pl.element().cast(pl.Float64).entropy(normalize=True)
    return pl.col(counts).list.eval(entropy).list.first() / norm


def _hashed(col: str) -> pl.Expr:
    """A string column as 64-bit hashes (nulls kept): distinct counts per account then compare
    integers, not strings. A collision inside one account is ~n²/2^65 unlikely."""
    return pl.when(pl.col(col).is_not_null()).then(pl.col(col).hash()).alias(col)


ACCOUNT_KEY = "__acct"  # integer account key: the account id's categorical code


def _counted(events: pl.LazyFrame, models: pl.LazyFrame) -> pl.LazyFrame:
    """Features that are sums, means and extremes over an account's requests: one hash
    aggregation over the events as they come (no sort)."""
    n = pl.len().cast(pl.Float64)
    is_new = pl.col("__model_new") & (pl.col("ts") <= pl.col("__new_until"))
    return (
        events.join(models, on="model", how="left")
        .group_by(ACCOUNT_KEY)
        .agg(
            pl.col("account_id").first(),
            n.alias("__n"),
            pl.col("ts").min().alias("__first_ts"),
            (
                pl.col("completion_tokens").sum()
                / pl.col("prompt_tokens").sum().clip(lower_bound=1)
            ).alias("completion_prompt_ratio"),
            pl.col("completion_tokens").mean().alias("mean_completion_tokens"),
            _share(pl.col("finish_reason") == "length").alias("max_tokens_saturation"),
            _share(pl.col("max_tokens").fill_null(0) >= 4096).alias("high_max_tokens_share"),
            _share(pl.col("max_tokens").fill_null(1_000_000) <= 4).alias("tiny_max_tokens_share"),
            _share(pl.col("n") > 1).alias("n_gt1_share"),
            _share(pl.col("logprobs")).alias("logprobs_share"),
            _share(pl.col("logit_bias_size") > 0).alias("logit_bias_share"),
            pl.col("logit_bias_size")
            .filter(pl.col("logit_bias_size") > 0)
            .mean()
            .alias("logit_bias_tokens"),
            _share(pl.col("stream")).alias("stream_share"),
            _share(pl.col("tools_count") > 0).alias("tools_share"),
            _share(pl.col("status") >= 400).alias("error_share"),
            _share(pl.col("cot")).alias("cot_rate"),
            _share(pl.col("rubric")).alias("rubric_rate"),
            _share(pl.col("rewrite")).alias("rewrite_rate"),
            _share(pl.col("bench")).alias("bench_rate"),
            _share(~pl.col("script").is_in(["latin", "none"])).alias("non_latin_share"),
            _share(pl.col("sys_h").is_not_null()).alias("system_prompt_share"),
            pl.col("prompt_chars").mean().alias("mean_prompt_chars"),
            _share(is_new).alias("new_model_share"),
        )
    )


def _grouped(events: pl.LazyFrame) -> pl.LazyFrame:
    """Features on the order of an account's requests and on its distinct values: the few
    columns they need (strings as hashes) are sorted by account once, so that every account is
    one contiguous slice."""
    n = pl.len().cast(pl.Float64)
    us = pl.col("ts").dt.epoch("us")
    hour = us // 3_600_000_000  # UTC clock hour (= ts truncated to the hour)
    gap = us.sort().diff().truediv(1e6)  # seconds between consecutive requests
    mid = pl.col("ts").min() + (pl.col("ts").max() - pl.col("ts").min()) / 2
    tmpl = pl.col("tmpl").unique_counts()
    conv = pl.col("conversation_id").drop_nulls().unique_counts()  # requests per conversation
    return (
        events.select(
            ACCOUNT_KEY,
            "ts",
            "tmpl",
            "nd1",
            "nd2",
            "sys_h",
            "temperature",
            *(_hashed(c) for c in ("topic", "ip", "ip_prefix", "user_agent", "api_key_id")),
            _hashed("conversation_id"),
        )
        .sort(ACCOUNT_KEY, maintain_order=True)
        .with_columns(pl.col(ACCOUNT_KEY).set_sorted())
        .group_by(ACCOUNT_KEY)
        .agg(
            hour.n_unique().cast(pl.Float64).alias("active_hours"),
            (hour % 24).unique_counts().sort().alias("__hour_counts"),
            # here, not in _counted: summed in the events' order (a float sum depends on it)
            pl.col("temperature").cast(pl.Float64).std().fill_null(0.0).alias("temperature_std"),
            gap.alias("__gaps"),  # statistics of a list: cheaper than three of one expression
            (us // 60_000_000).unique_counts().max().cast(pl.Float64).alias("peak_per_minute"),
            (1.0 - tmpl.len() / n).alias("template_reuse"),
            (tmpl.max() / n).alias("top_template_share"),
            _share(pl.col("nd1").is_duplicated() | pl.col("nd2").is_duplicated()).alias(
                "near_dup_rate"
            ),
            pl.col("topic").unique_counts().sort().alias("__topic_counts"),
            pl.col("sys_h")
            .drop_nulls()
            .n_unique()
            .cast(pl.Float64)
            .alias("distinct_system_prompts"),
            pl.col("ip").n_unique().cast(pl.Float64).alias("distinct_ips"),
            pl.col("ip_prefix").n_unique().cast(pl.Float64).alias("distinct_prefixes"),
            pl.col("user_agent").n_unique().cast(pl.Float64).alias("distinct_user_agents"),
            pl.col("api_key_id").n_unique().cast(pl.Float64).alias("distinct_keys"),
            # outside any conversation, or alone in its conversation
            ((n - conv.sum() + (conv == 1).sum()) / n).alias("single_turn_share"),
            (conv.sum() / conv.len().clip(lower_bound=1))
            .cast(pl.Float64)
            .alias("turns_per_conversation"),
            ((pl.col("ts") > mid).sum() / (pl.col("ts") <= mid).sum().clip(lower_bound=1))
            .cast(pl.Float64)
            .alias("ramp_up"),
        )
        .with_columns(
            (pl.col("__gaps").list.std() / pl.col("__gaps").list.mean()).alias("iat_cv"),
            pl.col("__gaps").list.median().alias("median_gap_s"),
            _entropy("__hour_counts", math.log(HOURS_PER_DAY)).alias("hour_entropy"),
            pl.col("__topic_counts").list.len().cast(pl.Float64).alias("topic_breadth"),
            _entropy("__topic_counts", math.log(N_TOPICS)).alias("topic_entropy"),
        )
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
    is taken from ``events``.

    The query makes two passes over the events, joined per account: sums and shares in one
    hash aggregation (:func:`_counted`), order and distinct-value features over the events
    sorted by account (:func:`_grouped`); the input order does not matter.
    """
    lf = events.lazy()
    if "prompt" in lf.collect_schema().names():
        lf = fingerprint_events(lf)
    bounds = lf.select(pl.col("ts").min().alias("lo"), pl.col("ts").max().alias("hi"))
    if window_start is not None:
        bounds = bounds.with_columns(pl.lit(window_start).cast(TS_DTYPE).alias("lo"))
    if window_end is not None:
        bounds = bounds.with_columns(pl.lit(window_end).cast(TS_DTYPE).alias("hi"))
    # when each model first appears in the window (a "new" model appears after the start)
    first_seen = (
        model_first_seen.lazy().select("model", pl.col("first_ts").alias("__model_first"))
        if model_first_seen is not None
        else lf.group_by("model").agg(pl.col("ts").min().alias("__model_first"))
    )
    models = first_seen.join(bounds, how="cross").select(
        "model",
        (pl.col("__model_first") > pl.col("lo") + pl.duration(hours=NEW_MODEL_GRACE_H)).alias(
            "__model_new"
        ),
        (pl.col("__model_first") + pl.duration(hours=24)).alias("__new_until"),
    )
    lf = lf.with_columns(pl.col("account_id").cast(pl.Categorical).to_physical().alias(ACCOUNT_KEY))
    window_days = ((pl.col("hi") - pl.col("lo")).dt.total_seconds() / 86_400.0).clip(
        lower_bound=1.0
    )
    agg = (
        _counted(lf, models)
        .join(_grouped(lf), on=ACCOUNT_KEY)
        .join(bounds, how="cross")
        .with_columns((pl.col("__n") / window_days).alias("requests_per_day"))
    )
    if accounts is not None:
        acc = accounts.lazy().select("account_id", "created_at")
        agg = agg.join(acc, on="account_id", how="left").with_columns(
            ((pl.col("__first_ts") - pl.col("created_at")).dt.total_seconds() / 86_400.0)
            .clip(lower_bound=0.0)
            .alias("account_age_days")
        )
    else:
        agg = agg.with_columns(pl.lit(None, dtype=pl.Float64).alias("account_age_days"))
    return agg.select(
        "account_id",
        *[pl.col(name).cast(pl.Float64).fill_nan(None) for name in FEATURE_NAMES],
    ).sort("account_id")
