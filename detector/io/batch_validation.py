"""Validate many events at once: a column-wise :func:`~detector.io.schema.check_record` for a
batch of decoded records, and NDJSON bodies decoded with orjson.

Results are *identical* to the per-line path (``json.loads`` + :func:`check_record` on each line,
:func:`records_to_frame` on the valid ones, a record at a time where a batch's timestamps cannot
be read together): the same canonical frame, the same ``(line, field, reason)`` problems. The
rules stay in one place: the column checks only *flag* records (a value of a type
:func:`check_record` refuses, a missing, null or unknown field, an integer out of range or
outside its field's bounds, a non-finite, huge or negative-where-forbidden number, a timestamp
:func:`check_timestamp` refuses, an identifier or short string breaking
:func:`~detector.io.schema.check_string`), and each flagged record is
then checked by :func:`check_record` itself, so each problem keeps its field and reason.

Decoding: orjson, and the stdlib ``json`` wherever orjson refuses a line (NaN, a lone
surrogate, a BOM, malformed JSON: the message is ``json``'s) and for every flagged line, so every
value that is kept or reported is exactly what ``json.loads`` gives. (orjson and ``json`` agree on
every document orjson accepts, except integers beyond 64 bits, which orjson turns into floats of
magnitude >= 2**63: such floats flag their record.)

Bulk path (:func:`validate_ndjson`, tried first): pyarrow's JSON reader decodes the whole body
into typed columns with the GIL released (the ingest request path is otherwise bound by the
GIL: orjson's Python objects cost as much to build and free as to check), then vectorised checks
confirm that EVERY line is valid and that the frame is the one the path above would build. It is
all or nothing: any doubt (a reader error, a null where a value is required, a float that is
non-finite or beyond 2**53, a timestamp outside a strict ISO-8601 subset that ``check_timestamp``
accepts, a line that is not one object, invalid UTF-8) and the body goes the orjson way, which
names every problem. pyarrow is strict where it matters: a value of another JSON type, a
duplicate key, an unknown field, a lone surrogate, an integer out of the column's range are all
errors. (Why not polars' NDJSON reader: it loses the JSON types :func:`check_record` checks: a
number in a string column reads as a string, the first of two duplicate keys wins where ``json``
keeps the last, a lone surrogate reads as NUL.)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import numpy as np
import orjson
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from detector.io.schema import (
    DOT_IDS,
    EVENT_COLUMNS,
    EVENT_SCHEMA,
    ID_FIELDS,
    ID_FORBIDDEN,
    ID_FORBIDDEN_RE2,
    INT_RANGES,
    LABEL_FIELDS,
    LABEL_FORBIDDEN,
    LABEL_FORBIDDEN_RE2,
    MAX_ID_CHARS,
    MAX_LABEL_CHARS,
    MAX_VALUES,
    MIN_VALUES,
    NULLABLE_EVENT_COLUMNS,
    REQUIRED_EVENT_COLUMNS,
    check_record,
    check_string,
    check_timestamp,
    columns_to_frame,
    records_to_frame,
)

Problem = tuple[int, str | None, str]  # (line or record index, field, reason)
_NONE = type(None)
_KNOWN = frozenset(EVENT_COLUMNS)
_REQUIRED = frozenset(REQUIRED_EVENT_COLUMNS)
_BIG = 2.0**63  # orjson reads integers beyond 64 bits as floats at least this large
_EMPTY: dict[str, Any] = {}


def _column_rule(name: str, dtype: pl.DataType) -> tuple[str, frozenset[type]]:
    """(kind, the value types :func:`check_value` may accept) of one column."""
    types: set[type]
    if isinstance(dtype, pl.Datetime):
        kind, types = "ts", {str}
    elif isinstance(dtype, pl.String):
        kind, types = "str", {str}
    elif isinstance(dtype, pl.Boolean):
        kind, types = "bool", {bool}
    elif dtype.base_type().__name__ in INT_RANGES:
        kind, types = "int", {int}
    else:  # Float32
        kind, types = "float", {int, float}
    if name in NULLABLE_EVENT_COLUMNS:
        types.add(_NONE)
    return kind, frozenset(types)


_RULES = {c: _column_rule(c, t) for c, t in EVENT_SCHEMA.items()}


def _int_bounds(name: str, dtype: pl.DataType) -> tuple[int, int]:
    """The integers :func:`check_value` accepts in an integer column: its dtype's range,
    narrowed by the field's bounds."""
    lo, hi = INT_RANGES[dtype.base_type().__name__]
    return max(lo, MIN_VALUES.get(name, lo)), min(hi, MAX_VALUES.get(name, hi))


