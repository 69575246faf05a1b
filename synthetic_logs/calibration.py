"""Traffic parameters fitted on real LLM-serving traces, kept in code as constants.

The generator imports the constants below and never reads ``../shared/corpora``; the function
:func:`fit_from_traces` recomputes every constant from the trace files, so ``tests/test_realism.py``
can check that the constants still match the data (and :func:`real_samples` returns the real
arrays the realism test compares samples against).

Distributions are lognormals or mixtures of lognormals: ``ln(x)`` is normal (or a mixture of
normals). Token counts are integers: round samples to the nearest integer and clip at 1 before
using them (the KS statistics quoted below are measured that way).

What each constant is fitted on, and how
----------------------------------------
Token lengths -- Azure LLM inference trace 2023-11-16, one hour
(``AzureLLMInferenceTrace_conv.csv``, 19,366 requests; ``..._code.csv``, 8,819 requests), columns
``ContextTokens`` (prompt) and ``GeneratedTokens`` (completion). One lognormal fits none of the four
columns well (two-sample KS of rounded samples vs data: conv prompt 0.160, conv completion 0.181,
code prompt 0.106, code completion 0.118): the conversation service has clusters of prompt lengths
(~400, ~1,100 and ~4,100 tokens, i.e. a few dominant prompt templates, over a broad background) and
a completion cluster at ~400 tokens (a length cap). So each column is a mixture of K lognormals
fitted by maximum likelihood (EM on ``ln(x)``, deterministic quantile initialisation plus seeded
restarts, best log-likelihood kept). K is the smallest number of components that brings KS to about
0.05, plus one for conv prompts so that the ~4,100-token cluster (8 % of requests) keeps its own
component instead of being smeared into the background:

=========================  ===  ==========================================================
constant                   K    KS with K = 1, 2, 3, 4 (measured, 200k rounded samples)
=========================  ===  ==========================================================
PROMPT_TOKENS_CONV         4    0.160, 0.128, 0.062, 0.056
COMPLETION_TOKENS_CONV     2    0.181, 0.055, 0.030, 0.031
PROMPT_TOKENS_CODE         2    0.106, 0.030, 0.033, 0.028
COMPLETION_TOKENS_CODE     2    0.118, 0.033, 0.028, 0.012
=========================  ===  ==========================================================

No component is narrower than ``SIGMA_FLOOR`` = 0.05 in ``ln(x)`` (about +-5 % in length):
integer data otherwise lets a component collapse onto one exact template length.

IAT_CV -- ServeGen (Alibaba Bailian) per-client 10-minute windows (``servegen_client_windows``,
14 days for the language models, 1 day for the others): column ``iat_cv``, the coefficient of
variation of the inter-arrival times of one client inside one window. Only windows with
20 <= requests < 1,000 (requests = ``rate_rps`` x 600 s; 44,109 windows of 193 clients) are
used: below 20 the CV of the few gaps is mostly estimation noise (the file already drops windows
under 10), and windows above 1,000 requests (> 1.7 req/s) belong to huge pipelines whose traffic
is the superposition of many end users or batch jobs, nothing like one account of ours.
Windows are pooled (a client active all 14 days weighs more than one seen for an hour; weighting
clients equally would give a burstier fit, mean ln CV 0.59 instead of 0.46). The data has two
populations -- Poisson-like windows (CV ~ 1) and bursty ones (CV 2-15) -- so this is a
2-lognormal mixture: 29 % of windows CV ~ 1.03 (sigma 0.15), 71 % broad around CV 1.9
(sigma 0.79). KS 0.033; one lognormal gives KS 0.090 and a median of 1.58 instead of 1.34.

CLIENT_RATE_SPREAD -- the same ServeGen file. Per client (model, client_id): mean daily requests
= sum of ``rate_rps`` x 600 over its windows / number of days in that model's trace. The constant
is the pooled within-model standard deviation of ln(mean daily requests) (each model's mean
removed; ddof = number of models): a model's client base is one population. The pooled value
over all 213 clients without removing model means is 2.63. ServeGen's clients are big API
customers, so only this spread (shape) is used, never their absolute volume; the spread is
probably an underestimate (released clients are the larger ones, and windows under 10 requests
are missing).

DIURNAL_PROFILE -- the same ServeGen file, language models (the 14-day traces). ServeGen counts
``window_start_s`` from local midnight (its README: ``span(72000, 75600)`` is "20:00-21:00");
Bailian is Alibaba Cloud China, so the clock is assumed to be UTC+8
(``DIURNAL_SOURCE_UTC_OFFSET_H``). The trough (0.69-0.74 at 03:00-07:00; peaks 1.29 at 11:00 and
1.25 at 17:00) supports that: read as UTC, the trough would fall at 11:00-15:00 Beijing time. The
*aggregate* rate is flat (hourly values 0.89-1.15) because one client sends 47 % of the language
models' requests around the clock, so the profile is the average over clients of each client's share
of its requests by hour of day, for the 91 clients with at least 144 windows (one day's worth),
normalised to mean 1. Index = local hour of the users (0 = midnight); use
:func:`diurnal_profile_utc` to place a population in a time zone. Hour-to-hour noise is about +-0.1
(the two weeks differ by up to 0.2 at a given hour).

Not used: the Mooncake trace (one service, long-context inputs unlike either archetype) and
ServeGen's per-client token stats (6-hour summaries of big customers, not per-request lengths).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

__all__ = [
    "CLIENT_RATE_SPREAD",
    "COMPLETION_TOKENS_CODE",
    "COMPLETION_TOKENS_CONV",
    "DIURNAL_PROFILE",
    "DIURNAL_SOURCE_UTC_OFFSET_H",
    "IAT_CV",
    "PROMPT_TOKENS_CODE",
    "PROMPT_TOKENS_CONV",
    "LogNormal",
    "LogNormalMixture",
    "diurnal_profile_utc",
    "fit_from_traces",
    "real_samples",
]


@dataclass(frozen=True)
class LogNormal:
    """A lognormal distribution: ``ln(x) ~ Normal(mu, sigma)``."""

    mu: float  # mean of ln(x)
    sigma: float  # std of ln(x)

    def sample(self, rng: np.random.Generator, size: int | tuple[int, ...]) -> np.ndarray:
        """Draw ``size`` values (floats > 0)."""
        return np.exp(rng.normal(self.mu, self.sigma, size))


@dataclass(frozen=True)
class LogNormalMixture:
    """A mixture of lognormals: component ``i`` is drawn with probability ``weights[i]``.

    ``mu`` and ``sigma`` are the mean and standard deviation of ``ln(x)`` over the whole
    mixture, so code written for :class:`LogNormal` still reads sensible values.
    """

    weights: tuple[float, ...]
    components: tuple[LogNormal, ...]

    def __post_init__(self) -> None:
        if len(self.weights) != len(self.components) or not self.components:
            raise ValueError("LogNormalMixture needs one weight per component (at least one)")
        if abs(sum(self.weights) - 1.0) > 1e-3 or min(self.weights) < 0:
            raise ValueError(f"LogNormalMixture weights must be >= 0 and sum to 1: {self.weights}")

    @property
    def mu(self) -> float:
        """Mean of ln(x) over the mixture."""
        return float(sum(w * c.mu for w, c in zip(self.weights, self.components, strict=True)))

    @property
    def sigma(self) -> float:
        """Standard deviation of ln(x) over the mixture."""
        m = self.mu
        var = sum(
            w * (c.sigma**2 + (c.mu - m) ** 2)
            for w, c in zip(self.weights, self.components, strict=True)
        )
        return math.sqrt(var)

    def sample(self, rng: np.random.Generator, size: int | tuple[int, ...]) -> np.ndarray:
        """Draw ``size`` values (floats > 0)."""
        idx = categorical(rng, self.weights, size)
        mus = np.array([c.mu for c in self.components])
        sigmas = np.array([c.sigma for c in self.components])
        # mu + sigma * z: the same distribution as rng.normal(mus[idx], sigmas[idx]), ~2x faster
        z = rng.standard_normal(size)
        z *= sigmas[idx]
        z += mus[idx]
        return np.exp(z, out=z)


def categorical(
    rng: np.random.Generator, weights: Sequence[float] | np.ndarray, size: int | tuple[int, ...]
) -> np.ndarray:
    """Indices drawn with probabilities ``weights`` (normalised): the same distribution as
    ``rng.choice(len(weights), size, p=...)``; for a few categories, comparisons of one uniform
    draw with the cumulative weights are ~2x faster than its search."""
    cdf = np.cumsum(np.asarray(weights, dtype=float))
    cdf /= cdf[-1]
    u = rng.random(size)
    if len(cdf) > 8:
        return np.searchsorted(cdf, u, side="right")
    idx = np.zeros(u.shape, dtype=np.int64)
    for c in cdf[:-1]:
        idx += u >= c
    return idx


def _mix(*parts: tuple[float, float, float]) -> LogNormalMixture:
    """Build a mixture from ``(weight, mu, sigma)`` triples."""
    return LogNormalMixture(
        weights=tuple(w for w, _, _ in parts),
        components=tuple(LogNormal(mu, sigma) for _, mu, sigma in parts),
    )


# --- fitted constants (regenerate with `python -m synthetic_logs.calibration TRACES_DIR`) -----
# fmt: off
PROMPT_TOKENS_CONV: LogNormalMixture = _mix(
    (0.2276, 5.9883, 0.0500), (0.3257, 6.2776, 1.3179), (0.3697, 6.9938, 0.0904),
    (0.0770, 8.3142, 0.0500),
)
COMPLETION_TOKENS_CONV: LogNormalMixture = _mix((0.7223, 4.6392, 0.7080), (0.2777, 6.0067, 0.0500))
PROMPT_TOKENS_CODE: LogNormalMixture = _mix((0.3057, 5.5193, 1.3074), (0.6943, 7.6499, 0.7242))
COMPLETION_TOKENS_CODE: LogNormalMixture = _mix((0.6586, 2.3651, 0.3828), (0.3414, 3.6045, 0.8990))
IAT_CV: LogNormalMixture = _mix((0.2920, 0.0333, 0.1541), (0.7080, 0.6303, 0.7900))
CLIENT_RATE_SPREAD: float = 2.2748
DIURNAL_PROFILE: tuple[float, ...] = (
    1.047, 0.950, 0.882, 0.737, 0.706, 0.727, 0.685, 0.766, 0.834, 0.948, 1.106, 1.289,
    1.233, 1.059, 1.147, 1.050, 1.152, 1.249, 1.234, 1.038, 1.097, 1.058, 1.005, 1.001,
)
# fmt: on
DIURNAL_SOURCE_UTC_OFFSET_H: int = 8  # assumed clock of ServeGen's window_start_s (Beijing)

# --- fitting choices (documented in the module docstring) --------------------------------------
SIGMA_FLOOR = 0.05
TOKEN_COMPONENTS = {
    "PROMPT_TOKENS_CONV": 4,
    "COMPLETION_TOKENS_CONV": 2,
    "PROMPT_TOKENS_CODE": 2,
    "COMPLETION_TOKENS_CODE": 2,
}
IAT_CV_COMPONENTS = 2
IAT_MIN_REQUESTS = 20  # per 10-minute window
IAT_MAX_REQUESTS = 1000  # per 10-minute window (exclusive)
DIURNAL_MIN_WINDOWS = 144  # a client needs a day's worth of windows to enter the profile
WINDOW_S = 600

_AZURE = {"conv": "AzureLLMInferenceTrace_conv.csv", "code": "AzureLLMInferenceTrace_code.csv"}
_SERVEGEN_WINDOWS = "servegen_client_windows.csv.gz"


def diurnal_profile_utc(utc_offset_hours: int = DIURNAL_SOURCE_UTC_OFFSET_H) -> tuple[float, ...]:
    """DIURNAL_PROFILE re-indexed by UTC hour, for users living at ``utc_offset_hours``.

    >>> diurnal_profile_utc(0) == DIURNAL_PROFILE
    True
    """
    return tuple(DIURNAL_PROFILE[(h + utc_offset_hours) % 24] for h in range(24))


# --- fitting --------------------------------------------------------------------------------------


def _em_lognormal_mixture(
    x: np.ndarray, k: int, *, restarts: int = 4, max_iter: int = 1000, tol: float = 1e-9
) -> LogNormalMixture:
    """Maximum-likelihood mixture of ``k`` lognormals for positive ``x`` (EM on ln x).

    Deterministic: the first start puts the means at quantiles of ln(x), the others are seeded
    random draws; the run with the best log-likelihood wins. Identical values are collapsed
    into (value, count) pairs, which makes integer token data fast.
    """
    values, counts = np.unique(np.log(np.asarray(x, dtype=float)), return_counts=True)
    cnt = counts.astype(float)
    n = cnt.sum()
    total_sd = math.sqrt(float(np.sum(cnt * (values - np.sum(cnt * values) / n) ** 2) / n))
    rng = np.random.default_rng(0)
    starts = [np.quantile(np.repeat(values, counts), (np.arange(k) + 0.5) / k)]
    starts += [np.sort(rng.choice(values, size=k, p=cnt / n)) for _ in range(restarts)]
    best: tuple[float, np.ndarray, np.ndarray, np.ndarray] | None = None
    for means0 in starts:
        w = np.full(k, 1.0 / k)
        mu = np.asarray(means0, dtype=float).copy()
        sd = np.full(k, max(total_sd / k, SIGMA_FLOOR))
        prev = -np.inf
        ll = -np.inf
        for _ in range(max_iter):
            z = (values[:, None] - mu[None, :]) / sd[None, :]
            logp = (
                np.log(w)[None, :] - 0.5 * z**2 - np.log(sd)[None, :] - 0.5 * math.log(2 * math.pi)
            )
            top = logp.max(axis=1, keepdims=True)
            lse = top[:, 0] + np.log(np.exp(logp - top).sum(axis=1))
            ll = float(np.sum(cnt * lse))
            resp = np.exp(logp - lse[:, None]) * cnt[:, None]
            nk = resp.sum(axis=0) + 1e-12
            w = nk / n
            mu = (resp * values[:, None]).sum(axis=0) / nk
            var = (resp * (values[:, None] - mu[None, :]) ** 2).sum(axis=0) / nk
            sd = np.maximum(np.sqrt(var), SIGMA_FLOOR)
            if ll - prev < tol * abs(ll):
                break
            prev = ll
        if best is None or ll > best[0]:
            best = (ll, w, mu, sd)
    assert best is not None
    _, w, mu, sd = best
    order = np.argsort(mu)
    return _mix(*((float(w[i]), float(mu[i]), float(sd[i])) for i in order))


def _read_azure(traces_dir: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for kind, name in _AZURE.items():
        df = pl.read_csv(traces_dir / name, columns=["ContextTokens", "GeneratedTokens"])
        out[f"prompt_tokens_{kind}"] = df["ContextTokens"].to_numpy().astype(np.int64)
        out[f"completion_tokens_{kind}"] = df["GeneratedTokens"].to_numpy().astype(np.int64)
    return out


def _read_servegen(traces_dir: Path) -> pl.DataFrame:
    return pl.read_csv(
        traces_dir / _SERVEGEN_WINDOWS,
        columns=["model", "client_id", "window_start_s", "rate_rps", "iat_cv"],
    ).with_columns(requests=pl.col("rate_rps") * WINDOW_S)


def _iat_cv(windows: pl.DataFrame) -> np.ndarray:
    keep = windows.filter(
        (pl.col("requests") >= IAT_MIN_REQUESTS) & (pl.col("requests") < IAT_MAX_REQUESTS)
    )
    return keep["iat_cv"].to_numpy().astype(float)


def _client_rate_spread(windows: pl.DataFrame) -> float:
    days = windows.group_by("model").agg(
        days=((pl.col("window_start_s").max() + WINDOW_S) / 86_400).ceil()
    )
    clients = (
        windows.group_by("model", "client_id")
        .agg(total=pl.col("requests").sum())
        .join(days, on="model")
        .with_columns(ln_daily=(pl.col("total") / pl.col("days")).log())
        .with_columns(resid=pl.col("ln_daily") - pl.col("ln_daily").mean().over("model"))
    )
    n_models = clients["model"].n_unique()
    ss = float((clients["resid"] ** 2).sum())
    return math.sqrt(ss / (clients.height - n_models))


def _diurnal_profile(windows: pl.DataFrame) -> tuple[float, ...]:
    lang = windows.filter(pl.col("model").str.starts_with("language/"))
    lang = lang.filter(pl.len().over("model", "client_id") >= DIURNAL_MIN_WINDOWS)
    per_hour = (
        lang.with_columns(hour=(pl.col("window_start_s") % 86_400) // 3_600)
        .group_by("model", "client_id", "hour")
        .agg(pl.col("requests").sum())
        .with_columns(
            share=pl.col("requests") / pl.col("requests").sum().over("model", "client_id")
        )
    )
    n_clients = per_hour.select(pl.struct("model", "client_id").n_unique()).item()
    # a client with no window in some hour contributes 0 there: sum shares, divide by all clients
    by_hour = per_hour.group_by("hour").agg(pl.col("share").sum()).sort("hour")
    prof = np.zeros(24)
    prof[by_hour["hour"].to_numpy()] = by_hour["share"].to_numpy() / n_clients
    prof = prof / prof.mean()
    return tuple(float(v) for v in prof)


def real_samples(traces_dir: Path) -> dict[str, np.ndarray]:
    """The real arrays the constants are fitted on (token counts as int64, iat_cv as float)."""
    traces_dir = Path(traces_dir)
    out = _read_azure(traces_dir)
    out["iat_cv"] = _iat_cv(_read_servegen(traces_dir))
    return out


def fit_from_traces(traces_dir: Path) -> dict[str, Any]:
    """Recompute every constant of this module from the trace files in ``traces_dir``.

    Returns a dict keyed by constant name (``"PROMPT_TOKENS_CONV"``, ..., ``"DIURNAL_PROFILE"``).
    """
    traces_dir = Path(traces_dir)
    azure = _read_azure(traces_dir)
    windows = _read_servegen(traces_dir)
    fitted: dict[str, Any] = {
        name: _em_lognormal_mixture(azure[name.lower()], k) for name, k in TOKEN_COMPONENTS.items()
    }
    fitted["IAT_CV"] = _em_lognormal_mixture(_iat_cv(windows), IAT_CV_COMPONENTS)
    fitted["CLIENT_RATE_SPREAD"] = _client_rate_spread(windows)
    fitted["DIURNAL_PROFILE"] = _diurnal_profile(windows)
    return fitted


def _format_constants(fitted: dict[str, Any]) -> str:
    """The constants block as Python source, to paste above."""
    lines = []
    for name in [*TOKEN_COMPONENTS, "IAT_CV"]:
        mix: LogNormalMixture = fitted[name]
        parts = ", ".join(
            f"({w:.4f}, {c.mu:.4f}, {c.sigma:.4f})"
            for w, c in zip(mix.weights, mix.components, strict=True)
        )
        lines.append(f"{name}: LogNormalMixture = _mix({parts})")
    lines.append(f"CLIENT_RATE_SPREAD: float = {fitted['CLIENT_RATE_SPREAD']:.4f}")
    prof = ", ".join(f"{v:.3f}" for v in fitted["DIURNAL_PROFILE"])
    lines.append(f"DIURNAL_PROFILE: tuple[float, ...] = ({prof})")
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    print(_format_constants(fit_from_traces(Path(sys.argv[1]))))
