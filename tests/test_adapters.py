"""Tests for detector.io.adapters: gateway logs -> canonical events."""

from __future__ import annotations

import csv
import gzip
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from detector.io import adapters
from detector.io.adapters import ADAPTERS, UNKNOWN, convert, from_litellm, from_openai
from detector.io.schema import EVENT_SCHEMA, MAX_REPORTED_PROBLEMS, EventSchemaError, read_events

DATA = Path(__file__).parent / "data"
OPENAI = DATA / "openai_gateway.jsonl"
OPENAI_BAD = DATA / "openai_bad.jsonl"
LITELLM = DATA / "litellm_spendlogs.jsonl"
LITELLM_CSV = DATA / "litellm_spendlogs.csv"


def by_id(df: pl.DataFrame) -> dict[str, dict[str, Any]]:
    return {row["request_id"]: row for row in df.iter_rows(named=True)}


def utc(year: int, month: int, day: int, hour: int, minute: int, second: int) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


Where = tuple[str, int | None, str | None]


def problems_of(exc: pytest.ExceptionInfo[EventSchemaError]) -> list[Where]:
    """(file name, line, field) of each reported problem."""
    return [(Path(p.source).name, p.line, p.field) for p in exc.value.problems]


# --------------------------------------------------------------------------- openai


@pytest.fixture(scope="module")
def openai_events() -> dict[str, dict[str, Any]]:
    df = from_openai(OPENAI)
    assert df.schema == pl.Schema(EVENT_SCHEMA)
    assert df.height == 8
    return by_id(df)


def test_openai_multi_turn_chat(openai_events: dict[str, dict[str, Any]]) -> None:
    ev = openai_events["req-oa-001"]
    assert ev["ts"] == datetime(2025, 3, 1, 10, 0, 0, 250000, tzinfo=UTC)
    assert ev["account_id"] == "org-acme"
    assert ev["api_key_id"] == "key-acme-1"
    assert ev["ip"] == "203.0.113.10"
    assert ev["user_agent"] == "OpenAI/Python 1.54.3"
    assert ev["model"] == "gpt-4o"  # the model asked for, not the response's snapshot name
    assert ev["endpoint"] == "chat.completions"
    assert ev["prompt"] == "What is a monad?\nGive an example in Haskell."  # user turns only
    assert ev["system_prompt"] == "You are a helpful tutor."
    assert (ev["prompt_tokens"], ev["completion_tokens"], ev["max_tokens"]) == (58, 201, 512)
    assert ev["temperature"] == pytest.approx(0.7)
    assert ev["top_p"] == pytest.approx(0.9)
    assert (ev["n"], ev["logprobs"], ev["top_logprobs"], ev["stream"]) == (1, False, None, False)
    assert (ev["status"], ev["latency_ms"], ev["finish_reason"]) == (200, 812.5, "stop")
    assert ev["conversation_id"] == "conv-42"


def test_openai_content_parts_developer_message_and_tools(
    openai_events: dict[str, dict[str, Any]],
) -> None:
    ev = openai_events["req-oa-002"]
    assert ev["ts"] == utc(2025, 3, 1, 10, 0, 0)  # "created": unix seconds
    assert ev["account_id"] == "org-botco"  # "organization" alias
    assert ev["ip"] == "2001:db8::7"  # "client_ip" alias
    assert ev["prompt"] == "Book a table for two\nat 7pm tonight."  # text parts, image skipped
    assert ev["system_prompt"] == "Use the tools when needed."
    assert ev["tools_count"] == 2
    assert ev["max_tokens"] == 1024  # max_completion_tokens
    assert ev["finish_reason"] == "tool_calls"
    assert ev["latency_ms"] == 1450.0
    assert ev["conversation_id"] is None


def test_openai_raw_secret_key_is_hashed(openai_events: dict[str, dict[str, Any]]) -> None:
    key = openai_events["req-oa-002"]["api_key_id"]
    assert key.startswith("sha256:") and len(key) == len("sha256:") + 16
    assert "sk-proj" not in key


def test_openai_extraction_probe(openai_events: dict[str, dict[str, Any]]) -> None:
    ev = openai_events["req-oa-003"]
    assert ev["endpoint"] == "chat.completions"  # "/v1/chat/completions" normalised
    assert ev["logit_bias_size"] == 3
    assert (ev["logprobs"], ev["top_logprobs"]) == (True, 20)
    assert (ev["n"], ev["max_tokens"], ev["temperature"]) == (4, 1, 0.0)
    assert (ev["prompt_tokens"], ev["completion_tokens"]) == (6, 4)
    assert ev["finish_reason"] == "length"
    assert ev["latency_ms"] == 95.25


