"""Prompt builders: what the prompts say, as pieces (see ``text.py``).

Human chat (openers in the user's language, tasks, follow-ups on later turns), task payloads
(maths, code, multiple choice, agentic tasks, instructions; real corpus text when given),
chain-of-thought requests in the event's language, and the headers a distillation campaign puts
around its payloads. Their paraphrased counterparts (``phrasing = "paraphrased"``) come from the
grammars of ``synthetic_logs/phrases``: reasoning requests and campaign frames in the event's
language, localised word problems, coding asks and multiple-choice items without benchmark
scaffolding, one-shot tool-use tasks.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import polars as pl

from synthetic_logs import vocab
from synthetic_logs.calibration import categorical
from synthetic_logs.corpus import Corpus
from synthetic_logs.phrases import (
    LangBank,
    phrasebook,
    pick_by_language,
    render,
    render_series,
)
from synthetic_logs.templates import fill_templates
from synthetic_logs.text import (
    Pieces,
    Rows,
    Source,
    filler_parts,
    gather,
    pick,
    pools,
    product,
    split,
    sub_rows,
)

# --------------------------------------------------------------------------- languages


@dataclass(frozen=True)
class Langs:
    """Per-event language: ``codes[idx[i]]`` is event i's language code."""

    codes: tuple[str, ...]
    idx: np.ndarray

    def take(self, rows: Rows) -> Langs:
        """The languages of ``rows`` only."""
        return self if rows is None else Langs(self.codes, self.idx[rows])


def _lang_pool(
    langs: Langs, table: dict[str, tuple[str, ...]], default: str | None, prefix: str = ""
) -> tuple[pl.Series, np.ndarray, np.ndarray]:
    """Flat pool of each language's phrases (``prefix`` + phrase), with per-code offsets and
    sizes (size 0: the language has none and ``default`` is None)."""
    flat: list[str] = []
    off = np.zeros(len(langs.codes), dtype=np.int64)
    size = np.zeros(len(langs.codes), dtype=np.int64)
    for i, code in enumerate(langs.codes):
        phrases = table.get(code, table[default] if default else ())
        off[i], size[i] = len(flat), len(phrases)
        flat.extend(prefix + p for p in phrases)
    return pl.Series(flat, dtype=pl.String), off, size


def cot_suffix(rng: np.random.Generator, langs: Langs, rate: float) -> pl.Series | None:
    """A chain-of-thought request in the event's language (with a leading space) for a share
    ``rate`` of events, else ``""``; languages without phrases never get one. ``None`` when no
    event can get one."""
    n = len(langs.idx)
    flat, off, size = _lang_pool(langs, vocab.COT_PHRASES, None, prefix=" ")
    if rate <= 0 or not len(flat):
        return None
    pool = pl.concat([pl.Series([""], dtype=pl.String), flat])
    use = rng.random(n) < rate
    if not size.all():
        use &= size[langs.idx] > 0
    li = langs.idx[use]
    idx = np.zeros(n, dtype=np.uint32)
    idx[use] = 1 + off[li] + (rng.random(len(li)) * size[li]).astype(np.int64)
    return pool.gather(pl.Series(idx))


# --------------------------------------------------------------------------- builders


def chat_pieces(
    rng: np.random.Generator, langs: Langs, turn: np.ndarray, corpus: Corpus | None = None
) -> Pieces:
    """Human chat requests: diverse openers, tasks, topics and details; follow-ups on turn > 0."""
    p = pools()
    first = np.flatnonzero(turn == 0)
    follow = np.flatnonzero(turn > 0)
    out: Pieces = []
    if corpus is not None and len(corpus.chat):
        use_real = rng.random(len(first)) < 0.7
        real = first[use_real]
        out.append((real, [pick(rng, corpus.chat, len(real))]))
        first = first[~use_real]
    m = len(first)
    openers, off, size = _lang_pool(langs, vocab.OPENERS, "en")
    li = langs.idx[first]
    opener = openers.gather(off[li] + (rng.random(m) * size[li]).astype(np.int64))
    out.append((first, [opener, gather(rng, p.chat_task, m), *filler_parts(rng, m, 4)]))
    k = len(follow)
    out.append((follow, [gather(rng, p.follow_up, k), *filler_parts(rng, k, 2, lead=True)]))
    return out


