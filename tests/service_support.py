"""Helpers for the service tests: a trained model, real uvicorn servers (thread or subprocess),
scraping and waiting. Not a test module."""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from detector import pipeline
from detector.models import DistillScorer
from service.main import create_app
from service.settings import Settings, StateConfig
from synthetic_logs.generate import Generated, generate

REPO = Path(__file__).resolve().parents[1]
INGEST = "tok-ingest"
READ = "tok-read"
BOTH = "tok-both"
TRAIN_SEED, TEST_SEED, SCALE = 1, 2, 0.5


@functools.cache
def scenario(seed: int) -> Generated:
    """The demo scenario at half size (~55k events, every archetype), events sorted by time."""
    g = generate("demo", seed=seed, scale=SCALE)
    return Generated(g.events.sort("ts", "request_id"), g.accounts, g.labels)


@functools.cache
def model_path(detectors: tuple[str, ...] = ("hbos", "capped_sum")) -> Path:
    """A scorer fitted (unsupervised) on the training seed, saved to a temporary file."""
    train = scenario(TRAIN_SEED)  # no account table, as the service scores by default
    model = pipeline.fit(train.events, scorer=DistillScorer(target_fpr=0.02, detectors=detectors))
    out = Path(tempfile.mkdtemp(prefix="dg-model-")) / "model.joblib"
    return model.save(out)


def to_now(frame: pl.DataFrame, lead: timedelta = timedelta(minutes=1)) -> pl.DataFrame:
    """``frame`` shifted in time so that its newest event is ``lead`` before now (the service
    rejects events ahead of its clock)."""
    newest = frame["ts"].max()
    assert isinstance(newest, datetime)
    return frame.with_columns(pl.col("ts") + (datetime.now(UTC) - lead - newest))


def state_config(**settings: Any) -> StateConfig:
    """The scoring state's config of ``Settings(**settings)`` (no model file or token needed)."""
    return StateConfig.from_settings(
        Settings(model_path=Path("unused.joblib"), auth_disabled=True, **settings)
    )


def write_events(frame: pl.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def settings_env(settings: Settings) -> dict[str, str]:
    """Settings as DISTILLGUARD_* environment variables (tokens comma-separated)."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, list):
            value = ",".join(value)
        env[f"DISTILLGUARD_{name.upper()}"] = (
            str(value).lower() if isinstance(value, bool) else str(value)
        )
    return env


def wait_for(check: Callable[[], bool], timeout: float = 30.0, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.TransportError:
            pass
        time.sleep(every)
    raise TimeoutError(f"condition not met within {timeout}s")


def metric_values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` from a Prometheus text scrape."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def scrape(
    client: httpx.Client, token: str | None = None
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The metrics (/metrics needs the read scope by default): with ``token``, else with the
    client's own token, else with :data:`READ`."""
    headers = {}
    if token or "authorization" not in client.headers:
        headers["Authorization"] = f"Bearer {token or READ}"
    r = client.get("/metrics", headers=headers)
    r.raise_for_status()
    return metric_values(r.text)


def settle(client: httpx.Client, timeout: float = 30.0) -> None:
    """Wait until every acknowledged event is reflected in its account's score."""
    wait_for(lambda: scrape(client)[("distillguard_accounts_pending", ())] == 0, timeout)


def settle_campaigns(client: httpx.Client, timeout: float = 60.0) -> dict[str, Any]:
    """Wait until every acknowledged event is scored AND a campaign pass has seen the window as
    it stands; returns ``GET /v1/campaigns`` (the client needs the read scope)."""
    out: dict[str, Any] = {}

    def done() -> bool:
        r = client.get("/v1/campaigns")
        r.raise_for_status()
        out.update(r.json())
        return bool(out["current"]) and scrape(client)[("distillguard_accounts_pending", ())] == 0

    wait_for(done, timeout)
    return out


def all_accounts(client: httpx.Client, token: str = READ) -> dict[str, dict[str, Any]]:
    r = client.get(
        "/v1/accounts",
        params={"limit": 10_000},
        headers={"Authorization": f"Bearer {token}"},
    )
    r.raise_for_status()
    return {a["account_id"]: a for a in r.json()["accounts"]}


def _auth(settings: Settings) -> dict[str, str]:
    """Headers that pass /readyz whatever the settings."""
    if settings.read_tokens and not settings.health_public:
        return {"Authorization": f"Bearer {settings.read_tokens[0]}"}
    return {}


class ThreadServer:
    """A real uvicorn server in a thread of the test process (shares the warmed-up model)."""

    def __init__(self, settings: Settings, model: DistillScorer | None = None) -> None:
        self.settings = settings
        self.app = create_app(settings, model=model)
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=settings.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{settings.port}"

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        wait_for(lambda: self.server.started, 30)
        wait_for(lambda: httpx.get(self.url + "/readyz", headers=_auth(self.settings)).is_success)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


class ProcessServer:
    """``run_server(Settings())`` in a child process configured by environment variables
    (``module``: run that module instead, e.g. ``tests.fault_injection``; ``env``: more
    environment variables)."""

    def __init__(
        self,
        settings: Settings,
        log_path: Path,
        *,
        module: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.url = f"http://127.0.0.1:{settings.port}"
        self.log_path = log_path
        self.module = module
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, ready: bool = True) -> ProcessServer:
        """Start it and wait until /readyz answers 200 (``ready=False``: until /healthz does)."""
        env = {**os.environ, **settings_env(self.settings), **self.env}
        env.setdefault("PYTHONPATH", str(REPO))
        if self.module:
            cmd = [sys.executable, "-m", self.module]
        else:
            code = "from service.server import run_server; from service.settings import Settings; "
            cmd = [sys.executable, "-c", code + "run_server(Settings())"]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, cwd=REPO)
        wait_for(lambda: self._answers("/readyz" if ready else "/healthz"), 60, every=0.1)
        return self

    def _answers(self, path: str) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"server exited {self.proc.returncode}: {self.log_path.read_text()}")
        return httpx.get(self.url + path, headers=_auth(self.settings), timeout=2).is_success

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout)


@contextmanager
def client_for(url: str, token: str | None = None) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as c:
        yield c