_INT_BOUNDS = {c: _int_bounds(c, t) for c, t in EVENT_SCHEMA.items() if _RULES[c][0] == "int"}
# integer columns whose field bounds are narrower than their dtype (the bulk path checks them)
_NARROWED = {
    c: b for c, b in _INT_BOUNDS.items() if b != INT_RANGES[EVENT_SCHEMA[c].base_type().__name__]
}
_FLOAT_MINS = {
    c: MIN_VALUES[c] for c, (kind, _) in _RULES.items() if kind == "float" and c in MIN_VALUES
}


def _strings_pass(name: str, values: list[str]) -> bool:
    """Does every string of a column surely pass :func:`check_string`? (C loops: the lengths,
    one regex search over the values joined: a forbidden character is one character.)"""
    lengths = list(map(len, values))
    joined = "".join(values)
    if name in ID_FIELDS:
        return (
            min(lengths) > 0
            and max(lengths) <= MAX_ID_CHARS
            and not ID_FORBIDDEN.search(joined)
            and DOT_IDS.isdisjoint(values)
        )
    return max(lengths) <= MAX_LABEL_CHARS and not LABEL_FORBIDDEN.search(joined)


_STRING_RULES = frozenset(ID_FIELDS) | frozenset(LABEL_FIELDS)


class MalformedRecord(ValueError):
    """A record cannot be decoded; ``reason`` is the problem to report for it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class ValidatedBatch:
    """The valid records as a canonical frame, and every problem of the others."""

    frame: pl.DataFrame
    rows: list[int] = field(default_factory=list)  # line (or index) of each frame row
    problems: list[Problem] = field(default_factory=list)  # by line, then check order


def _beyond(values: list[Any], types: set[type]) -> bool:
    """Might a number be non-finite or at least 2**63 in magnitude? (A sum of magnitudes is
    NaN, infinite or that large if any one is; one C loop instead of a Python one.)"""
    numbers = values if types <= {int, float} else [v for v in values if type(v) in (int, float)]
    try:
        return not sum(map(abs, numbers)) < _BIG
    except OverflowError:
        return True


def _flag(records: Sequence[Any]) -> tuple[set[int], dict[str, list[Any]]]:
    """Records the column checks flag, and every record's values column by column."""
    flagged = {i for i, r in enumerate(records) if type(r) is not dict}
    dicts = records if not flagged else [r if type(r) is dict else _EMPTY for r in records]
    by_name: dict[str, list[Any]] | None = None
    if set(map(len, dicts)) == {len(EVENT_COLUMNS)}:  # the usual case: every field, no other
        try:  # transpose in C; a KeyError means some record has another field instead
            table = zip(*map(itemgetter(*EVENT_COLUMNS), dicts), strict=True)
            by_name = dict(zip(EVENT_COLUMNS, map(list, table), strict=True))
        except KeyError:
            pass
    if by_name is None:  # records lacking fields or with unknown ones: flag their shapes
        shapes = set(map(tuple, dicts))  # usually a few distinct key sequences
        bad = {s for s in shapes if not (_REQUIRED.issubset(s) and _KNOWN.issuperset(s))}
        if bad:
            flagged.update(i for i, d in enumerate(dicts) if tuple(d) in bad)
        by_name = {name: [d.get(name) for d in dicts] for name in EVENT_COLUMNS}
    columns: dict[str, list[Any]] = {}
    for name in EVENT_COLUMNS:
        kind, allowed = _RULES[name]
        values = by_name[name]
        columns[name] = values
        types = set(map(type, values))
        if not types <= allowed:
            flagged.update(i for i, v in enumerate(values) if type(v) not in allowed)
        if kind == "int" and int in types:
            lo, hi = _INT_BOUNDS[name]
            ints = values if types == {int} else [v for v in values if type(v) is int]
            if min(ints) < lo or max(ints) > hi:
                flagged.update(
                    i for i, v in enumerate(values) if type(v) is int and not lo <= v <= hi
                )
        elif kind == "float" and (float in types or int in types):
            if float in types and _beyond(values, types):
                flagged.update(  # NaN compares False: flagged too
                    i for i, v in enumerate(values) if type(v) is float and not -_BIG < v < _BIG
                )
            low = _FLOAT_MINS.get(name)
            if low is not None:
                nums = [v for v in values if type(v) is int or type(v) is float]
                if not all(v >= low for v in nums):  # NaN compares False: flagged too
                    flagged.update(
                        i
                        for i, v in enumerate(values)
                        if (type(v) is int or type(v) is float) and not v >= low
                    )
        elif kind == "str" and name in _STRING_RULES and str in types:
            strs = values if types == {str} else [v for v in values if type(v) is str]
            if not _strings_pass(name, strs):
                flagged.update(
                    i for i, v in enumerate(values) if type(v) is str and check_string(name, v)
                )
        elif kind == "ts" and str in types:
            ok = [v is None or check_timestamp(v) is None for v in values]
            if not all(ok):
                flagged.update(i for i, good in enumerate(ok) if not good)
    return flagged, columns


