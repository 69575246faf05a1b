"""Adapters for the sources beyond our own NDJSON: LiteLLM's standard logging payload (what its
``generic_api`` callback posts), the OpenAI / LiteLLM end user, AWS Bedrock invocation logs and
Azure OpenAI RequestResponse logs; the record conversion the service's source endpoints share.

``tests/data/litellm_standard_payload.jsonl`` holds payloads recorded from litellm 1.110.2
itself (a CustomLogger writing ``kwargs["standard_logging_object"]`` of ``acompletion`` /
``aembedding`` calls with ``mock_response``, proxy-style key metadata, one call with
``turn_off_message_logging``); the Bedrock and Azure samples follow the providers' published
log schemas."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner

from detector.io.adapter_io import convert_records, iter_json_body
from detector.io.adapters import (
    ADAPTERS,
    UNKNOWN,
    _litellm_event,
    from_litellm,
    from_openai,
)
from detector.io.cloud import from_azure_openai, from_bedrock
from detector.io.schema import EVENT_SCHEMA, EventSchemaError, read_events
from service.cli import app

DATA = Path(__file__).parent / "data"
STANDARD = DATA / "litellm_standard_payload.jsonl"
BEDROCK = DATA / "bedrock_invocations.jsonl"
BEDROCK_BAD = DATA / "bedrock_bad.jsonl"
AZURE = DATA / "azure_openai_requestresponse.jsonl"
AZURE_BAD = DATA / "azure_openai_bad.jsonl"
AZURE_RESOURCE = (
    "/SUBSCRIPTIONS/12CABCB4-86E8-404F-A3D2-1DC9982F45CA/RESOURCEGROUPS/CHAT-PROD/PROVIDERS/"
    "MICROSOFT.COGNITIVESERVICES/ACCOUNTS/CONTOSO-AOAI-EASTUS"
)


def rows(df: pl.DataFrame) -> list[dict[str, Any]]:
    return list(df.iter_rows(named=True))


def problems_of(exc: pytest.ExceptionInfo[EventSchemaError]) -> list[tuple[int | None, str | None]]:
    return [(p.line, p.field) for p in exc.value.problems]


def standard_payloads() -> list[dict[str, Any]]:
    return [json.loads(line) for line in STANDARD.read_text().splitlines()]


# --------------------------------------------------------------------------- litellm payload


def test_litellm_standard_payload_maps_every_field() -> None:
    df = from_litellm(STANDARD)
    assert df.schema == EVENT_SCHEMA and df.height == 5
    chat, classify, failed, redacted, embed = rows(df)
    assert chat["request_id"].startswith("chatcmpl-")
    assert chat["account_id"] == "team-research"  # metadata.user_api_key_team_id
    assert chat["api_key_id"] == "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b"
    assert chat["end_user_id"] == "customer-0042"  # end_user
    assert (chat["ip"], chat["user_agent"]) == ("203.0.113.17", "OpenAI/Python 1.54.3")
    assert (chat["model"], chat["endpoint"], chat["status"]) == (
        "gpt-4o-mini",
        "chat.completions",
        200,
    )
    assert chat["prompt"] == "Explain step by step why the sky is blue. Show your reasoning."
    assert chat["system_prompt"] == "You are a careful tutor."
    assert (chat["max_tokens"], chat["prompt_tokens"], chat["completion_tokens"]) == (512, 10, 20)
    assert chat["temperature"] == pytest.approx(0.7) and chat["top_p"] == pytest.approx(0.95)
    payload = standard_payloads()[0]
    expected_ms = (payload["endTime"] - payload["startTime"]) * 1000
    assert chat["latency_ms"] == pytest.approx(expected_ms, abs=0.01)
    assert chat["ts"] == datetime.fromtimestamp(payload["startTime"], UTC).replace(
        microsecond=chat["ts"].microsecond
    )
    assert chat["finish_reason"] == "stop" and chat["stream"] is False
    # model_parameters: the logit-extraction shape
    assert (classify["logprobs"], classify["top_logprobs"], classify["logit_bias_size"]) == (
        True,
        5,
        2,
    )
    assert classify["max_tokens"] == 1 and classify["end_user_id"] is None
    # a failure: status from error_information.error_code, no usage
    assert (failed["status"], failed["prompt_tokens"], failed["account_id"]) == (
        429,
        0,
        "team-batch",
    )
    # message logging turned off: no prompt, rather than one text every account shares
    assert redacted["prompt"] is None and redacted["model"] == "claude-3-5-sonnet-20241022"
    assert embed["endpoint"] == "embeddings" and embed["prompt"] == "a document to embed"


def test_litellm_standard_payload_problems_name_the_field() -> None:
    good = standard_payloads()[0]
    no_account = {**good, "metadata": {**good["metadata"], "user_api_key_team_id": None}}
    no_account["metadata"].update(user_api_key_org_id=None, user_api_key_user_id=None)
    no_key = {**good, "metadata": {**good["metadata"], "user_api_key_hash": None}}
    bad_params = {**good, "model_parameters": {"temperature": "hot", "max_tokens": 1.5}}
    assert _litellm_event(good)[1] == []
    assert [f for f, _ in _litellm_event(no_account)[1]] == ["team_id"]
    assert _litellm_event(no_key)[1] == [
        ("api_key", "missing required field (or metadata.user_api_key_hash, metadata.user_api_key)")
    ]
    assert sorted(f or "" for f, _ in _litellm_event(bad_params)[1]) == [
        "model_parameters.max_tokens",
        "model_parameters.temperature",
    ]
    assert _litellm_event({**good, "startTime": "soon"})[1] == [
        ("startTime", "cannot parse 'soon' as a timestamp")
    ]


def test_end_user_from_openai_user_and_safety_identifier(tmp_path: Path) -> None:
    base = json.loads((DATA / "openai_gateway.jsonl").read_text().splitlines()[0])
    lines = [
        {**base, "request_id": "u1", "request": {**base["request"], "user": "enduser-1"}},
        {**base, "request_id": "u2", "request": {**base["request"], "safety_identifier": "sid-9"}},
        {**base, "request_id": "u3", "end_user_id": "explicit"},
        {**base, "request_id": "u4"},
    ]
    path = tmp_path / "users.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines))
    got = dict(from_openai(path).select("request_id", "end_user_id").iter_rows())
    assert got == {"u1": "enduser-1", "u2": "sid-9", "u3": "explicit", "u4": None}


# --------------------------------------------------------------------------- bedrock


def test_bedrock_sample_maps_every_request_shape() -> None:
    df = from_bedrock(BEDROCK)
    assert df.schema == EVENT_SCHEMA and df.height == 7
    converse, stream, anthropic, llama, titan, throttled, in_s3 = rows(df)
    assert converse["account_id"] == "123456789012"
    assert converse["api_key_id"].endswith("assumed-role/ChatBackendRole/i-0a1b2c3d4e5f67890")
    assert (converse["ip"], converse["user_agent"]) == (UNKNOWN, UNKNOWN)
    assert converse["prompt"].startswith("Think step by step")
    assert converse["system_prompt"] == "You are a meticulous math tutor."
    assert (converse["max_tokens"], converse["tools_count"], converse["endpoint"]) == (
        1024,
        1,
        "converse",
    )
    assert converse["temperature"] == pytest.approx(0.2) and converse["top_p"] == pytest.approx(0.9)
    assert (converse["prompt_tokens"], converse["completion_tokens"]) == (38, 412)
    assert (converse["latency_ms"], converse["finish_reason"]) == (2140.0, "stop")
    assert (converse["end_user_id"], converse["conversation_id"]) == (
        "tenant-7/user-311",
        "conv-8841",
    )
    assert converse["ts"] == datetime(2025, 3, 14, 9, 12, 41, tzinfo=UTC)
    # ConverseStream: both user turns, streamed, stopped by max_tokens
    assert stream["stream"] and stream["finish_reason"] == "length"
    assert stream["prompt"] == (
        "Summarise this support ticket in two sentences.\n"
        "My order 5512 arrived damaged and I want a refund."
    )
    assert (
        anthropic["system_prompt"].startswith("Grade the answer") and anthropic["max_tokens"] == 256
    )
    assert anthropic["endpoint"] == "invoke_model" and anthropic["latency_ms"] == 0.0
    assert llama["prompt"].endswith("Write a haiku about autumn.<|eot_id|>")
    assert (llama["max_tokens"], llama["finish_reason"]) == (128, "stop")
    assert (titan["prompt"], titan["max_tokens"], titan["finish_reason"]) == (
        "Translate to French: good morning",
        50,
        "stop",
    )
    assert throttled["status"] == 429 and throttled["completion_tokens"] == 0
    # a body too large to log inline (in S3): no text, the token counts still
    assert in_s3["prompt"] is None and in_s3["prompt_tokens"] == 118240


def test_bedrock_bad_lines_name_line_and_field() -> None:
    with pytest.raises(EventSchemaError) as exc:
        from_bedrock(BEDROCK_BAD)
    assert problems_of(exc) == [
        (1, "accountId"),
        (2, "timestamp"),
        (3, None),
        (4, "input.inputTokenCount"),
        (4, "input.inputBodyJson.messages"),
        (5, "identity.arn"),
    ]
    assert all(Path(p.source).name == "bedrock_bad.jsonl" for p in exc.value.problems)
    assert "malformed JSON" in exc.value.problems[2].reason


# --------------------------------------------------------------------------- azure openai


def test_azure_sample_and_event_hubs_envelope() -> None:
    df = from_azure_openai(AZURE)
    assert df.schema == EVENT_SCHEMA and df.height == 6
    chat, streamed, embed, throttled, completion, responses = rows(df)
    assert chat["request_id"] == "6a0e7c1e-94e1-4b8b-9a4e-2c1d0f5e3a11"
    assert chat["account_id"] == chat["api_key_id"] == AZURE_RESOURCE  # key auth
    assert streamed["account_id"] == "3c5e7a9b-1d2f-4e6a-8b0c-2d4f6a8c0e1f"  # Entra object id
    assert streamed["api_key_id"] == AZURE_RESOURCE and streamed["stream"]
    assert (chat["model"], chat["endpoint"], chat["ip"]) == (
        "gpt-4o",
        "chat.completions",
        "203.0.113.***",
    )
    # ts is properties.requestTime (the start): `time` minus durationMs in this sample
    assert chat["ts"] == datetime(2025, 3, 14, 9, 20, 1, tzinfo=UTC) and chat["latency_ms"] == 987.0
    assert chat["prompt"] is None and chat["prompt_tokens"] == 0
    assert embed["endpoint"] == "embeddings" and throttled["status"] == 429
    assert (completion["endpoint"], responses["endpoint"]) == ("completions", "responses")


def test_azure_time_without_request_ticks_and_json_array(tmp_path: Path) -> None:
    record = json.loads(AZURE.read_text().splitlines()[0])
    record["properties"].pop("requestTime")
    path = tmp_path / "array.json"
    path.write_text(json.dumps([record]))
    [row] = rows(from_azure_openai(path))
    assert row["ts"] == datetime(2025, 3, 14, 9, 20, 1, 987000, tzinfo=UTC)  # 7 fraction digits


def test_azure_bad_lines_name_line_and_field() -> None:
    with pytest.raises(EventSchemaError) as exc:
        from_azure_openai(AZURE_BAD)
    assert problems_of(exc) == [
        (1, "category"),
        (2, "durationMs"),
        (3, "correlationId"),
        (4, "resultSignature"),
        (5, "properties"),
        (5, "properties.modelName"),
        (6, "records[1].time"),
    ]


# --------------------------------------------------------------------------- convert + records


@pytest.mark.parametrize(
    ("source", "path", "count"), [("bedrock", BEDROCK, 7), ("azure-openai", AZURE, 6)]
)
def test_convert_cli_for_cloud_logs(tmp_path: Path, source: str, path: Path, count: int) -> None:
    out = tmp_path / "events.parquet"
    result = CliRunner().invoke(app, ["convert", "--from", source, str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert read_events(out).collect().height == count
    assert {"bedrock", "azure-openai", "openai", "litellm"} <= set(ADAPTERS)


def test_convert_cli_names_the_bad_line(tmp_path: Path) -> None:
    out = tmp_path / "events.parquet"
    args = ["convert", "--from", "bedrock", str(BEDROCK_BAD), "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0 and not out.exists()
    assert "bedrock_bad.jsonl:1: field 'accountId' missing required field" in result.output


def test_iter_json_body_shapes() -> None:
    assert list(iter_json_body(b'[{"a": 1}, 2]')) == [(1, {"a": 1}, None), (2, 2, None)]
    assert list(iter_json_body(b' {"a": 1} ')) == [(1, {"a": 1}, None)]
    ndjson = list(iter_json_body(b'{"a": 1}\n\n{bad\n{"b": 2}\n'))
    assert [(n, v) for n, v, _ in ndjson] == [(1, {"a": 1}), (3, None), (4, {"b": 2})]
    assert ndjson[1][2] is not None and ndjson[1][2].startswith("malformed JSON")
    with pytest.raises(ValueError, match="malformed JSON array"):
        list(iter_json_body(b'[{"a": 1},'))


def test_convert_records_keeps_the_good_ones() -> None:
    good = standard_payloads()
    body = "\n".join([json.dumps(good[0]), "[1, 2", json.dumps({**good[1], "startTime": None})])
    out = convert_records(iter_json_body(body.encode()), _litellm_event)
    assert out.frame.height == 1 and out.rows == [1]
    assert out.problems[0][:2] == (2, None)
    assert out.problems[1] == (3, "startTime", "missing required field")
