"""Every per-account feature, declared once: meaning, risk direction, expression, example.

Adding a feature = one :class:`~detector.features.unit.Feature` entry below, with its
aggregation and a tiny :class:`~detector.features.unit.Example`; the passes that compute it
(:mod:`detector.features.compute`) and its test (``tests/test_feature_examples.py``) pick it up.
"""

from __future__ import annotations

import math
from datetime import timedelta

import polars as pl

from detector.features.unit import (
    MODEL_NEW,
    NEW_UNTIL,
    WINDOW_END,
    WINDOW_START,
    Example,
    Feature,
    entropy,
    of,
    share,
)
from detector.fingerprints import TOPICS

N_TOPICS = len(TOPICS)  # every topic a compact event can carry (detector.fingerprints)
HOURS_PER_DAY = 24
NEW_MODEL_GRACE_H = 1.0  # a model first seen within this long after window start is not "new"
NEW_MODEL_H = 24  # requests this long after a new model's first appearance are "on a new model"

MINUTE, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
SECONDS_PER_DAY = 86_400.0

# Expressions several features share. Named aggregations (``__...``) are computed once per
# account and finished by each feature that reads them.
_N = pl.len().cast(pl.Float64)  # the account's requests
_US = pl.col("ts").dt.epoch("us")
_HOUR = _US // 3_600_000_000  # UTC clock hour (= ts truncated to the hour)
_REQUESTS = _N.alias("__n")
_FIRST_TS = pl.col("ts").min().alias("__first_ts")
# seconds between consecutive requests, one list per account: its statistics are cheaper
# than aggregating the gaps once per statistic
_GAPS = _US.sort().diff().truediv(1e6).alias("__gaps")
_HOUR_COUNTS = (_HOUR % HOURS_PER_DAY).unique_counts().sort().alias("__hour_counts")
_TEMPERATURES = pl.col("temperature").cast(pl.Float64).drop_nulls().sort().alias("__temperatures")
_TOPIC_COUNTS = pl.col("topic").unique_counts().sort().alias("__topic_counts")
# requests per template, over the requests that carry prompt text (a log without text, e.g.
# OpenTelemetry spans without content, has null templates: no template evidence, not one)
_TEMPLATES = pl.col("tmpl").drop_nulls().unique_counts()
_WITH_TEXT = pl.col("tmpl").is_not_null().sum().cast(pl.Float64)
_CONVERSATIONS = pl.col("conversation_id").drop_nulls().unique_counts()  # requests per conv.
_MID = pl.col("ts").min() + (pl.col("ts").max() - pl.col("ts").min()) / 2  # of the active span
_WINDOW_DAYS = (
    (pl.col(WINDOW_END) - pl.col(WINDOW_START)).dt.total_seconds() / SECONDS_PER_DAY
).clip(lower_bound=1.0)


def _distinct(col: str, *, nulls: bool = True) -> pl.Expr:
    values = pl.col(col) if nulls else pl.col(col).drop_nulls()
    return values.n_unique().cast(pl.Float64)


ROOMY_MAX_TOKENS = 16  # a cap above this leaves room for an answer


def _one_in(requests: int, **given: object) -> tuple[dict[str, object], ...]:
    """Example ``requests``: the first with the ``given`` columns, the others plain."""
    return (dict(given), *({} for _ in range(requests - 1)))


# One template three times: the first six words, capitalised names and numbers masked, agree.
_TEMPLATED = tuple(
    {"prompt": f"Summarise this support thread for {who}: {what}"}
    for who, what in (("Alice", "printer jammed"), ("Bob", "screen flickers"), ("Eve", "42 errors"))
)

