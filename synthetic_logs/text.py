"""Vectorised prompt text: every function returns polars Series built by gathering from pools
and concatenating in Rust — no Python loop per event.

Speed comes from three rules:

- **Pools are Cartesian products.** A run of independent uniform picks (``"verb topic detail"``,
  three filler words, ``"Alice has 37 apples. "``) is one pick from the pre-built product of the
  pools (:func:`product`): the same distribution as picking each piece, one gather instead of
  several gathers and a concatenation. Pools are built once per process (:func:`pools`).
- **One concatenation per prompt.** Builders return *pieces* — blocks of rows, each with the
  list of parts (Series or literals) its prompts are made of — and :func:`assemble` runs one
  ``concat_str`` per block, so nested pieces (a campaign header, a payload, a footer, a
  chain-of-thought request) never materialise intermediate strings.
- **Only what is used is drawn.** Templates are filled per template, drawing values for the slots
  that template has; first turns and follow-ups, payload kinds and templates are separate blocks
  rather than full-length alternatives merged with ``when/then``.

Templates are strings with ``{slot}`` placeholders: ``num``, ``scale``, ``name``, ``city``,
``lang`` and ``org`` take one value per event; ``text`` and ``text2`` take text from a source.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa

from synthetic_logs import vocab
from synthetic_logs.calibration import categorical

SLOT_RE = re.compile(r"\{(\w+)\}")

Part = pl.Series | str
"""One part of a block's prompts: a Series (one value per row of the block) or a literal."""
Rows = np.ndarray | None
"""Row indices (into the rows a builder was asked for) of a block; ``None`` means all rows."""
Pieces = list[tuple[Rows, list[Part]]]
"""Blocks of rows with their parts; together the blocks cover every row exactly once."""
Source = Callable[[np.random.Generator, int], Pieces]
"""Text for ``m`` rows, as pieces."""


# --------------------------------------------------------------------------- basic tools


def pick(rng: np.random.Generator, pool: Sequence[str] | pl.Series, n: int) -> pl.Series:
    """``n`` items drawn uniformly (with replacement) from ``pool``."""
    series = pool if isinstance(pool, pl.Series) else pl.Series(list(pool), dtype=pl.String)
    return series.gather(rng.integers(0, len(series), n))


def pick_weighted(
    rng: np.random.Generator, pool: Sequence[str], weights: Sequence[float], n: int
) -> pl.Series:
    p = np.asarray(weights, dtype=float)
    idx = categorical(rng, p, n)
    return pl.Series(list(pool), dtype=pl.String).gather(idx)


def concat(*parts: pl.Series | str) -> pl.Series:
    """Concatenate Series (equal length) and literal strings element-wise."""
    return pl.select(pl.concat_str([pl.lit(p) for p in parts], ignore_nulls=True)).to_series()


