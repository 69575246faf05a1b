"""Demo traffic for the compose stack: generate a day of a scenario, `distillguard replay` it into
the service at a steady rate, then the next day, forever.

Each loop generates the scenario with a new seed and shifts its timestamps by one more day, so
event time moves forward, the service's sliding window slides (yesterday's accounts expire) and
request ids never repeat. A restarted feeder starts after the newest event the service already
holds (``distillguard_window_end_timestamp_seconds``), whose window would reject older events as
stale. A day is never shifted past the clock: once the days catch up with it, each ends at the
time it is generated (the service rejects events from the future). Configured by environment
variables:

    FEED_URL       service base URL (default http://distillguard:8000)
    FEED_RATE      events per second (default 200: a demo day of ~110k events in ~9 minutes)
    FEED_SCENARIO  built-in scenario name or TOML file (default demo)
    FEED_SCALE     multiply every group's account count (default 1.0)
    FEED_SEED      seed of the first day (default 1000)
    FEED_LOOPS     days to replay, 0 = forever (default 0)
    DISTILLGUARD_TOKEN  bearer token with the ingest scope (read by `distillguard replay`)
    FEED_READ_TOKEN     bearer token with the read scope (for /metrics)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
from prometheus_client.parser import text_string_to_metric_families

from synthetic_logs.generate import generate


def log(message: str) -> None:
    print(f"feeder: {message}", file=sys.stderr, flush=True)


def wait_ready(url: str, timeout_s: float = 900.0) -> None:
    """Block until GET {url}/readyz answers 200 (the first start trains a model first)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=5) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"feeder: {url} not ready after {timeout_s:.0f} s")
        time.sleep(2)


def window_end(url: str, token: str | None) -> datetime | None:
    """Event time of the newest event the service holds, from its /metrics (None: empty)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        request = urllib.request.Request(url + "/metrics", headers=headers)
        with urllib.request.urlopen(request, timeout=10) as resp:
            text = resp.read().decode()
    except (urllib.error.URLError, OSError):
        return None
    for family in text_string_to_metric_families(text):
        if family.name == "distillguard_window_end_timestamp_seconds" and family.samples:
            return datetime.fromtimestamp(family.samples[0].value, tz=UTC)
    return None


def day_of_traffic(
    scenario: str, seed: int, scale: float, day: int, out: Path, after: datetime | None
) -> tuple[Path, int]:
    """One generated day shifted ``day`` days later (more if needed to start after ``after``; less
    if it would end after now: it then ends now), written as Parquet; returns the file and the
    day number used."""
    events = generate(scenario, seed=seed, scale=scale).events
    first, last = events["ts"].min(), events["ts"].max()
    assert isinstance(first, datetime) and isinstance(last, datetime)
    if after is not None and first + timedelta(days=day) <= after:
        day = (after - first).days + 1
    shift = timedelta(days=day)
    now = datetime.now(UTC)
    if last + shift > now:  # never ahead of the clock: the day ends now
        shift = now - last
    events = events.with_columns(pl.col("ts") + shift)
    path = out / f"day-{day:05d}.parquet"
    events.write_parquet(path)
    return path, day


def main() -> None:
    url = os.environ.get("FEED_URL", "http://distillguard:8000").rstrip("/")
    rate = float(os.environ.get("FEED_RATE", "200"))
    scenario = os.environ.get("FEED_SCENARIO", "demo")
    scale = float(os.environ.get("FEED_SCALE", "1.0"))
    seed0 = int(os.environ.get("FEED_SEED", "1000"))
    loops = int(os.environ.get("FEED_LOOPS", "0"))
    read_token = os.environ.get("FEED_READ_TOKEN") or None
    log(f"waiting for {url}/readyz")
    wait_ready(url)
    day, done_days = 0, 0
    with tempfile.TemporaryDirectory(prefix="distillguard-feed-") as tmp:
        while loops <= 0 or done_days < loops:
            after = window_end(url, read_token)
            path, day = day_of_traffic(scenario, seed0 + day, scale, day, Path(tmp), after)
            log(f"day {day}: replaying {path.name} at {rate:g} events/s")
            cmd = ["distillguard", "replay", str(path), "--url", url, "--rate", f"{rate:g}"]
            done = subprocess.run(cmd, check=False)
            path.unlink(missing_ok=True)
            if done.returncode != 0:
                log(f"replay exited {done.returncode}; waiting for the service, then the next day")
                wait_ready(url)
            day += 1
            done_days += 1


if __name__ == "__main__":
    main()
