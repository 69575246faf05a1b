"""Units of the service without HTTP: settings, body parsing, the scoring state (window,
eviction, caps, snapshot/restore), the write-ahead log, and the metrics on a fresh registry."""

from __future__ import annotations

import json
import random
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from prometheus_client import REGISTRY, CollectorRegistry
from pydantic import ValidationError

from detector.features import account_features
from detector.fingerprints import FINGERPRINT_VERSION, fingerprint_events
from detector.io.batch_validation import validate_ndjson_per_line
from detector.models import DistillScorer
from service.ingest import BodyError, ingest_body, parse_body
from service.metrics import ServiceMetrics
from service.replay import to_ndjson
from service.runtime import pass_period
from service.settings import Settings
from service.snapshot import read_snapshot
from service.state import IncompatibleStateError, ScoringState
from service.wal import WriteAheadLog
from tests.batch_support import mutate
from tests.service_support import TEST_SEED, model_path, scenario, state_config


@pytest.fixture(scope="module")
def model() -> DistillScorer:
    return DistillScorer.load(model_path(("capped_sum",)))


@pytest.fixture(scope="module")
def events() -> pl.DataFrame:
    return scenario(TEST_SEED).events


def new_state(
    model: DistillScorer,
    *,
    state_dir: Path | None = None,
    accounts_table: pl.DataFrame | None = None,
    **settings: Any,
) -> ScoringState:
    """A restored state configured by ``Settings(**settings)``."""
    config = state_config(**settings)
    st = ScoringState(model, config, state_dir=state_dir, accounts_table=accounts_table)
    st.restore()
    return st


# --------------------------------------------------------------------------- settings


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DISTILLGUARD_MODEL_PATH", str(tmp_path / "m.joblib"))
    monkeypatch.setenv("DISTILLGUARD_INGEST_TOKENS", "sec-a, sec-b,,")
    monkeypatch.setenv("DISTILLGUARD_READ_TOKENS", "sec-b,sec-c")
    monkeypatch.setenv("DISTILLGUARD_WINDOW_HOURS", "6")
    s = Settings()  # type: ignore[call-arg]
    assert s.window_hours == 6 and s.rescore_interval_s == 2 and s.top_n == 20
    assert s.token_scopes() == {
        "sec-a": frozenset({"ingest"}),
        "sec-b": frozenset({"ingest", "read"}),
        "sec-c": frozenset({"read"}),
    }
    assert "sec-" not in repr(s)  # tokens stay out of logs
    monkeypatch.delenv("DISTILLGUARD_INGEST_TOKENS")
    monkeypatch.delenv("DISTILLGUARD_READ_TOKENS")
    with pytest.raises(ValidationError, match="no API tokens configured"):
        Settings()  # type: ignore[call-arg]
    monkeypatch.setenv("DISTILLGUARD_AUTH_DISABLED", "true")
    assert Settings().auth_disabled  # type: ignore[call-arg]
    fields = Settings.model_fields
    assert all(f.description for f in fields.values())


# --------------------------------------------------------------------------- parsing


def test_parse_body_reports_line_field_reason(events: pl.DataFrame) -> None:
    good = to_ndjson(events.head(2)).splitlines()
    body = b"\n".join([good[0], b"", b"{oops", b'{"ts": 5}', good[1]])
    batch = parse_body(body, max_events=10)
    assert batch.lines == [1, 5]
    assert batch.rejected == {3: "malformed_json", 4: "invalid_value"}
    assert any(p.line == 4 and p.field == "account_id" for p in batch.problems)
    with pytest.raises(BodyError, match="empty body"):
        parse_body(b" \n ", max_events=10)
    with pytest.raises(BodyError) as err:
        parse_body(b"{}\n{}\n{}", max_events=2)
    assert err.value.status == 413