def product(*pieces: Sequence[str]) -> pl.Series:
    """Every concatenation of one item of each piece, the first piece varying slowest.

    A uniform pick from the product is a uniform, independent pick from every piece (duplicates
    within a piece keep their weight)."""
    sizes = [len(p) for p in pieces]
    total = int(np.prod(sizes))
    parts: list[pl.Series | str] = []
    stride = total
    for piece, size in zip(pieces, sizes, strict=True):
        stride //= size
        if size == 1:
            parts.append(piece[0])
            continue
        idx = (np.arange(total) // stride) % size
        parts.append(pl.Series(list(piece), dtype=pl.String).gather(idx))
    if all(isinstance(p, str) for p in parts):
        return pl.Series(["".join(str(p) for p in parts)], dtype=pl.String)
    return concat(*parts).rechunk()


def number_strings(lo: int, hi: int) -> tuple[str, ...]:
    """The decimal strings of ``lo .. hi - 1`` (what ``rng.integers(lo, hi)`` draws)."""
    return tuple(str(i) for i in range(lo, hi))


def take(part: Part, rows: Rows | pl.Series) -> Part:
    """``part`` restricted to ``rows``."""
    if rows is None or isinstance(part, str):
        return part
    return part.gather(rows)


def index(idx: np.ndarray) -> pl.Series:
    """Row indices as polars' native index type (gathers then skip a conversion)."""
    return pl.Series(idx, dtype=pl.UInt32)


def sub_rows(outer: Rows, inner: Rows) -> Rows:
    """Rows ``inner`` of a block whose rows are ``outer``, as rows of the outer frame."""
    if inner is None:
        return outer
    if outer is None:
        return inner
    return outer[inner]


def concat_parts(parts: Sequence[Part], m: int) -> pl.Series:
    """The ``m`` strings made of ``parts``, in one ``concat_str`` (adjacent literals merged)."""
    merged: list[Part] = []
    for p in parts:
        if isinstance(p, str):
            if not p:
                continue
            if merged and isinstance(merged[-1], str):
                merged[-1] = merged[-1] + p
                continue
        merged.append(p)
    if len(merged) <= 1:
        only = merged[0] if merged else ""
        if isinstance(only, pl.Series):
            return only
        return pl.select(pl.repeat(only, m, dtype=pl.String)).to_series()
    return pl.select(pl.concat_str([pl.lit(p) for p in merged], ignore_nulls=True)).to_series()


def assemble(n: int, pieces: Pieces) -> pl.Series:
    """One String Series of ``n`` rows from ``pieces`` (one ``concat_str`` per block)."""
    values, where = assemble_blocks(n, pieces)
    return values if where is None else values.gather(pl.Series(where))


def assemble_blocks(n: int, pieces: Pieces) -> tuple[pl.Series, np.ndarray | None]:
    """The strings of ``pieces`` in block order (one ``concat_str`` per block, one chunk), and
    where each row's string is among them (``None``: in row order already). Callers that
    reorder rows anyway can fold ``where`` into their own gather."""
    if len(pieces) == 1 and pieces[0][0] is None:
        return concat_parts(pieces[0][1], n), None
    outs: list[pl.Series] = []
    order: list[np.ndarray] = []
    for rows, parts in pieces:
        if rows is None:
            raise ValueError("a block without rows among several blocks")
        if len(rows):
            outs.append(concat_parts(parts, len(rows)))
            order.append(rows)
    if not outs and not n:
        return pl.Series([], dtype=pl.String), None
    rows_all = np.concatenate(order)
    if len(rows_all) != n:
        raise ValueError(f"pieces cover {len(rows_all)} rows, expected {n}")
    where = np.empty(n, dtype=np.uint32)
    where[rows_all] = np.arange(n, dtype=np.uint32)
    # one chunk: gathering from it is ~10x faster than from one chunk per block
    return pl.concat(outs, rechunk=True), where


def wrap(
    pieces: Pieces, before: Sequence[Part | None] = (), after: Sequence[Part | None] = ()
) -> Pieces:
    """``before`` + each block's parts + ``after`` (Series in ``before``/``after`` have one
    value per row of the whole frame; ``None`` entries are skipped)."""
    head = [p for p in before if p is not None]
    tail = [p for p in after if p is not None]
    out: Pieces = []
    for rows, parts in pieces:
        idx = None if rows is None or not (head or tail) else index(rows)
        out.append((rows, [take(p, idx) for p in head] + parts + [take(p, idx) for p in tail]))
    return out


def split(choice: np.ndarray, k: int) -> list[np.ndarray]:
    """Row indices of each value ``0 .. k-1`` of ``choice`` (one stable sort)."""
    # stable sorts of keys of at most 16 bits are radix sorts
    small = np.uint8 if k <= 1 << 8 else np.uint16 if k <= 1 << 16 else np.uint32
    order = np.argsort(choice.astype(small), kind="stable")
    bounds = np.cumsum(np.bincount(choice, minlength=k))[:-1]
    return np.split(order, bounds)


def inline(pieces: Pieces, m: int) -> list[Part]:
    """The parts of a single-block source, or its text materialised when it has several."""
    if len(pieces) == 1 and pieces[0][0] is None:
        return pieces[0][1]
    return [assemble(m, pieces)]


def _hex4_table() -> np.ndarray:
    """The 4 lowercase hex digits of 0 .. 65535, as the little-endian bytes of a uint64."""
    v = np.arange(1 << 16, dtype=np.uint64)
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8).astype(np.uint64)
    out = np.zeros(1 << 16, dtype=np.uint64)
    for i, shift in enumerate((12, 8, 4, 0)):
        out |= digits[(v >> np.uint64(shift)) & np.uint64(15)] << np.uint64(8 * i)
    return out


