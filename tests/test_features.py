"""Account features: exact values on hand-built events, one row per account, documentation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from detector.features import (
    FEATURE_NAMES,
    FEATURES,
    N_TOPICS,
    Example,
    Feature,
    account_features,
)
from detector.fingerprints import TOPIC_KEYWORDS, TOPICS, fingerprint_events
from synthetic_logs.generate import Generated
from tests.test_fingerprints import make_events


def test_every_feature_is_documented() -> None:
    for f in FEATURES:
        assert f.direction in ("up", "down", "none"), f.name
        assert f.formula and f.why, f.name
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)


def test_a_feature_finishing_an_aggregation_names_it() -> None:
    with pytest.raises(ValueError, match="'__' name"):
        Feature(
            "x",
            "up",
            "f",
            "w",
            agg=pl.col("ts").min(),
            finish=pl.col("ts"),
            example=Example(({},), 0.0),
            merge="min",
        )
    with pytest.raises(ValueError, match="canonical column"):
        Example(({"logprob": True},), 1.0)


def test_entropy_normalisers_come_from_their_source() -> None:
    """Requests spread evenly over every topic of the topic table, or over the hours of the
    day, have entropy 1: the normalisers are log(number of topics) and log(24)."""
    prompts: list[str | None] = [f"about {ks[0]}today" for ks in TOPIC_KEYWORDS.values()]
    prompts.append("hello there")
    topical = make_events(prompts)
    assert sorted(fingerprint_events(topical).collect()["topic"]) == sorted(TOPICS)
    a = account_features(topical).collect().row(0, named=True)
    assert a["topic_breadth"] == N_TOPICS == len(TOPICS)
    assert a["topic_entropy"] == pytest.approx(1.0, rel=1e-12)
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    hourly = make_events(["hi"] * 24, ts=[t0 + timedelta(hours=h) for h in range(24)])
    a = account_features(hourly).collect().row(0, named=True)
    assert a["active_hours"] == 24.0
    assert a["hour_entropy"] == pytest.approx(1.0, rel=1e-12)


def test_one_value_has_entropy_exactly_zero() -> None:
    """An account whose requests all fall in one topic (a log without prompt text: every
    request is "other") or one hour has entropy 0.0 exactly, not +-4e-16 of rounding, which
    the histogram detector binned as if the noise were a spread (and scored at random)."""
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    for n in (6, 22, 23, 49):  # counts at which log(n) - n log(n) / n rounds away from 0
        ev = make_events([None] * n, ts=[t0 + timedelta(seconds=i) for i in range(n)])
        a = account_features(ev).collect().row(0, named=True)
        assert a["topic_entropy"] == 0.0 and a["hour_entropy"] == 0.0


def test_exact_values() -> None:
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    prompts: list[str | None] = [
        "Header X. task one",
        "Header X. task two",
        "Other thing entirely here",
        "hi",
    ]
    ev = make_events(
        prompts,
        ts=[t0, t0 + timedelta(hours=1), t0 + timedelta(hours=2), t0 + timedelta(days=2)],
        account_id=["a", "a", "a", "b"],
        logprobs=[True, False, False, False],
        max_tokens=[8192, 8192, None, 1],
        model=["old", "old", "old", "old"],
        conversation_id=["c1", "c1", None, None],
    )
    ev2 = make_events(["x"], ts=[t0 + timedelta(hours=30)], account_id=["b"], model=["new"])
    ev = pl.concat([ev, ev2.with_columns(pl.lit("r9").alias("request_id"))])
    accounts = pl.DataFrame(
        {"account_id": ["a", "b"], "created_at": [t0 - timedelta(days=10), t0]},
        schema={"account_id": pl.String, "created_at": pl.Datetime("us", "UTC")},
    )
    f = account_features(ev, accounts).collect()
    assert f["account_id"].to_list() == ["a", "b"]
    a = f.row(0, named=True)
    b = f.row(1, named=True)
    assert a["requests_per_day"] == pytest.approx(3 / 2.0)  # window = 2 days
    assert a["logprobs_share"] == pytest.approx(1 / 3)
    assert a["high_max_tokens_share"] == pytest.approx(2 / 3)
    assert b["tiny_max_tokens_share"] == pytest.approx(0.5)
    assert a["single_turn_share"] == pytest.approx(1 / 3)
    assert a["turns_per_conversation"] == pytest.approx(2.0)
    assert a["account_age_days"] == pytest.approx(10.0)
    assert b["account_age_days"] == pytest.approx(30 / 24.0)
    # "new" first appears 30 h into the window: b's request on it is within 24 h of that
    assert b["new_model_share"] == pytest.approx(0.5)
    assert a["new_model_share"] == 0.0
    assert a["median_gap_s"] == pytest.approx(3600.0)
    assert a["distinct_ips"] == 1.0


def test_order_repetition_and_conversation_features_on_unsorted_events() -> None:
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    minutes = [10, 0, 1, 1, 61]  # out of order, two in one minute
    ev = make_events(
        [f"question number {i} about soil" for i in range(5)],
        ts=[t0 + timedelta(minutes=m) for m in minutes],
        conversation_id=["c1", "c1", None, "c2", "c3"],
    )
    compact = fingerprint_events(ev).collect()
    compact = compact.with_columns(
        pl.Series("nd1", [7, 7, 8, 9, None], dtype=pl.UInt64),
        pl.Series("nd2", [1, 2, 3, 4, 5], dtype=pl.UInt64),
    )
    a = account_features(compact).collect().row(0, named=True)
    assert a["median_gap_s"] == pytest.approx(300.0)  # gaps 60, 0, 540, 3060 s
    assert a["active_hours"] == 2.0
    assert a["peak_per_minute"] == 2.0
    assert a["ramp_up"] == pytest.approx(1 / 4)  # after / before the span's midpoint
    assert a["near_dup_rate"] == pytest.approx(2 / 4)  # the 5th has no keys: counted out
    assert a["single_turn_share"] == pytest.approx(3 / 5)  # no conversation, c2, c3
    assert a["turns_per_conversation"] == pytest.approx(4 / 3)
    assert a["template_reuse"] == pytest.approx(1 - compact["tmpl"].n_unique() / 5)


def test_event_order_does_not_change_features(demo_small: Generated) -> None:
    compact = fingerprint_events(demo_small.events).collect()
    shuffled = compact.sample(fraction=1.0, shuffle=True, seed=3)
    assert_frame_equal(
        account_features(shuffled).collect(),
        account_features(compact).collect(),
        rel_tol=1e-12,
        abs_tol=1e-12,
    )


def test_account_age_null_without_account_table() -> None:
    f = account_features(make_events(["a", "b"])).collect()
    assert f["account_age_days"].null_count() == 1
    assert f.columns == ["account_id", *FEATURE_NAMES]


def test_subset_with_model_first_seen_equals_full_window(demo_small: Generated) -> None:
    """The live service scores only some accounts' events: with the window's model first-seen
    times passed in, their features equal those computed on the whole window."""
    ev = demo_small.events
    some = ev["account_id"].unique().sort().head(40)
    full = account_features(ev).collect().filter(pl.col("account_id").is_in(some.implode()))
    lo, hi = ev.select(pl.col("ts").min().alias("lo"), pl.col("ts").max().alias("hi")).row(0)
    first = ev.group_by("model").agg(pl.col("ts").min().alias("first_ts"))
    part = account_features(
        ev.filter(pl.col("account_id").is_in(some.implode())),
        window_start=lo,
        window_end=hi,
        model_first_seen=first,
    ).collect()
    # equal up to float summation order (entropy of value counts): 1e-12 relative
    assert_frame_equal(part, full, rel_tol=1e-12, abs_tol=1e-12)


def test_requests_without_prompt_text_carry_no_template_evidence() -> None:
    """A log that does not record prompts (a gateway with message logging off, spans without
    content) must not make every account look templated."""
    ev = make_events(["one prompt", "another prompt"] + [None] * 6)  # type: ignore[list-item]
    compact = fingerprint_events(ev).collect()
    assert compact["tmpl"].null_count() == 6 and compact["nd1"].null_count() == 6
    a = account_features(compact).collect().row(0, named=True)
    assert a["template_reuse"] == pytest.approx(0.0)  # 2 distinct templates in 2 prompts
    assert a["top_template_share"] == pytest.approx(0.5)
    none = account_features(fingerprint_events(make_events([None] * 4)).collect()).collect()  # type: ignore[list-item]
    assert none["template_reuse"][0] is None and none["near_dup_rate"][0] is None