def test_mixed_timestamp_layouts_are_stored_or_rejected_per_line(events: pl.DataFrame) -> None:
    lines = to_ndjson(events.head(3)).splitlines()
    body = b"\n".join(
        [lines[0], lines[1].replace(b'Z"', b'+00:00"', 1), lines[2].replace(b'Z"', b'+02:00"', 1)]
    )
    batch = parse_body(body, 10)
    frame, rows = batch.frame, batch.lines
    assert frame.height == 3 and rows == [1, 2, 3]
    assert frame["ts"].to_list()[2] == events["ts"][2] - timedelta(hours=2)


# --------------------------------------------------------------------------- state


def test_window_eviction_and_stale_events(model: DistillScorer, events: pl.DataFrame) -> None:
    st = new_state(model, window_hours=1)
    t0 = events["ts"][0]
    early = events.filter(pl.col("ts") < t0 + timedelta(minutes=30))
    late = events.filter(pl.col("ts") > t0 + timedelta(hours=3)).head(500)
    assert st.ingest(early).accepted == early.height
    st.rescore()
    early_accounts = st.n_accounts
    assert st.ingest(late).accepted == late.height
    report = st.rescore()
    assert report.expired_events == early.height and st.n_events == late.height
    only_early = set(early["account_id"]) - set(late["account_id"])
    assert report.evicted_accounts == len(only_early) and early_accounts > 0
    assert all(st.account(a) is None for a in only_early)
    # an event older than the window is rejected, and its id is no longer remembered
    res = st.ingest(early.head(3))
    assert res.accepted == 0 and res.stale_rows == [0, 1, 2]
    # idempotency inside the window
    assert st.ingest(late.head(10)).duplicates == 10


def test_account_table_feeds_account_age(model: DistillScorer, events: pl.DataFrame) -> None:
    table = scenario(TEST_SEED).accounts
    st = new_state(model, accounts_table=table)
    batch = events.head(2000)
    st.ingest(batch)
    st.rescore()
    offline = account_features(batch, table).collect()
    for acc, age in offline.select("account_id", "account_age_days").head(50).iter_rows():
        view = st.account(acc)
        assert view is not None and view.score is not None
        assert view.score.feature_dict()["account_age_days"] == pytest.approx(age)


def test_hard_caps_drop_oldest(model: DistillScorer, events: pl.DataFrame) -> None:
    st = new_state(model, max_accounts=20, max_window_events=1500)
    batch = events.head(3000)
    got = st.ingest(batch)  # the account cap holds at ingest already
    assert st.n_accounts == 20 and got.dropped_accounts == batch["account_id"].n_unique() - 20
    report = st.rescore()  # the pass removes the dropped accounts' events
    assert st.n_accounts == 20 and report.dropped_account_events > 0
    newest = (
        batch.group_by("account_id").agg(pl.col("ts").max()).sort("ts", descending=True).head(20)
    )
    assert {v.account_id for v in st.top_accounts(0, 100)} <= set(newest["account_id"])
    assert st.n_events <= 1500 and report.capped_events + report.dropped_account_events > 0


def test_snapshot_restore_and_wal_replay(
    model: DistillScorer, events: pl.DataFrame, tmp_path: Path
) -> None:
    st = new_state(model, state_dir=tmp_path)
    st.ingest(events.slice(0, 2000))
    st.rescore()
    st.snapshot()
    st.ingest(events.slice(2000, 1000))  # logged, pending, not in the snapshot
    st.close()
    back = new_state(model, state_dir=tmp_path)
    assert back.n_events == 3000 and back.n_pending > 0
    back.rescore()
    st.rescore()
    for v in st.top_accounts(0, 10_000):
        other = back.account(v.account_id)
        assert other is not None and other.score is not None and v.score is not None
        assert other.score.score == v.score.score
    assert back.ingest(events.slice(0, 3000)).duplicates == 3000