def payload_pieces(
    rng: np.random.Generator, n: int, mix: dict[str, float], corpus: Corpus | None = None
) -> Pieces:
    """Task payloads distillers (and eval harnesses) send: maths, code, multiple choice,
    agentic tasks and general instructions, in proportions ``mix``."""
    kinds = list(mix)
    if len(kinds) == 1:
        return _payload_of_kind(rng, kinds[0], n, corpus)
    p = np.array([mix[k] for k in kinds], dtype=float)
    choice = categorical(rng, p, n)
    out: Pieces = []
    for kind, rows in zip(kinds, split(choice, len(kinds)), strict=True):
        if len(rows):
            for sub, parts in _payload_of_kind(rng, kind, len(rows), corpus):
                out.append((sub_rows(rows, sub), parts))
    return out


def _payload_of_kind(rng: np.random.Generator, kind: str, m: int, corpus: Corpus | None) -> Pieces:
    """``m`` payloads of one kind: real corpus text when there is some for the kind, else
    built from the pools."""
    real = {
        "math": corpus.math if corpus else None,
        "code": corpus.code if corpus else None,
        "instruction": corpus.instructions if corpus else None,
    }.get(kind)
    if real is not None and len(real):
        return [(None, [pick(rng, real, m)])]
    p = pools()
    if kind == "math":
        return [
            (None, [gather(rng, p.math_a, m), gather(rng, p.math_b, m), gather(rng, p.math_c, m)])
        ]
    if kind == "code":
        return [(None, [gather(rng, p.code_a, m), gather(rng, p.code_b, m)])]
    if kind == "mc":
        w3 = p.words3
        return [
            (
                None,
                [
                    gather(rng, p.mc_head, m),
                    gather(rng, w3, m),
                    " B) ",
                    gather(rng, w3, m),
                    " C) ",
                    gather(rng, w3, m),
                    " D) ",
                    gather(rng, w3, m),
                    " Answer:",
                ],
            )
        ]
    if kind == "agent":
        tasks = list(vocab.AGENT_TASKS)
        return fill_templates(rng, tasks, rng.integers(0, len(tasks), m))
    if kind != "instruction":
        raise ValueError(f"unknown payload kind {kind!r}")
    # general self-instruct-like tasks
    return [(None, [gather(rng, p.instruction, m), *filler_parts(rng, m, 6)])]


def payload_source(mix: dict[str, float], corpus: Corpus | None) -> Source:
    """A source of payloads in proportions ``mix`` (to fill a template's ``{text}``)."""
    return lambda rng, m: payload_pieces(rng, m, mix, corpus)


# --------------------------------------------------------------------------- campaigns

# Headers distillers prepend to payloads; each campaign draws its own handful.
HEADER_ROLES = (
    "an expert mathematician",
    "a senior software engineer",
    "a world-class tutor",
    "a meticulous data scientist",
    "an AI research assistant",
    "a competitive programmer",
    "a helpful assistant",
    "a domain expert",
    "a careful analyst",
    "a professor",
)
HEADER_INSTRUCTIONS = (
    "Solve the following task completely.",
    "Answer the question below thoroughly.",
    "Provide a high-quality, detailed solution.",
    "Respond with a complete and correct answer.",
    "Complete the task and format the answer clearly.",
    "Give an exhaustive solution.",
    "Produce the best possible response.",
    "Handle the following request.",
)
FOOTERS = (
    "",
    " Output the final answer on the last line.",
    " Use markdown.",
    " Format: Reasoning: ... Final answer: ...",
    " Return only valid JSON.",
    " Answer in {lang_name}.",
    " Be concise but complete.",
)


def campaign_headers(rng: np.random.Generator, k: int) -> list[tuple[str, str]]:
    """``k`` distinct (header, footer) pairs: one campaign's template fingerprint."""
    out: set[tuple[str, str]] = set()
    while len(out) < k:
        role = HEADER_ROLES[int(rng.integers(0, len(HEADER_ROLES)))]
        instr = HEADER_INSTRUCTIONS[int(rng.integers(0, len(HEADER_INSTRUCTIONS)))]
        foot = FOOTERS[int(rng.integers(0, len(FOOTERS)))]
        lead = ("You are " + role + ". ") if rng.random() < 0.7 else ""
        out.add((lead + instr + " ", foot))
    return sorted(out)


