"""Shared machinery of the log adapters: typed value conversion that names the field at
fault, and reading JSONL / JSON-array / CSV logs record by record with line numbers."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import orjson
import polars as pl

from detector.io.schema import (
    EVENT_COLUMNS,
    EVENT_SCHEMA,
    INCOMPLETE_TAIL,
    EventSchemaError,
    Problem,
    conform,
    expand_paths,
    iter_ndjson_records,
)
from detector.io.tally import InputTally

Paths = str | Path | Sequence[str | Path]
UNKNOWN = "unknown"
# what LiteLLM logs instead of a message's text when message logging is off: no prompt (not a
# prompt every account would share)
REDACTED = "redacted-by-litellm"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_INT_BITS = {"Int16": 15, "Int32": 31, "Int64": 63}
_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv")
_CALL_TYPES = {
    "completion": "chat.completions",
    "text_completion": "completions",
    "embedding": "embeddings",
    "responses": "responses",
}
_ParsedRecord = tuple[int, str, Any, str | None]  # (line or element, kind, record, error)


class _Bad(Exception):
    """One problem with one field of one input record."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


# --------------------------------------------------------------------------- value coercion


def _str(value: Any, field: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # numeric ids
    raise _Bad(field, f"expected a string, got {type(value).__name__}")


def _quoted(value: str, want: str) -> str:
    return f"expected {want}, got the string {value!r} (JSON numbers and booleans are not quoted)"


def _int(value: Any, field: str, dtype: str = "Int32") -> int:
    """An integer from a JSON number (a float with no fraction too). A string is refused,
    ``"1024"`` included: only the cells of a CSV file are text (:class:`TextCells`)."""
    out: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        out = value
    elif isinstance(value, float) and value.is_integer():
        out = int(value)
    if out is None:
        if isinstance(value, str):
            raise _Bad(field, _quoted(value, "an integer"))
        raise _Bad(field, f"expected an integer, got {value!r}")
    bits = _INT_BITS[dtype]
    if not -(2**bits) <= out < 2**bits:
        raise _Bad(field, f"integer {out} out of range for {dtype}")
    return out


def _int16(value: Any, field: str) -> int:
    return _int(value, field, "Int16")


def _float(value: Any, field: str) -> float:
    """A finite number from a JSON number; a string is refused (see :func:`_int`)."""
    if isinstance(value, str):
        raise _Bad(field, _quoted(value, "a number"))
    out: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        out = float(value)
    if out is None or not math.isfinite(out):
        raise _Bad(field, f"expected a finite number, got {value!r}")
    return out


def _bool(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        raise _Bad(field, _quoted(value, "true/false"))
    raise _Bad(field, f"expected true/false, got {value!r}")


def int_text(value: str, field: str, dtype: str = "Int32") -> int:
    """An integer written as text (a CSV cell; a field its log format documents as a string,
    such as Azure's ``resultSignature``)."""
    try:
        return _int(int(value.strip()), field, dtype)
    except ValueError:
        raise _Bad(field, f"expected an integer, got {value!r}") from None


def _float_text(value: str, field: str) -> float:
    try:
        return _float(float(value.strip()), field)
    except ValueError:
        raise _Bad(field, f"expected a finite number, got {value!r}") from None


def _bool_text(value: str, field: str) -> bool:
    text = value.strip().lower()
    if text in ("true", "false", "1", "0"):
        return text in ("true", "1")
    raise _Bad(field, f"expected true/false, got {value!r}")


class TextCells(dict[str, Any]):
    """A record whose values are all text: a CSV row. Its numbers and booleans are read from
    their text (:data:`_FROM_TEXT`); values decoded from JSON text inside it are typed."""


_FROM_TEXT: dict[Callable[..., Any], Callable[..., Any]] = {
    _int: int_text,
    _int16: lambda v, f: int_text(v, f, "Int16"),
    _float: _float_text,
    _bool: _bool_text,
}


def _ts_us(value: Any, field: str) -> int:
    """Epoch microseconds (UTC) of an ISO-8601 string or a unix timestamp."""
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            try:
                parsed = datetime.fromisoformat(text)
            except ValueError:
                raise _Bad(field, f"cannot parse {value!r} as a timestamp") from None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            return (parsed - _EPOCH) // _US
    if number is None or not math.isfinite(number):
        raise _Bad(field, f"expected an ISO-8601 timestamp or unix seconds, got {value!r}")
    seconds = number / 1000 if abs(number) >= 1e11 else number
    return round(seconds * 1_000_000)


def _json(value: Any, field: str) -> Any:
    """A JSON column: objects / lists pass through, JSON text is decoded, "" is None."""
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise _Bad(field, f"malformed JSON: {exc.msg} at column {exc.colno}") from None
    return value


def _key_id(value: str) -> str:
    """Never keep a raw secret key: ``sk-...`` keys become a short sha256 digest."""
    raw = value.startswith("sk-") and len(value) >= 20 and "*" not in value and "..." not in value
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:16] if raw else value


def _present(value: Any) -> bool:
    return value is not None and value != ""


# --------------------------------------------------------------------------- record reading


class _Record:
    """Reads fields of one input record, collecting every ``(field, reason)`` problem."""

    def __init__(self, data: dict[str, Any], prefix: str = "") -> None:
        self.data = data
        self.prefix = prefix
        self.problems: list[tuple[str | None, str]] = []
        self.text = isinstance(data, TextCells)  # a CSV row: numbers are text

    def sub(self, key: str, *, decode: bool = False, strict: bool = True) -> _Record:
        """The nested object under ``key`` ({} when absent), sharing this record's problems.

        ``decode`` accepts JSON text; ``strict=False`` reads any non-object as {}.
        """
        value = self.data.get(key)
        try:
            value = _json(value, self.prefix + key) if decode else value
        except _Bad as exc:
            self.problems.append((exc.field, exc.reason))
            value = None
        if strict and value is not None and not isinstance(value, dict):
            self.problems.append((self.prefix + key, f"expected an object, got {value!r:.40}"))
        child = _Record(value if isinstance(value, dict) else {}, f"{self.prefix}{key}.")
        child.problems = self.problems
        return child

    def pick(self, *keys: str) -> tuple[str, Any]:
        """The first of ``keys`` with a non-empty value, as ``(field name, value)``."""
        for key in keys:
            if _present(self.data.get(key)):
                return self.prefix + key, self.data[key]
        return self.prefix + keys[0], None

    def convert(self, fn: Callable[[Any, str], Any], field: str, value: Any) -> Any:
        if self.text and isinstance(value, str):
            fn = _FROM_TEXT.get(fn, fn)
        try:
            return fn(value, field)
        except _Bad as exc:
            self.problems.append((exc.field, exc.reason))
            return None

    def req(self, fn: Callable[[Any, str], Any], *keys: str) -> Any:
        field, value = self.pick(*keys)
        if value is None:
            also = " or ".join(repr(k) for k in keys[1:])
            reason = "missing required field" + (f" (or {also})" if also else "")
            self.problems.append((field, reason))
            return None
        return self.convert(fn, field, value)

    def opt(self, fn: Callable[[Any, str], Any], *keys: str, default: Any = None) -> Any:
        field, value = self.pick(*keys)
        out = None if value is None else self.convert(fn, field, value)
        return default if out is None else out


def _is_log(path: Path) -> bool:
    return path.name.lower().removesuffix(".gz").endswith(_SUFFIXES)


def _open_text(path: Path, encoding: str = "utf-8-sig") -> IO[str]:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding=encoding, newline="")
    return path.open("r", encoding=encoding, newline="")