_HEX4 = _hex4_table()


def sequential_ids(prefix: str, tag: int, n: int) -> pl.Series:
    """``prefix`` (4 ASCII characters) + ``tag`` (8 hex digits) + ``i`` (12 hex digits) for
    ``i`` in ``0 .. n-1``: 24-byte ids written as three 64-bit words per row, from a table of
    4-digit groups (the low group cycles through the table, the others are constant over each
    aligned block of 65536 rows)."""
    head = (prefix + f"{tag:08x}").encode()
    if len(head) != 12:
        raise ValueError(f"prefix must be 4 ASCII characters: {prefix!r}")
    if n >= 1 << 48:
        raise ValueError("at most 2**48 ids")
    buf = np.empty((n, 3), dtype=np.uint64)
    buf[:, 0] = int.from_bytes(head[:8], "little")
    tag_tail = np.uint64(int.from_bytes(head[8:], "little"))
    low = _HEX4 << np.uint64(32)
    for start in range(0, n, 1 << 16):
        stop = min(start + (1 << 16), n)
        block = start >> 16
        buf[start:stop, 1] = tag_tail | (_HEX4[block >> 16] << np.uint64(32))
        buf[start:stop, 2] = _HEX4[block & 0xFFFF] | low[: stop - start]
    offsets = np.arange(0, 24 * (n + 1), 24, dtype=np.int64)
    arr = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(buf))
    return pl.Series(arr)


# --------------------------------------------------------------------------- pools


@dataclass(frozen=True)
class Pools:
    """Pre-built product pools (see :func:`product`); built once per process."""

    words1: pl.Series  # "w"
    words2: pl.Series  # "w w"
    words3: pl.Series  # "w w w"
    sp_words1: pl.Series  # " w"
    sp_words2: pl.Series  # " w w"
    sp_words3: pl.Series  # " w w w"
    chat_task: pl.Series  # " verb topic detail? "
    follow_up: pl.Series  # "follow-up w"
    probe: pl.Series  # "start w w"
    instruction: pl.Series  # "Verb topic detail: "
    math_a: pl.Series  # "Name has N objects. "
    math_b: pl.Series  # "Name gives away N and then buys N packs of "
    math_c: pl.Series  # "N. How many objects are left?"
    code_a: pl.Series  # "Write a function `solve_N(data)` that "
    code_b: pl.Series  # "task. Include tests for topic."
    mc_head: pl.Series  # "Question (subject): which statement about topic is correct? A) "
    slot_values: dict[str, pl.Series]  # per-event slot values of templates


PROBE_STARTS = ("The", "A", "In", "Once", "Token", "Q:", "Hello", "Translate:")
INSTRUCTION_VERBS = ("Write", "Explain", "Describe", "Generate", "List", "Classify", "Summarize")
GENERIC_SYSTEM_PROMPTS = (
    "You are a helpful assistant.",
    "You are ChatGPT, a helpful assistant.",
    "Answer accurately.",
    "You are a senior engineer.",
)

_POOLS: Pools | None = None
_POOLS_LOCK = threading.Lock()


def pools() -> Pools:
    """The process-wide pools (built on first use, ~0.1 s)."""
    global _POOLS
    with _POOLS_LOCK:
        if _POOLS is None:
            _POOLS = _build_pools()
        return _POOLS


