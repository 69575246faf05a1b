"""One group of accounts (a scenario's ``[[group]]``) made into events, account rows and labels.

The stages run in a fixed order, each drawing from the group's random stream after the one
before: reordering them, or the draws inside one, changes every value that follows (the output
of a seed is meant to stay byte-identical).

1. accounts: opaque ids;
2. timing (``timing.py``): rates, clocks, active days, sessions, request times;
3. routing (``prompts.py``, ``parameters.py``): each account's language, each request's model
   and endpoint;
4. parameters and outcome (``parameters.py``): token counts, sampling parameters, status,
   finish reason, latency;
5. infrastructure (``accounts.py``): API keys, IPs, user agents;
6. conversations and prompt text (``prompts.py``);
7. assembly: the event columns, the account table and the labels.

A reseller's end users (``end_user_id``) are drawn from the group's second stream ``aux``, so
that modelling them changes no other column.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl

from detector.io.schema import LABEL_SCHEMA
from synthetic_logs.accounts import (
    SharedRanges,
    account_table,
    draw_end_users,
    draw_infrastructure,
)
from synthetic_logs.columns import Coded, Column, ids, int_or_null
from synthetic_logs.corpus import Corpus
from synthetic_logs.parameters import (
    Outcome,
    Parameters,
    draw_outcome,
    draw_parameters,
    draw_routing,
    tool_loop_finish,
)
from synthetic_logs.prompts import draw_languages, draw_prompts
from synthetic_logs.scenario import Group, Scenario
from synthetic_logs.timing import Timeline, draw_timeline

END_USER_COLUMN = "end_user_id"
"""The canonical column of a request's end user. Every group emits it; ``generate.py`` keeps
the columns of ``detector.io.schema.EVENT_SCHEMA``, so it reaches the events the day the schema
has it (the one place where the generator's end users plug into the canonical events)."""


def generate_group(
    sc: Scenario,
    group: Group,
    gi: int,
    rng: np.random.Generator,
    corpus: Corpus | None,
    shared: SharedRanges | None,
    aux: np.random.Generator,
) -> tuple[dict[str, Column], pl.DataFrame, pl.DataFrame]:
    """Group ``gi`` of ``sc``: its events (columns in time order), account rows and labels.
    ``rng``: the group's stream; ``shared``: the scenario's shared residential ranges;
    ``aux``: the group's second stream (end users)."""
    arch = group.archetype
    acct_ids = ids(rng, "acct_", group.accounts)  # 1. accounts
    tl = draw_timeline(sc, group, rng)  # 2. timing
    lang = draw_languages(group, tl.ev_acct, rng)  # 3. routing
    model, endpoint = draw_routing(sc, arch, tl, rng)
    params = draw_parameters(arch, tl, rng)  # 4. parameters and outcome
    outcome = draw_outcome(arch, params, rng)
    if tl.turns is not None:
        outcome = replace(
            outcome,
            finish_reason=tool_loop_finish(
                outcome.finish_reason, params.tools, tl.turns.last_of_turn
            ),
        )
    infra = draw_infrastructure(group, tl.ev_acct, params.mixed, rng, shared)  # 5.
    conversation = _conversations(group, tl, params.mixed, rng)  # 6. conversations and text
    prompt, system_prompt = draw_prompts(
        group, tl.ev_acct, tl.pos, lang, params.mixed, corpus, rng, tl.turns
    )
    end_user = draw_end_users(group, tl.ev_acct, tl.ev_sess, infra.ip, params.mixed, aux)
    # 7. assembly
    events: dict[str, Column] = {
        "ts": np.int64(sc.start.timestamp() * 1e6) + (tl.t * 1e6).astype(np.int64),
        "account_id": Coded(tl.ev_acct, acct_ids),
        "api_key_id": infra.api_key,
        "ip": infra.ip,
        "user_agent": infra.user_agent,
        "model": model,
        "endpoint": endpoint,
        "prompt": prompt,
        "system_prompt": system_prompt,
        **_request_columns(params, outcome),
        "conversation_id": conversation,
        END_USER_COLUMN: end_user,
    }
    accounts = account_table(sc, group, rng, acct_ids, tl.online)
    return events, accounts, _labels(group, gi, acct_ids)


def _conversations(
    group: Group, tl: Timeline, mixed: np.ndarray, rng: np.random.Generator
) -> Coded:
    """One conversation id per session for multi-turn archetypes, else null; none for the
    accounts whose client sends none (``conversation_ids`` < 1) and, at a reseller that models
    its end users, for its distilling end customer's one-shot requests."""
    arch = group.archetype
    if not arch.multi_turn:
        return Coded.const(None, tl.n_events)
    conv = Coded(tl.ev_sess, ids(rng, "conv_", tl.n_sessions))
    none = np.zeros(tl.n_events, dtype=bool)
    if arch.conversation_ids < 1:
        none |= (rng.random(group.accounts) >= arch.conversation_ids)[tl.ev_acct]
    if arch.end_users:
        none |= mixed
    if none.any():
        pool = pl.concat([pl.Series([None], dtype=pl.String), conv.pool])
        conv = Coded(np.where(none, 0, conv.codes + 1), pool)
    return conv


def _request_columns(params: Parameters, outcome: Outcome) -> dict[str, Column]:
    """The numeric event columns, in the event schema's order (prompt_tokens to finish_reason),
    at their schema's widths."""
    return {
        "prompt_tokens": np.round(params.prompt_tokens).astype(np.int32),
        "completion_tokens": np.round(outcome.completion_tokens).astype(np.int32),
        "max_tokens": int_or_null(params.max_tokens, np.int32),
        "temperature": params.temperature.astype(np.float32),
        "top_p": params.top_p.astype(np.float32),
        "n": params.n.astype(np.int16),
        "logprobs": params.logprobs,
        "top_logprobs": int_or_null(params.top_logprobs, np.int16),
        "logit_bias_size": params.logit_bias.astype(np.int16),
        "tools_count": params.tools.astype(np.int16),
        "stream": params.stream,
        "status": outcome.status.astype(np.int16),
        "latency_ms": outcome.latency_ms.astype(np.float32),
        "finish_reason": outcome.finish_reason,
    }


def _labels(group: Group, gi: int, acct_ids: pl.Series) -> pl.DataFrame:
    """Ground truth per account: attacker or not, archetype, and campaign (a named campaign's
    members share one id; each attacker outside a campaign is its own ``solo-`` campaign)."""
    arch = group.archetype
    n = len(acct_ids)
    campaign: list[str | None]
    if not arch.is_attack:
        campaign = [None] * n
    elif group.campaign:
        campaign = [f"camp-{group.campaign}"] * n
    else:
        campaign = [f"solo-{arch.name}-{gi}-{i}" for i in range(n)]
    return pl.DataFrame(
        {
            "account_id": acct_ids,
            "is_attack": [arch.is_attack] * n,
            "archetype": [arch.name] * n,
            "campaign_id": campaign,
        },
        schema=LABEL_SCHEMA,
    )
