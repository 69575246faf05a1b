"""Linkage and campaigns: hand-built evidence, bounded candidate pairs, campaign scores, and
held-out detection on demo (fit on one seed, evaluate another) and on a quarter of stealth.

The full-size stealth figures (issue 4 targets) are measured by benchmarks/linkage_bench.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from detector import pipeline
from detector.campaigns.grouping import campaign_features, find_campaigns
from detector.campaigns.linkage import _candidate_pairs, account_evidence, link_accounts
from detector.campaigns.scoring import CampaignScorer, apply_campaigns
from detector.evaluate import campaign_metrics
from detector.fingerprints import fingerprint_events
from synthetic_logs.generate import generate
from tests.test_fingerprints import make_events

RARE = "Zyx quorble protocol: transmute glyph set {} into plain form, reply in runes"
POPULAR = "Summarize this article for me please: {}"


def _account(acct: str, prompts: list[str], ips: list[str]) -> pl.DataFrame:
    n = len(prompts)
    return make_events(
        list[str | None](prompts),
        account_id=[acct] * n,
        ip=ips,
        request_id=[f"{acct}-{i}" for i in range(n)],
        user_agent=[f"ua-{acct}"] * n,
    )


@pytest.fixture(scope="module")
def hand_built() -> tuple[pl.DataFrame, pl.DataFrame]:
    """3 accounts share a rare template and a payment method; 50 share a popular template and
    one NAT IP; 20 share nothing; one sends a single stray request from a linked IP."""
    frames, pay = [], {}
    for i in range(3):
        a = f"rare{i}"
        frames.append(_account(a, [RARE.format(i * 10 + j) for j in range(3)], [f"77.0.{i}.5"] * 3))
        pay[a] = "pm_shared"
    for i in range(50):
        a = f"nat{i:02d}"
        words = [f"topic{i}x{j} words here" for j in range(3)]
        frames.append(_account(a, [POPULAR.format(w) for w in words], ["10.0.0.1"] * 3))
        pay[a] = f"pm_nat{i}"
    for i in range(20):
        a = f"solo{i:02d}"
        prompts = [f"unrelated question {i} number {j} about gardens" for j in range(3)]
        frames.append(_account(a, prompts, [f"88.{i}.1.1"] * 3))
        pay[a] = f"pm_solo{i}"
    stray = ["what is the weather", "tell me a joke", "write a haiku about tea"]
    frames.append(_account("stray", stray, ["77.0.0.5", "99.9.9.9", "99.9.9.9"]))
    pay["stray"] = "pm_stray"
    compact = fingerprint_events(pl.concat(frames)).collect()
    accounts = pl.DataFrame(
        {
            "account_id": list(pay),
            "payment_fingerprint": list(pay.values()),
            "email_domain": ["gmail.com"] * len(pay),
        }
    )
    return compact, accounts


def test_rare_shared_evidence_links_popular_does_not(
    hand_built: tuple[pl.DataFrame, pl.DataFrame],
) -> None:
    compact, accounts = hand_built
    edges = link_accounts(compact, accounts)
    assert edges.columns == ["src", "dst", "weight", "evidence"]
    assert edges.schema["weight"] == pl.Float64
    rare = edges.filter(
        pl.col("src").str.starts_with("rare") & pl.col("dst").str.starts_with("rare")
    )
    assert rare.height == 3 and (rare["weight"] >= 1.0).all()
    for ev in rare["evidence"].to_list():
        assert "payment method pm_shared" in ev
        assert any("prompt template" in e for e in ev)
    nat = edges.filter(pl.col("src").str.starts_with("nat") & (pl.col("weight") >= 1.0))
    assert nat.height == 0
    # one request from a linked account's IP is not evidence (min_uses)
    assert edges.filter((pl.col("src") == "rare0") & (pl.col("dst") == "stray")).height == 0

    assignments, groups = find_campaigns(edges, compact["account_id"].unique())
    cid = assignments.filter(pl.col("account_id").str.starts_with("rare"))["campaign_id"]
    assert cid.n_unique() == 1 and cid[0] is not None and cid[0].startswith("C-")
    assert (
        assignments.filter(pl.col("account_id").str.starts_with("nat"))["campaign_id"]
        .is_null()
        .all()
    )
    assert groups.row(0, named=True)["members"] == ["rare0", "rare1", "rare2"]


def test_account_evidence_reduces_per_account(
    hand_built: tuple[pl.DataFrame, pl.DataFrame],
) -> None:
    compact, accounts = hand_built
    ev = account_evidence(compact, accounts)
    assert set(ev.columns) == {"account_id", "kind", "value", "uses"}
    stray_ips = ev.filter((pl.col("account_id") == "stray") & (pl.col("kind") == "ip"))
    assert stray_ips["value"].to_list() == ["99.9.9.9"]  # 77.0.0.5 was used once
    assert ev.filter(pl.col("kind") == "payment").height == accounts.height
    one = account_evidence(compact, None, min_uses=1, max_values=1)
    assert one.group_by("account_id", "kind").len()["len"].max() == 1


def test_evidence_keeps_each_accounts_most_used_values() -> None:
    ips = [f"10.9.0.{i}" for i in range(40) for _ in range(2)] + ["10.9.9.9"] * 5
    prompts = [f"question {i} about tea" for i in range(len(ips))]
    compact = fingerprint_events(_account("x", prompts, ips)).collect()
    ev = account_evidence(compact, None, max_values=32).filter(pl.col("kind") == "ip")
    assert ev["value"][0] == "10.9.9.9" and ev["uses"].to_list() == [5] + [2] * 31
    # ties between equally used values: the smallest values are kept
    assert ev["value"].to_list()[1:] == sorted(f"10.9.0.{i}" for i in range(40))[:31]


def test_accounts_active_in_the_same_minutes_are_linked_by_timing() -> None:
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    slots = {"s1": range(0, 1000, 100), "s2": range(0, 1000, 100), "s3": range(50, 1000, 100)}
    slots |= {f"other{i:02d}": [0, 999] for i in range(20)}  # 1000 slots in the window
    frames = []
    for acct, at in slots.items():
        n = len(at)
        frames.append(
            make_events(
                [f"{acct} question {i} about tea" for i in range(n)],
                ts=[t0 + timedelta(seconds=120 * s + 5) for s in at],
                account_id=[acct] * n,
                # s1, s2, s3 share a rare IP: every pair of them is a candidate
                ip=["77.7.7.7" if acct.startswith("s") else f"10.0.0.{i}" for i in range(n)],
                request_id=[f"{acct}-{i}" for i in range(n)],
            )
        )
    edges = link_accounts(fingerprint_events(pl.concat(frames)).collect())
    by_pair = {(r["src"], r["dst"]): r["evidence"] for r in edges.iter_rows(named=True)}
    assert "active together in 10 2-minute slots (100x chance)" in by_pair[("s1", "s2")]
    assert not any(e.startswith("active together") for e in by_pair[("s1", "s3")])


def test_large_groups_expand_near_linearly_and_stay_connected() -> None:
    k, fanout = 500, 8
    held = pl.DataFrame(
        {
            "vid": [0] * k + [1] * 10,
            "aidx": list(range(k)) + list(range(1000, 1010)),
            "rank": np.random.default_rng(0).permutation(k + 10).astype(np.uint64),
            "k": [k] * k + [10] * 10,
        }
    )
    pairs = _candidate_pairs(held, clique_max=32, fanout=fanout)
    big = pairs.filter(pl.col("a") < 1000)
    assert big.height <= k * fanout  # not k * (k - 1) / 2
    assert pairs.filter(pl.col("a") >= 1000).height == 45  # small group: every pair
    graph = coo_matrix((np.ones(big.height), (big["a"], big["b"])), shape=(k, k))
    assert connected_components(graph, directed=False)[0] == 1


def test_campaign_ids_are_deterministic() -> None:
    edges = pl.DataFrame(
        {"src": ["a", "b", "x"], "dst": ["b", "c", "y"], "weight": [2.0, 1.5, 0.5]},
    )
    a1, g1 = find_campaigns(edges, ["c", "b", "a", "x", "y", "z"])
    a2, _ = find_campaigns(edges.reverse(), ["z", "y", "x", "a", "b", "c"])
    assert a1.sort("account_id").equals(a2.sort("account_id"))
    assert g1.height == 1 and g1["n_members"][0] == 3
    assert a1.filter(pl.col("account_id").is_in(["x", "y", "z"]))["campaign_id"].is_null().all()
    _, g3 = find_campaigns(edges, ["a", "b", "c", "x", "y"], min_weight=0.4)
    assert g3.height == 2


BACKGROUND = np.linspace(-3.0, 3.0, 2000)


class _Percentile:
    """An account model's calibration, as the campaign layer sees it: a raw score's
    percentile in a background population, flagged from 99.9."""

    threshold_ = 99.9

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        rank = np.searchsorted(BACKGROUND, raw, side="right")
        return np.asarray(100.0 * rank / (len(BACKGROUND) + 1))


def _scores(raw: dict[str, float]) -> pl.DataFrame:
    """Account scores whose calibrated score is the raw score's percentile in a background."""
    ids = [f"bg{i}" for i in range(len(BACKGROUND))] + list(raw)
    r = np.concatenate([BACKGROUND, np.array(list(raw.values()))])
    score = _Percentile().calibrate(r)
    return pl.DataFrame(
        {
            "account_id": ids,
            "score": score,
            "raw_score": r,
            "flagged": score >= 99.9,
            "reasons": [["own reason"]] * len(ids),
        },
        schema_overrides={"reasons": pl.List(pl.String)},
    )


