"""Faults against real server processes (uvicorn, real files, ``kill -9``): clocks far ahead,
storage that fails mid-run, a disk that fills up, damaged log records, a failed restore, hostile
bodies. Each test asserts that nothing acknowledged is lost except what the fault itself
destroyed: after a restart, POSTing every acknowledged event again must find each one already
there (``duplicates``), but for the events whose own log bytes were damaged.

The faults are real where the machine allows: a directory made unusable (permissions, or
``chattr +i`` for root), bytes flipped and records torn in the segment files, ``kill -9``. A full
disk goes through the write-ahead log's documented fault seam in a real server process
(``tests/fault_injection.py``): a write puts half its bytes on disk and fails with ENOSPC.
"""

from __future__ import annotations

import json
import signal
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

from service.replay import to_ndjson
from service.settings import Settings
from service.wal import HEADER
from tests.fault_injection import ENOSPC_FLAG, unusable_dir
from tests.service_support import (
    BOTH,
    TEST_SEED,
    ProcessServer,
    free_port,
    metric_values,
    model_path,
    scenario,
    to_now,
    wait_for,
)

AUTH = {"Authorization": f"Bearer {BOTH}"}
NDJSON = {**AUTH, "Content-Type": "application/x-ndjson"}
SKEW = timedelta(minutes=5)  # the default max_future_skew_s


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        # capped deviation sum only: no numba compile in each fresh process (keeps this fast)
        "model_path": model_path(("capped_sum",)),
        "port": free_port(),
        "ingest_tokens": [BOTH],
        "read_tokens": [BOTH],
        "snapshot_path": tmp_path / "state",
        "rescore_interval_s": 0.2,
        "campaigns": False,
        "snapshot_interval_s": 3600,
    }
    return Settings(**{**base, **overrides})


@pytest.fixture(scope="module")
def recent() -> pl.DataFrame:
    """The test scenario's first 6,000 events, moved to end a minute ago."""
    return to_now(scenario(TEST_SEED).events.head(6000))


def post(url: str, body: bytes, headers: dict[str, str] = NDJSON) -> httpx.Response:
    return httpx.post(url + "/v1/events", content=body, headers=headers, timeout=60)


def ack(url: str, frame: pl.DataFrame) -> None:
    """POST ``frame``; every event must be acknowledged."""
    r = post(url, to_ndjson(frame))
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == frame.height, r.json()


def already_there(url: str, frame: pl.DataFrame) -> int:
    """POST ``frame`` again: how many events the service already held (it keeps the others)."""
    held = 0
    for part in frame.iter_slices(5000):
        r = post(url, to_ndjson(part))
        assert r.status_code == 200, r.text
        assert r.json()["accepted"] + r.json()["duplicates"] == part.height
        held += r.json()["duplicates"]
    return held


def readyz(url: str) -> httpx.Response:
    return httpx.get(url + "/readyz", timeout=10)


