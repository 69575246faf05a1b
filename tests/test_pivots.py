"""Pivots: accounts outside a suspicious campaign whose own content is the campaign's
fingerprint join it; a popular value it shares with everyone, or one value among many of a
normal account's, does not make a member."""

from __future__ import annotations

import numpy as np
import polars as pl

from detector.campaigns.pivots import fingerprints, pivot_edges


def _evidence(rows: list[tuple[str, str, str, int]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={"account_id": pl.String, "kind": pl.String, "value": pl.String, "uses": pl.UInt32},
        orient="row",
    )


def _world() -> tuple[pl.DataFrame, pl.DataFrame, int, pl.DataFrame]:
    rng = np.random.default_rng(11)
    rows: list[tuple[str, str, str, int]] = []
    n_normal = 1500
    for i in range(n_normal):  # normal accounts: their own templates, some popular ones
        a = f"n{i}"
        for j in range(int(rng.integers(3, 30))):
            rows.append((a, "tmpl", f"own-{i}-{j}", 2))
        rows.append((a, "tmpl", f"popular-{rng.integers(0, 5)}", 4))
        if i < 40:  # a few hold one of the campaign's frames among their many
            rows.append((a, "tmpl_tail", f"frame-{i % 8}", 2))
    core = [f"c{i}" for i in range(60)]
    hidden = [f"h{i}" for i in range(30)]  # the campaign's members no link found
    harness = [f"e{i}" for i in range(10)]  # an eval harness's keys: the frames, its own pace
    for k, a in enumerate(core + hidden + harness):
        frames = rng.choice(8, size=4, replace=False)  # 4 of the campaign's 8 frames each
        for f in frames:
            rows.append((a, "tmpl_tail", f"frame-{f}", 6))
        rows.append((a, "tmpl", f"popular-{k % 5}", 3))  # and the popular templates
        rows.append((a, "tmpl", f"own-{a}", 2))
    quiet = [f"n{i}" for i in range(900, 960)]
    campaigns = pl.DataFrame(
        {"campaign_id": ["C-core", "C-quiet"], "members": [core, quiet],
         "lift": [2.0, 0.0], "score": [99.99, 60.0], "strength_balance": [1.0, 0.0]}
    )  # fmt: skip
    ids = [f"n{i}" for i in range(n_normal)] + core + hidden + harness
    pace = list(np.exp(rng.normal(3.0, 1.5, n_normal)))  # ordinary paces spread widely
    pace += list(26.0 * np.exp(rng.normal(0.0, 0.08, len(core) + len(hidden))))  # balanced
    pace += [900.0] * len(harness)
    n_camp = len(core) + len(hidden)
    table: dict[str, object] = {"account_id": ids, "pace": pace}
    for f in range(5):  # other account features: the campaign's accounts are alike
        table[f"f{f}"] = np.concatenate(
            [rng.normal(3.0, 2.0, n_normal), rng.normal(0.0, 1.0, n_camp), np.zeros(10)]
        )
    return _evidence(rows), campaigns, len(ids), pl.DataFrame(table)


def test_fingerprints_are_the_campaigns_own_values_not_popular_ones() -> None:
    evidence, campaigns, n, _ = _world()
    fp = fingerprints(evidence, campaigns.filter(pl.col("lift") > 0), n)
    assert set(fp["value"]) == {f"frame-{f}" for f in range(8)}
    assert set(fp["campaign_id"]) == {"C-core"}


def test_accounts_that_write_the_campaigns_frames_join_it_and_others_do_not() -> None:
    evidence, campaigns, _, feats = _world()
    edges = pivot_edges(evidence, campaigns, feats, pace="pace", weight=1.0)
    joined = set(edges["src"])
    # every hidden member; no normal account, nor the harness that writes the frames at its
    # own pace
    assert joined == {f"h{i}" for i in range(30)}
    assert set(edges["dst"]) == {"c0"}
    assert (edges["weight"] == 1.0).all()
    assert "suspicious campaign of 60 accounts" in edges["evidence"][0][0]
    # a campaign that does not lift its members is no place to pivot from
    quiet = campaigns.with_columns(pl.lit(0.0).alias("lift"))
    assert pivot_edges(evidence, quiet, feats, pace="pace").height == 0
    unbalanced = campaigns.with_columns(pl.lit(0.0).alias("strength_balance"))
    assert pivot_edges(evidence, unbalanced, feats, pace="pace").height == 0
    # the harness is alike the campaign's accounts but for its pace: without the pace test it
    # would join (the frames alone do not decide)
    anything = pivot_edges(evidence, campaigns, feats, pace="pace", band=1e9)
    assert {f"e{i}" for i in range(10)} <= set(anything["src"])
    # and accounts at its pace that are not alike its members stay out
    strangers = feats.with_columns(
        [pl.when(pl.col("account_id").str.starts_with("h")).then(9.0).otherwise(pl.col(f"f{f}"))
         .alias(f"f{f}") for f in range(5)]
    )  # fmt: skip
    assert pivot_edges(evidence, campaigns, strangers, pace="pace").height == 0