def test_openai_missing_optional_fields_get_defaults(
    openai_events: dict[str, dict[str, Any]],
) -> None:
    ev = openai_events["req-oa-004"]
    assert ev["ts"] == utc(2025, 3, 1, 10, 0, 5)  # naive timestamp taken as UTC
    assert ev["user_agent"] == UNKNOWN
    assert ev["endpoint"] == "chat.completions"
    assert ev["status"] == 200
    assert ev["stream"] is True
    for col in ("temperature", "top_p", "max_tokens", "top_logprobs", "conversation_id"):
        assert ev[col] is None, col
    assert (ev["n"], ev["logit_bias_size"], ev["tools_count"]) == (1, 0, 0)


def test_openai_error_status(openai_events: dict[str, dict[str, Any]]) -> None:
    ev = openai_events["req-oa-005"]
    assert ev["status"] == 429
    assert (ev["prompt_tokens"], ev["completion_tokens"]) == (0, 0)
    assert ev["finish_reason"] is None
    assert ev["prompt"] == "Articulate the internal reasoning step by step."


def test_openai_legacy_completions_responses_and_embeddings(
    openai_events: dict[str, dict[str, Any]],
) -> None:
    legacy = openai_events["req-oa-006"]
    assert legacy["endpoint"] == "completions"
    assert legacy["prompt"] == "Translate to German: good morning"
    assert (legacy["logprobs"], legacy["top_logprobs"]) == (True, 3)  # integer logprobs
    assert legacy["ts"] == datetime(2025, 3, 1, 10, 0, 10, 500000, tzinfo=UTC)

    resp = openai_events["req-oa-007"]
    assert resp["endpoint"] == "responses"
    assert resp["prompt"] == "Refactor this function."
    assert resp["system_prompt"] == "Answer as a senior engineer."  # instructions
    assert (resp["prompt_tokens"], resp["completion_tokens"]) == (310, 2048)
    assert resp["max_tokens"] == 2048
    assert resp["finish_reason"] == "length"
    assert resp["conversation_id"] == "thread-9"

    emb = openai_events["req-oa-008"]
    assert emb["endpoint"] == "embeddings"
    assert emb["prompt"] == "first chunk\nsecond chunk"
    assert (emb["prompt_tokens"], emb["completion_tokens"]) == (5, 0)


def test_openai_errors_name_file_line_and_field() -> None:
    with pytest.raises(EventSchemaError) as exc:
        from_openai(OPENAI_BAD)
    assert problems_of(exc) == [
        ("openai_bad.jsonl", 2, None),  # malformed JSON (line 3 is blank)
        ("openai_bad.jsonl", 4, "timestamp"),
        ("openai_bad.jsonl", 5, "account_id"),
        ("openai_bad.jsonl", 6, "request.temperature"),
    ]
    assert "malformed JSON" in exc.value.problems[0].reason
    assert "missing required field" in exc.value.problems[1].reason
    assert "openai_bad.jsonl:4: field 'timestamp'" in str(exc.value)
    assert not exc.value.truncated


def test_openai_missing_model_and_bad_types(tmp_path: Path) -> None:
    rec = json.loads(OPENAI.read_text().splitlines()[0])
    del rec["request"]["model"]
    rec["status"] = "ok"
    rec["request"]["tools"] = {"not": "a list"}
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps(rec) + "\n")
    with pytest.raises(EventSchemaError) as exc:
        from_openai(path)
    assert sorted(f for _, _, f in problems_of(exc) if f) == [
        "request.model",
        "request.tools",
        "status",
    ]


def test_problems_are_capped(tmp_path: Path) -> None:
    path = tmp_path / "junk.jsonl"
    path.write_text("{not json\n" * (MAX_REPORTED_PROBLEMS + 10))
    with pytest.raises(EventSchemaError) as exc:
        from_openai(path)
    assert len(exc.value.problems) == MAX_REPORTED_PROBLEMS
    assert exc.value.truncated
    assert [p.line for p in exc.value.problems] == list(range(1, MAX_REPORTED_PROBLEMS + 1))


