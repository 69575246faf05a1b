"""Adapters for cloud providers' own invocation logs: AWS Bedrock model-invocation logs and
Azure OpenAI diagnostic ``RequestResponse`` records -> canonical events.

Same contract as :mod:`detector.io.adapters`: a polars DataFrame with exactly the canonical
columns, or :class:`~detector.io.schema.EventSchemaError` naming the file, line and field of
every problem (JSON lines, ``.gz`` too, or a JSON array file).

``bedrock`` -- Bedrock model-invocation logs as delivered to S3 or CloudWatch Logs, one record
per line::

    {"schemaType": "ModelInvocationLog", "schemaVersion": "1.0",
     "timestamp": ISO-8601,                          required (ts)
     "accountId": str,                               required (account_id)
     "identity": {"arn": str},                       required (api_key_id)
     "requestId": str,                               required (request_id)
     "operation": "Converse" | "ConverseStream" | "InvokeModel" | "InvokeModelWithResponseStream",
     "modelId": str,                                 required (model)
     "errorCode": str,                               optional (status)
     "input": {"inputBodyJson": {...}, "inputTokenCount": int},
     "output": {"outputBodyJson": {...}, "outputTokenCount": int},
     "requestMetadata": {str: str}}                  optional (Converse requestMetadata)

Mapping: endpoint ``converse`` (Converse, ConverseStream) or ``invoke_model`` (InvokeModel*),
stream = the operation ends with ``Stream``; prompt / system prompt / sampling parameters from
``inputBodyJson`` in any of the request shapes Bedrock models take (Converse and Nova
``messages`` + ``system`` + ``inferenceConfig``; Anthropic messages; Llama / Mistral ``prompt``;
Titan ``inputText`` + ``textGenerationConfig``; Cohere ``message`` + ``preamble``; OpenAI-style
``messages``), null where the body was not logged (text delivery off, or a body too large that
Bedrock stored in S3: ``inputBodyS3Path``); tokens = ``inputTokenCount`` / ``outputTokenCount``
(0 when absent); finish_reason from the output's stop reason (end_turn / stop_sequence -> stop,
max_tokens -> length, tool_use -> tool_calls); status 200, or from ``errorCode``
(ThrottlingException 429, ValidationException 400, AccessDeniedException 403,
ResourceNotFoundException 404, ModelTimeoutException 408, ServiceUnavailableException 503,
any other 500); latency_ms = Converse's ``metrics.latencyMs``, else 0 (InvokeModel logs carry
no duration); ip and user_agent are ``unknown`` (Bedrock does not log them);
``requestMetadata.end_user_id`` (or ``user_id``) -> end_user_id and
``requestMetadata.conversation_id`` (or ``session_id``) -> conversation_id.

``azure-openai`` -- Azure OpenAI (Cognitive Services) diagnostic logs of the
``RequestResponse`` category, as archived to a storage account (one record per line) or
delivered by Event Hubs (``{"records": [...]}`` per line; problems then name
``records[i].field``)::

    {"time": ISO-8601, "resourceId": str, "category": "RequestResponse",
     "operationName": "ChatCompletions_Create" | ..., "durationMs": int,
     "callerIpAddress": "81.2.69.***", "correlationId": str, "resultSignature": "200",
     "properties": {"apiName", "requestTime" (.NET ticks), "objectId", "streamType",
                    "modelDeploymentName", "modelName", "modelVersion", ...}}  (or as JSON text)

Mapping: request_id = correlationId; ts = properties.requestTime (the request's start), else
time; account_id = properties.objectId (the caller's Entra ID object, when it authenticated
with Entra ID), else resourceId (key authentication: the resource is all the log knows);
api_key_id = resourceId (Azure keys belong to the resource and are not logged); ip =
callerIpAddress as Azure writes it (last octet masked: one value per /24); model =
properties.modelName, else modelDeploymentName; endpoint from operationName
(ChatCompletions_Create -> chat.completions, Completions_Create -> completions,
Embeddings_Create -> embeddings, Responses_Create -> responses; others lower-cased);
stream = streamType "Streaming"; status = resultSignature; latency_ms = durationMs. The
category logs no prompt text, no token counts and no sampling parameters: those columns are
null or 0 (content features are then empty, see the README).
"""

from __future__ import annotations

from typing import Any

import polars as pl

from detector.io.adapter_io import (
    REDACTED,
    UNKNOWN,
    Paths,
    _Bad,
    _convert_files,
    _float,
    _int,
    _int16,
    _present,
    _Record,
    _str,
    _ts_us,
    int_text,
)
from detector.io.tally import InputTally

Event = tuple[dict[str, Any], list[tuple[str | None, str]]]

# --------------------------------------------------------------------------- bedrock

