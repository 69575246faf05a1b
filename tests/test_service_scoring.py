"""End to end against a real uvicorn server: replaying a generated day flags its attackers with
EXACTLY the scores the offline path WITH campaigns gives for the same window (one copy of feature
and campaign logic), shows its hydra campaigns with their members and lifts nobody in the
legitimate groups that share things; a second replay changes nothing (idempotent ingest)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from detector import pipeline
from detector.features import FEATURE_NAMES
from detector.models import DistillScorer
from detector.window import Window
from service.replay import replay
from service.settings import Settings
from tests.service_support import (
    BOTH,
    TEST_SEED,
    ThreadServer,
    all_accounts,
    client_for,
    free_port,
    model_path,
    scenario,
    scrape,
    settle,
    settle_campaigns,
    write_events,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadServer]:
    state = tmp_path_factory.mktemp("state")
    accounts = tmp_path_factory.mktemp("accounts") / "accounts.parquet"
    scenario(TEST_SEED).accounts.write_parquet(accounts)  # payment methods, email domains
    settings = Settings(
        model_path=model_path(),
        accounts_path=accounts,
        port=free_port(),
        ingest_tokens=[BOTH],
        read_tokens=[BOTH],
        snapshot_path=state,
        rescore_interval_s=0.2,
        campaign_interval_s=0.5,
        top_n=10,
    )
    with ThreadServer(settings, DistillScorer.load(settings.model_path)) as srv:
        yield srv


@pytest.fixture(scope="module")
def replayed(server: ThreadServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    events = scenario(TEST_SEED).events
    path = write_events(events, tmp_path_factory.mktemp("logs") / "events.parquet")
    counts = replay([path], server.url, batch_size=1000, token=BOTH, progress=False)
    with client_for(server.url, BOTH) as c:
        campaigns = settle_campaigns(c)
    return {"path": path, "counts": counts, "campaigns": campaigns}


@pytest.fixture(scope="module")
def offline(replayed: dict[str, Any]) -> dict[str, pl.DataFrame]:
    """The offline audit's path (the pipeline) on the window the last campaign pass saw."""
    data = scenario(TEST_SEED)
    model = DistillScorer.load(model_path())
    w = replayed["campaigns"]["window"]
    lo, hi = (datetime.fromisoformat(w[k]) for k in ("start", "end"))
    events = data.events.filter(pl.col("ts").is_between(lo, hi))
    assert events.height == w["events"]  # nothing evicted: the window is the whole day
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = pipeline.score(events, model, data.accounts)
    ctx = Window.of(events)
    assert res.campaigns is not None and (ctx.start, ctx.end) == (lo, hi)
    alone, found, feats = res.alone, res.campaigns, res.features
    return {"alone": alone, "with": found.accounts, "campaigns": found.campaigns, "feats": feats}


def test_replay_is_fully_accepted(replayed: dict[str, Any]) -> None:
    counts = replayed["counts"]
    n = scenario(TEST_SEED).events.height
    assert counts == {**counts, "events": n, "accepted": n, "duplicates": 0, "rejected": 0}


def test_live_scores_equal_offline_scores_with_campaigns_and_flag_attackers(
    server: ThreadServer, replayed: dict[str, Any], offline: dict[str, pl.DataFrame]
) -> None:
    data = scenario(TEST_SEED)
    with client_for(server.url, BOTH) as c:
        live = all_accounts(c, BOTH)
        details = {a: c.get(f"/v1/accounts/{a}").json() for a in live}
    assert set(live) == set(data.events["account_id"].unique().to_list())
    want = {r["account_id"]: r for r in offline["with"].iter_rows(named=True)}
    alone = dict(offline["alone"].select("account_id", "score").iter_rows())
    feats = {r["account_id"]: r for r in offline["feats"].iter_rows(named=True)}
    window = replayed["campaigns"]["window"]
    for acc, row in details.items():
        exp = want[acc]
        assert (row["window"]["start"], row["window"]["end"]) == (window["start"], window["end"])
        assert row["score"] == exp["score"], acc
        assert row["score_alone"] == alone[acc], acc
        assert row["flagged"] == exp["flagged"], acc
        assert row["reasons"] == list(exp["reasons"]), acc
        assert row["campaign"] == exp["campaign_id"], acc
        assert row["raw_score"] == pytest.approx(exp["raw_score"], rel=1e-12, abs=1e-12)
        for name in FEATURE_NAMES:
            got, f = row["features"][name], feats[acc][name]
            assert (got is None and f is None) or got == pytest.approx(f, rel=1e-12), (acc, name)
    attackers = set(data.labels.filter(pl.col("is_attack"))["account_id"].to_list()) & set(live)
    flagged = {a for a, r in live.items() if r["flagged"]}
    recall = len(flagged & attackers) / len(attackers)
    assert recall >= 0.9, recall
    assert len(flagged - attackers) <= 0.05 * (len(live) - len(attackers))


