"""The 0-100 score keeps its promise: in the self-fit audit (no model, no labels: what
``distillguard audit LOGS`` does) of a fresh log, the flag threshold flags no more normal
accounts than twice the target rate; flagged accounts do not tie; the score ranks exactly as
the raw score; a small log says what it cannot resolve and still ranks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import average_precision_score

from detector import pipeline
from detector.calibration import TailCalibrator, score_reading, score_text
from detector.models import DistillScorer
from synthetic_logs.generate import generate


@pytest.fixture(scope="module")
def self_fit() -> tuple[pipeline.Scored, pl.DataFrame]:
    """A fresh ``default`` log at a quarter of its accounts, audited with a self-fitted model."""
    g = generate("default", seed=303, scale=0.25)
    return pipeline.score(g.events, DistillScorer(), g.accounts), g.labels


def test_self_fit_audit_flags_at_most_twice_the_target_rate_of_normal_accounts(
    self_fit: tuple[pipeline.Scored, pl.DataFrame],
) -> None:
    res, labels = self_fit
    normal = res.accounts.join(labels.filter(~pl.col("is_attack")), on="account_id")
    rate = float(normal["flagged"].mean() or 0.0)
    assert normal.height > 3000
    assert rate <= 2 * res.model.target_fpr, (rate, normal.filter(pl.col("flagged")))
    attack = res.accounts.join(labels.filter(pl.col("is_attack")), on="account_id")
    assert float(attack["flagged"].mean() or 0.0) >= 0.6  # the threshold still catches


def test_flagged_accounts_do_not_tie_and_score_ranks_as_raw(
    self_fit: tuple[pipeline.Scored, pl.DataFrame],
) -> None:
    res, labels = self_fit
    flagged = res.accounts.filter(pl.col("flagged"))
    assert flagged.height >= 50
    assert flagged["score"].n_unique() >= 0.95 * flagged.height
    assert flagged["score"].max() < 100.0  # no saturation at the top
    d = res.accounts.join(labels, on="account_id")
    y = d["is_attack"].to_numpy()
    assert average_precision_score(y, d["score"]) == pytest.approx(
        average_precision_score(y, d["raw_score"]), abs=1e-12
    )
    order = d.sort("raw_score")["score"].to_numpy()
    assert np.all(np.diff(order) >= 0)


def test_tail_calibrator_is_the_empirical_distribution_inside_and_rises_beyond() -> None:
    rng = np.random.default_rng(7)
    ref = rng.gamma(2.0, 1.0, 4000)
    cal = TailCalibrator().fit(ref)
    inside = np.sort(ref)[[100, 2000, 3900]]
    ecdf = np.array([np.mean(ref <= v) for v in inside]) * 4000 / 4001
    assert np.allclose(cal.transform(inside) / 100.0, ecdf)
    beyond = ref.max() + np.array([0.1, 1.0, 5.0, 20.0])
    s = cal.transform(beyond)
    assert np.all(np.diff(s) > 0) and s.max() < 100.0 and s.min() > 100 * 4000 / 4001
    for fpr in (0.1, 0.01, 1e-5):
        assert cal.survival(np.array([cal.raw_at(fpr)]))[0] == pytest.approx(fpr, rel=1e-6)
    with pytest.raises(ValueError):
        TailCalibrator().fit(np.array([1.0]))


def test_scores_read_with_the_precision_they_need() -> None:
    assert score_text(99.97312) != score_text(99.97391)
    assert score_text(99.9999871) == "99.999987"
    assert score_reading(99.973) == "rarer than 1 in 3,700 normal accounts"


SMALL = """
name = "small-gateway"
start = 2026-11-02T00:00:00Z
days = 1

[models]
base = ["atlas-4o", "atlas-4o-mini"]
new = "atlas-5"
new_release_day = 0.5

[[group]]
archetype = "casual_chat"
accounts = 12

[[group]]
archetype = "power_user"
accounts = 5

[[group]]
archetype = "app_backend"
accounts = 3

[[group]]
archetype = "bulk_distiller"
accounts = 1
"""


def test_small_log_says_what_it_cannot_resolve_without_warnings(tmp_path: Path) -> None:
    scenario = tmp_path / "small.toml"
    scenario.write_text(SMALL)
    cli = [sys.executable, "-W", "error::RuntimeWarning", "-m", "service.cli"]
    gen = [*cli, "generate", "--scenario", str(scenario), "--seed", "4", "--out", str(tmp_path)]
    subprocess.run(gen, check=True, capture_output=True)
    run = subprocess.run(
        [*cli, "audit", str(tmp_path / "events.parquet"), "--out", str(tmp_path / "audit")],
        capture_output=True,
        text=True,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "Warning" not in out and "All-NaN" not in out
    assert "reference accounts: the smallest false-positive rate they can resolve is" in out
    assert "--target-fpr" in out
    assert "strongest accounts outside campaigns (none flagged)" in run.stdout
    ranked = pl.read_parquet(tmp_path / "audit" / "accounts.parquet")
    labels = pl.read_parquet(tmp_path / "labels.parquet")
    top = ranked.head(1).join(labels, on="account_id")["archetype"].to_list()
    assert top == ["bulk_distiller"]  # the ranking is there to read
    assert ranked["account_id"][0] in run.stdout