_BEDROCK_ERRORS = {
    "ThrottlingException": 429,
    "ServiceQuotaExceededException": 429,
    "ValidationException": 400,
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "ModelTimeoutException": 408,
    "ModelNotReadyException": 503,
    "ServiceUnavailableException": 503,
}
_STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "stop": "stop",
    "finish": "stop",
    "complete": "stop",
    "max_tokens": "length",
    "length": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "tool_calls": "tool_calls",
    "content_filtered": "content_filter",
    "guardrail_intervened": "content_filter",
}


def _block_text(content: Any) -> str | None:
    """Text of a message content: a string, or the text of its blocks (``{"text": ...}`` of
    Converse / Nova, ``{"type": "text", "text": ...}`` of Anthropic and OpenAI)."""
    if isinstance(content, str):
        return content
    blocks = [content] if isinstance(content, dict) else content
    if not isinstance(blocks, list):
        return None
    texts = [b["text"] for b in blocks if isinstance(b, dict) and isinstance(b.get("text"), str)]
    texts += [b for b in blocks if isinstance(b, str)]
    return "\n".join(texts) if texts else None


def _turns(messages: Any, field: str) -> tuple[list[str], list[str]]:
    """(user texts, system texts) of a ``messages`` list."""
    if not isinstance(messages, list):
        raise _Bad(field, f"expected a list of messages, got {type(messages).__name__}")
    user: list[str] = []
    system: list[str] = []
    for item in messages:
        if not isinstance(item, dict):
            continue
        text = _block_text(item.get("content"))
        if text is None or text == REDACTED:
            continue
        if item.get("role") == "user":
            user.append(text)
        elif item.get("role") in ("system", "developer"):
            system.append(text)
    return user, system


def _bedrock_body(body: _Record) -> dict[str, Any]:
    """Prompt, system prompt and sampling parameters of a Bedrock request body."""
    data = body.data
    user: list[str] = []
    system: list[str] = []
    if "messages" in data:  # Converse, Nova, Anthropic, OpenAI-style
        user, system = body.convert(_turns, body.prefix + "messages", data["messages"]) or ([], [])
    else:
        field, text = body.pick("prompt", "inputText", "message")  # Llama/Mistral, Titan, Cohere
        if text is not None:
            user = [body.convert(_str, field, text)]
    field, sys_value = body.pick("system", "preamble")
    if sys_value is not None:
        text = _block_text(sys_value)
        if text is None:
            body.problems.append((field, f"expected text or text blocks, got {sys_value!r:.40}"))
        else:
            system.insert(0, text)
    cfg = body.sub("inferenceConfig")  # Converse (maxTokens, topP) and Nova (max_new_tokens)
    titan = body.sub("textGenerationConfig")
    out: dict[str, Any] = {
        "prompt": "\n".join(t for t in user if t is not None) or None,
        "system_prompt": "\n".join(system) or None,
        "max_tokens": cfg.opt(_int, "maxTokens", "max_new_tokens")
        or titan.opt(_int, "maxTokenCount")
        or body.opt(
            _int, "max_tokens", "max_completion_tokens", "max_gen_len", "max_tokens_to_sample"
        ),
        "temperature": _first(
            cfg.opt(_float, "temperature"),
            titan.opt(_float, "temperature"),
            body.opt(_float, "temperature"),
        ),
        "top_p": _first(
            cfg.opt(_float, "topP", "top_p"),
            titan.opt(_float, "topP"),
            body.opt(_float, "top_p", "p"),
        ),
    }
    tools = body.sub("toolConfig").data.get("tools", data.get("tools"))
    out["tools_count"] = len(tools) if isinstance(tools, list) else 0
    return out


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _stop_reason(output: dict[str, Any]) -> str | None:
    reason: Any = output.get("stopReason", output.get("stop_reason"))
    if reason is None:  # Titan: results[0].completionReason; Llama: stop_reason above
        results = output.get("results")
        if isinstance(results, list) and results and isinstance(results[0], dict):
            reason = results[0].get("completionReason")
    if reason is None:
        choices = output.get("choices")  # OpenAI-style bodies
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            reason = choices[0].get("finish_reason")
    if not isinstance(reason, str) or not reason:
        return None
    return _STOP_REASONS.get(reason.lower(), reason.lower())


def _bedrock_status(code: Any, field: str) -> int:
    if not _present(code):
        return 200
    text = _str(code, field)
    if text.isdigit():  # errorCode is a string: a code's digits are its text
        return int_text(text, field, "Int16")
    return _BEDROCK_ERRORS.get(text, 500)


