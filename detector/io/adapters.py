"""Adapters: convert real gateway logs into canonical events (:data:`schema.EVENT_SCHEMA`).

Every adapter returns a polars DataFrame with exactly the canonical columns and dtypes, or raises
:class:`schema.EventSchemaError` naming the file, line (or array element / CSV record) and field
of each problem (at most :data:`schema.MAX_REPORTED_PROBLEMS`). Inputs are files, directories or
glob patterns; ``.gz`` files are read transparently, a leading byte order mark is ignored, and
so is an incomplete last line of a JSON-lines file (a log still being written). Numbers and
booleans must be JSON numbers and booleans: ``"max_tokens": "1024"`` is refused (CSV cells are
text and are read as such). ``tally`` (:class:`~detector.io.tally.InputTally`) sets how many bad
records may be skipped. Naive timestamps are taken as UTC; numeric timestamps are unix seconds
(values of 1e11 and above are read as milliseconds). Raw secret
API keys (``sk-...``) are never stored: they are replaced by ``sha256:<16 hex digits>``.
Where a client IP or user agent is not logged, the column holds :data:`UNKNOWN` ("unknown"):
linkage must not treat that value as a shared identifier.

``openai`` -- OpenAI-compatible request+response log, one JSON object per line (JSONL; a JSON
array file is accepted too)::

    {"request_id" | "id": str,                      required
     "timestamp" | "created": ISO-8601 str | unix seconds,    required (request start)
     "account_id" | "organization": str,            required
     "api_key_id" | "api_key": str,                 required
     "ip" | "client_ip": str,                       required
     "user_agent": str,                             default "unknown"
     "endpoint": str,          default "chat.completions"; "/v1/chat/completions" is normalised
     "latency_ms" | "duration_ms": number,          required
     "status" | "status_code": int,                 default 200
     "conversation_id" | "session_id": str,         optional
     "end_user_id": str,       optional; else request.safety_identifier, else request.user
     "model": str,             used when request.model is absent
     "request": {model, messages, temperature, top_p, n, logprobs, top_logprobs, logit_bias,
                 tools, functions, max_tokens | max_completion_tokens | max_output_tokens,
                 stream, prompt (completions), input + instructions (responses, embeddings)},
     "response": {usage: {prompt_tokens | input_tokens, completion_tokens | output_tokens},
                  choices: [{finish_reason}, ...], ...}}

Mapping: ``prompt`` = the text of every user turn joined by "\\n" (string content or the text of
``[{"type": "text", "text": ...}]`` parts; ``prompt`` / ``input`` where there are no messages);
``system_prompt`` = ``instructions`` and the system / developer messages joined by "\\n";
``logit_bias_size`` = len(logit_bias); ``tools_count`` = len(tools) + len(functions);
``max_tokens`` = max_completion_tokens, else max_tokens, else max_output_tokens; ``n`` default
1; ``logprobs`` default false (an integer ``logprobs``, as in the legacy completions API, means
true with that many ``top_logprobs``); ``stream`` default false; ``finish_reason`` = the first
choice's (for the responses API: completed -> stop, incomplete max_output_tokens -> length);
usage missing (e.g. an error) -> 0 tokens.

``litellm`` -- a LiteLLM proxy ``LiteLLM_SpendLogs`` export: JSONL, a JSON array (as returned by
``/spend/logs``) or CSV (header row; JSON columns as JSON strings); or LiteLLM standard logging
payloads (``StandardLoggingPayload``, what its ``generic_api`` callback posts and
``POST /v1/ingest/litellm`` takes), in the same files. Columns used: request_id (id,
litellm_call_id), call_type, api_key, prompt_tokens, completion_tokens, startTime, endTime,
request_duration_ms, model, model_group, user, end_user, metadata, team_id, organization_id,
requester_ip_address, user_agent, messages, response, session_id, status, error_information,
proxy_server_request (the original request body), model_parameters (a payload's sampling
parameters). Mapping:

- account_id: the first non-empty of team_id, metadata.user_api_key_team_id, metadata.team_id,
  organization_id, metadata.user_api_key_org_id, user, metadata.user_api_key_user_id;
- api_key_id: api_key (the hashed key), else metadata.user_api_key_hash, else
  metadata.user_api_key;
- end_user_id: end_user, else metadata.user_api_key_end_user_id, else the request's
  safety_identifier or user;
- ts = startTime; latency_ms = endTime - startTime, else request_duration_ms;
- status: "success" -> 200; "failure" -> error_information.error_code (top level or in
  metadata) when it is an HTTP code, else 500; a numeric status is used as is; none -> 200;
- ip: requester_ip_address, else metadata.requester_ip_address, else "unknown";
- user_agent: user_agent, else the user-agent header in metadata.headers or
  proxy_server_request.headers, else metadata.user_agent, else "unknown";
- model: the requested model (proxy_server_request.model), else model_group, else model;
- sampling parameters from proxy_server_request, else from model_parameters; a payload's own
  stream flag when the parameters have none; message text "redacted-by-litellm" (message
  logging turned off) is no prompt;
- endpoint from call_type: (a)completion -> chat.completions, (a)text_completion -> completions,
  (a)embedding -> embeddings, (a)responses -> responses; any other call_type is kept as is;
- prompt / system_prompt / sampling parameters from proxy_server_request as for ``openai``
  (prompt text from the messages column when the request body holds none);
- conversation_id = session_id; finish_reason from response.choices.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from detector.io.adapter_io import (
    _CALL_TYPES,
    REDACTED,
    UNKNOWN,
    Paths,
    _Bad,
    _bool,
    _convert_files,
    _float,
    _int,
    _int16,
    _json,
    _key_id,
    _present,
    _Record,
    _str,
    _ts_us,
    int_text,
)
from detector.io.cloud import from_azure_openai, from_bedrock
from detector.io.tally import InputTally


def _text(content: Any) -> str | None:
    """Text of a message content: a string, or the text of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        content = [content]
    if isinstance(content, list):
        parts = [p.get("text") if isinstance(p, dict) else p for p in content]
        texts = [p for p in parts if isinstance(p, str)]
        return "\n".join(texts) if texts else None
    return None