def _iter_records(path: Path, csv_ok: bool) -> Iterator[_ParsedRecord]:
    """Yield ``(line or element, kind, record, error)`` for each record of one log file."""
    if path.name.lower().removesuffix(".gz").endswith(".csv"):
        if not csv_ok:
            yield 0, "line", None, "CSV is not supported for this source (expected JSONL)"
        else:
            yield from _iter_csv(path)
        return
    with _open_text(path) as fh:
        head = fh.read(4096).lstrip()
    if head.startswith("["):
        with _open_text(path) as fh:
            try:
                items = json.load(fh)
            except json.JSONDecodeError as exc:
                yield exc.lineno, "line", None, f"malformed JSON: {exc.msg} at column {exc.colno}"
                return
        for index, item in enumerate(items, start=1):
            yield index, "row", item, None
        return
    for lineno, obj, err in iter_ndjson_records(path):
        yield lineno, "line", obj, err


def _iter_csv(path: Path) -> Iterator[_ParsedRecord]:
    limit = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)  # messages / response cells can be large
    try:
        with _open_text(path) as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                return
            while True:
                start = reader.line_num + 1
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    yield start, "line", None, f"malformed CSV: {exc}"
                    return
                if not row:
                    continue
                if len(row) != len(header):
                    yield start, "line", None, f"{len(row)} cells, header has {len(header)}"
                    continue
                cells = {k: (v if v != "" else None) for k, v in zip(header, row, strict=True)}
                yield start, "line", TextCells(cells), None
    finally:
        csv.field_size_limit(limit)


_EventFn = Callable[[Any], tuple[dict[str, Any], list[tuple[str | None, str]]]]
# one decoded input record -> the records it holds, each with the prefix of its fields' names
# (an envelope such as Azure's {"records": [...]} holds several; most records are their own)
_SplitFn = Callable[[Any], list[tuple[str, Any]]]


def _whole(obj: Any) -> list[tuple[str, Any]]:
    return [("", obj)]


