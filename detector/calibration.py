"""From raw anomaly scores to the 0-100 score a user reads, and what it promises.

``score = 100 * (1 - S(raw))`` where ``S(raw)`` is the estimated share of the *reference
population* (the accounts taken for normal) scoring at least ``raw``. So ``score >= 99.9``
reads "in the top 0.1 % of the reference", and flagging at ``100 * (1 - f)`` flags about a
share ``f`` of traffic like the reference. A reference with a few attackers left in it (an
unlabelled log) puts them at its top, so the threshold can only move up: fewer normal accounts
are flagged than promised, not more.

:class:`TailCalibrator` estimates ``S`` from the reference's raw scores:

- **Within the reference** (up to its highest score): the empirical distribution,
  interpolated linearly between the distinct reference values, so that distinct raw scores
  get distinct scores (no steps, no ties between reference points), and a threshold for a
  false-positive rate the reference can resolve is an empirical quantile, not a model's.
- **Beyond the highest reference score**: a generalised Pareto tail ``S(x) = S(max) *
  (1 + shape * (x - max) / sigma) ** (-1 / shape)`` (the peaks-over-threshold model of extreme
  value theory) with a fixed heavy shape (``tail_shape``, 0.5) and its scale set from the
  excesses of the top ``k`` reference scores over the ``k+1``-th (their mean is
  ``sigma / (1 - shape)``). The score keeps rising there, so it ranks all the way up: an
  account far beyond every normal one reads 99.9999, not the same 99.965 as one just past the
  maximum. The heavy shape is the cautious choice twice over: these raw scores are bounded,
  so the real tail is shorter and the model understates how rare an extreme account is; and
  a polynomial decay keeps even very distant accounts (a large campaign's lifted members)
  apart in floating point, where an exponential tail would round them all to 100.
- **Below the reference minimum**: an exponential approach to 0 (strictly increasing).

``k = clip(round(sqrt(n)), min_tail, max_tail)`` for ``n`` reference accounts: enough points
to fit one parameter, few enough to stay in the tail. ``sigma`` is floored at
``min_sigma_share`` of the reference's interquartile range, so a few tied top scores cannot
make the tail a wall.

With fewer than ``1 / f`` reference accounts a false-positive rate ``f`` cannot be checked
against data, only extrapolated by the tail: :meth:`TailCalibrator.resolvable_fpr` says what
the reference can resolve (``1 / (n + 1)``).

>>> import numpy as np
>>> cal = TailCalibrator().fit(np.random.default_rng(0).normal(size=5000))
>>> s = cal.transform(np.array([0.0, 3.0, 4.0, 8.0]))
>>> bool(np.all(np.diff(s) > 0)) and bool(s[-1] < 100.0)
True
>>> round(float(cal.transform(np.array([1.645]))[0]))  # N(0, 1)'s 95th percentile
95
"""

from __future__ import annotations

import math
from typing import Self

import numpy as np
from sklearn.base import BaseEstimator