def test_a_new_model_rescores_every_restored_account(
    model: DistillScorer, events: pl.DataFrame, tmp_path: Path
) -> None:
    st = new_state(model, state_dir=tmp_path)
    st.ingest(events.head(1000))
    st.rescore()
    st.snapshot()
    st.close()
    assert new_state(model, state_dir=tmp_path).n_pending == 0  # same model: scores kept
    feats = account_features(events.head(5000)).collect()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        other = DistillScorer(detectors=("capped_sum",), cap=2.0).fit(feats)
    back = new_state(other, state_dir=tmp_path)
    assert back.n_pending == back.n_accounts == st.n_accounts


def test_ingest_acknowledges_before_fingerprinting_and_raw_text_stays_out_of_the_window(
    model: DistillScorer, events: pl.DataFrame, tmp_path: Path
) -> None:
    st = new_state(model, state_dir=tmp_path)
    batch = events.head(1000)
    assert st.ingest(batch).accepted == 1000
    assert st.n_queued == st.n_events == 1000  # acknowledged, not fingerprinted yet
    view = st.account(batch["account_id"][0])
    assert view is not None and view.pending and view.score is None
    assert st.ingest(batch).duplicates == 1000  # idempotent before fingerprinting too
    # logged as accepted, raw text included (only until the next snapshot)
    [(_, logged)] = list(WriteAheadLog(tmp_path / "wal").replay())
    assert logged.equals(batch)
    assert st.fingerprint_pending(min_events=1001) == 0  # not enough waiting
    assert st.fingerprint_pending() == 1000 and st.n_queued == 0 and st.n_events == 1000
    st.ingest(events.slice(1000, 500))  # a pass fingerprints the queue before scoring
    assert st.rescore().rescored == st.n_accounts and st.n_queued == st.n_pending == 0
    st.ingest(events.slice(1500, 500))  # queued when the snapshot starts: fingerprinted into it
    st.snapshot()
    assert st.n_queued == 0 and st.n_events == 2000 and st.n_pending > 0
    assert not list(WriteAheadLog(tmp_path / "wal").replay())  # the raw text went with the log
    snap = read_snapshot(tmp_path)
    assert snap is not None and snap.events.height == 2000
    assert {"prompt", "system_prompt"}.isdisjoint(snap.events.columns)
    assert all({"prompt", "system_prompt"}.isdisjoint(f.columns) for f in st.store.frames)
    st.close()
    back = new_state(model, state_dir=tmp_path)
    assert back.n_events == 2000 and back.ingest(events.head(2000)).duplicates == 2000
    # a lagging fingerprinting loop: ingest fingerprints the queue itself past the bound
    lagging = new_state(model, max_queued_events=1500)
    lagging.ingest(events.head(1000))
    assert lagging.n_queued == 1000
    lagging.ingest(events.slice(1000, 1000))
    assert lagging.n_queued == 0 and lagging.n_events == 2000


def test_a_log_of_compact_events_from_an_earlier_version_is_replayed(
    model: DistillScorer, events: pl.DataFrame, tmp_path: Path
) -> None:
    wal = WriteAheadLog(tmp_path / "wal")
    wal.append(fingerprint_events(events.head(300).lazy()).collect())
    wal.append(events.slice(300, 200))  # and one of canonical events after it
    wal.close()
    st = new_state(model, state_dir=tmp_path)
    assert st.n_events == 500 and st.n_queued == 0 and st.wal_seq == 2
    st.rescore()
    offline = model.score(account_features(events.head(500)).collect())
    for acc, score in offline.select("account_id", "score").head(20).iter_rows():
        view = st.account(acc)
        assert view is not None and view.score is not None and view.score.score_alone == score


def test_rescoring_passes_keep_to_their_share_of_the_time() -> None:
    assert pass_period(0.4, interval=2.0, share=0.5) == 2.0  # the interval, start to start
    assert pass_period(1.5, interval=2.0, share=0.5) == 3.0  # a slow pass: twice its duration
    assert pass_period(1.5, interval=2.0, share=1.0) == 2.0  # share 1: back to back


