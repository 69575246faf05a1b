"""Detection quality on data the model was NOT fitted on (fit on one seed, evaluate another).

Uses the ``default`` scenario at a quarter of its accounts (every archetype, a full week) so the
suite stays fast; the full-size figures are in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import polars as pl
import pytest

from detector.evaluate import metrics
from detector.features import account_features
from detector.models import DistillScorer
from synthetic_logs.generate import generate


@pytest.fixture(scope="module")
def default_quarter() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    train = generate("default", seed=101, scale=0.25)
    test = generate("default", seed=202, scale=0.25)
    f_train = account_features(train.events, train.accounts).collect()
    f_test = account_features(test.events, test.accounts).collect()
    return f_train, f_test, test.labels


def test_default_unsupervised_targets(default_quarter: tuple[pl.DataFrame, ...]) -> None:
    f_train, f_test, labels = default_quarter
    model = DistillScorer().fit(f_train)  # no labels: unsupervised
    m = metrics(model.score(f_test), labels)
    assert m["pr_auc"] >= 0.9, m
    assert m["recall_at_fpr"]["0.01"] >= 0.9, m
    assert m["roc_auc"] >= 0.98, m


def test_default_supervised_is_not_worse(default_quarter: tuple[pl.DataFrame, ...]) -> None:
    f_train, f_test, labels = default_quarter
    train_labels = generate("default", seed=101, scale=0.25).labels
    model = DistillScorer().fit(f_train, train_labels)
    m = metrics(model.score(f_test), labels)
    assert m["pr_auc"] >= 0.95, m
    assert m["recall_at_fpr"]["0.01"] >= 0.95, m
