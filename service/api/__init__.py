"""HTTP routes, one module per resource."""

from service.api import accounts, campaigns, events, health, litellm, metrics, otlp, verdicts

ROUTERS = (
    events.router,
    litellm.router,
    otlp.router,
    verdicts.router,  # before accounts: POST .../{id}/verdict, not an account id
    accounts.router,
    campaigns.router,
    health.router,
    metrics.router,
)

__all__ = ["ROUTERS"]