def test_wal_ignores_a_torn_tail(tmp_path: Path, events: pl.DataFrame) -> None:
    wal = WriteAheadLog(tmp_path)
    for i in range(3):
        wal.append(events.slice(i * 10, 10).select("ts", "request_id"))
    wal.close()
    seg = wal.segments()[0]
    seg.write_bytes(seg.read_bytes()[:-7])  # the last record was never acknowledged
    again = WriteAheadLog(tmp_path)
    assert [s for s, _ in again.replay()] == [1, 2]
    again.open_segment()
    assert again.append(events.head(1).select("ts", "request_id")) == 3
    assert again.delete_through(2) == 1 and [s for s, _ in again.replay()] == [3]


# --------------------------------------------------------------------------- metrics


def test_metrics_on_a_fresh_registry(model: DistillScorer, events: pl.DataFrame) -> None:
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry, top_n=3)
    st = new_state(model)
    metrics.bind(st)
    metrics.set_model(model.info())
    body = to_ndjson(events.head(600)) + b'{"bad": 1}\n'
    outcome = ingest_body(st, body, max_events=1000)
    metrics.record_ingest(outcome.accepted, outcome.duplicates, outcome.rejected, 0.01)
    metrics.record_rescore(st.rescore())
    value = registry.get_sample_value
    assert value("distillguard_events_ingested_total") == 600
    assert value("distillguard_events_rejected_total", {"reason": "missing_field"}) == 1
    assert value("distillguard_events_rejected_total", {"reason": "stale"}) == 0
    assert value("distillguard_window_events") == 600
    n = events.head(600)["account_id"].n_unique()
    assert value("distillguard_accounts_tracked") == n
    assert value("distillguard_accounts_rescored_total") == n
    assert value("distillguard_account_score_bucket", {"le": "+Inf"}) == n
    assert value("distillguard_rescore_duration_seconds_count") == 1
    assert value("distillguard_state_ready") == 1
    assert value("distillguard_campaigns") == 0
    top = [
        s
        for f in registry.collect()
        if f.name == "distillguard_top_account_score"
        for s in f.samples
    ]
    assert [set(s.labels) for s in top] == [{"account_id"}] * 3
    assert [s.value for s in top] == sorted((s.value for s in top), reverse=True)
    assert top[0].value == max(v.score.score for v in st.top_accounts(0, 10_000) if v.score)
    assert REGISTRY.get_sample_value("distillguard_events_ingested_total") is None


# --------------------------------------------------------------------------- campaigns


def _hydra_member(events: pl.DataFrame) -> str:
    labels = scenario(TEST_SEED).labels
    hydra = labels.filter(pl.col("archetype") == "hydra")["account_id"]
    return str(events.filter(pl.col("account_id").is_in(hydra.implode()))["account_id"][-1])


