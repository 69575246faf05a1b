"""``POST /v1/ingest/litellm``: LiteLLM's standard logging payloads, as its ``generic_api``
callback sends them (a JSON array, NDJSON, or one payload per request)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, status
from starlette.concurrency import run_in_threadpool

from service.api.deps import IngestAccess, MetricsDep, ReadyStateDep, RuntimeDep, SettingsDep
from service.api.events import (
    ErrorResponse,
    IngestResponse,
    _read_body,
    counted_rejections,
    ingest_response,
    record_ingest,
)
from service.sources import ingest_litellm

router = APIRouter(prefix="/v1/ingest", tags=["sources"])


@router.post(
    "/litellm",
    response_model=IngestResponse,
    summary="Ingest LiteLLM standard logging payloads",
    responses={
        400: {"model": ErrorResponse, "description": "Empty body or malformed JSON array."},
        401: {"model": ErrorResponse, "description": "Missing or invalid bearer token."},
        403: {"model": ErrorResponse, "description": "Token lacks the `ingest` scope."},
        413: {"model": ErrorResponse, "description": "Body or payload count over the limits."},
        503: {"model": ErrorResponse, "description": "Starting up, or the log is unavailable."},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
                "application/x-ndjson": {"schema": {"type": "string"}},
            },
            "description": (
                "LiteLLM StandardLoggingPayload objects: a JSON array (generic_api log_format "
                "json_array), one per line (ndjson) or one object (single)."
            ),
        }
    },
)
async def post_litellm(
    request: Request,
    _: IngestAccess,
    state: ReadyStateDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    runtime: RuntimeDep,
) -> IngestResponse:
    """Map each payload to a canonical event with the adapter of `distillguard convert --from
    litellm` and ingest them as `POST /v1/events` does; the answer is the same (a rejected
    payload is named by its line, or element of the array, with the field at fault)."""
    t0 = time.perf_counter()
    with counted_rejections(metrics, {status.HTTP_413_CONTENT_TOO_LARGE: "too_large"}):
        body = await _read_body(request, settings.max_body_bytes)
        assert runtime is not None and runtime.ingest_slots is not None  # ready implies both
        async with runtime.ingest_slots:
            outcome = await run_in_threadpool(
                ingest_litellm, state, body, settings.max_events_per_request
            )
    record_ingest(metrics, outcome, t0)
    return ingest_response(outcome)
