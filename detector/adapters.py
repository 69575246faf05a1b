"""Adapters: convert real gateway logs into canonical events (:data:`schema.EVENT_SCHEMA`).

Every adapter returns a polars DataFrame with exactly the canonical columns and dtypes, or raises
:class:`schema.EventSchemaError` naming the file, line (or array element / CSV record) and field
of each problem (at most :data:`schema.MAX_REPORTED_PROBLEMS`). Inputs are files, directories or
glob patterns; ``.gz`` files are read transparently. Naive timestamps are taken as UTC; numeric
timestamps are unix seconds (values of 1e11 and above are read as milliseconds). Raw secret
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
``/spend/logs``) or CSV (header row; JSON columns as JSON strings). Columns used: request_id,
call_type, api_key, prompt_tokens, completion_tokens, startTime, endTime, request_duration_ms,
model, model_group, user, metadata, team_id, organization_id, requester_ip_address, messages,
response, session_id, status, proxy_server_request (the original request body). Mapping:

- account_id: the first non-empty of team_id, metadata.user_api_key_team_id, organization_id,
  metadata.user_api_key_org_id, user, metadata.user_api_key_user_id;
- api_key_id: api_key (the hashed key), else metadata.user_api_key;
- ts = startTime; latency_ms = endTime - startTime, else request_duration_ms;
- status: "success" -> 200; "failure" -> metadata.error_information.error_code when it is an HTTP
  code, else 500; a numeric status is used as is; no status at all -> 200;
- ip: requester_ip_address, else metadata.requester_ip_address, else "unknown";
- user_agent: the user-agent header in metadata.headers or proxy_server_request.headers, else
  metadata.user_agent, else "unknown";
- model: the requested model (proxy_server_request.model), else model_group, else model;
- endpoint from call_type: (a)completion -> chat.completions, (a)text_completion -> completions,
  (a)embedding -> embeddings, (a)responses -> responses; any other call_type is kept as is;
- prompt / system_prompt / sampling parameters from proxy_server_request as for ``openai``
  (prompt text from the messages column when the request body holds none);
- conversation_id = session_id; finish_reason from response.choices.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import gzip
import hashlib
import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import polars as pl

from detector.schema import (
    EVENT_COLUMNS,
    EVENT_SCHEMA,
    MAX_REPORTED_PROBLEMS,
    EventSchemaError,
    Problem,
    conform,
    iter_ndjson_records,
)

Paths = str | Path | Sequence[str | Path]
UNKNOWN = "unknown"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_INT_BITS = {"Int16": 15, "Int32": 31}
_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv")
_CALL_TYPES = {
    "completion": "chat.completions",
    "text_completion": "completions",
    "embedding": "embeddings",
    "responses": "responses",
}
_ParsedRecord = tuple[int, str, Any, str | None]  # (line or element, kind, record, error)


class _Bad(Exception):
    """One problem with one field of one input record."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


# --------------------------------------------------------------------------- value coercion


