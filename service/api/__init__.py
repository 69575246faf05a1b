"""HTTP routes, one module per resource."""

from service.api import accounts, campaigns, events, health, litellm, metrics, otlp

ROUTERS = (
    events.router,
    litellm.router,
    otlp.router,
    accounts.router,
    campaigns.router,
    health.router,
    metrics.router,
)

__all__ = ["ROUTERS"]
