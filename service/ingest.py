"""Decode and validate an ingest body (no HTTP here): NDJSON or a JSON array of canonical events.

Each line is checked with :func:`detector.schema.check_record` (unknown fields rejected); good
lines become a canonical frame (:func:`detector.schema.records_to_frame`) and go to
:meth:`service.state.ScoringState.ingest`; bad lines are reported one problem per entry
(``line``, ``field``, ``reason``) and counted by a bounded reason category.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from detector.schema import check_record, records_to_frame
from service.records import IngestResult
from service.state import ScoringState

# Bounded label set of distillguard_events_rejected_total{reason}.
REJECT_REASONS = (
    "malformed_json",
    "not_an_object",
    "missing_field",
    "unknown_field",
    "invalid_value",
    "stale",
)
# Bounded label set of distillguard_ingest_requests_rejected_total{reason}.
REQUEST_REJECT_REASONS = (
    "empty",
    "malformed_body",
    "too_large",
    "too_many_events",
    "storage_error",
)


class BodyError(ValueError):
    """The body as a whole cannot be ingested (the HTTP layer maps ``status``)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason  # one of REQUEST_REJECT_REASONS
        self.message = message


@dataclass(frozen=True)
class LineProblem:
    line: int  # 1-based line of the NDJSON body (element of a JSON array)
    field: str | None
    reason: str


@dataclass
class ParsedBatch:
    records: list[dict[str, Any]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)  # line of each record
    problems: list[LineProblem] = field(default_factory=list)
    rejected: dict[int, str] = field(default_factory=dict)  # line -> reason category

    def reject(self, line: int, fld: str | None, reason: str) -> None:
        self.problems.append(LineProblem(line, fld, reason))
        self.rejected.setdefault(line, reason_category(reason))


@dataclass
class BatchOutcome:
    accepted: int
    duplicates: int
    problems: list[LineProblem]
    rejected: dict[int, str]  # line -> reason category
    result: IngestResult


def reason_category(reason: str) -> str:
    """The bounded metric label of a line problem."""
    if reason.startswith("malformed JSON"):
        return "malformed_json"
    if reason.startswith("expected a JSON object"):
        return "not_an_object"
    if reason.startswith(("missing required field", "is required but null")):
        return "missing_field"
    if reason.startswith("unknown field"):
        return "unknown_field"
    if reason.startswith("older than the window"):
        return "stale"
    return "invalid_value"


def _check(batch: ParsedBatch, line: int, obj: Any) -> None:
    problems = check_record(obj)
    if problems:
        for fld, reason in problems:
            batch.reject(line, fld, reason)
    else:
        batch.records.append(obj)
        batch.lines.append(line)


def parse_body(body: bytes, max_events: int) -> ParsedBatch:
    """Decode and validate every line; raises :class:`BodyError` for whole-body problems."""
    text = body.strip()
    if not text:
        raise BodyError(
            400, "empty", "empty body: send NDJSON (one JSON event per line) or a JSON array"
        )
    batch = ParsedBatch()
    if text.startswith(b"["):
        try:
            items = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BodyError(400, "malformed_body", f"malformed JSON array: {exc}") from None
        if not isinstance(items, list):  # pragma: no cover - '[' always decodes to a list
            raise BodyError(400, "malformed_body", "expected a JSON array of events")
        if len(items) > max_events:
            raise BodyError(
                413, "too_many_events", f"{len(items)} events in one request; max {max_events}"
            )
        for i, obj in enumerate(items, start=1):
            _check(batch, i, obj)
        return batch
    n = 0
    for lineno, raw in enumerate(text.split(b"\n"), start=1):
        raw = raw.strip()
        if not raw:
            continue
        n += 1
        if n > max_events:
            raise BodyError(413, "too_many_events", f"more than {max_events} events in one request")
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            batch.reject(lineno, None, f"malformed JSON: {exc.msg} at column {exc.colno}")
            continue
        except UnicodeDecodeError as exc:
            batch.reject(lineno, None, f"malformed JSON: not UTF-8 ({exc.reason})")
            continue
        _check(batch, lineno, obj)
    return batch


def to_frame(batch: ParsedBatch) -> tuple[pl.DataFrame, list[int]]:
    """Canonical frame of the valid records and the line of each row.

    Records that pass :func:`check_record` but still cannot be stored (e.g. a timestamp layout
    polars does not read) are rejected individually instead of failing the batch."""
    if not batch.records:
        return records_to_frame([]), []
    try:
        return records_to_frame(batch.records), batch.lines
    except Exception:  # mixed timestamp layouts etc.: convert one by one to find the culprits
        frames: list[pl.DataFrame] = []
        lines: list[int] = []
        for rec, line in zip(batch.records, batch.lines, strict=True):
            try:
                frames.append(records_to_frame([rec]))
                lines.append(line)
            except Exception as exc:
                batch.reject(line, "ts", f"cannot be stored: {str(exc).splitlines()[0]}")
        empty = records_to_frame([])
        return (pl.concat(frames, how="vertical") if frames else empty), lines


def ingest_body(state: ScoringState, body: bytes, max_events: int) -> BatchOutcome:
    """Parse, validate and ingest one request body (runs in a worker thread)."""
    batch = parse_body(body, max_events)
    frame, lines = to_frame(batch)
    try:
        result = state.ingest(frame)
    except OSError as exc:
        raise BodyError(503, "storage_error", f"write-ahead log unavailable: {exc}") from exc
    if result.stale_rows:
        end = state.window_end
        for row in result.stale_rows:
            batch.reject(
                lines[row],
                "ts",
                f"older than the window (events before {end - state.window if end else '?'} "
                "are no longer scored)",
            )
    problems = sorted(batch.problems, key=lambda p: p.line)
    return BatchOutcome(result.accepted, result.duplicates, problems, batch.rejected, result)
