"""The canonical request-log event: columns, dtypes, readers and precise validation.

One row per API request (see DESIGN.md). Every other stage reads frames with exactly these
columns; adapters (:mod:`detector.io.adapters`) map other log formats onto them.

Errors never surface as bare tracebacks: :class:`EventSchemaError` carries, for each problem,
the file, the line (NDJSON) or row (Parquet), the field and the reason.
"""

from __future__ import annotations

import glob
import gzip
import io
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import polars as pl

if TYPE_CHECKING:
    from detector.io.tally import InputTally

TS_DTYPE = pl.Datetime("us", "UTC")

EVENT_SCHEMA: dict[str, pl.DataType] = {
    "ts": TS_DTYPE,
    "request_id": pl.String(),
    "account_id": pl.String(),
    "api_key_id": pl.String(),
    "ip": pl.String(),
    "user_agent": pl.String(),
    "model": pl.String(),
    "endpoint": pl.String(),
    "prompt": pl.String(),
    "system_prompt": pl.String(),
    "prompt_tokens": pl.Int32(),
    "completion_tokens": pl.Int32(),
    "max_tokens": pl.Int32(),
    "temperature": pl.Float32(),
    "top_p": pl.Float32(),
    "n": pl.Int16(),
    "logprobs": pl.Boolean(),
    "top_logprobs": pl.Int16(),
    "logit_bias_size": pl.Int16(),
    "tools_count": pl.Int16(),
    "stream": pl.Boolean(),
    "status": pl.Int16(),
    "latency_ms": pl.Float32(),
    "finish_reason": pl.String(),
    "conversation_id": pl.String(),
    # the end user behind an account's key (a reseller's or gateway's customer): OpenAI `user` /
    # `safety_identifier`, LiteLLM `end_user`, OpenTelemetry `enduser.id`; optional
    "end_user_id": pl.String(),
}
EVENT_COLUMNS: list[str] = list(EVENT_SCHEMA)

NULLABLE_EVENT_COLUMNS: frozenset[str] = frozenset(
    {
        "prompt",
        "system_prompt",
        "max_tokens",
        "temperature",
        "top_p",
        "top_logprobs",
        "finish_reason",
        "conversation_id",
        "end_user_id",
    }
)
REQUIRED_EVENT_COLUMNS: list[str] = [c for c in EVENT_COLUMNS if c not in NULLABLE_EVENT_COLUMNS]

ACCOUNT_SCHEMA: dict[str, pl.DataType] = {
    "account_id": pl.String(),
    "created_at": TS_DTYPE,
    "payment_fingerprint": pl.String(),
    "email_domain": pl.String(),
    "country": pl.String(),
    "tier": pl.String(),
}

LABEL_SCHEMA: dict[str, pl.DataType] = {
    "account_id": pl.String(),
    "is_attack": pl.Boolean(),
    "archetype": pl.String(),
    "campaign_id": pl.String(),
}

INT_RANGES: dict[str, tuple[int, int]] = {
    "Int16": (-(2**15), 2**15 - 1),
    "Int32": (-(2**31), 2**31 - 1),
}

MAX_REPORTED_PROBLEMS = 20

# --- value rules (beyond the dtypes), the same for the offline reader and the service's ingest
# Identifiers name accounts, keys, requests and conversations in the service's API paths
# (``/v1/accounts/{account_id}``), its metrics, logs and snapshots, and the audit's report: 1 to
# MAX_ID_CHARS characters, no control character (NUL, newline, ...), no '..' path segment ('../'
# or '..\\'), neither '.' nor '..'. Slashes themselves are allowed: real identifiers hold them
# (AWS role ARNs, Azure resource ids); the API takes any identifier percent-encoded.
ID_FIELDS: tuple[str, ...] = ("request_id", "account_id", "api_key_id", "conversation_id")
MAX_ID_CHARS = 256
# Other short strings: at most MAX_LABEL_CHARS characters, no control character.
LABEL_FIELDS: tuple[str, ...] = ("ip", "user_agent", "model", "endpoint", "finish_reason")
MAX_LABEL_CHARS = 1024
# Control characters (C0, DEL, C1) and the Unicode line / paragraph separators; the same class
# in Python's ``re`` and in the RE2 / Rust syntax of pyarrow and polars.
CONTROL_CLASS = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
CONTROL_CLASS_RE2 = r"\x00-\x1f\x7f-\x{9f}\x{2028}\x{2029}"
ID_FORBIDDEN_RE2 = "[" + CONTROL_CLASS_RE2 + r"]|\.\.[/\\]"
LABEL_FORBIDDEN_RE2 = "[" + CONTROL_CLASS_RE2 + "]"
ID_FORBIDDEN = re.compile("[" + CONTROL_CLASS + r"]|\.\.[/\\]")
LABEL_FORBIDDEN = re.compile("[" + CONTROL_CLASS + "]")
DOT_IDS = frozenset({".", ".."})
# Counts, sizes, latency and status are never negative; a status is an HTTP code (or 0 where a
# gateway logs none).
MIN_VALUES: dict[str, int] = {
    "prompt_tokens": 0,
    "completion_tokens": 0,
    "max_tokens": 0,
    "n": 0,
    "top_logprobs": 0,
    "logit_bias_size": 0,
    "tools_count": 0,
    "status": 0,
    "latency_ms": 0,
}
MAX_VALUES: dict[str, int] = {"status": 999}


