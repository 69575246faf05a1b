"""Prompt templates: strings with ``{slot}`` placeholders, filled per event in bulk.

Slots ``num``, ``scale``, ``name``, ``city``, ``lang`` and ``org`` take one value per event (from
the pools' ``slot_values``); ``text`` and ``text2`` take text from a source (a payload, filler
words). Account-level slots (an app's organisation) can be resolved once per account first
(:func:`resolve_static`).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence

import numpy as np
import polars as pl

from synthetic_logs import vocab
from synthetic_logs.text import Part, Pieces, Source, concat, filler_source, inline, pools, split

SLOT_RE = re.compile(r"\{(\w+)\}")

BIG_SLOTS = ("text", "text2")


def fill_templates(
    rng: np.random.Generator,
    templates: Sequence[str],
    template_idx: np.ndarray,
    text: Source | None = None,
    text2: Source | None = None,
) -> Pieces:
    """Fill ``templates[template_idx[i]]`` for each event i, one block per distinct template.
    Slots: num, scale, name, city, lang, org (one value per event, the same for every
    occurrence of the slot in a template), text, text2 (from the sources; default 8 filler
    words). A run of literals and one-value slots is one pick from a pool of all its
    expansions (:func:`_segment_pool`)."""
    sources = {
        "text": text or filler_source(8),
        "text2": text2 or filler_source(8),
    }
    distinct: dict[str, int] = {}
    code = np.array([distinct.setdefault(t, len(distinct)) for t in templates], dtype=np.int64)
    ev_code = code[np.asarray(template_idx, dtype=np.int64)]
    values = pools().slot_values
    out: Pieces = []
    for template, rows in zip(distinct, split(ev_code, len(distinct)), strict=True):
        m = len(rows)
        if not m:
            continue
        pieces = SLOT_RE.split(template)
        lits, slots = pieces[0::2], pieces[1::2]
        big: dict[str, list[Part]] = {}
        idx: dict[str, np.ndarray] = {}
        for name in dict.fromkeys(slots):  # each slot drawn once, in order of appearance
            if name in BIG_SLOTS:
                big[name] = inline(sources[name](rng, m), m)
            elif name in values:
                idx[name] = rng.integers(0, len(values[name]), m)
            else:
                raise ValueError(f"template slot {{{name}}} is unknown: {template!r}")
        parts: list[Part] = []
        seg_lits: list[str] = [lits[0]]
        seg_slots: list[str] = []
        for name, lit in zip(slots, lits[1:], strict=True):
            if name in BIG_SLOTS:
                parts += _segment(seg_lits, seg_slots, idx) + big[name]
                seg_lits, seg_slots = [lit], []
            else:
                seg_slots.append(name)
                seg_lits.append(lit)
        out.append((rows, parts + _segment(seg_lits, seg_slots, idx)))
    return out


SEGMENT_POOL_MAX = 250_000
_SEGMENTS: dict[tuple[tuple[str, ...], tuple[str, ...]], pl.Series] = {}
_SEGMENTS_LOCK = threading.Lock()


def _segment(lits: list[str], slots: list[str], idx: dict[str, np.ndarray]) -> list[Part]:
    """Parts for ``lits[0] + slot[0] + lits[1] + ...`` given each slot's drawn value index."""
    names = list(dict.fromkeys(slots))
    if not names:
        return ["".join(lits)]
    values = pools().slot_values
    sizes = [len(values[name]) for name in names]
    if int(np.prod(sizes)) > SEGMENT_POOL_MAX:
        parts: list[Part] = [lits[0]]
        for name, lit in zip(slots, lits[1:], strict=True):
            parts += [values[name].gather(idx[name]), lit]
        return parts
    code = np.zeros(len(idx[names[0]]), dtype=np.int64)
    for name, size in zip(names, sizes, strict=True):
        code = code * size + idx[name]
    return [_segment_pool(tuple(lits), tuple(slots)).gather(code)]


def _segment_pool(lits: tuple[str, ...], slots: tuple[str, ...]) -> pl.Series:
    """Every expansion of a segment, indexed by its slots' value indices in mixed radix (first
    slot slowest); cached per segment."""
    key = (lits, slots)
    with _SEGMENTS_LOCK:
        cached = _SEGMENTS.get(key)
    if cached is not None:
        return cached
    values = pools().slot_values
    names = list(dict.fromkeys(slots))
    sizes = [len(values[name]) for name in names]
    total = int(np.prod(sizes))
    stride = {name: int(np.prod(sizes[i + 1 :])) for i, name in enumerate(names)}
    size = dict(zip(names, sizes, strict=True))
    every = np.arange(total)
    parts: list[pl.Series | str] = [lits[0]]
    for name, lit in zip(slots, lits[1:], strict=True):
        parts += [values[name].gather((every // stride[name]) % size[name]), lit]
    pool = concat(*parts).rechunk()
    with _SEGMENTS_LOCK:
        _SEGMENTS[key] = pool
    return pool


def resolve_static(template: str, rng: np.random.Generator, slots: Sequence[str]) -> str:
    """Resolve account-level slots (e.g. ``{org}``) once, leaving per-event slots in place."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in slots:
            return m.group(0)
        pool = {"org": vocab.ORGS, "name": vocab.NAMES, "city": vocab.CITIES}[name]
        return str(pool[int(rng.integers(0, len(pool)))])

    return SLOT_RE.sub(sub, template)
