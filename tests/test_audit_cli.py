"""train / audit / evaluate / demo through the CLI, and the files they write."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from service.cli import app
from synthetic_logs.generate import generate

runner = CliRunner()


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("logs")
    generate("demo", seed=21, scale=0.5).write(base / "train")
    generate("demo", seed=22, scale=0.5).write(base / "test")
    return base / "train", base / "test"


def test_train_audit_evaluate(logs: tuple[Path, Path], tmp_path: Path) -> None:
    train_dir, test_dir = logs
    model = tmp_path / "model.joblib"
    res = runner.invoke(app, ["train", str(train_dir / "events.parquet"), "--out", str(model)])
    assert res.exit_code == 0, res.output
    out = tmp_path / "audit"
    res = runner.invoke(
        app,
        [
            "audit",
            str(test_dir / "events.parquet"),
            "--out",
            str(out),
            "--model",
            str(model),
            "--labels",
            str(test_dir / "labels.parquet"),
            "--time-to-detect",
        ],
    )
    assert res.exit_code == 0, res.output
    acc = pl.read_parquet(out / "accounts.parquet")
    assert acc.columns[:5] == ["account_id", "score", "flagged", "reasons", "campaign_id"]
    assert acc["score"].is_sorted(descending=True)
    csv = pl.read_csv(out / "accounts.csv")
    assert csv.columns == ["account_id", "score", "flagged", "reasons", "campaign_id"]
    summary = json.loads((out / "summary.json").read_text())
    m = summary["metrics"]
    assert set(m["recall_at_fpr"]) == {"0.001", "0.01"}
    assert 0.5 < m["roc_auc"] <= 1 and 0 < m["pr_auc"] <= 1
    assert "hydra" in m["by_archetype"] and "casual_chat" in m["by_archetype"]
    ttd = m["time_to_detect"]
    # every attacker flagged on the whole log is detected at some cut-off, no later than the end
    assert ttd["detected_share"] == pytest.approx(m["flagged_recall"])
    assert 0 <= ttd["median_hours"] <= 24
    html = (out / "report.html").read_text()
    assert "<img" in html and acc["account_id"][0] in html
    res = runner.invoke(
        app,
        [
            "evaluate",
            str(test_dir / "events.parquet"),
            "--model",
            str(model),
            "--labels",
            str(test_dir / "labels.parquet"),
            "--no-time-to-detect",
            "--out",
            str(tmp_path / "m.json"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "m.json").read_text())["roc_auc"] == m["roc_auc"]


def test_audit_errors_are_clear(logs: tuple[Path, Path], tmp_path: Path) -> None:
    _, test_dir = logs
    bad = tmp_path / "bad.joblib"
    bad.write_text("nope")
    res = runner.invoke(
        app,
        [
            "audit",
            str(test_dir / "events.parquet"),
            "--out",
            str(tmp_path / "o"),
            "--model",
            str(bad),
        ],
    )
    assert res.exit_code == 2 and "not a distillguard model" in res.output
    broken = tmp_path / "broken.ndjson"
    broken.write_text('{"ts": "2026-11-01T00:00:00Z"}\n')
    res = runner.invoke(app, ["audit", str(broken), "--out", str(tmp_path / "o2")])
    assert res.exit_code == 2
    assert "broken.ndjson:1: field 'request_id' missing required field" in res.output


def test_demo(tmp_path: Path) -> None:
    res = runner.invoke(app, ["demo", "--out", str(tmp_path)], env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    # results on stdout, progress on stderr
    out, err = res.stdout, res.stderr
    assert "flagged" in out and "PR-AUC" in out and "estimated false positives" in out
    assert f"report: {tmp_path / 'audit' / 'report.html'}" in out
    assert "· generating the demo scenario" in err and "· reading" in err
    assert "generating" not in out and "· reading" not in out
    assert "flagged" not in err
    summary = json.loads((tmp_path / "audit" / "summary.json").read_text())
    assert summary["n_flagged"] > 0 and summary["metrics"]["roc_auc"] > 0.95
    assert (tmp_path / "audit" / "report.html").exists()
    # each suspicious campaign once, then the strongest accounts outside campaigns
    camps = pl.read_parquet(tmp_path / "audit" / "campaigns.parquet").filter(pl.col("lift") > 0)
    acc = pl.read_parquet(tmp_path / "audit" / "accounts.parquet")
    for cid in camps["campaign_id"]:
        assert out.count(cid) == 1, cid
    solo = acc.filter(~pl.col("campaign_id").is_in(camps["campaign_id"].implode()).fill_null(False))
    for account in solo["account_id"].head(10):
        assert out.count(account) == 1, account
    # each section fits a screen of 80 columns
    lines = out.splitlines()
    paths = ("report: ", "outputs: ")  # printed whole, for copying
    assert max(len(line.rstrip()) for line in lines if not line.startswith(paths)) <= 80
    starts = ["suspicious campaigns", "strongest accounts", "ROC-AUC", "report: "]
    at = [next(i for i, line in enumerate(lines) if line.startswith(s)) for s in starts]
    assert at == sorted(at) and at[0] <= 6  # the summary: a few lines
    sizes = [b - a for a, b in itertools.pairwise(at)]
    assert max(sizes) <= 40, sizes


def test_version_and_clean_help() -> None:
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0
    assert re.fullmatch(r"distillguard \S+\n", res.stdout), res.stdout
    commands = ["generate", "convert", "train", "audit", "evaluate", "demo", "serve", "replay"]
    for args in ([], *([c] for c in commands)):
        res = runner.invoke(app, [*args, "--help"], env={"COLUMNS": "100"})
        assert res.exit_code == 0, args
        text = res.stdout
        assert "Usage:" in text and "--help" in text
        # no value placeholder for flags, no python types, no braces around arguments
        assert "<bool>" not in text and "list[" not in text and "{" not in text, (args, text)
    res = runner.invoke(app, ["audit", "--help"], env={"COLUMNS": "100"})
    assert "audit [OPTIONS] LOGS..." in res.stdout
    assert "<text|json>" in res.stdout and "[default: 10]" in res.stdout


def test_audit_and_evaluate_json(logs: tuple[Path, Path], tmp_path: Path) -> None:
    train_dir, test_dir = logs
    model = tmp_path / "model.joblib"
    res = runner.invoke(app, ["train", str(train_dir / "events.parquet"), "--out", str(model)])
    assert res.exit_code == 0, res.output
    assert f"model -> {model}" in res.stdout
    out = tmp_path / "audit"
    res = runner.invoke(
        app,
        [
            *("audit", str(test_dir / "events.parquet"), "--out", str(out)),
            *("--model", str(model), "--format", "json", "--top", "7"),
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)  # nothing else on stdout
    assert "reading, validating" in res.stderr
    assert doc["summary"] == json.loads((out / "summary.json").read_text())
    assert doc["outputs"]["report"] == str(out / "report.html")
    acc = pl.read_parquet(out / "accounts.parquet")
    assert [a["account_id"] for a in doc["accounts"]] == acc["account_id"].head(7).to_list()
    first = doc["accounts"][0]
    assert {"score", "score_text", "reading", "severity", "action", "requests"} <= set(first)
    assert first["first_seen"].startswith("20")  # ISO time
    assert sum(doc["severity"].values()) == acc["severity"].is_not_null().sum()
    assert 0 < len(doc["campaigns"]) <= 7
    assert doc["campaigns"][0]["suspicious"] is True
    res = runner.invoke(
        app,
        [
            *("evaluate", str(test_dir / "events.parquet"), "--model", str(model)),
            *("--labels", str(test_dir / "labels.parquet"), "--no-time-to-detect"),
            *("--format", "json", "--top", "3"),
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["metrics"]["roc_auc"] == doc["summary"]["metrics"]["roc_auc"] > 0.5
    assert len(doc["accounts"]) == 3 and "outputs" not in doc


def test_results_on_stdout_progress_on_stderr_in_a_real_process(
    logs: tuple[Path, Path], tmp_path: Path
) -> None:
    """``distillguard audit ... > out.txt`` keeps the results: a real process, real pipes."""
    _, test_dir = logs
    out = tmp_path / "audit"
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "service.cli", "audit", str(test_dir / "events.parquet")),
            *("--out", str(out), "--no-campaigns", "--top", "3"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "100"},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "flagged" in proc.stdout and f"report: {out / 'report.html'}" in proc.stdout
    assert "strongest accounts outside campaigns" in proc.stdout
    assert "· reading, validating and fingerprinting logs" in proc.stderr
    assert "· reading" not in proc.stdout and "report:" not in proc.stderr


def test_audit_writes_campaigns(logs: tuple[Path, Path], tmp_path: Path) -> None:
    _, test_dir = logs
    out = tmp_path / "a"
    res = runner.invoke(
        app,
        ["audit", str(test_dir), "--out", str(out), "--labels", str(test_dir / "labels.parquet")],
    )
    assert res.exit_code == 0, res.output
    camps = pl.read_parquet(out / "campaigns.parquet")
    assert {"campaign_id", "score", "n_members", "members", "evidence"} <= set(camps.columns)
    acc = pl.read_parquet(out / "accounts.parquet")
    linked = acc.filter(pl.col("campaign_id").is_not_null())
    assert linked.height >= camps.filter(pl.col("n_members") >= 2)["n_members"].min()  # type: ignore[operator]
    cm = json.loads((out / "summary.json").read_text())["metrics"]["campaigns"]
    assert cm["ari"] >= 0.8 and cm["recall_with"] >= cm["recall_without"]
    assert '<details class="item campaign"' in (out / "report.html").read_text()
