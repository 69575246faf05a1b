"""The prompt-text stage of a group: each request's language, prompt and system prompt.

An archetype's ``content`` picks the builder: human chat, an app's (or batch job's, agent's,
classifier's, moderation app's) own templates with its system prompt, task payloads (a
campaign's headers around them for attackers), grading rubrics, "rewrite safely" requests or
extraction probes. A reseller's distilling end customer's requests get distiller prompts instead.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from synthetic_logs import builders, calibration, text, vocab
from synthetic_logs.builders import Langs
from synthetic_logs.columns import Coded
from synthetic_logs.corpus import Corpus
from synthetic_logs.scenario import Group
from synthetic_logs.templates import fill_templates, resolve_static

TEMPLATE_POOLS: dict[str, tuple[str, ...]] = {
    "app": vocab.APP_TEMPLATES,
    "batch": vocab.BATCH_TEMPLATES,
    "agent": vocab.AGENT_TASKS,
    "classify": vocab.CLASSIFY_TEMPLATES,
    "moderation": vocab.MODERATION_TEMPLATES,
}
"""Content kinds whose accounts each use a few templates of their own, with a system prompt."""


def draw_languages(group: Group, ev_acct: np.ndarray, rng: np.random.Generator) -> Langs:
    """One language per account (the group's mix, else the archetype's), for each event."""
    langs = group.languages or group.archetype.languages
    lang_p = np.array(list(langs.values()), dtype=float)
    acct_lang = calibration.categorical(rng, lang_p, group.accounts)
    return Langs(tuple(langs), acct_lang[ev_acct])


def draw_prompts(
    group: Group,
    ev_acct: np.ndarray,
    pos: np.ndarray,
    lang: Langs,
    mixed: np.ndarray,
    corpus: Corpus | None,
    rng: np.random.Generator,
) -> tuple[Coded, Coded]:
    """Each event's prompt and system prompt. ``ev_acct``: the account of each event, ``pos``:
    its position in its session, ``mixed``: a reseller's distilling end customer's requests."""
    prompt, system = _archetype_texts(group, ev_acct, pos, lang, corpus, rng)
    if mixed.any():  # the distilling end customer's prompts replace the reseller's own
        prompt = _with_distiller_prompts(prompt, mixed, lang, corpus, rng)
    return prompt, system


def _archetype_texts(
    group: Group,
    ev_acct: np.ndarray,
    pos: np.ndarray,
    lang: Langs,
    corpus: Corpus | None,
    rng: np.random.Generator,
) -> tuple[Coded, Coded]:
    """Per-event prompt and system prompt of the archetype's content kind."""
    arch = group.archetype
    n = len(ev_acct)
    cot = builders.cot_suffix(rng, lang, arch.cot_rate)
    system: Coded | None = None
    pieces: text.Pieces
    if arch.content == "chat":
        pieces = text.wrap(builders.chat_pieces(rng, lang, pos, corpus), after=[cot])
    elif arch.content in TEMPLATE_POOLS:
        pieces = _account_template_pieces(group, ev_acct, corpus, rng)
        pieces = text.wrap(pieces, after=[cot])
        system = _account_system_prompts(group, ev_acct, rng)
    elif arch.content in ("payload", "eval"):
        if arch.is_attack:
            templates = builders.campaign_headers(rng, arch.n_templates)
            pieces = _payload_pieces(
                rng, templates, n, lang, arch.payload_mix, corpus, arch.cot_rate
            )
        else:
            pieces = text.wrap(
                builders.payload_pieces(rng, n, arch.payload_mix, corpus), after=[cot]
            )
    elif arch.content == "rubric":
        tmpl = list(vocab.RUBRIC_TEMPLATES)
        pieces = fill_templates(
            rng,
            tmpl,
            rng.integers(0, len(tmpl), n),
            text=builders.payload_source({"instruction": 0.5, "math": 0.5}, corpus),
            text2=text.filler_source(12),
        )
        pieces = text.wrap(pieces, after=[cot])
    elif arch.content == "rewrite":
        tmpl = list(vocab.REWRITE_TEMPLATES)

        def body(rng: np.random.Generator, m: int) -> text.Pieces:
            instr = builders.payload_pieces(rng, m, {"instruction": 1.0}, corpus)
            return text.wrap(instr, after=[" ", *text.filler_parts(rng, m, 10)])

        pieces = fill_templates(rng, tmpl, rng.integers(0, len(tmpl), n), text=body)
    elif arch.content == "probe":
        # extraction probes: short prompts, one token back, logprobs/logit_bias sweeps
        pieces = [(None, [text.gather(rng, text.pools().probe, n)])]
    else:
        raise ValueError(f"archetype {arch.name}: unknown content kind {arch.content!r}")
    if system is None and arch.system_prompt_rate > 0:
        use_sys = rng.random(n) < arch.system_prompt_rate
        generic = pl.Series([None, *vocab.GENERIC_SYSTEM_PROMPTS], dtype=pl.String)
        k_sys = rng.integers(0, len(vocab.GENERIC_SYSTEM_PROMPTS), n)
        system = Coded(np.where(use_sys, 1 + k_sys, 0), generic)
    if system is None:
        system = Coded.const(None, n)
    return coded_text(n, pieces), system


