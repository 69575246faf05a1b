"""Vectorised prompt text: every function returns a polars Series built by gathering from pools
and concatenating in Rust — no Python loop per event.

Templates are strings with ``{slot}`` placeholders; :func:`fill_templates` fills per-event slots
(``num``, ``text``, ``text2``, ``name``, ``city``) for millions of events at once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from synthetic_logs import vocab

SLOT_RE = re.compile(r"\{(\w+)\}")
MAX_SLOTS = 5


def pick(rng: np.random.Generator, pool: Sequence[str] | pl.Series, n: int) -> pl.Series:
    """``n`` items drawn uniformly (with replacement) from ``pool``."""
    series = pool if isinstance(pool, pl.Series) else pl.Series(list(pool), dtype=pl.String)
    return series.gather(rng.integers(0, len(series), n))


def pick_weighted(
    rng: np.random.Generator, pool: Sequence[str], weights: Sequence[float], n: int
) -> pl.Series:
    p = np.asarray(weights, dtype=float)
    idx = rng.choice(len(pool), size=n, p=p / p.sum())
    return pl.Series(list(pool), dtype=pl.String).gather(idx)


def concat(*parts: pl.Series | str) -> pl.Series:
    """Concatenate Series (equal length) and literal strings element-wise."""
    return pl.select(pl.concat_str([pl.lit(p) for p in parts], ignore_nulls=True)).to_series()


def numbers(rng: np.random.Generator, n: int, lo: int = 2, hi: int = 9999) -> pl.Series:
    return pl.Series(rng.integers(lo, hi, n)).cast(pl.String)


def filler(rng: np.random.Generator, n: int, words: int = 3) -> pl.Series:
    parts: list[pl.Series | str] = []
    for i in range(words):
        if i:
            parts.append(" ")
        parts.append(pick(rng, vocab.FILLER_WORDS, n))
    return concat(*parts)


# --------------------------------------------------------------------------- pools


@dataclass
class Corpus:
    """Optional real prompt text (from ``--corpus``) that replaces built-in pools."""

    chat: pl.Series = field(default_factory=lambda: pl.Series([], dtype=pl.String))
    instructions: pl.Series = field(default_factory=lambda: pl.Series([], dtype=pl.String))
    math: pl.Series = field(default_factory=lambda: pl.Series([], dtype=pl.String))
    code: pl.Series = field(default_factory=lambda: pl.Series([], dtype=pl.String))


def chat_text(
    rng: np.random.Generator, langs: pl.Series, turn: np.ndarray, corpus: Corpus | None = None
) -> pl.Series:
    """Human chat requests: diverse openers, tasks, topics and details; follow-ups on turn > 0."""
    n = len(langs)
    lang_arr = langs.to_numpy()
    opener_parts = []
    for lang in np.unique(lang_arr):
        idx = np.flatnonzero(lang_arr == lang)
        pool = vocab.OPENERS.get(str(lang), vocab.OPENERS["en"])
        opener_parts.append(pl.DataFrame({"i": idx, "o": pick(rng, pool, len(idx))}))
    openers = pl.concat(opener_parts).sort("i")["o"]
    first = concat(
        openers,
        " ",
        pick(rng, vocab.TASK_VERBS, n),
        " ",
        pick(rng, vocab.TOPICS, n),
        " ",
        pick(rng, vocab.DETAILS, n),
        "? ",
        filler(rng, n, 4),
    )
    if corpus is not None and len(corpus.chat):
        use_real = rng.random(n) < 0.7
        real = pick(rng, corpus.chat, n)
        first = pl.select(
            pl.when(pl.lit(pl.Series(use_real))).then(pl.lit(real)).otherwise(pl.lit(first))
        ).to_series()
    follow = concat(pick(rng, vocab.FOLLOW_UPS, n), " ", filler(rng, n, 3))
    return pl.select(
        pl.when(pl.lit(pl.Series(turn > 0))).then(pl.lit(follow)).otherwise(pl.lit(first))
    ).to_series()


def payload_text(
    rng: np.random.Generator, n: int, mix: dict[str, float], corpus: Corpus | None = None
) -> pl.Series:
    """Task payloads distillers (and eval harnesses) send: maths, code, multiple choice,
    agentic tasks and general instructions, in proportions ``mix``."""
    kinds = list(mix)
    p = np.array([mix[k] for k in kinds], dtype=float)
    choice = rng.choice(len(kinds), size=n, p=p / p.sum())
    out = pl.Series(np.full(n, "", dtype=object), dtype=pl.String)
    frames = []
    for k_i, kind in enumerate(kinds):
        idx = np.flatnonzero(choice == k_i)
        if not len(idx):
            continue
        frames.append(pl.DataFrame({"i": idx, "t": _payload_of_kind(rng, kind, len(idx), corpus)}))
    if frames:
        out = pl.concat(frames).sort("i")["t"]
    return out


def _payload_of_kind(
    rng: np.random.Generator, kind: str, n: int, corpus: Corpus | None
) -> pl.Series:
    real = {
        "math": corpus.math if corpus else None,
        "code": corpus.code if corpus else None,
        "instruction": corpus.instructions if corpus else None,
    }.get(kind)
    if real is not None and len(real):
        return pick(rng, real, n)
    if kind == "math":
        return concat(
            pick(rng, vocab.NAMES, n),
            " has ",
            numbers(rng, n, 3, 500),
            " ",
            pick(rng, vocab.MATH_OBJECTS, n),
            ". ",
            pick(rng, vocab.NAMES, n),
            " gives away ",
            numbers(rng, n, 1, 99),
            " and then buys ",
            numbers(rng, n, 2, 40),
            " packs of ",
            numbers(rng, n, 2, 12),
            ". How many ",
            pick(rng, vocab.MATH_OBJECTS, n),
            " are left?",
        )
    if kind == "code":
        return concat(
            "Write a function `solve_",
            numbers(rng, n),
            "(data)` that ",
            pick(rng, vocab.CODE_TASKS, n),
            ". Include tests for ",
            pick(rng, vocab.TOPICS, n),
            ".",
        )
    if kind == "mc":
        return concat(
            "Question (",
            pick(rng, vocab.MC_SUBJECTS, n),
            "): which statement about ",
            pick(rng, vocab.TOPICS, n),
            " is correct? A) ",
            filler(rng, n, 3),
            " B) ",
            filler(rng, n, 3),
            " C) ",
            filler(rng, n, 3),
            " D) ",
            filler(rng, n, 3),
            " Answer:",
        )
    if kind == "agent":
        return fill_templates(
            rng,
            pl.Series(list(vocab.AGENT_TASKS)),
            pl.Series(rng.integers(0, len(vocab.AGENT_TASKS), n)),
            n,
        )
    # "instruction": general self-instruct-like tasks
    return concat(
        pick(rng, ("Write", "Explain", "Describe", "Generate", "List", "Classify", "Summarize"), n),
        " ",
        pick(rng, vocab.TOPICS, n),
        " ",
        pick(rng, vocab.DETAILS, n),
        ": ",
        filler(rng, n, 6),
    )


# --------------------------------------------------------------------------- templates


def fill_templates(
    rng: np.random.Generator,
    templates: pl.Series,
    template_idx: pl.Series | np.ndarray,
    n: int,
    text: pl.Series | None = None,
    text2: pl.Series | None = None,
) -> pl.Series:
    """Fill ``templates[template_idx[i]]`` for each event i. Slots: num, name, city, lang,
    text, text2 (``text``/``text2`` default to short filler)."""
    parsed = [_parse(t) for t in templates.to_list()]
    lits = [
        pl.Series([p[0][k] if k < len(p[0]) else "" for p in parsed], dtype=pl.String)
        for k in range(MAX_SLOTS + 1)
    ]
    kinds = [
        pl.Series([p[1][k] if k < len(p[1]) else "" for p in parsed], dtype=pl.String)
        for k in range(MAX_SLOTS)
    ]
    idx = pl.Series(template_idx)
    values = {
        "num": numbers(rng, n),
        "scale": pick(rng, ("5", "10", "10", "100"), n),
        "name": pick(rng, vocab.NAMES, n),
        "city": pick(rng, vocab.CITIES, n),
        "lang": pick(rng, ("German", "French", "Spanish", "Japanese"), n),
        "org": pick(rng, vocab.ORGS, n),
        "text": text if text is not None else filler(rng, n, 8),
        "text2": text2 if text2 is not None else filler(rng, n, 8),
    }
    df = pl.DataFrame({f"l{k}": lits[k].gather(idx) for k in range(MAX_SLOTS + 1)})
    df = df.with_columns(
        [pl.Series(f"k{k}", kinds[k].gather(idx)) for k in range(MAX_SLOTS)]
        + [pl.Series(f"v_{name}", v) for name, v in values.items()]
    )
    slot_exprs = []
    for k in range(MAX_SLOTS):
        expr: pl.Expr = pl.lit("")
        for name in values:
            expr = pl.when(pl.col(f"k{k}") == name).then(pl.col(f"v_{name}")).otherwise(expr)
        slot_exprs.append(expr)
    parts: list[pl.Expr] = []
    for k in range(MAX_SLOTS):
        parts += [pl.col(f"l{k}"), slot_exprs[k]]
    parts.append(pl.col(f"l{MAX_SLOTS}"))
    return df.select(pl.concat_str(parts).alias("t"))["t"]


def _parse(template: str) -> tuple[list[str], list[str]]:
    pieces = SLOT_RE.split(template)
    lits, slots = pieces[0::2], pieces[1::2]
    if len(slots) > MAX_SLOTS:
        raise ValueError(f"template has more than {MAX_SLOTS} slots: {template!r}")
    return lits, slots


def resolve_static(template: str, rng: np.random.Generator, slots: Sequence[str]) -> str:
    """Resolve account-level slots (e.g. ``{org}``) once, leaving per-event slots in place."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in slots:
            return m.group(0)
        pool = {"org": vocab.ORGS, "name": vocab.NAMES, "city": vocab.CITIES}[name]
        return str(pool[int(rng.integers(0, len(pool)))])

    return SLOT_RE.sub(sub, template)


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
