"""Compiled prompt fingerprinting: one pass per prompt over the Arrow buffers of the column.

:func:`fingerprint_prompts` reads the UTF-8 bytes and offsets of a string column (zero copies
beyond polars' export to Arrow) and, per prompt, in one numba-compiled loop:

1. masks and lower-cases: a capitalised ASCII name (``[A-Z][a-z]{2,}`` between ASCII word
   boundaries) or an ASCII digit run becomes ``0``; every other character is lower-cased (ASCII
   directly, other scripts through a code-point table built from :meth:`str.lower`; the one
   difference from polars' ``to_lowercase``: Greek capital sigma always becomes σ, never the
   word-final ς); ``\\n``, ``\\t``, ``\\r`` become spaces. Result: a code-point buffer;
2. strips Unicode white space at both ends and replaces quoted spans (``"..."``, ``'...'``,
   ```...```, at most 200 characters inside) with ``"q"``;
3. splits on ASCII spaces (runs of spaces give empty words, as ``str.split(" ")`` does; other
   white space, e.g. CJK text or U+3000, stays inside words), hashes every word (64-bit), keeps
   the first and last :data:`TEMPLATE_WORDS` word hashes and :data:`N_MINHASH` XOR-permuted
   minima, and finds the first topic keyword in the normalised text.

It also counts characters, finds the script of the first CJK / Cyrillic / Arabic letter and
looks for the literal benchmark markers in the raw bytes. These are exactly the semantics of the
polars expressions this replaces (see :mod:`detector.fingerprints`); hash values differ, hash
equalities do not (up to 64-bit collisions).

The kernel releases the GIL, so large columns are fingerprinted in two threads. It is compiled
once and cached on disk by numba (``cache=True``, in ``__pycache__``): later processes load it
in well under a second.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl
import pyarrow as pa

try:
    from numba import njit
except ImportError as exc:  # pragma: no cover - numba is a hard dependency
    raise ImportError(
        "distillguard's prompt fingerprinting needs numba (pip install 'numba>=0.59'); "
        f"importing it failed: {exc}"
    ) from exc

TEMPLATE_WORDS = 6
BAND_ROWS = 3
N_BANDS = 2
N_MINHASH = BAND_ROWS * N_BANDS
SCRIPTS = ("none", "latin", "cjk", "cyrillic", "arabic", "other")

_U64 = np.uint64
# XOR masks permuting the 64-bit word-hash space, one per MinHash (each is a bijection).
MASKS = np.array(
    [
        0x0000000000000000,
        0x9E3779B97F4A7C15,
        0xBF58476D1CE4E5B9,
        0x94D049BB133111EB,
        0x2545F4914F6CDD1D,
        0x5851F42D4C957F2D,
    ],
    dtype=np.uint64,
)
_LOWER_LIMIT = 0x20000  # every code point with a lower-case mapping is below this


def _lower_table() -> np.ndarray:
    """Code point -> lower-case code point (itself if none) for code points < 0x20000.
    U+0130 (lower-cases to two code points, ``i`` + U+0307) is special-cased in the kernel."""
    table = np.arange(_LOWER_LIMIT, dtype=np.uint32)
    for cp in range(0x80, _LOWER_LIMIT):
        low = chr(cp).lower()
        if len(low) == 1 and low != chr(cp):
            table[cp] = ord(low)
    return table


def _literal_table(
    literals: Sequence[str], *, by_pair: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pack literals for the kernel: (units[n, maxlen] uint32, lengths, start, order).

    ``order`` lists literal indices grouped by their first unit (``by_pair=False``: a byte, 256
    groups) or first two units (``by_pair=True``: two ASCII characters, 128 * 128 groups), in
    the original order inside a group; group ``g`` is ``order[start[g]:start[g + 1]]``."""
    seqs = [list(s.encode()) if not by_pair else [ord(c) for c in s] for s in literals]
    if by_pair:
        assert all(len(s) >= 2 and max(s) < 128 for s in seqs), "keywords: ASCII, >= 2 chars"
        keys = [s[0] * 128 + s[1] for s in seqs]
        n_groups = 128 * 128
    else:
        keys = [s[0] for s in seqs]
        n_groups = 256
    units = np.zeros((len(seqs), max((len(s) for s in seqs), default=1)), dtype=np.uint32)
    for i, s in enumerate(seqs):
        units[i, : len(s)] = s
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    order = np.array(sorted(range(len(seqs)), key=lambda i: (keys[i], i)), dtype=np.int64)
    counts = np.bincount(np.array(keys, dtype=np.int64), minlength=n_groups)[:n_groups]
    start = np.zeros(n_groups + 1, dtype=np.int64)
    np.cumsum(counts, out=start[1:])
    return units, lengths, start, order