def _convert_files(
    paths: Paths,
    to_event: _EventFn,
    *,
    csv_ok: bool,
    split: _SplitFn = _whole,
    tally: InputTally | None = None,
) -> pl.DataFrame:
    """Canonical events of every record of ``paths``. A bad record (a line, a JSON array
    element, a CSV record) is counted in ``tally`` with its problems; past its budget
    (default: none) :class:`EventSchemaError` is raised. An envelope holding several records
    (Azure) keeps its good ones and counts as one bad line when any is bad. An incomplete
    last line of a JSON-lines file (a log still being written) is skipped, not counted."""
    tally = tally if tally is not None else InputTally()
    columns: dict[str, list[Any]] = {c: [] for c in EVENT_COLUMNS}
    for path in expand_paths(paths, _is_log, ".jsonl, .json or .csv", prefer=None):
        try:
            for line, kind, obj, err in _iter_records(path, csv_ok):
                where = line or None
                if err == INCOMPLETE_TAIL:
                    tally.incomplete_tail(str(path), line)
                    continue
                tally.records += 1
                problems: list[Problem] = []
                if err is not None:
                    problems.append(Problem(str(path), where, None, err, kind))
                for prefix, record in split(obj) if err is None else ():
                    event, bad = to_event(record)
                    problems.extend(
                        Problem(str(path), where, _prefixed(prefix, f), r, kind) for f, r in bad
                    )
                    if not bad:
                        for c in EVENT_COLUMNS:
                            columns[c].append(event.get(c))
                if problems:
                    tally.bad_record(problems)
        except (UnicodeDecodeError, OSError, EOFError) as exc:
            unreadable = Problem(str(path), None, None, f"cannot read: {exc}")
            raise EventSchemaError([unreadable]) from None
        tally.check()
    return _frame(columns)


def _prefixed(prefix: str, field: str | None) -> str | None:
    if not prefix:
        return field
    return prefix + field if field else prefix.rstrip(".")


@dataclass
class ConvertedRecords:
    """Canonical events of the records that converted, and every problem of the others."""

    frame: pl.DataFrame
    rows: list[int] = field(default_factory=list)  # number of each frame row's record
    problems: list[tuple[int, str | None, str]] = field(default_factory=list)  # (n, field, why)


def convert_records(
    records: Iterable[tuple[int, Any, str | None]], to_event: _EventFn, split: _SplitFn = _whole
) -> ConvertedRecords:
    """Convert decoded records ``(number, record, decode error or None)`` with an adapter's
    ``to_event``, keeping the good ones: what the service's source endpoints ingest (the same
    mapping as ``distillguard convert``, which instead refuses a file with any bad record)."""
    columns: dict[str, list[Any]] = {c: [] for c in EVENT_COLUMNS}
    rows: list[int] = []
    problems: list[tuple[int, str | None, str]] = []
    for number, obj, err in records:
        if err is not None:
            problems.append((number, None, err))
            continue
        for prefix, record in split(obj):
            event, bad = to_event(record)
            if bad:
                problems.extend((number, _prefixed(prefix, f), r) for f, r in bad)
                continue
            for c in EVENT_COLUMNS:
                columns[c].append(event.get(c))
            rows.append(number)
    return ConvertedRecords(_frame(columns), rows, problems)


def iter_json_body(body: bytes) -> Iterator[tuple[int, Any, str | None]]:
    """The records of a request body: a JSON array (elements numbered from 1), one JSON object,
    or NDJSON (lines numbered from 1, blank lines skipped); ``(number, value, None)`` or
    ``(number, None, reason)`` for a line that is not JSON. Raises ValueError for a
    malformed array or object (the body as a whole)."""
    text = body.strip()
    if text[:1] in (b"[", b"{") and (text[:1] == b"[" or b"\n" not in text):
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            if text[:1] == b"[":
                raise ValueError(f"malformed JSON array: {_json_reason(text)}") from None
        else:
            items = value if isinstance(value, list) else [value]
            yield from ((i, item, None) for i, item in enumerate(items, start=1))
            return
    for lineno, raw in enumerate(body.split(b"\n"), start=1):
        raw = raw.strip()
        if not raw:
            continue
        try:
            yield lineno, orjson.loads(raw), None
        except orjson.JSONDecodeError:
            yield lineno, None, f"malformed JSON: {_json_reason(raw)}"


def _json_reason(raw: bytes) -> str:
    """The stdlib ``json`` message for malformed JSON (clearer than orjson's)."""
    try:
        json.loads(raw)
    except json.JSONDecodeError as exc:
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    except UnicodeDecodeError as exc:
        return f"not UTF-8 ({exc.reason})"
    except RecursionError:
        return "nested too deeply"
    return "not JSON"  # pragma: no cover - orjson and json refuse the same documents here


def _frame(columns: dict[str, list[Any]]) -> pl.DataFrame:
    raw = {**EVENT_SCHEMA, "ts": pl.Int64()}
    df = pl.DataFrame(columns, schema=raw)
    df = df.with_columns(pl.col("ts").cast(pl.Datetime("us")).dt.replace_time_zone("UTC"))
    return conform(df).collect()
