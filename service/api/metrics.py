"""``GET /metrics``: Prometheus exposition of the app's registry (text or OpenMetrics)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client.exposition import choose_encoder

from service.api.deps import MetricsAccess, MetricsDep

router = APIRouter(tags=["metrics"])


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request, _: MetricsAccess, m: MetricsDep) -> Response:
    """All `distillguard_*` metrics; OpenMetrics when the scraper asks for it."""
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encoder(m.registry), media_type=content_type)