class TailCalibrator(BaseEstimator):
    """Raw scores -> 0-100 against a reference population (see the module docstring).

    Parameters
    ----------
    min_tail, max_tail: bounds of the number ``k`` of top reference scores the tail's scale is
        set from (``round(sqrt(n))`` in between).
    min_sigma_share: the tail's scale is at least this share of the reference's IQR.
    tail_shape: the generalised Pareto shape of the tail past the reference maximum (> 0).
    """

    def __init__(
        self,
        min_tail: int = 10,
        max_tail: int = 200,
        min_sigma_share: float = 0.02,
        tail_shape: float = 0.5,
    ):
        self.min_tail = min_tail
        self.max_tail = max_tail
        self.min_sigma_share = min_sigma_share
        self.tail_shape = tail_shape

    def fit(self, raw: np.ndarray) -> Self:
        """Learn ``S`` from the raw scores of the reference population (finite values)."""
        ref = np.sort(np.asarray(raw, dtype=np.float64))
        ref = ref[np.isfinite(ref)]
        n = len(ref)
        if n < 2:
            raise ValueError(f"calibration needs at least 2 reference scores, got {n}")
        values, counts = np.unique(ref, return_counts=True)
        self.n_reference_ = n
        self.values_ = values
        self.cdf_ = np.cumsum(counts) / (n + 1.0)  # share of the reference <= each value
        q1, q3 = np.quantile(ref, [0.25, 0.75])
        spread = float(q3 - q1) if q3 > q1 else float(ref[-1] - ref[0]) or 1.0
        k = min(int(np.clip(round(math.sqrt(n)), self.min_tail, self.max_tail)), n - 1)
        if not self.tail_shape > 0:
            raise ValueError(f"tail_shape must be > 0, got {self.tail_shape}")
        excess = ref[n - k :] - ref[n - k - 1]  # the top k over the (k+1)-th highest
        mean_excess = max(float(excess.mean()), self.min_sigma_share * spread, 1e-9)
        self.tail_sigma_ = mean_excess * (1.0 - min(self.tail_shape, 0.9))
        self.tail_start_ = float(values[-1])  # the tail takes over past the highest score
        self.tail_share_ = float(1.0 - self.cdf_[-1])  # S(max) = 1 / (n + 1)
        self.low_sigma_ = max(spread / 2.0, 1e-9)
        return self

    def _ecdf(self, x: np.ndarray) -> np.ndarray:
        """The empirical distribution interpolated between distinct reference values."""
        return np.interp(x, self.values_, self.cdf_)

    def survival(self, raw: np.ndarray) -> np.ndarray:
        """``S(raw)``: the estimated share of the reference population scoring at least this."""
        x = np.asarray(raw, dtype=np.float64)
        out = np.asarray(1.0 - self._ecdf(x), dtype=np.float64)
        tail = x > self.tail_start_
        z = (x[tail] - self.tail_start_) / self.tail_sigma_
        out[tail] = self.tail_share_ * (1.0 + self.tail_shape * z) ** (-1.0 / self.tail_shape)
        low = x < self.values_[0]
        out[low] = 1.0 - self.cdf_[0] * np.exp((x[low] - self.values_[0]) / self.low_sigma_)
        return out

    def transform(self, raw: np.ndarray) -> np.ndarray:
        """0-100 scores: ``100 * (1 - S(raw))``, strictly increasing in ``raw``."""
        return np.asarray(100.0 * (1.0 - self.survival(raw)))

    def raw_at(self, fpr: float) -> float:
        """The raw score whose survival is ``fpr`` (where the flag threshold for it sits)."""
        if fpr <= self.tail_share_:
            xi = self.tail_shape
            return self.tail_start_ + self.tail_sigma_ * ((self.tail_share_ / fpr) ** xi - 1) / xi
        return float(np.interp(1.0 - fpr, self.cdf_, self.values_))

    def resolvable_fpr(self) -> float:
        """The smallest false-positive rate the reference can check against data."""
        return 1.0 / (self.n_reference_ + 1)


def score_text(score: float) -> str:
    """A score with the precision it needs: one decimal below 99, then enough decimals to
    show two significant digits of ``100 - score`` (99.9731, 99.999987), so that distinct
    scores read differently.

    >>> score_text(87.234), score_text(99.97312), score_text(99.9999871)
    ('87.2', '99.973', '99.999987')
    """
    tail = 100.0 - score
    if score < 99.0 or tail <= 0:
        return f"{score:.1f}"
    decimals = min(12, max(1, math.ceil(-math.log10(tail)) + 1))
    return f"{score:.{decimals}f}"


def score_reading(score: float) -> str:
    """The plain reading of a score: its share of the reference population scoring as high.

    >>> score_reading(80.0)
    'top 20 % of normal accounts'
    >>> score_reading(99.973)
    'rarer than 1 in 3,700 normal accounts'
    >>> score_reading(99.99999)
    'rarer than 1 in 10,000,000 normal accounts'
    """
    share = (100.0 - score) / 100.0
    if share >= 0.01:
        return f"top {100 * share:.0f} % of normal accounts"
    if share <= 0:
        return "beyond every normal account"
    one_in = 1.0 / share
    rounded = float(f"{one_in:.2g}")
    return f"rarer than 1 in {rounded:,.0f} normal accounts"
