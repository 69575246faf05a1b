"""``POST /v1/traces``: OTLP/HTTP trace exports (protobuf or JSON, optionally gzip-compressed)
whose GenAI model-call spans become canonical events (:mod:`detector.io.otel`)."""

from __future__ import annotations

import time
import zlib

from fastapi import APIRouter, HTTPException, Request, Response, status
from starlette.concurrency import run_in_threadpool

from detector.io.otel import OtelMapping, encode_response, rejected_message
from service.api.deps import IngestAccess, MetricsDep, ReadyStateDep, RuntimeDep, SettingsDep
from service.api.events import (
    ErrorResponse,
    _read_body,
    _too_large,
    counted_rejections,
    record_ingest,
)
from service.settings import Settings
from service.sources import ingest_traces

router = APIRouter(prefix="/v1", tags=["sources"])

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


def mapping_of(settings: Settings) -> OtelMapping:
    """The attribute names of the ``otlp_*_attributes`` settings."""
    return OtelMapping(
        account=tuple(settings.otlp_account_attributes),
        api_key=tuple(settings.otlp_api_key_attributes),
        ip=tuple(settings.otlp_ip_attributes),
        user_agent=tuple(settings.otlp_user_agent_attributes),
        end_user=tuple(settings.otlp_end_user_attributes),
    )


def _encoding(request: Request) -> bool:
    """True for OTLP/JSON, False for protobuf; 415 for any other content type."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in (PROTOBUF, JSON):
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            f"content type {media or '(none)'!r}: send {PROTOBUF} or {JSON} (OTLP/HTTP)",
        )
    return media == JSON


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """The body without its gzip / deflate content encoding, refusing more than ``limit``
    bytes once decompressed."""
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            f"content encoding {encoding!r}: send gzip, deflate or none",
        )
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"bad {encoding} body: {exc}") from None
    if len(out) > limit:
        raise _too_large(limit)
    if not inflater.eof:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"truncated {encoding} body")
    return out


@router.post(
    "/traces",
    summary="Ingest OpenTelemetry GenAI spans (OTLP/HTTP)",
    response_class=Response,
    responses={
        200: {
            "description": (
                "An ExportTraceServiceResponse in the request's encoding; partial_success "
                "counts the rejected spans and names the first problems."
            ),
            "content": {PROTOBUF: {}, JSON: {}},
        },
        400: {"model": ErrorResponse, "description": "Not a decodable OTLP trace export."},
        401: {"model": ErrorResponse, "description": "Missing or invalid bearer token."},
        403: {"model": ErrorResponse, "description": "Token lacks the `ingest` scope."},
        413: {"model": ErrorResponse, "description": "Body or span count over the limits."},
        415: {"model": ErrorResponse, "description": "Not OTLP protobuf or JSON; or encoding."},
        503: {"model": ErrorResponse, "description": "Starting up, or the log is unavailable."},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {PROTOBUF: {"schema": {"type": "string"}}, JSON: {"schema": {}}},
            "description": "An OTLP ExportTraceServiceRequest (gzip or deflate allowed).",
        }
    },
)
async def post_traces(
    request: Request,
    _: IngestAccess,
    state: ReadyStateDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    runtime: RuntimeDep,
) -> Response:
    """Every span recording a model call under the GenAI semantic conventions becomes a
    canonical event (other spans are skipped); its account, key, client IP, user agent and end
    user come from the attributes named by the `DISTILLGUARD_OTLP_*_ATTRIBUTES` settings. A
    span that cannot be mapped is counted in `partial_success.rejected_spans`; the others are
    ingested as `POST /v1/events` does."""
    t0 = time.perf_counter()
    json_body = _encoding(request)
    with counted_rejections(
        metrics,
        {
            status.HTTP_413_CONTENT_TOO_LARGE: "too_large",
            status.HTTP_400_BAD_REQUEST: "malformed_body",
        },
    ):
        raw = await _read_body(request, settings.max_body_bytes)
        encoding = request.headers.get("content-encoding", "").strip().lower()
        body = _decompress(raw, encoding, settings.max_body_bytes)
        assert runtime is not None and runtime.ingest_slots is not None  # ready implies both
        async with runtime.ingest_slots:
            traced = await run_in_threadpool(
                ingest_traces,
                state,
                body,
                settings.max_events_per_request,
                mapping_of(settings),
                json_body=json_body,
            )
    outcome = traced.outcome
    record_ingest(metrics, outcome, t0)
    problems = [(p.line, p.field, p.reason) for p in outcome.problems]
    content = encode_response(
        len(outcome.rejected), rejected_message(problems), json_body=json_body
    )
    return Response(content, media_type=JSON if json_body else PROTOBUF)
