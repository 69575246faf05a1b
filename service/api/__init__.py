"""HTTP routes, one module per resource."""

from service.api import accounts, campaigns, events, health, metrics

ROUTERS = (events.router, accounts.router, campaigns.router, health.router, metrics.router)

__all__ = ["ROUTERS"]