def validate_records(
    records: Sequence[Any],
    lines: Sequence[int] | None = None,
    exact: Callable[[int], Any] | None = None,
) -> ValidatedBatch:
    """Check decoded records (JSON values) against the canonical schema, unknown fields refused.

    Identical to :func:`check_record` on each record and :func:`records_to_frame` on the valid
    ones (a record at a time, reporting ``ts`` "cannot be stored", when the batch's timestamps
    cannot be converted together). ``lines`` numbers the records in ``rows`` and problems
    (default: 0-based index). ``exact(i)`` decodes record ``i`` again with the stdlib ``json``
    (or raises :class:`MalformedRecord`) when ``records`` came from a faster decoder: it is asked
    for flagged records only, and its value replaces the record."""
    where = list(range(len(records))) if lines is None else list(lines)
    flagged, columns = _flag(records)
    if not flagged:  # the usual batch
        return _store(list(records), where, columns)
    problems: list[Problem] = []
    final: dict[int, Any] = {}  # flagged records that passed (re-decoded where asked)
    for i in sorted(flagged):
        try:
            rec = exact(i) if exact is not None else records[i]
        except MalformedRecord as exc:
            problems.append((where[i], None, exc.reason))
            continue
        found = check_record(rec)
        if found:
            problems.extend((where[i], f, reason) for f, reason in found)
        else:
            final[i] = rec
    keep = [i for i in range(len(records)) if i not in flagged or i in final]
    recs = [final.get(i, records[i]) for i in keep]
    same = len(keep) == len(records) and all(final[i] is records[i] for i in final)
    out = _store(recs, [where[i] for i in keep], columns if same else None)
    out.problems = sorted(problems + out.problems, key=lambda p: p[0])  # stable
    return out


def _store(
    records: list[Any], rows: list[int], columns: dict[str, list[Any]] | None = None
) -> ValidatedBatch:
    """The canonical frame of valid records (``columns``: their values, when already split);
    a record at a time, reporting those that cannot be stored, when the batch fails to convert
    (mixed timestamp layouts: polars reads a batch in the layout of its first timestamp)."""
    try:
        if columns is None:
            columns = {c: [r.get(c) for r in records] for c in EVENT_COLUMNS}
        return ValidatedBatch(columns_to_frame(columns), rows, [])
    except Exception:
        pass
    frames: list[pl.DataFrame] = []
    kept: list[int] = []
    problems: list[Problem] = []
    for rec, line in zip(records, rows, strict=True):
        try:
            frames.append(records_to_frame([rec]))
            kept.append(line)
        except Exception as exc:  # a timestamp polars cannot read, or a lone surrogate
            fld = None if isinstance(exc, UnicodeError) else "ts"
            problems.append((line, fld, f"cannot be stored: {str(exc).splitlines()[0]}"))
    frame = pl.concat(frames, how="vertical") if frames else records_to_frame([])
    return ValidatedBatch(frame, kept, problems)