@dataclass(frozen=True)
class Problem:
    """One precise problem in an input: where it is and what is wrong."""

    source: str
    line: int | None  # 1-based line (NDJSON) or row (Parquet); None for whole-file problems
    field: str | None
    reason: str
    kind: str = "line"  # "line" for NDJSON, "row" for Parquet

    def __str__(self) -> str:
        where = self.source
        if self.line is not None:
            where += f":{self.line}" if self.kind == "line" else f" row {self.line}"
        field = f" field '{self.field}'" if self.field else ""
        return f"{where}:{field} {self.reason}"


class EventSchemaError(ValueError):
    """Input does not match the canonical event schema; lists every problem found (capped)."""

    def __init__(self, problems: Sequence[Problem], truncated: bool = False) -> None:
        self.problems = list(problems)
        self.truncated = truncated
        self.tally: InputTally | None = None  # set when a reader's --max-errors budget ran out
        lines = [str(p) for p in self.problems]
        if truncated:
            lines.append(f"... (only the first {len(self.problems)} problems are listed)")
        super().__init__("invalid events:\n  " + "\n  ".join(lines))


# --------------------------------------------------------------------------- record checks


def check_timestamp(value: Any) -> str | None:
    """Reason why one non-null JSON value is not a timestamp with a time zone; None if it is."""
    if not isinstance(value, str):
        return f"expected an ISO-8601 timestamp string, got {type(value).__name__}"
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return f"cannot parse {value!r} as an ISO-8601 timestamp"
    if parsed.tzinfo is None:
        return f"timestamp {value!r} has no time zone (use Z or +00:00)"
    return None


def check_string(field: str, value: str) -> str | None:
    """Reason why a string breaks the rules of an identifier (:data:`ID_FIELDS`) or another
    short string (:data:`LABEL_FIELDS`); None when it does not (or ``field`` has no rule)."""
    if field in ID_FIELDS:
        if not value:
            return "must not be empty"
        if len(value) > MAX_ID_CHARS:
            return f"longer than {MAX_ID_CHARS} characters ({len(value)})"
        bad = ID_FORBIDDEN.search(value)
        if bad:
            return (
                f"contains {bad.group()!r} at character {bad.start() + 1}: identifiers may not "
                "hold control characters or a '..' path segment"
            )
        if value in DOT_IDS:
            return f"{value!r} is not an identifier"
    elif field in LABEL_FIELDS:
        if len(value) > MAX_LABEL_CHARS:
            return f"longer than {MAX_LABEL_CHARS} characters ({len(value)})"
        bad = LABEL_FORBIDDEN.search(value)
        if bad:
            return f"contains the control character {bad.group()!r} at character {bad.start() + 1}"
    return None


def check_bounds(field: str, value: float) -> str | None:
    """Reason why a number is outside its field's bounds (:data:`MIN_VALUES`,
    :data:`MAX_VALUES`); None when it is inside."""
    lo = MIN_VALUES.get(field)
    if lo is not None and value < lo:
        return f"must be >= {lo}, got {value!r}"
    hi = MAX_VALUES.get(field)
    if hi is not None and value > hi:
        return f"must be <= {hi}, got {value!r}"
    return None


