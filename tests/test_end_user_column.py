"""The optional canonical column ``end_user_id``: both validation paths take it (and agree),
fingerprinting carries it into compact events, and state written before it existed (a
snapshot's compact events, a log's canonical batches) is restored with the column null."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from detector.fingerprints import fingerprint_events
from detector.io.batch_validation import validate_ndjson, validate_ndjson_per_line
from detector.io.schema import EVENT_SCHEMA, NULLABLE_EVENT_COLUMNS, read_events
from detector.models import DistillScorer
from service.replay import to_ndjson
from service.snapshot import read_snapshot
from service.state import ScoringState
from tests.service_support import TEST_SEED, model_path, scenario, state_config


@pytest.fixture(scope="module")
def events() -> pl.DataFrame:
    ev = scenario(TEST_SEED).events.head(600)
    users = pl.Series([f"eu-{i % 7}" if i % 3 else None for i in range(ev.height)])
    return ev.with_columns(users.alias("end_user_id"))


def test_the_column_is_optional_and_validated(events: pl.DataFrame) -> None:
    assert EVENT_SCHEMA["end_user_id"] == pl.String and "end_user_id" in NULLABLE_EVENT_COLUMNS
    body = to_ndjson(events)
    fast, slow = validate_ndjson(body), validate_ndjson_per_line(body)
    assert fast.frame.equals(slow.frame) and fast.frame["end_user_id"].equals(events["end_user_id"])
    lines = [json.loads(x) for x in body.splitlines()[:3]]
    del lines[0]["end_user_id"]  # absent: null
    lines[1]["end_user_id"] = 42  # not a string: named
    bad = "\n".join(json.dumps(x) for x in lines).encode()
    for checked in (validate_ndjson(bad), validate_ndjson_per_line(bad)):
        assert checked.rows == [1, 3] and checked.frame["end_user_id"][0] is None
        assert checked.problems == [(2, "end_user_id", "expected a string, got int")]


def test_ndjson_and_parquet_files_carry_it(events: pl.DataFrame, tmp_path: Path) -> None:
    (tmp_path / "events.ndjson").write_bytes(to_ndjson(events))
    events.write_parquet(tmp_path / "events.parquet")
    for name in ("events.ndjson", "events.parquet"):
        got = read_events(tmp_path / name).collect()
        assert got["end_user_id"].equals(events["end_user_id"])
    events.drop("end_user_id").write_parquet(tmp_path / "old.parquet")  # written before it
    assert read_events(tmp_path / "old.parquet").collect()["end_user_id"].is_null().all()


def test_fingerprints_keep_it(events: pl.DataFrame) -> None:
    compact = fingerprint_events(events).collect()
    assert compact["end_user_id"].equals(events["end_user_id"])
    assert "prompt" not in compact.columns


def test_state_from_before_the_column_is_restored(events: pl.DataFrame, tmp_path: Path) -> None:
    model = DistillScorer.load(model_path(("capped_sum",)))
    st = ScoringState(model, state_config(), state_dir=tmp_path)
    st.restore()
    st.ingest(events.head(300))
    snap = st.snapshot()
    assert snap is not None and st.wal is not None
    # as an earlier version wrote them: a log record and a snapshot without the column
    st.wal.append(events.slice(300, 300).drop("end_user_id"))
    st.close()
    old = read_snapshot(tmp_path)
    assert old is not None
    old.events.drop("end_user_id").write_parquet(snap / "events.parquet")
    back = ScoringState(model, state_config(), state_dir=tmp_path)
    back.restore()
    assert back.n_events == 600
    back.rescore()  # the window (old and new frames together) scores
    window = pl.concat(back.store.frames)
    assert window.height == 600 and window["end_user_id"].is_null().all()
    assert back.ingest(events).duplicates == 600