class TooManyEvents(ValueError):
    """An NDJSON body holds more than the allowed number of events (non-blank lines)."""


def json_problem(raw: bytes) -> tuple[Any, str | None]:
    """``(value, None)`` from the stdlib ``json``, or ``(None, reason)`` when malformed."""
    try:
        return json.loads(raw), None
    except json.JSONDecodeError as exc:
        return None, f"malformed JSON: {exc.msg} at column {exc.colno}"
    except UnicodeDecodeError as exc:
        return None, f"malformed JSON: not UTF-8 ({exc.reason})"
    except RecursionError:
        return None, "malformed JSON: nested too deeply"


def _json_exact(raw: bytes) -> Any:
    value, reason = json_problem(raw)
    if reason is not None:
        raise MalformedRecord(reason)
    return value


def _nonblank_lines(body: bytes, max_events: int | None) -> tuple[list[int], list[bytes]]:
    """1-based lines of the body, and the stripped lines, of every non-blank line."""
    raws = list(map(bytes.strip, body.split(b"\n")))  # C loops
    if raws and not raws[-1]:  # the usual final newline
        raws.pop()
    if all(raws):  # the usual body: no blank line
        numbers = list(range(1, len(raws) + 1))
    else:
        numbers = [n for n, raw in enumerate(raws, start=1) if raw]
        raws = [raw for raw in raws if raw]
    if max_events is not None and len(raws) > max_events:
        raise TooManyEvents(f"more than {max_events} events in one request")
    return numbers, raws


def _arrow_type(dtype: pl.DataType) -> pa.DataType:
    """What pyarrow's JSON reader reads a column as: timestamps as strings (checked, then
    cast), Float32 as float64 (then cast, as the per-line path converts Python floats), the
    rest as is."""
    if isinstance(dtype, pl.Datetime | pl.String):
        return pa.string()
    if isinstance(dtype, pl.Float32):
        return pa.float64()
    arrow_type: pa.DataType = pl.Series(dtype=dtype).to_arrow().type
    return arrow_type


_ARROW_PARSE = pa_json.ParseOptions(
    explicit_schema=pa.schema([(c, _arrow_type(t)) for c, t in EVENT_SCHEMA.items()]),
    unexpected_field_behavior="error",
)
_FLOATS = [c for c, t in EVENT_SCHEMA.items() if isinstance(t, pl.Float32)]
_NEWLINE, _OPEN, _CLOSE = b"\n{}"
_SCHEMA = pl.Schema(EVENT_SCHEMA)
_TS_ARROW = pa.timestamp("us", "UTC")
# Arrow buffers of the bulk path come from malloc: the frame keeps some of them (polars imports
# Arrow columns without copying), and pyarrow's default pool (mimalloc) holds on to freed memory
# (about 50 MB more resident after the service benchmark's load)
_POOL = pa.system_memory_pool()
_EXACT = 2.0**53  # a float column's values below this convert to Float32 the same either way
# ISO-8601 timestamps that check_timestamp surely accepts (a date that does not exist, such as
# 02-30, passes this pattern but then fails Arrow's cast: the body goes the slow way); for
# these layouts Arrow's cast and polars' parse in columns_to_frame give the same instant
_TS_PATTERN = (
    r"^[1-9]\d{3}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d"
    r"(\.\d{1,6})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$"
)


def _object_lines(data: bytes) -> int | None:
    """How many lines ``data`` holds when each starts with '{' and ends with '}' (no blank
    line, no whitespace at either end; a final newline or none); None otherwise. numpy: no
    Python loop over the lines."""
    if data[:1] != b"{":
        return None
    buf = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(buf == _NEWLINE)  # never 0: data starts with '{'
    last = buf.size - 1
    if ends.size and ends[-1] == last:
        ends, last = ends[:-1], last - 1
    if buf[last] != _CLOSE:
        return None
    if ends.size and not ((buf[ends - 1] == _CLOSE).all() and (buf[ends + 1] == _OPEN).all()):
        return None
    return int(ends.size) + 1


