"""OpenTelemetry GenAI spans -> canonical events.

Decodes an OTLP trace export (``ExportTraceServiceRequest``, protobuf or OTLP/JSON) with the
generated classes of the ``opentelemetry-proto`` package and maps every span that records a
model call under the GenAI semantic conventions to one canonical event. No HTTP here: the
service's ``POST /v1/traces`` (:mod:`service.api.otlp`) calls :func:`decode_export` and
:func:`span_records`, then :func:`detector.io.adapter_io.convert_records` with
:func:`span_event`.

A span is a model call when ``gen_ai.operation.name`` is ``chat``, ``text_completion``,
``generate_content`` or ``embeddings``, or when it has no operation name but a
``gen_ai.request.model`` (instrumentations written before the attribute existed); any other span
(HTTP, database, agent and tool spans, ...) is skipped. Mapping (attribute names of the current
GenAI semantic conventions; the deprecated names they replace are read too):

- request_id = ``<trace id hex>:<span id hex>`` (an exporter's retry is a duplicate);
- ts = the span's start, latency_ms = its duration;
- model = ``gen_ai.request.model``, else ``gen_ai.response.model``;
- endpoint from ``gen_ai.operation.name``: chat -> chat.completions, text_completion ->
  completions, embeddings -> embeddings, generate_content -> generate_content; none ->
  chat.completions;
- prompt_tokens / completion_tokens = ``gen_ai.usage.input_tokens`` / ``output_tokens``
  (``prompt_tokens`` / ``completion_tokens``), 0 when absent;
- max_tokens, temperature, top_p, n, stream = ``gen_ai.request.max_tokens``,
  ``.temperature``, ``.top_p``, ``.choice.count`` (default 1), ``.stream`` (default false);
- finish_reason = the first of ``gen_ai.response.finish_reasons``;
- conversation_id = ``gen_ai.conversation.id``;
- tools_count = the length of ``gen_ai.tool.definitions``;
- prompt / system_prompt = the text parts of the user / system messages of
  ``gen_ai.input.messages`` and ``gen_ai.system_instructions`` (recorded only when the sender
  opts in to capturing content), else the deprecated ``gen_ai.prompt``, OpenLLMetry's
  ``gen_ai.prompt.<i>.role`` / ``.content``, or ``gen_ai.user.message`` /
  ``gen_ai.system.message`` span events;
- status = ``http.response.status_code`` when present, else 500 for a span whose status is
  ERROR (an ``error.type`` that is an HTTP code is used), else 200;
- account_id, api_key_id, ip, user_agent, end_user_id from the attributes named by an
  :class:`OtelMapping` (the span's attributes first, then its resource's): account_id is
  required; the others default to ``unknown`` (end_user_id to null);
- logprobs false, top_logprobs null, logit_bias_size 0: the conventions have no attributes for
  them.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from detector.io.adapter_io import (
    REDACTED,
    UNKNOWN,
    _Bad,
    _bool,
    _float,
    _int,
    _int16,
    _json,
    _present,
    _Record,
    _str,
)

Event = tuple[dict[str, Any], list[tuple[str | None, str]]]

MODEL_OPERATIONS = {
    "chat": "chat.completions",
    "text_completion": "completions",
    "generate_content": "generate_content",
    "embeddings": "embeddings",
}


@dataclass(frozen=True)
class OtelMapping:
    """Which attributes name the account, key, client IP, user agent and end user (the first
    present, looked up on the span, then on its resource). The defaults are those of the
    service's ``DISTILLGUARD_OTLP_*_ATTRIBUTES`` settings."""

    account: tuple[str, ...] = ("distillguard.account_id", "tenant.id", "user.id")
    api_key: tuple[str, ...] = ("distillguard.api_key_id",)
    ip: tuple[str, ...] = ("client.address", "http.client_ip")
    user_agent: tuple[str, ...] = ("user_agent.original", "http.user_agent")
    end_user: tuple[str, ...] = ("enduser.id", "enduser.pseudo.id")


class ExportError(ValueError):
    """The export as a whole cannot be decoded."""


# --------------------------------------------------------------------------- decoding