def check_value(field: str, value: Any, dtype: pl.DataType) -> str | None:
    """Reason why one JSON value cannot be stored in ``dtype`` or breaks its field's rules;
    None when it can and does not."""
    name = dtype.base_type().__name__ if hasattr(dtype, "base_type") else str(dtype)
    if value is None:
        return None if field in NULLABLE_EVENT_COLUMNS else "is required but null"
    if isinstance(dtype, pl.Datetime):
        return check_timestamp(value)
    if isinstance(dtype, pl.String):
        if not isinstance(value, str):
            return f"expected a string, got {type(value).__name__}"
        return check_string(field, value)
    if isinstance(dtype, pl.Boolean):
        return None if isinstance(value, bool) else f"expected true/false, got {value!r}"
    if name in INT_RANGES:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"expected an integer, got {value!r}"
        lo, hi = INT_RANGES[name]
        if not lo <= value <= hi:
            return f"integer {value} out of range for {name}"
        return check_bounds(field, value)
    if isinstance(dtype, pl.Float32):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"expected a number, got {value!r}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"expected a finite number, got {value!r}"
        return check_bounds(field, value)
    return None  # pragma: no cover - every schema dtype is handled above


def rule_violations() -> dict[str, pl.Expr]:
    """Per field with value rules, a boolean expression: the value breaks them (null: no
    value). Vectorised :func:`check_string` and :func:`check_bounds`, for readers of whole
    frames; the reason of a flagged value comes from :func:`check_value`."""
    out: dict[str, pl.Expr] = {}
    for field in ID_FIELDS:
        col = pl.col(field)
        n = col.str.len_chars()
        out[field] = (
            (n == 0)
            | (n > MAX_ID_CHARS)
            | col.str.contains(ID_FORBIDDEN_RE2)
            | col.is_in(sorted(DOT_IDS))
        )
    for field in LABEL_FIELDS:
        col = pl.col(field)
        out[field] = (col.str.len_chars() > MAX_LABEL_CHARS) | col.str.contains(LABEL_FORBIDDEN_RE2)
    for field in sorted(MIN_VALUES.keys() | MAX_VALUES.keys()):
        col = pl.col(field)
        cond = pl.lit(False)
        if field in MIN_VALUES:
            cond = cond | (col < MIN_VALUES[field])
        if field in MAX_VALUES:
            cond = cond | (col > MAX_VALUES[field])
        out[field] = cond
    return out


def check_record(record: Any, *, allow_unknown: bool = False) -> list[tuple[str | None, str]]:
    """Validate one decoded JSON event. Returns ``[(field, reason), ...]``; empty when valid.

    Missing nullable fields are allowed (read as null); missing required fields, wrong types,
    out-of-range integers and (unless ``allow_unknown``) unknown fields are reported.
    """
    if not isinstance(record, dict):
        return [(None, f"expected a JSON object, got {type(record).__name__}")]
    problems: list[tuple[str | None, str]] = []
    for field, dtype in EVENT_SCHEMA.items():
        if field not in record:
            if field not in NULLABLE_EVENT_COLUMNS:
                problems.append((field, "missing required field"))
            continue
        reason = check_value(field, record[field], dtype)
        if reason:
            problems.append((field, reason))
    if not allow_unknown:
        for field in record:
            if field not in EVENT_SCHEMA:
                problems.append((field, "unknown field (not in the canonical event schema)"))
    return problems


def records_to_frame(records: Sequence[dict[str, Any]]) -> pl.DataFrame:
    """Build a canonical frame from records that passed :func:`check_record`."""
    return columns_to_frame({c: [r.get(c) for r in records] for c in EVENT_COLUMNS})


_RAW_SCHEMA: dict[str, pl.DataType] = {
    c: (pl.String() if c == "ts" else t) for c, t in EVENT_SCHEMA.items()
}


def columns_to_frame(columns: dict[str, list[Any]]) -> pl.DataFrame:
    """Build a canonical frame from the values, column by column (every
    :data:`EVENT_COLUMNS` key, lists of equal length), of records that passed
    :func:`check_record`. Raises when a timestamp layout cannot be read by polars (e.g. layouts
    mixed in one batch): convert such records one at a time."""
    df = pl.DataFrame(
        [pl.Series(c, columns[c], dtype=t, strict=False) for c, t in _RAW_SCHEMA.items()]
    )
    return df.with_columns(_parse_ts(pl.col("ts")))


def _parse_ts(expr: pl.Expr) -> pl.Expr:
    return expr.str.to_datetime(time_unit="us", time_zone="UTC", strict=True).alias("ts")


