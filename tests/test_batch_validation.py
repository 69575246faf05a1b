"""The bulk NDJSON path of ingest validation (pyarrow decode + vectorised checks) gives exactly
what the per-line path gives, or steps aside: bodies with ONE odd line among valid ones, where the
bulk path must notice the line (or accept it with the very same values)."""

from __future__ import annotations

import json
import random
from typing import Any

import polars as pl
import pytest

from detector.io import batch_validation as bv
from detector.io.batch_validation import TooManyEvents, validate_ndjson, validate_ndjson_per_line
from detector.io.schema import EVENT_SCHEMA
from synthetic_logs.generate import Generated
from tests.batch_support import mutate


@pytest.fixture()
def base(demo_small: Generated) -> list[dict[str, Any]]:
    out = demo_small.events.head(40).with_columns(
        pl.col("ts").dt.to_string("%Y-%m-%dT%H:%M:%S%.6fZ")
    )
    return [json.loads(line) for line in out.write_ndjson().splitlines()]


def _same(body: bytes) -> bv.ValidatedBatch:
    fast = validate_ndjson(body)
    slow = validate_ndjson_per_line(body)
    assert fast.problems == slow.problems
    assert fast.rows == slow.rows
    assert fast.frame.schema == slow.frame.schema == EVENT_SCHEMA
    assert fast.frame.equals(slow.frame)
    return fast


def _bulk_takes(body: bytes) -> bool:
    n = bv._object_lines(body)
    return n is not None and bv._bulk(body, n) is not None


def _body(base: list[dict[str, Any]], odd: str, at: int = 3) -> bytes:
    lines = [json.dumps(dict(r, request_id=f"r{i}")) for i, r in enumerate(base[:8])]
    lines[at] = odd
    return "\n".join(lines).encode("utf-8", "surrogatepass") + b"\n"


def test_a_valid_body_takes_the_bulk_path(base: list[dict[str, Any]]) -> None:
    body = "\n".join(json.dumps(r, separators=(",", ":")) for r in base).encode()
    assert _bulk_takes(body) and _bulk_takes(body + b"\n")
    got = _same(body + b"\n")
    assert got.rows == list(range(1, len(base) + 1)) and not got.problems
    # blank lines and whitespace: the stripped lines still go the bulk way, numbered as sent
    spaced = b"\n\n" + body.replace(b"}\n{", b"}\r\n  \n\t{", 5) + b" \n"
    got = _same(spaced)
    assert got.rows[:2] == [3, 5] and got.frame.height == len(base)


def test_one_random_odd_line_among_valid_ones(base: list[dict[str, Any]]) -> None:
    bulk = 0
    for seed in range(300):
        rng = random.Random(seed)
        odd = mutate(rng, base[seed % len(base)], 99)
        _same(_body(base, odd, at=seed % 8))
        bulk += _bulk_takes(_body(base, odd, at=seed % 8))
    assert 50 < bulk < 300  # both ways exercised


def _with(rec: dict[str, Any], **changes: Any) -> str:
    return json.dumps(dict(rec, request_id="odd", **changes))


ODD_VALUES: list[dict[str, Any]] = [
    {"temperature": 7},  # an integer in a float column
    {"temperature": -0.0},
    {"temperature": 1e-45},  # rounds to a Float32 subnormal
    {"temperature": 0.1 + 0.2},
    {"temperature": 3.4028235677973366e38},  # rounds past Float32's max
    {"temperature": 2**53},
    {"temperature": 2**60 + 1},  # double rounding would differ
    {"latency_ms": 1e300},
    {"top_p": None},
    {"max_tokens": None},
    {"n": -0},
    {"status": 2**15 - 1},
    {"status": -(2**15)},
    {"prompt_tokens": 2**31 - 1},
    {"prompt": 'caf\u00e9 \u65e5\u672c \U0001f600 \x00 \\ / " \t \n'},
    {"ts": "2026-11-02T10:00:00Z"},
    {"ts": "2026-11-02T10:00:00.5Z"},
    {"ts": "2026-11-02T10:00:00.123456+05:30"},
    {"ts": "2026-11-02T10:00:00.123456-00:00"},
    {"ts": "2026-11-02T10:00:00.123456+23:59"},
    {"ts": "2024-02-29T10:00:00.123456Z"},
    {"ts": "2026-02-29T10:00:00.123456Z"},
    {"ts": "2026-04-31T10:00:00.123456Z"},
    {"ts": "2026-11-02T10:00:60.123456Z"},
    {"ts": "2026-11-02T24:00:00.123456Z"},
    {"ts": "0000-11-02T10:00:00.123456Z"},
    {"ts": "2026-11-02T10:00:00.1234567Z"},
    {"ts": "2026-11-02t10:00:00.123456z"},
    {"ts": "2026-11-02 10:00:00.123456Z"},
    {"ts": "2026-11-02T10:00:00.123456"},
    # field rules beyond the dtypes: bounds, identifiers, short strings
    {"status": -1},
    {"status": 999},
    {"status": 1000},
    {"n": -1},
    {"prompt_tokens": -5},
    {"latency_ms": -0.001},
    {"latency_ms": -0.0},
    {"latency_ms": 0},
    {"account_id": ""},
    {"account_id": "a\x00b"},
    {"account_id": "two\nlines"},
    {"account_id": "../../etc/passwd"},
    {"account_id": ".."},
    {"account_id": "."},
    {"account_id": "..."},
    {"account_id": "x" * 256},
    {"account_id": "x" * 257},
    {"account_id": "\U0001f600" * 256},
    {"api_key_id": "a\\b"},
    {"conversation_id": "c\u2028d"},
    {"conversation_id": ""},
    {"user_agent": "u" * 1025},
    {"user_agent": "Mozilla/5.0 (X11; Linux x86_64)"},
    {"model": "m\x7f"},
    {"ip": "1.2.3.4\r"},
    {"endpoint": "/v1/chat/completions"},
    {"account_id": "caf\u00e9"},  # non-ASCII: the bulk path's exact check
    {"account_id": "\u00c2\u0080"},  # the characters whose UTF-8 looks like a C1 control's
    {"api_key_id": "\u00e2\u0080\u00a8"},
    {"conversation_id": "x\u0085y"},
    {"user_agent": "Mozilla/5.0 (\u65e5\u672c)"},
    {"model": "m\u2029"},
]

