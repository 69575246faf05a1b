"""The request stages of a group: what each request asks for and what it gets back.

Routing (model and endpoint), then the request's parameters (token counts from the calibrated
families, max_tokens, temperature, top_p, n, logprobs, logit_bias, tools, stream; a reseller's
distilling end customer), then its outcome (capped completions, errors, finish reason, latency).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from synthetic_logs import calibration
from synthetic_logs.archetypes import Archetype
from synthetic_logs.columns import Coded, coded_choice, draw_where, lognormal, sorted_within
from synthetic_logs.scenario import Scenario
from synthetic_logs.timing import Timeline, release_seconds


@dataclass(frozen=True)
class Parameters:
    """Per-event request parameters (NaN: not set)."""

    prompt_tokens: np.ndarray
    completion: np.ndarray  # tokens the model would generate, before caps and errors
    max_tokens: np.ndarray
    temperature: np.ndarray
    top_p: np.ndarray
    n: np.ndarray
    logprobs: np.ndarray  # bool
    top_logprobs: np.ndarray
    logit_bias: np.ndarray  # biased tokens (0: none)
    tools: np.ndarray  # tool definitions (0: none)
    stream: np.ndarray  # bool
    mixed: np.ndarray  # bool: the request is a reseller's distilling end customer's


@dataclass(frozen=True)
class Outcome:
    """Per-event result of a request."""

    completion_tokens: np.ndarray
    status: np.ndarray
    finish_reason: Coded
    latency_ms: np.ndarray


def draw_routing(
    sc: Scenario, arch: Archetype, tl: Timeline, rng: np.random.Generator
) -> tuple[Coded, Coded]:
    """Each event's model and endpoint. Older base models are used less (weights 1, 1/2, ...);
    once the new model is out, a share ``new_model_share`` of requests moves to it after six
    hours (pivoting archetypes: after each account's own delay)."""
    n_ev = tl.n_events
    release_s = release_seconds(sc)
    models = [*sc.base_models, sc.new_model or ""]
    n_base = len(sc.base_models)
    model_idx = calibration.categorical(rng, _model_weights(n_base), n_ev)
    if sc.new_model and release_s is not None:
        delay = tl.pivot_delay[tl.ev_acct] if arch.pivot else 6 * 3600.0
        eligible = tl.t >= release_s + delay
        use_new = eligible & (rng.random(n_ev) < arch.new_model_share)
        model_idx = np.where(use_new, n_base, model_idx)
    model = Coded(model_idx, pl.Series(models, dtype=pl.String))
    endpoint = coded_choice(rng, arch.endpoints, n_ev)
    return model, endpoint


def _model_weights(k: int) -> np.ndarray:
    """Weights 1, 1/2, ..., 1/k, normalised."""
    w = 1.0 / np.arange(1, k + 1)
    return w / w.sum()


def draw_parameters(arch: Archetype, tl: Timeline, rng: np.random.Generator) -> Parameters:
    """Each event's token counts and request parameters, from the archetype's distributions."""
    n_ev = tl.n_events
    prompt_tokens, completion = _token_counts(arch, tl, rng)
    mt_choices = np.array(arch.max_tokens_choices)
    max_tokens = mt_choices[rng.integers(0, len(mt_choices), n_ev)].astype(float)
    max_tokens[rng.random(n_ev) < arch.max_tokens_null_rate] = np.nan
    temps = np.array(arch.temperature_choices, dtype=float)
    temperature = temps[rng.integers(0, len(temps), n_ev)]
    if arch.temperature_sweep:
        sweep = rng.random(n_ev) < 0.5
        temperature[sweep] = np.round(rng.uniform(0, 1.5, int(sweep.sum())), 2)
    temperature[rng.random(n_ev) < arch.temperature_null_rate] = np.nan
    top_p = draw_where(
        rng.random(n_ev) < 0.1, lambda k: np.array([0.9, 0.95, 1.0])[rng.integers(0, 3, k)], np.nan
    )
    n_param = draw_where(rng.random(n_ev) < arch.n_gt1_rate, lambda k: rng.integers(2, 9, k), 1)
    logprobs = rng.random(n_ev) < arch.logprobs_rate
    tlp = np.array(arch.top_logprobs_choices, dtype=float)
    top_logprobs = draw_where(logprobs, lambda k: tlp[rng.integers(0, len(tlp), k)], np.nan)
    logit_bias = draw_where(
        rng.random(n_ev) < arch.logit_bias_rate,
        lambda k: rng.integers(1, arch.logit_bias_max + 1, k),
        0,
    )
    tools = draw_where(
        rng.random(n_ev) < arch.tools_rate, lambda k: rng.integers(1, arch.tools_max + 1, k), 0
    )
    stream = rng.random(n_ev) < arch.stream_rate
    # a reseller's distilling end customer: long capped completions
    mixed = np.zeros(n_ev, dtype=bool)
    if arch.mix_fraction > 0 and arch.end_users > 0:
        # one end user among the reseller's: whole sessions, caps varied like a careful client
        mixed = (rng.random(tl.n_sessions) < arch.mix_fraction)[tl.ev_sess]
        k = int(mixed.sum())
        max_tokens[mixed] = np.where(rng.random(k) < 0.3, np.nan, rng.choice([4096, 8192], k))
        completion[mixed] = completion[mixed] * 2.0
    elif arch.mix_fraction > 0:
        mixed = rng.random(n_ev) < arch.mix_fraction
        max_tokens[mixed] = 8192
        completion[mixed] = completion[mixed] * 2.5
    if tl.turns is not None:  # an agent's tool loop sends one tool set per conversation
        tools = _one_per_session(tools, tl.ev_sess, tl.n_sessions)
    return Parameters(
        prompt_tokens=prompt_tokens,
        completion=completion,
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        n=n_param,
        logprobs=logprobs,
        top_logprobs=top_logprobs,
        logit_bias=logit_bias,
        tools=tools,
        stream=stream,
        mixed=mixed,
    )


def _one_per_session(values: np.ndarray, ev_sess: np.ndarray, n_sessions: int) -> np.ndarray:
    """Each event's value replaced by one of its session's (its first event's, or the largest
    when that one is 0): one draw per session, 0 only if every event drew 0."""
    one = np.zeros(n_sessions, dtype=values.dtype)
    sessions, first = np.unique(ev_sess, return_index=True)
    one[sessions] = values[first]
    top = np.zeros(n_sessions, dtype=values.dtype)
    np.maximum.at(top, ev_sess, values)
    one = np.where(one > 0, one, top)
    return one[ev_sess]


def tool_loop_finish(finish: Coded, tools: np.ndarray, last_of_turn: np.ndarray) -> Coded:
    """Finish reasons of an agent's tool loop: a call that is followed by another in the same
    user turn ended in ``tool_calls`` (the client ran the tool and sent its result), the last
    call of a turn in ``stop``; capped (``length``) and failed requests keep theirs."""
    codes = np.asarray(finish.codes).copy()
    keep = (codes == 0) | (codes == 3)  # length, or failed (no finish reason)
    loop = np.where((tools > 0) & ~last_of_turn, 1, 2)
    return Coded(np.where(keep, codes, loop), finish.pool)


def _token_counts(
    arch: Archetype, tl: Timeline, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Prompt and completion lengths from the archetype's calibration family (conv or code),
    scaled; multi-turn prompts grow within each session."""
    n_ev = tl.n_events
    code = arch.tokens == "code"
    fam_p = calibration.PROMPT_TOKENS_CODE if code else calibration.PROMPT_TOKENS_CONV
    fam_c = calibration.COMPLETION_TOKENS_CODE if code else calibration.COMPLETION_TOKENS_CONV
    prompt_tokens = np.maximum(1, fam_p.sample(rng, n_ev) * arch.prompt_scale)
    if arch.multi_turn:
        # Real context sizes already include the conversation so far: keep the calibrated
        # marginal distribution, but let the context grow within each session.
        prompt_tokens = sorted_within(prompt_tokens, tl.session_major)[tl.by_time]
    completion = np.maximum(1, fam_c.sample(rng, n_ev) * arch.completion_scale)
    return prompt_tokens, completion


def draw_outcome(arch: Archetype, params: Parameters, rng: np.random.Generator) -> Outcome:
    """What each request gets back: completions capped by max_tokens, a share ``error_rate``
    failing (400, 429 or 500, no completion), the finish reason and the latency."""
    max_tokens, completion = params.max_tokens, params.completion
    n_ev = len(completion)
    capped = ~np.isnan(max_tokens) & (completion >= max_tokens)
    completion = np.where(np.isnan(max_tokens), completion, np.minimum(completion, max_tokens))
    failed = rng.random(n_ev) < arch.error_rate
    status = draw_where(
        failed,
        lambda k: np.array([400, 429, 500])[calibration.categorical(rng, [0.3, 0.5, 0.2], k)],
        200,
    )
    completion = np.where(failed, 0, completion)
    tools = params.tools
    finish_idx = np.where(capped, 0, np.where(tools > 0, 1, 2))
    finish_idx[(tools > 0) & (rng.random(n_ev) < arch.tool_stop_share)] = 2
    finish_idx[failed] = 3
    finish = Coded(finish_idx, pl.Series(["length", "tool_calls", "stop", None], dtype=pl.String))
    n_param = params.n
    latency = (
        150 + completion * lognormal(rng, np.log(18), 0.3, n_ev) + params.prompt_tokens * 0.05
    ) * (1 + 0.5 * n_param * (n_param > 1))
    return Outcome(
        completion_tokens=completion, status=status, finish_reason=finish, latency_ms=latency
    )