# --------------------------------------------------------------------------- file readers


def expand_paths(
    paths: str | Path | Iterable[str | Path],
    accept: Callable[[Path], bool] | None = None,
    kinds: str = ".parquet or .ndjson",
    prefer: str | None = "events",
) -> list[Path]:
    """Files named by ``paths``: files, directories or glob patterns.

    In a directory, the files ``accept`` takes (default: event files), those whose name starts
    with ``prefer`` only, if there are any (so ``DIR`` means ``DIR/events.*`` beside
    ``accounts.parquet`` and ``labels.parquet``)."""
    ok = accept or (lambda f: _format_of(f) is not None)
    items = [paths] if isinstance(paths, str | Path) else list(paths)
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and ok(f))
            preferred = [f for f in found if prefer and f.name.startswith(prefer)]
            if not found:
                raise FileNotFoundError(f"{p}: directory holds no {kinds} files")
            out.extend(preferred or found)
        elif p.exists():
            out.append(p)
        else:
            matches = sorted(Path(m) for m in glob.glob(str(item)))
            if not matches:
                raise FileNotFoundError(f"{item}: no such file, directory or glob match")
            out.extend(matches)
    return out


def _format_of(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith((".ndjson", ".jsonl", ".ndjson.gz", ".jsonl.gz", ".json.gz", ".json")):
        return "ndjson"
    return None


def read_events(
    paths: str | Path | Iterable[str | Path],
    *,
    validate: bool = True,
    tally: InputTally | None = None,
) -> pl.LazyFrame:
    """Read canonical events from Parquet (files, directories, globs) and NDJSON (plain or .gz).

    Returns a LazyFrame with exactly :data:`EVENT_SCHEMA`. Parquet is scanned lazily (its schema
    and required-column nulls are checked up front). NDJSON is parsed by polars and, if anything
    is wrong, re-read line by line to name the file, line and field of each problem. A leading
    UTF-8 byte order mark is ignored, and so is an incomplete last line (no newline at its end
    and not JSON: a log still being written), which ``tally`` records.

    ``tally`` (:class:`detector.io.tally.InputTally`) counts the records read and the bad ones,
    and holds the budget of bad records to skip (default: none). Raises
    :class:`EventSchemaError` on invalid input past that budget, and at once (whatever the
    budget) for a file that cannot be read or is a raw gateway log (with the
    ``distillguard convert --from`` to use).
    """
    from detector.io.tally import InputTally

    tally = tally if tally is not None else InputTally()
    files = expand_paths(paths)
    frames: list[pl.LazyFrame] = []
    formats = set()
    for f in files:
        fmt = _format_of(f)
        formats.add(fmt)
        if fmt == "parquet":
            frames.append(_scan_parquet(f, validate=validate, tally=tally))
        elif fmt == "ndjson":
            frames.append(_read_ndjson(f, tally).lazy())
        else:
            from detector.io.sniff import gateway_hint

            reason = gateway_hint(f) or "unknown format (expected .parquet or .ndjson[.gz])"
            raise EventSchemaError([Problem(str(f), None, None, reason)])
    if not frames:
        raise FileNotFoundError("no event files given")
    if formats == {"parquet"}:
        tally.unit = "rows"
    return frames[0] if len(frames) == 1 else pl.concat(frames, how="vertical")


def _scan_parquet(path: Path, *, validate: bool, tally: InputTally) -> pl.LazyFrame:
    lf = pl.scan_parquet(path)
    try:
        schema = lf.collect_schema()
    except Exception as exc:  # corrupt file, not parquet, ...
        raise EventSchemaError([Problem(str(path), None, None, f"cannot read: {exc}")]) from exc
    problems = []
    casts: list[pl.Expr] = []
    for field, dtype in EVENT_SCHEMA.items():
        if field not in schema:
            if field in NULLABLE_EVENT_COLUMNS:
                casts.append(pl.lit(None, dtype=dtype).alias(field))
            else:
                problems.append(Problem(str(path), None, field, "missing required column", "row"))
            continue
        have = schema[field]
        if have == dtype:
            casts.append(pl.col(field))
        elif _castable(have, dtype):
            if isinstance(dtype, pl.Datetime):
                expr = pl.col(field)
                if isinstance(have, pl.Datetime) and have.time_zone is None:
                    expr = expr.dt.replace_time_zone("UTC")
                casts.append(expr.cast(dtype).alias(field))
            else:
                casts.append(pl.col(field).cast(dtype, strict=True).alias(field))
        else:
            problems.append(
                Problem(str(path), None, field, f"wrong type {have}, expected {dtype}", "row")
            )
    if problems:
        raise EventSchemaError(problems)
    out = lf.select(casts)
    if not validate:
        return out
    rules = rule_violations()
    bad_row = pl.any_horizontal(
        *[pl.col(c).is_null() for c in REQUIRED_EVENT_COLUMNS],
        *[e.fill_null(False) for e in rules.values()],
    )
    n_rows, n_bad = out.select(pl.len(), bad_row.sum()).collect().row(0)
    tally.records += int(n_rows)
    if not n_bad:
        return out
    tally.bad_records(int(n_bad), _row_problems(str(path), out, bad_row))
    tally.check()
    return out.filter(~bad_row)


def _row_problems(source: str, frame: pl.LazyFrame, bad_row: pl.Expr) -> list[Problem]:
    """The problems of the first rows of ``frame`` where ``bad_row`` holds: a null in a
    required column, or a value breaking the rules (each reason from :func:`check_value`, as
    for a JSON line)."""
    rules = set(rule_violations())
    cols = sorted(set(REQUIRED_EVENT_COLUMNS) | rules, key=EVENT_COLUMNS.index)
    rows = (
        frame.with_row_index("__row", offset=1)
        .filter(bad_row)
        .select("__row", *cols)
        .head(MAX_REPORTED_PROBLEMS)
        .collect()
    )
    found = []
    for r in rows.iter_rows(named=True):
        for field in cols:
            value = r[field]
            if value is None:
                reason = None if field in NULLABLE_EVENT_COLUMNS else "is required but null"
            else:
                reason = check_value(field, value, EVENT_SCHEMA[field]) if field in rules else None
            if reason:
                found.append(Problem(source, int(r["__row"]), field, reason, "row"))
    return found[:MAX_REPORTED_PROBLEMS]


def _castable(have: pl.DataType, want: pl.DataType) -> bool:
    if isinstance(want, pl.Datetime):
        return isinstance(have, pl.Datetime)
    if want.is_integer():
        return have.is_integer()
    if want.is_float():
        return have.is_numeric()
    return False


BOM = b"\xef\xbb\xbf"
# what :func:`iter_ndjson_records` yields as the "error" of an incomplete last line (no newline
# at its end, not JSON): a log still being written, skipped and not counted as bad
INCOMPLETE_TAIL = "incomplete last line (no newline at its end): a log still being written"


def _open_text(path: Path) -> IO[str]:
    """Text of an NDJSON file (``.gz`` too); a leading byte order mark is dropped."""
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig")
    return path.open("r", encoding="utf-8-sig")


def _read_bytes(path: Path) -> bytes:
    """The bytes of a file (decompressed when ``.gz``), without a leading byte order mark."""
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                data = fh.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError) as exc:
        raise EventSchemaError([Problem(str(path), None, None, f"cannot read: {exc}")]) from None
    return data[len(BOM) :] if data.startswith(BOM) else data


