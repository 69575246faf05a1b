"""Verdicts (issue 16): the store, allow-lists in the pipeline (never flagged, no campaign lift,
for the audit and the service's between-pass path alike), the CLI round trip, training on
verdicts, the precision of the flags against them, and the export of an audit (CSV, JSON,
STIX 2.1 checked by stix2's own parser)."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from detector import pipeline
from detector.models import DistillScorer
from detector.verdicts import (
    VerdictError,
    VerdictStore,
    apply_verdicts,
    flag_precision,
    make_verdict,
    verdict_frame,
    verdict_labels,
)
from service.cli import app
from synthetic_logs.generate import Generated, generate

runner = CliRunner()


# --------------------------------------------------------------------------- the store


def test_store_is_append_only_latest_wins_and_survives_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "v" / "verdicts.jsonl"
    store = VerdictStore(path)
    store.record(make_verdict("a", "abuse", by="ann", note="bulk"))
    store.record(make_verdict("b", "allow", by="bo"))
    store.record(make_verdict("a", "benign", by="cy", note="their eval harness"))
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    again = VerdictStore(path)
    assert {a: v.verdict for a, v in again.latest().items()} == {"a": "benign", "b": "allow"}
    assert [v.verdict for v in again.history()] == ["abuse", "allow", "benign"]
    # a crash in the middle of an append: the torn line is skipped, then cut before the next
    with path.open("ab") as fh:
        fh.write(b'{"account_id": "c", "verd')
    torn = VerdictStore(path)
    assert set(torn.latest()) == {"a", "b"}
    torn.record(make_verdict("c", "abuse", by="dee"))
    assert {a: v.verdict for a, v in VerdictStore(path).latest().items()}["c"] == "abuse"
    # a damaged line that is not the last is an error naming it
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], "{nope", *lines[1:]]) + "\n")
    with pytest.raises(VerdictError, match=r"verdicts\.jsonl:2:"):
        VerdictStore(path)


@pytest.mark.parametrize(
    ("account", "verdict", "by", "match"),
    [
        ("a\nb", "allow", "x", "account_id: contains"),
        ("../etc", "allow", "x", "account_id: contains"),
        ("a", "ban", "x", "not one of abuse, benign, allow"),
        ("a", "allow", "", "by: must not be empty"),
        ("a", "allow", "x\x07", "by: contains a control character"),
    ],
)
def test_bad_verdicts_are_refused(account: str, verdict: str, by: str, match: str) -> None:
    with pytest.raises(VerdictError, match=match):
        make_verdict(account, verdict, by=by)


# --------------------------------------------------------------------------- the pipeline


@pytest.fixture(scope="module")
def scored(demo_small: Generated) -> pipeline.Scored:
    model = pipeline.fit(demo_small.events, demo_small.accounts)
    return pipeline.score(demo_small.events, model, demo_small.accounts)


def _lifted_member(scored: pipeline.Scored) -> str:
    first = scored.accounts["reasons"].list.first().fill_null("")
    lifted = scored.accounts.filter(
        first.str.starts_with("member of campaign") & pl.col("flagged")
    ).join(scored.alone.select("account_id", pl.col("score").alias("own")), on="account_id")
    lifted = lifted.filter(pl.col("score") > pl.col("own"))
    assert lifted.height, "the demo has lifted campaign members"
    return str(lifted["account_id"][0])


def test_allow_listed_accounts_are_never_flagged_and_not_lifted(
    demo_small: Generated, scored: pipeline.Scored
) -> None:
    member = _lifted_member(scored)
    first = scored.accounts["reasons"].list.first().fill_null("")
    solo = scored.accounts.filter(~first.str.starts_with("member of campaign"))
    solo_id = str(solo.sort("score", descending=True)["account_id"][0])  # top on its own
    at = datetime(2026, 3, 2, 12, tzinfo=UTC)
    verdicts = verdict_frame(
        [
            make_verdict(member, "allow", by="alice", note="research partner", at=at),
            make_verdict(solo_id, "allow", by="bob", at=at),
        ]
    )
    res = pipeline.score(demo_small.events, scored.model, demo_small.accounts, verdicts=verdicts)
    rows = {r["account_id"]: r for r in res.accounts.iter_rows(named=True)}
    own = dict(scored.alone.select("account_id", "score").iter_rows())
    before = {r["account_id"]: r for r in scored.accounts.iter_rows(named=True)}
    for acc, why in (
        (member, "allow-listed on 2026-03-02 by alice: research partner"),
        (solo_id, "allow-listed on 2026-03-02 by bob"),
    ):
        assert rows[acc]["flagged"] is False
        assert rows[acc]["reasons"][0] == why
        assert rows[acc]["score"] == own[acc]  # computed and shown, without any campaign lift
        assert rows[acc]["campaign_id"] == before[acc]["campaign_id"]  # membership still shown
    assert rows[member]["score"] < before[member]["score"]
    others = res.accounts.filter(~pl.col("account_id").is_in([member, solo_id]))
    assert others.sort("account_id").equals(
        scored.accounts.filter(~pl.col("account_id").is_in([member, solo_id])).sort("account_id")
    )
    assert res.campaigns is not None and member not in set(res.campaigns.lifted().to_list())
    # the service's path between campaign passes (some accounts, the last pass's campaigns)
    assert scored.campaigns is not None
    live = pipeline.score(
        demo_small.events,
        scored.model,
        demo_small.accounts,
        only=[member],
        campaigns=scored.campaigns.campaigns,
        verdicts=verdicts,
    )
    row = live.accounts.row(0, named=True)
    assert (row["flagged"], row["score"]) == (False, own[member])
    # other verdicts change no score
    labels_only = verdict_frame([make_verdict(member, "abuse", by="c", at=at)])
    same = apply_verdicts(scored.accounts, scored.alone, labels_only)
    assert same.equals(scored.accounts)


def test_precision_of_flags_against_verdicts(scored: pipeline.Scored) -> None:
    flagged = scored.accounts.filter(pl.col("flagged"))["account_id"].to_list()
    calm = scored.accounts.filter(~pl.col("flagged"))["account_id"].to_list()
    vs = verdict_frame(
        [
            make_verdict(flagged[0], "abuse", by="a"),
            make_verdict(flagged[1], "abuse", by="a"),
            make_verdict(flagged[2], "benign", by="a"),
            make_verdict(calm[0], "abuse", by="a"),
            make_verdict("not-in-these-logs", "abuse", by="a"),
        ]
    )
    p = flag_precision(scored.accounts, vs, scored.model.threshold_)
    assert p["precision"] == pytest.approx(2 / 3)
    assert (p["flagged_abuse"], p["flagged_not_abuse"], p["abuse_missed"]) == (2, 1, 1)
    assert p["in_these_logs"] == 4 and p["flagged_without_verdict"] == len(flagged) - 3
    assert verdict_labels(vs).filter(pl.col("is_attack")).height == 4


# --------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("logs")
    generate("demo", seed=31, scale=0.4).write(base / "train")
    generate("demo", seed=32, scale=0.4).write(base / "test")
    return base / "train", base / "test"


def test_cli_verdicts_retrain_and_audit(logs: tuple[Path, Path], tmp_path: Path) -> None:
    train_dir, test_dir = logs
    model = tmp_path / "model" / "model.joblib"
    res = runner.invoke(app, ["train", str(train_dir), "--out", str(model)])
    assert res.exit_code == 0, res.output
    audit = tmp_path / "audit"
    res = runner.invoke(app, ["audit", str(test_dir), "--out", str(audit), "--model", str(model)])
    assert res.exit_code == 0, res.output
    acc = pl.read_parquet(audit / "accounts.parquet")
    flagged = acc.filter(pl.col("flagged"))["account_id"].to_list()
    store = model.parent / "verdicts.jsonl"

    # record verdicts with the CLI (the store beside the model, found through --model)
    for account, kind, note in (
        (flagged[0], "--allow", "research partner"),
        (flagged[1], "--abuse", ""),
        (flagged[2], "--benign", "their eval harness"),
    ):
        res = runner.invoke(
            app, ["verdict", account, kind, "--note", note, "--by", "alice", "--model", str(model)]
        )
        assert res.exit_code == 0, res.output
        assert str(store) in res.stdout
    res = runner.invoke(app, ["verdict", flagged[1], "--abuse", "--benign", "--model", str(model)])
    assert res.exit_code == 2 and "exactly one of" in res.stderr
    res = runner.invoke(app, ["verdict", "--list", "--verdicts", str(store)])
    assert res.exit_code == 0 and "3 verdicts" in res.stdout and "research partner" in res.stdout

    # audit again: the store beside the model is read; the allow-listed account is not flagged
    again = tmp_path / "audit2"
    res = runner.invoke(app, ["audit", str(test_dir), "--out", str(again), "--model", str(model)])
    assert res.exit_code == 0, res.output
    assert "precision of the flags against the verdicts: 0.50 (1 abuse of 2" in res.stderr
    acc2 = {r["account_id"]: r for r in pl.read_parquet(again / "accounts.parquet").to_dicts()}
    assert acc2[flagged[0]]["flagged"] is False
    assert acc2[flagged[0]]["reasons"][0].startswith("allow-listed on ")
    assert acc2[flagged[0]]["reasons"][0].endswith(" by alice: research partner")
    exported = pl.read_csv(again / "verdicts.csv")
    assert exported.columns[:5] == ["account_id", "verdict", "at", "by", "note"]
    assert set(exported["account_id"]) == set(flagged[:3])
    summary = json.loads((again / "summary.json").read_text())
    assert summary["verdicts"]["flagged_with_verdict"] == 2  # allow no longer flags

    # retrain with the verdicts as labels: too few abuse verdicts for a supervised model
    res = runner.invoke(app, ["train", str(train_dir), "--out", str(model)])
    assert res.exit_code == 0, res.output
    assert "too few for a supervised model" in res.stderr
    info = DistillScorer.load(model).info()
    assert info["supervised"] is False
    assert info["reference"].startswith("accounts without an abuse verdict")

    # evaluate reports the precision too
    res = runner.invoke(
        app,
        [
            *("evaluate", str(test_dir), "--model", str(model)),
            *("--labels", str(test_dir / "labels.parquet"), "--no-time-to-detect"),
            *("--out", str(tmp_path / "m.json")),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "precision of the flags against the verdicts" in res.stderr
    assert json.loads((tmp_path / "m.json").read_text())["verdicts"]["verdicts"] == 3


def test_train_is_supervised_with_enough_abuse_verdicts(
    logs: tuple[Path, Path], tmp_path: Path
) -> None:
    train_dir, _ = logs
    labels = pl.read_parquet(train_dir / "labels.parquet")
    store = VerdictStore(tmp_path / "v.jsonl")
    for acc in labels.filter(pl.col("is_attack"))["account_id"].head(25):
        store.record(make_verdict(acc, "abuse", by="t"))
    for acc in labels.filter(~pl.col("is_attack"))["account_id"].head(5):
        store.record(make_verdict(acc, "benign", by="t"))
    model = tmp_path / "m.joblib"
    res = runner.invoke(
        app, ["train", str(train_dir), "--out", str(model), "--verdicts", str(store.path)]
    )
    assert res.exit_code == 0, res.output
    said = re.search(r"supervised on (\d+) abuse and (\d+) benign verdicts", res.stderr)
    assert said and int(said[1]) >= 20 and int(said[2]) <= 5  # (those with events in the logs)
    assert DistillScorer.load(model).info()["supervised"] is True


def test_verdict_needs_a_store(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DISTILLGUARD_MODEL_PATH"}
    res = runner.invoke(app, ["verdict", "a", "--allow"], env=env)
    assert res.exit_code == 2 and "which verdict store" in res.stderr


# --------------------------------------------------------------------------- export


@pytest.fixture(scope="module")
def audit_dir(logs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    _, test_dir = logs
    out = tmp_path_factory.mktemp("audit")
    res = runner.invoke(app, ["audit", str(test_dir), "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out


def test_export_csv_and_json(audit_dir: Path, tmp_path: Path) -> None:
    acc = pl.read_parquet(audit_dir / "accounts.parquet")
    camps = pl.read_parquet(audit_dir / "campaigns.parquet").filter(pl.col("lift") > 0)
    inds = pl.read_parquet(audit_dir / "indicators.parquet")
    assert camps.height and {"ip_range", "template_hash"} <= set(inds["kind"])

    res = runner.invoke(app, ["export", str(audit_dir), "--format", "csv"])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    kinds = [r["kind"] for r in rows]
    assert kinds.count("account") == acc["flagged"].sum()
    assert kinds.count("campaign") == camps.height
    suspicious = set(camps["campaign_id"])
    shared = inds.filter(pl.col("campaign_id").is_in(sorted(suspicious)))
    assert len(rows) == acc["flagged"].sum() + camps.height + shared.height
    assert all(r["campaign_id"] in suspicious for r in rows if r["kind"] == "ip_range")

    out = tmp_path / "x.json"
    res = runner.invoke(app, ["export", str(audit_dir), "--format", "json", "--out", str(out)])
    assert res.exit_code == 0 and res.stdout.strip() == str(out)
    doc = json.loads(out.read_text())
    assert [c["campaign_id"] for c in doc["campaigns"]] == camps.sort("score", descending=True)[
        "campaign_id"
    ].to_list()
    first = doc["campaigns"][0]
    assert first["indicators"]["ip_range"][0]["holders"] >= 2 and first["severity"]


def test_export_stix_bundle_parses_with_stix2(audit_dir: Path) -> None:
    stix2 = pytest.importorskip("stix2")
    res = runner.invoke(app, ["export", str(audit_dir), "--format", "stix"])
    assert res.exit_code == 0, res.output
    bundle = stix2.parse(res.stdout)  # stix2's own parser and validation, no custom content
    by_type: dict[str, list[object]] = {}
    for obj in bundle.objects:
        by_type.setdefault(obj.type, []).append(obj)
    camps = pl.read_parquet(audit_dir / "campaigns.parquet").filter(pl.col("lift") > 0)
    assert len(by_type["campaign"]) == camps.height
    patterns = [i.pattern for i in by_type["indicator"]]
    assert any(p.startswith("[ipv4-addr:value = ") and "/24" in p for p in patterns)
    assert any(p.startswith("[user-account:user_id = ") for p in patterns)
    assert any(p.startswith("template_hash = ") for p in patterns)
    ids = {o.id for objs in by_type.values() for o in objs}  # type: ignore[attr-defined]
    for rel in by_type["relationship"]:
        assert rel.relationship_type == "indicates"  # type: ignore[attr-defined]
        assert {rel.source_ref, rel.target_ref} <= ids  # type: ignore[attr-defined]
    again = runner.invoke(app, ["export", str(audit_dir), "--format", "stix"])
    assert {o.id for o in stix2.parse(again.stdout).objects} == ids  # stable identifiers
