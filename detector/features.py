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

from dataclasses import dataclass
from datetime import datetime

import polars as pl

from detector.fingerprints import fingerprint_events
from detector.schema import TS_DTYPE


@dataclass(frozen=True)
class Feature:
    name: str
    direction: str  # "up" | "down" | "none"
    formula: str
    why: str
    unit: str = ""  # how values read in reasons: "", "%", "/day", "h", "days", ...
    log: bool = False  # heavy-tailed count: models see log1p(value)


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
        "Shannon entropy of the hour-of-day histogram / log(24)",
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
        "Shannon entropy of the topic histogram / log(9)",
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

N_TOPICS = 9
NEW_MODEL_GRACE_H = 1.0  # a model first seen within this long after window start is not "new"


def _share(expr: pl.Expr) -> pl.Expr:
    return expr.cast(pl.Float64).mean()


def _entropy(col: str, norm: float) -> pl.Expr:
    """Normalised Shannon entropy of a column's value distribution within the group."""
    counts = pl.col(col).value_counts().struct.field("count").cast(pl.Float64)
    return (counts.entropy(normalize=True) / norm).alias(f"__ent_{col}")


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
    """
    lf = events.lazy()
    if "prompt" in lf.collect_schema().names():
        lf = fingerprint_events(lf)
    bounds = lf.select(pl.col("ts").min().alias("lo"), pl.col("ts").max().alias("hi"))
    lf = lf.join(bounds, how="cross")
    if window_start is not None:
        lf = lf.with_columns(pl.lit(window_start).cast(TS_DTYPE).alias("lo"))
    if window_end is not None:
        lf = lf.with_columns(pl.lit(window_end).cast(TS_DTYPE).alias("hi"))
    # when each model first appears in the window (a "new" model appears after the start)
    first_seen = (
        model_first_seen.lazy().select("model", pl.col("first_ts").alias("__model_first"))
        if model_first_seen is not None
        else lf.group_by("model").agg(pl.col("ts").min().alias("__model_first"))
    )
    lf = lf.join(first_seen, on="model", how="left")
    grace = pl.duration(hours=NEW_MODEL_GRACE_H)
    is_new = (pl.col("__model_first") > pl.col("lo") + grace) & (
        pl.col("ts") <= pl.col("__model_first") + pl.duration(hours=24)
    )
    conv_size = pl.len().over("account_id", "conversation_id")
    lf = lf.sort("account_id", "ts").with_columns(
        pl.col("ts").diff().over("account_id").dt.total_microseconds().truediv(1e6).alias("__gap"),
        pl.col("ts").dt.hour().alias("__hour"),
        pl.col("ts").dt.truncate("1h").alias("__clock_hour"),
        pl.col("ts").dt.truncate("1m").alias("__minute"),
        is_new.alias("__new_model"),
        (pl.col("conversation_id").is_null() | (conv_size == 1)).alias("__single"),
        pl.len().over("account_id", "nd1").alias("__nd1_n"),
        pl.len().over("account_id", "nd2").alias("__nd2_n"),
    )
    window_days = (
        (pl.col("hi").first() - pl.col("lo").first()).dt.total_seconds() / 86_400.0
    ).clip(lower_bound=1.0)
    mid = pl.col("ts").min() + (pl.col("ts").max() - pl.col("ts").min()) / 2
    n = pl.len().cast(pl.Float64)
    agg = (
        lf.group_by("account_id")
        .agg(
            (n / window_days).alias("requests_per_day"),
            pl.col("__clock_hour").n_unique().cast(pl.Float64).alias("active_hours"),
            _entropy("__hour", 3.1780538303479458),  # log(24)
            (pl.col("__gap").std() / pl.col("__gap").mean()).alias("iat_cv"),
            pl.col("__gap").median().alias("median_gap_s"),
            pl.col("__minute")
            .value_counts()
            .struct.field("count")
            .max()
            .cast(pl.Float64)
            .alias("peak_per_minute"),
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
            pl.col("temperature").cast(pl.Float64).std().fill_null(0.0).alias("temperature_std"),
            _share(pl.col("stream")).alias("stream_share"),
            _share(pl.col("tools_count") > 0).alias("tools_share"),
            _share(pl.col("status") >= 400).alias("error_share"),
            (1.0 - pl.col("tmpl").n_unique() / n).alias("template_reuse"),
            (pl.col("tmpl").value_counts().struct.field("count").max() / n).alias(
                "top_template_share"
            ),
            _share((pl.col("__nd1_n") > 1) | (pl.col("__nd2_n") > 1)).alias("near_dup_rate"),
            pl.col("topic").n_unique().cast(pl.Float64).alias("topic_breadth"),
            _entropy("topic", 2.1972245773362196),  # log(9)
            _share(pl.col("cot")).alias("cot_rate"),
            _share(pl.col("rubric")).alias("rubric_rate"),
            _share(pl.col("rewrite")).alias("rewrite_rate"),
            _share(pl.col("bench")).alias("bench_rate"),
            _share(~pl.col("script").is_in(["latin", "none"])).alias("non_latin_share"),
            _share(pl.col("sys_h").is_not_null()).alias("system_prompt_share"),
            pl.col("sys_h")
            .drop_nulls()
            .n_unique()
            .cast(pl.Float64)
            .alias("distinct_system_prompts"),
            pl.col("prompt_chars").mean().alias("mean_prompt_chars"),
            pl.col("ip").n_unique().cast(pl.Float64).alias("distinct_ips"),
            pl.col("ip_prefix").n_unique().cast(pl.Float64).alias("distinct_prefixes"),
            pl.col("user_agent").n_unique().cast(pl.Float64).alias("distinct_user_agents"),
            pl.col("api_key_id").n_unique().cast(pl.Float64).alias("distinct_keys"),
            _share(pl.col("__single")).alias("single_turn_share"),
            (
                pl.col("conversation_id").drop_nulls().len()
                / pl.col("conversation_id").drop_nulls().n_unique().clip(lower_bound=1)
            )
            .cast(pl.Float64)
            .alias("turns_per_conversation"),
            pl.col("ts").min().alias("__first_ts"),
            ((pl.col("ts") > mid).sum() / (pl.col("ts") <= mid).sum().clip(lower_bound=1))
            .cast(pl.Float64)
            .alias("ramp_up"),
            _share(pl.col("__new_model")).alias("new_model_share"),
        )
        .rename({"__ent___hour": "hour_entropy", "__ent_topic": "topic_entropy"})
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