def test_suspicious_campaigns_lift_members_ordinary_ones_do_not() -> None:
    raw = {"h1": 2.95, "h2": 2.97, "h3": 2.6, "h4": 2.99, "o1": 0.0}  # o1: ordinary, merged in
    raw |= {"n1": 1.0, "n2": 1.1, "n3": 0.9}
    scores = _scores(raw)
    assignments = pl.DataFrame(
        {
            "account_id": ["h1", "h2", "h3", "h4", "o1", "n1", "n2", "n3", "bg5"],
            "campaign_id": ["C-h"] * 5 + ["C-n"] * 3 + [None],
        }
    )
    cs = CampaignScorer().fit(scores)  # no content features: nothing typical to learn
    feats = campaign_features(assignments, scores)
    campaigns = cs.score(feats, _Percentile())
    assert campaigns.columns[:5] == ["campaign_id", "score", "n_members", "members", "evidence"]
    h = campaigns.filter(pl.col("campaign_id") == "C-h").row(0, named=True)
    n = campaigns.filter(pl.col("campaign_id") == "C-n").row(0, named=True)
    assert h["lift"] > 0 and h["score"] > 99.9
    assert n["lift"] == 0.0 and n["score"] < 90
    assert h["evidence"][0].startswith("5 accounts")
    out = apply_campaigns(scores, assignments, campaigns, _Percentile(), scorer=cs)
    assert out.columns == ["account_id", "score", "raw_score", "flagged", "reasons", "campaign_id"]
    by = {r["account_id"]: r for r in out.iter_rows(named=True)}
    before = {r["account_id"]: r for r in scores.iter_rows(named=True)}
    for a in ("h1", "h2", "h3", "h4"):
        assert by[a]["flagged"] and by[a]["raw_score"] > before[a]["raw_score"]
        assert by[a]["reasons"][0].startswith("member of campaign C-h")
        assert by[a]["reasons"][1:] == ["own reason"]
    # ordinary member of a suspicious campaign, ordinary campaign, unlinked: unchanged
    for a in ("o1", "n1", "n2", "n3", "bg5", "bg1999"):
        assert by[a]["score"] == pytest.approx(before[a]["score"])
        assert by[a]["flagged"] == before[a]["flagged"]
    assert by["n1"]["campaign_id"] == "C-n" and by["bg5"]["campaign_id"] is None


