"""One contract for every estimator of the project (in the spirit of scikit-learn's
``parametrize_with_checks``): ``__init__`` stores parameters only, ``fit`` returns self, learned
state ends in ``_``, ``clone`` gives an unfitted copy with the same parameters, a fitted
estimator survives pickling, ``repr`` works, and a planted outlier scores higher than every
ordinary sample (higher = more suspicious).

A new estimator joins by adding one :class:`Case` to :data:`CASES`.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import pytest
from sklearn.base import BaseEstimator, clone

from detector.calibration import TailCalibrator
from detector.campaigns.scoring import CampaignScorer
from detector.features import FEATURE_BY_NAME, FEATURE_NAMES, SCORED_FEATURES
from detector.models import DistillScorer, HistogramDetector


@dataclass
class Case:
    """How to exercise one estimator: build it, data to fit on, a way to score, ordinary
    samples and one planted outlier to score."""

    name: str
    make: Callable[[], BaseEstimator]
    train: Callable[[], Any]
    score: Callable[[Any, Any], np.ndarray]
    ordinary: Callable[[], Any]
    outlier: Callable[[], Any]


def _features(n: int, seed: int, **override: float) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {"account_id": [f"a{seed}_{i}" for i in range(n)]}
    for name in FEATURE_NAMES:
        data[name] = np.abs(rng.normal(0.1, 0.05, n))
    data.update({k: np.full(n, v) for k, v in override.items()})
    return pl.DataFrame(data)


# every scored feature far on its suspicious side of the population's 0.1 +- 0.05
SUSPICIOUS = {f: (5.0 if FEATURE_BY_NAME[f].direction == "up" else 0.0) for f in SCORED_FEATURES}


def _matrix(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 3))


class _Percentile:
    """An account model's calibration for the campaign scorer: percentile of N(0, 1)."""

    threshold_ = 99.9

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        from scipy.stats import norm

        return np.asarray(100.0 * norm.cdf(raw))


def _campaigns(medians: list[float]) -> pl.DataFrame:
    """Campaign features of campaigns of 8 members whose typical member has raw score m."""
    from scipy.stats import norm

    return pl.DataFrame(
        {
            "campaign_id": [f"C-{i}" for i in range(len(medians))],
            "n_members": [8] * len(medians),
            "members": [[f"m{i}_{k}" for k in range(8)] for i in range(len(medians))],
            "median_raw": medians,
            "median_score": [float(100 * norm.cdf(m)) for m in medians],
            "mean_score": [float(100 * norm.cdf(m)) for m in medians],
            "n_flagged_alone": [0] * len(medians),
        }
    )


def _campaign_scores(est: CampaignScorer, data: pl.DataFrame) -> np.ndarray:
    out = est.score(data, _Percentile())
    return out.sort("campaign_id")["score"].to_numpy()


CASES = [
    Case(
        "DistillScorer",
        lambda: DistillScorer(n_bins=15),
        lambda: _features(600, 1),
        lambda est, x: est.score(x)["raw_score"].to_numpy(),
        lambda: _features(200, 2),
        lambda: _features(1, 3, **SUSPICIOUS),
    ),
    Case(
        "HistogramDetector",
        lambda: HistogramDetector(n_bins=12),
        lambda: _matrix(800, 1),
        lambda est, x: est.decision_function(x),
        lambda: _matrix(200, 2),
        lambda: np.array([[8.0, -8.0, 8.0]]),
    ),
    Case(
        "TailCalibrator",
        lambda: TailCalibrator(),
        lambda: np.random.default_rng(1).normal(size=2000),
        lambda est, x: est.transform(x),
        lambda: np.random.default_rng(2).normal(size=500),
        lambda: np.array([9.0]),
    ),
    Case(
        "CampaignScorer",
        lambda: CampaignScorer(),
        lambda: _features(300, 1),
        _campaign_scores,
        lambda: _campaigns([-1.0, 0.0, 0.5, 1.0, 1.5]),
        lambda: _campaigns([3.5]),
    ),
]


def _learned(est: BaseEstimator) -> set[str]:
    return {k for k in vars(est) if k.endswith("_") and not k.startswith("__")}


@pytest.fixture(params=CASES, ids=[c.name for c in CASES])
def case(request: pytest.FixtureRequest) -> Case:
    return request.param  # type: ignore[no-any-return]


def test_init_stores_parameters_only(case: Case) -> None:
    est = case.make()
    params = est.get_params(deep=False)
    assert set(vars(est)) == set(params), "__init__ must store exactly its parameters"
    assert all(getattr(est, k) is v for k, v in params.items())
    assert est.set_params(**params) is est
    assert type(est).__name__ in repr(est)


def test_fit_returns_self_and_learns_state_ending_in_underscore(case: Case) -> None:
    est = case.make()
    before = set(vars(est))
    assert est.fit(case.train()) is est
    added = set(vars(est)) - before
    assert added and all(k.endswith("_") for k in added), added


def test_clone_is_unfitted_with_equal_parameters(case: Case) -> None:
    est = case.make().fit(case.train())
    twin = clone(est)
    assert type(twin) is type(est) and twin is not est
    assert not _learned(twin)
    assert repr(twin.get_params(deep=False)) == repr(est.get_params(deep=False))


def test_pickle_round_trip_scores_the_same(case: Case) -> None:
    est = case.make().fit(case.train())
    back = pickle.loads(pickle.dumps(est))
    data = case.ordinary()
    assert np.array_equal(case.score(est, data), case.score(back, data))


def test_planted_outlier_scores_higher(case: Case) -> None:
    est = case.make().fit(case.train())
    ordinary = case.score(est, case.ordinary())
    outlier = case.score(est, case.outlier())
    assert outlier.min() > ordinary.max(), (outlier, ordinary.max())