def _account_template_pieces(
    group: Group, ev_acct: np.ndarray, corpus: Corpus | None, rng: np.random.Generator
) -> text.Pieces:
    """Each account uses ``n_templates`` templates of its own (its organisation's name
    resolved), filled per event (agents: with agentic task payloads)."""
    arch = group.archetype
    n_acc, n = group.accounts, len(ev_acct)
    pool = TEMPLATE_POOLS[arch.content]
    k = max(1, arch.n_templates)
    acct_templates = [
        resolve_static(pool[int(j)], rng, ("org",)) for j in rng.integers(0, len(pool), n_acc * k)
    ]
    tmpl_idx = ev_acct * k + rng.integers(0, k, n)
    body = builders.payload_source({"agent": 1.0}, corpus) if arch.content == "agent" else None
    return fill_templates(rng, acct_templates, tmpl_idx, body)


def _account_system_prompts(group: Group, ev_acct: np.ndarray, rng: np.random.Generator) -> Coded:
    """One app system prompt per account, or one for the whole group when its developers ship
    the same open-source app."""
    n_acc = group.accounts
    sys_pool = vocab.APP_SYSTEM_PROMPTS
    if group.shared_system_prompt:
        shared = resolve_static(sys_pool[int(rng.integers(0, len(sys_pool)))], rng, ("org",))
        acct_sys = [shared] * n_acc
    else:
        acct_sys = [
            resolve_static(sys_pool[int(j)], rng, ("org",))
            for j in rng.integers(0, len(sys_pool), n_acc)
        ]
    return Coded(ev_acct, pl.Series(acct_sys, dtype=pl.String))


def _payload_pieces(
    rng: np.random.Generator,
    templates: list[tuple[str, str]],
    n: int,
    lang: Langs,
    mix: dict[str, float],
    corpus: Corpus | None,
    cot_rate: float,
) -> text.Pieces:
    """Distiller-style prompts: a campaign header + payload + (often) a CoT request."""
    heads = pl.Series([h for h, _ in templates], dtype=pl.String)
    foots = pl.Series([f.replace("{lang_name}", "English") for _, f in templates], dtype=pl.String)
    which = rng.integers(0, len(templates), n)
    cot = builders.cot_suffix(rng, lang, cot_rate)
    return text.wrap(
        builders.payload_pieces(rng, n, mix, corpus),
        before=[heads.gather(which)],
        after=[foots.gather(which), cot],
    )


def _with_distiller_prompts(
    prompt: Coded,
    mixed: np.ndarray,
    lang: Langs,
    corpus: Corpus | None,
    rng: np.random.Generator,
) -> Coded:
    """``prompt`` with the ``mixed`` rows replaced by a distiller's maths and code payloads
    behind four campaign headers, nearly all asking for reasoning."""
    rows_mixed, rows_own = np.flatnonzero(mixed), np.flatnonzero(~mixed)
    templates = builders.campaign_headers(rng, 4)
    attack = _payload_pieces(
        rng,
        templates,
        len(rows_mixed),
        lang.take(rows_mixed),
        {"math": 0.5, "code": 0.5},
        corpus,
        cot_rate=0.9,
    )
    own: list[text.Part] = [prompt.pool.gather(prompt.codes[rows_own])]
    blocks: text.Pieces = [(rows_own, own)]
    blocks += [(text.sub_rows(rows_mixed, r), parts) for r, parts in attack]
    return coded_text(len(mixed), blocks)


def coded_text(n: int, pieces: text.Pieces) -> Coded:
    """Text as codes into its strings in block order: the global sort then gathers each
    string once, instead of once here to restore row order and again there."""
    values, where = text.assemble_blocks(n, pieces)
    return Coded(np.arange(n, dtype=np.uint32) if where is None else where, values)