def _build_pools() -> Pools:
    w = vocab.FILLER_WORDS
    sw = tuple(" " + x for x in w)
    num = number_strings(2, 9999)
    return Pools(
        words1=product(w),
        words2=product(w, sw),
        words3=product(w, sw, sw),
        sp_words1=product(sw),
        sp_words2=product(sw, sw),
        sp_words3=product(sw, sw, sw),
        chat_task=product(
            (" ",), vocab.TASK_VERBS, (" ",), vocab.TOPICS, (" ",), vocab.DETAILS, ("? ",)
        ),
        follow_up=product(vocab.FOLLOW_UPS, sw),
        probe=product(PROBE_STARTS, sw, sw),
        instruction=product(
            INSTRUCTION_VERBS, (" ",), vocab.TOPICS, (" ",), vocab.DETAILS, (": ",)
        ),
        math_a=product(
            vocab.NAMES, (" has ",), number_strings(3, 500), (" ",), vocab.MATH_OBJECTS, (". ",)
        ),
        math_b=product(
            vocab.NAMES,
            (" gives away ",),
            number_strings(1, 99),
            (" and then buys ",),
            number_strings(2, 40),
            (" packs of ",),
        ),
        math_c=product(
            number_strings(2, 12), (". How many ",), vocab.MATH_OBJECTS, (" are left?",)
        ),
        code_a=product(("Write a function `solve_",), num, ("(data)` that ",)),
        code_b=product(vocab.CODE_TASKS, (". Include tests for ",), vocab.TOPICS, (".",)),
        mc_head=product(
            ("Question (",),
            vocab.MC_SUBJECTS,
            ("): which statement about ",),
            vocab.TOPICS,
            (" is correct? A) ",),
        ),
        slot_values={
            "num": product(num),
            "scale": product(("5", "10", "10", "100")),
            "name": product(vocab.NAMES),
            "city": product(vocab.CITIES),
            "lang": product(("German", "French", "Spanish", "Japanese")),
            "org": product(vocab.ORGS),
        },
    )


def gather(rng: np.random.Generator, pool: pl.Series, m: int) -> pl.Series:
    """``m`` uniform picks from a pool."""
    return pool.gather(pl.Series(rng.integers(0, len(pool), m, dtype=np.uint32)))


def filler_parts(rng: np.random.Generator, m: int, words: int, lead: bool = False) -> list[Part]:
    """``words`` uniform filler words separated by spaces (a leading space if ``lead``), as
    parts of at most three words each."""
    p = pools()
    parts: list[Part] = []
    left = words
    while left > 0:
        k = min(3, left)
        spaced = lead or bool(parts)
        pool = {
            (1, False): p.words1,
            (2, False): p.words2,
            (3, False): p.words3,
            (1, True): p.sp_words1,
            (2, True): p.sp_words2,
            (3, True): p.sp_words3,
        }[(k, spaced)]
        parts.append(gather(rng, pool, m))
        left -= k
    return parts


def filler(rng: np.random.Generator, n: int, words: int = 3) -> pl.Series:
    """``n`` strings of ``words`` uniform filler words."""
    return concat_parts(filler_parts(rng, n, words), n)


# --------------------------------------------------------------------------- languages


@dataclass(frozen=True)
class Langs:
    """Per-event language: ``codes[idx[i]]`` is event i's language code."""

    codes: tuple[str, ...]
    idx: np.ndarray

    def take(self, rows: Rows) -> Langs:
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


# --------------------------------------------------------------------------- corpora


@dataclass
class Corpus:
    """Optional real prompt text (from ``--corpus``) that replaces built-in pools."""

    chat: pl.Series = field(default_factory=lambda: pl.Series([], dtype=pl.String))
    instructions: pl.Series = field(default_factory=lambda: pl.Series([], dtype=pl.String))
    math: pl.Series = field(default_factory=lambda: pl.Series([], dtype=pl.String))
    code: pl.Series = field(default_factory=lambda: pl.Series([], dtype=pl.String))


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


def payload_text(
    rng: np.random.Generator, n: int, mix: dict[str, float], corpus: Corpus | None = None
) -> pl.Series:
    return assemble(n, payload_pieces(rng, n, mix, corpus))


def _payload_of_kind(rng: np.random.Generator, kind: str, m: int, corpus: Corpus | None) -> Pieces:
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


def filler_source(words: int) -> Source:
    return lambda rng, m: [(None, filler_parts(rng, m, words))]


def payload_source(mix: dict[str, float], corpus: Corpus | None) -> Source:
    return lambda rng, m: payload_pieces(rng, m, mix, corpus)


# --------------------------------------------------------------------------- templates

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