# --------------------------------------------------------------------------- paraphrased


def elicitation_suffix(rng: np.random.Generator, langs: Langs, rate: float) -> pl.Series | None:
    """A paraphrased request for the model's working in the event's language (with a leading
    space) for a share ``rate`` of events, else ``""``; ``None`` when no event gets one."""
    n = len(langs.idx)
    use = np.flatnonzero(rng.random(n) < rate) if rate > 0 else np.zeros(0, dtype=np.int64)
    if not len(use):
        return None
    grammars, which = pick_by_language(rng, phrasebook().elicitation, langs.codes, langs.idx[use])
    said = render_series(rng, grammars, which)
    pool = pl.concat([pl.Series([""], dtype=pl.String), " " + said])
    idx = np.zeros(n, dtype=np.uint32)
    idx[use] = 1 + np.arange(len(use), dtype=np.uint32)
    return pool.gather(pl.Series(idx))


def frames(
    rng: np.random.Generator, langs: Langs, per_language: int
) -> tuple[pl.Series, pl.Series]:
    """A campaign's paraphrased frames around its payloads: ``per_language`` wrappers of each
    language drawn once, each event one of its language's, worded anew. Returns the text before
    and after the payload, per event."""
    grammars, which = pick_by_language(
        rng, phrasebook().wrappers, langs.codes, langs.idx, per_language=max(1, per_language)
    )
    halves = [g.split_at("text") for g in grammars]
    before = render_series(rng, [h[0] for h in halves], which)
    after = render_series(rng, [h[1] for h in halves], which)
    return before, after


PARAPHRASE_BANKS = {"math": "word_problem", "code": "coding", "mc": "quiz", "agent": "tool_task"}
"""Payload kinds and the phrasebook bank of their paraphrased wording."""


def paraphrased_payload_pieces(
    rng: np.random.Generator, langs: Langs, mix: dict[str, float], corpus: Corpus | None = None
) -> Pieces:
    """Payloads in proportions ``mix`` without benchmark scaffolding: maths word problems in
    the event's language, coding asks, multiple-choice items, one-shot tool-use tasks; real
    corpus text for maths, code and instructions when given; instructions otherwise from the
    stock pool (it carries no marker)."""
    kinds = list(mix)
    n = len(langs.idx)
    choice = (
        np.zeros(n, dtype=np.int64)
        if len(kinds) == 1
        else categorical(rng, np.array([mix[k] for k in kinds], dtype=float), n)
    )
    out: Pieces = []
    for kind, rows in zip(kinds, split(choice, len(kinds)), strict=True):
        if len(rows):
            for sub, parts in _paraphrased_payload(rng, kind, langs.take(rows), corpus):
                out.append((sub_rows(rows, sub), parts))
    return out


@functools.cache
def _plain_instructions() -> pl.Series:
    """The stock instruction pool (``Pools.instruction``) without details that ask for
    step-by-step answers."""
    details = tuple(d for d in vocab.DETAILS if "step" not in d)
    return product(vocab.INSTRUCTION_VERBS, (" ",), vocab.TOPICS, (" ",), details, (": ",))


def paraphrased_payload_source(mix: dict[str, float], corpus: Corpus | None) -> Source:
    """A source of paraphrased payloads in English (to fill a grammar's ``{text}``)."""

    def source(rng: np.random.Generator, m: int) -> Pieces:
        return paraphrased_payload_pieces(rng, Langs(("en",), np.zeros(m, np.int64)), mix, corpus)

    return source


def _paraphrased_payload(
    rng: np.random.Generator, kind: str, langs: Langs, corpus: Corpus | None
) -> Pieces:
    m = len(langs.idx)
    real = {
        "math": corpus.math if corpus else None,
        "code": corpus.code if corpus else None,
        "instruction": corpus.instructions if corpus else None,
    }.get(kind)
    if real is not None and len(real):
        return [(None, [pick(rng, real, m)])]
    bank_name = PARAPHRASE_BANKS.get(kind)
    if bank_name is None:  # instructions: the stock pool without its "step by step" detail
        return [(None, [gather(rng, _plain_instructions(), m), *filler_parts(rng, m, 6)])]
    bank: LangBank = phrasebook().banks()[bank_name]
    grammars, which = pick_by_language(rng, bank, langs.codes, langs.idx)
    return render(rng, grammars, which)
