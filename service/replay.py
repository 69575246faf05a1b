"""Stream a canonical event log to a running service: demos, load tests, back-fills.

``replay(paths, url)`` reads the log with :func:`detector.io.schema.read_events` (validated:
problems raise :class:`detector.io.schema.EventSchemaError` naming file, line and field), sends
NDJSON batches to ``POST {url}/v1/events`` with httpx, optionally rate-limited, and returns the
service's counts. Replaying the same log twice is harmless: ingest is idempotent on request_id.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import polars as pl
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from detector.io.schema import read_events

TS_FORMAT = "%Y-%m-%dT%H:%M:%S%.6fZ"
RETRY_STATUSES = frozenset({502, 503, 504})


class ReplayError(RuntimeError):
    """The service refused a batch (status and its message attached)."""

    def __init__(self, status: int, message: str, batch: int) -> None:
        super().__init__(f"batch {batch}: HTTP {status}: {message}")
        self.status = status
        self.batch = batch


def to_ndjson(frame: pl.DataFrame) -> bytes:
    """Canonical events as NDJSON, timestamps as ISO-8601 UTC with microseconds."""
    return frame.with_columns(pl.col("ts").dt.to_string(TS_FORMAT)).write_ndjson().encode()


def _post(client: httpx.Client, url: str, body: bytes, batch: int, retries: int) -> dict[str, Any]:
    delay = 0.25
    for attempt in range(retries + 1):
        try:
            resp = client.post(url, content=body)
        except httpx.TransportError:
            if attempt == retries:
                raise
        else:
            if resp.status_code == 200:
                out: dict[str, Any] = resp.json()
                return out
            if resp.status_code not in RETRY_STATUSES or attempt == retries:
                try:
                    detail = resp.json().get("detail", resp.text)
                except ValueError:
                    detail = resp.text
                raise ReplayError(resp.status_code, str(detail), batch)
        time.sleep(delay)
        delay = min(delay * 2, 5.0)
    raise AssertionError("unreachable")  # pragma: no cover


def replay(
    paths: str | Path | Iterable[str | Path],
    url: str,
    *,
    rate: float | None = None,
    batch_size: int = 1000,
    token: str | None = None,
    progress: bool | None = None,
    timeout_s: float = 60.0,
    retries: int = 5,
) -> dict[str, Any]:
    """Send the events in ``paths`` to the service at ``url`` (e.g. ``http://127.0.0.1:8000``),
    in time order (the service's window runs on event time and rejects events older than it).

    ``rate``: most events per second (None: as fast as the service answers); ``batch_size``:
    events per request; ``token``: bearer token with the ``ingest`` scope; ``progress``: show a
    rich progress bar (None: when stderr is a terminal). Transient failures (connection errors,
    502/503/504) are retried with back-off; any other refusal raises :class:`ReplayError`.

    Returns ``{"events", "batches", "accepted", "duplicates", "rejected", "seconds",
    "events_per_s"}``.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    if rate is not None and rate <= 0:
        raise ValueError("rate must be > 0 events per second")
    events = read_events(paths).collect().sort("ts", maintain_order=True)  # time order
    endpoint = url.rstrip("/") + "/v1/events"
    headers = {"Content-Type": "application/x-ndjson"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    show = sys.stderr.isatty() if progress is None else progress
    counts: dict[str, Any] = {"events": 0, "batches": 0, "accepted": 0, "duplicates": 0}
    counts["rejected"] = 0
    bar = Progress(
        TextColumn("[bold]replay"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>9} ev/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not show,
    )
    t0 = time.perf_counter()
    with bar, httpx.Client(headers=headers, timeout=timeout_s) as client:
        task = bar.add_task("replay", total=events.height, rate="-")
        for frame in events.iter_slices(batch_size):
            if rate is not None:  # pace: the n-th event leaves no earlier than n / rate
                wait = t0 + counts["events"] / rate - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
            answer = _post(client, endpoint, to_ndjson(frame), counts["batches"] + 1, retries)
            counts["events"] += frame.height
            counts["batches"] += 1
            counts["accepted"] += int(answer.get("accepted", 0))
            counts["duplicates"] += int(answer.get("duplicates", 0))
            counts["rejected"] += int(answer.get("rejected_lines", 0))
            elapsed = time.perf_counter() - t0
            bar.update(task, advance=frame.height, rate=f"{counts['events'] / elapsed:,.0f}")
    counts["seconds"] = round(time.perf_counter() - t0, 3)
    counts["events_per_s"] = round(counts["events"] / max(counts["seconds"], 1e-9), 1)
    return counts
