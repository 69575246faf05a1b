"""Builds the FastAPI app. Nothing else: the lifecycle lives in :mod:`service.runtime`, the
routes in :mod:`service.api`, the settings in :mod:`service.settings`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from detector.models import DistillScorer
from service.api import ROUTERS
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
    )
    app.state.settings = cfg
    app.state.metrics = metrics
    app.state.token_scopes = cfg.token_scopes()
    app.state.runtime = None
    for router in ROUTERS:
        app.include_router(router)
    return app
