"""The prompt-text stage of a group: each request's language, prompt and system prompt.

An archetype's ``content`` picks the builder: human chat, an app's (or batch job's, agent's,
classifier's, moderation app's, tutoring app's, judge product's) own templates with its system
prompt, task payloads (a campaign's headers around them for attackers), grading rubrics,
"rewrite safely" requests, extraction probes or one-shot tool-use tasks. A reseller's distilling
end customer's requests get distiller prompts instead. Attackers with ``phrasing =
"paraphrased"`` word their frames, reasoning requests, grading and rewrite requests and payloads
from the grammars of ``synthetic_logs/phrases`` instead of the stock phrases.

An agent running tool loops (``Archetype.tool_steps``) sends, as a client logs it, the user turns
of its conversation joined by newlines: the same text again on each call that carries a tool's
result, one more turn when the user speaks again.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from synthetic_logs import builders, calibration, text, vocab
from synthetic_logs.builders import Langs
from synthetic_logs.columns import Coded
from synthetic_logs.corpus import Corpus
from synthetic_logs.phrases import phrasebook, pick_by_language, render
from synthetic_logs.scenario import Group
from synthetic_logs.templates import fill_templates, resolve_static
from synthetic_logs.timing import Turns

TEMPLATE_POOLS: dict[str, tuple[str, ...]] = {
    "app": vocab.APP_TEMPLATES,
    "batch": vocab.BATCH_TEMPLATES,
    "agent": vocab.AGENT_TASKS,
    "classify": vocab.CLASSIFY_TEMPLATES,
    "moderation": vocab.MODERATION_TEMPLATES,
}
"""Content kinds whose accounts each use a few templates of their own, with a system prompt."""
PRODUCT_KINDS = ("tutor", "judge")
"""Content kinds of products in ``phrases/products.toml``: templates, system prompts and (on
later turns of a conversation) their users' follow-ups."""
PARAPHRASED_KINDS = ("payload", "eval", "rubric", "rewrite")
"""Content kinds an attacker with ``phrasing = "paraphrased"`` words from the phrasebook."""


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
    turns: Turns | None = None,
) -> tuple[Coded, Coded]:
    """Each event's prompt and system prompt. ``ev_acct``: the account of each event, ``pos``:
    its position in its session, ``mixed``: a reseller's distilling end customer's requests,
    ``turns``: an agent's tool loops."""
    if turns is not None and group.archetype.content == "agent":
        prompt, system = _tool_loop_texts(group, ev_acct, turns, lang, corpus, rng)
    else:
        prompt, system = _archetype_texts(group, ev_acct, pos, lang, corpus, rng)
    if mixed.any():  # the distilling end customer's prompts replace the reseller's own
        paraphrased = group.archetype.phrasing == "paraphrased"
        prompt = _with_distiller_prompts(prompt, mixed, lang, corpus, rng, paraphrased)
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
    if arch.content in PRODUCT_KINDS or arch.content == "toolcall":
        return _new_kind_texts(group, ev_acct, pos, lang, corpus, rng)
    if arch.phrasing == "paraphrased" and arch.content in PARAPHRASED_KINDS and arch.is_attack:
        worded = _paraphrased_pieces(group, lang, corpus, rng)
        return coded_text(n, worded), _generic_system(arch.system_prompt_rate, n, rng)
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


def _account_system_prompts(
    group: Group,
    ev_acct: np.ndarray,
    rng: np.random.Generator,
    sys_pool: tuple[str, ...] = vocab.APP_SYSTEM_PROMPTS,
) -> Coded:
    """One app system prompt per account (from ``sys_pool``), or one for the whole group when
    its developers ship the same open-source app."""
    n_acc = group.accounts
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
    paraphrased: bool = False,
) -> Coded:
    """``prompt`` with the ``mixed`` rows replaced by a distiller's maths and code payloads
    behind four campaign headers (``paraphrased``: frames), nearly all asking for reasoning."""
    rows_mixed, rows_own = np.flatnonzero(mixed), np.flatnonzero(~mixed)
    if paraphrased:
        sub = lang.take(rows_mixed)
        before, after = builders.frames(rng, sub, 4)
        attack = text.wrap(
            builders.paraphrased_payload_pieces(rng, sub, {"math": 0.5, "code": 0.5}, corpus),
            before=[before],
            after=[after, builders.elicitation_suffix(rng, sub, 0.9)],
        )
    else:
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


def _generic_system(rate: float, n: int, rng: np.random.Generator) -> Coded:
    """A generic system prompt on a share ``rate`` of ``n`` requests, else none."""
    if rate <= 0:
        return Coded.const(None, n)
    use_sys = rng.random(n) < rate
    generic = pl.Series([None, *vocab.GENERIC_SYSTEM_PROMPTS], dtype=pl.String)
    k_sys = rng.integers(0, len(vocab.GENERIC_SYSTEM_PROMPTS), n)
    return Coded(np.where(use_sys, 1 + k_sys, 0), generic)


