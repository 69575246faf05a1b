"""``GET /healthz`` (liveness) and ``GET /readyz`` (model loaded, state restored, storage
working)."""

from __future__ import annotations

from fastapi import APIRouter, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from service.api.deps import HealthAccess, RuntimeDep

router = APIRouter(tags=["health"])

MAX_SKIPPED_LISTED = 20


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str = Field(description="ready | starting | failed (restore) | storage_failing")
    model_loaded: bool
    state_restored: bool
    detail: str | None = Field(
        default=None,
        description="Why it is not ready; when ready, what the start-up had to skip (if any).",
    )
    window_events: int | None = None
    accounts_tracked: int | None = None
    storage_failing: list[str] = Field(
        default_factory=list, description="Parts of the storage failing now: log, snapshot."
    )
    wal_records_skipped: int = Field(
        default=0, description="Damaged write-ahead log records the start-up skipped."
    )
    wal_skipped: list[str] = Field(
        default_factory=list,
        description=f"The first {MAX_SKIPPED_LISTED} of them: file, byte offset, what was wrong.",
    )


@router.get("/healthz", response_model=Health, summary="Liveness")
async def healthz(_: HealthAccess) -> Health:
    """200 while the process serves requests."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness",
    responses={
        503: {
            "model": Readiness,
            "description": "Still starting, restore failed, or the storage is failing.",
        }
    },
)
async def readyz(_: HealthAccess, runtime: RuntimeDep) -> JSONResponse:
    """200 once the model is loaded and the state restored (snapshot + write-ahead log), while
    its storage works (log writes, snapshots); 503 with the reason otherwise. A start-up that
    skipped damaged log records says so (``wal_records_skipped``, ``detail``)."""
    state = runtime.state if runtime is not None else None
    loaded = runtime is not None and runtime.model is not None
    restored = state is not None and state.ready
    error = runtime.error if runtime is not None else None
    problem = state.health.problem if state is not None and restored else None
    skipped = state.wal_skipped if state is not None and restored else []
    if error:
        label, detail = "failed", error
    elif not restored:
        label, detail = "starting", None
    elif problem:
        label, detail = "storage_failing", problem
    else:
        label, detail = "ready", None
        if skipped:
            detail = (
                f"start-up skipped {len(skipped)} damaged write-ahead log record(s) (their "
                "events could not be restored; see wal_skipped and the service log)"
            )
    body = Readiness(
        status=label,
        model_loaded=loaded,
        state_restored=restored,
        detail=detail,
        window_events=state.n_events if restored and state else None,
        accounts_tracked=state.n_accounts if restored and state else None,
        storage_failing=[p for p in ("log", "snapshot") if state and state.health.failing(p)],
        wal_records_skipped=len(skipped),
        wal_skipped=[str(r) for r in skipped[:MAX_SKIPPED_LISTED]],
    )
    code = status.HTTP_200_OK if label == "ready" else status.HTTP_503_SERVICE_UNAVAILABLE
    return JSONResponse(body.model_dump(), status_code=code)
