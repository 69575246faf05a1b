"""HTTP contract against a real uvicorn server: auth scopes, bad input, limits, metrics."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)

from detector.models import DistillScorer
from detector.severity import SEVERITY_BANDS
from detector.severity import severity as severity_of
from service.replay import to_ndjson
from service.settings import Settings
from tests.service_support import (
    BOTH,
    INGEST,
    READ,
    TEST_SEED,
    ThreadServer,
    all_accounts,
    client_for,
    free_port,
    model_path,
    scenario,
    scrape,
    settle,
    wait_for,
)

MAX_BODY = 256 * 1024
MAX_EVENTS = 500
TOP_N = 5


@pytest.fixture(scope="module")
def model() -> DistillScorer:
    return DistillScorer.load(model_path())


@pytest.fixture(scope="module")
def server(
    model: DistillScorer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ThreadServer]:
    settings = Settings(
        model_path=model_path(),
        port=free_port(),
        ingest_tokens=f"{INGEST},{BOTH}",  # type: ignore[arg-type]  # a comma list, as in env
        read_tokens=f"{READ},{BOTH}",  # type: ignore[arg-type]
        snapshot_path=tmp_path_factory.mktemp("state"),
        rescore_interval_s=0.1,
        max_body_bytes=MAX_BODY,
        max_events_per_request=MAX_EVENTS,
        top_n=TOP_N,
    )
    with ThreadServer(settings, model) as srv:
        yield srv


def records(start: int, n: int) -> list[dict[str, Any]]:
    """Canonical events as JSON objects (distinct slices never share a request_id)."""
    frame = scenario(TEST_SEED).events.slice(start, n)
    return [json.loads(line) for line in to_ndjson(frame).decode().splitlines()]


def ndjson(items: list[Any]) -> bytes:
    return "\n".join(i if isinstance(i, str) else json.dumps(i) for i in items).encode()


def post(
    c: httpx.Client, body: bytes | Iterator[bytes], token: str | None = INGEST
) -> httpx.Response:
    headers = {"Content-Type": "application/x-ndjson"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return c.post("/v1/events", content=body, headers=headers)


# --------------------------------------------------------------------------- auth


def test_auth_scopes(server: ThreadServer) -> None:
    body = ndjson(records(0, 2))
    with client_for(server.url) as c:
        r = post(c, body, token=None)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        r = c.post("/v1/events", content=body, headers={"Authorization": "Basic dXNlcjpwdw=="})
        assert r.status_code == 401
        r = post(c, body, token="not-a-token")
        assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]
        r = post(c, body, token=READ)
        assert r.status_code == 403 and "'ingest' scope" in r.json()["detail"]
        assert post(c, body, token=INGEST).status_code == 200
        assert c.get("/v1/accounts").status_code == 401
        auth = {"Authorization": f"Bearer {INGEST}"}
        assert c.get("/v1/accounts", headers=auth).status_code == 403
        assert c.get("/v1/campaigns", headers=auth).status_code == 403
        for tok in (READ, BOTH):
            assert c.get("/v1/accounts", headers={"Authorization": f"Bearer {tok}"}).is_success
        # health is public by default; metrics and the API docs need the read scope
        for path in ("/healthz", "/readyz"):
            assert c.get(path).status_code == 200, path
        read = {"Authorization": f"Bearer {READ}"}
        for path in ("/metrics", "/openapi.json", "/docs", "/redoc"):
            assert c.get(path).status_code == 401, path
            assert c.get(path, headers=auth).status_code == 403, path
            assert c.get(path, headers=read).status_code == 200, path
        spec = c.get("/openapi.json", headers=read).json()
        assert {"/v1/events", "/v1/accounts/{account_id}", "/v1/campaigns"} <= set(spec["paths"])
        assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
        assert "/openapi.json" in c.get("/docs", headers=read).text


def test_protected_health_public_metrics_and_docs(model: DistillScorer) -> None:
    settings = Settings(
        model_path=model_path(),
        port=free_port(),
        ingest_tokens=[INGEST],
        read_tokens=[READ],
        health_public=False,
        metrics_public=True,
        docs_public=True,
    )
    with ThreadServer(settings, model) as srv, client_for(srv.url) as c:
        for path in ("/healthz", "/readyz"):
            assert c.get(path).status_code == 401, path
            assert c.get(path, headers={"Authorization": f"Bearer {INGEST}"}).status_code == 403
            assert c.get(path, headers={"Authorization": f"Bearer {READ}"}).status_code == 200
        for path in ("/metrics", "/openapi.json", "/docs", "/redoc"):  # made public explicitly
            assert c.get(path).status_code == 200, path


# --------------------------------------------------------------------------- bad input


def test_bad_lines_are_rejected_one_by_one(server: ThreadServer) -> None:
    good = records(100, 3)
    wrong_type = {**records(103, 1)[0], "prompt_tokens": "12"}
    missing = {k: v for k, v in records(104, 1)[0].items() if k != "account_id"}
    unknown = {**records(105, 1)[0], "customer_tier": "gold"}
    bad_ts = {**records(106, 1)[0], "ts": "yesterday"}
    torn = '{"ts": "2026-11-02T00:00:00Z", '
    body = ndjson(
        [good[0], torn, wrong_type, missing, unknown, "[1, 2]", good[1], "", bad_ts, good[2]]
    )
    with client_for(server.url) as c:
        before = scrape(c)
        r = post(c, body)
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["accepted"] == 3 and out["duplicates"] == 0 and out["rejected_lines"] == 6
        got = {(p["line"], p["field"]): p["reason"] for p in out["rejected"]}
        assert got[(2, None)].startswith("malformed JSON")
        assert got[(3, "prompt_tokens")] == "expected an integer, got '12'"
        assert got[(4, "account_id")] == "missing required field"
        assert got[(5, "customer_tier")].startswith("unknown field")
        assert got[(6, None)] == "expected a JSON object, got list"
        assert got[(9, "ts")] == "cannot parse 'yesterday' as an ISO-8601 timestamp"
        # a JSON array body: "line" is the element number
        arr = json.dumps([records(107, 1)[0], {**records(108, 1)[0], "n": True}]).encode()
        headers = {"Authorization": f"Bearer {INGEST}", "Content-Type": "application/json"}
        r = c.post("/v1/events", content=arr, headers=headers)
        assert r.json()["accepted"] == 1
        assert r.json()["rejected"] == [
            {"line": 2, "field": "n", "reason": "expected an integer, got True"}
        ]
        settle(c)
        after = scrape(c)
        assert c.get("/readyz").status_code == 200
        # nothing accepted is lost: the good lines are in the window and scored
        acc = good[1]["account_id"]
        view = c.get(f"/v1/accounts/{acc}", headers={"Authorization": f"Bearer {READ}"}).json()
        assert view["score"] is not None and view["last_seen"]

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("distillguard_events_ingested_total") == 4
    assert delta("distillguard_window_events") == 4
    expected = {"malformed_json": 1, "invalid_value": 3, "missing_field": 1, "unknown_field": 1,
                "not_an_object": 1}  # fmt: skip
    for reason, n in expected.items():
        assert delta("distillguard_events_rejected_total", reason=reason) == n, reason


def test_whole_body_errors_and_limits(server: ThreadServer) -> None:
    with client_for(server.url) as c:
        before = scrape(c)
        r = post(c, b"")
        assert r.status_code == 400 and "empty body" in r.json()["detail"]
        assert post(c, b"  \n\n ").status_code == 400
        r = post(c, b'[{"ts": 1},')
        assert r.status_code == 400 and "malformed JSON array" in r.json()["detail"]
        big = b"x" * (MAX_BODY + 1)
        r = post(c, big)  # Content-Length over the limit
        assert r.status_code == 413 and "larger than" in r.json()["detail"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
            for _ in range(8):
                yield b"y" * (MAX_BODY // 4)

        assert post(c, chunks()).status_code == 413
        r = post(c, b"{}\n" * (MAX_EVENTS + 1))
        assert r.status_code == 413 and f"more than {MAX_EVENTS} events" in r.json()["detail"]
        # still healthy and still ingesting
        assert c.get("/healthz").json() == {"status": "ok"}
        ok = post(c, ndjson(records(200, 5)))
        assert ok.status_code == 200 and ok.json()["accepted"] == 5
        after = scrape(c)

    def delta(reason: str) -> float:
        key = ("distillguard_ingest_requests_rejected_total", (("reason", reason),))
        return after[key] - before[key]

    assert delta("empty") == 2 and delta("malformed_body") == 1
    assert delta("too_large") == 2 and delta("too_many_events") == 1


# --------------------------------------------------------------------------- metrics


def test_metrics_match_what_happened(server: ThreadServer) -> None:
    batch = records(1000, 300)  # ~210 kB: under MAX_BODY
    with client_for(server.url) as c:
        before = scrape(c)
        assert post(c, ndjson(batch)).json()["accepted"] == 300
        assert post(c, ndjson(batch[:50])).json()["duplicates"] == 50
        settle(c)
        after = scrape(c)
        om = c.get(
            "/metrics",
            headers={"Accept": "application/openmetrics-text", "Authorization": f"Bearer {READ}"},
        ).text
        scores = [a["score"] for a in all_accounts(c).values()]

    def d(name: str) -> float:
        return after[(name, ())] - before.get((name, ()), 0.0)

    assert d("distillguard_events_ingested_total") == 300
    assert d("distillguard_events_duplicate_total") == 50
    assert d("distillguard_ingest_batch_duration_seconds_count") == 2
    assert d("distillguard_window_events") == 300
    assert after[("distillguard_rescore_duration_seconds_count", ())] >= 1
    tracked = after[("distillguard_accounts_tracked", ())]
    assert tracked > TOP_N and after[("distillguard_accounts_pending", ())] == 0
    assert after[("distillguard_account_score_bucket", (("le", "+Inf"),))] == tracked
    # every band counts exactly the served accounts whose score falls in it
    bands = {
        dict(lbl)["severity"]: v
        for (n, lbl), v in after.items()
        if n == "distillguard_accounts_by_severity"
    }
    assert len(scores) == tracked
    assert bands == {
        band: sum(severity_of(s) == band for s in scores) for band, _ in SEVERITY_BANDS
    }
    top = {  # one series per account, labelled by account only (no rank: no churn)
        dict(lbl)["account_id"]: v
        for (n, lbl), v in after.items()
        if n == "distillguard_top_account_score"
    }
    assert all(len(lbl) == 1 for (n, lbl) in after if n == "distillguard_top_account_score")
    assert len(top) == TOP_N
    assert sorted(top.values(), reverse=True) == sorted(scores, reverse=True)[:TOP_N]
    info = [lbl for (n, lbl), _ in after.items() if n == "distillguard_model_info"]
    assert info and dict(info[0])["trained_at"]
    # OpenMetrics scrape: the score distribution is a gauge histogram
    types = {f.name: f.type for f in openmetrics_families(om)}
    assert types["distillguard_account_score"] == "gaugehistogram"
    assert types["distillguard_events_ingested"] == "counter"
    assert types["distillguard_campaigns"] == "gauge"


def test_bodies_past_the_limit_wait_unread(model: DistillScorer) -> None:
    """max_bodies_in_flight bounds the bodies read or held at once: while one slow body holds
    the only slot, another request is not served; it is once the first is done."""
    settings = Settings(
        model_path=model_path(),
        port=free_port(),
        ingest_tokens=[INGEST],
        read_tokens=[READ],
        max_bodies_in_flight=1,
    )
    first, second = records(3000, 2), records(3002, 2)
    gate = threading.Event()
    done: dict[str, tuple[float, httpx.Response]] = {}

    def slow() -> Iterator[bytes]:
        yield (json.dumps(first[0]) + "\n").encode()
        gate.wait(30)
        yield json.dumps(first[1]).encode()

    def send(name: str, body: bytes | Iterator[bytes]) -> None:
        with client_for(srv.url) as c:
            r = post(c, body)
        done[name] = (time.monotonic(), r)

    with ThreadServer(settings, model) as srv:
        slots = srv.app.state.runtime.body_slots
        a = threading.Thread(target=send, args=("a", slow()))
        a.start()
        wait_for(slots.locked)  # the slow body holds the slot
        b = threading.Thread(target=send, args=("b", ndjson(second)))
        b.start()
        b.join(1.0)
        assert "b" not in done  # waiting for the slot
        gate.set()
        a.join(30)
        b.join(30)
    assert done["a"][1].json()["accepted"] == 2 and done["b"][1].json()["accepted"] == 2
    assert done["a"][0] <= done["b"][0]
