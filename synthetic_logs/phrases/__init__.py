"""Paraphrase grammars: prompt wordings that vary, as data in the TOML files beside this module.

The stock vocabularies (``vocab.py``) say one thing one way: every chain-of-thought request of
an account comes from a handful of phrases, every grading prompt says "rubric" or "score". An
attacker who knows the detector's phrase lists writes the same requests in many other words.
These files hold such wordings as *grammars*: strings with alternatives and slots, e.g.::

    "[Before the final result|Ahead of the conclusion], [lay out|write out] each intermediate
     [calculation|deduction] in order."

- ``[a|b|c]``: one of the alternatives, uniformly; an empty alternative (``[please |]``) drops
  the words. Alternatives do not nest and hold no slot.
- ``{slot}``: a value per request, the same for every occurrence of the slot in one grammar:
  ``text``/``text2`` (a payload, an answer; given by the caller) or one of the value pools of
  :func:`synthetic_logs.text.pools` (``num``, ``n2``, ``n3``, ``scale``, ``name``, ``city``,
  ``org``, ``topic``, ``subject``, ``codetask``, ``plang``, ``o1``-``o4``, ...).

The files:

- ``elicitation.toml``: requests for the model's working, per language, without the stock
  phrases ("step by step", "chain of thought", "show your reasoning" and their translations);
- ``wrappers.toml``: the frames a campaign puts around its payloads (one ``{text}`` each), per
  language;
- ``grading.toml`` / ``rewrite.toml``: grading and "make this safe" requests without the stock
  marker words, per language;
- ``payloads.toml``: task payloads: localised maths word problems, coding asks and multiple-choice
  items without benchmark scaffolding, one-shot tool-use tasks;
- ``products.toml``: the fixed templates, system prompts and users' follow-ups of the tutoring,
  LLM-as-judge and agent products.

Between two slots, a run of literal text and alternatives is one pick from the pre-built pool of
all its expansions (:func:`synthetic_logs.text.product`), so a grammar renders with one gather
per run, as the templates of ``templates.py`` do. Every grammar is checked when the files load;
an error names the file, the key and the item.
"""

from __future__ import annotations

import re
import threading
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from synthetic_logs.text import Pieces, Source, assemble, gather, inline, pools, product, split

PHRASE_DIR = Path(__file__).parent
SLOT_RE = re.compile(r"\{(\w+)\}")
ALT_RE = re.compile(r"\[([^\[\]{}]*)\]")
TEXT_SLOTS = ("text", "text2")
MAX_RUN_EXPANSIONS = 50_000
"""Most expansions of one run of literal text and alternatives (its pool is built in full)."""


class PhrasebookError(ValueError):
    """A phrase file is invalid; the message names the file, the key and the item at fault."""


@dataclass(frozen=True)
class Grammar:
    """One compiled grammar: literal runs (their pools of expansions) between slots."""

    where: str  # "file.toml: key[i]"
    source: str
    runs: tuple[tuple[tuple[str, ...], ...], ...]  # per run: its pieces' alternatives
    slots: tuple[str, ...]  # len(runs) - 1 slot names, in order

    def run_pool(self, i: int) -> pl.Series:
        """Every expansion of run ``i`` (built once per process)."""
        return _run_pool(self.runs[i])

    def run_expansions(self, i: int) -> Iterator[str]:
        """The expansions of run ``i`` as Python strings (for checks and tests)."""
        yield from _run_pool(self.runs[i]).to_list()

    @property
    def variants(self) -> int:
        """Distinct wordings, slot values aside: the product of the runs' expansion counts."""
        total = 1
        for run in self.runs:
            total *= _run_size(run)
        return total

    def split_at(self, slot: str) -> tuple[Grammar, Grammar]:
        """The parts before and after the (only) ``slot``, as two grammars."""
        k = self.slots.index(slot)
        before = Grammar(self.where, self.source, self.runs[: k + 1], self.slots[:k])
        after = Grammar(self.where, self.source, self.runs[k + 1 :], self.slots[k + 1 :])
        return before, after


def _run_size(run: tuple[tuple[str, ...], ...]) -> int:
    size = 1
    for piece in run:
        size *= len(piece)
    return size


_RUN_POOLS: dict[tuple[tuple[str, ...], ...], pl.Series] = {}
_RUN_LOCK = threading.Lock()


def _run_pool(run: tuple[tuple[str, ...], ...]) -> pl.Series:
    with _RUN_LOCK:
        cached = _RUN_POOLS.get(run)
    if cached is not None:
        return cached
    pool = product(*run) if run else pl.Series([""], dtype=pl.String)
    with _RUN_LOCK:
        _RUN_POOLS[run] = pool
    return pool