def metrics(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = httpx.get(url + "/metrics", headers=AUTH, timeout=10)
    r.raise_for_status()
    return metric_values(r.text)


def window_end(url: str) -> datetime:
    ts = metrics(url)[("distillguard_window_end_timestamp_seconds", ())]
    return datetime.fromtimestamp(ts, UTC)


def line(record: dict[str, Any]) -> str:
    return json.dumps(record)


def records(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return [json.loads(x) for x in to_ndjson(frame).decode().splitlines()]


@pytest.fixture()
def servers(tmp_path: Path) -> Iterator[list[ProcessServer]]:
    """Servers a test starts; any still running at the end is killed."""
    started: list[ProcessServer] = []
    yield started
    for srv in started:
        if srv.proc is not None and srv.proc.poll() is None:
            srv.proc.kill()
            srv.proc.wait(30)


def start(
    servers: list[ProcessServer], settings: Settings, log: Path, *, ready: bool = True, **kw: Any
) -> ProcessServer:
    srv = ProcessServer(settings, log, **kw)
    servers.append(srv)
    return srv.start(ready=ready)


# --------------------------------------------------------------------------- the clock


def test_far_future_events_are_refused_and_never_wipe_the_window(
    tmp_path: Path, recent: pl.DataFrame, servers: list[ProcessServer]
) -> None:
    """One event stamped 9999-12-31, and a client whose clock is 12 h fast: refused with line,
    field and reason; the window end stays behind the clock, nothing is evicted, later events
    are not stale; a snapshot carrying a future window end (as a build without the bound wrote
    it) is restored with the end bounded."""
    settings = settings_for(tmp_path)
    log = tmp_path / "server.log"
    srv = start(servers, settings, log)
    first, later = recent.head(3000), recent.slice(3000, 1000)
    ack(srv.url, first)
    valid, far, skewed, fine = records(recent.slice(5000, 4))
    far["ts"] = "9999-12-31T23:59:59Z"
    skewed["ts"] = (datetime.now(UTC) + timedelta(hours=12)).isoformat()
    r = post(srv.url, "\n".join(map(line, [valid, far, skewed, fine])).encode())
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["accepted"] == 2 and out["rejected_lines"] == 2
    assert [(p["line"], p["field"]) for p in out["rejected"]] == [(2, "ts"), (3, "ts")]
    for p in out["rejected"]:
        assert "more than 300 s ahead of the server clock" in p["reason"], p
    assert window_end(srv.url) <= datetime.now(UTC) + SKEW
    m = metrics(srv.url)
    assert m[("distillguard_events_rejected_total", (("reason", "future"),))] == 2
    assert m[("distillguard_window_events", ())] == 3002  # nothing evicted
    ack(srv.url, later)  # not "older than the window"
    assert srv.stop(signal.SIGTERM) in (0, -signal.SIGTERM)  # (a shutdown snapshot)

    current = tmp_path / "state" / (tmp_path / "state" / "CURRENT").read_text().strip()
    meta = json.loads((current / "meta.json").read_text())
    meta["window_end"] = "9999-12-31T23:59:59+00:00"
    (current / "meta.json").write_text(json.dumps(meta))
    srv = start(servers, settings, log)
    assert window_end(srv.url) <= datetime.now(UTC) + SKEW
    ack(srv.url, recent.slice(4000, 1000))
    acked = pl.concat([first, later, recent.slice(4000, 1000)])
    assert already_there(srv.url, acked) == acked.height
    assert readyz(srv.url).json()["window_events"] == acked.height + 2
    srv.stop(signal.SIGTERM)


# --------------------------------------------------------------------------- storage failing


def test_an_unusable_log_directory_mid_run_loses_nothing(
    tmp_path: Path, recent: pl.DataFrame, servers: list[ProcessServer]
) -> None:
    """The log directory stops taking new files while ingest goes on: every snapshot fails at
    its log rotation (/readyz 503, saying so), acknowledged appends go on into the open
    segment, nothing drained for a failed snapshot is dropped, no segment is deleted before
    a durable snapshot covers it; kill -9 after it recovered loses nothing."""
    settings = settings_for(tmp_path, snapshot_interval_s=0.3)
    srv = start(servers, settings, tmp_path / "server.log")
    acked = [recent.head(2000)]
    ack(srv.url, acked[0])
    with unusable_dir(tmp_path / "state" / "wal"):

        def failing() -> bool:
            r = readyz(srv.url)
            return r.status_code == 503 and r.json()["status"] == "storage_failing"

        wait_for(failing, 30)
        body = readyz(srv.url).json()
        assert body["storage_failing"] == ["snapshot"] and "snapshot failing" in body["detail"]
        for i in range(8):  # acknowledged while snapshots keep failing
            acked.append(recent.slice(2000 + 250 * i, 250))
            ack(srv.url, acked[-1])
    wait_for(lambda: readyz(srv.url).status_code == 200, 30)
    acked.append(recent.slice(4000, 1000))
    ack(srv.url, acked[-1])
    m = metrics(srv.url)
    assert m[("distillguard_snapshot_failures_total", ())] >= 1
    assert srv.stop(signal.SIGKILL) == -signal.SIGKILL
    srv = start(servers, settings, tmp_path / "server.log")
    everything = pl.concat(acked)
    assert readyz(srv.url).json()["window_events"] == everything.height
    assert already_there(srv.url, everything) == everything.height
    srv.stop(signal.SIGKILL)


def test_a_full_disk_then_freed_then_kill_9_loses_nothing_acknowledged(
    tmp_path: Path, recent: pl.DataFrame, servers: list[ProcessServer]
) -> None:
    """While the disk is full, POSTs answer 503 with the reason and /readyz says the log is
    failing; a write cut short is cut back (never appended after); once space is back the
    probe notices, ingest resumes in a new segment; kill -9: every acknowledged event is
    restored, the refused batch is not there (it was never acknowledged)."""
    flag = tmp_path / "disk-full"
    settings = settings_for(tmp_path)
    log = tmp_path / "server.log"
    hooked = {ENOSPC_FLAG: str(flag)}
    srv = start(servers, settings, log, module="tests.fault_injection", env=hooked)
    a, b, c = recent.head(2000), recent.slice(2000, 1000), recent.slice(3000, 2000)
    ack(srv.url, a)
    flag.touch()
    for _ in range(2):
        r = post(srv.url, to_ndjson(b))
        assert r.status_code == 503 and "No space left on device" in r.json()["detail"], r.text
    ready = readyz(srv.url)
    assert ready.status_code == 503 and ready.json()["storage_failing"] == ["log"]
    assert "No space left on device" in ready.json()["detail"]
    flag.unlink()
    wait_for(lambda: readyz(srv.url).status_code == 200, 30)
    ack(srv.url, b)  # accepted in full: the refused attempts left nothing behind
    ack(srv.url, c)
    assert srv.stop(signal.SIGKILL) == -signal.SIGKILL
    srv = start(servers, settings, log)  # an ordinary server, on the same state
    body = readyz(srv.url).json()
    assert body["wal_records_skipped"] == 0, body  # the torn writes were cut back
    acked = pl.concat([a, b, c])
    assert body["window_events"] == acked.height
    assert already_there(srv.url, acked) == acked.height
    srv.stop(signal.SIGKILL)


# --------------------------------------------------------------------------- damaged log


def record_offsets(segment: Path) -> list[int]:
    data, out, pos = segment.read_bytes(), [], 0
    while pos < len(data):
        out.append(pos)
        pos += HEADER.size + HEADER.unpack_from(data, pos)[2]
    return out


def test_damaged_log_records_lose_only_their_own_events(
    tmp_path: Path, recent: pl.DataFrame, servers: list[ProcessServer]
) -> None:
    """Ten acknowledged batches, kill -9; then a bit flipped in record 3's payload, one in
    record 6's header, and a torn record at the end. The restart restores the other eight
    batches, counts the three skipped records in the metric, names file and offset in the log,
    says so on /readyz; later batches go to a new segment and survive another kill -9."""
    settings = settings_for(tmp_path)
    log = tmp_path / "server.log"
    srv = start(servers, settings, log)
    batches = [recent.slice(300 * i, 300) for i in range(10)]
    for frame in batches:
        ack(srv.url, frame)
    assert srv.stop(signal.SIGKILL) == -signal.SIGKILL
    segments = sorted((tmp_path / "state" / "wal").glob("*.wal"))
    seg = max(segments, key=lambda p: p.stat().st_size)
    at = record_offsets(seg)
    assert len(at) == 10
    data = bytearray(seg.read_bytes())
    data[at[2] + HEADER.size + 40] ^= 0x01  # record 3: payload
    data[at[5] + 6] ^= 0x80  # record 6: header (its seq)
    data += data[at[0] : at[0] + HEADER.size + 10]  # a torn record: header and 10 bytes
    seg.write_bytes(bytes(data))
    damaged_size = seg.stat().st_size

    srv = start(servers, settings, log)
    body = readyz(srv.url).json()
    assert body["status"] == "ready" and body["wal_records_skipped"] == 3
    assert "skipped 3 damaged write-ahead log record(s)" in body["detail"]
    assert [s.split(": ")[0] for s in body["wal_skipped"]] == [
        f"{seg.name} at byte {at[2]}",
        f"{seg.name} at byte {at[5]}",
        f"{seg.name} at byte {len(data) - HEADER.size - 10}",
    ]
    m = metrics(srv.url)
    for kind in ("checksum", "header", "torn"):
        assert m[("distillguard_wal_records_corrupt_total", (("kind", kind),))] == 1, kind
    text = log.read_text()
    assert f"{seg.name} at byte {at[2]}: record whose payload checksum fails" in text
    lost = [batches[2], batches[5]]
    kept = pl.concat([f for i, f in enumerate(batches) if i not in (2, 5)])
    assert body["window_events"] == kept.height
    assert already_there(srv.url, kept) == kept.height
    assert already_there(srv.url, pl.concat(lost)) == 0  # lost with their bytes; now sent again
    more = recent.slice(3000, 1000)
    ack(srv.url, more)
    assert srv.stop(signal.SIGKILL) == -signal.SIGKILL
    assert seg.stat().st_size == damaged_size  # nothing was appended after the torn record
    srv = start(servers, settings, log)
    everything = pl.concat([*batches, more])
    assert readyz(srv.url).json()["window_events"] == everything.height
    assert already_there(srv.url, everything) == everything.height
    srv.stop(signal.SIGKILL)


# --------------------------------------------------------------------------- restore failing


def test_a_failed_restore_is_reported_and_posts_say_why(
    tmp_path: Path, recent: pl.DataFrame, servers: list[ProcessServer]
) -> None:
    """A snapshot that cannot be read: /readyz 503 "failed" with the reason, POSTs answer 503
    with that reason (not "starting, retry"); interrupted snapshot directories are removed at
    start; nothing of the state directory is touched otherwise."""
    settings = settings_for(tmp_path)
    log = tmp_path / "server.log"
    srv = start(servers, settings, log)
    ack(srv.url, recent.head(1000))
    srv.stop(signal.SIGTERM)
    state = tmp_path / "state"
    current = state / (state / "CURRENT").read_text().strip()
    (current / "events.parquet").write_bytes(b"not parquet at all")
    stale = state / ".snap-00000000000000000042.tmp"
    stale.mkdir()
    (stale / "events.parquet").write_bytes(b"half a snapshot")

    srv = start(servers, settings, log, ready=False)
    wait_for(lambda: readyz(srv.url).json()["status"] == "failed", 30)
    r = readyz(srv.url)
    assert r.status_code == 503 and "state restore failed" in r.json()["detail"]
    p = post(srv.url, to_ndjson(recent.slice(1000, 10)))
    assert p.status_code == 503 and "state restore failed" in p.json()["detail"]
    assert "retry-after" not in p.headers
    assert not stale.exists()
    assert (state / "wal").is_dir() and (current / "meta.json").exists()
    srv.stop(signal.SIGTERM)


# --------------------------------------------------------------------------- hostile input


def test_hostile_bodies_get_bounded_answers_and_secrets_stay_private(
    tmp_path: Path, recent: pl.DataFrame, servers: list[ProcessServer]
) -> None:
    settings = settings_for(
        tmp_path, max_rejected_listed=10, max_accounts=50, rescore_interval_s=3600
    )
    log = tmp_path / "server.log"
    srv = start(servers, settings, log)
    url = srv.url
    base = records(recent.slice(0, 400))

    # only NDJSON / JSON bodies, in UTF-8
    body = "\n".join(map(line, base[:2])).encode()
    for kind in (None, "text/plain", "application/json; charset=latin-1", "multipart/form-data"):
        headers = dict(AUTH, **({"Content-Type": kind} if kind else {}))
        r = post(url, body, headers)
        assert r.status_code == 415 and "application/x-ndjson" in r.json()["detail"], kind
    r = post(url, body, dict(AUTH, **{"Content-Type": "application/x-ndjson; charset=UTF-8"}))
    assert r.json()["accepted"] == 2
    # a leading byte order mark is ignored, NDJSON or JSON array alike
    r = post(url, b"\xef\xbb\xbf" + "\n".join(map(line, base[2:4])).encode())
    assert r.json()["accepted"] == 2, r.text
    arr = b"\xef\xbb\xbf" + json.dumps(base[4:6]).encode()
    r = post(url, arr, dict(AUTH, **{"Content-Type": "application/json"}))
    assert r.json()["accepted"] == 2, r.text

    # identifiers and counts the schema refuses, reported line by line, briefly
    bad = [
        dict(base[6], account_id="a\x00b"),
        dict(base[7], account_id="two\nlines"),
        dict(base[8], account_id="../../etc/passwd"),
        dict(base[9], account_id="x" * 10_000_000),
        dict(base[10], prompt_tokens=-1),
        dict(base[11], latency_ms=-5.0),
        dict(base[12], status=-1),
        dict(base[13], n=-1),
    ]
    r = post(url, "\n".join(map(line, bad)).encode())
    out = r.json()
    assert r.status_code == 200 and out["accepted"] == 0 and out["rejected_lines"] == 8
    fields = [p["field"] for p in out["rejected"]]
    assert fields == ["account_id"] * 4 + ["prompt_tokens", "latency_ms", "status", "n"]
    assert "longer than 256 characters (10000000)" in out["rejected"][3]["reason"]
    assert len(r.content) < 4000  # the 10 MB id is not echoed

    # amplification: 2,000 lines of 30 long unknown keys each get a short answer
    def noisy(i: int) -> str:
        rec = dict(base[20 + i % 300], request_id=f"noisy-{i}")
        rec.update({f"{'k' * 150}{j}": j for j in range(30)})
        return line(rec)

    flood = "\n".join(noisy(i) for i in range(2000)).encode()
    r = post(url, flood)
    out = r.json()
    assert out["rejected_lines"] == 2000 and len(out["rejected"]) == 10
    assert out["rejected_not_listed"] == 2000 * 30 - 10
    assert all(len(p["field"]) <= 120 and len(p["reason"]) <= 120 for p in out["rejected"])
    assert len(r.content) < 5000 and len(flood) > 10_000_000

    # the account cap holds at ingest: no pass runs in between (rescore_interval_s=3600)
    many = recent.slice(400, 5000)
    assert many["account_id"].n_unique() > 50
    ack(url, many)
    assert readyz(url).json()["accounts_tracked"] == 50
    assert metrics(url)[("distillguard_accounts_dropped_total", ())] > 0

    # a token in the query string never reaches the log
    r = httpx.get(
        url + "/v1/accounts", params={"limit": 3, "token": BOTH, "api_key": "sk-123"}, headers=AUTH
    )
    assert r.status_code == 200
    assert srv.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
    text = log.read_text()
    assert "GET /v1/accounts?limit=3&token=***&api_key=***" in text
    assert BOTH not in text and "sk-123" not in text

    # state files are private
    state = tmp_path / "state"
    for p in [state, *state.rglob("*")]:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode == (0o700 if p.is_dir() else 0o600), (p, oct(mode))