def _str(value: Any, field: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # numeric ids
    raise _Bad(field, f"expected a string, got {type(value).__name__}")


def _int(value: Any, field: str, dtype: str = "Int32") -> int:
    out: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        out = value
    elif isinstance(value, float) and value.is_integer():
        out = int(value)
    elif isinstance(value, str):
        with contextlib.suppress(ValueError):
            out = int(value.strip())
    if out is None:
        raise _Bad(field, f"expected an integer, got {value!r}")
    bits = _INT_BITS[dtype]
    if not -(2**bits) <= out < 2**bits:
        raise _Bad(field, f"integer {out} out of range for {dtype}")
    return out


def _int16(value: Any, field: str) -> int:
    return _int(value, field, "Int16")


def _float(value: Any, field: str) -> float:
    out: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        out = float(value)
    elif isinstance(value, str):
        with contextlib.suppress(ValueError):
            out = float(value.strip())
    if out is None or not math.isfinite(out):
        raise _Bad(field, f"expected a finite number, got {value!r}")
    return out


def _bool(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise _Bad(field, f"expected true/false, got {value!r}")


def _ts_us(value: Any, field: str) -> int:
    """Epoch microseconds (UTC) of an ISO-8601 string or a unix timestamp."""
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            try:
                parsed = datetime.fromisoformat(text)
            except ValueError:
                raise _Bad(field, f"cannot parse {value!r} as a timestamp") from None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            return (parsed - _EPOCH) // _US
    if number is None or not math.isfinite(number):
        raise _Bad(field, f"expected an ISO-8601 timestamp or unix seconds, got {value!r}")
    seconds = number / 1000 if abs(number) >= 1e11 else number
    return round(seconds * 1_000_000)


def _json(value: Any, field: str) -> Any:
    """A JSON column: objects / lists pass through, JSON text is decoded, "" is None."""
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise _Bad(field, f"malformed JSON: {exc.msg} at column {exc.colno}") from None
    return value


def _key_id(value: str) -> str:
    """Never keep a raw secret key: ``sk-...`` keys become a short sha256 digest."""
    raw = value.startswith("sk-") and len(value) >= 20 and "*" not in value and "..." not in value
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:16] if raw else value


def _present(value: Any) -> bool:
    return value is not None and value != ""


# --------------------------------------------------------------------------- record reading


class _Record:
    """Reads fields of one input record, collecting every ``(field, reason)`` problem."""

    def __init__(self, data: dict[str, Any], prefix: str = "") -> None:
        self.data = data
        self.prefix = prefix
        self.problems: list[tuple[str | None, str]] = []

    def sub(self, key: str, *, decode: bool = False, strict: bool = True) -> _Record:
        """The nested object under ``key`` ({} when absent), sharing this record's problems.

        ``decode`` accepts JSON text; ``strict=False`` reads any non-object as {}.
        """
        value = self.data.get(key)
        try:
            value = _json(value, self.prefix + key) if decode else value
        except _Bad as exc:
            self.problems.append((exc.field, exc.reason))
            value = None
        if strict and value is not None and not isinstance(value, dict):
            self.problems.append((self.prefix + key, f"expected an object, got {value!r:.40}"))
        child = _Record(value if isinstance(value, dict) else {}, f"{self.prefix}{key}.")
        child.problems = self.problems
        return child

    def pick(self, *keys: str) -> tuple[str, Any]:
        """The first of ``keys`` with a non-empty value, as ``(field name, value)``."""
        for key in keys:
            if _present(self.data.get(key)):
                return self.prefix + key, self.data[key]
        return self.prefix + keys[0], None

    def convert(self, fn: Callable[[Any, str], Any], field: str, value: Any) -> Any:
        try:
            return fn(value, field)
        except _Bad as exc:
            self.problems.append((exc.field, exc.reason))
            return None

    def req(self, fn: Callable[[Any, str], Any], *keys: str) -> Any:
        field, value = self.pick(*keys)
        if value is None:
            also = " or ".join(repr(k) for k in keys[1:])
            reason = "missing required field" + (f" (or {also})" if also else "")
            self.problems.append((field, reason))
            return None
        return self.convert(fn, field, value)

    def opt(self, fn: Callable[[Any, str], Any], *keys: str, default: Any = None) -> Any:
        field, value = self.pick(*keys)
        out = None if value is None else self.convert(fn, field, value)
        return default if out is None else out


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
        return messages, None
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
        if text is None:
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


def from_openai(paths: Paths) -> pl.DataFrame:
    """Canonical events from OpenAI-compatible request+response JSONL logs (module docstring)."""
    return _convert_files(paths, _openai_event, csv_ok=False)


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


def _litellm_status(status: Any, meta: dict[str, Any], field: str) -> int:
    if not _present(status):
        status = meta.get("status")
    if not _present(status):
        return 200
    text = str(status).strip().lower()
    if text == "success":
        return 200
    if text == "failure":
        info = meta.get("error_information")
        code = info.get("error_code") if isinstance(info, dict) else None
        try:
            number = int(str(code))
        except ValueError:
            return 500
        return number if 100 <= number <= 599 else 500
    return _int16(status, field)


def _litellm_event(obj: Any) -> tuple[dict[str, Any], list[tuple[str | None, str]]]:
    if not isinstance(obj, dict):
        return {}, [(None, f"expected a JSON object, got {type(obj).__name__}")]
    rec = _Record(obj)
    meta = rec.sub("metadata", decode=True)
    psr = rec.sub("proxy_server_request", decode=True)
    body = psr.sub("body") if isinstance(psr.data.get("body"), dict) else psr
    response = rec.sub("response", decode=True, strict=False)
    messages = obj.get("messages")  # JSON text, or a plain prompt string (text completions)
    if isinstance(messages, str) and messages.lstrip().startswith(("[", "{")):
        messages = rec.convert(_json, "messages", messages)
    messages = messages if isinstance(messages, list | str) else None
    m = meta.data
    ev: dict[str, Any] = {
        "request_id": rec.req(_str, "request_id"),
        "ts": rec.req(_ts_us, "startTime"),
        "prompt_tokens": rec.opt(_int, "prompt_tokens", default=0),
        "completion_tokens": rec.opt(_int, "completion_tokens", default=0),
        "conversation_id": rec.opt(_str, "session_id"),
        "finish_reason": _finish_reason(response.data),
        "status": rec.convert(lambda v, f: _litellm_status(v, m, f), "status", obj.get("status")),
        "user_agent": _user_agent(m, psr.data) or UNKNOWN,
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
        key_field, key = meta.pick("user_api_key")
    if key is None:
        rec.problems.append(("api_key", "missing required field (or metadata.user_api_key)"))
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
    return ev, rec.problems


def from_litellm(paths: Paths) -> pl.DataFrame:
    """Canonical events from a LiteLLM ``LiteLLM_SpendLogs`` export (JSONL, JSON array or CSV)."""
    return _convert_files(paths, _litellm_event, csv_ok=True)


# --------------------------------------------------------------------------- files and frames


def _expand(paths: Paths) -> list[Path]:
    items = [paths] if isinstance(paths, str | Path) else list(paths)
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and _is_log(f))
            if not found:
                raise FileNotFoundError(f"{p}: directory holds no .jsonl, .json or .csv files")
            out.extend(found)
        elif p.exists():
            out.append(p)
        else:
            matches = sorted(Path(m) for m in glob.glob(str(item)))
            if not matches:
                raise FileNotFoundError(f"{item}: no such file, directory or glob match")
            out.extend(matches)
    return out


def _is_log(path: Path) -> bool:
    return path.name.lower().removesuffix(".gz").endswith(_SUFFIXES)


def _open_text(path: Path, encoding: str = "utf-8") -> IO[str]:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding=encoding, newline="")
    return path.open("r", encoding=encoding, newline="")


