"""ScoringState.ingest's shortcut for the usual batch (every id new, none stale: C loops only)
keeps the general path's results: accepted rows, duplicates, stale rows, each account's last
event, the window end and the write-ahead log."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

from detector.models import DistillScorer
from service.state import ScoringState
from service.window_store import _newest
from tests.service_support import TEST_SEED, model_path, scenario, state_config


@pytest.fixture(scope="module")
def model() -> DistillScorer:
    return DistillScorer.load(model_path(("capped_sum",)))


@pytest.fixture(scope="module")
def events() -> pl.DataFrame:
    return scenario(TEST_SEED).events.sort("ts").head(3000)


def _state(model: DistillScorer, tmp_path: Path, name: str) -> ScoringState:
    st = ScoringState(model, state_config(window_hours=1), state_dir=tmp_path / name)
    st.restore()
    return st


def test_newest_is_each_accounts_latest_microsecond() -> None:
    accounts = ["a", "b", "a", "c", "b", "a"]
    micros = [5, 3, 9, 1, 3, 2]
    assert _newest(accounts, micros) == {"a": 9, "b": 3, "c": 1}
    assert _newest(["a", "a"], [1, 2]) == {"a": 2}


def test_shuffled_and_sorted_batches_agree(
    model: DistillScorer, events: pl.DataFrame, tmp_path: Path
) -> None:
    a, b = _state(model, tmp_path, "a"), _state(model, tmp_path, "b")
    for batch in events.iter_slices(1000):
        assert a.ingest(batch).accepted == batch.height
        assert b.ingest(batch.sample(fraction=1.0, shuffle=True, seed=1)).accepted == batch.height
    assert a.store.last_seen == b.store.last_seen and a.window_end == b.window_end
    expected = events.group_by("account_id").agg(pl.col("ts").max())
    assert a.store.last_seen == dict(expected.iter_rows())
    assert a.wal_seq == b.wal_seq == 3


def test_duplicates_and_stale_rows_take_the_general_path(
    model: DistillScorer, events: pl.DataFrame, tmp_path: Path
) -> None:
    st = _state(model, tmp_path, "s")
    first = events.head(1000)
    assert st.ingest(first).accepted == 1000
    # a replayed batch: every event a duplicate, nothing logged
    seq = st.wal_seq
    res = st.ingest(first)
    assert (res.accepted, res.duplicates, st.wal_seq) == (0, 1000, seq)
    # new ids, one repeated inside the batch, one of an old batch
    nxt = events.slice(1000, 10)
    batch = pl.concat([nxt, nxt.head(1), first.head(1)])
    res = st.ingest(batch)
    assert (res.accepted, res.duplicates, res.stale_rows) == (10, 2, [])
    # new ids but older than the window: stale rows, by row
    old = events.slice(2000, 3).with_columns(
        pl.col("ts") - timedelta(hours=2), pl.col("request_id") + "-old"
    )
    fresh = events.slice(2003, 2)
    res = st.ingest(pl.concat([fresh.head(1), old, fresh.tail(1)]))
    assert (res.accepted, res.duplicates, res.stale_rows) == (2, 0, [1, 2, 3])
    assert st.n_events == 1012