# --------------------------------------------------------------------------- compiled kernel


@njit(cache=True, nogil=True, inline="always")
def _fmix(z: np.uint64) -> np.uint64:
    """MurmurHash3's 64-bit finaliser (a bijection with full avalanche)."""
    z ^= z >> _U64(33)
    z *= _U64(0xFF51AFD7ED558CCD)
    z ^= z >> _U64(33)
    z *= _U64(0xC4CEB9FE1A85EC53)
    z ^= z >> _U64(33)
    return z


@njit(cache=True, nogil=True, inline="always")
def _hash_seq(vals: np.ndarray, i0: int, n: int, seed: int) -> np.uint64:
    """Order-sensitive hash of ``vals[i0:i0 + n]`` and ``n``. The values are word hashes (already
    fully mixed), so one multiply per value (a bijection for a given prefix) and one finaliser
    suffice."""
    h = _U64(seed) * _U64(0x9E3779B97F4A7C15) + _U64(0x632BE59BD9B4E019)
    for i in range(i0, i0 + n):
        h = (h ^ vals[i]) * _U64(0xD6E8FEB86659FD93)
        h ^= h >> _U64(32)
    return _fmix(h ^ _U64(n))


@njit(cache=True, nogil=True, inline="always")
def _step(h: np.uint64, c: int) -> np.uint64:
    """Word hash: absorb one code point (xor, multiply by a dense odd constant, xor-shift: a
    bijection of the state for each code point; the word's hash is :func:`_fmix` of the final
    state and the length)."""
    h = (h ^ _U64(c)) * _U64(0xFF51AFD7ED558CCD)
    return h ^ (h >> _U64(29))


@njit(cache=True, nogil=True, inline="always")
def _roll(x: int, c: int) -> int:
    """Rolling 15-bit hash of the last three units (older units shift out): the bit index of a
    trigram in the literal scans' bitsets."""
    return ((x << 5) ^ c) & 0x7FFF


@njit(cache=True, nogil=True, inline="always")
def _is_word_byte(b: int) -> bool:
    """ASCII regex word byte ``[0-9A-Za-z_]`` (non-ASCII bytes are not word bytes)."""
    return (48 <= b <= 57) or (65 <= b <= 90) or (97 <= b <= 122) or b == 95


@njit(cache=True, nogil=True, inline="always")
def _is_space(c: int) -> bool:
    """Unicode White_Space (what polars' ``str.strip_chars()`` strips)."""
    if c < 0x80:
        return c == 32 or (9 <= c <= 13)
    return (
        c == 0x85
        or c == 0xA0
        or c == 0x1680
        or (0x2000 <= c <= 0x200A)
        or c == 0x2028
        or c == 0x2029
        or c == 0x202F
        or c == 0x205F
        or c == 0x3000
    )