def test_openai_rejects_csv(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(EventSchemaError, match="CSV is not supported"):
        from_openai(path)


def test_missing_input_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.jsonl"):
        from_openai(tmp_path / "nope.jsonl")


# --------------------------------------------------------------------------- litellm


@pytest.fixture(scope="module")
def litellm_events() -> dict[str, dict[str, Any]]:
    df = from_litellm(LITELLM)
    assert df.schema == pl.Schema(EVENT_SCHEMA)
    assert df.height == 7
    return by_id(df)


H1 = "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b"


def test_litellm_chat_with_request_body(litellm_events: dict[str, dict[str, Any]]) -> None:
    ev = litellm_events["chatcmpl-ll-001"]
    assert ev["ts"] == datetime(2025, 3, 2, 9, 15, 0, 100000, tzinfo=UTC)
    assert ev["latency_ms"] == 2250.0  # endTime - startTime
    assert ev["account_id"] == "team-research"
    assert ev["api_key_id"] == H1
    assert ev["ip"] == "198.51.100.77"  # column wins over metadata
    assert ev["user_agent"] == "litellm-python/1.61.0"  # metadata.headers, any case
    assert ev["model"] == "gpt-4o"  # requested model, not the deployment
    assert ev["endpoint"] == "chat.completions"
    # prompt text from the full request body, not the truncated messages column
    assert ev["prompt"] == "Question: what is 2+2? Answer: 4.\nScore this answer 1-10."
    assert ev["system_prompt"] == "You are a grader."
    assert (ev["prompt_tokens"], ev["completion_tokens"]) == (87, 304)
    assert ev["temperature"] == pytest.approx(1.2)
    assert ev["top_p"] == pytest.approx(0.95)
    assert (ev["n"], ev["logprobs"], ev["top_logprobs"], ev["max_tokens"]) == (2, True, 5, 400)
    assert (ev["status"], ev["finish_reason"], ev["conversation_id"]) == (200, "stop", "sess-abc")


def test_litellm_metadata_fallbacks_tools_and_stream(
    litellm_events: dict[str, dict[str, Any]],
) -> None:
    ev = litellm_events["chatcmpl-ll-002"]
    assert ev["account_id"] == "team-agents"  # metadata.user_api_key_team_id
    assert ev["ip"] == "203.0.113.9"  # metadata.requester_ip_address
    assert ev["user_agent"] == UNKNOWN
    assert ev["model"] == "sonnet"
    assert ev["prompt"] == "List open tickets"  # content parts
    assert (ev["tools_count"], ev["logit_bias_size"], ev["stream"]) == (3, 1, True)
    assert ev["latency_ms"] == 750.0
    assert ev["finish_reason"] == "tool_calls"


def test_litellm_failures(litellm_events: dict[str, dict[str, Any]]) -> None:
    coded = litellm_events["chatcmpl-ll-003"]
    assert coded["status"] == 429  # metadata.error_information.error_code
    assert coded["finish_reason"] is None
    assert coded["prompt"] == "again"
    uncoded = litellm_events["chatcmpl-ll-004"]
    assert uncoded["status"] == 500
    assert uncoded["account_id"] == "org-solo"  # organization_id
    assert uncoded["ip"] == UNKNOWN
    assert uncoded["prompt"] is None and uncoded["system_prompt"] is None
    assert uncoded["latency_ms"] == 30000.0


def test_litellm_call_types(litellm_events: dict[str, dict[str, Any]]) -> None:
    emb = litellm_events["emb-ll-005"]
    assert emb["endpoint"] == "embeddings"
    assert emb["account_id"] == "user-99"  # user, the last fallback
    assert (emb["prompt"], emb["n"], emb["logprobs"]) == (None, 1, False)

    text = litellm_events["cmpl-ll-006"]
    assert text["endpoint"] == "completions"
    assert text["user_agent"] == "curl/8.5.0"  # proxy_server_request.headers
    assert text["model"] == "instruct"
    assert text["prompt"] == "Say this is a test"
    assert (text["logprobs"], text["top_logprobs"], text["max_tokens"]) == (True, 2, 16)

    resp = litellm_events["resp-ll-007"]
    assert resp["endpoint"] == "responses"
    assert resp["latency_ms"] == 1234.0  # request_duration_ms when endTime is absent
    assert resp["status"] == 200  # no status column at all
    assert resp["user_agent"] == "codex-cli/0.1"
    assert resp["prompt"] == "Explain CRDTs."  # messages column when no request body
    assert resp["system_prompt"] == "Be terse."
    assert resp["finish_reason"] == "stop"


def test_litellm_csv_export() -> None:
    df = from_litellm(LITELLM_CSV)
    assert df.schema == pl.Schema(EVENT_SCHEMA)
    events = by_id(df)
    assert list(events) == ["csv-001", "csv-002", "csv-003"]
    first = events["csv-001"]
    assert first["ts"] == utc(2025, 3, 3, 8, 0, 0)
    assert first["latency_ms"] == 1500.0
    assert first["prompt"] == "Summarise:\nline one\nline two"
    assert first["system_prompt"] == "Be precise."
    assert first["user_agent"] == "OpenAI/Python 1.54.3"
    assert first["temperature"] == pytest.approx(0.2)
    assert (first["prompt_tokens"], first["completion_tokens"]) == (20, 40)
    failed = events["csv-002"]
    assert (failed["status"], failed["ip"], failed["conversation_id"]) == (400, UNKNOWN, "sess-2")
    emb = events["csv-003"]
    assert emb["ts"] == utc(2025, 3, 3, 8, 1, 0)  # "+00" offset
    assert (emb["endpoint"], emb["account_id"], emb["prompt"]) == (
        "embeddings",
        "user-99",
        "hello world",
    )
    assert emb["latency_ms"] == 25.0


def test_litellm_json_array_and_gzip_match_jsonl(tmp_path: Path) -> None:
    records = [json.loads(line) for line in LITELLM.read_text().splitlines()]
    array = tmp_path / "spend_logs.json"
    array.write_text(json.dumps(records, indent=2))
    packed = tmp_path / "spend_logs.jsonl.gz"
    with gzip.open(packed, "wt", encoding="utf-8") as fh:
        fh.write(LITELLM.read_text())
    expected = from_litellm(LITELLM)
    assert_frame_equal(from_litellm(array), expected)
    assert_frame_equal(from_litellm(packed), expected)


def test_litellm_directory_and_glob_inputs(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text(LITELLM.read_text())
    (tmp_path / "b.csv").write_text(LITELLM_CSV.read_text())
    (tmp_path / "notes.txt").write_text("ignored")
    assert from_litellm(tmp_path).height == 10
    assert from_litellm(str(tmp_path / "*.csv")).height == 3


def test_litellm_csv_errors_name_the_record_start_line(tmp_path: Path) -> None:
    with LITELLM_CSV.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    rows[1]["startTime"] = "yesterday"  # csv-002 starts on line 16: csv-001 spans 14 lines
    rows[2]["team_id"] = rows[2]["user"] = ""  # csv-003: no account at all
    rows[2]["api_key"] = ""
    path = tmp_path / "bad.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(EventSchemaError) as exc:
        from_litellm(path)
    assert problems_of(exc) == [
        ("bad.csv", 16, "startTime"),
        ("bad.csv", 17, "team_id"),
        ("bad.csv", 17, "api_key"),
    ]
    assert "cannot parse 'yesterday'" in exc.value.problems[0].reason


def test_litellm_json_errors(tmp_path: Path) -> None:
    good = json.loads(LITELLM.read_text().splitlines()[0])
    no_start = {k: v for k, v in good.items() if k != "startTime"}
    backwards = good | {"endTime": "2025-03-02T09:14:00Z"}
    bad_meta = good | {"metadata": '{"user_api_key_team_id": '}
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in (good, no_start, backwards, bad_meta)) + "\n")
    with pytest.raises(EventSchemaError) as exc:
        from_litellm(path)
    assert problems_of(exc) == [
        ("bad.jsonl", 2, "startTime"),
        ("bad.jsonl", 3, "endTime"),
        ("bad.jsonl", 4, "metadata"),
    ]
    array = tmp_path / "bad.json"
    array.write_text(json.dumps([good, no_start]))
    with pytest.raises(EventSchemaError) as exc:
        from_litellm(array)
    assert problems_of(exc) == [("bad.json", 2, "startTime")]
    assert "bad.json row 2: field 'startTime'" in str(exc.value)


