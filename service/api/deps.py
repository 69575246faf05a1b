"""Dependencies shared by the routes: settings, state, metrics, and bearer-token scopes.

Use the ``Annotated`` aliases in route signatures::

    async def read(state: ReadyStateDep, _: ReadAccess) -> ...
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.metrics import ServiceMetrics
from service.runtime import Runtime
from service.settings import Settings
from service.state import ScoringState

bearer = HTTPBearer(
    auto_error=False,
    description="API token (scopes: `ingest` for POST /v1/events, `review` for POST "
    "/v1/accounts/{id}/verdict, `read` for everything else).",
)
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


# Every dependency is ``async def``: FastAPI runs a plain ``def`` dependency in a worker thread,
# a thread hand-off per dependency per request (most of a GET's cost under ingest load).


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def runtime_of(request: Request) -> Runtime | None:
    runtime: Runtime | None = getattr(request.app.state, "runtime", None)
    return runtime


async def get_settings(request: Request) -> Settings:
    return settings_of(request)


async def get_metrics(request: Request) -> ServiceMetrics:
    metrics: ServiceMetrics = request.app.state.metrics
    return metrics


async def get_runtime(request: Request) -> Runtime | None:
    return runtime_of(request)


async def get_ready_state(request: Request) -> ScoringState:
    """The scoring state; 503 while the model loads / the state is restored, and with the
    reason (no ``Retry-After``) when the restore failed."""
    runtime = runtime_of(request)
    state = runtime.state if runtime is not None else None
    if runtime is not None and runtime.error is not None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"the service cannot serve: {runtime.error}. Fix the cause and restart it "
            "(GET /readyz and the service log say more).",
        )
    if state is None or not state.ready:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "the service is starting (loading the model, restoring state): retry shortly",
            headers={"Retry-After": "1"},
        )
    return state


SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]
RuntimeDep = Annotated[Runtime | None, Depends(get_runtime)]
ReadyStateDep = Annotated[ScoringState, Depends(get_ready_state)]


def scopes_of(token: str, table: dict[str, frozenset[str]]) -> frozenset[str] | None:
    """Scopes granted to ``token`` (compared in constant time), None for an unknown token."""
    found: frozenset[str] | None = None
    for known, scopes in table.items():
        if hmac.compare_digest(known.encode(), token.encode()):
            found = scopes
    return found


def require_scope(
    scope: str, public_setting: str | None = None
) -> Callable[[Request, HTTPAuthorizationCredentials | None], Awaitable[None]]:
    """A dependency that lets the request through only with a token granting ``scope``.

    401 (with ``WWW-Authenticate``) without a valid bearer token, 403 with a token lacking the
    scope. Skipped when auth is disabled, or when the boolean setting ``public_setting`` is true.
    """

    async def check(request: Request, credentials: BearerDep) -> None:
        settings = settings_of(request)
        if settings.auth_disabled or (public_setting and getattr(settings, public_setting)):
            return
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing bearer token (Authorization: Bearer <token>)",
                headers={"WWW-Authenticate": 'Bearer realm="distillguard"'},
            )
        scopes = scopes_of(credentials.credentials, request.app.state.token_scopes)
        if scopes is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "invalid bearer token",
                headers={"WWW-Authenticate": 'Bearer realm="distillguard", error="invalid_token"'},
            )
        if scope not in scopes:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"this token lacks the '{scope}' scope",
                headers={
                    "WWW-Authenticate": (
                        f'Bearer realm="distillguard", error="insufficient_scope", scope="{scope}"'
                    )
                },
            )

    return check


IngestAccess = Annotated[None, Depends(require_scope("ingest"))]
ReadAccess = Annotated[None, Depends(require_scope("read"))]
ReviewAccess = Annotated[None, Depends(require_scope("review"))]
HealthAccess = Annotated[None, Depends(require_scope("read", "health_public"))]
MetricsAccess = Annotated[None, Depends(require_scope("read", "metrics_public"))]
DocsAccess = Annotated[None, Depends(require_scope("read", "docs_public"))]