@njit(cache=True, nogil=True)
def _mask_lower(
    data: np.ndarray, start: int, end: int, lower: np.ndarray, buf: np.ndarray
) -> tuple[int, int, int]:
    """Step 1 of the normalisation of ``data[start:end]`` (UTF-8) into ``buf`` (code points):
    names and digit runs -> ``0``, lower case, ``\\n\\t\\r`` -> space.

    Returns (length written to ``buf``, number of characters of the raw text, script code of
    the first CJK / Cyrillic / Arabic character: 0 if none)."""
    nb = 0
    nchars = 0
    script = 0
    i = start
    while i < end:
        b = int(data[i])
        if b < 0x80:
            nchars += 1
            if 65 <= b <= 90:
                if i == start or not _is_word_byte(int(data[i - 1])):
                    j = i + 1
                    while j < end and 97 <= data[j] <= 122:
                        j += 1
                    if j - i >= 3 and (j == end or not _is_word_byte(int(data[j]))):
                        buf[nb] = 48
                        nb += 1
                        nchars += j - i - 1
                        i = j
                        continue
                buf[nb] = b + 32
            elif 48 <= b <= 57:
                j = i + 1
                while j < end and 48 <= data[j] <= 57:
                    j += 1
                buf[nb] = 48
                nb += 1
                nchars += j - i - 1
                i = j
                continue
            elif b == 10 or b == 9 or b == 13:
                buf[nb] = 32
            else:
                buf[nb] = b
            nb += 1
            i += 1
            continue
        # multi-byte UTF-8 sequence (input is valid UTF-8)
        if b < 0xE0:
            cp = ((b & 0x1F) << 6) | (int(data[i + 1]) & 0x3F)
            i += 2
        elif b < 0xF0:
            cp = ((b & 0x0F) << 12) | ((int(data[i + 1]) & 0x3F) << 6) | (int(data[i + 2]) & 0x3F)
            i += 3
        else:
            cp = (
                ((b & 0x07) << 18)
                | ((int(data[i + 1]) & 0x3F) << 12)
                | ((int(data[i + 2]) & 0x3F) << 6)
                | (int(data[i + 3]) & 0x3F)
            )
            i += 4
        nchars += 1
        if script == 0:
            if 0x0400 <= cp <= 0x04FF:
                script = 3
            elif 0x0600 <= cp <= 0x06FF:
                script = 4
            elif (0x3040 <= cp <= 0x30FF) or (0x3400 <= cp <= 0x9FFF) or (0xAC00 <= cp <= 0xD7AF):
                script = 2
        if cp == 0x130:  # İ -> i + combining dot above
            buf[nb] = 105
            buf[nb + 1] = 0x307
            nb += 2
            continue
        buf[nb] = lower[cp] if cp < lower.shape[0] else cp
        nb += 1
    return nb, nchars, script


@njit(cache=True, nogil=True, inline="always")
def _strip(buf: np.ndarray, nb: int) -> tuple[int, int]:
    """Bounds of ``buf[:nb]`` without white space at either end. No quoted span can start or
    end inside that white space, so stripping before replacing quoted spans is equivalent."""
    s = 0
    while s < nb and _is_space(int(buf[s])):
        s += 1
    e = nb
    while e > s and _is_space(int(buf[e - 1])):
        e -= 1
    return s, e


@njit(cache=True, nogil=True, inline="always")
def _quote_end(buf: np.ndarray, k: int, e: int) -> int:
    """If ``buf[k]`` opens a quoted span (``"``, ``'`` or a backtick, closed by the same
    character after at most 200 others, before ``e``), the index of the closing one, else -1."""
    c = buf[k]
    if c == 34 or c == 39 or c == 96:
        lim = min(e, k + 202)
        j = k + 1
        while j < lim:
            if buf[j] == c:
                return j
            j += 1
    return -1


@njit(cache=True, nogil=True)
def _normalise_one(
    data: np.ndarray, start: int, end: int, lower: np.ndarray, buf: np.ndarray, out: np.ndarray
) -> int:
    """The normalised text of ``data[start:end]`` as code points in ``out``; returns its length.
    (The kernel does the same on the fly; this spells it out for tests.)"""
    nb, _, _ = _mask_lower(data, start, end, lower, buf)
    s, e = _strip(buf, nb)
    no = 0
    k = s
    while k < e:
        j = _quote_end(buf, k, e)
        if j >= 0:
            out[no] = 34
            out[no + 1] = 113
            out[no + 2] = 34
            no += 3
            k = j + 1
            continue
        out[no] = buf[k]
        no += 1
        k += 1
    return no