def compile_grammar(source: str, where: str, slots: Mapping[str, Any] | None = None) -> Grammar:
    """``source`` compiled; ``slots``: the slot names allowed (default: the text slots and the
    value pools). Raises :class:`PhrasebookError` naming ``where`` and what is wrong."""
    allowed = set(TEXT_SLOTS) | set(pools().slot_values) if slots is None else set(slots)
    pieces = SLOT_RE.split(source)
    lits, names = pieces[0::2], pieces[1::2]
    unknown = sorted(set(names) - allowed)
    if unknown:
        raise PhrasebookError(f"{where}: unknown slot(s) {unknown}; known: {sorted(allowed)}")
    runs = []
    for lit in lits:
        run: list[tuple[str, ...]] = []
        pos = 0
        for m in ALT_RE.finditer(lit):
            plain = lit[pos : m.start()]
            if plain:
                run.append((plain,))
            run.append(tuple(m.group(1).split("|")))
            pos = m.end()
        if lit[pos:]:
            run.append((lit[pos:],))
        stray = "".join(c for p in run if len(p) == 1 for c in p[0] if c in "[]{}|")
        if stray:
            raise PhrasebookError(
                f"{where}: stray {stray[0]!r} in {source!r} (alternatives are [a|b], not "
                "nested, and hold no {slot})"
            )
        if _run_size(tuple(run)) > MAX_RUN_EXPANSIONS:
            raise PhrasebookError(
                f"{where}: {_run_size(tuple(run)):,} expansions between two slots (at most "
                f"{MAX_RUN_EXPANSIONS:,}): split it with a slot or use fewer alternatives"
            )
        runs.append(tuple(run))
    return Grammar(where, source, tuple(runs), tuple(names))


def render(
    rng: np.random.Generator,
    grammars: Sequence[Grammar],
    which: np.ndarray,
    sources: Mapping[str, Source] | None = None,
) -> Pieces:
    """Row ``i`` rendered from ``grammars[which[i]]``: one block per grammar used, one pick per
    run and slot. ``sources`` fill the text slots (``text``, ``text2``)."""
    values = pools().slot_values
    out: Pieces = []
    for g, rows in zip(grammars, split(np.asarray(which), len(grammars)), strict=True):
        m = len(rows)
        if not m:
            continue
        drawn: dict[str, list[pl.Series | str]] = {}
        for name in dict.fromkeys(g.slots):  # each slot drawn once, in order of appearance
            if name in TEXT_SLOTS:
                if not sources or name not in sources:
                    raise ValueError(f"{g.where}: slot {{{name}}} needs a text source")
                drawn[name] = inline(sources[name](rng, m), m)
            else:
                drawn[name] = [gather(rng, values[name], m)]
        parts: list[pl.Series | str] = []
        for i in range(len(g.runs)):
            pool = g.run_pool(i)
            parts.append(str(pool[0]) if len(pool) == 1 else gather(rng, pool, m))
            if i < len(g.slots):
                parts += drawn[g.slots[i]]
        out.append((rows, parts))
    return out


def render_series(
    rng: np.random.Generator, grammars: Sequence[Grammar], which: np.ndarray
) -> pl.Series:
    """:func:`render` of grammars without text slots, as one String Series in row order."""
    return assemble(len(which), render(rng, grammars, which))


# --------------------------------------------------------------------------- banks

LangBank = dict[str, tuple[Grammar, ...]]
"""Grammars per language code (``en`` is the fallback of a language without any)."""


def pick_by_language(
    rng: np.random.Generator,
    bank: LangBank,
    codes: Sequence[str],
    lang_idx: np.ndarray,
    per_language: int | None = None,
) -> tuple[list[Grammar], np.ndarray]:
    """A grammar for each row, uniformly among those of its language (``codes[lang_idx[i]]``;
    English where the language has none). ``per_language``: draw that many grammars of each
    language first and use only those (a campaign's few shared templates)."""
    grammars: list[Grammar] = []
    off = np.zeros(len(codes), dtype=np.int64)
    size = np.zeros(len(codes), dtype=np.int64)
    for i, code in enumerate(codes):
        own = bank.get(code) or bank["en"]
        if per_language is not None and per_language < len(own):
            chosen = np.sort(rng.choice(len(own), per_language, replace=False))
            own = tuple(own[int(j)] for j in chosen)
        off[i], size[i] = len(grammars), len(own)
        grammars.extend(own)
    li = np.asarray(lang_idx, dtype=np.int64)
    which = off[li] + (rng.random(len(li)) * size[li]).astype(np.int64)
    return grammars, which


@dataclass(frozen=True)
class Product:
    """A product's fixed templates (plain ``{slot}`` strings), system prompts and its users'
    follow-up turns (grammars)."""

    templates: tuple[str, ...]
    system: tuple[str, ...]
    follow_ups: tuple[Grammar, ...]