ODD_LINES: list[str] = [
    "null",
    "{}",
    "[{}]",
    '"{}"',
    "{} {}",
    "{}{}",
    "\ufeff{}",
    '{"ts": NaN}',
]


@pytest.mark.parametrize("change", ODD_VALUES, ids=lambda c: repr(c)[:40])
def test_odd_values(base: list[dict[str, Any]], change: dict[str, Any]) -> None:
    _same(_body(base, _with(base[0], **change)))


@pytest.mark.parametrize("at", [0, 3, 7])
def test_odd_lines(base: list[dict[str, Any]], at: int) -> None:
    rec = dict(base[0], request_id="odd")
    text = json.dumps(rec)
    half = len(text) // 2
    cut = text.index(", ", half) + 1
    odd = [
        *ODD_LINES,
        text + " " + text,  # two valid events on one line
        text + text,
        text[:cut] + "\n" + text[cut:],  # one event over two lines
        text.replace("}", "} ", 1) + "\n{}",
        text.replace('"temperature"', '"temperature": 1, "temperature"'),  # json keeps the last
        text.replace('"temperature"', '"temperature": "x", "temperature"'),
        text.replace('"account_id"', '"\\u0061ccount_id"'),
        text.replace('"account_id"', '"account_id": 5, "\\u0061ccount_id"'),
        text.replace('"prompt": ', '"prompt": "\\ud800", "x": ', 1),
        text.replace('"temperature": ', '"temperature": NaN, "t": ', 1),
        text.replace('"temperature": ', '"temperature": Infinity, "t": ', 1),
        text.replace('"temperature": ', '"temperature": -Infinity, "t": ', 1),
        text[:-1] + ', "extra": 1}',
        text[:-1] + ",}",
        text + " // note",
        text + "\r",
    ]
    for line in odd:
        _same(_body(base, line, at=at))
    # bytes no str can carry: invalid UTF-8, and a UTF-8-encoded lone surrogate
    good = _body(base, text, at=at)
    for bad in (b"\xff", b"\xed\xa0\x80", b"\xc3"):
        _same(good.replace(b"Improve", bad, 1).replace(b'"ts": "', b'"ts": "' + bad, 1))
        _same(good.replace(b"odd", b"odd" + bad, 1))


def test_too_many_events_on_the_bulk_path(base: list[dict[str, Any]]) -> None:
    body = "\n".join(json.dumps(r) for r in base[:5]).encode()
    assert bv._object_lines(body) == 5
    with pytest.raises(TooManyEvents):
        validate_ndjson(body, max_events=4)
    assert validate_ndjson(body, max_events=5).rows == [1, 2, 3, 4, 5]


def test_mixed_timestamp_layouts_are_stored_one_by_one(base: list[dict[str, Any]]) -> None:
    lines = [json.dumps(dict(r, request_id=f"r{i}")) for i, r in enumerate(base[:6])]
    lines[2] = _with(base[2], ts="2026-11-02T10:00:00Z")  # no fraction: another layout
    got = _same("\n".join(lines).encode())
    assert got.frame.height + len(got.problems) == 6


def test_floats_convert_as_python_floats_do(base: list[dict[str, Any]]) -> None:
    """Decimal literals of every length and magnitude, and integers, in Float32 columns."""
    rng = random.Random(7)
    lines = []
    for i in range(800):
        mag = 10.0 ** rng.uniform(-50, 15)
        if i % 2:
            literal = f"{rng.uniform(-mag, mag):.{rng.choice([3, 8, 12, 17, 25])}e}"
        else:
            literal = str(rng.randrange(-(2**53) + 1, 2**53))
        text = _with(base[i % len(base)], temperature="@T@").replace('"odd"', f'"r{i}"')
        lines.append(text.replace('"@T@"', literal))
    body = "\n".join(lines).encode()
    assert _bulk_takes(body)
    _same(body)
