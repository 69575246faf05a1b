"""Ingest bodies of other sources (no HTTP here): LiteLLM's standard logging payloads and
OpenTelemetry trace exports, mapped to canonical events by the adapters ``distillguard
convert`` uses, then ingested by :func:`service.ingest.ingest_batch` exactly like
``POST /v1/events`` (duplicates, stale events, the write-ahead log). Records that do not map
are reported by number (line or array element; span number for traces), field and reason;
the others are accepted."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

from detector.io.adapter_io import ConvertedRecords, convert_records, iter_json_body
from detector.io.adapters import _litellm_event
from detector.io.otel import (
    ExportError,
    OtelMapping,
    decode_export,
    is_model_call,
    span_event,
    span_records,
)
from service.ingest import BatchOutcome, BodyError, ParsedBatch, ingest_batch
from service.state import ScoringState


def _parsed(converted: ConvertedRecords) -> ParsedBatch:
    batch = ParsedBatch(converted.frame, converted.rows)
    for number, field, reason in converted.problems:
        batch.reject(number, field, reason)
    return batch


def _too_many(n: int, max_events: int, what: str) -> BodyError:
    return BodyError(413, "too_many_events", f"{n} {what} in one request; max {max_events}")


def ingest_litellm(state: ScoringState, body: bytes, max_events: int) -> BatchOutcome:
    """A LiteLLM ``generic_api`` batch: a JSON array, NDJSON, or one payload (its ``single``
    format) of standard logging payloads (SpendLogs rows are read too)."""
    if not body.strip():
        raise BodyError(400, "empty", "empty body: send LiteLLM standard logging payloads")
    try:
        records = list(iter_json_body(body))
    except ValueError as exc:
        raise BodyError(400, "malformed_body", str(exc)) from None
    if len(records) > max_events:
        raise _too_many(len(records), max_events, "payloads")
    return ingest_batch(state, _parsed(convert_records(records, _litellm_event)))


@dataclass
class TraceOutcome:
    outcome: BatchOutcome
    spans: int  # in the export
    skipped: int  # not model calls (HTTP, database, agent, tool spans, ...)


def ingest_traces(
    state: ScoringState, body: bytes, max_events: int, mapping: OtelMapping, *, json_body: bool
) -> TraceOutcome:
    """An OTLP trace export (protobuf, or OTLP/JSON): its GenAI model-call spans become events."""
    try:
        request = decode_export(body, json_body=json_body)
    except ExportError as exc:
        raise BodyError(400, "malformed_body", str(exc)) from None
    spans = list(span_records(request))
    if len(spans) > max_events:
        raise _too_many(len(spans), max_events, "spans")
    calls: list[tuple[int, Any, str | None]] = [(n, r, None) for n, r in spans if is_model_call(r)]
    converted = convert_records(calls, partial(span_event, mapping=mapping))
    outcome = ingest_batch(state, _parsed(converted))
    return TraceOutcome(outcome, len(spans), len(spans) - len(calls))