@njit(cache=True, nogil=True, inline="always")
def _literal_at(
    buf: np.ndarray,
    p0: int,
    end: int,
    lo: int,
    hi: int,
    order: np.ndarray,
    lengths: np.ndarray,
    units: np.ndarray,
    known: int,
) -> int:
    """The first literal of the bucket ``order[lo:hi]`` that ``buf[p0:end]`` starts with, or
    -1; its first ``known`` units are already known to match (they picked the bucket)."""
    for t in range(lo, hi):
        m = order[t]
        ln = lengths[m]
        if p0 + ln <= end:
            ok = True
            for q in range(known, ln):
                if buf[p0 + q] != units[m, q]:
                    ok = False
                    break
            if ok:
                return int(m)
    return -1


@njit(cache=True, nogil=True)
def _has_marker(
    data: np.ndarray,
    start: int,
    end: int,
    mk_units: np.ndarray,
    mk_len: np.ndarray,
    mk_start: np.ndarray,
    mk_order: np.ndarray,
    mk_tri: np.ndarray,
) -> bool:
    """Whether ``data[start:end]`` contains one of the (benchmark) marker literals.

    A rolling 15-bit hash of the last three bytes, tested against a bitset of the markers'
    first three bytes, rules out almost every start position at once (start ``i - 2`` is tested
    at byte ``i``)."""
    x = 0
    for i in range(start, end):
        x = _roll(x, int(data[i]))
        if mk_tri[x >> 3] & (1 << (x & 7)) and i - 2 >= start:
            p0 = i - 2
            b0 = int(data[p0])
            lo, hi = mk_start[b0], mk_start[b0 + 1]
            if _literal_at(data, p0, end, lo, hi, mk_order, mk_len, mk_units, 1) >= 0:
                return True
    return False


@njit(cache=True, nogil=True)
def _kernel(
    offsets: np.ndarray,
    data: np.ndarray,
    r0: int,
    r1: int,
    lower: np.ndarray,
    masks: np.ndarray,
    kw_units: np.ndarray,
    kw_len: np.ndarray,
    kw_start: np.ndarray,
    kw_order: np.ndarray,
    kw_topic: np.ndarray,
    mk_units: np.ndarray,
    mk_len: np.ndarray,
    mk_start: np.ndarray,
    mk_order: np.ndarray,
    mk_tri: np.ndarray,
    kw_tri: np.ndarray,
    o_tmpl: np.ndarray,
    o_tail: np.ndarray,
    o_nd: np.ndarray,
    o_topic: np.ndarray,
    o_script: np.ndarray,
    o_chars: np.ndarray,
    o_bench: np.ndarray,
) -> None:
    """Fingerprint rows ``r0:r1`` of a string column given as Arrow offsets + UTF-8 bytes."""
    maxlen = 0
    for r in range(r0, r1):
        maxlen = max(maxlen, int(offsets[r + 1] - offsets[r]))
    buf = np.empty(2 * maxlen + 8, dtype=np.uint32)
    nm = masks.shape[0]
    tw = TEMPLATE_WORDS
    head = np.empty(tw, dtype=np.uint64)
    ring = np.empty(tw, dtype=np.uint64)
    tail = np.empty(tw, dtype=np.uint64)
    mins = np.empty(nm, dtype=np.uint64)
    maxu = _U64(0xFFFFFFFFFFFFFFFF)
    w_seed = _fmix(_U64(0x243F6A8885A308D3))
    for r in range(r0, r1):
        start = int(offsets[r])
        end = int(offsets[r + 1])
        o_bench[r] = _has_marker(data, start, end, mk_units, mk_len, mk_start, mk_order, mk_tri)
        nb, nchars, script = _mask_lower(data, start, end, lower, buf)
        o_chars[r] = nchars
        o_script[r] = 0 if end == start else (1 if script == 0 else script)
        s, e = _strip(buf, nb)
        # one pass over the stripped text: quoted spans -> "q", words (split on " "), word
        # hashes, MinHash minima, first topic keyword. Keywords hold no quote character, so
        # matching them on the text before span replacement (skipping the spans) is the same.
        for m in range(nm):
            mins[m] = maxu
        nw = 0
        h = w_seed
        wlen = 0
        topic = -1
        x = 0
        k = s
        while k <= e:
            c = 32 if k == e else int(buf[k])
            if c == 32:
                w = _fmix(h ^ (_U64(wlen) * _U64(0x9E3779B97F4A7C15)))
                if nw < tw:
                    head[nw] = w
                ring[nw % tw] = w
                nw += 1
                for m in range(nm):
                    v = w ^ masks[m]
                    if v < mins[m]:
                        mins[m] = v
                h = w_seed
                wlen = 0
            else:
                j = _quote_end(buf, k, e)
                if j >= 0:
                    h = _step(_step(_step(h, 34), 113), 34)
                    wlen += 3
                    x = _roll(_roll(_roll(x, 34), 113), 34)
                    k = j + 1
                    continue
                h = _step(h, c)
                wlen += 1
            # first topic keyword, by start position: start k - 2 is tested at character k
            # (any start whose three characters include a quote cannot match: keywords hold no
            # quote character, so a replaced span never matches and is never matched into)
            x = _roll(x, c)
            if topic < 0 and kw_tri[x >> 3] & (1 << (x & 7)) and k - 2 >= s:
                p0 = k - 2
                c0 = int(buf[p0])
                c1 = int(buf[p0 + 1])
                if c0 < 128 and c1 < 128:
                    g = c0 * 128 + c1
                    lo, hi = kw_start[g], kw_start[g + 1]
                    kwi = _literal_at(buf, p0, e, lo, hi, kw_order, kw_len, kw_units, 2)
                    if kwi >= 0:
                        topic = kw_topic[kwi]
            k += 1
        o_topic[r] = topic
        nh = min(nw, tw)
        o_tmpl[r] = _hash_seq(head, 0, nh, 7)
        for q in range(nh):
            tail[q] = ring[(nw - nh + q) % tw]
        o_tail[r] = _hash_seq(tail, 0, nh, 8)
        for b in range(o_nd.shape[1]):
            o_nd[r, b] = _hash_seq(mins, b * BAND_ROWS, BAND_ROWS, b + 1)


