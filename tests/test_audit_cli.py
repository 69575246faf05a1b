"""train / audit / evaluate / demo through the CLI, and the files they write."""

from __future__ import annotations

import json
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
    res = runner.invoke(app, ["demo", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "flagged" in res.output and "PR-AUC" in res.output
    summary = json.loads((tmp_path / "audit" / "summary.json").read_text())
    assert summary["n_flagged"] > 0 and summary["metrics"]["roc_auc"] > 0.95
    assert (tmp_path / "audit" / "report.html").exists()


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
    assert "Campaigns" in (out / "report.html").read_text()