def _split_tail(data: bytes) -> tuple[bytes, int | None]:
    """``data`` without an incomplete last line (no newline at its end and not JSON), and that
    line's number (None when there is none)."""
    if not data or data.endswith(b"\n"):
        return data, None
    cut = data.rfind(b"\n") + 1
    last = data[cut:]
    if not last.strip():
        return data, None
    try:
        json.loads(last)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return data[:cut], data.count(b"\n", 0, cut) + 1
    return data, None


# polars' NDJSON reader panics on Int16 (polars 2.1): read Int64, then cast strictly.
_NDJSON_READ_SCHEMA: dict[str, pl.DataType] = {
    c: (pl.String() if c == "ts" else pl.Int64() if t == pl.Int16 else t)
    for c, t in EVENT_SCHEMA.items()
}


def _parse_ndjson(data: bytes | Path) -> pl.DataFrame:
    """Canonical events of NDJSON text (or a plain file of it) in which every line is valid;
    raises otherwise."""
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    df = pl.read_ndjson(source, schema=_NDJSON_READ_SCHEMA)
    df = df.with_columns(_parse_ts(pl.col("ts"))).cast(dict(EVENT_SCHEMA), strict=True)  # type: ignore[arg-type]
    if df.select(pl.any_horizontal(pl.col(REQUIRED_EVENT_COLUMNS).is_null().any())).item():
        raise ValueError("nulls in required columns")
    if df.select(pl.any_horizontal(*[e.any() for e in rule_violations().values()])).item():
        raise ValueError("values breaking the rules")  # the line scan names them
    return df


