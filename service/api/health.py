"""``GET /healthz`` (liveness) and ``GET /readyz`` (model loaded and state restored)."""

from __future__ import annotations

from fastapi import APIRouter, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from service.api.deps import HealthAccess, RuntimeDep

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str  # "ready" | "starting" | "failed"
    model_loaded: bool
    state_restored: bool
    detail: str | None = None
    window_events: int | None = None
    accounts_tracked: int | None = None


@router.get("/healthz", response_model=Health, summary="Liveness")
async def healthz(_: HealthAccess) -> Health:
    """200 while the process serves requests."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness",
    responses={503: {"model": Readiness, "description": "Still starting, or restore failed."}},
)
async def readyz(_: HealthAccess, runtime: RuntimeDep) -> JSONResponse:
    """200 once the model is loaded and the state restored (snapshot + write-ahead log)."""
    state = runtime.state if runtime is not None else None
    loaded = runtime is not None and runtime.model is not None
    restored = state is not None and state.ready
    error = runtime.error if runtime is not None else None
    body = Readiness(
        status="ready" if restored else ("failed" if error else "starting"),
        model_loaded=loaded,
        state_restored=restored,
        detail=error,
        window_events=state.n_events if restored and state else None,
        accounts_tracked=state.n_accounts if restored and state else None,
    )
    code = status.HTTP_200_OK if restored else status.HTTP_503_SERVICE_UNAVAILABLE
    return JSONResponse(body.model_dump(), status_code=code)
