"""Request bodies of the other ingest sources, built from canonical events, for
``benchmarks/service_bench.py --sources`` (the same events through ``POST /v1/events``,
``POST /v1/ingest/litellm`` and ``POST /v1/traces``).

- LiteLLM: JSON arrays of standard logging payloads, as its ``generic_api`` callback posts
  them, each a copy of a payload recorded from litellm (``tests/data``: with its model map
  information, hidden params and the rest, so the bodies have a real payload's size) with the
  event's fields put in;
- OpenTelemetry: OTLP protobuf ``ExportTraceServiceRequest``s of GenAI client spans carrying
  the event's fields as attributes (content capture on: input messages and system
  instructions), built with ``opentelemetry-proto``'s classes.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import polars as pl
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = json.loads(
    (REPO / "tests" / "data" / "litellm_standard_payload.jsonl").read_text().splitlines()[0]
)
_CALL_TYPES = {"chat.completions": "acompletion", "completions": "atext_completion"}
# what GenAI instrumentations record as gen_ai.operation.name (the Responses API is a chat)
_OPERATIONS = {"completions": "text_completion", "embeddings": "embeddings"}


def _epoch_s(ts: Any) -> float:
    return float(ts.timestamp())


def litellm_payload(ev: dict[str, Any]) -> dict[str, Any]:
    """A standard logging payload carrying canonical event ``ev``."""
    p = copy.deepcopy(TEMPLATE)
    start = _epoch_s(ev["ts"])
    end = start + ev["latency_ms"] / 1000
    failed = ev["status"] >= 400
    p.update(
        id=ev["request_id"],
        litellm_call_id=ev["request_id"],
        call_type=_CALL_TYPES.get(ev["endpoint"], "a" + ev["endpoint"].split(".")[0]),
        stream=ev["stream"],
        status="failure" if failed else "success",
        startTime=start,
        endTime=end,
        completionStartTime=end,
        model=ev["model"],
        model_group=ev["model"],
        prompt_tokens=ev["prompt_tokens"],
        completion_tokens=ev["completion_tokens"],
        total_tokens=ev["prompt_tokens"] + ev["completion_tokens"],
        end_user=ev["end_user_id"],
        requester_ip_address=ev["ip"],
        user_agent=ev["user_agent"],
        session_id=ev["conversation_id"] or "",
        error_information={"error_code": str(ev["status"])} if failed else None,
    )
    p["metadata"].update(
        user_api_key_hash=ev["api_key_id"],
        user_api_key_team_id=ev["account_id"],
        requester_ip_address=ev["ip"],
        user_agent=ev["user_agent"],
        user_api_key_end_user_id=ev["end_user_id"],
    )
    messages = [{"role": "user", "content": ev["prompt"] or ""}]
    if ev["system_prompt"] is not None:
        messages.insert(0, {"role": "system", "content": ev["system_prompt"]})
    p["messages"] = messages
    params: dict[str, Any] = {"n": ev["n"], "stream": ev["stream"], "logprobs": ev["logprobs"]}
    for key in ("temperature", "top_p", "max_tokens", "top_logprobs"):
        if ev[key] is not None:
            params[key] = ev[key]
    if ev["logit_bias_size"]:
        params["logit_bias"] = {str(i): 1 for i in range(ev["logit_bias_size"])}
    if ev["tools_count"]:
        params["tools"] = [{"type": "function"}] * ev["tools_count"]
    p["model_parameters"] = params
    p["response"]["choices"][0]["finish_reason"] = ev["finish_reason"]
    return p


def litellm_bodies(events: pl.DataFrame, batch: int) -> list[bytes]:
    """JSON-array bodies (LiteLLM's default ``log_format``) of ``batch`` payloads."""
    return [
        json.dumps([litellm_payload(ev) for ev in part.iter_rows(named=True)]).encode()
        for part in events.iter_slices(batch)
    ]


def _kv(key: str, value: Any) -> KeyValue:
    v = AnyValue()
    if isinstance(value, bool):
        v.bool_value = value
    elif isinstance(value, int):
        v.int_value = value
    elif isinstance(value, float):
        v.double_value = value
    elif isinstance(value, list):
        v.array_value.CopyFrom(ArrayValue(values=[AnyValue(string_value=x) for x in value]))
    else:
        v.string_value = str(value)
    return KeyValue(key=key, value=v)


def genai_span(ev: dict[str, Any]) -> Span:
    """A GenAI client span carrying canonical event ``ev``."""
    digest = hashlib.blake2b(ev["request_id"].encode(), digest_size=24).digest()
    start = int(_epoch_s(ev["ts"]) * 1e9)
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": _OPERATIONS.get(ev["endpoint"], "chat"),
        "gen_ai.request.model": ev["model"],
        "gen_ai.request.choice.count": ev["n"],
        "gen_ai.request.stream": ev["stream"],
        "gen_ai.usage.input_tokens": ev["prompt_tokens"],
        "gen_ai.usage.output_tokens": ev["completion_tokens"],
        "gen_ai.input.messages": json.dumps(
            [{"role": "user", "parts": [{"type": "text", "content": ev["prompt"] or ""}]}]
        ),
        "distillguard.account_id": ev["account_id"],
        "distillguard.api_key_id": ev["api_key_id"],
        "client.address": ev["ip"],
        "user_agent.original": ev["user_agent"],
    }
    for key, column in (
        ("gen_ai.request.max_tokens", "max_tokens"),
        ("gen_ai.request.temperature", "temperature"),
        ("gen_ai.request.top_p", "top_p"),
        ("gen_ai.conversation.id", "conversation_id"),
        ("enduser.id", "end_user_id"),
    ):
        if ev[column] is not None:
            attrs[key] = ev[column]
    if ev["system_prompt"] is not None:
        attrs["gen_ai.system_instructions"] = json.dumps(
            [{"type": "text", "content": ev["system_prompt"]}]
        )
    if ev["finish_reason"] is not None:
        attrs["gen_ai.response.finish_reasons"] = [ev["finish_reason"]]
    if ev["status"] >= 400:
        attrs["http.response.status_code"] = ev["status"]
    return Span(
        trace_id=digest[:16],
        span_id=digest[16:],
        name=f"{attrs['gen_ai.operation.name']} {ev['model']}",
        kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=start,
        end_time_unix_nano=start + int(ev["latency_ms"] * 1e6),
        attributes=[_kv(k, v) for k, v in attrs.items()],
        status=Status(
            code=Status.STATUS_CODE_ERROR if ev["status"] >= 400 else Status.STATUS_CODE_UNSET
        ),
    )


def otlp_bodies(events: pl.DataFrame, batch: int) -> list[bytes]:
    """OTLP protobuf exports of ``batch`` spans (one resource, one scope), as the SDK's
    BatchSpanProcessor + OTLP/HTTP exporter send them (uncompressed)."""
    out = []
    for part in events.iter_slices(batch):
        request = ExportTraceServiceRequest()
        rs = request.resource_spans.add()
        rs.resource.attributes.append(_kv("service.name", "llm-api"))
        ss = rs.scope_spans.add()
        ss.scope.name = "genai-instrumentation"
        ss.spans.extend(genai_span(ev) for ev in part.iter_rows(named=True))
        out.append(request.SerializeToString())
    return out