def _bulk(data: bytes, n: int) -> pl.DataFrame | None:
    """The canonical frame of ``data``, ``n`` lines each starting with '{' and ending with '}'
    (see :func:`_object_lines`), when EVERY line is a valid event: the frame the per-line path
    builds (the same values, dtypes and timestamps). None when in any doubt. pyarrow decodes
    and checks with the GIL released, in this thread (not in polars' pool, which the background
    fingerprinting and rescoring keep busy)."""
    # A raw newline cannot occur inside a JSON string, so with every line starting with '{' and
    # ending with '}', n values found means one object per line (no object spans two lines:
    # a line ending with '}' inside an unfinished object closes a nested object, an error).
    # (The first value being an object also matters: pyarrow 26 crashes on a body that is
    # just ``null``.)
    try:
        options = pa_json.ReadOptions(use_threads=False, block_size=len(data) + 1)
        table = pa_json.read_json(
            pa.py_buffer(data), read_options=options, parse_options=_ARROW_PARSE, memory_pool=_POOL
        )
        if table.num_rows != n:  # e.g. two objects on one line
            return None
        table.validate(full=True)  # UTF-8 (the reader does not check it)
    except (pa.ArrowException, ValueError):
        return None
    if any(table.column(c).null_count for c in REQUIRED_EVENT_COLUMNS):
        return None  # missing or null required fields
    ts = table.column("ts")
    for name in _FLOATS:  # nulls pass; NaN compares False
        below = pc.less(pc.abs(table.column(name), memory_pool=_POOL), _EXACT, memory_pool=_POOL)
        if pc.all(below, memory_pool=_POOL).as_py() is False:
            return None
    if not _bulk_rules_pass(table):
        return None
    if not pc.all(pc.match_substring_regex(ts, _TS_PATTERN, memory_pool=_POOL)).as_py():
        return None
    try:
        ts = pc.cast(ts, _TS_ARROW, memory_pool=_POOL)
    except pa.ArrowException:  # a date that does not exist, e.g. 02-30
        return None
    table = table.set_column(table.schema.get_field_index("ts"), "ts", ts)
    for name in _FLOATS:  # round to nearest, as polars converts Python floats
        i = table.schema.get_field_index(name)
        f32 = pc.cast(table.column(i), pa.float32(), safe=False, memory_pool=_POOL)
        table = table.set_column(i, name, f32)
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    if frame.schema != _SCHEMA:  # pragma: no cover - the schemas agree
        return None
    return frame


def _bulk_rules_pass(table: pa.Table) -> bool:
    """Does every value of ``table`` (read by pyarrow, NaN already excluded) surely pass the
    field rules of :func:`detector.io.schema.check_value`: integer and float bounds, identifier
    and short-string rules? Conservative (a False only sends the body the per-record way) and
    cheap: numpy over the columns' buffers (values under null slots included: at worst a
    needless False), and a regex only for string columns holding bytes other than printable
    ASCII."""
    for name, (lo, hi) in _NARROWED.items():
        for chunk in table.column(name).chunks:
            values = _numbers(chunk)
            if values.size and (values.min() < lo or values.max() > hi):
                return False
    for name, low in _FLOAT_MINS.items():
        for chunk in table.column(name).chunks:
            values = _numbers(chunk)
            if values.size and not values.min() >= low:  # NaN under a null: a needless False
                return False
    for name in _STRING_RULES:
        is_id = name in ID_FIELDS
        for chunk in table.column(name).chunks:
            if not _strings_surely_pass(chunk, is_id):
                return False
    return True


def _numbers(chunk: pa.Array) -> np.ndarray:
    """The values buffer of a numeric array, as numpy (null slots hold whatever is there)."""
    dtype = np.dtype(chunk.type.to_pandas_dtype())
    values = np.frombuffer(chunk.buffers()[1], dtype=dtype)
    return values[chunk.offset : chunk.offset + len(chunk)]


