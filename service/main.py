"""Builds the FastAPI app. Nothing else: the lifecycle lives in :mod:`service.runtime`, the
routes in :mod:`service.api`, the settings in :mod:`service.settings`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from prometheus_client import CollectorRegistry

from detector.models import DistillScorer
from service.api import ROUTERS
from service.api.deps import DocsAccess
from service.metrics import ServiceMetrics, package_version
from service.runtime import Runtime
from service.settings import Settings


def create_app(
    settings: Settings | None = None,
    registry: CollectorRegistry | None = None,
    *,
    model: DistillScorer | None = None,
) -> FastAPI:
    """The app for ``settings`` (default: from the environment), its metrics on ``registry``
    (default: a fresh one, never the global registry). ``model`` skips loading
    ``settings.model_path`` (callers that already loaded it)."""
    cfg = settings if settings is not None else Settings()  # type: ignore[call-arg]
    metrics = ServiceMetrics(
        registry if registry is not None else CollectorRegistry(), top_n=cfg.top_n
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime(cfg, metrics, model)
        app.state.runtime = runtime
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="distillguard",
        summary="Live distillation-risk scores of LLM API accounts, from their request logs.",
        version=package_version(),
        lifespan=lifespan,
        openapi_url=None,  # served below, behind the read scope unless docs_public
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = cfg
    app.state.metrics = metrics
    app.state.token_scopes = cfg.token_scopes()
    app.state.runtime = None
    for router in ROUTERS:
        app.include_router(router)
    _add_docs(app)
    return app


def _add_docs(app: FastAPI) -> None:
    """``/openapi.json``, ``/docs`` (Swagger UI) and ``/redoc``, each needing the ``read``
    scope unless ``docs_public``."""

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(_: DocsAccess) -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    async def swagger(_: DocsAccess) -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - docs")

    @app.get("/redoc", include_in_schema=False)
    async def redoc(_: DocsAccess) -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=f"{app.title} - ReDoc")
