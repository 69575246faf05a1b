"""Decode and validate an ingest body (no HTTP here): NDJSON or a JSON array of canonical events.

Bodies are validated a batch at a time by :mod:`detector.io.batch_validation`: an NDJSON body whose
lines are all valid is decoded and checked in bulk by pyarrow, with the GIL released; any other
body goes through orjson decoding and column-wise checks, and only the records those flag are
checked one by one with :func:`detector.io.schema.check_record`. Either way the results are
identical to checking each line on its own. Valid lines become a canonical frame for
:meth:`service.state.ScoringState.ingest`; bad lines are reported one problem per entry
(``line``, ``field``, ``reason``; lines numbered from 1 in the body as sent, blank lines counted)
and counted by a bounded reason category. The answer stays small whatever the body: at most
``max_listed`` problems are listed (the rest are counted) and echoed text (field names, values
inside reasons) is cut to :data:`MAX_ECHO_CHARS` characters. A body may start with a UTF-8 byte
order mark: it is ignored (RFC 8259 allows a parser to), as the per-line ``json`` decoding
ignores one at the start of a line.

Event time is bounded by the server clock: an event more than ``max_future_skew_s`` ahead of it
is rejected (field ``ts``, category ``future``), like one older than the window (``stale``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import orjson
import polars as pl

from detector.io.batch_validation import (
    MalformedRecord,
    TooManyEvents,
    ValidatedBatch,
    validate_ndjson,
    validate_records,
)
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
    "future",
)
# Bounded label set of distillguard_ingest_requests_rejected_total{reason}.
REQUEST_REJECT_REASONS = (
    "empty",
    "malformed_body",
    "too_large",
    "too_many_events",
    "unsupported_media_type",
    "storage_error",
)
MAX_ECHO_CHARS = 120  # longest field name or reason echoed in an answer (then "...")
BOM = b"\xef\xbb\xbf"
FUTURE_REASON = "ahead of the server clock"


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
    frame: pl.DataFrame  # canonical events of the valid lines
    lines: list[int] = field(default_factory=list)  # line of each frame row
    problems: list[LineProblem] = field(default_factory=list)
    rejected: dict[int, str] = field(default_factory=dict)  # line -> reason category

    def reject(self, line: int, fld: str | None, reason: str) -> None:
        self.problems.append(LineProblem(line, fld, reason))
        self.rejected.setdefault(line, reason_category(reason))

    @classmethod
    def of(cls, checked: ValidatedBatch) -> ParsedBatch:
        batch = cls(checked.frame, checked.rows)
        for line, fld, reason in checked.problems:
            batch.reject(line, fld, reason)
        return batch


@dataclass
class BatchOutcome:
    accepted: int
    duplicates: int
    problems: list[LineProblem]  # the first ``max_listed``, by line, echoed text cut
    not_listed: int  # problems beyond those
    rejected: dict[int, str]  # line -> reason category
    result: IngestResult


def clip(text: str, limit: int = MAX_ECHO_CHARS) -> str:
    """``text``, cut to ``limit`` characters (ending "...") when longer."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
    if FUTURE_REASON in reason:
        return "future"
    return "invalid_value"


def _parse_array(text: bytes, max_events: int) -> ValidatedBatch:
    """A JSON array of events (elements numbered from 1), decoded as the stdlib ``json``
    would: orjson, and ``json`` for what orjson refuses or for flagged elements."""
    try:
        items = orjson.loads(text)
        slow: list[Any] | None = None
    except orjson.JSONDecodeError:
        try:
            items = slow = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise BodyError(400, "malformed_body", f"malformed JSON array: {exc}") from None
    if not isinstance(items, list):  # pragma: no cover - '[' always decodes to a list
        raise BodyError(400, "malformed_body", "expected a JSON array of events")
    if len(items) > max_events:
        raise BodyError(
            413, "too_many_events", f"{len(items)} events in one request; max {max_events}"
        )

    def exact(i: int) -> Any:
        nonlocal slow
        if slow is None:
            try:
                slow = json.loads(text)
            except RecursionError:
                raise MalformedRecord("malformed JSON: nested too deeply") from None
        return slow[i]

    return validate_records(items, range(1, len(items) + 1), exact)


def parse_body(body: bytes, max_events: int) -> ParsedBatch:
    """Decode and validate every line; raises :class:`BodyError` for whole-body problems."""
    if body.startswith(BOM):
        body = body[len(BOM) :]
    text = body.strip()
    if not text:
        raise BodyError(
            400, "empty", "empty body: send NDJSON (one JSON event per line) or a JSON array"
        )
    if text.startswith(b"["):
        return ParsedBatch.of(_parse_array(text, max_events))
    try:
        return ParsedBatch.of(validate_ndjson(body, max_events))
    except TooManyEvents as exc:
        raise BodyError(413, "too_many_events", str(exc)) from None


def ingest_body(
    state: ScoringState, body: bytes, max_events: int, max_listed: int = 100
) -> BatchOutcome:
    """Parse, validate and ingest one request body (runs in a worker thread); lists at most
    ``max_listed`` problems."""
    return ingest_batch(state, parse_body(body, max_events), max_listed)


def ingest_batch(state: ScoringState, batch: ParsedBatch, max_listed: int = 100) -> BatchOutcome:
    """Ingest the valid events of a parsed batch (canonical NDJSON, or another source mapped by
    :mod:`service.sources`); stale and future events join its problems; lists at most
    ``max_listed`` problems."""
    lines = batch.lines
    try:
        result = state.ingest(batch.frame)
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
    if result.future_rows:
        skew = state.config.future_skew.total_seconds()
        reason = (
            f"more than {skew:g} s {FUTURE_REASON} (timestamps up to {result.future_limit} "
            "are accepted): check the client's clock"
        )
        for row in result.future_rows:
            batch.reject(lines[row], "ts", reason)
    problems = sorted(batch.problems, key=lambda p: p.line)
    listed = [
        LineProblem(p.line, clip(p.field) if p.field else p.field, clip(p.reason))
        for p in problems[:max_listed]
    ]
    not_listed = len(problems) - len(listed)
    return BatchOutcome(
        result.accepted, result.duplicates, listed, not_listed, batch.rejected, result
    )
