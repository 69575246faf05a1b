"""Run the service under uvicorn: ``run_server(Settings(...))``.

Uvicorn handles SIGTERM / SIGINT gracefully: it stops accepting connections, lets in-flight
requests finish (up to ``graceful_timeout_s``), then the app's lifespan writes a final snapshot.
"""

from __future__ import annotations

import logging
import sys

import uvicorn

from detector.models import DistillScorer
from service import access_log
from service.main import create_app
from service.settings import Settings

STARTUP_FAILURE = 3
GIL_SWITCH_INTERVAL_S = 0.001  # CPython's default is 0.005


def run_server(settings: Settings, *, graceful_timeout_s: float = 30.0) -> None:
    """Serve until SIGTERM/SIGINT. Raises :class:`detector.models.ModelLoadError` (before
    binding the port) when the model cannot be loaded, SystemExit(3) if start-up fails."""
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Ingest validation (Python, in worker threads) would otherwise keep the event loop waiting
    # up to 5 ms for the GIL at each step of a request: reading a body takes several.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    model = DistillScorer.load(settings.model_path)
    app = create_app(settings, model=model)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        lifespan="on",
        timeout_graceful_shutdown=int(graceful_timeout_s),
    )
    # (uvicorn configures its loggers in Config(); the filter goes on after, and again at start)
    access_log.install([*settings.ingest_tokens, *settings.read_tokens])
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        raise SystemExit(STARTUP_FAILURE)