def _split_turns(messages: Any, field: str) -> tuple[str | None, str | None]:
    """``(user text, system text)`` of a message list, a prompt string or a list of strings."""
    if messages is None or messages == {}:
        return None, None
    if isinstance(messages, str):
        return (messages if messages != REDACTED else None), None
    if not isinstance(messages, list):
        raise _Bad(field, f"expected a list of messages, got {type(messages).__name__}")
    user: list[str] = []
    system: list[str] = []
    for item in messages:
        if isinstance(item, str):
            user.append(item)
            continue
        if not isinstance(item, dict):
            continue  # token ids: no text
        text = _text(item.get("content"))
        role = item.get("role")
        if text is None or text == REDACTED:
            continue
        if role == "user":
            user.append(text)
        elif role in ("system", "developer"):
            system.append(text)
    return ("\n".join(user) if user else None), ("\n".join(system) if system else None)


def _count(value: Any, field: str, kind: type[dict[Any, Any]] | type[list[Any]]) -> int:
    if value is None:
        return 0
    if not isinstance(value, kind):
        want = "an object" if kind is dict else "a list"
        raise _Bad(field, f"expected {want}, got {value!r:.40}")
    return _int16(len(value), field)


def _body_fields(body: _Record, messages: Any = None) -> dict[str, Any]:
    """Prompt text and sampling parameters of an OpenAI-style request body."""
    out: dict[str, Any] = {}
    field, source = body.pick("messages", "prompt", "input")
    if source is None and messages is not None:
        field, source = "messages", messages
    prompt, system = body.convert(_split_turns, field, source) or (None, None)
    instructions = body.opt(_str, "instructions")
    if instructions is not None:
        system = instructions if system is None else f"{instructions}\n{system}"
    out["prompt"], out["system_prompt"] = prompt, system
    out["max_tokens"] = body.opt(_int, "max_completion_tokens", "max_tokens", "max_output_tokens")
    out["temperature"] = body.opt(_float, "temperature")
    out["top_p"] = body.opt(_float, "top_p")
    out["n"] = body.opt(_int16, "n", default=1)
    out["top_logprobs"] = body.opt(_int16, "top_logprobs")
    field, logprobs = body.pick("logprobs")
    if isinstance(logprobs, int) and not isinstance(logprobs, bool):  # legacy completions
        out["logprobs"] = logprobs > 0
        if out["top_logprobs"] is None and logprobs > 0:
            out["top_logprobs"] = body.convert(_int16, field, logprobs)
    else:
        out["logprobs"] = body.opt(_bool, "logprobs", default=False)

    def count(key: str, kind: type[dict[Any, Any]] | type[list[Any]]) -> int:
        value = body.convert(lambda v, f: _count(v, f, kind), body.prefix + key, body.data.get(key))
        return value or 0

    out["logit_bias_size"] = count("logit_bias", dict)
    tools = [count("tools", list), count("functions", list)]
    out["tools_count"] = body.convert(_int16, body.prefix + "tools", sum(tools))
    out["stream"] = body.opt(_bool, "stream", default=False)
    return out


def _finish_reason(response: dict[str, Any]) -> str | None:
    choices = response.get("choices")
    if isinstance(choices, list):
        for choice in choices:
            if isinstance(choice, dict) and isinstance(choice.get("finish_reason"), str):
                return str(choice["finish_reason"])
    if response.get("status") == "completed":  # responses API
        return "stop"
    details = response.get("incomplete_details")
    if isinstance(details, dict) and details.get("reason") == "max_output_tokens":
        return "length"
    return None


