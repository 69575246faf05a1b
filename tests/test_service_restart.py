"""Durability against a real server process: a graceful restart (SIGTERM -> snapshot) and a
kill -9 after acknowledged batches (-> snapshot + write-ahead log replay) both come back with the
same events, accounts and scores, and keep ingest idempotent."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.replay import replay
from service.settings import Settings
from tests.service_support import (
    BOTH,
    TEST_SEED,
    ProcessServer,
    all_accounts,
    client_for,
    free_port,
    model_path,
    scenario,
    scrape,
    settle_campaigns,
    write_events,
)


def state_of(url: str) -> dict[str, Any]:
    """Window size, accounts, campaigns and every account's score, flag, reasons, campaign
    and features, once scores and campaigns reflect every acknowledged event."""
    with client_for(url, BOTH) as c:
        campaigns = settle_campaigns(c)
        metrics = scrape(c)
        accounts = all_accounts(c, BOTH)
        features = {a: c.get(f"/v1/accounts/{a}").json()["features"] for a in accounts}
    return {
        "window_events": metrics[("distillguard_window_events", ())],
        "accounts_tracked": metrics[("distillguard_accounts_tracked", ())],
        "scores": {
            a: tuple(r[k] for k in ("score", "flagged", "last_seen", "n_events", "campaign"))
            + tuple(r["reasons"])
            for a, r in accounts.items()
        },
        "campaigns": {
            x["campaign_id"]: (x["score"], tuple(x["members"])) for x in campaigns["campaigns"]
        },
        "features": features,
    }


def assert_same(got: dict[str, Any], want: dict[str, Any]) -> None:
    """Same events, accounts, scores, flags, reasons; features equal up to float summation
    order (polars' value_counts order varies between runs: <= 1e-15 relative)."""
    assert {k: v for k, v in got.items() if k != "features"} == {
        k: v for k, v in want.items() if k != "features"
    }
    assert got["features"].keys() == want["features"].keys()
    for acc, feats in want["features"].items():
        for name, value in feats.items():
            other = got["features"][acc][name]
            assert (value is None and other is None) or other == pytest.approx(value, rel=1e-12)


@pytest.mark.slow
def test_restart_and_kill_9_lose_nothing_acknowledged(tmp_path: Path) -> None:
    events = scenario(TEST_SEED).events
    half = events.height // 2
    first = write_events(events.head(half), tmp_path / "logs" / "first.parquet")
    second = write_events(events.tail(events.height - half), tmp_path / "logs" / "second.parquet")
    settings = Settings(
        # capped deviation sum only: no numba compile in each fresh process (keeps this fast)
        model_path=model_path(("capped_sum",)),
        port=free_port(),
        ingest_tokens=[BOTH],
        read_tokens=[BOTH],
        snapshot_path=tmp_path / "state",
        snapshot_interval_s=3600,  # only the shutdown snapshot: the kill -9 case needs the log
        rescore_interval_s=0.2,
        campaign_interval_s=0.5,
    )
    log = tmp_path / "server.log"

    # 1. first half, then a graceful stop: the shutdown snapshot holds everything
    srv = ProcessServer(settings, log).start()
    got = replay([first], srv.url, token=BOTH, batch_size=2000, progress=False)
    assert got["accepted"] == half
    before_term = state_of(srv.url)
    assert srv.stop(signal.SIGTERM) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
    assert (tmp_path / "state" / "CURRENT").exists()

    srv = ProcessServer(settings, log).start()
    assert_same(state_of(srv.url), before_term)

    # 2. second half acknowledged batch by batch, then kill -9 (no snapshot of these batches)
    got = replay([second], srv.url, token=BOTH, batch_size=1000, progress=False)
    assert got["accepted"] == events.height - half
    before_kill = state_of(srv.url)
    assert before_kill["window_events"] == events.height
    assert srv.stop(signal.SIGKILL) == -signal.SIGKILL
    assert list((tmp_path / "state" / "wal").glob("*.wal"))

    srv = ProcessServer(settings, log).start()
    try:
        assert_same(state_of(srv.url), before_kill)
        # the seen request ids came back too: replaying everything again adds nothing
        again = replay([first, second], srv.url, token=BOTH, batch_size=5000, progress=False)
        assert again["accepted"] == 0 and again["duplicates"] == events.height
        with httpx.Client(base_url=srv.url) as c:
            assert c.get("/readyz").json()["window_events"] == events.height
    finally:
        srv.stop(signal.SIGTERM)
