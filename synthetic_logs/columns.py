"""Event columns as a group's stages build them, and the vectorised draws that fill them.

A group keeps each string column as integer codes into a small pool of values (:class:`Coded`)
and each number column as a numpy array, with NaN (floats) or -1 (integers) standing for null;
``generate.py`` decodes them once the events of every group are in time order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl

from synthetic_logs import calibration, text


@dataclass
class Coded:
    """A string column as codes into a pool of values, decoded only once all events are in
    time order (sorting small integer codes is cheaper than sorting strings)."""

    codes: np.ndarray
    pool: pl.Series

    @staticmethod
    def const(value: str | None, n: int) -> Coded:
        """``n`` rows of one value."""
        return Coded(np.zeros(n, dtype=np.int64), pl.Series([value], dtype=pl.String))


Column = np.ndarray | Coded
"""A group's event column: numbers (NaN, or -1 for integers, = null) or coded strings."""


def ids(rng: np.random.Generator, prefix: str, n: int) -> pl.Series:
    """Opaque ids: a prefix and a random 62-bit number (no label can leak through them)."""
    raw = pl.Series(rng.integers(0, 2**62, n, dtype=np.int64)).cast(pl.String)
    return text.concat(prefix, raw)


def coded_choice(rng: np.random.Generator, weights: dict[str, float], n: int) -> Coded:
    """``n`` keys of ``weights`` drawn with those weights."""
    keys = list(weights)
    p = np.array([weights[k] for k in keys], dtype=float)
    return Coded(calibration.categorical(rng, p, n), pl.Series(keys, dtype=pl.String))


def int_or_null(values: np.ndarray, dtype: type[np.signedinteger]) -> np.ndarray:
    """Non-negative integers with NaN as -1 (turned into nulls once the events are sorted)."""
    return np.where(np.isnan(values), -1, values).astype(dtype)


def draw_where(mask: np.ndarray, draw: Callable[[int], np.ndarray], default: float) -> np.ndarray:
    """``draw(k)`` values where ``mask`` holds (k of them), ``default`` elsewhere: a rare value
    is drawn only where it occurs (the same distribution, fewer draws)."""
    k = int(mask.sum())
    values = draw(k) if k else np.zeros(0, dtype=np.asarray(default).dtype)
    out = np.full(len(mask), default, dtype=np.result_type(values, np.asarray(default)))
    out[mask] = values
    return out


def lognormal(rng: np.random.Generator, mu: float, sigma: float, n: int) -> np.ndarray:
    """``rng.lognormal(mu, sigma, n)``'s distribution, ~1.4x faster."""
    z = rng.standard_normal(n)
    z *= sigma
    z += mu
    return np.exp(z, out=z)


def sorted_within(values: np.ndarray, group: np.ndarray) -> np.ndarray:
    """``values`` (positive) sorted within each run of equal, non-decreasing ``group`` ids:
    one integer sort of (group, float32 bits) keys; the values keep float32 precision."""
    bits = values.astype(np.float32).view(np.uint32).astype(np.uint64)
    key = (group.astype(np.uint64) << np.uint64(32)) | bits
    key.sort()
    return (key & np.uint64(0xFFFFFFFF)).astype(np.uint32).view(np.float32).astype(np.float64)
