"""The scorer: estimator contract, score direction, calibration, reasons, save/load."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import polars as pl
import pytest

from detector.features import FEATURE_NAMES
from detector.models import (
    MODEL_FORMAT,
    MODEL_FORMAT_VERSION,
    DistillScorer,
    HistogramDetector,
    ModelLoadError,
)


def population(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    data = {"account_id": [f"a{seed}_{i}" for i in range(n)]}
    for name in FEATURE_NAMES:
        data[name] = np.abs(rng.normal(0.1, 0.05, n))
    return pl.DataFrame(data)


def test_estimator_contract() -> None:
    m = DistillScorer(target_fpr=0.01, n_bins=15)
    assert not [k for k in vars(m) if k.endswith("_")]  # __init__ stores parameters only
    assert m.fit(population(500, 1)) is m
    learned = [k for k in vars(m) if k.endswith("_")]
    assert {"calibrator_", "threshold_", "median_", "scale_"} <= set(learned)


@pytest.mark.parametrize("n_bins", [5, 20])
def test_histogram_detector_is_pyods_hbos_bit_for_bit(n_bins: int) -> None:
    from pyod.models.hbos import HBOS

    rng = np.random.default_rng(n_bins)
    train = np.column_stack(
        [
            np.clip(rng.normal(0, 1, 3000), 0, None),  # one-sided deviations: many zeros
            np.abs(rng.standard_cauchy(3000)),  # heavy tail
            rng.integers(0, 3, 3000).astype(float),  # few distinct values
            np.zeros(3000),  # constant
        ]
    )
    ours, pyods = HistogramDetector(n_bins=n_bins).fit(train), HBOS(n_bins=n_bins).fit(train)
    assert np.array_equal(ours.hist_, pyods.hist_)
    assert np.array_equal(ours.bin_edges_, pyods.bin_edges_)
    # inside the training range, slightly and far outside it on both sides
    for x in (train, train * 1.1 + 0.01, -train, rng.normal(0, 10, train.shape)):
        assert np.array_equal(ours.decision_function(x), pyods.decision_function(x))
    with pytest.raises(ValueError):
        ours.decision_function(np.full((2, 4), np.nan))


def test_higher_is_more_suspicious_and_direction_matters() -> None:
    m = DistillScorer().fit(population(1000, 1))
    base = population(1, 2)
    test = pl.concat([base, base, base]).with_columns(
        pl.Series("cot_rate", [0.1, 0.95, 0.0]),
        pl.Series("high_max_tokens_share", [0.1, 1.0, 0.0]),
        pl.Series("template_reuse", [0.1, 0.99, 0.0]),
        pl.Series("n_gt1_share", [0.1, 0.9, 0.0]),
        pl.Series("logprobs_share", [0.1, 0.9, 0.0]),
    )
    s = m.score(test)["score"].to_list()
    # five of ~35 noisy features far out (three were enough only with some random draws)
    assert s[1] > 99 > s[0]
    # unusually LOW risk features never raise suspicion
    assert s[2] <= s[0] + 5


def test_calibration_reads_as_fpr() -> None:
    m = DistillScorer().fit(population(4000, 1))  # the reference: every training account
    s = m.score(population(4000, 2))["score"].to_numpy()
    assert abs(float((s >= 99).mean()) - 0.01) < 0.006
    assert abs(float((s >= 90).mean()) - 0.10) < 0.025


def test_reasons_name_value_and_typical() -> None:
    m = DistillScorer().fit(population(1000, 1))
    test = population(1, 3).with_columns(pl.lit(0.97).alias("logprobs_share"))
    reasons = m.score(test)["reasons"][0].to_list()
    assert reasons and reasons[0].startswith("logprobs_share high: 97% vs typical")


def test_save_load_roundtrip_and_errors(tmp_path: Path) -> None:
    m = DistillScorer().fit(population(800, 1))
    path = m.save(tmp_path / "m.joblib")
    test = population(50, 4)
    assert DistillScorer.load(path).score(test).equals(m.score(test))
    with pytest.raises(ModelLoadError, match="no such model file"):
        DistillScorer.load(tmp_path / "missing.joblib")
    (tmp_path / "junk.joblib").write_text("not a model")
    with pytest.raises(ModelLoadError, match="not a distillguard model"):
        DistillScorer.load(tmp_path / "junk.joblib")
    env = joblib.load(path)
    env["format_version"] = 999
    joblib.dump(env, tmp_path / "old.joblib")
    with pytest.raises(ModelLoadError, match="format version 999 is not supported"):
        DistillScorer.load(tmp_path / "old.joblib")
    env["format_version"] = MODEL_FORMAT_VERSION
    env["features"] = ["no_such_feature"]
    joblib.dump(env, tmp_path / "feat.joblib")
    with pytest.raises(ModelLoadError, match="no_such_feature"):
        DistillScorer.load(tmp_path / "feat.joblib")
    assert env["format"] == MODEL_FORMAT


def test_supervised_mode_uses_labels() -> None:
    pop = population(600, 1)
    labels = pl.DataFrame(
        {
            "account_id": pop["account_id"],
            "is_attack": [i % 20 == 0 for i in range(600)],
        }
    )
    pop = pop.with_columns(
        pl.when(labels["is_attack"]).then(0.9).otherwise(pl.col("cot_rate")).alias("cot_rate")
    )
    m = DistillScorer().fit(pop, labels)
    assert m.supervised_ and m.n_reference_ == 570
    with pytest.raises(ValueError, match="needs labels"):
        DistillScorer(supervised="always").fit(pop)


def test_supervised_fit_on_a_log_without_text() -> None:
    """A log with no prompt text has no content features at all (every value null): the
    supervised fit must still train (scikit-learn cannot bin a column of NaN) and rank."""
    pop = population(400, 3)
    labels = pl.DataFrame(
        {"account_id": pop["account_id"], "is_attack": [i % 20 == 0 for i in range(400)]}
    )
    pop = pop.with_columns(
        pl.lit(None, dtype=pl.Float64).alias("cot_rate"),
        pl.when(labels["is_attack"])
        .then(pl.col("requests_per_day") * 50)
        .otherwise(pl.col("requests_per_day"))
        .alias("requests_per_day"),
    )
    m = DistillScorer().fit(pop, labels)
    assert m.supervised_
    s = m.score(pop).join(labels, on="account_id")
    attack = s.filter(pl.col("is_attack"))["score"].median()
    normal = s.filter(~pl.col("is_attack"))["score"].median()
    assert attack is not None and normal is not None and attack > normal