@dataclass(frozen=True)
class Phrasebook:
    """Every grammar of the phrase files."""

    elicitation: LangBank
    wrappers: LangBank
    grading: LangBank
    rewrite: LangBank
    word_problem: LangBank
    coding: LangBank
    quiz: LangBank
    tool_task: LangBank
    products: dict[str, Product]

    def banks(self) -> dict[str, LangBank]:
        """The per-language banks by name."""
        return {
            "elicitation": self.elicitation,
            "wrappers": self.wrappers,
            "grading": self.grading,
            "rewrite": self.rewrite,
            "word_problem": self.word_problem,
            "coding": self.coding,
            "quiz": self.quiz,
            "tool_task": self.tool_task,
        }


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise PhrasebookError(f"{path}: invalid TOML: {exc}") from exc
    except FileNotFoundError:
        raise PhrasebookError(f"{path}: phrase file missing") from None


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise PhrasebookError(f"{where}: expected a non-empty list of strings, got {value!r}")
    return value


def _lang_bank(
    table: Mapping[str, Any],
    where: str,
    need: Sequence[str] = (),
    allow: Sequence[str] = (),
    sep: str = ": ",
) -> LangBank:
    """A table ``lang = [grammars]``; each grammar must hold every slot of ``need`` exactly once
    and only slots of ``need`` + ``allow`` among the text slots."""
    if "en" not in table:
        raise PhrasebookError(f"{where}: needs an 'en' list (the fallback language)")
    bank: LangBank = {}
    for code, items in table.items():
        grammars = []
        for i, src in enumerate(_strings(items, f"{where}{sep}{code}")):
            g = compile_grammar(src, f"{where}{sep}{code}[{i}]")
            for slot in need:
                if g.slots.count(slot) != 1:
                    raise PhrasebookError(f"{g.where}: needs {{{slot}}} exactly once: {src!r}")
            extra = sorted(s for s in set(g.slots) & set(TEXT_SLOTS) if s not in (*need, *allow))
            if extra:
                raise PhrasebookError(f"{g.where}: slot(s) {extra} not allowed here: {src!r}")
            grammars.append(g)
        bank[code] = tuple(grammars)
    return bank


def load_phrasebook(directory: Path = PHRASE_DIR) -> Phrasebook:
    """Every phrase file in ``directory``, compiled and checked."""
    elic = directory / "elicitation.toml"
    wrap = directory / "wrappers.toml"
    grad = directory / "grading.toml"
    rew = directory / "rewrite.toml"
    pay = directory / "payloads.toml"
    prod = directory / "products.toml"
    payloads = _read(pay)
    banks = {}
    for name, need in (
        ("word_problem", ()),
        ("coding", ()),
        ("quiz", ()),
        ("tool_task", ()),
    ):
        if not isinstance(payloads.get(name), dict):
            raise PhrasebookError(f"{pay}: missing table [{name}]")
        banks[name] = _lang_bank(payloads[name], f"{pay}: {name}", need, sep=".")
    products: dict[str, Product] = {}
    for name, table in _read(prod).items():
        where = f"{prod}: {name}"
        if not isinstance(table, dict):
            raise PhrasebookError(f"{where}: expected a table")
        unknown = sorted(set(table) - {"templates", "system", "follow_ups"})
        if unknown:
            raise PhrasebookError(f"{where}: unknown key(s) {unknown}")
        templates = tuple(_strings(table.get("templates", [""]), f"{where}.templates"))
        for i, t in enumerate(templates):  # plain templates: checked like grammars, no [a|b]
            g = compile_grammar(t, f"{where}.templates[{i}]")
            if any(len(p) > 1 for run in g.runs for p in run):
                raise PhrasebookError(f"{g.where}: a product's template has no [a|b]: {t!r}")
        products[name] = Product(
            templates=templates if table.get("templates") else (),
            system=tuple(_strings(table.get("system", [""]), f"{where}.system"))
            if table.get("system")
            else (),
            follow_ups=tuple(
                compile_grammar(s, f"{where}.follow_ups[{i}]")
                for i, s in enumerate(_strings(table["follow_ups"], f"{where}.follow_ups"))
            )
            if table.get("follow_ups")
            else (),
        )
    return Phrasebook(
        elicitation=_lang_bank(_read(elic), str(elic)),
        wrappers=_lang_bank(_read(wrap), str(wrap), need=("text",)),
        grading=_lang_bank(_read(grad), str(grad), need=("text", "text2")),
        rewrite=_lang_bank(_read(rew), str(rew), need=("text",)),
        products=products,
        **banks,
    )


_BOOK: Phrasebook | None = None
_BOOK_LOCK = threading.Lock()


def phrasebook() -> Phrasebook:
    """The process-wide phrasebook (loaded on first use)."""
    global _BOOK
    with _BOOK_LOCK:
        if _BOOK is None:
            _BOOK = load_phrasebook()
        return _BOOK