def test_no_campaigns_is_a_no_op() -> None:
    scores = _scores({"a": 1.0})
    assignments = pl.DataFrame(
        {"account_id": ["a"], "campaign_id": [None]},
        schema={"account_id": pl.String, "campaign_id": pl.String},
    )
    feats = campaign_features(assignments, scores)
    campaigns = CampaignScorer().fit(scores).score(feats, _Percentile())
    assert campaigns.height == 0
    out = apply_campaigns(scores, assignments, campaigns, _Percentile())
    assert out["score"].to_list() == scores["score"].to_list()


def _held_out(scenario: str, seeds: tuple[int, int], scale: float) -> dict[str, Any]:
    train = generate(scenario, seed=seeds[0], scale=scale)
    test = generate(scenario, seed=seeds[1], scale=scale)
    model = pipeline.fit(train.events, train.accounts)
    scored = pipeline.score(test.events, model, test.accounts)
    res = scored.campaigns
    assert res is not None
    metrics = campaign_metrics(res.assignments, test.labels, scored.alone, res.accounts)
    return {"res": res, "metrics": metrics, "labels": test.labels, "accounts": test.accounts}


@pytest.fixture(scope="module")
def demo_run() -> dict[str, Any]:
    return _held_out("demo", (21, 22), 1.0)


