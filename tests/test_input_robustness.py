"""Input robustness of convert and audit (issue 16): --max-errors and the 'N bad of M lines'
line, an incomplete last line and a byte order mark, numbers written as strings, a raw gateway
log given to audit, and request ids logged twice."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner

from detector.io.adapters import from_bedrock, from_litellm, from_openai
from detector.io.cloud import from_azure_openai
from detector.io.otel import OtelMapping, span_event
from detector.io.schema import EventSchemaError, read_events
from detector.io.tally import InputTally
from service.cli import app
from synthetic_logs.generate import generate

DATA = Path(__file__).parent / "data"
runner = CliRunner()


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_lines(path: Path, records: list[Any], tail: str = "") -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail)
    return path


@pytest.fixture(scope="module")
def canonical(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Canonical events as JSON records (120 of a small demo log)."""
    g = generate("demo", seed=5, scale=0.05)
    head = g.events.head(120).with_columns(pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%S%.fZ"))
    return head.to_dicts()


# --------------------------------------------------------------------------- numbers as strings


def _first_problem(exc: pytest.ExceptionInfo[EventSchemaError]) -> tuple[str, int | None, str]:
    p = exc.value.problems[0]
    return Path(p.source).name, p.line, p.field or ""


@pytest.mark.parametrize(
    ("sample", "convert", "edit", "field"),
    [
        (
            "openai_gateway.jsonl",
            from_openai,
            lambda r: r["request"].__setitem__("max_tokens", "1024"),
            "request.max_tokens",
        ),
        (
            "openai_gateway.jsonl",
            from_openai,
            lambda r: r["request"].__setitem__("temperature", "0.7"),
            "request.temperature",
        ),
        (
            "openai_gateway.jsonl",
            from_openai,
            lambda r: r["request"].__setitem__("stream", "true"),
            "request.stream",
        ),
        (
            "litellm_spendlogs.jsonl",
            from_litellm,
            lambda r: r.__setitem__("prompt_tokens", "12"),
            "prompt_tokens",
        ),
        (
            "bedrock_invocations.jsonl",
            from_bedrock,
            lambda r: r["input"].__setitem__("inputTokenCount", "12"),
            "input.inputTokenCount",
        ),
        (
            "azure_openai_requestresponse.jsonl",
            from_azure_openai,
            lambda r: r.__setitem__("durationMs", "987"),
            "durationMs",
        ),
    ],
)
def test_adapters_refuse_numbers_written_as_strings(
    tmp_path: Path, sample: str, convert: Any, edit: Any, field: str
) -> None:
    records = lines_of(DATA / sample)
    edit(records[0])
    path = write_lines(tmp_path / sample, records)
    with pytest.raises(EventSchemaError) as exc:
        convert(path)
    assert _first_problem(exc) == (sample, 1, field)
    assert "(JSON numbers and booleans are not quoted)" in exc.value.problems[0].reason


def test_csv_cells_are_text_and_documented_strings_still_read() -> None:
    """A CSV cell is text: its numbers are read from it; Azure writes resultSignature "200"."""
    assert from_litellm(DATA / "litellm_spendlogs.csv")["prompt_tokens"].min() >= 0  # type: ignore[operator]
    assert from_azure_openai(DATA / "azure_openai_requestresponse.jsonl")["status"][0] == 200


def test_otel_span_attribute_as_string_is_refused() -> None:
    record = {
        "trace_id": "ab" * 16,
        "span_id": "cd" * 8,
        "start": 1_700_000_000_000_000_000,
        "end": 1_700_000_001_000_000_000,
        "error": False,
        "attributes": {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "m",
            "gen_ai.request.max_tokens": "1024",
            "distillguard.account_id": "a",
        },
        "resource": {},
        "events": [],
    }
    _, problems = span_event(record, OtelMapping())
    assert [f for f, _ in problems] == ["gen_ai.request.max_tokens"]


def test_canonical_reader_refuses_numbers_as_strings(
    tmp_path: Path, canonical: list[dict[str, Any]]
) -> None:
    rows = [dict(r) for r in canonical[:5]]
    rows[2]["max_tokens"] = "1024"
    with pytest.raises(EventSchemaError) as exc:
        read_events(write_lines(tmp_path / "e.ndjson", rows))
    assert _first_problem(exc) == ("e.ndjson", 3, "max_tokens")


# --------------------------------------------------------------------------- BOM, last line


def test_bom_and_incomplete_last_line_of_canonical_ndjson(
    tmp_path: Path, canonical: list[dict[str, Any]]
) -> None:
    path = tmp_path / "live.ndjson"
    cut = json.dumps(canonical[10])[:40]  # the writer is mid-line
    text = "".join(json.dumps(r) + "\n" for r in canonical[:10]) + cut
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    tally = InputTally()
    df = read_events(path, tally=tally).collect()
    assert df.height == 10 and df["request_id"].to_list() == [
        r["request_id"] for r in canonical[:10]
    ]
    assert (tally.bad, tally.records, tally.tails) == (0, 10, [f"{path}:11"])
    # the same cut line followed by a newline is not a live log's tail: it is a bad line
    path.write_text(text + "\n")
    with pytest.raises(EventSchemaError, match=r"live\.ndjson:11: malformed JSON"):
        read_events(path)


def test_bom_and_incomplete_last_line_of_a_gateway_log(tmp_path: Path) -> None:
    raw = (DATA / "openai_gateway.jsonl").read_text()
    n = len([line for line in raw.splitlines() if line.strip()])
    path = tmp_path / "live.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + raw.encode() + b'{"request_id": "req-cut", "time')
    tally = InputTally()
    assert from_openai(path, tally).height == n
    assert tally.bad == 0 and tally.tails == [f"{path}:{n + 1}"]
    array = tmp_path / "spend.json"  # a JSON array (LiteLLM /spend/logs) with a BOM
    array.write_bytes(
        b"\xef\xbb\xbf" + json.dumps(lines_of(DATA / "litellm_spendlogs.jsonl")).encode()
    )
    assert from_litellm(array).height == from_litellm(DATA / "litellm_spendlogs.jsonl").height


# --------------------------------------------------------------------------- --max-errors


def _bad_openai_log(tmp_path: Path) -> tuple[Path, int]:
    records = lines_of(DATA / "openai_gateway.jsonl")
    records[0]["request"]["max_tokens"] = "1024"
    del records[4]["account_id"]
    path = write_lines(tmp_path / "gw.jsonl", [*records, "not an object"])
    return path, len(records) + 1


@pytest.mark.parametrize(
    ("max_errors", "ok"), [(None, False), ("0", False), ("2", False), ("3", True), ("-1", True)]
)
def test_convert_max_errors(tmp_path: Path, max_errors: str | None, ok: bool) -> None:
    path, total = _bad_openai_log(tmp_path)
    out = tmp_path / "events.parquet"
    args = ["convert", "--from", "openai", str(path), "--out", str(out)]
    res = runner.invoke(app, [*args, "--max-errors", max_errors] if max_errors else args)
    assert f"3 bad of {total} lines (first: {path}:1: request.max_tokens: expected an integer" in (
        res.stderr
    )
    if ok:
        assert res.exit_code == 0, res.output
        assert pl.read_parquet(out).height == total - 3
        assert "skipped" in res.stderr
    else:
        assert res.exit_code == 2 and not out.exists()
        assert "gw.jsonl:5: field 'account_id'" in res.stderr  # every problem is named


def test_audit_max_errors_and_a_clean_input_is_counted_too(
    tmp_path: Path, canonical: list[dict[str, Any]]
) -> None:
    rows = [dict(r) for r in canonical]
    rows[7]["n"] = "1"
    rows[30].pop("account_id")
    path = write_lines(tmp_path / "events.ndjson", rows)
    res = runner.invoke(app, ["audit", str(path), "--out", str(tmp_path / "a")])
    assert res.exit_code == 2
    assert f"2 bad of 120 lines (first: {path}:8: n: expected an integer" in res.stderr
    res = runner.invoke(
        app, ["audit", str(path), "--out", str(tmp_path / "b"), "--max-errors", "-1"]
    )
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["n_events"] == 118 and summary["input"]["bad"] == 2
    # a Parquet input with a null in a required column: its row is skipped the same way
    frame = read_events(write_lines(tmp_path / "ok.ndjson", canonical)).collect()
    frame = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 4).then(None).otherwise(pl.col("ip")).alias("ip")
    )
    frame.write_parquet(tmp_path / "events.parquet")
    res = runner.invoke(
        app,
        ["audit", str(tmp_path / "events.parquet"), "--out", str(tmp_path / "c"), "--max-errors",
         "1"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "1 bad of 120 rows (first: " in res.stderr and "row 5: ip: is required" in res.stderr


# --------------------------------------------------------------------------- raw gateway logs


@pytest.mark.parametrize(
    ("sample", "adapter", "what"),
    [
        ("openai_gateway.jsonl", "openai", "OpenAI-compatible"),
        ("litellm_spendlogs.jsonl", "litellm", "LiteLLM SpendLogs"),
        ("litellm_spendlogs.csv", "litellm", "LiteLLM SpendLogs"),
        ("litellm_standard_payload.jsonl", "litellm", "LiteLLM standard logging payload"),
        ("bedrock_invocations.jsonl", "bedrock", "AWS Bedrock"),
        ("azure_openai_requestresponse.jsonl", "azure-openai", "Azure OpenAI"),
    ],
)
def test_audit_of_a_raw_gateway_log_says_which_convert(
    tmp_path: Path, sample: str, adapter: str, what: str
) -> None:
    res = runner.invoke(app, ["audit", str(DATA / sample), "--out", str(tmp_path / "a")])
    assert res.exit_code == 2
    assert "missing required field" not in res.stderr
    problems = [line for line in res.stderr.splitlines() if sample in line]
    assert len(problems) == 1, res.stderr
    assert what in problems[0] and f"distillguard convert --from {adapter}" in res.stderr


# --------------------------------------------------------------------------- duplicates


def test_audit_counts_a_request_logged_twice_once(tmp_path: Path) -> None:
    g = generate("demo", seed=6, scale=0.1)
    g.write(tmp_path / "logs")
    first = tmp_path / "logs" / "events.parquet"
    # the second export overlaps the first: its first 500 rows are the last 500 of the first
    overlap = g.events.tail(500)
    pl.concat([overlap, g.events.head(0)]).write_parquet(tmp_path / "more.parquet")
    res = runner.invoke(
        app, ["audit", str(first), str(tmp_path / "more.parquet"), "--out", str(tmp_path / "a")]
    )
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["n_events"] == g.events.height
    assert summary["input"]["duplicates_dropped"] == 500
    assert "500 duplicate request_id rows dropped" in res.stderr
    alone = runner.invoke(app, ["audit", str(first), "--out", str(tmp_path / "b")])
    assert alone.exit_code == 0
    acc = pl.read_parquet(tmp_path / "a" / "accounts.parquet").sort("account_id")
    ref = pl.read_parquet(tmp_path / "b" / "accounts.parquet").sort("account_id")
    assert acc["requests_per_day"].to_list() == ref["requests_per_day"].to_list()