def test_campaign_passes_lift_between_passes_and_persist(
    model: DistillScorer, events: pl.DataFrame, tmp_path: Path
) -> None:
    member = _hydra_member(events)
    last = events.filter(pl.col("account_id") == member).tail(1)
    rest = events.filter(pl.col("request_id") != last["request_id"][0])
    st = new_state(model, state_dir=tmp_path, campaign_interval_s=3600)
    assert not st.campaigns_current and st.live.last is None
    st.ingest(rest)
    first = st.rescore()  # the first pass with events is a campaign pass
    assert first.campaign_pass and first.campaigns == len(st.campaigns) > 0
    assert st.campaigns_current and first.rescored == st.n_accounts
    cid = st.campaign_of[member]
    assert member in st.campaigns[cid].members and st.campaigns[cid].lift > 0
    # an event between campaign passes: the member is rescored alone, its campaign applied
    st.ingest(last)
    assert not st.campaigns_current
    second = st.rescore()
    assert not second.campaign_pass and second.rescored == 1
    view = st.account(member)
    assert view is not None and view.score is not None
    assert view.score.reasons[0].startswith(f"member of campaign {cid}")
    assert view.score.score >= (view.score.score_alone or 0) and view.score.flagged
    # the snapshot keeps the campaigns; the restored state runs a pass for the newer event
    st.snapshot()
    st.close()
    back = new_state(model, state_dir=tmp_path, campaign_interval_s=3600)
    assert back.campaigns == st.campaigns and back.campaign_of == st.campaign_of
    assert not back.campaigns_current and back.rescore().campaign_pass
    assert back.campaigns_current and back.campaigns.keys() == st.campaigns.keys()
    back.snapshot()
    back.close()
    again = new_state(model, state_dir=tmp_path, campaign_interval_s=3600)
    assert again.campaigns_current and not again.rescore().campaign_pass  # nothing to redo
    # a snapshot from before campaigns: recomputed at the first pass
    again.close()
    snap = tmp_path / (tmp_path / "CURRENT").read_text().strip()
    (snap / "campaigns.parquet").unlink()
    old = new_state(model, state_dir=tmp_path, campaign_interval_s=3600)
    assert not old.campaigns and not old.campaigns_current
    assert old.rescore().campaign_pass and old.campaigns.keys() == st.campaigns.keys()


def test_campaign_cadence_and_switch(model: DistillScorer, events: pl.DataFrame) -> None:
    off = new_state(model, campaigns=False)
    off.ingest(events.head(3000))
    assert not off.rescore().campaign_pass and not off.campaigns
    st = new_state(model, campaign_interval_s=3600, campaign_every_passes=2)
    passes = []
    for i in range(4):
        st.ingest(events.slice(i * 1000, 1000))
        passes.append(st.rescore().campaign_pass)
    assert passes == [True, False, True, False]
    assert st.rescore().campaign_pass  # the 4th batch awaited a campaign pass
    assert not st.rescore().campaign_pass and not st.rescore().campaign_pass  # nothing new


def test_json_array_bodies_equal_the_per_element_path(events: pl.DataFrame) -> None:
    """A JSON array is validated like NDJSON (orjson + column checks): the same frame and
    (element, field, reason) problems as json.loads + check_record element by element."""
    base = [json.loads(line) for line in to_ndjson(events.head(40)).splitlines()]
    for seed in range(40):
        rng = random.Random(seed)
        items = []
        for i in range(rng.choice([1, 5, 30])):
            text = mutate(rng, base[i % len(base)], i)
            try:
                json.loads(text)
            except ValueError:
                continue  # a malformed line (or a BOM) would make the whole array malformed
            items.append(text)
        if not items:
            continue
        body = ("[" + ",\n".join(items) + "]").encode("utf-8", "surrogatepass")
        got = parse_body(body, max_events=100)
        # the reference: each element alone on a line of the per-line path
        want = validate_ndjson_per_line("\n".join(items).encode("utf-8", "surrogatepass"))
        assert [(p.line, p.field, p.reason) for p in got.problems] == want.problems, seed
        assert got.lines == want.rows and got.frame.equals(want.frame), seed


def test_a_snapshot_fingerprinted_by_another_version_is_refused_clearly(
    model: DistillScorer, events: pl.DataFrame, tmp_path: Path
) -> None:
    st = new_state(model, state_dir=tmp_path)
    st.ingest(events.slice(0, 200))
    snap = st.snapshot()
    st.close()
    assert snap is not None
    meta_path = snap / "meta.json"
    meta = json.loads(meta_path.read_text())
    assert meta["fingerprint_version"] == FINGERPRINT_VERSION
    del meta["fingerprint_version"]  # as written before the field existed (version 1)
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(IncompatibleStateError, match=r"fingerprinted by version 1.*Move that"):
        new_state(model, state_dir=tmp_path)
