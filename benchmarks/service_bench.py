"""Streaming service benchmark, run by hand (never in the test suite)::

    python benchmarks/service_bench.py [--scale 3.0] [--clients 2] [--batch 1000]
    python benchmarks/service_bench.py --sources --scale 0.5 --batch 512

Measures, against real uvicorn servers in child processes on this machine:

- sustained ingest (events/s) of pre-serialised NDJSON batches into ``distillguard serve``
  (write-ahead log with fsync on), and the same batches into a no-op FastAPI endpoint that
  only reads the body, measured before AND after the service (their mean is the reference: on
  a shared machine the load drifts): the ratio is the figure that travels between machines;
- the server's CPU time per batch during that ingest (every thread), and the cores it kept busy
  (Python code runs on one at a time, the GIL's; decoding, polars and fsync need not): steadier
  than events/s when other work shares the machine;
- p50 / p99 latency of ``GET /v1/accounts/{id}`` while that ingest runs;
- time from an event's POST to its account's refreshed score (``pending`` false again), sampled
  during the load;
- memory per tracked account: the service's RSS growth / accounts tracked (includes each
  account's compact events in the window);
- a per-stage cost breakdown of one 1,000-event batch, in process: what the request path runs
  (validation, then duplicate check + write-ahead log + queue) and what the background loop runs
  (fingerprinting, in chunks), with the orjson and per-line validation paths for comparison.

With ``--sources``, only: the same events through ``POST /v1/events``, ``POST
/v1/ingest/litellm`` (LiteLLM standard logging payloads) and ``POST /v1/traces`` (OTLP
protobuf GenAI spans), as a ratio of events/s and of server CPU per event to ``/v1/events``
(bodies built by ``benchmarks/source_bodies.py``).

Prints a Markdown section for ``benchmarks/RESULTS.md`` and the raw figures as JSON.

``--compare DIR`` measures only the sustained ingest, of this checkout and of another one (e.g.
``git archive <commit> | tar -x -C /tmp/base``), ``--rounds`` times on the same batches in one
run, in the order A B B A A B ..., each server on a fresh state directory: before / after
figures on the same machine load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import polars as pl

REPO = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"

NOOP_APP = """
import sys, uvicorn
from fastapi import FastAPI, Request
app = FastAPI()

@app.post("/v1/events")
async def events(request: Request) -> dict:
    body = await request.body()
    n = body.count(b"\\n") + 1
    return {"accepted": n, "duplicates": 0, "rejected_lines": 0, "rejected": []}

@app.get("/readyz")
async def ready() -> dict:
    return {"status": "ready"}

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (every thread)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(url)


