"""Detection quality on data the model was NOT fitted on (fit on one seed, evaluate another).

Uses the ``default`` scenario at a quarter of its accounts (every archetype, a full week) so the
suite stays fast; the full-size figures are in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import polars as pl
import pytest

from detector import pipeline
from detector.evaluate import metrics
from detector.models import DistillScorer
from synthetic_logs.generate import Generated, generate


@pytest.fixture(scope="module")
def default_quarter() -> tuple[Generated, Generated]:
    return generate("default", seed=101, scale=0.25), generate("default", seed=202, scale=0.25)


def _held_out(worlds: tuple[Generated, Generated], labels: pl.DataFrame | None) -> dict:
    """Fit on the first world (with ``labels`` if given), then score the second as the audit
    does (with slices and campaigns) and measure against its labels."""
    train, test = worlds
    model = pipeline.fit(train.events, train.accounts, labels, DistillScorer())
    return metrics(pipeline.score(test.events, model, test.accounts).accounts, test.labels)


def test_default_unsupervised_targets(default_quarter: tuple[Generated, Generated]) -> None:
    m = _held_out(default_quarter, None)  # no labels: unsupervised
    assert m["pr_auc"] >= 0.9, m
    assert m["recall_at_fpr"]["0.01"] >= 0.9, m
    assert m["roc_auc"] >= 0.98, m


def test_default_supervised_is_not_worse(default_quarter: tuple[Generated, Generated]) -> None:
    m = _held_out(default_quarter, default_quarter[0].labels)
    assert m["pr_auc"] >= 0.95, m
    assert m["recall_at_fpr"]["0.01"] >= 0.95, m