# --------------------------------------------------------------------------- convert


@pytest.mark.parametrize(
    ("source", "inputs", "count"),
    [("openai", [OPENAI], 8), ("litellm", [LITELLM, LITELLM_CSV], 10)],
)
def test_convert_round_trip(tmp_path: Path, source: str, inputs: list[Path], count: int) -> None:
    out = tmp_path / "nested" / "events.parquet"
    assert convert(source, inputs, out) == count
    back = read_events(out).collect()
    assert back.schema == pl.Schema(EVENT_SCHEMA)
    assert_frame_equal(back, ADAPTERS[source](inputs))
    assert not list(out.parent.glob(".*.tmp"))


def test_convert_unknown_source(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="valid sources: openai, litellm"):
        convert("splunk", [OPENAI], tmp_path / "x.parquet")
    assert not (tmp_path / "x.parquet").exists()


def test_convert_bad_input_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "events.parquet"
    with pytest.raises(EventSchemaError):
        convert("openai", [OPENAI_BAD], out)
    assert not out.exists()


def test_adapter_registry() -> None:
    assert list(ADAPTERS) == ["openai", "litellm", "bedrock", "azure-openai"]
    assert ADAPTERS["openai"] is from_openai
    assert ADAPTERS["litellm"] is from_litellm
    assert adapters.convert is convert