def _strings_surely_pass(chunk: pa.Array, is_id: bool) -> bool:
    """Do the strings of ``chunk`` surely pass :func:`~detector.io.schema.check_string`?"""
    if len(chunk) == 0:
        return True
    offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int32)
    offsets = offsets[chunk.offset : chunk.offset + len(chunk) + 1]
    lengths = np.diff(offsets)  # bytes (>= characters); null slots: 0
    limit = MAX_ID_CHARS if is_id else MAX_LABEL_CHARS
    if lengths.max() > limit and pc.max(pc.utf8_length(chunk)).as_py() > limit:
        return False
    if is_id and lengths.min() <= 2:  # empty, '.' or '..' (or a null slot)
        least = lengths.min() if not chunk.null_count else pc.min(pc.binary_length(chunk)).as_py()
        dots = least is not None and least <= 2 and pc.any(pc.is_in(chunk, _DOT_IDS)).as_py()
        if least == 0 or dots:
            return False
    data = chunk.buffers()[2]
    if data is None or offsets[-1] == offsets[0]:
        return True
    raw = np.frombuffer(data, dtype=np.uint8)[offsets[0] : offsets[-1]]
    if raw.min() >= 0x20 and raw.max() < 0x7F:  # printable ASCII (the usual column)
        return not is_id or not (b"../" in (text := raw.tobytes()) or b"..\\" in text)
    pattern = ID_FORBIDDEN_RE2 if is_id else LABEL_FORBIDDEN_RE2  # control or non-ASCII bytes
    return not pc.any(pc.match_substring_regex(chunk, pattern, memory_pool=_POOL)).as_py()


_DOT_IDS = pa.array(sorted(DOT_IDS), pa.string())


def validate_ndjson(body: bytes, max_events: int | None = None) -> ValidatedBatch:
    """Validate an NDJSON body of canonical events (the fast paths); blank lines are skipped,
    lines are numbered from 1 in the body as given. Raises :class:`TooManyEvents`."""
    lines: tuple[list[int], list[bytes]] | None = None
    data = body
    n = _object_lines(body)
    if n is None:  # blank lines, or whitespace around lines: the stripped lines, joined
        lines = _nonblank_lines(body, max_events)
        data = b"\n".join(lines[1])
        n = _object_lines(data)
    elif max_events is not None and n > max_events:
        raise TooManyEvents(f"more than {max_events} events in one request")
    frame = _bulk(data, n) if n is not None else None
    if lines is None:
        if frame is not None:  # every line valid (the usual body)
            return ValidatedBatch(frame, list(range(1, frame.height + 1)), [])
        lines = _nonblank_lines(body, max_events)
    numbers, raws = lines
    if frame is not None:
        return ValidatedBatch(frame, numbers, [])
    try:  # every line decodes (one C loop)
        records: list[Any] = list(map(orjson.loads, raws))
    except orjson.JSONDecodeError:
        pass
    else:
        return validate_records(records, numbers, lambda i: _json_exact(raws[i]))
    pairs = zip(numbers, raws, strict=True)
    records = []
    where: list[int] = []
    raws = []
    problems: list[Problem] = []
    loads = orjson.loads
    for lineno, raw in pairs:
        try:
            value = loads(raw)
        except orjson.JSONDecodeError:
            value, reason = json_problem(raw)
            if reason is not None:
                problems.append((lineno, None, reason))
                continue
        records.append(value)
        where.append(lineno)
        raws.append(raw)
    out = validate_records(records, where, lambda i: _json_exact(raws[i]))
    if problems:
        out.problems = sorted(problems + out.problems, key=lambda p: p[0])
    return out


def validate_ndjson_per_line(body: bytes, max_events: int | None = None) -> ValidatedBatch:
    """The reference path :func:`validate_ndjson` must equal: ``json.loads`` and
    :func:`check_record` line by line, :func:`records_to_frame` on the valid lines (a line at a
    time when they cannot be converted together)."""
    records: list[dict[str, Any]] = []
    rows: list[int] = []
    problems: list[Problem] = []
    numbers, raws = _nonblank_lines(body, max_events)
    for lineno, raw in zip(numbers, raws, strict=True):
        value, reason = json_problem(raw)
        found = [(None, reason)] if reason is not None else check_record(value)
        if found:
            problems.extend((lineno, f, r) for f, r in found)
        else:
            records.append(value)
            rows.append(lineno)
    out = _store(records, rows)
    out.problems = sorted(problems + out.problems, key=lambda p: p[0])
    return out