def test_hydra_campaigns_are_served_and_legitimate_groups_not_lifted(
    server: ThreadServer, replayed: dict[str, Any], offline: dict[str, pl.DataFrame]
) -> None:
    labels = scenario(TEST_SEED).labels
    with client_for(server.url, BOTH) as c:
        listed = c.get("/v1/campaigns").json()
        live = {a: c.get(f"/v1/accounts/{a}").json() for a in all_accounts(c, BOTH)}
        found = {x["campaign_id"]: x for x in listed["campaigns"]}
        assert listed["count"] == len(found) == offline["campaigns"].height
        one = next(iter(found))
        assert c.get(f"/v1/campaigns/{one}").json() == found[one]
        assert c.get("/v1/campaigns/amber").status_code == 404
        metrics = scrape(c)
    # the same campaigns as offline, with the same members and scores
    for row in offline["campaigns"].iter_rows(named=True):
        got = found[row["campaign_id"]]
        assert (got["members"], got["score"], got["lift"]) == (
            row["members"], row["score"], pytest.approx(row["lift"], rel=1e-9)
        )  # fmt: skip
    # every hydra of the scenario is one served campaign, its members lifted and flagged
    hydras = labels.filter(pl.col("archetype") == "hydra")
    true = hydras.group_by("campaign_id").agg(pl.col("account_id").sort())
    assert true.height == 3
    for name, members in true.iter_rows():
        members = [m for m in members if m in live]
        cids = {live[m]["campaign"] for m in members}
        assert len(cids) == 1 and None not in cids, name
        camp = found[cids.pop()]
        assert camp["members"] == members and camp["lift"] > 0 and camp["score"] >= 99, name
        for m in members:
            acc = live[m]
            assert acc["score"] >= acc["score_alone"] and acc["flagged"], (name, m)
            assert acc["reasons"][0].startswith(f"member of campaign {camp['campaign_id']}")
    # legitimate groups that share a NAT / payment method / app are found but lift nobody:
    # every normal account keeps exactly its own score
    normals = set(labels.filter(~pl.col("is_attack"))["account_id"].to_list())
    legit = [x for x in found.values() if set(x["members"]) <= normals]
    assert legit, "the scenario's legitimate groups should be linked"
    assert all(x["lift"] == 0 and x["score"] < 90 for x in legit)
    for a in normals & set(live):
        assert live[a]["score"] == live[a]["score_alone"], a
    assert metrics[("distillguard_campaigns", ())] == len(found)
    assert metrics[("distillguard_campaign_size_bucket", (("le", "+Inf"),))] == len(found)
    assert metrics[("distillguard_campaign_size_gsum", ())] == sum(
        len(x["members"]) for x in found.values()
    )


def test_accounts_listing_and_lookup(server: ThreadServer, replayed: dict[str, Any]) -> None:
    with client_for(server.url, BOTH) as c:
        top = c.get("/v1/accounts", params={"min_score": 95, "limit": 5}).json()
        assert 0 < top["count"] <= 5
        scores = [a["score"] for a in top["accounts"]]
        assert scores == sorted(scores, reverse=True) and min(scores) >= 95
        first = top["accounts"][0]
        one = c.get(f"/v1/accounts/{first['account_id']}").json()
        assert one["score"] == first["score"] and one["campaign"] == first["campaign"]
        assert set(one["features"]) == set(FEATURE_NAMES) and one["reasons"]
        assert c.get("/v1/accounts/no-such-account").status_code == 404
        assert c.get("/v1/accounts", params={"limit": 0}).status_code == 422


def test_second_replay_is_idempotent(server: ThreadServer, replayed: dict[str, Any]) -> None:
    path = replayed["path"]
    assert isinstance(path, Path)
    with client_for(server.url, BOTH) as c:
        before = scrape(c)
        scores_before = all_accounts(c, BOTH)
        again = replay([path], server.url, batch_size=5000, token=BOTH, progress=False)
        settle(c)
        after = scrape(c)
        scores_after = all_accounts(c, BOTH)
        assert c.get("/v1/campaigns").json()["current"]  # nothing new: no campaign pass due
    n = scenario(TEST_SEED).events.height
    assert again["accepted"] == 0 and again["duplicates"] == n
    assert after[("distillguard_window_events", ())] == before[("distillguard_window_events", ())]
    assert after[("distillguard_events_ingested_total", ())] == n
    assert after[("distillguard_events_duplicate_total", ())] == n
    assert {a: r["score"] for a, r in scores_after.items()} == {
        a: r["score"] for a, r in scores_before.items()
    }