def _endpoint(value: Any, field: str) -> str:
    text = _str(value, field).strip().strip("/").lower()
    text = text.removeprefix("v1/")
    return text.replace("/", ".") or "chat.completions"


# --------------------------------------------------------------------------- openai


def _openai_event(obj: Any) -> tuple[dict[str, Any], list[tuple[str | None, str]]]:
    if not isinstance(obj, dict):
        return {}, [(None, f"expected a JSON object, got {type(obj).__name__}")]
    rec = _Record(obj)
    body = rec.sub("request")
    response = rec.sub("response")
    usage = response.sub("usage")
    ev: dict[str, Any] = {
        "request_id": rec.req(_str, "request_id", "id"),
        "ts": rec.req(_ts_us, "timestamp", "created"),
        "account_id": rec.req(_str, "account_id", "organization"),
        "api_key_id": rec.req(_str, "api_key_id", "api_key"),
        "ip": rec.req(_str, "ip", "client_ip"),
        "user_agent": rec.opt(_str, "user_agent", default=UNKNOWN),
        "endpoint": rec.opt(_endpoint, "endpoint", default="chat.completions"),
        "latency_ms": rec.req(_float, "latency_ms", "duration_ms"),
        "status": rec.opt(_int16, "status", "status_code", default=200),
        "conversation_id": rec.opt(_str, "conversation_id", "session_id"),
        "end_user_id": rec.opt(_str, "end_user_id") or body.opt(_str, "safety_identifier", "user"),
        "prompt_tokens": usage.opt(_int, "prompt_tokens", "input_tokens", default=0),
        "completion_tokens": usage.opt(_int, "completion_tokens", "output_tokens", default=0),
        "finish_reason": _finish_reason(response.data),
    }
    if _present(body.data.get("model")) or not _present(obj.get("model")):
        ev["model"] = body.req(_str, "model")  # names request.model when both are missing
    else:
        ev["model"] = rec.req(_str, "model")
    if isinstance(ev["api_key_id"], str):
        ev["api_key_id"] = _key_id(ev["api_key_id"])
    ev.update(_body_fields(body))
    return ev, rec.problems


def from_openai(paths: Paths, tally: InputTally | None = None) -> pl.DataFrame:
    """Canonical events from OpenAI-compatible request+response JSONL logs (module docstring)."""
    return _convert_files(paths, _openai_event, csv_ok=False, tally=tally)


# --------------------------------------------------------------------------- litellm


def _user_agent(meta: dict[str, Any], psr: dict[str, Any]) -> str | None:
    for holder in (meta, psr, meta.get("proxy_server_request")):
        if isinstance(holder, str):
            try:
                holder = json.loads(holder)
            except json.JSONDecodeError:
                continue
        headers = holder.get("headers") if isinstance(holder, dict) else None
        if isinstance(headers, dict):
            for key, value in headers.items():
                if key.lower() in ("user-agent", "user_agent") and isinstance(value, str):
                    return value
    agent = meta.get("user_agent")
    return agent if isinstance(agent, str) and agent else None


def _litellm_status(status: Any, obj: dict[str, Any], meta: dict[str, Any], field: str) -> int:
    if not _present(status):
        status = meta.get("status")
    if not _present(status):
        return 200
    text = str(status).strip().lower()
    if text == "success":
        return 200
    if text == "failure":
        info = obj.get("error_information") or meta.get("error_information")
        code = info.get("error_code") if isinstance(info, dict) else None
        try:
            number = int(str(code))
        except ValueError:
            return 500
        return number if 100 <= number <= 599 else 500
    if isinstance(status, str):  # LiteLLM's status is a string column: "200" is its text
        return int_text(status, field, "Int16")
    return _int16(status, field)