def _paraphrased_pieces(
    group: Group, lang: Langs, corpus: Corpus | None, rng: np.random.Generator
) -> text.Pieces:
    """An attacker's prompts worded from the phrasebook: payloads in the campaign's few frames
    (``n_templates`` per language, each worded many ways), grading or "make it safe" requests,
    each followed by a reasoning request in the account's language on a share ``cot_rate``."""
    arch = group.archetype
    book = phrasebook()
    if arch.content in ("payload", "eval"):
        before, after = builders.frames(rng, lang, arch.n_templates)
        body = builders.paraphrased_payload_pieces(rng, lang, arch.payload_mix, corpus)
        elicit = builders.elicitation_suffix(rng, lang, arch.cot_rate)
        return text.wrap(body, before=[before], after=[after, elicit])
    if arch.content == "rubric":
        grammars, which = pick_by_language(rng, book.grading, lang.codes, lang.idx)
        sources: dict[str, text.Source] = {
            "text": builders.paraphrased_payload_source({"instruction": 0.5, "math": 0.5}, corpus),
            "text2": text.filler_source(12),
        }
    else:  # rewrite
        instructions = builders.paraphrased_payload_source({"instruction": 1.0}, corpus)

        def body_source(rng: np.random.Generator, m: int) -> text.Pieces:
            return text.wrap(instructions(rng, m), after=[" ", *text.filler_parts(rng, m, 10)])

        grammars, which = pick_by_language(rng, book.rewrite, lang.codes, lang.idx)
        sources = {"text": body_source}
    pieces = render(rng, grammars, which, sources)
    return text.wrap(pieces, after=[builders.elicitation_suffix(rng, lang, arch.cot_rate)])


def _new_kind_texts(
    group: Group,
    ev_acct: np.ndarray,
    pos: np.ndarray,
    lang: Langs,
    corpus: Corpus | None,
    rng: np.random.Generator,
) -> tuple[Coded, Coded]:
    """Prompts of the product kinds (tutoring, judge: the product's templates, its users'
    follow-ups on later turns, a system prompt per account) and of one-shot tool use (a
    tool-use task per request, a tool-use system prompt on a share of them)."""
    arch = group.archetype
    n = len(ev_acct)
    book = phrasebook()
    if arch.content == "toolcall":
        grammars, which = pick_by_language(rng, book.tool_task, lang.codes, lang.idx)
        tasks = text.wrap(
            render(rng, grammars, which),
            after=[builders.elicitation_suffix(rng, lang, arch.cot_rate)],
        )
        systems = book.products["toolcall"].system
        use = rng.random(n) < arch.system_prompt_rate
        pool = pl.Series([None, *systems], dtype=pl.String)
        system = Coded(np.where(use, 1 + rng.integers(0, len(systems), n), 0), pool)
        return coded_text(n, tasks), system
    product = book.products[arch.content]
    k = max(1, arch.n_templates)
    first = np.flatnonzero(pos == 0) if arch.multi_turn else np.arange(n)
    later = np.flatnonzero(pos > 0) if arch.multi_turn else np.zeros(0, dtype=np.int64)
    acct_templates = [
        resolve_static(product.templates[int(j)], rng, ("org",))
        for j in rng.integers(0, len(product.templates), group.accounts * k)
    ]
    tmpl_idx = ev_acct[first] * k + rng.integers(0, k, len(first))
    opening = fill_templates(
        rng,
        acct_templates,
        tmpl_idx,
        builders.payload_source(arch.payload_mix, corpus),
        text.filler_source(16),
    )
    pieces: text.Pieces = [(text.sub_rows(first, r), parts) for r, parts in opening]
    if len(later):
        which = rng.integers(0, len(product.follow_ups), len(later))
        replies = render(rng, product.follow_ups, which)
        pieces += [(text.sub_rows(later, r), parts) for r, parts in replies]
    pieces = text.wrap(pieces, after=[builders.cot_suffix(rng, lang, arch.cot_rate)])
    system = _account_system_prompts(group, ev_acct, rng, product.system)
    return coded_text(n, pieces), system


def _tool_loop_texts(
    group: Group,
    ev_acct: np.ndarray,
    turns: Turns,
    lang: Langs,
    corpus: Corpus | None,
    rng: np.random.Generator,
) -> tuple[Coded, Coded]:
    """An agent's tool loops: a text per user turn (the account's task template on the first
    turn of a conversation, a user's follow-up on later ones, a chain-of-thought request on a
    share ``cot_rate``), each request's prompt the user turns of its conversation so far joined
    by newlines; one system prompt per account."""
    arch = group.archetype
    n_t = turns.n_turns
    user_rows = np.flatnonzero(turns.is_user)
    turn_of_user = turns.turn[user_rows]
    turn_acct = np.empty(n_t, dtype=np.int64)
    turn_acct[turn_of_user] = ev_acct[user_rows]
    turn_lang_idx = np.empty(n_t, dtype=np.int64)
    turn_lang_idx[turn_of_user] = lang.idx[user_rows]
    turn_lang = Langs(lang.codes, turn_lang_idx)
    first = np.flatnonzero(turns.rank == 0)
    later = np.flatnonzero(turns.rank > 0)
    opening = _account_template_pieces(group, turn_acct[first], corpus, rng)
    pieces: text.Pieces = [(text.sub_rows(first, r), parts) for r, parts in opening]
    if len(later):
        follow = phrasebook().products["agent"].follow_ups
        replies = render(rng, follow, rng.integers(0, len(follow), len(later)))
        pieces += [(text.sub_rows(later, r), parts) for r, parts in replies]
    cot = builders.cot_suffix(rng, turn_lang, arch.cot_rate)
    said = text.assemble(n_t, text.wrap(pieces, after=[cot]))
    joined = said
    for r in range(1, int(turns.rank.max(initial=0)) + 1):
        rows = np.flatnonzero(turns.rank == r)  # the turn before is the same session's, at k - 1
        prev = joined.gather(pl.Series(rows - 1, dtype=pl.UInt32))
        joined = joined.scatter(rows, text.concat(prev, "\n", said.gather(pl.Series(rows))))
    prompt = Coded(turns.turn, joined.rechunk())
    return prompt, _account_system_prompts(group, ev_acct, rng)


def coded_text(n: int, pieces: text.Pieces) -> Coded:
    """Text as codes into its strings in block order: the global sort then gathers each
    string once, instead of once here to restore row order and again there."""
    values, where = text.assemble_blocks(n, pieces)
    return Coded(np.arange(n, dtype=np.uint32) if where is None else where, values)
