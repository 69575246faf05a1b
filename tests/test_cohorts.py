"""Linkage without an account table and without a size loophole: arrival bursts, cohorts (an
identity value and a content value held together beyond chance), balanced campaigns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from detector import pipeline
from detector.campaigns.arrivals import arrival_bursts, arrival_evidence, first_requests
from detector.campaigns.cohorts import cohort_counts, cohort_edges, cohort_groups
from detector.evaluate import campaign_metrics
from detector.models import DistillScorer
from synthetic_logs.generate import generate

T0 = datetime(2026, 11, 2, tzinfo=UTC)


def _first_requests(hours: list[float]) -> pl.DataFrame:
    """Compact-like events: one request per account at the given hour after T0."""
    return pl.DataFrame(
        {
            "account_id": [f"a{i}" for i in range(len(hours))],
            "ts": [T0 + timedelta(hours=h) for h in hours],
        }
    )


def test_an_arrival_burst_is_found_and_the_window_onset_is_not() -> None:
    rng = np.random.default_rng(3)
    onset = list(rng.uniform(0, 1, 300))  # everyone already active appears at the start
    background = list(rng.uniform(1, 96, 200))  # ~2 new accounts an hour over four days
    burst = list(50.2 + rng.uniform(0, 0.5, 40))  # 40 accounts brought online together
    events = _first_requests(onset + background + burst)
    _, bursts = arrival_bursts(first_requests(events))
    assert bursts["first_hour"].to_list() == [50]
    assert bursts["arrivals"][0] >= 40 and 0 < bursts["strength"][0] <= 1
    ev = arrival_evidence(first_requests(events))
    burst_ids = {f"a{i}" for i in range(500, 540)}
    assert burst_ids <= set(ev["account_id"].to_list())
    assert ev.height <= 45  # the few background accounts of that hour, no more
    assert set(ev["value"]) == {"2026-11-04T02:00Z"}


def _evidence(rows: list[tuple[str, str, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        [(a, k, v, 3) for a, k, v in rows],
        schema={"account_id": pl.String, "kind": pl.String, "value": pl.String, "uses": pl.UInt32},
        orient="row",
    )


def test_a_cohort_is_a_coincidence_beyond_chance_not_a_popular_value() -> None:
    rng = np.random.default_rng(5)
    n = 2000
    rows: list[tuple[str, str, str]] = []
    for i in range(n):
        a = f"acct{i}"
        rows.append((a, "ip_prefix", f"10.{i % 400}.0.0/24"))  # 400 ranges, 5 accounts each
        rows.append((a, "tmpl", f"t{rng.integers(0, 50)}"))  # popular templates, at random
        rows.append((a, "user_agent", "sdk/1.0" if i % 2 else "browser"))
    # a campaign: 60 accounts in one range, all with one rare template and the common SDK
    for i in range(60):
        rows.append((f"camp{i}", "ip_prefix", "203.0.113.0/24"))
        rows.append((f"camp{i}", "tmpl", "harvest-frame"))
        rows.append((f"camp{i}", "user_agent", "sdk/1.0"))
    for i in range(180):  # the frame is used elsewhere too, so it is no rare value by itself
        rows.append((f"other{i}", "tmpl", "harvest-frame"))
        rows.append((f"other{i}", "ip_prefix", f"198.51.{i}.0/24"))
    evidence = _evidence(rows)
    n_accounts = evidence["account_id"].n_unique()
    groups = cohort_groups(cohort_counts(evidence), n_accounts)
    members = {m for ms in groups["members"].to_list() for m in ms}
    assert members == {f"camp{i}" for i in range(60)}
    top = groups.sort("c", descending=True).row(0, named=True)
    assert top["ku"] == "ip_prefix" and top["c"] == 60 and top["lift"] > 5 and top["p"] < 1e-8
    edges = cohort_edges(groups)
    assert edges.height >= 59 and "203.0.113.0/24" in edges["evidence"][0][0]


BIG_HYDRA = """
name = "big-hydra"
start = 2026-11-02T00:00:00Z
days = 2
account_table = false

[models]
base = ["atlas-4o", "atlas-4o-mini"]
new = "atlas-5"
new_release_day = 1.0

[[group]]
archetype = "casual_chat"
accounts = 1300

[[group]]
archetype = "power_user"
accounts = 400

[[group]]
archetype = "app_backend"
accounts = 250

[[group]]
archetype = "researcher"
accounts = 40

[[group]]
archetype = "eval_harness"
accounts = 20

[[group]]
archetype = "casual_chat"       # an office behind one NAT: one operator, not suspicious
accounts = 60
shared_network = true
ip_ranges = 1

[[group]]
archetype = "hydra"             # 10 % of all accounts, four /24 ranges, one SDK
accounts = 240
campaign = "big"
ip_ranges = 4
lockstep = false
"""


def test_a_campaign_of_ten_percent_of_accounts_links_without_an_account_table(
    tmp_path: Path,
) -> None:
    """The old size loophole: values held by more than 5 % of accounts were dropped before
    linking, so a 240-account hydra sharing an SDK, templates and four /24 ranges in a log of
    2,300 accounts with no payment or e-mail evidence stayed unlinked (ARI 0.0)."""
    scenario = tmp_path / "big.toml"
    scenario.write_text(BIG_HYDRA)
    g = generate(scenario, seed=7)
    assert g.accounts is None
    hydra = g.labels.filter(pl.col("archetype") == "hydra").height
    assert hydra >= 0.1 * g.labels.height
    res = pipeline.score(g.events, DistillScorer(), None)
    assert res.campaigns is not None
    m = campaign_metrics(res.campaigns.assignments, g.labels, res.alone, res.accounts)
    assert m["ari"] >= 0.9, m
    assert m["normals_lifted"] == 0, m
    members = res.accounts.join(g.labels, on="account_id").filter(pl.col("archetype") == "hydra")
    assert members["flagged"].mean() >= 0.9


def test_balanced_residential_hydra_is_mostly_linked_and_lifted() -> None:
    """The adversarial scenario's residential hydra (10 % of accounts, one residential IP each
    in ranges normal users share, popular user agents, paraphrased prompts, no account table)
    is found through its arrival bursts, cohorts and balanced pace, and the members created on
    the log's first day (when every account is new) through pivots from what was found: its
    frames at its pace, alike its members. At a quarter of its size, seeds 1-3 link 78-97 % of
    its members and flag 78-96 % (arrivals and cohorts alone: 38-76 % and 29-76 %; before
    either, none)."""
    g = generate("adversarial", seed=1, scale=0.25)
    res = pipeline.score(g.events, DistillScorer(), None)
    d = res.accounts.join(g.labels, on="account_id")
    ember = d.filter(pl.col("archetype") == "residential_hydra")
    normal = d.filter(~pl.col("is_attack"))
    assert ember["campaign_id"].is_not_null().mean() >= 0.85  # linked without any table
    assert ember["flagged"].mean() >= 0.8  # lifted by the campaigns' own evidence
    assert normal["flagged"].mean() <= 2 * res.model.target_fpr
    assert res.campaigns is not None
    pivoted = res.campaigns.edges.filter(
        pl.col("evidence").list.first().str.starts_with("writes what a suspicious campaign")
    )
    joined = ember.join(pivoted.select(pl.col("src").alias("account_id")), on="account_id")
    assert joined.height >= 0.3 * ember.height  # the pivots brought members in
    assert (
        normal.join(pivoted.select(pl.col("src").alias("account_id")), on="account_id").height == 0
    )