def _first_line_fields(data: bytes | Path) -> set[str]:
    """Field names of the first non-blank line (polars ignores unknown fields: a mix-up of
    formats shows on the first line)."""
    with io.BytesIO(data) if isinstance(data, bytes) else data.open("rb") as fh:
        for line in fh:
            if line.strip():
                obj = json.loads(line)
                return set(obj) if isinstance(obj, dict) else set()
    return set()


def _plain(path: Path) -> bool:
    """An uncompressed file with no byte order mark whose last line ends with a newline (or an
    empty one): polars reads it from the file itself."""
    if path.name.lower().endswith(".gz"):
        return False
    with path.open("rb") as fh:
        if fh.read(len(BOM)) == BOM:
            return False
        size = fh.seek(0, io.SEEK_END)
        if size == 0:
            return True
        fh.seek(size - 1)
        return fh.read(1) == b"\n"


def _decode_line(raw: bytes) -> tuple[Any, str | None]:
    """``(value, None)`` or ``(None, reason)`` for one NDJSON line."""
    try:
        return json.loads(raw.rstrip(b"\r").decode("utf-8")), None
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8: {exc.reason} at byte {exc.start + 1}"
    except json.JSONDecodeError as exc:
        return None, f"malformed JSON: {exc.msg} at column {exc.colno}"
    except RecursionError:
        return None, "malformed JSON: nested too deeply"


def _read_ndjson(path: Path, tally: InputTally) -> pl.DataFrame:
    try:
        plain = _plain(path)
    except OSError as exc:
        raise EventSchemaError([Problem(str(path), None, None, f"cannot read: {exc}")]) from None
    source: bytes | Path = path
    if not plain:  # compressed, a byte order mark, or no newline at the end: read it here
        source, tail = _split_tail(_read_bytes(path))
        if tail is not None:
            tally.incomplete_tail(str(path), tail)
    try:
        df = _parse_ndjson(source)
        if _first_line_fields(source) <= set(EVENT_SCHEMA):
            tally.records += df.height
            return df
    except Exception:
        pass
    from detector.io.sniff import gateway_hint

    hint = gateway_hint(path)
    if hint:
        raise EventSchemaError([Problem(str(path), None, None, hint)])
    data = source if isinstance(source, bytes) else _read_bytes(path)
    good: list[bytes] = []
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        tally.records += 1
        obj, err = _decode_line(raw)
        if err is not None:
            tally.bad_record([Problem(str(path), lineno, None, err)])
            continue
        bad = check_record(obj)
        if bad:
            tally.bad_record([Problem(str(path), lineno, f, r) for f, r in bad])
        else:
            good.append(raw)
    tally.check()
    if not good:
        return empty_events()
    try:
        return _parse_ndjson(b"\n".join(good))
    except Exception:  # e.g. timestamp layouts polars cannot read together: one at a time
        return pl.concat([records_to_frame([json.loads(raw)]) for raw in good])


def iter_ndjson_records(path: Path) -> Iterator[tuple[int, Any | None, str | None]]:
    """Yield ``(line_number, decoded_or_None, json_error_or_None)`` for non-blank lines; a
    leading byte order mark is dropped, and an incomplete last line (no newline at its end, not
    JSON) yields the error :data:`INCOMPLETE_TAIL`."""
    with _open_text(path) as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line.rstrip("\r\n")), None
            except json.JSONDecodeError as exc:
                if not line.endswith("\n"):  # only the last line can lack it
                    yield lineno, None, INCOMPLETE_TAIL
                else:
                    yield lineno, None, f"malformed JSON: {exc.msg} at column {exc.colno}"


def empty_events() -> pl.DataFrame:
    """A frame with the canonical schema and no rows."""
    return pl.DataFrame(schema=EVENT_SCHEMA)


def conform(df: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    """Select and cast the canonical columns (strictly) from a frame that has them."""
    return df.lazy().select([pl.col(c).cast(t, strict=True) for c, t in EVENT_SCHEMA.items()])
