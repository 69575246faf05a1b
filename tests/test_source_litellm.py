"""LiteLLM, live: calls made through the real ``litellm`` package (its built-in
``mock_response``: no network) are logged by LiteLLM's own ``generic_api`` callback, configured
exactly as a proxy's ``callback_settings`` configures it, to ``POST /v1/ingest/litellm`` of a
real uvicorn server; they arrive as events with the right account, key, end user, model,
parameters and token counts (read back from the service's write-ahead log, which holds the
events as accepted), and the service scores their accounts."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from detector.models import DistillScorer
from service.settings import Settings
from service.wal import WriteAheadLog
from tests.service_support import (
    INGEST,
    READ,
    ThreadServer,
    client_for,
    free_port,
    model_path,
    scrape,
    settle,
)

# LiteLLM fetches its model price map from the internet at import unless told not to
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
if os.environ.get("CI") == "true":  # CI installs the extra: a missing package is a failure
    import litellm
else:
    litellm = pytest.importorskip(
        "litellm", reason="needs the litellm extra: pip install -e '.[litellm]'"
    )

from litellm.integrations.generic_api.generic_api_callback import (
    GenericAPILogger,
)

# litellm's own pydantic models warn about their TypedDicts' ReadOnly items when first built
pytestmark = pytest.mark.filterwarnings("ignore:Items? .* `ReadOnly` qualifier:UserWarning")
DATA = Path(__file__).parent / "data"
TEAMS = {  # account -> (virtual key hash, requester IP, end user)
    "team-alpha": ("a" * 64, "203.0.113.10", "alpha-customer-1"),
    "team-beta": ("b" * 64, "198.51.100.20", None),
}
CALLS_PER_TEAM = 12


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadServer]:
    settings = Settings(
        model_path=model_path(),
        port=free_port(),
        ingest_tokens=INGEST,  # type: ignore[arg-type]  # a comma list, as in env
        read_tokens=READ,  # type: ignore[arg-type]
        snapshot_path=tmp_path_factory.mktemp("state"),
        snapshot_interval_s=3600,  # the write-ahead log keeps every accepted batch
        rescore_interval_s=0.1,
    )
    with ThreadServer(settings, DistillScorer.load(model_path())) as srv:
        yield srv


def proxy_metadata(team: str, call: int) -> dict[str, Any]:
    """What a LiteLLM proxy puts in a request's metadata for a virtual key of ``team``."""
    key, ip, end_user = TEAMS[team]
    return {
        "user_api_key_hash": key,
        "user_api_key_alias": f"{team}-key",
        "user_api_key_team_id": team,
        "user_api_key_user_id": f"{team}-owner",
        "user_api_key_end_user_id": end_user,
        "requester_ip_address": ip,
        "user_agent": "OpenAI/Python 1.54.3",
        "call": call,
    }


async def drive_litellm(url: str) -> None:
    """Configure the generic_api callback as a proxy's config.yaml would, make mock calls,
    flush the callback's queue."""
    litellm.callback_settings = {
        "distillguard": {
            "callback_type": "generic_api",
            "endpoint": f"{url}/v1/ingest/litellm",
            "headers": {"Authorization": f"Bearer {INGEST}"},
            "log_format": "ndjson",
        }
    }
    litellm.logging_callback_manager.add_litellm_callback("distillguard")
    [logger] = [c for c in litellm.callbacks if isinstance(c, GenericAPILogger)]
    try:
        for i in range(CALLS_PER_TEAM):
            await litellm.acompletion(  # team-alpha: logit extraction with logprobs
                model="gpt-4o-mini",
                messages=[
                    {"role": "system", "content": "Answer with one label."},
                    {"role": "user", "content": f"Classify review {i}: 'works as described'"},
                ],
                mock_response="positive",
                temperature=0.0,
                max_tokens=1,
                logprobs=True,
                top_logprobs=5,
                metadata=proxy_metadata("team-alpha", i),
            )
            await litellm.acompletion(  # team-beta: long sampled answers
                model="anthropic/claude-3-5-sonnet-20241022",
                messages=[{"role": "user", "content": f"Explain topic {i} step by step."}],
                mock_response="Step 1 ...",
                temperature=0.9,
                top_p=0.8,
                max_tokens=2048,
                metadata=proxy_metadata("team-beta", i),
            )
        for _ in range(100):  # success callbacks run as tasks after each call returns
            if len(logger.log_queue) >= 2 * CALLS_PER_TEAM:
                break
            await asyncio.sleep(0.05)
        await logger.flush_queue()
    finally:
        litellm.callbacks.clear()
        litellm.callback_settings = {}


