"""OpenTelemetry GenAI, live: spans made with the real OpenTelemetry SDK, with the GenAI
semantic-convention attributes an instrumentation records, exported by the SDK's own OTLP/HTTP
exporter (protobuf, plain and gzip) to ``POST /v1/traces`` of a real uvicorn server, arrive as
events with the account, key, IP, end user, model, parameters and token counts they carry
(read back from the service's write-ahead log), and are scored. OTLP/JSON, partial success,
duplicates and bad exports are checked against the same server."""

from __future__ import annotations

import base64
import gzip
import json
import os
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import polars as pl
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from detector.models import DistillScorer
from service.settings import Settings
from service.wal import WriteAheadLog
from tests.service_support import (
    INGEST,
    READ,
    ThreadServer,
    client_for,
    free_port,
    model_path,
    settle,
)

if os.environ.get("CI") != "true":  # CI installs the extra: a missing package is a failure
    pytest.importorskip(
        "opentelemetry.sdk", reason="needs the otel extra: pip install -e '.[otel]'"
    )

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, Status, StatusCode

N = 10  # model calls per account


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadServer]:
    settings = Settings(
        model_path=model_path(),
        port=free_port(),
        ingest_tokens=INGEST,  # type: ignore[arg-type]  # comma lists, as in env
        read_tokens=READ,  # type: ignore[arg-type]
        snapshot_path=tmp_path_factory.mktemp("state"),
        snapshot_interval_s=3600,  # the write-ahead log keeps every accepted batch
        rescore_interval_s=0.1,
        otlp_account_attributes="app.customer_id,tenant.id",  # type: ignore[arg-type]
        otlp_api_key_attributes="app.api_key_id",  # type: ignore[arg-type]
    )
    with ThreadServer(settings, DistillScorer.load(model_path())) as srv:
        yield srv


def messages(*pairs: tuple[str, str]) -> str:
    """gen_ai.input.messages as the conventions record it on spans: JSON text of parts."""
    return json.dumps(
        [{"role": role, "parts": [{"type": "text", "content": text}]} for role, text in pairs]
    )


