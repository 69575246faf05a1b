"""Vectorised prompt text: the machinery every prompt builder uses. Functions return polars
Series built by gathering from pools and concatenating in Rust — no Python loop per event.

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
  that template has (``templates.py``); first turns and follow-ups, payload kinds and templates
  are separate blocks rather than full-length alternatives merged with ``when/then``.

What the prompts say is built in ``builders.py`` (chat, payloads, chain-of-thought requests,
campaign headers) and ``templates.py`` from the words of ``vocab.py``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from synthetic_logs import vocab

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
    slot_values: dict[str, pl.Series]  # per-event slot values of templates and grammars


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
    """Every pool, from the words of ``vocab.py``."""
    w = vocab.FILLER_WORDS
    sw = tuple(" " + x for x in w)
    num = number_strings(2, 9999)
    words2 = product(w, sw)
    return Pools(
        words1=product(w),
        words2=words2,
        words3=product(w, sw, sw),
        sp_words1=product(sw),
        sp_words2=product(sw, sw),
        sp_words3=product(sw, sw, sw),
        chat_task=product(
            (" ",), vocab.TASK_VERBS, (" ",), vocab.TOPICS, (" ",), vocab.DETAILS, ("? ",)
        ),
        follow_up=product(vocab.FOLLOW_UPS, sw),
        probe=product(vocab.PROBE_STARTS, sw, sw),
        instruction=product(
            vocab.INSTRUCTION_VERBS, (" ",), vocab.TOPICS, (" ",), vocab.DETAILS, (": ",)
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
            # slots of the paraphrase grammars (synthetic_logs/phrases)
            "n2": product(number_strings(1, 100)),
            "n3": product(number_strings(2, 13)),
            "obj": product(vocab.MATH_OBJECTS),
            "topic": product(vocab.TOPICS),
            "subject": product(vocab.MC_SUBJECTS),
            "codetask": product(vocab.CODE_TASKS),
            "plang": product(vocab.PROGRAMMING_LANGUAGES),
            **dict.fromkeys(("o1", "o2", "o3", "o4"), words2),
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


def filler_source(words: int) -> Source:
    """A source of ``words`` filler words per row."""
    return lambda rng, m: [(None, filler_parts(rng, m, words))]