def logged_events(server: ThreadServer) -> pl.DataFrame:
    """The canonical events the service accepted, as its write-ahead log holds them."""
    assert server.settings.snapshot_path is not None
    frames = [f for _, f in WriteAheadLog(server.settings.snapshot_path / "wal").replay()]
    return pl.concat(frames) if frames else pl.DataFrame()


def test_litellm_calls_arrive_as_events_and_are_scored(server: ThreadServer) -> None:
    asyncio.run(drive_litellm(server.url))
    with client_for(server.url, READ) as client:
        settle(client)
        counters = scrape(client)
        alpha = client.get("/v1/accounts/team-alpha").json()
        beta = client.get("/v1/accounts/team-beta").json()
    assert counters[("distillguard_events_ingested_total", ())] >= 2 * CALLS_PER_TEAM
    events = logged_events(server)
    by_team = {t: events.filter(pl.col("account_id") == t) for t in TEAMS}
    a, b = by_team["team-alpha"], by_team["team-beta"]
    assert a.height == b.height == CALLS_PER_TEAM
    assert set(a["api_key_id"]) == {"a" * 64} and set(b["api_key_id"]) == {"b" * 64}
    assert set(a["ip"]) == {"203.0.113.10"} and set(a["end_user_id"]) == {"alpha-customer-1"}
    assert b["end_user_id"].is_null().all()
    assert set(a["user_agent"]) == {"OpenAI/Python 1.54.3"}
    assert set(a["model"]) == {"gpt-4o-mini"} and set(b["model"]) == {"claude-3-5-sonnet-20241022"}
    assert set(a["endpoint"]) == {"chat.completions"} and set(a["status"]) == {200}
    assert a["logprobs"].all() and set(a["top_logprobs"]) == {5} and set(a["max_tokens"]) == {1}
    assert set(a["temperature"]) == {0.0} and set(a["system_prompt"]) == {"Answer with one label."}
    assert sorted(a["prompt"]) == sorted(
        f"Classify review {i}: 'works as described'" for i in range(CALLS_PER_TEAM)
    )
    assert set(b["max_tokens"]) == {2048} and not b["logprobs"].any()
    assert b["temperature"].to_list() == pytest.approx([0.9] * CALLS_PER_TEAM)
    # litellm's mock responses report 10 prompt and 20 completion tokens
    assert set(a["prompt_tokens"]) == {10} and set(b["completion_tokens"]) == {20}
    assert (a["latency_ms"] >= 0).all() and a["request_id"].n_unique() == CALLS_PER_TEAM
    # ... and the service scored both accounts from them
    for account in (alpha, beta):
        assert account["score"] is not None and account["n_events"] == CALLS_PER_TEAM
    assert alpha["features"]["logprobs_share"] == 1.0 and beta["features"]["logprobs_share"] == 0.0


def test_litellm_batches_report_bad_payloads_and_duplicates(server: ThreadServer) -> None:
    payloads = [
        json.loads(x) for x in (DATA / "litellm_standard_payload.jsonl").read_text().splitlines()
    ]
    payloads[1]["metadata"]["user_api_key_hash"] = None  # no key: rejected, named
    body = json.dumps(payloads).encode()  # generic_api's default log_format: json_array
    with client_for(server.url, INGEST) as client:
        first = client.post("/v1/ingest/litellm", content=body)
        again = client.post("/v1/ingest/litellm", content=body)
        empty = client.post("/v1/ingest/litellm", content=b"  ")
        broken = client.post("/v1/ingest/litellm", content=b'[{"id": 1},')
    with client_for(server.url, READ) as client:
        forbidden = client.post("/v1/ingest/litellm", content=body)
    assert first.status_code == 200, first.text
    out = first.json()
    assert (out["accepted"], out["duplicates"], out["rejected_lines"]) == (4, 0, 1)
    assert out["rejected"][0]["line"] == 2 and out["rejected"][0]["field"] == "api_key"
    assert again.json()["duplicates"] == 4 and again.json()["accepted"] == 0
    assert empty.status_code == 400 and broken.status_code == 400
    assert "malformed JSON array" in broken.json()["detail"]
    assert forbidden.status_code == 403
