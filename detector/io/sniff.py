"""Recognise a raw gateway log where canonical events are expected, and say how to convert it.

``distillguard audit raw-openai.jsonl`` would otherwise answer with a "missing required field"
for each of the canonical fields on each line. :func:`gateway_hint` reads the first record of a
file and, when it has the shape of a log one of the adapters (:mod:`detector.io.adapters`)
converts, returns one line naming the ``distillguard convert --from`` to use.

>>> sniff_record({"schemaType": "ModelInvocationLog", "modelId": "m", "accountId": "1"})
('bedrock', 'an AWS Bedrock model-invocation log')
>>> sniff_record({"ts": "2025-01-01T00:00:00Z", "account_id": "a", "request_id": "r"}) is None
True
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path
from typing import Any

_HEAD_BYTES = 1 << 20  # a first record longer than this is not sniffed


def sniff_record(obj: Any) -> tuple[str, str] | None:
    """``(adapter, description)`` of a record in a known gateway format; None for canonical
    events or anything unknown."""
    if not isinstance(obj, dict):
        return None
    keys = set(obj)
    if "ts" in keys and "account_id" in keys:
        return None  # canonical (whatever else is wrong with it)
    if obj.get("schemaType") == "ModelInvocationLog" or {"modelId", "accountId"} <= keys:
        return "bedrock", "an AWS Bedrock model-invocation log"
    records = obj.get("records")
    if (isinstance(records, list) and records and isinstance(records[0], dict)) or (
        {"operationName", "resourceId"} <= keys or {"category", "correlationId"} <= keys
    ):
        return "azure-openai", "an Azure OpenAI diagnostic (RequestResponse) log"
    if "model_parameters" in keys or ("response_cost" in keys and "call_type" in keys):
        return "litellm", "a LiteLLM standard logging payload"
    if keys & {"call_type", "startTime", "litellm_call_id", "spend"}:
        return "litellm", "a LiteLLM SpendLogs export"
    if isinstance(obj.get("request"), dict) or isinstance(obj.get("response"), dict):
        return "openai", "an OpenAI-compatible request log"
    return None


def _head_text(path: Path) -> str:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as fh:
        raw = fh.read(_HEAD_BYTES)
    return raw.decode("utf-8-sig", errors="replace")


def first_record(path: Path) -> Any:
    """The first record of a JSON-lines, JSON-array or CSV file (None when unreadable)."""
    try:
        text = _head_text(path)
    except (OSError, EOFError):
        return None
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".csv"):
        rows = csv.DictReader(io.StringIO(text))
        return next(iter(rows), None)
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            items = json.loads(stripped)
        except json.JSONDecodeError:
            decoder = json.JSONDecoder()
            try:  # the array is longer than the head: decode its first element alone
                items = [decoder.raw_decode(stripped[1:].lstrip())[0]]
            except json.JSONDecodeError:
                return None
        return items[0] if isinstance(items, list) and items else None
    for line in stripped.splitlines():
        if line.strip():
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return None
    return None


def gateway_hint(path: Path) -> str | None:
    """One line for a file that holds a raw gateway log rather than canonical events."""
    found = sniff_record(first_record(path))
    if found is None:
        return None
    adapter, what = found
    return (
        f"this is {what}, not canonical events: convert it first with "
        f"`distillguard convert --from {adapter} {path} --out events.parquet`, "
        "then audit events.parquet"
    )
