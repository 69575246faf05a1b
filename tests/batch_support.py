"""Random broken NDJSON lines for the batch-validation property tests. Not a test module."""

from __future__ import annotations

import json
import random

import polars as pl

from detector.io.schema import EVENT_SCHEMA

_TS_VARIANTS = (
    "2026-11-02T10:00:00+00:00",
    "2026-11-02T12:00:00+02:00",
    "2026-11-02T10:00:00",  # naive
    "2026-11-02 10:00:00Z",
    "2026-11-02T10:00:00.123456789Z",
    "2026-11-02T23:59:60Z",
    "2026-11-02T24:00:00Z",
    "2026-13-02T10:00:00Z",
    "2026-11-02",
    "yesterday",
    "",
)
_BAD_VALUES: dict[str, tuple[object, ...]] = {
    "str": (5, 2.5, True, None, [], {"a": 1}, "BIGINT", "", "a\u0000b", "two\nlines", "../x",
            "..", "a\\b", "x" * 257, "y" * 1025, "tab\tin", "sep\u2028", "c1\u0085"),
    "int": (5.0, True, "5", 2**15, -(2**15) - 1, 2**31, "BIGINT", "NEGBIGINT", 2**63, None, -1,
            1000, -(2**15)),
    "float": (True, "0.5", float("nan"), float("inf"), "HUGE", "BIGINT", 1e30, 2**70, None, 7,
              -0.5, -3, -0.0),
    "bool": (0, 1, "true", None),
}  # fmt: skip
_LINE_ERRORS = (
    "null",
    "5",
    '"event"',
    "[1, 2]",
    "{oops",
    '{"ts": "2026-11-02T10:00:00Z",}',
    '{"a": 1} {"b": 2}',
    "\t",
    "   ",
    "",
)


def _kind(field: str) -> str:
    dtype = EVENT_SCHEMA[field]
    if dtype == pl.String:
        return "str"
    if dtype == pl.Boolean:
        return "bool"
    if dtype == pl.Float32:
        return "float"
    return "int"


def mutate(rng: random.Random, rec: dict, i: int) -> str:
    """One NDJSON line: the record as is, or broken in one of many ways."""
    rec = dict(rec, request_id=f"r{i}")
    roll = rng.random()
    if roll < 0.45:
        pass
    elif roll < 0.5:
        return rng.choice(_LINE_ERRORS)
    elif roll < 0.57:
        rec["ts"] = rng.choice(_TS_VARIANTS)
    elif roll < 0.62:
        rec.pop(rng.choice(list(EVENT_SCHEMA)), None)
    elif roll < 0.66:
        rec[rng.choice(["colour", "Account_id", "extra"])] = rng.choice([1, None, "x"])
    elif roll < 0.70:
        rec["prompt"] = rng.choice(["\\ud800 lone", "caf\\u00e9", "日本語", "emoji \\ud83d\\ude00"])
        return json.dumps(rec).replace("\\\\u", "\\u")
    elif roll < 0.73:  # a duplicate key: json keeps the last value
        head = json.dumps({"n": rng.choice(["x", 2, True])})[:-1]
        return head + ", " + json.dumps(rec)[1:]
    elif roll < 0.75:
        return "\ufeff" + json.dumps(rec)
    elif roll < 0.77:
        return json.dumps(rec).replace('"account_id"', '"\\u0061ccount_id"')
    elif roll < 0.79:
        return json.dumps(rec, indent=None, separators=(" ,\t", " :  ")) + "\r"
    else:
        field = rng.choice(list(EVENT_SCHEMA))
        value = rng.choice(_BAD_VALUES[_kind(field)] if field != "ts" else (5, None, True))
        rec[field] = value
    text = json.dumps(rec)
    return (
        text.replace('"BIGINT"', str(2**70))
        .replace('"NEGBIGINT"', str(-(2**64) - 3))
        .replace('"HUGE"', "1e400")
    )