def record_spans(resource: dict[str, Any], make: Any) -> list[ReadableSpan]:
    """Spans made by the real SDK (a tracer of a provider with ``resource``)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(resource))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    make(provider.get_tracer("genai-test-instrumentation", "1.0"))
    provider.shutdown()
    return list(memory.get_finished_spans())


def chat_spans(tracer: Any) -> None:
    """An instrumented chat API: GenAI client spans with content capture on, an HTTP span."""
    for i in range(N):
        attrs = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.request.max_tokens": 256,
            "gen_ai.request.temperature": 0.3,
            "gen_ai.request.top_p": 0.9,
            "gen_ai.conversation.id": f"conv-{i // 2}",
            "gen_ai.system_instructions": json.dumps([{"type": "text", "content": "Be brief."}]),
            "gen_ai.input.messages": messages(("user", f"Think step by step: what is {i} * 17?")),
            "app.customer_id": "cust-1",
            "app.api_key_id": "key-1",
            "client.address": "203.0.113.5",
            "user_agent.original": "acme-sdk/2.1",
            "enduser.id": "end-user-9",
        }
        with tracer.start_as_current_span(
            "chat gpt-4o", kind=SpanKind.CLIENT, attributes=attrs
        ) as s:
            s.set_attribute("gen_ai.response.model", "gpt-4o-2024-11-20")
            s.set_attribute("gen_ai.response.finish_reasons", ["stop"])
            s.set_attribute("gen_ai.usage.input_tokens", 42)
            s.set_attribute("gen_ai.usage.output_tokens", 128)
    with tracer.start_as_current_span("GET /health", kind=SpanKind.SERVER) as s:
        s.set_attribute("http.request.method", "GET")  # not a model call: skipped


def batch_spans(tracer: Any) -> None:
    """An older instrumentation: deprecated attribute names, the account on the resource."""
    for i in range(N):
        attrs = {
            "gen_ai.operation.name": "text_completion",
            "gen_ai.system": "openai",
            "gen_ai.request.model": "gpt-3.5-turbo-instruct",
            "gen_ai.prompt": f"Rewrite safely: item {i}",
            "gen_ai.usage.prompt_tokens": 7,
            "gen_ai.usage.completion_tokens": 300,
        }
        with tracer.start_as_current_span(
            "text_completion", kind=SpanKind.CLIENT, attributes=attrs
        ) as s:
            if i == 0:
                s.set_attribute("error.type", "openai.RateLimitError")
                s.set_status(Status(StatusCode.ERROR, "rate limited"))


def export(url: str, spans: Sequence[ReadableSpan], compression: Compression) -> SpanExportResult:
    exporter = OTLPSpanExporter(
        endpoint=f"{url}/v1/traces",
        headers={"Authorization": f"Bearer {INGEST}"},
        compression=compression,
    )
    try:
        return exporter.export(spans)
    finally:
        exporter.shutdown()


def logged_events(server: ThreadServer) -> pl.DataFrame:
    assert server.settings.snapshot_path is not None
    return pl.concat(f for _, f in WriteAheadLog(server.settings.snapshot_path / "wal").replay())


def test_sdk_exports_become_events_and_scores(server: ThreadServer) -> None:
    chat = record_spans({"service.name": "chat-api"}, chat_spans)
    batch = record_spans({"service.name": "batch-worker", "tenant.id": "tenant-b"}, batch_spans)
    assert export(server.url, chat, Compression.NoCompression) == SpanExportResult.SUCCESS
    assert export(server.url, batch, Compression.Gzip) == SpanExportResult.SUCCESS
    events = logged_events(server)
    a = events.filter(pl.col("account_id") == "cust-1")
    b = events.filter(pl.col("account_id") == "tenant-b")
    assert a.height == b.height == N and events.height == 2 * N  # the HTTP span skipped
    assert set(a["api_key_id"]) == {"key-1"} and set(b["api_key_id"]) == {"unknown"}
    assert set(a["ip"]) == {"203.0.113.5"} and set(a["user_agent"]) == {"acme-sdk/2.1"}
    assert set(a["end_user_id"]) == {"end-user-9"} and b["end_user_id"].is_null().all()
    assert set(a["model"]) == {"gpt-4o"} and set(a["endpoint"]) == {"chat.completions"}
    assert set(a["max_tokens"]) == {256} and set(a["finish_reason"]) == {"stop"}
    assert a["temperature"].to_list() == pytest.approx([0.3] * N)
    assert a["top_p"].to_list() == pytest.approx([0.9] * N)
    assert set(a["prompt_tokens"]) == {42} and set(a["completion_tokens"]) == {128}
    assert set(a["system_prompt"]) == {"Be brief."}
    assert sorted(a["prompt"]) == sorted(f"Think step by step: what is {i} * 17?" for i in range(N))
    assert a["conversation_id"].n_unique() == N // 2
    span = chat[0]
    assert span.context is not None
    first = f"{span.context.trace_id:032x}:{span.context.span_id:016x}"
    row = a.filter(pl.col("request_id") == first).row(0, named=True)
    assert row["latency_ms"] == pytest.approx((span.end_time - span.start_time) / 1e6, abs=1e-3)
    # the deprecated names of the older instrumentation
    assert set(b["endpoint"]) == {"completions"} and set(b["completion_tokens"]) == {300}
    assert sorted(b["status"]) == [200] * (N - 1) + [500]
    assert b["prompt"].str.starts_with("Rewrite safely").all()
    with client_for(server.url, READ) as client:
        settle(client)
        accounts = {a: client.get(f"/v1/accounts/{a}").json() for a in ("cust-1", "tenant-b")}
    for account in accounts.values():
        assert account["score"] is not None and account["n_events"] == N
    assert accounts["cust-1"]["features"]["cot_rate"] == 1.0  # prompt text reached fingerprints


def otlp_json(spans: Sequence[ReadableSpan]) -> bytes:
    """OTLP/JSON of the SDK's own encoding: protobuf's JSON mapping, ids as hex (OTLP/JSON)."""
    data = json_format.MessageToDict(encode_spans(spans))
    for rs in data["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return json.dumps(data).encode()


def no_account_spans(tracer: Any) -> None:
    attrs = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"}
    with tracer.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT, attributes=attrs):
        pass
    attrs = {**attrs, "app.customer_id": "cust-json", "gen_ai.request.max_tokens": "lots"}
    with tracer.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT, attributes=attrs):
        pass
    del attrs["gen_ai.request.max_tokens"]
    with tracer.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT, attributes=attrs):
        pass


def test_partial_success_json_duplicates_and_bad_exports(server: ThreadServer) -> None:
    spans = record_spans({"service.name": "x"}, no_account_spans)
    proto = encode_spans(spans).SerializeToString()
    auth = {"Authorization": f"Bearer {INGEST}"}
    with httpx.Client(base_url=server.url, headers=auth, timeout=30) as client:
        as_json = client.post(
            "/v1/traces", content=otlp_json(spans), headers={"Content-Type": "application/json"}
        )
        as_proto = client.post(
            "/v1/traces", content=proto, headers={"Content-Type": "application/x-protobuf"}
        )
        wrong_type = client.post(
            "/v1/traces", content=proto, headers={"Content-Type": "text/plain"}
        )
        garbage = client.post(
            "/v1/traces",
            content=b"\xff\x00junk",
            headers={"Content-Type": "application/x-protobuf"},
        )
        bomb = client.post(  # small compressed, over the body limit once decompressed
            "/v1/traces",
            content=gzip.compress(b"\0" * (server.settings.max_body_bytes + 1)),
            headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
        )
        bad_ids = client.post(
            "/v1/traces",
            content=b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}',
            headers={"Content-Type": "application/json"},
        )
    assert as_json.status_code == 200 and as_json.headers["content-type"] == "application/json"
    partial = as_json.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "2"  # int64 in protobuf's JSON mapping
    assert "span 1: attribute 'app.customer_id' no account" in partial["errorMessage"]
    assert (
        "span 2: attribute 'gen_ai.request.max_tokens' expected an integer"
        in partial["errorMessage"]
    )
    # the same spans again, as protobuf: the good one is a duplicate, the bad ones still rejected
    assert as_proto.headers["content-type"] == "application/x-protobuf"
    answer = ExportTraceServiceResponse.FromString(as_proto.content)
    assert answer.partial_success.rejected_spans == 2
    events = logged_events(server).filter(pl.col("account_id") == "cust-json")
    assert events.height == 1
    assert wrong_type.status_code == 415 and garbage.status_code == 400
    assert bad_ids.status_code == 400 and "not hex" in bad_ids.json()["detail"]
    assert bomb.status_code == 413