def _bedrock_event(obj: Any) -> Event:
    if not isinstance(obj, dict):
        return {}, [(None, f"expected a JSON object, got {type(obj).__name__}")]
    rec = _Record(obj)
    identity = rec.sub("identity")
    inp = rec.sub("input")
    out = rec.sub("output")
    body = inp.sub("inputBodyJson", decode=True, strict=False)
    output = out.sub("outputBodyJson", decode=True, strict=False)
    meta = rec.sub("requestMetadata")
    operation = rec.opt(_str, "operation", default="InvokeModel")
    ev: dict[str, Any] = {
        "request_id": rec.req(_str, "requestId"),
        "ts": rec.req(_ts_us, "timestamp"),
        "account_id": rec.req(_str, "accountId"),
        "api_key_id": identity.req(_str, "arn"),
        "ip": UNKNOWN,
        "user_agent": UNKNOWN,
        "model": rec.req(_str, "modelId"),
        "endpoint": "converse" if operation.startswith("Converse") else "invoke_model",
        "stream": operation.endswith("Stream"),
        "prompt_tokens": inp.opt(_int, "inputTokenCount", default=0),
        "completion_tokens": out.opt(_int, "outputTokenCount", default=0),
        "status": rec.convert(_bedrock_status, "errorCode", obj.get("errorCode")),
        "latency_ms": output.sub("metrics", strict=False).opt(_float, "latencyMs", default=0.0),
        "finish_reason": _stop_reason(output.data),
        "end_user_id": meta.opt(_str, "end_user_id", "user_id"),
        "conversation_id": meta.opt(_str, "conversation_id", "session_id"),
        "n": 1,
        "logprobs": False,
        "logit_bias_size": 0,
    }
    ev.update(_bedrock_body(body))
    return ev, rec.problems


def from_bedrock(paths: Paths, tally: InputTally | None = None) -> pl.DataFrame:
    """Canonical events from AWS Bedrock model-invocation logs (module docstring)."""
    return _convert_files(paths, _bedrock_event, csv_ok=False, tally=tally)


# --------------------------------------------------------------------------- azure openai

_TICKS_AT_EPOCH = 621_355_968_000_000_000  # .NET ticks (100 ns since 0001-01-01) at 1970-01-01
_AZURE_OPERATIONS = {
    "chatcompletions_create": "chat.completions",
    "completions_create": "completions",
    "embeddings_create": "embeddings",
    "responses_create": "responses",
}


def _ticks_us(value: Any, field: str) -> int:
    ticks = _int(value, field, "Int64")
    if ticks < _TICKS_AT_EPOCH:
        raise _Bad(field, f"{ticks} .NET ticks is before 1970")
    return (ticks - _TICKS_AT_EPOCH) // 10


def _azure_event(obj: Any) -> Event:
    if not isinstance(obj, dict):
        return {}, [(None, f"expected a JSON object, got {type(obj).__name__}")]
    rec = _Record(obj)
    category = rec.req(_str, "category")
    if category is not None and category.lower() != "requestresponse":
        reason = f"is {category!r}: only RequestResponse records describe requests"
        rec.problems.append(("category", reason))
    props = rec.sub("properties", decode=True)
    resource = rec.req(_str, "resourceId")
    operation = rec.req(_str, "operationName")
    ts = props.opt(_ticks_us, "requestTime")
    latency = rec.req(_float, "durationMs")
    if latency is not None and latency < 0:
        rec.problems.append(("durationMs", f"negative duration {latency:g}"))
    ev: dict[str, Any] = {
        "request_id": rec.req(_str, "correlationId"),
        "ts": ts if ts is not None else rec.req(_ts_us, "time"),
        "account_id": props.opt(_str, "objectId") or resource,
        "api_key_id": resource,
        "ip": rec.opt(_str, "callerIpAddress", default=UNKNOWN),
        "user_agent": UNKNOWN,
        "model": props.req(_str, "modelName", "modelDeploymentName"),
        "endpoint": None
        if operation is None
        else _AZURE_OPERATIONS.get(operation.lower(), operation.lower()),
        "stream": props.opt(_str, "streamType", default="").lower() == "streaming",
        # resultSignature is a string in Azure's schema ("200"): its text is the status
        "status": rec.opt(_status_text, "resultSignature", default=200),
        "latency_ms": latency,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "n": 1,
        "logprobs": False,
        "logit_bias_size": 0,
        "tools_count": 0,
    }
    return ev, rec.problems


def _status_text(value: Any, field: str) -> int:
    return int_text(value, field, "Int16") if isinstance(value, str) else _int16(value, field)


def _azure_records(obj: Any) -> list[tuple[str, Any]]:
    """An Event Hubs envelope ``{"records": [...]}`` holds several records; others are one."""
    if isinstance(obj, dict) and isinstance(obj.get("records"), list) and "category" not in obj:
        return [(f"records[{i}].", r) for i, r in enumerate(obj["records"])]
    return [("", obj)]


def from_azure_openai(paths: Paths, tally: InputTally | None = None) -> pl.DataFrame:
    """Canonical events from Azure OpenAI RequestResponse diagnostic logs (module docstring)."""
    return _convert_files(paths, _azure_event, csv_ok=False, split=_azure_records, tally=tally)
