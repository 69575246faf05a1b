"""Per-account features over a window of compact events (see :mod:`detector.fingerprints`).

``account_features(events) -> LazyFrame`` is THE feature code: the offline audit, training and
the streaming service all call it (the service on its sliding window of compact events). It is
a pure polars function of a LazyFrame, so it can also run per account group on a distributed
engine.

Every feature is one entry of :data:`FEATURES` (:mod:`detector.features.registry`): its formula,
why it matters, its *risk direction* — ``up`` (more is suspicious), ``down`` (less is
suspicious) or ``none`` (context only, never scored) —, the polars aggregation that computes it
and a tiny worked example (:mod:`detector.features.unit` says what these fields mean).
:mod:`detector.features.compute` builds the two aggregation passes from the registry.
"""

from detector.features.compute import ACCOUNT_KEY, account_features
from detector.features.registry import (
    FEATURE_BY_NAME,
    FEATURE_NAMES,
    FEATURES,
    HOURS_PER_DAY,
    N_TOPICS,
    NEW_MODEL_GRACE_H,
    SCORED_FEATURES,
)
from detector.features.unit import Example, Feature

__all__ = [
    "ACCOUNT_KEY",
    "FEATURES",
    "FEATURE_BY_NAME",
    "FEATURE_NAMES",
    "HOURS_PER_DAY",
    "NEW_MODEL_GRACE_H",
    "N_TOPICS",
    "SCORED_FEATURES",
    "Example",
    "Feature",
    "account_features",
]