def metric(url: str, name: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    auth = {"Authorization": f"Bearer {TOKEN}"}  # /metrics needs the read scope
    for fam in text_string_to_metric_families(httpx.get(url + "/metrics", headers=auth).text):
        for s in fam.samples:
            if s.name == name and not s.labels:
                return float(s.value)
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Load:
    """Send every batch once with ``clients`` threads; record the newest batch sent."""

    def __init__(
        self,
        url: str,
        batches: list[bytes],
        clients: int,
        path: str = "/v1/events",
        content_type: str = "application/x-ndjson",
    ) -> None:
        self.url = url + path
        self.content_type = content_type
        self.batches = batches
        self.clients = clients
        self.sent = 0
        self.last_batch: bytes | None = None
        self.done = threading.Event()
        self._lock = threading.Lock()
        self._next = 0

    def _worker(self) -> None:
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": self.content_type}
        with httpx.Client(headers=headers, timeout=120) as c:
            while True:
                with self._lock:
                    i = self._next
                    self._next += 1
                if i >= len(self.batches):
                    return
                r = c.post(self.url, content=self.batches[i])
                r.raise_for_status()
                with self._lock:
                    self.sent += 1
                    self.last_batch = self.batches[i]

    def run(self) -> float:
        t0 = time.perf_counter()
        threads = [threading.Thread(target=self._worker) for _ in range(self.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.done.set()
        return time.perf_counter() - t0


def probe_reads(url: str, ids: list[str], load: Load, out: list[float]) -> None:
    rng = random.Random(0)
    with httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as c:
        while not load.done.is_set():
            t = time.perf_counter()
            c.get(f"{url}/v1/accounts/{rng.choice(ids)}")
            out.append(time.perf_counter() - t)
            time.sleep(0.005)


def probe_freshness(url: str, load: Load, out: list[float], acks: list[float]) -> None:
    """Every 0.25 s, POST one event (a copy of a recent one) for a NEW account; time until the
    account's score reflects it (``pending`` false: the event was in a completed rescoring
    pass). A new account is needed: a busy existing account is pending again and again, as its
    own traffic keeps arriving."""
    rng = random.Random(1)
    n = 0
    outstanding: list[tuple[str, float]] = []
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"}
    next_post = time.perf_counter()
    with httpx.Client(headers=auth, timeout=30) as c:
        while not load.done.is_set() or outstanding:
            now = time.perf_counter()
            batch = load.last_batch
            if batch is not None and now >= next_post and not load.done.is_set():
                next_post = now + 0.25
                event = json.loads(rng.choice(batch.splitlines()))
                n += 1
                event["request_id"] = f"fresh-{n}"
                event["account_id"] = f"fresh-account-{n}"
                r = c.post(f"{url}/v1/events", content=json.dumps(event).encode())
                if r.json().get("accepted") == 1:
                    outstanding.append((event["account_id"], now))
                    acks.append(time.perf_counter() - now)
            still: list[tuple[str, float]] = []
            for acc, t in outstanding:
                if not c.get(f"{url}/v1/accounts/{acc}").json()["pending"]:
                    out.append(time.perf_counter() - t)
                elif time.perf_counter() - t < 120:
                    still.append((acc, t))
            outstanding = still
            time.sleep(0.02)


def stage_costs(model_path: Path, events: pl.DataFrame, batch: int) -> dict[str, float]:
    """Milliseconds per stage for one batch, in process (median of 5)."""
    import tempfile as tf

    import orjson

    from detector.fingerprints import fingerprint_events
    from detector.io.batch_validation import validate_ndjson, validate_records
    from detector.io.schema import check_record, records_to_frame
    from detector.models import DistillScorer
    from service.replay import to_ndjson
    from service.state import ScoringState
    from service.wal import encode_frame

    body = to_ndjson(events.head(batch))
    lines = body.splitlines()
    recs = [json.loads(line) for line in lines]
    frame = records_to_frame(recs)
    chunk = events.head(10 * batch)  # what the background loop fingerprints at 50k events/s
    st = ScoringState(DistillScorer.load(model_path), state_dir=tf.mkdtemp())
    st.restore()
    assert st.wal is not None
    wal = st.wal
    runs = iter(range(1_000_000))

    def new_ids() -> pl.DataFrame:  # the same batch, not yet seen
        return frame.with_columns(pl.col("request_id") + f"-{next(runs)}")

    def ms(fn: Any) -> float:
        times = []
        for _ in range(5):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return 1000 * statistics.median(times)

    return {
        # what the service runs: the bulk path (pyarrow decode + vectorised checks, GIL released)
        "validate_ndjson": ms(lambda: validate_ndjson(body)),
        # its fallback for bodies with a doubtful line: orjson + column-wise checks + frame
        "validate_orjson": ms(lambda: validate_records(list(map(orjson.loads, lines)))),
        # the per-line path it replaced (and falls back to for flagged lines), for comparison
        "json_decode": ms(lambda: [json.loads(line) for line in lines]),
        "check_record": ms(lambda: [check_record(r) for r in recs]),
        "records_to_frame": ms(lambda: records_to_frame(recs)),
        # the request path after validation: duplicate check, log (lz4 Arrow, fsync), queue
        "ingest_and_log": ms(lambda: st.ingest(new_ids())),
        "wal_append_fsync": ms(lambda: wal.append(encode_frame(frame))),
        # off the request path: the background loop, per 1,000 events of a 10x larger chunk
        "fingerprint_in_chunk": ms(lambda: fingerprint_events(chunk).collect()) / 10,
        "fingerprint_alone": ms(lambda: fingerprint_events(frame).collect()),
    }


def run_noop(env: dict[str, str], batches: list[bytes], clients: int, events: int) -> float:
    """Events/s of the same batches (``events`` in all) into the no-op FastAPI endpoint."""
    port = free_port()
    noop = subprocess.Popen([sys.executable, "-c", NOOP_APP, str(port)], env=env)
    try:
        wait_ready(f"http://127.0.0.1:{port}", noop)
        secs = Load(f"http://127.0.0.1:{port}", batches, clients).run()
        return events / secs
    finally:
        noop.terminate()
        noop.wait()


def start_service(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """``distillguard serve`` in a child process configured by ``env``; (process, url)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    code = "from service.server import run_server; from service.settings import Settings; "
    code += "run_server(Settings())"
    srv = subprocess.Popen(
        [sys.executable, "-c", code], env={**env, "DISTILLGUARD_PORT": str(port)}
    )
    wait_ready(url, srv)
    return srv, url


# (path, content type) of each source's endpoint
SOURCES = {
    "events": ("/v1/events", "application/x-ndjson"),
    "litellm": ("/v1/ingest/litellm", "application/json"),
    "otlp": ("/v1/traces", "application/x-protobuf"),
}


def sources_main(args: argparse.Namespace) -> None:
    """The same events through POST /v1/events (canonical NDJSON), POST /v1/ingest/litellm
    (LiteLLM standard logging payloads) and POST /v1/traces (OTLP protobuf GenAI spans), each
    into a fresh service; /v1/events runs first and last and their mean is the reference."""
    from source_bodies import litellm_bodies, otlp_bodies  # beside this script

    from detector import pipeline
    from detector.models import DistillScorer
    from service.replay import to_ndjson
    from synthetic_logs.generate import generate

    tmp = Path(tempfile.mkdtemp(prefix="dg-bench-sources-"))
    train = generate("demo", seed=1)
    model_file = pipeline.fit(train.events, scorer=DistillScorer(target_fpr=0.01)).save(
        tmp / "model.joblib"
    )
    events = generate("demo", seed=3, scale=args.scale).events.sort("ts")
    bodies = {
        "events": [to_ndjson(f) for f in events.iter_slices(args.batch)],
        "litellm": litellm_bodies(events, args.batch),
        "otlp": otlp_bodies(events, args.batch),
    }
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "DISTILLGUARD_MODEL_PATH": str(model_file),
        "DISTILLGUARD_INGEST_TOKENS": TOKEN,
        "DISTILLGUARD_READ_TOKENS": TOKEN,
        "DISTILLGUARD_LOG_LEVEL": "warning",
        "DISTILLGUARD_MAX_BODY_BYTES": str(64 * 2**20),  # LiteLLM payloads are ~11 kB each
    }
    runs: list[dict[str, Any]] = []
    for i, source in enumerate(["events", "litellm", "otlp", "events"]):
        env["DISTILLGUARD_SNAPSHOT_PATH"] = str(tmp / f"state-{i}")
        srv, url = start_service(env)
        try:
            path, content_type = SOURCES[source]
            load = Load(url, bodies[source], args.clients, path, content_type)
            cpu0 = cpu_seconds(srv.pid)
            secs = load.run()
            cpu1 = cpu_seconds(srv.pid)
            accepted = metric(url, "distillguard_events_ingested_total")
        finally:
            srv.terminate()
            srv.wait()
        if accepted != events.height:
            raise RuntimeError(f"{source}: {accepted:.0f} of {events.height} events accepted")
        runs.append(
            {
                "source": source,
                "events_per_s": events.height / secs,
                "server_cpu_us_per_event": 1e6 * (cpu1 - cpu0) / events.height,
                "body_bytes_per_event": sum(map(len, bodies[source])) / events.height,
            }
        )
    ref = statistics.mean(r["events_per_s"] for r in runs if r["source"] == "events")
    ref_cpu = statistics.mean(r["server_cpu_us_per_event"] for r in runs if r["source"] == "events")
    for r in runs:
        r["ratio_to_events"] = r["events_per_s"] / ref
        r["cpu_ratio_to_events"] = r["server_cpu_us_per_event"] / ref_cpu
    results = {
        "events": events.height,
        "batch_size": args.batch,
        "clients": args.clients,
        "runs": runs,
        "load_average_1m_at_end": os.getloadavg()[0],
    }
    print(sources_report(results))
    print(json.dumps(results, indent=2))


def sources_report(r: dict[str, Any]) -> str:
    names = {
        "events": "`POST /v1/events` (canonical NDJSON)",
        "litellm": "`POST /v1/ingest/litellm` (LiteLLM payloads, JSON array)",
        "otlp": "`POST /v1/traces` (OTLP protobuf GenAI spans)",
    }
    rows = "\n".join(
        f"| {names[x['source']]} | {x['events_per_s']:,.0f} | {x['ratio_to_events']:.2f} | "
        f"{x['server_cpu_us_per_event']:.0f} ({x['cpu_ratio_to_events']:.1f}x) | "
        f"{x['body_bytes_per_event']:,.0f} |"
        for x in r["runs"]
    )
    return f"""
### Ingest by source (`python benchmarks/service_bench.py --sources`)

{platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()},
{datetime.now(UTC):%Y-%m-%d}. The same {r["events"]:,} events of the demo scenario in
{r["batch_size"]:,}-event batches, {r["clients"]} client connections, each source into a fresh
service (write-ahead log fsync on), `/v1/events` first and last (the ratio is to their mean);
1-minute load average {r["load_average_1m_at_end"]:.1f} at the end.

| endpoint | events/s | ratio to /v1/events | server CPU per event, µs (ratio) | body B/event |
|---|---|---|---|---|
{rows}
"""


def compare_ingest(
    env: dict[str, str], batches: list[bytes], clients: int, dirs: list[Path], rounds: int
) -> list[dict[str, Any]]:
    """Sustained ingest of ``batches`` by the code of each of ``dirs`` in turn, ``rounds``
    times: events/s and server CPU per batch, each server on a fresh state directory."""
    out: list[dict[str, Any]] = []
    code = "from service.server import run_server; from service.settings import Settings; "
    code += "run_server(Settings())"
    n_events = sum(b.count(b"\n") for b in batches[5:])
    for r in range(rounds):
        for d in dirs if r % 2 == 0 else dirs[::-1]:  # ABBA...: no checkout always second
            port = free_port()
            state = Path(tempfile.mkdtemp(prefix="dg-ab-state-"))
            e = {**env, "PYTHONPATH": str(d), "DISTILLGUARD_PORT": str(port)}
            e["DISTILLGUARD_SNAPSHOT_PATH"] = str(state)
            url = f"http://127.0.0.1:{port}"
            srv = subprocess.Popen([sys.executable, "-c", code], env=e, cwd=d)
            try:
                wait_ready(url, srv)
                Load(url, batches[:5], 1).run()
                load = Load(url, batches[5:], clients)
                cpu0 = cpu_seconds(srv.pid)
                secs = load.run()
                cpu1 = cpu_seconds(srv.pid)
            finally:
                srv.terminate()
                srv.wait()
            row = {
                "code": str(d),
                "round": r + 1,
                "events_per_s": n_events / secs,
                "server_cpu_ms_per_batch": 1000 * (cpu1 - cpu0) / len(load.batches),
                "load_average_1m": os.getloadavg()[0],
            }
            print(json.dumps(row), flush=True)
            out.append(row)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=3.0, help="demo scenario scale of the load")
    ap.add_argument("--clients", type=int, default=2, help="concurrent ingest connections")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument(
        "--sources",
        action="store_true",
        help="only compare ingest through /v1/events, /v1/ingest/litellm and /v1/traces "
        "(use e.g. --scale 0.5 --batch 512: LiteLLM's and the OTel SDK's batch size)",
    )
    ap.add_argument(
        "--compare", type=Path, help="another checkout: A/B of the sustained ingest only"
    )
    ap.add_argument("--rounds", type=int, default=2, help="A/B rounds (with --compare)")
    args = ap.parse_args()
    if args.sources:
        sources_main(args)
        return

    from detector import pipeline
    from detector.models import DistillScorer
    from service.replay import to_ndjson
    from synthetic_logs.generate import generate

    tmp = Path(tempfile.mkdtemp(prefix="dg-bench-"))
    train = generate("demo", seed=1)
    model = pipeline.fit(train.events, scorer=DistillScorer(target_fpr=0.01))
    model_file = model.save(tmp / "model.joblib")
    load_events = generate("demo", seed=3, scale=args.scale).events.sort("ts")
    batches = [to_ndjson(f) for f in load_events.iter_slices(args.batch)]
    ids_first = load_events.head(args.batch * 5)["account_id"].unique().to_list()

    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "DISTILLGUARD_MODEL_PATH": str(model_file),
        "DISTILLGUARD_INGEST_TOKENS": TOKEN,
        "DISTILLGUARD_READ_TOKENS": TOKEN,
        "DISTILLGUARD_SNAPSHOT_PATH": str(tmp / "state"),
        "DISTILLGUARD_LOG_LEVEL": os.environ.get("DISTILLGUARD_LOG_LEVEL", "warning"),
    }
    if args.compare is not None:
        rows = compare_ingest(
            env, batches, args.clients, [args.compare.resolve(), REPO], args.rounds
        )
        print(compare_report(rows, load_events.height, args))
        return
    costs = stage_costs(model_file, load_events, args.batch)
    results: dict[str, Any] = {
        "events": load_events.height,
        "batches": len(batches),
        "batch_size": args.batch,
        "clients": args.clients,
        "stage_ms_per_batch": costs,
    }

    # ---- no-op FastAPI endpoint, before and after the service (see run_noop)
    results["noop_before_events_per_s"] = run_noop(env, batches, args.clients, load_events.height)

    # ---- distillguard serve
    port = free_port()
    env["DISTILLGUARD_PORT"] = str(port)
    url = f"http://127.0.0.1:{port}"
    code = "from service.server import run_server; from service.settings import Settings; "
    code += "run_server(Settings())"
    srv = subprocess.Popen([sys.executable, "-c", code], env=env)
    try:
        wait_ready(url, srv)
        rss0 = rss_mib(srv.pid)
        warm = Load(url, batches[:5], 1)
        warm.run()  # the accounts the read probe asks for exist
        load = Load(url, batches[5:], args.clients)
        reads: list[float] = []
        fresh: list[float] = []
        acks: list[float] = []
        probes = [
            threading.Thread(target=probe_reads, args=(url, ids_first, load, reads)),
            threading.Thread(target=probe_freshness, args=(url, load, fresh, acks)),
        ]
        for p in probes:
            p.start()
        cpu0 = cpu_seconds(srv.pid)
        secs = load.run()
        cpu1 = cpu_seconds(srv.pid)
        for p in probes:
            p.join()
        results["service_events_per_s"] = (load_events.height - 5 * args.batch) / secs
        # CPU of the server process (every thread) per batch: steadier than events/s on a
        # shared machine, and how far from one core (the GIL) the service gets
        results["server_cpu_ms_per_batch"] = 1000 * (cpu1 - cpu0) / len(load.batches)
        results["server_cores_busy"] = (cpu1 - cpu0) / secs
        deadline = time.monotonic() + 120
        while metric(url, "distillguard_accounts_pending") > 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        rss_settled = rss_mib(srv.pid)
        time.sleep(20)  # let the allocators (jemalloc in polars, glibc) return freed pages
        rss1 = rss_mib(srv.pid)
        accounts = metric(url, "distillguard_accounts_tracked")
        window = metric(url, "distillguard_window_events")
        results.update(
            {
                "get_account_p50_ms": 1000 * percentile(reads, 0.5),
                "get_account_p99_ms": 1000 * percentile(reads, 0.99),
                "get_account_samples": len(reads),
                "event_to_score_median_s": statistics.median(fresh) if fresh else float("nan"),
                "event_to_score_p90_s": percentile(fresh, 0.9),
                "event_to_score_samples": len(fresh),
                "single_event_ack_median_s": statistics.median(acks) if acks else float("nan"),
                "single_event_ack_p90_s": percentile(acks, 0.9),
                "rescore_pass_mean_s": metric(url, "distillguard_rescore_duration_seconds_sum")
                / max(metric(url, "distillguard_rescore_duration_seconds_count"), 1),
                "accounts_tracked": accounts,
                "window_events": window,
                "rss_before_mib": rss0,
                "rss_settled_mib": rss_settled,
                "rss_after_mib": rss1,
                "kib_per_account": (rss1 - rss0) * 1024 / max(accounts, 1),
                "bytes_per_window_event": (rss1 - rss0) * 2**20 / max(window, 1),
            }
        )
    finally:
        srv.terminate()
        srv.wait()
    results["noop_after_events_per_s"] = run_noop(env, batches, args.clients, load_events.height)
    results["noop_events_per_s"] = statistics.mean(
        [results["noop_before_events_per_s"], results["noop_after_events_per_s"]]
    )
    results["ratio_to_noop"] = results["service_events_per_s"] / results["noop_events_per_s"]
    results["load_average_1m_at_end"] = os.getloadavg()[0]

    print(report(results))
    print(json.dumps(results, indent=2))


def compare_report(rows: list[dict[str, Any]], events: int, args: argparse.Namespace) -> str:
    """A Markdown table of :func:`compare_ingest`'s rows, and the mean of each checkout."""
    lines = [
        f"A/B sustained ingest: {events:,} events of the demo scenario at scale {args.scale:g} "
        f"in {args.batch:,}-event batches, {args.clients} clients, fsync on, "
        f"{platform.node()} ({os.cpu_count()} cores), "
        f"{datetime.now(UTC):%Y-%m-%d}.",
        "",
        "| round | code | events/s | server CPU per batch | load (1 min) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['round']} | `{Path(r['code']).name}` | {r['events_per_s']:,.0f} | "
            f"{r['server_cpu_ms_per_batch']:.1f} ms | {r['load_average_1m']:.1f} |"
        )
    for code in dict.fromkeys(r["code"] for r in rows):
        mine = [r for r in rows if r["code"] == code]
        eps = statistics.mean(r["events_per_s"] for r in mine)
        cpu = statistics.mean(r["server_cpu_ms_per_batch"] for r in mine)
        lines.append(f"| mean | `{Path(code).name}` | {eps:,.0f} | {cpu:.1f} ms | |")
    return "\n".join(lines)


def report(r: dict[str, Any]) -> str:
    stages = ", ".join(f"{k} {v:.1f}" for k, v in r["stage_ms_per_batch"].items())
    rows = [
        ("sustained ingest", f"{r['service_events_per_s']:,.0f} events/s"),
        (
            "no-op FastAPI endpoint, same batches (mean of before / after the service)",
            f"{r['noop_events_per_s']:,.0f} events/s ({r['noop_before_events_per_s']:,.0f} / "
            f"{r['noop_after_events_per_s']:,.0f})",
        ),
        ("ratio (service / no-op)", f"{r['ratio_to_noop']:.3f}"),
        (
            "server CPU per batch under load (cores busy)",
            f"{r['server_cpu_ms_per_batch']:.1f} ms ({r['server_cores_busy']:.2f})",
        ),
        (
            "GET /v1/accounts/{id} under load, p50 / p99",
            f"{r['get_account_p50_ms']:.1f} / {r['get_account_p99_ms']:.1f} ms "
            f"({r['get_account_samples']} requests)",
        ),
        (
            "event -> refreshed score under load, median (p90)",
            f"{r['event_to_score_median_s']:.2f} s ({r['event_to_score_p90_s']:.2f} s, "
            f"{r['event_to_score_samples']} samples)",
        ),
        ("rescoring pass, mean", f"{r['rescore_pass_mean_s']:.2f} s"),
        (
            "memory per tracked account (RSS growth, 20 s after the load)",
            f"{r['kib_per_account']:.1f} KiB ({r['accounts_tracked']:,.0f} accounts, "
            f"{r['window_events']:,.0f} window events: {r['bytes_per_window_event']:.0f} B/event)",
        ),
        (
            "RSS idle / right after the load / 20 s later",
            f"{r['rss_before_mib']:.0f} / {r['rss_settled_mib']:.0f} / "
            f"{r['rss_after_mib']:.0f} MiB",
        ),
    ]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    return f"""
## Streaming service (`benchmarks/service_bench.py`)

{platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()},
polars {pl.__version__}, {datetime.now(UTC):%Y-%m-%d}. Load: {r["events"]:,} events of the
demo scenario in {r["batch_size"]:,}-event NDJSON batches, {r["clients"]} client connections,
client and server on the same machine; write-ahead log fsync on; 1-minute load average
{r["load_average_1m_at_end"]:.1f} at the end (other work on the machine skews every figure).

| figure | value |
|---|---|
{table}

Per {r["batch_size"]:,}-event batch, in process (ms): {stages}.
"""


if __name__ == "__main__":
    main()