def _iter_records(path: Path, csv_ok: bool) -> Iterator[_ParsedRecord]:
    """Yield ``(line or element, kind, record, error)`` for each record of one log file."""
    if path.name.lower().removesuffix(".gz").endswith(".csv"):
        if not csv_ok:
            yield 0, "line", None, "CSV is not supported for this source (expected JSONL)"
        else:
            yield from _iter_csv(path)
        return
    with _open_text(path) as fh:
        head = fh.read(4096).lstrip()
    if head.startswith("["):
        with _open_text(path) as fh:
            try:
                items = json.load(fh)
            except json.JSONDecodeError as exc:
                yield exc.lineno, "line", None, f"malformed JSON: {exc.msg} at column {exc.colno}"
                return
        for index, item in enumerate(items, start=1):
            yield index, "row", item, None
        return
    for lineno, obj, err in iter_ndjson_records(path):
        yield lineno, "line", obj, err


def _iter_csv(path: Path) -> Iterator[_ParsedRecord]:
    limit = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)  # messages / response cells can be large
    try:
        with _open_text(path, encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                return
            while True:
                start = reader.line_num + 1
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    yield start, "line", None, f"malformed CSV: {exc}"
                    return
                if not row:
                    continue
                if len(row) != len(header):
                    yield start, "line", None, f"{len(row)} cells, header has {len(header)}"
                    continue
                cells = {k: (v if v != "" else None) for k, v in zip(header, row, strict=True)}
                yield start, "line", cells, None
    finally:
        csv.field_size_limit(limit)


_EventFn = Callable[[Any], tuple[dict[str, Any], list[tuple[str | None, str]]]]


def _convert_files(paths: Paths, to_event: _EventFn, *, csv_ok: bool) -> pl.DataFrame:
    columns: dict[str, list[Any]] = {c: [] for c in EVENT_COLUMNS}
    problems: list[Problem] = []
    for path in _expand(paths):
        try:
            for line, kind, obj, err in _iter_records(path, csv_ok):
                where = line or None
                if err is not None:
                    problems.append(Problem(str(path), where, None, err, kind))
                else:
                    event, bad = to_event(obj)
                    problems.extend(Problem(str(path), where, f, r, kind) for f, r in bad)
                    if not problems:
                        for c in EVENT_COLUMNS:
                            columns[c].append(event.get(c))
                if len(problems) >= MAX_REPORTED_PROBLEMS:
                    raise EventSchemaError(problems[:MAX_REPORTED_PROBLEMS], truncated=True)
        except (UnicodeDecodeError, OSError, EOFError) as exc:
            problems.append(Problem(str(path), None, None, f"cannot read: {exc}"))
    if problems:
        raise EventSchemaError(problems)
    return _frame(columns)


def _frame(columns: dict[str, list[Any]]) -> pl.DataFrame:
    raw = {**EVENT_SCHEMA, "ts": pl.Int64()}
    df = pl.DataFrame(columns, schema=raw)
    df = df.with_columns(pl.col("ts").cast(pl.Datetime("us")).dt.replace_time_zone("UTC"))
    return conform(df).collect()


ADAPTERS: dict[str, Callable[[Paths], pl.DataFrame]] = {
    "openai": from_openai,
    "litellm": from_litellm,
}


def convert(source: str, inputs: Sequence[str | Path], out: str | Path) -> int:
    """Convert ``inputs`` of log format ``source`` to one zstd Parquet file; returns the count.

    Raises ValueError for an unknown source, :class:`EventSchemaError` for invalid input.
    """
    if source not in ADAPTERS:
        raise ValueError(f"unknown log source {source!r}; valid sources: {', '.join(ADAPTERS)}")
    df = ADAPTERS[source](inputs)
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    df.write_parquet(tmp, compression="zstd")
    tmp.replace(target)
    return df.height
