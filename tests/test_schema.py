"""Canonical schema reader: Parquet/NDJSON/.gz/dirs, and errors that name file, line, field."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import polars as pl
import pytest

from detector.io.batch_validation import (
    TooManyEvents,
    validate_ndjson,
    validate_ndjson_per_line,
    validate_records,
)
from detector.io.schema import (
    EVENT_SCHEMA,
    EventSchemaError,
    check_record,
    read_events,
    records_to_frame,
)
from synthetic_logs.generate import Generated
from tests.batch_support import mutate


@pytest.fixture()
def small(demo_small: Generated) -> pl.DataFrame:
    return demo_small.events.head(50)


def _ndjson_lines(df: pl.DataFrame) -> list[dict]:
    out = df.with_columns(pl.col("ts").dt.to_string("%Y-%m-%dT%H:%M:%S%.6fZ"))
    return [json.loads(line) for line in out.write_ndjson().splitlines()]


def test_reads_parquet_ndjson_gz_and_dirs(tmp_path: Path, small: pl.DataFrame) -> None:
    small.write_parquet(tmp_path / "events.parquet")
    lines = _ndjson_lines(small)
    text = "\n".join(json.dumps(r) for r in lines) + "\n"
    (tmp_path / "b.ndjson").write_text(text)
    with gzip.open(tmp_path / "c.ndjson.gz", "wt") as fh:
        fh.write(text)
    for src in ("events.parquet", "b.ndjson", "c.ndjson.gz"):
        got = read_events(tmp_path / src).collect()
        assert dict(got.schema) == EVENT_SCHEMA
        assert got.equals(small), src
    both = read_events([tmp_path / "events.parquet", tmp_path / "b.ndjson"]).collect()
    assert both.height == 100
    assert read_events(tmp_path).collect().height == 50  # directory: its events* files
    assert read_events(str(tmp_path / "*.ndjson*")).collect().height == 100  # glob


def test_ndjson_errors_name_file_line_field(tmp_path: Path, small: pl.DataFrame) -> None:
    recs = _ndjson_lines(small.head(5))
    recs[1]["prompt_tokens"] = "many"  # wrong type
    del recs[2]["account_id"]  # missing required field
    recs[3]["colour"] = "red"  # unknown field
    lines = [json.dumps(r) for r in recs]
    lines.insert(4, '{"ts": "2026-11-01T00:00:00Z", "request_id": ')  # malformed JSON
    path = tmp_path / "bad.ndjson"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(EventSchemaError) as info:
        read_events(path)
    got = {(p.line, p.field) for p in info.value.problems}
    assert (2, "prompt_tokens") in got
    assert (3, "account_id") in got
    assert (4, "colour") in got
    assert (5, None) in got
    msg = str(info.value)
    assert f"{path}:2: field 'prompt_tokens'" in msg
    assert "malformed JSON" in msg


def test_parquet_errors_name_the_column(tmp_path: Path, small: pl.DataFrame) -> None:
    small.drop("account_id").write_parquet(tmp_path / "a.parquet")
    with pytest.raises(EventSchemaError, match=r"a.parquet: field 'account_id' missing required"):
        read_events(tmp_path / "a.parquet")
    small.with_columns(pl.col("n").cast(pl.String)).write_parquet(tmp_path / "b.parquet")
    with pytest.raises(EventSchemaError, match=r"field 'n' wrong type"):
        read_events(tmp_path / "b.parquet")
    small.with_columns(
        pl.when(pl.int_range(pl.len()) == 7).then(None).otherwise(pl.col("ip")).alias("ip")
    ).write_parquet(tmp_path / "c.parquet")
    with pytest.raises(EventSchemaError, match=r"c.parquet row 8: field 'ip' is required"):
        read_events(tmp_path / "c.parquet")


def test_parquet_compatible_types_are_cast(tmp_path: Path, small: pl.DataFrame) -> None:
    small.with_columns(
        pl.col("prompt_tokens").cast(pl.Int64),
        pl.col("n").cast(pl.Int64),
        pl.col("ts").dt.replace_time_zone(None),
    ).write_parquet(tmp_path / "w.parquet")
    got = read_events(tmp_path / "w.parquet").collect()
    assert got.equals(small)


def test_missing_file_and_bad_format(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_events(tmp_path / "nope.parquet")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(EventSchemaError, match="unknown format"):
        read_events(tmp_path / "x.txt")


def test_check_record_and_records_to_frame(small: pl.DataFrame) -> None:
    recs = _ndjson_lines(small.head(3))
    assert all(check_record(r) == [] for r in recs)
    assert records_to_frame(recs).equals(small.head(3))
    bad = dict(recs[0], n=70000, stream="yes", ts="yesterday")
    fields = {f for f, _ in check_record(bad)}
    assert fields == {"n", "stream", "ts"}
    assert check_record([1, 2]) == [(None, "expected a JSON object, got list")]


# --------------------------------------------------------------------------- batch validation


def test_fast_batch_validation_equals_the_per_line_path(small: pl.DataFrame) -> None:
    """Property: random batches of valid and broken lines give the same accepted frame, the same
    lines and the same (line, field, reason) problems through the fast path and line by line."""
    base = _ndjson_lines(small)
    rejected_somewhere = 0
    for seed in range(120):
        rng = random.Random(seed)
        n = rng.choice([1, 3, 20, 60])
        clean = seed % 4 == 0  # a quarter of the batches are entirely valid: the fast path
        lines = [
            json.dumps(dict(base[(seed + i) % len(base)], request_id=f"r{i}"))
            if clean
            else mutate(rng, base[(seed + i) % len(base)], i)
            for i in range(n)
        ]
        body = "\n".join(lines).encode("utf-8", "surrogatepass") + rng.choice([b"", b"\n"])
        fast = validate_ndjson(body)
        slow = validate_ndjson_per_line(body)
        assert fast.problems == slow.problems, seed
        assert fast.rows == slow.rows, seed
        assert fast.frame.schema == slow.frame.schema == EVENT_SCHEMA
        assert fast.frame.equals(slow.frame), seed
        if clean:
            assert not fast.problems and fast.frame.height == n
        rejected_somewhere += bool(fast.problems)
    assert rejected_somewhere > 60


def test_batch_validation_reports_lines_of_the_body_as_sent(small: pl.DataFrame) -> None:
    recs = [json.dumps(r) for r in _ndjson_lines(small.head(2))]
    body = ("\n\n" + recs[0] + "\n  \n" + '{"ts": 1}' + "\n" + recs[1] + "\n").encode()
    got = validate_ndjson(body)
    assert got.rows == [3, 6] and got.frame.equals(small.head(2))
    assert {line for line, _, _ in got.problems} == {5}
    with pytest.raises(TooManyEvents):
        validate_ndjson(body, max_events=2)
    assert validate_ndjson(body, max_events=3).rows == [3, 6]
    mixed = validate_records([json.loads(recs[0]), "x", {"ts": None}], lines=[7, 8, 9])
    assert mixed.rows == [7] and mixed.problems[0] == (8, None, "expected a JSON object, got str")


# --------------------------------------------------------------------------- value rules


def test_value_rules_beyond_the_dtypes(small: pl.DataFrame) -> None:
    rec = _ndjson_lines(small.head(1))[0]
    assert check_record(rec) == []
    cases = {
        "prompt_tokens": (-1, "must be >= 0, got -1"),
        "n": (-2, "must be >= 0, got -2"),
        "status": (-200, "must be >= 0, got -200"),
        "latency_ms": (-0.5, "must be >= 0, got -0.5"),
        "account_id": ("", "must not be empty"),
        "api_key_id": ("k" * 257, "longer than 256 characters (257)"),
        "conversation_id": ("..", "'..' is not an identifier"),
        "user_agent": ("u" * 1025, "longer than 1024 characters (1025)"),
    }
    for field, (value, reason) in cases.items():
        assert check_record(dict(rec, **{field: value})) == [(field, reason)], field
    assert check_record(dict(rec, status=1000)) == [("status", "must be <= 999, got 1000")]
    for bad in ("a\x00b", "a\nb", "../x", "a/../b", "a..\\b", "a\u2028b", "a\x85b"):
        ((field, reason),) = check_record(dict(rec, account_id=bad))
        assert field == "account_id" and reason.startswith("contains "), bad
        assert "control characters or a '..' path segment" in reason
    ((_, reason),) = check_record(dict(rec, model="gpt\x00"))
    assert reason == "contains the control character '\\x00' at character 4"
    # what stays valid: slashes (an AWS role ARN, an Azure resource id), dots inside an id, zero
    # counts and latency
    arn = "arn:aws:sts::123456789012:assumed-role/Backend/i-0a1b"
    fine = dict(rec, user_agent="curl/8.5", account_id="org.acme...x", api_key_id=arn, n=0)
    assert check_record(dict(fine, latency_ms=0)) == []
    assert check_record(fine) == []


def test_readers_reject_rule_breaking_values(tmp_path: Path, small: pl.DataFrame) -> None:
    """The offline reader refuses the values ingest refuses, naming the row or line."""
    bad = small.head(6).with_columns(
        pl.when(pl.int_range(pl.len()) == 2).then(-3).otherwise(pl.col("prompt_tokens"))
        .cast(pl.Int32).alias("prompt_tokens"),
        pl.when(pl.int_range(pl.len()) == 4).then(pl.lit("a/../b")).otherwise(pl.col("account_id"))
        .alias("account_id"),
    )  # fmt: skip
    bad.write_parquet(tmp_path / "bad.parquet")
    with pytest.raises(EventSchemaError) as info:
        read_events(tmp_path / "bad.parquet")
    got = {(p.line, p.field): p.reason for p in info.value.problems}
    assert got[(3, "prompt_tokens")] == "must be >= 0, got -3"
    assert got[(5, "account_id")].startswith("contains '../' at character 3")
    assert len(got) == 2
    lines = _ndjson_lines(small.head(4))
    lines[1]["latency_ms"] = -1.0
    lines[3]["request_id"] = "r\nx"
    (tmp_path / "bad.ndjson").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    with pytest.raises(EventSchemaError) as info:
        read_events(tmp_path / "bad.ndjson")
    got = {(p.line, p.field): p.reason for p in info.value.problems}
    assert got == {
        (2, "latency_ms"): "must be >= 0, got -1.0",
        (4, "request_id"): (
            "contains '\\n' at character 2: identifiers may not hold control characters or a "
            "'..' path segment"
        ),
    }
