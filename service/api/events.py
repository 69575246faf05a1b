"""``POST /v1/events``: ingest canonical events (NDJSON or a JSON array)."""

from __future__ import annotations

import time

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from service.api.deps import IngestAccess, MetricsDep, ReadyStateDep, RuntimeDep, SettingsDep
from service.ingest import BodyError, ingest_body

router = APIRouter(prefix="/v1", tags=["events"])


class RejectedLine(BaseModel):
    line: int = Field(description="1-based line of the body (element, for a JSON array).")
    field: str | None = Field(description="The field at fault; null for the whole line.")
    reason: str


class IngestResponse(BaseModel):
    accepted: int = Field(description="Events added to the window (durably logged first).")
    duplicates: int = Field(description="Events whose request_id was already ingested.")
    rejected_lines: int = Field(description="Lines rejected (each may list several problems).")
    rejected: list[RejectedLine] = Field(description="One entry per problem, by line.")


class ErrorResponse(BaseModel):
    detail: str


def _too_large(limit: int) -> HTTPException:
    return HTTPException(
        status.HTTP_413_CONTENT_TOO_LARGE,
        f"request body larger than {limit} bytes: send smaller batches",
    )


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refusing more than ``limit`` bytes (declared or actually streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(limit)
    return bytes(body)


@router.post(
    "/events",
    response_model=IngestResponse,
    summary="Ingest canonical events",
    responses={
        400: {"model": ErrorResponse, "description": "Empty body or malformed JSON array."},
        401: {"model": ErrorResponse, "description": "Missing or invalid bearer token."},
        403: {"model": ErrorResponse, "description": "Token lacks the `ingest` scope."},
        413: {"model": ErrorResponse, "description": "Body or event count over the limits."},
        503: {"model": ErrorResponse, "description": "Starting up, or the log is unavailable."},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-ndjson": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
            },
            "description": "One canonical event (JSON object) per line, or a JSON array of them.",
        }
    },
)
async def post_events(
    request: Request,
    _: IngestAccess,
    state: ReadyStateDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    runtime: RuntimeDep,
) -> IngestResponse:
    """Validate every line against the canonical event schema (unknown fields are rejected),
    add the valid ones to the window and report each rejected line with its field and reason.

    Valid lines are accepted even when others in the same body are not. Ingest is idempotent
    on `request_id`: a replayed event counts as a duplicate. An accepted batch is written to the
    write-ahead log (fsync) before this answers."""
    t0 = time.perf_counter()
    try:
        body = await _read_body(request, settings.max_body_bytes)
        assert runtime is not None and runtime.ingest_slots is not None  # ready implies both
        async with runtime.ingest_slots:  # at most `ingest_workers` bodies in worker threads
            outcome = await run_in_threadpool(
                ingest_body, state, body, settings.max_events_per_request
            )
    except HTTPException as exc:
        if exc.status_code == status.HTTP_413_CONTENT_TOO_LARGE:
            metrics.requests_rejected.labels("too_large").inc()
        raise
    except BodyError as exc:
        metrics.requests_rejected.labels(exc.reason).inc()
        raise HTTPException(exc.status, exc.message) from None
    metrics.record_ingest(
        outcome.accepted, outcome.duplicates, outcome.rejected, time.perf_counter() - t0
    )
    return IngestResponse(
        accepted=outcome.accepted,
        duplicates=outcome.duplicates,
        rejected_lines=len(outcome.rejected),
        rejected=[
            RejectedLine(line=p.line, field=p.field, reason=p.reason) for p in outcome.problems
        ],
    )