def test_demo_hydras_grouped_and_recall_improves(demo_run: dict[str, Any]) -> None:
    m = demo_run["metrics"]
    assert m["ari"] >= 0.8, m
    assert m["campaigns_detected"] == 1.0, m
    assert m["member_recall_with"] >= m["member_recall_without"], m
    assert m["member_recall_with"] >= 0.9, m
    assert m["recall_with"] >= m["recall_without"], m


def test_demo_legitimate_groups_not_flagged_by_linkage(demo_run: dict[str, Any]) -> None:
    m, res = demo_run["metrics"], demo_run["res"]
    assert m["normals_lifted"] == 0 and m["normals_newly_flagged"] == 0, m
    # the company behind one NAT and one payment method is one operator: it is found as a
    # campaign, but its members are ordinary, so it lifts nobody
    shared_pay = (
        demo_run["accounts"]
        .join(demo_run["labels"].filter(~pl.col("is_attack")), on="account_id")
        .group_by("payment_fingerprint")
        .agg(pl.col("account_id"))
        .filter(pl.col("account_id").list.len() >= 10)
    )
    nat = shared_pay["account_id"].explode()
    nat_camps = res.assignments.filter(pl.col("account_id").is_in(nat.implode()))
    assert nat_camps["campaign_id"].drop_nulls().n_unique() >= 1
    camps = res.campaigns.filter(pl.col("campaign_id").is_in(nat_camps["campaign_id"].implode()))
    assert (camps["lift"] == 0).all() and (camps["score"] < 99.9).all()
    summary = res.campaigns.sort("score", descending=True).row(0, named=True)
    assert summary["n_members"] >= 10 and "sharing" in summary["evidence"][0]


@pytest.mark.slow
def test_stealth_quarter_hydras_found() -> None:
    """Quarter-size stealth: campaigns recover the hydra members their accounts alone miss.
    (Payment pools do not shrink with ``scale``, so a quarter has fewer shared payments per
    member and links less than the full size, where ARI is ~0.98 and recall ~0.99.)"""
    m = _held_out("stealth", (31, 32), 0.25)["metrics"]
    assert m["member_recall_with"] >= 0.85, m
    # campaign evidence finds most of the members that their accounts alone miss
    missed = 1.0 - m["member_recall_without"]
    assert m["member_recall_with"] - m["member_recall_without"] >= 0.8 * missed, m
    assert m["ari"] >= 0.75, m
    assert m["normals_newly_flagged"] <= 2, m