@njit(cache=True, nogil=True)
def _normalise_rows(
    offsets: np.ndarray, data: np.ndarray, lower: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised code points of every row (for tests): (concatenated code points, offsets)."""
    n = offsets.shape[0] - 1
    maxlen = 0
    for r in range(n):
        maxlen = max(maxlen, int(offsets[r + 1] - offsets[r]))
    buf = np.empty(2 * maxlen + 8, dtype=np.uint32)
    out = np.empty(3 * maxlen + 8, dtype=np.uint32)
    res = np.empty(3 * int(offsets[n] - offsets[0]) + 8 * n + 8, dtype=np.uint32)
    res_off = np.zeros(n + 1, dtype=np.int64)
    pos = 0
    for r in range(n):
        no = _normalise_one(data, int(offsets[r]), int(offsets[r + 1]), lower, buf, out)
        res[pos : pos + no] = out[:no]
        pos += no
        res_off[r + 1] = pos
    return res[:pos], res_off


@njit(cache=True, nogil=True, inline="always")
def _is_hex(b: int) -> bool:
    return (48 <= b <= 57) or (65 <= b <= 70) or (97 <= b <= 102)


@njit(cache=True, nogil=True)
def _ip_prefix_kernel(
    offsets: np.ndarray,
    data: np.ndarray,
    valid: np.ndarray,
    out_off: np.ndarray,
    out_data: np.ndarray,
    out_valid: np.ndarray,
) -> int:
    """IP -> network prefix, as Arrow offsets + bytes; returns the number of bytes written.

    With a ``:``, ``^(hex*:hex*:hex*:hex*)`` + ``::/64``; without, ``^(d+.d+.d+).d+$`` +
    ``.0/24``; anything else (and null) -> null."""
    n = offsets.shape[0] - 1
    pos = 0
    for r in range(n):
        out_off[r] = pos
        a = int(offsets[r])
        b = int(offsets[r + 1])
        ok = False
        if valid[r]:
            colon = False
            for i in range(a, b):
                if data[i] == 58:
                    colon = True
                    break
            i = a
            ok = True
            if colon:
                for g in range(4):
                    while i < b and _is_hex(int(data[i])):
                        i += 1
                    if g < 3:
                        if i < b and data[i] == 58:
                            i += 1
                        else:
                            ok = False
                            break
                cut = i
            else:
                cut = a
                for g in range(4):
                    j = i
                    while i < b and 48 <= data[i] <= 57:
                        i += 1
                    if i == j:
                        ok = False
                        break
                    if g < 3:
                        if i < b and data[i] == 46:
                            if g == 2:
                                cut = i
                            i += 1
                        else:
                            ok = False
                            break
                if i != b:
                    ok = False
            if ok:
                for i in range(a, cut):
                    out_data[pos] = data[i]
                    pos += 1
                if colon:  # "::/64"
                    out_data[pos] = 58
                    out_data[pos + 1] = 58
                    out_data[pos + 2] = 47
                    out_data[pos + 3] = 54
                else:  # ".0/24"
                    out_data[pos] = 46
                    out_data[pos + 1] = 48
                    out_data[pos + 2] = 47
                    out_data[pos + 3] = 50
                out_data[pos + 4] = 52
                pos += 5
        out_valid[r] = ok
    out_off[n] = pos
    return pos


# --------------------------------------------------------------------------- Python side


def _trigram_bitset(literals: Sequence[Sequence[int]]) -> np.ndarray:
    """Bitset (2**15 bits) of :func:`_roll` of the first three units of every literal."""
    bits = np.zeros(1 << 12, dtype=np.uint8)
    for u in literals:
        assert len(u) >= 3, "literals: at least 3 units"
        x = (((((u[0] & 0x7FFF) << 5) ^ u[1]) & 0x7FFF) << 5 ^ u[2]) & 0x7FFF
        bits[x >> 3] |= 1 << (x & 7)
    return bits


class _Tables:
    """Lookup tables passed to the kernel (built once, lazily)."""

    def __init__(
        self,
        keywords: Sequence[str],
        keyword_topics: Sequence[int],
        markers: Sequence[str],
    ) -> None:
        self.lower = _lower_table()
        self.kw_units, self.kw_len, self.kw_start, self.kw_order = _literal_table(
            keywords, by_pair=True
        )
        self.kw_topic = np.asarray(keyword_topics, dtype=np.int8)
        self.mk_units, self.mk_len, self.mk_start, self.mk_order = _literal_table(
            markers, by_pair=False
        )
        self.mk_tri = _trigram_bitset([list(m.encode()) for m in markers])
        self.kw_tri = _trigram_bitset([[ord(c) for c in k] for k in keywords])


_TablesKey = tuple[tuple[str, ...], tuple[int, ...], tuple[str, ...]]
_TABLES: dict[_TablesKey, _Tables] = {}
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()
PARALLEL_MIN_ROWS = 50_000  # below this, one thread (thread hand-off costs more than it saves)


def _tables(key: _TablesKey) -> _Tables:
    t = _TABLES.get(key)
    if t is None:
        t = _TABLES[key] = _Tables(*key)
    return t


def _arrow_buffers(s: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """(int64 offsets, uint8 UTF-8 bytes) of a string Series without nulls, as numpy views."""
    arr = s.to_arrow()
    if isinstance(arr, pa.ChunkedArray):  # pragma: no cover - polars exports one array
        arr = arr.combine_chunks()
    if arr.type != pa.large_string():
        arr = arr.cast(pa.large_string())
    _, off_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(off_buf, dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
    data = (
        np.frombuffer(data_buf, dtype=np.uint8)
        if data_buf is not None and data_buf.size
        else np.zeros(1, dtype=np.uint8)
    )
    return offsets, data


def _threads() -> int:
    """Two kernel threads when the process may use two CPUs or more."""
    try:
        n_cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        n_cpus = os.cpu_count() or 1
    return 2 if n_cpus >= 2 else 1


def fingerprint_prompts(
    prompts: pl.Series,
    keywords: tuple[str, ...],
    keyword_topics: tuple[int, ...],
    markers: tuple[str, ...],
) -> dict[str, np.ndarray]:
    """Fingerprint a string Series (nulls count as empty prompts).

    ``keywords`` (ASCII, >= 3 characters) are looked for in the normalised text, the first
    found gives the topic ``keyword_topics[i]``; ``markers`` (>= 3 bytes) in the raw text.

    Returns numpy arrays: ``tmpl``, ``tmpl_tail`` (uint64), ``nd`` (uint64, one column per
    band), ``topic`` (int8 index into the topics of ``keyword_topics``, -1 for none), ``script``
    (int8 index into :data:`SCRIPTS`), ``prompt_chars`` (int32), ``bench`` (bool)."""
    global _POOL
    t = _tables((keywords, keyword_topics, markers))
    if prompts.null_count():
        prompts = prompts.fill_null("")
    n = len(prompts)
    res: dict[str, np.ndarray] = {
        "tmpl": np.empty(n, dtype=np.uint64),
        "tmpl_tail": np.empty(n, dtype=np.uint64),
        "nd": np.empty((n, N_BANDS), dtype=np.uint64),
        "topic": np.empty(n, dtype=np.int8),
        "script": np.empty(n, dtype=np.int8),
        "prompt_chars": np.empty(n, dtype=np.int32),
        "bench": np.empty(n, dtype=np.bool_),
    }
    if n == 0:
        return res
    offsets, data = _arrow_buffers(prompts)

    def run(r0: int, r1: int) -> None:
        _kernel(
            offsets,
            data,
            r0,
            r1,
            t.lower,
            MASKS[:N_MINHASH],
            t.kw_units,
            t.kw_len,
            t.kw_start,
            t.kw_order,
            t.kw_topic,
            t.mk_units,
            t.mk_len,
            t.mk_start,
            t.mk_order,
            t.mk_tri,
            t.kw_tri,
            res["tmpl"],
            res["tmpl_tail"],
            res["nd"],
            res["topic"],
            res["script"],
            res["prompt_chars"],
            res["bench"],
        )

    n_threads = _threads()
    if n_threads < 2 or n < PARALLEL_MIN_ROWS:
        run(0, n)
    else:
        with _POOL_LOCK:
            if _POOL is None:
                _POOL = ThreadPoolExecutor(n_threads, thread_name_prefix="fpkernel")
        bounds = np.linspace(0, n, n_threads + 1).astype(int)
        futs = [_POOL.submit(run, int(a), int(b)) for a, b in itertools.pairwise(bounds)]
        for f in futs:
            f.result()
    return res


def normalised_text(prompts: pl.Series) -> list[str]:
    """The normalised text of every prompt, as the kernel sees it (for tests and debugging)."""
    if prompts.null_count():
        prompts = prompts.fill_null("")
    if len(prompts) == 0:
        return []
    offsets, data = _arrow_buffers(prompts)
    cps, off = _normalise_rows(offsets, data, _lower_table())
    text = cps.astype("<u4").tobytes().decode("utf-32-le", errors="surrogatepass")
    return [text[int(a) : int(b)] for a, b in itertools.pairwise(off)]


def ip_prefixes(ips: pl.Series) -> pl.Series:
    """/24 (IPv4) or /64 (IPv6, first four groups) network prefix of every IP (see
    :func:`_ip_prefix_kernel`); null where the address does not parse."""
    n = len(ips)
    if n == 0:
        return pl.Series(ips.name, [], dtype=pl.String)
    valid = ips.is_not_null().to_numpy()
    offsets, data = _arrow_buffers(ips.fill_null("") if ips.null_count() else ips)
    out_off = np.empty(n + 1, dtype=np.int64)
    out_data = np.empty(int(offsets[-1] - offsets[0]) + 5 * n, dtype=np.uint8)
    out_valid = np.empty(n, dtype=np.bool_)
    size = _ip_prefix_kernel(offsets, data, valid, out_off, out_data, out_valid)
    n_null = n - int(out_valid.sum())
    arr = pa.LargeStringArray.from_buffers(
        n,
        pa.py_buffer(out_off),
        pa.py_buffer(out_data[:size]),
        pa.py_buffer(np.packbits(out_valid, bitorder="little")) if n_null else None,
        n_null,
    )
    out = pl.Series(ips.name, arr)
    assert isinstance(out, pl.Series)
    return out