FEATURES: tuple[Feature, ...] = (
    # ---- volume and timing
    Feature(
        "requests_per_day",
        "up",
        "requests / window length in days (min 1 day)",
        "distillation needs volume; bulk harvesters run far above human use",
        "/day",
        True,
        merge="sum",
        agg=_REQUESTS,
        finish=of(_REQUESTS) / _WINDOW_DAYS,
        needs="window",
        example=Example(({}, {"ts": DAY}, {"ts": 2 * DAY}), 3 / 2),
    ),
    Feature(
        "requests_per_active_day",
        "none",
        "requests / days from the account's first to its last request in the window (min 1 day)",
        "an account's own pace, whenever it started: context (campaign volume balance reads it)",
        "/day",
        True,
        merge="approx_mean",
        stage="grouped",
        agg=(
            pl.len().cast(pl.Float64)
            / ((_US.max() - _US.min()) / (1e6 * SECONDS_PER_DAY)).clip(lower_bound=1.0)
        ),
        example=Example(({}, {"ts": DAY}, {"ts": 2 * DAY}, {"ts": 4 * DAY}), 4 / 4),
    ),
    Feature(
        "active_hours",
        "up",
        "distinct clock hours (date+hour) with at least one request",
        "scripts keep hours busy that people sleep through",
        "h",
        True,
        stage="grouped",
        merge="sum",
        agg=_HOUR.n_unique().cast(pl.Float64),
        example=Example(({}, {"ts": 30 * MINUTE}, {"ts": 2 * HOUR}), 2.0),
    ),
    Feature(
        "hour_entropy",
        "up",
        f"Shannon entropy of the hour-of-day histogram / log({HOURS_PER_DAY})",
        "1.0 = traffic spread evenly over the day (24/7 automation); humans are diurnal",
        stage="grouped",
        merge="approx_mean",
        agg=_HOUR_COUNTS,
        finish=entropy(of(_HOUR_COUNTS), math.log(HOURS_PER_DAY)),
        example=Example(
            tuple({"ts": h * HOUR} for h in (0, 6, 12, 18)), math.log(4) / math.log(HOURS_PER_DAY)
        ),
    ),
    Feature(
        "iat_cv",
        "none",
        "std / mean of inter-arrival gaps (s)",
        "burstiness: context for analysts; both bots and people can be bursty",
        stage="grouped",
        merge="approx_mean",
        agg=_GAPS,
        finish=of(_GAPS).list.std() / of(_GAPS).list.mean(),
        # gaps 60 s and 120 s: sample std 30·√2, mean 90
        example=Example(({}, {"ts": MINUTE}, {"ts": 3 * MINUTE}), math.sqrt(2) / 3),
    ),
    Feature(
        "median_gap_s",
        "none",
        "median seconds between consecutive requests",
        "scripted pipelines send the next request within a second or two",
        "s",
        True,
        stage="grouped",
        merge="approx_mean",
        agg=_GAPS,
        finish=of(_GAPS).list.median(),
        # gaps 60, 120 and 420 s
        example=Example(tuple({"ts": m * MINUTE} for m in (0, 1, 3, 10)), 120.0),
    ),
    Feature(
        "peak_per_minute",
        "none",
        "most requests in any one minute",
        "harvesting pipelines run in parallel bursts",
        "",
        True,
        stage="grouped",
        merge="max",
        agg=(_US // 60_000_000).unique_counts().max().cast(pl.Float64),
        example=Example(tuple({"ts": timedelta(seconds=s)} for s in (0, 10, 20, 300)), 3.0),
    ),
    # ---- tokens and parameters
    Feature(
        "completion_prompt_ratio",
        "up",
        "sum(completion_tokens) / sum(prompt_tokens)",
        "distillers want long answers to short questions",
        "",
        True,
        merge="special",
        agg=pl.col("completion_tokens").sum() / pl.col("prompt_tokens").sum().clip(lower_bound=1),
        example=Example(
            (
                {"prompt_tokens": 10, "completion_tokens": 100},
                {"prompt_tokens": 30, "completion_tokens": 200},
            ),
            300 / 40,
        ),
    ),
    Feature(
        "mean_completion_tokens",
        "up",
        "mean completion tokens per request",
        "reasoning traces and full solutions are long",
        "",
        True,
        merge="mean",
        agg=pl.col("completion_tokens").mean(),
        example=Example(({"completion_tokens": 100}, {"completion_tokens": 300}), 200.0),
    ),
    Feature(
        "max_tokens_saturation",
        "up",
        f"share of requests that stop at max_tokens, among those whose cap leaves room for an "
        f"answer (max_tokens unset or > {ROOMY_MAX_TOKENS}; null when none does)",
        "asking for as much output as the cap allows",
        "%",
        # a cap of a few tokens always stops there (a classifier's max_tokens=1): that is a
        # probe (tiny_max_tokens_share), not a request for as much output as allowed
        merge="approx_mean",
        agg=share(
            (pl.col("finish_reason") == "length").filter(
                pl.col("max_tokens").is_null() | (pl.col("max_tokens") > ROOMY_MAX_TOKENS)
            )
        ),
        example=Example(
            (
                {"finish_reason": "length", "max_tokens": 1},
                {"finish_reason": "length", "max_tokens": 1000},
                {"max_tokens": 1000},
                {},
            ),
            1 / 3,
        ),
    ),
    Feature(
        "high_max_tokens_share",
        "up",
        "share of requests with max_tokens >= 4096",
        "distillers set the cap at the model's maximum",
        "%",
        merge="mean",
        agg=share(pl.col("max_tokens").fill_null(0) >= 4096),
        example=Example(
            ({"max_tokens": 4096}, {"max_tokens": 8192}, {"max_tokens": 1024}, {}), 2 / 4
        ),
    ),
    Feature(
        "tiny_max_tokens_share",
        "up",
        "share of requests with max_tokens <= 4",
        "max_tokens=1 probes recover logits one token at a time",
        "%",
        merge="mean",
        agg=share(pl.col("max_tokens").fill_null(1_000_000) <= 4),
        example=Example(({"max_tokens": 1}, {"max_tokens": 4}, {"max_tokens": 5}, {}), 2 / 4),
    ),
    Feature(
        "n_gt1_share",
        "up",
        "share of requests with n > 1",
        "several samples per prompt multiply what is harvested",
        "%",
        merge="mean",
        agg=share(pl.col("n") > 1),
        example=Example(_one_in(4, n=4), 1 / 4),
    ),
    Feature(
        "logprobs_share",
        "up",
        "share of requests asking for logprobs",
        "log-probabilities leak the output distribution (logit extraction)",
        "%",
        merge="mean",
        agg=share(pl.col("logprobs")),
        example=Example(_one_in(3, logprobs=True, top_logprobs=5), 1 / 3),
    ),
    Feature(
        "logit_bias_share",
        "up",
        "share of requests with a logit_bias",
        "logit_bias sweeps recover the output projection",
        "%",
        merge="mean",
        agg=share(pl.col("logit_bias_size") > 0),
        example=Example(({"logit_bias_size": 300}, {"logit_bias_size": 2}, {}, {}), 2 / 4),
    ),
    Feature(
        "logit_bias_tokens",
        "up",
        "mean number of biased tokens per request that sets a logit_bias (null: none does)",
        "a classifier biases its few label tokens; extraction sweeps bias hundreds of tokens "
        "per request to read the output projection (the API allows up to 300)",
        "",
        True,
        merge="special",
        agg=pl.col("logit_bias_size").filter(pl.col("logit_bias_size") > 0).mean(),
        example=Example(({"logit_bias_size": 300}, {"logit_bias_size": 100}, {}), 200.0),
    ),
    Feature(
        "temperature_std",
        "up",
        "standard deviation of temperature (set values)",
        "temperature sweeps probe the sampling distribution",
        # over the account's sorted values: a float sum depends on its order, and the engine
        # may hand an account's rows over in any order
        stage="grouped",
        merge="approx_special",
        agg=_TEMPERATURES,
        finish=of(_TEMPERATURES).list.std().fill_null(0.0),
        example=Example(({"temperature": 0.5}, {"temperature": 1.5}, {}), math.sqrt(0.5)),
    ),
    Feature(
        "stream_share",
        "none",
        "share of streamed requests",
        "interactive products stream; harvesting scripts rarely do",
        "%",
        merge="mean",
        agg=share(pl.col("stream")),
        example=Example(_one_in(2, stream=True), 1 / 2),
    ),
    Feature(
        "tools_share",
        "none",
        "share of requests sending tool definitions",
        "agentic use: context (agent products do this legitimately)",
        "%",
        merge="mean",
        agg=share(pl.col("tools_count") > 0),
        example=Example(_one_in(4, tools_count=3), 1 / 4),
    ),
    Feature(
        "error_share",
        "none",
        "share of requests with HTTP status >= 400",
        "rate-limit pressure and broken clients: context",
        "%",
        merge="mean",
        agg=share(pl.col("status") >= 400),
        example=Example(({"status": 429}, {"status": 500}, {"status": 302}, {}), 2 / 4),
    ),
    # ---- content
    Feature(
        "template_reuse",
        "up",
        "1 - distinct(template) / requests with prompt text (null without text)",
        "highly repetitive prompt templates around varying payloads",
        "%",
        stage="grouped",
        merge="approx_mean",
        agg=1.0 - _TEMPLATES.len() / _WITH_TEXT,
        example=Example((*_TEMPLATED, {}), 1 - 2 / 4),
    ),
    Feature(
        "top_template_share",
        "none",
        "share of the requests with prompt text using the most common template",
        "one narrow task (batch jobs) vs a sweep: context",
        "%",
        stage="grouped",
        merge="approx_mean",
        agg=_TEMPLATES.max() / _WITH_TEXT,
        example=Example((*_TEMPLATED, {}), 3 / 4),
    ),
    Feature(
        "near_dup_rate",
        "up",
        "share of the requests with prompt text that have a near-duplicate (MinHash band) in "
        "the same account",
        "payload sweeps reuse most of the text",
        "%",
        stage="grouped",
        merge="approx_mean",
        agg=share(
            (pl.col("nd1").is_duplicated() | pl.col("nd2").is_duplicated()).filter(
                pl.col("nd1").is_not_null()
            )
        ),
        example=Example(
            (
                {"prompt": "list the planets of the solar system in order of size please"},
                {"prompt": "please list the planets of the solar system in order of size"},
                {},
                {},
            ),
            2 / 4,
        ),
    ),
    Feature(
        "topic_breadth",
        "up",
        "distinct coarse topics",
        "capability sweeps cover many areas; a product covers a few",
        stage="grouped",
        merge="lower_bound_max",
        agg=_TOPIC_COUNTS,
        finish=of(_TOPIC_COUNTS).list.len().cast(pl.Float64),
        example=Example(
            ({"prompt": "fix this python function"}, {"prompt": "calculate the probability"}, {}),
            3.0,
        ),
    ),
    Feature(
        "topic_entropy",
        "up",
        f"Shannon entropy of the topic histogram / log({N_TOPICS}) (the number of topics)",
        "evenly spread topics = systematic coverage",
        stage="grouped",
        merge="approx_mean",
        agg=_TOPIC_COUNTS,
        finish=entropy(of(_TOPIC_COUNTS), math.log(N_TOPICS)),
        example=Example(
            ({"prompt": "fix this python function"}, {"prompt": "calculate the probability"}),
            math.log(2) / math.log(N_TOPICS),
        ),
    ),
    Feature(
        "cot_rate",
        "up",
        "share of prompts eliciting step-by-step reasoning",
        "reasoning-trace harvesting",
        "%",
        merge="mean",
        agg=share(pl.col("cot")),
        example=Example(_one_in(2, prompt="Think step by step: why do owls hoot?"), 1 / 2),
    ),
    Feature(
        "rubric_rate",
        "up",
        "share of prompts with grading rubrics",
        "using the model as a reward model / grader",
        "%",
        merge="mean",
        agg=share(pl.col("rubric")),
        example=Example(_one_in(2, prompt="Score the answer below on a 1-10 scale."), 1 / 2),
    ),
    Feature(
        "rewrite_rate",
        "up",
        "share of 'rewrite this safely' prompts",
        "harvesting safety behaviour",
        "%",
        merge="mean",
        agg=share(pl.col("rewrite")),
        example=Example(_one_in(2, prompt="Rewrite this message so it is safe for kids"), 1 / 2),
    ),
    Feature(
        "bench_rate",
        "up",
        "share of benchmark-style prompts (multiple choice, Answer:, code stubs)",
        "capability benchmarks as training data",
        "%",
        merge="mean",
        agg=share(pl.col("bench")),
        example=Example(_one_in(2, prompt="Which is largest? (A) 2 (B) 9\nAnswer:"), 1 / 2),
    ),
    Feature(
        "non_latin_share",
        "none",
        "share of prompts in a non-Latin script",
        "language: context",
        "%",
        merge="mean",
        agg=share(~pl.col("script").is_in(["latin", "none"])),
        # an empty prompt has no script: not counted as non-Latin
        example=Example(({"prompt": "今天天气怎么样"}, {"prompt": ""}, {}), 1 / 3),
    ),
    Feature(
        "system_prompt_share",
        "none",
        "share of requests with a system prompt",
        "products send a system prompt; raw harvesting often does not",
        "%",
        merge="mean",
        agg=share(pl.col("sys_h").is_not_null()),
        example=Example(_one_in(4, system_prompt="You are a helpful assistant."), 1 / 4),
    ),
    Feature(
        "distinct_system_prompts",
        "none",
        "distinct system prompts",
        "context",
        stage="grouped",
        merge="lower_bound_max",
        agg=_distinct("sys_h", nulls=False),
        example=Example(
            ({"system_prompt": "You are A."}, {"system_prompt": "You are B."}, {}), 2.0
        ),
    ),
    Feature(
        "mean_prompt_chars",
        "none",
        "mean prompt length in characters",
        "context",
        "",
        True,
        merge="mean",
        agg=pl.col("prompt_chars").mean(),
        example=Example(({"prompt": "abcd"}, {"prompt": "abcdéfgh"}), 6.0),
    ),
    # ---- infrastructure
    Feature(
        "distinct_ips",
        "none",
        "distinct client IPs",
        "context (resellers have many)",
        "",
        True,
        stage="grouped",
        merge="lower_bound_max",
        agg=_distinct("ip"),
        example=Example(({"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "10.0.0.1"}), 2.0),
    ),
    Feature(
        "distinct_prefixes",
        "none",
        "distinct /24 (IPv4) or /64 (IPv6) prefixes",
        "context",
        "",
        True,
        stage="grouped",
        merge="lower_bound_max",
        agg=_distinct("ip_prefix"),
        example=Example(
            tuple({"ip": ip} for ip in ("10.0.0.1", "10.0.0.2", "10.0.1.1", "2001:db8:1:2::1")),
            3.0,
        ),
    ),
    Feature(
        "distinct_user_agents",
        "none",
        "distinct user agents",
        "context",
        stage="grouped",
        merge="lower_bound_max",
        agg=_distinct("user_agent"),
        example=Example(tuple({"user_agent": u} for u in ("curl/8", "httpx", "curl/8")), 2.0),
    ),
    Feature(
        "distinct_keys",
        "none",
        "distinct API keys",
        "context",
        "",
        True,
        stage="grouped",
        merge="lower_bound_max",
        agg=_distinct("api_key_id"),
        example=Example(tuple({"api_key_id": k} for k in ("k1", "k2", "k3", "k1")), 3.0),
    ),
    Feature(
        "distinct_end_users",
        "none",
        "distinct end users (end_user_id) behind the account's keys; 0 when the log has none",
        "context (a reseller or gateway serves many)",
        "",
        True,
        stage="grouped",
        merge="lower_bound_max",
        agg=_distinct("end_user_id", nulls=False),
        example=Example(tuple({"end_user_id": u} for u in ("u1", "u2", "u1", None)), 2.0),
    ),
    # ---- conversations
    Feature(
        "single_turn_share",
        "none",
        "share of requests outside any multi-request conversation",
        "harvesting is one-shot: no follow-ups, no conversation",
        "%",
        stage="grouped",
        # outside any conversation, or alone in its conversation
        merge="approx_mean",
        agg=(_N - _CONVERSATIONS.sum() + (_CONVERSATIONS == 1).sum()) / _N,
        example=Example(tuple({"conversation_id": c} for c in ("c1", "c1", "c2", None)), 2 / 4),
    ),
    Feature(
        "one_shot_tool_share",
        "up",
        "share of requests that send tool definitions outside any multi-request conversation",
        "an agent product runs multi-step tool conversations (a call, its result, the next "
        "step); harvesting agentic traces fires one-shot tool prompts",
        "%",
        stage="grouped",
        merge="approx_mean",
        agg=share(
            (pl.col("tools_count") > 0)
            & ~(pl.col("conversation_id").is_not_null() & pl.col("conversation_id").is_duplicated())
        ),
        example=Example(
            (
                {"tools_count": 2, "conversation_id": "c1"},
                {"tools_count": 2, "conversation_id": "c1"},
                {"tools_count": 2, "conversation_id": "c2"},
                {"tools_count": 2},
                {"conversation_id": "c3"},
            ),
            2 / 5,
        ),
    ),
    Feature(
        "turns_per_conversation",
        "none",
        "mean requests per conversation id (0 when none)",
        "people follow up; scripts do not",
        stage="grouped",
        merge="approx_mean",
        agg=(_CONVERSATIONS.sum() / _CONVERSATIONS.len().clip(lower_bound=1)).cast(pl.Float64),
        example=Example(tuple({"conversation_id": c} for c in ("c1", "c1", "c1", "c2", None)), 2.0),
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
        merge="min",
        agg=_FIRST_TS,
        finish=((of(_FIRST_TS) - pl.col("created_at")).dt.total_seconds() / SECONDS_PER_DAY).clip(
            lower_bound=0.0
        ),
        needs="accounts",
        example=Example(({"ts": 12 * HOUR}, {"ts": DAY}), 3.5, created=-3 * DAY),
    ),
    Feature(
        "ramp_up",
        "up",
        "requests in the 2nd half of the account's active span / 1st half",
        "campaign accounts ramp up fast",
        "",
        True,
        stage="grouped",
        merge="approx_special",
        agg=((pl.col("ts") > _MID).sum() / (pl.col("ts") <= _MID).sum().clip(lower_bound=1)).cast(
            pl.Float64
        ),
        # span 0-60 min, midpoint 30: three requests after it, two before
        example=Example(tuple({"ts": m * MINUTE} for m in (0, 10, 50, 55, 60)), 3 / 2),
    ),
    Feature(
        "new_model_share",
        "up",
        f"share of requests on a model within {NEW_MODEL_H} h of that model's first "
        "appearance in the window",
        "distillers move to a new model within a day",
        "%",
        merge="mean",
        agg=share(pl.col(MODEL_NEW) & (pl.col("ts") <= pl.col(NEW_UNTIL))),
        needs="model_first_seen",
        # m2 first appears 30 h into the window: the request then counts, the one 30 h later not
        example=Example(
            (
                {},
                {"ts": 2 * HOUR},
                {"model": "m2", "ts": 30 * HOUR},
                {"model": "m2", "ts": 60 * HOUR},
            ),
            1 / 4,
        ),
    ),
)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
FEATURE_BY_NAME: dict[str, Feature] = {f.name: f for f in FEATURES}
SCORED_FEATURES: tuple[str, ...] = tuple(f.name for f in FEATURES if f.direction != "none")
