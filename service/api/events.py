"""``POST /v1/events``: ingest canonical events (NDJSON or a JSON array)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from service.api.deps import IngestAccess, MetricsDep, ReadyStateDep, RuntimeDep, SettingsDep
from service.ingest import BatchOutcome, BodyError, ingest_body
from service.metrics import ServiceMetrics

router = APIRouter(prefix="/v1", tags=["events"])


class RejectedLine(BaseModel):
    line: int = Field(description="1-based line of the body (element, for a JSON array).")
    field: str | None = Field(description="The field at fault; null for the whole line.")
    reason: str


class IngestResponse(BaseModel):
    accepted: int = Field(description="Events added to the window (durably logged first).")
    duplicates: int = Field(description="Events whose request_id was already ingested.")
    rejected_lines: int = Field(description="Lines rejected (each may list several problems).")
    rejected: list[RejectedLine] = Field(
        description="One entry per problem, by line: the first max_rejected_listed of them "
        "(echoed field names and values cut to 120 characters)."
    )
    rejected_not_listed: int = Field(
        default=0, description="Problems beyond those listed in `rejected`."
    )


class ErrorResponse(BaseModel):
    detail: str


MEDIA_TYPES = ("application/x-ndjson", "application/json")


def _check_media_type(request: Request) -> None:
    """415 unless the body is declared NDJSON or JSON (in UTF-8, if a charset is given)."""
    declared = request.headers.get("content-type", "")
    media, _, params = declared.partition(";")
    charset = ""
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
    if media.strip().lower() not in MEDIA_TYPES or charset not in ("", "utf-8", "utf8"):
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            f"Content-Type must be {' or '.join(MEDIA_TYPES)} (UTF-8); got {declared[:80]!r}",
        )


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


@contextmanager
def counted_rejections(metrics: ServiceMetrics, reasons: Mapping[int, str]) -> Iterator[None]:
    """Around an ingest endpoint's reading and ingest: a refused request is counted in
    ``requests_rejected`` under its ``reasons[status]`` (statuses not named are not counted) or
    its :class:`BodyError`'s reason, and a :class:`BodyError` becomes its HTTP answer."""
    try:
        yield
    except HTTPException as exc:
        reason = reasons.get(exc.status_code)
        if reason is not None:
            metrics.requests_rejected.labels(reason).inc()
        raise
    except BodyError as exc:
        metrics.requests_rejected.labels(exc.reason).inc()
        raise HTTPException(exc.status, exc.message) from None


def record_ingest(metrics: ServiceMetrics, outcome: BatchOutcome, t0: float) -> None:
    """An ingested batch's counts in the metrics (``t0``: when the request arrived)."""
    metrics.record_ingest(
        outcome.accepted,
        outcome.duplicates,
        outcome.rejected,
        time.perf_counter() - t0,
        outcome.result.dropped_accounts,
    )


def ingest_response(outcome: BatchOutcome) -> IngestResponse:
    """The answer of an ingest endpoint for a batch's outcome."""
    return IngestResponse(
        accepted=outcome.accepted,
        duplicates=outcome.duplicates,
        rejected_lines=len(outcome.rejected),
        rejected=[
            RejectedLine(line=p.line, field=p.field, reason=p.reason) for p in outcome.problems
        ],
        rejected_not_listed=outcome.not_listed,
    )


@router.post(
    "/events",
    response_model=IngestResponse,
    summary="Ingest canonical events",
    responses={
        400: {"model": ErrorResponse, "description": "Empty body or malformed JSON array."},
        401: {"model": ErrorResponse, "description": "Missing or invalid bearer token."},
        403: {"model": ErrorResponse, "description": "Token lacks the `ingest` scope."},
        413: {"model": ErrorResponse, "description": "Body or event count over the limits."},
        415: {"model": ErrorResponse, "description": "Not application/x-ndjson or /json."},
        503: {
            "model": ErrorResponse,
            "description": "Starting up, the restore failed, or the log cannot be written "
            "(the detail says which).",
        },
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
    write-ahead log (fsync) before this answers. Events more than `max_future_skew_s` ahead of
    the server clock are rejected (`ts`), as are events older than the window."""
    t0 = time.perf_counter()
    with counted_rejections(
        metrics,
        {
            status.HTTP_413_CONTENT_TOO_LARGE: "too_large",
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE: "unsupported_media_type",
        },
    ):
        _check_media_type(request)
        assert runtime is not None and runtime.body_slots is not None  # ready implies them
        assert runtime.ingest_slots is not None
        async with runtime.body_slots:  # at most `max_bodies_in_flight` bodies read or held
            body = await _read_body(request, settings.max_body_bytes)
            async with runtime.ingest_slots:  # at most `ingest_workers` in worker threads
                outcome = await run_in_threadpool(
                    ingest_body,
                    state,
                    body,
                    settings.max_events_per_request,
                    settings.max_rejected_listed,
                )
            del body
    record_ingest(metrics, outcome, t0)
    return ingest_response(outcome)