def _litellm_event(obj: Any) -> tuple[dict[str, Any], list[tuple[str | None, str]]]:
    if not isinstance(obj, dict):
        return {}, [(None, f"expected a JSON object, got {type(obj).__name__}")]
    rec = _Record(obj)
    meta = rec.sub("metadata", decode=True)
    psr = rec.sub("proxy_server_request", decode=True)
    body = psr.sub("body") if isinstance(psr.data.get("body"), dict) else psr
    if not psr.data and "model_parameters" in obj:  # a StandardLoggingPayload
        body = rec.sub("model_parameters", decode=True)
    response = rec.sub("response", decode=True, strict=False)
    messages = obj.get("messages")  # JSON text, or a plain prompt string (text completions)
    if isinstance(messages, str) and messages.lstrip().startswith(("[", "{")):
        messages = rec.convert(_json, "messages", messages)
    messages = messages if isinstance(messages, list | str) else None
    m = meta.data
    ev: dict[str, Any] = {
        "request_id": rec.req(_str, "request_id", "id", "litellm_call_id"),
        "ts": rec.req(_ts_us, "startTime"),
        "prompt_tokens": rec.opt(_int, "prompt_tokens", default=0),
        "completion_tokens": rec.opt(_int, "completion_tokens", default=0),
        "conversation_id": rec.opt(_str, "session_id"),
        "finish_reason": _finish_reason(response.data),
        "status": rec.convert(
            lambda v, f: _litellm_status(v, obj, m, f), "status", obj.get("status")
        ),
        "user_agent": rec.opt(_str, "user_agent") or _user_agent(m, psr.data) or UNKNOWN,
        "end_user_id": rec.opt(_str, "end_user")
        or meta.opt(_str, "user_api_key_end_user_id")
        or body.opt(_str, "safety_identifier", "user"),
    }
    end = rec.opt(_ts_us, "endTime")
    if ev["ts"] is not None and end is not None:
        ev["latency_ms"] = (end - ev["ts"]) / 1000
        if ev["latency_ms"] < 0:
            rec.problems.append(("endTime", "is before startTime"))
    else:
        ev["latency_ms"] = rec.opt(_float, "request_duration_ms")
        if ev["latency_ms"] is None and ev["ts"] is not None:
            rec.problems.append(("endTime", "missing (needed for latency_ms)"))
    accounts = [
        ("team_id", obj.get("team_id")),
        ("metadata.user_api_key_team_id", m.get("user_api_key_team_id")),
        ("metadata.team_id", m.get("team_id")),
        ("organization_id", obj.get("organization_id")),
        ("metadata.user_api_key_org_id", m.get("user_api_key_org_id")),
        ("user", obj.get("user")),
        ("metadata.user_api_key_user_id", m.get("user_api_key_user_id")),
    ]
    found = next(((f, v) for f, v in accounts if _present(v)), None)
    if found is None:
        reason = "no account: " + ", ".join(f for f, _ in accounts) + " are all empty"
        rec.problems.append(("team_id", reason))
    else:
        ev["account_id"] = rec.convert(_str, *found)
    key_field, key = rec.pick("api_key")
    if key is None:
        key_field, key = meta.pick("user_api_key_hash", "user_api_key")
    if key is None:
        reason = "missing required field (or metadata.user_api_key_hash, metadata.user_api_key)"
        rec.problems.append(("api_key", reason))
    else:
        ev["api_key_id"] = rec.convert(lambda v, f: _key_id(_str(v, f)), key_field, key)
    ev["ip"] = rec.opt(_str, "requester_ip_address") or meta.opt(
        _str, "requester_ip_address", default=UNKNOWN
    )
    if _present(body.data.get("model")):
        ev["model"] = body.req(_str, "model")
    else:
        ev["model"] = rec.req(_str, "model_group", "model")
    call_type = rec.req(_str, "call_type")
    if call_type is not None:
        sync = call_type[1:] if call_type.startswith("a") else call_type  # acompletion -> ...
        ev["endpoint"] = _CALL_TYPES.get(call_type) or _CALL_TYPES.get(sync) or call_type
    ev.update(_body_fields(body, messages))
    if "stream" not in body.data and isinstance(obj.get("stream"), bool):
        ev["stream"] = obj["stream"]  # a StandardLoggingPayload's own flag
    return ev, rec.problems


def from_litellm(paths: Paths, tally: InputTally | None = None) -> pl.DataFrame:
    """Canonical events from a LiteLLM ``LiteLLM_SpendLogs`` export (JSONL, JSON array or CSV)."""
    return _convert_files(paths, _litellm_event, csv_ok=True, tally=tally)


# --------------------------------------------------------------------------- files and frames


ADAPTERS: dict[str, Callable[[Paths, InputTally | None], pl.DataFrame]] = {
    "openai": from_openai,
    "litellm": from_litellm,
    "bedrock": from_bedrock,
    "azure-openai": from_azure_openai,
}


def convert(
    source: str,
    inputs: Sequence[str | Path],
    out: str | Path,
    tally: InputTally | None = None,
) -> int:
    """Convert ``inputs`` of log format ``source`` to one zstd Parquet file; returns the count.

    ``tally`` counts the records read and the bad ones and holds the budget of bad records to
    skip (:class:`detector.io.tally.InputTally`; default: none). Raises ValueError for an
    unknown source, :class:`EventSchemaError` for invalid input past that budget.
    """
    if source not in ADAPTERS:
        raise ValueError(f"unknown log source {source!r}; valid sources: {', '.join(ADAPTERS)}")
    df = ADAPTERS[source](inputs, tally)
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    df.write_parquet(tmp, compression="zstd")
    tmp.replace(target)
    return df.height