def decode_export(body: bytes, *, json_body: bool) -> ExportTraceServiceRequest:
    """An ``ExportTraceServiceRequest`` from OTLP protobuf bytes or OTLP/JSON (whose trace and
    span ids are hex strings, not the base64 of protobuf's JSON mapping). Raises
    :class:`ExportError`."""
    request = ExportTraceServiceRequest()
    if not json_body:
        try:
            request.ParseFromString(body)
        except DecodeError as exc:
            raise ExportError(f"not an OTLP protobuf trace export: {exc}") from None
        return request
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ExportError(f"malformed JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ExportError("expected an OTLP/JSON trace export (a JSON object with resourceSpans)")
    try:
        _hex_ids_to_base64(data)
        json_format.ParseDict(data, request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, AttributeError) as exc:
        raise ExportError(f"not an OTLP/JSON trace export: {exc}") from None
    return request


_ID_FIELDS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


def _hex_ids_to_base64(data: dict[str, Any]) -> None:
    """OTLP/JSON writes ids as hex; protobuf's JSON mapping of bytes is base64."""
    for rs in data.get("resourceSpans") or data.get("resource_spans") or []:
        for ss in rs.get("scopeSpans") or rs.get("scope_spans") or []:
            for span in ss.get("spans") or []:
                for holder in (span, *(span.get("links") or [])):
                    for key in _ID_FIELDS:
                        value = holder.get(key)
                        if isinstance(value, str) and value:
                            try:
                                raw = bytes.fromhex(value)
                            except ValueError:
                                raise ValueError(f"{key} {value!r} is not hex") from None
                            holder[key] = base64.b64encode(raw).decode()


def encode_response(rejected: int, message: str, *, json_body: bool) -> bytes:
    """The OTLP answer: an ``ExportTraceServiceResponse``, with ``partial_success`` when spans
    were rejected, in the request's encoding."""
    response = ExportTraceServiceResponse()
    if rejected:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = message
    if json_body:
        return json_format.MessageToJson(response, indent=None).encode()
    return response.SerializeToString()


# --------------------------------------------------------------------------- spans


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return v.string_value
    if kind == "bool_value":
        return v.bool_value
    if kind == "int_value":
        return v.int_value
    if kind == "double_value":
        return v.double_value
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return _attributes(v.kvlist_value.values)
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return None


def _attributes(kvs: Sequence[KeyValue]) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


def span_records(request: ExportTraceServiceRequest) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(n, record)`` for every span of the export, numbered from 1 in export order; a record
    holds the span's fields, its attributes, its resource's attributes and its events."""
    n = 0
    for rs in request.resource_spans:
        resource = _attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            for span in ss.spans:
                n += 1
                yield n, _span_record(span, resource)


def _span_record(span: Span, resource: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": span.name,
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "start": span.start_time_unix_nano,
        "end": span.end_time_unix_nano,
        "error": span.status.code == Status.STATUS_CODE_ERROR,
        "attributes": _attributes(span.attributes),
        "resource": resource,
        "events": [(e.name, _attributes(e.attributes)) for e in span.events],
    }


def is_model_call(record: dict[str, Any]) -> bool:
    """Does this span record a model call (see the module docstring)?"""
    attrs = record["attributes"]
    op = attrs.get("gen_ai.operation.name")
    if op is None:
        return _present(attrs.get("gen_ai.request.model"))
    return op in MODEL_OPERATIONS


# --------------------------------------------------------------------------- one span


def _messages(value: Any, field: str) -> list[Any]:
    """A messages attribute: structured, or the JSON text the conventions allow instead."""
    decoded = _json(value, field) if isinstance(value, str) else value
    if decoded is None:
        return []
    if isinstance(decoded, dict):
        decoded = [decoded]
    if not isinstance(decoded, list):
        raise _Bad(field, f"expected a list of messages, got {type(decoded).__name__}")
    return decoded


def _part_texts(message: Any) -> list[str]:
    """Text of one message: ``parts`` of type text (current conventions), or an OpenAI-style
    ``content`` (string or text parts), or a bare string."""
    if isinstance(message, str):
        return [message]
    if not isinstance(message, dict):
        return []
    parts = message.get("parts")
    if isinstance(parts, list):
        return [
            p["content"]
            for p in parts
            if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("content"), str)
        ]
    content = message.get("content")
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [
            p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        ]
    return []


_EVENT_ROLES = {"gen_ai.user.message": "user", "gen_ai.system.message": "system"}


def _prompt_text(rec: _Record, events: list[tuple[str, dict[str, Any]]]) -> tuple[Any, Any]:
    """(prompt, system prompt) of a span: see the module docstring for where they come from."""
    attrs = rec.data
    user: list[str] = []
    system: list[str] = []

    def take(messages: list[Any], default_role: str = "user") -> None:
        for m in messages:
            role = m.get("role", default_role) if isinstance(m, dict) else default_role
            texts = [t for t in _part_texts(m) if t != REDACTED]
            if role == "user":
                user.extend(texts)
            elif role in ("system", "developer"):
                system.extend(texts)

    for key, role in (("gen_ai.system_instructions", "system"), ("gen_ai.input.messages", "user")):
        if key in attrs:
            take(rec.convert(_messages, key, attrs[key]) or [], role)
    if not user and not system and "gen_ai.prompt" in attrs:  # deprecated
        legacy = attrs["gen_ai.prompt"]
        if isinstance(legacy, str) and not legacy.lstrip().startswith(("[", "{")):
            user.append(legacy)
        else:
            take(rec.convert(_messages, "gen_ai.prompt", legacy) or [])
    if not user and not system:  # OpenLLMetry: gen_ai.prompt.<i>.role / .content
        i = 0
        while f"gen_ai.prompt.{i}.content" in attrs or f"gen_ai.prompt.{i}.role" in attrs:
            content = attrs.get(f"gen_ai.prompt.{i}.content")
            role = attrs.get(f"gen_ai.prompt.{i}.role", "user")
            take([{"role": role, "content": content}] if isinstance(content, str) else [])
            i += 1
    if not user and not system:  # span events of the conventions before 1.37
        for name, event_attrs in events:
            event_role = _EVENT_ROLES.get(name)
            content = event_attrs.get("content", event_attrs.get("gen_ai.prompt"))
            if event_role and isinstance(content, str):
                take([{"role": event_role, "content": content}])
    return ("\n".join(user) or None), ("\n".join(system) or None)


def _lookup(record: dict[str, Any], names: Sequence[str]) -> tuple[str | None, Any]:
    """(attribute name, value) of the first of ``names`` on the span, else on its resource."""
    for holder, where in ((record["attributes"], ""), (record["resource"], "resource.")):
        for name in names:
            if _present(holder.get(name)):
                return where + name, holder[name]
    return None, None


def _status(record: dict[str, Any], rec: _Record) -> int:
    code = rec.opt(_int16, "http.response.status_code", "http.status_code")
    if code is not None:
        return int(code)
    if not record["error"]:
        return 200
    error_type = record["attributes"].get("error.type")
    if isinstance(error_type, str) and error_type.isdigit() and 100 <= int(error_type) <= 599:
        return int(error_type)
    return 500


def span_event(record: dict[str, Any], mapping: OtelMapping) -> Event:
    """The canonical event of one span record (:func:`span_records`), or its problems, each
    naming the attribute at fault."""
    rec = _Record(record["attributes"])
    problems = rec.problems
    ev: dict[str, Any] = {"n": 1, "logprobs": False, "logit_bias_size": 0}
    if not record["trace_id"].strip("0") or not record["span_id"].strip("0"):
        problems.append(("span_id", "the span has no trace id or span id"))
    ev["request_id"] = f"{record['trace_id']}:{record['span_id']}"
    start, end = record["start"], record["end"]
    if not start:
        problems.append(("start_time_unix_nano", "missing (the span has no start time)"))
    elif end < start:
        problems.append(("end_time_unix_nano", "is before the span's start"))
    ev["ts"] = start // 1000
    ev["latency_ms"] = max(end - start, 0) / 1e6
    for column, names, required in (
        ("account_id", mapping.account, True),
        ("api_key_id", mapping.api_key, False),
        ("ip", mapping.ip, False),
        ("user_agent", mapping.user_agent, False),
        ("end_user_id", mapping.end_user, False),
    ):
        name, value = _lookup(record, names)
        if name is None:
            if required:
                listed = ", ".join(names)
                problems.append((names[0], f"no account: none of {listed} is set"))
            ev[column] = None if column == "end_user_id" else UNKNOWN
        else:
            ev[column] = rec.convert(_str, name, value)
    op = rec.opt(_str, "gen_ai.operation.name")
    ev["endpoint"] = MODEL_OPERATIONS.get(op or "chat", op)
    ev["model"] = rec.req(_str, "gen_ai.request.model", "gen_ai.response.model")
    ev["prompt_tokens"] = rec.opt(
        _int, "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", default=0
    )
    ev["completion_tokens"] = rec.opt(
        _int, "gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", default=0
    )
    ev["max_tokens"] = rec.opt(_int, "gen_ai.request.max_tokens")
    ev["temperature"] = rec.opt(_float, "gen_ai.request.temperature")
    ev["top_p"] = rec.opt(_float, "gen_ai.request.top_p")
    ev["n"] = rec.opt(_int16, "gen_ai.request.choice.count", default=1)
    ev["stream"] = rec.opt(_bool, "gen_ai.request.stream", default=False)
    ev["conversation_id"] = rec.opt(_str, "gen_ai.conversation.id")
    reasons = record["attributes"].get("gen_ai.response.finish_reasons")
    if isinstance(reasons, str):
        reasons = [reasons]
    if isinstance(reasons, list) and reasons and isinstance(reasons[0], str):
        ev["finish_reason"] = reasons[0]
    tools = record["attributes"].get("gen_ai.tool.definitions")
    tool_list = rec.convert(_messages, "gen_ai.tool.definitions", tools) if tools else []
    ev["tools_count"] = rec.convert(_int16, "gen_ai.tool.definitions", len(tool_list or []))
    ev["status"] = _status(record, rec)
    ev["prompt"], ev["system_prompt"] = _prompt_text(rec, record["events"])
    return ev, problems


def rejected_message(problems: Sequence[tuple[int, str | None, str]], limit: int = 10) -> str:
    """``partial_success.error_message``: the first problems, each with its span number."""
    shown = [
        f"span {n}: " + (f"attribute '{field}' " if field else "") + reason
        for n, field, reason in problems[:limit]
    ]
    more = len(problems) - len(shown)
    return "; ".join(shown) + (f"; ... and {more} more" if more > 0 else "")
