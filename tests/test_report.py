"""HTML audit report: sections, embedded figures, escaping, self-containment, odd columns."""

from __future__ import annotations

import base64
import re
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from detector.report.html import MAX_TABLE_ROWS, render_report, write_report

FEATURES = ["req_rate", "prompt_len", "template_share", "logprob_share", "night_share", "n_ips"]
N_ACCOUNTS = 2_000
ATTACK_ARCHETYPES = ["bulk_distiller", "hydra", "cot_harvester"]
NORMAL_ARCHETYPES = ["casual_chat", "app_backend", "researcher"]
IMG_RE = re.compile(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def _frames(
    seed: int = 7, n: int = N_ACCOUNTS
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame, dict[str, Any]]:
    rng = np.random.default_rng(seed)
    ids = [f"acct_{i:05d}" for i in range(n)]
    is_attack = np.zeros(n, dtype=bool)
    is_attack[rng.choice(n, size=60, replace=False)] = True
    score = np.where(is_attack, rng.uniform(55, 100, n), rng.beta(1.2, 8, n) * 100)
    threshold = 80.0
    flagged = score >= threshold
    campaign = np.array([None] * n, dtype=object)
    attack_idx = np.flatnonzero(is_attack)
    for j, i in enumerate(attack_idx[:36]):
        campaign[i] = f"camp_{j % 3}"
    reasons: list[list[str]] = []
    for i in range(n):
        if flagged[i]:
            r = [f"high request rate ({score[i]:.0f})", "templated prompts"]
            if i % 2 == 0:
                r.append("<script>alert('x')</script> in system prompt")
            reasons.append(r)
        else:
            reasons.append([])
    accounts = pl.DataFrame(
        {
            "account_id": ids,
            "score": score,
            "flagged": flagged,
            "reasons": reasons,
            "campaign_id": campaign.tolist(),
            "req_rate": rng.lognormal(2, 1.5, n) * np.where(is_attack, 20, 1),
            "prompt_len": rng.normal(300, 80, n),
            "template_share": np.clip(rng.beta(1, 6, n) + is_attack * 0.5, 0, 1),
            "logprob_share": np.where(rng.random(n) < 0.1, rng.random(n), 0.0),
            "night_share": rng.beta(2, 5, n),
            "n_ips": rng.poisson(2, n).astype(np.float64) + 1,
        },
        schema_overrides={"campaign_id": pl.String},
    )
    archetype = np.where(
        is_attack,
        rng.choice(ATTACK_ARCHETYPES, n),
        rng.choice(NORMAL_ARCHETYPES, n),
    )
    labels = pl.DataFrame(
        {
            "account_id": ids,
            "is_attack": is_attack,
            "archetype": archetype,
            "campaign_id": campaign.tolist(),
        },
        schema_overrides={"campaign_id": pl.String},
    )
    camp_ids = ["camp_0", "camp_1", "camp_2"]
    members = {c: [ids[i] for i in range(n) if campaign[i] == c] for c in camp_ids}
    campaigns = pl.DataFrame(
        {
            "campaign_id": camp_ids,
            "score": [95.0, 88.5, 71.2],
            "n_members": [len(members[c]) for c in camp_ids],
            "members": [members[c] for c in camp_ids],
            "evidence": [
                ["shared payment fingerprint", "same /24 <b>range</b>"],
                ["shared system prompt"],
                [],
            ],
            "shared_ip_share": [0.9, 0.5, 0.25],
        }
    )
    src, dst, w, cid = [], [], [], []
    for c in camp_ids:
        m = members[c]
        for a in range(len(m)):
            for b in range(a + 1, len(m)):
                src.append(m[a])
                dst.append(m[b])
                w.append(float(rng.uniform(0.2, 1.0)))
                cid.append(c)
    links = pl.DataFrame({"src": src, "dst": dst, "weight": w, "campaign_id": cid})
    by_arch: dict[str, dict[str, Any]] = {}
    for arch in ATTACK_ARCHETYPES + NORMAL_ARCHETYPES:
        mask = archetype == arch
        attack = arch in ATTACK_ARCHETYPES
        rate = float(flagged[mask].mean()) if mask.any() else 0.0
        by_arch[arch] = {
            "kind": "attack" if attack else "normal",
            "n": int(mask.sum()),
            ("recall" if attack else "fp_rate"): rate,
        }
    summary: dict[str, Any] = {
        "n_accounts": n,
        "n_events": 123_456,
        "n_flagged": int(flagged.sum()),
        "threshold": threshold,
        "target_fpr": 0.001,
        "model": {"version": "v<1>", "trained_at": "2025-01-01T00:00:00Z"},
        "metrics": {
            "roc_auc": 0.987,
            "pr_auc": 0.91,
            "recall_at_fpr": {"0.001": 0.62, "0.01": 0.85},
            "by_archetype": by_arch,
            "time_to_detect": {
                "median_hours": 3.5,
                "median_requests": 140.0,
                "detected_share": 0.8,
            },
            "campaigns": {"ari": 0.74, "detected_share": 0.9},
        },
        "campaigns": {"n_campaigns": 3, "n_accounts": 36},
    }
    return accounts, labels, campaigns, links, summary


@pytest.fixture(scope="module")
def frames() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame, dict[str, Any]]:
    return _frames()


def _images(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in IMG_RE.findall(html)]


def _assert_self_contained(html: str) -> None:
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.IGNORECASE)
    assert "http://" not in html and "https://" not in html
    assert "<link" not in html.lower()
    assert "<script" not in html.lower()
    assert "@import" not in html and "url(" not in html


@pytest.fixture(scope="module")
def minimal_html(frames: tuple[Any, ...]) -> str:
    """Accounts only: no labels, metrics, campaigns or links."""
    accounts, _, _, _, summary = frames
    summary = {k: v for k, v in summary.items() if k not in ("metrics", "campaigns")}
    return render_report(accounts, FEATURES, summary)


@pytest.fixture(scope="module")
def full_html(frames: tuple[Any, ...], tmp_path_factory: pytest.TempPathFactory) -> str:
    """Everything, written through :func:`write_report` into a directory it must create."""
    accounts, labels, campaigns, links, summary = frames
    out = write_report(
        tmp_path_factory.mktemp("report") / "sub" / "report.html",
        accounts=accounts,
        features=FEATURES,
        summary=summary,
        labels=labels,
        campaigns=campaigns,
        links=links,
        title="audit <test>",
    )
    return out.read_text(encoding="utf-8")


def test_minimal_report(minimal_html: str) -> None:
    html = minimal_html
    assert html.startswith("<!DOCTYPE html>")
    assert html.count("<img") == 2  # score histogram + feature small multiples
    imgs = _images(html)
    assert len(imgs) == 2 and all(b.startswith(b"\x89PNG\r\n\x1a\n") for b in imgs)
    for section in ('id="flagged"', 'id="scores"', 'id="features"'):
        assert section in html
    assert 'id="metrics"' not in html and 'id="campaigns"' not in html
    assert "2,000" in html and "123,456" in html and "0.1%" in html
    assert "v&lt;1&gt;" in html  # model version, escaped
    _assert_self_contained(html)


def test_flagged_table_and_escaping(frames: tuple[Any, ...], minimal_html: str) -> None:
    accounts = frames[0]
    html = minimal_html
    flagged = accounts.filter("flagged").sort("score", descending=True)
    assert flagged.height > 0
    for acct in flagged.head(MAX_TABLE_ROWS)["account_id"]:
        assert acct in html
    assert "&lt;script&gt;" in html
    assert "<script>" not in html
    rows = re.findall(r'<tr><td class="num">\d+</td><td class="id">', html)
    assert len(rows) == min(flagged.height, MAX_TABLE_ROWS)
    # highest score first
    top = flagged["account_id"][0]
    assert html.index(top) < html.index(flagged["account_id"][flagged.height - 1])


def test_full_report(full_html: str) -> None:
    html = full_html
    # archetype bars, scores, features, network
    assert html.count("<img") == 4
    assert len(_images(html)) == 4
    sections = ['id="metrics"', 'id="flagged"', 'id="scores"', 'id="features"', 'id="campaigns"']
    positions = [html.index(s) for s in sections]
    assert positions == sorted(positions)
    assert "<title>audit &lt;test&gt;</title>" in html
    assert "ROC AUC" in html and "0.987" in html and "recall at FPR 1%" in html
    assert "campaign ARI" in html and "3.5 h" in html
    assert "bulk_distiller" in html and "casual_chat" in html
    for cid in ("camp_0", "camp_1", "camp_2"):
        assert cid in html
    assert "same /24 &lt;b&gt;range&lt;/b&gt;" in html
    assert "shared ip share" in html  # extra numeric campaign column
    assert "Linkage" in html
    assert "&lt;script&gt;" in html
    _assert_self_contained(html)


def test_labels_without_metrics_and_campaigns_without_links(frames: tuple[Any, ...]) -> None:
    accounts, labels, campaigns, _, summary = frames
    summary = {k: v for k, v in summary.items() if k != "metrics"}
    html = render_report(accounts, FEATURES, summary, labels=labels, campaigns=campaigns)
    # archetype bars computed from labels + scores + features; no network without links
    assert html.count("<img") == 3
    assert "computed here from the labels" in html
    assert 'id="campaigns"' in html and "Linkage" not in html
    _assert_self_contained(html)


def test_constant_null_and_missing_features(frames: tuple[Any, ...]) -> None:
    accounts, labels, _, _, summary = frames
    odd = accounts.head(300).with_columns(
        pl.lit(3.0).alias("constant"),
        pl.lit(None, dtype=pl.Float64).alias("all_null"),
        pl.lit(True).alias("bool_feature"),
        pl.Series("with_inf", [float("inf")] + [1.0, 1e6] * 149 + [float("nan")]),
    )
    feats = ["constant", "all_null", "missing_column", "bool_feature", "with_inf", "req_rate"]
    html = render_report(odd, feats, summary, labels=labels)
    assert html.count("<img") == 3
    _assert_self_contained(html)


def test_many_features_capped_and_no_flags(frames: tuple[Any, ...]) -> None:
    accounts, _, _, _, summary = frames
    many = accounts.head(200).with_columns(
        pl.lit(False).alias("flagged"),
        *[pl.col("req_rate").alias(f"extra_{i}") for i in range(8)],
    )
    feats = FEATURES + [f"extra_{i}" for i in range(8)]
    html = render_report(many, feats, summary)
    assert html.count("<img") == 2
    assert "No account is flagged." in html
    assert "5 further features" in html


def test_empty_campaigns_and_unlinked_network(frames: tuple[Any, ...]) -> None:
    accounts, _, campaigns, links, summary = frames
    empty = campaigns.clear()
    html = render_report(accounts, [], summary, campaigns=empty)
    assert "No campaign found." in html
    assert html.count("<img") == 1  # no features given: score histogram only
    # no campaign column on the accounts, links without weights or campaigns
    bare = links.select("src", "dst").head(50)
    no_camp = accounts.drop("campaign_id")
    html = render_report(no_camp, FEATURES[:2], summary, campaigns=campaigns, links=bare)
    assert html.count("<img") == 3
    assert "(none)" not in html  # the group name lives only in the picture


def test_deterministic(frames: tuple[Any, ...], full_html: str) -> None:
    accounts, labels, campaigns, links, summary = frames
    again = render_report(
        accounts,
        FEATURES,
        summary,
        labels=labels,
        campaigns=campaigns,
        links=links,
        title="audit <test>",
    )
    assert again == full_html


def test_network_capped_and_spring_layout_used_when_available(
    frames: tuple[Any, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    accounts, _, _, _, summary = frames
    rng = np.random.default_rng(3)
    ids = accounts["account_id"].to_list()
    # 25 campaigns of 30 accounts: 750 linked accounts, more than the ~400 drawn.
    members = [ids[k * 30 : (k + 1) * 30] for k in range(25)]
    camp_ids = [f"c{k:02d}" for k in range(25)]
    campaigns = pl.DataFrame(
        {
            "campaign_id": camp_ids,
            "score": np.linspace(99, 50, 25),
            "n_members": [30] * 25,
            "members": members,
            "evidence": [["shared ASN"]] * 25,
        }
    )
    # A ring through each campaign's members plus random chords: every member is linked.
    edges = [
        (m[a], m[(a + step) % 30], float(rng.random()), c)
        for c, m in zip(camp_ids, members, strict=True)
        for a in range(30)
        for step in (1, int(rng.integers(2, 29)))
    ]
    links = pl.DataFrame(edges, schema=["src", "dst", "weight", "campaign_id"], orient="row")
    html = render_report(accounts, [], summary, campaigns=campaigns, links=links)
    assert html.count("<img") == 2
    shown = re.search(r"([\d,]+) of ([\d,]+) linked accounts", html)
    assert shown is not None
    assert int(shown.group(1).replace(",", "")) <= 400
    assert int(shown.group(2).replace(",", "")) == 750
    assert "… and 20 more" in html  # member list capped at 10 ids

    # With networkx importable, its spring layout is used (a stub stands in for it here).
    calls: list[int] = []

    class _Graph:
        def __init__(self) -> None:
            self.nodes: list[str] = []

        def add_nodes_from(self, nodes: list[str]) -> None:
            self.nodes.extend(nodes)

        def add_weighted_edges_from(self, edges: list[tuple[str, str, float]]) -> None:
            pass

    def spring_layout(graph: _Graph, seed: int, weight: str) -> dict[str, np.ndarray]:
        calls.append(len(graph.nodes))
        return {n: np.array([i % 20, i // 20], dtype=float) for i, n in enumerate(graph.nodes)}

    stub = types.ModuleType("networkx")
    stub.Graph = _Graph  # type: ignore[attr-defined]
    stub.spring_layout = spring_layout  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "networkx", stub)
    html = render_report(accounts, [], summary, campaigns=campaigns, links=links)
    assert html.count("<img") == 2
    assert calls and calls[0] <= 400


def test_write_report_positional(frames: tuple[Any, ...], tmp_path: Path) -> None:
    accounts, _, _, _, summary = frames
    out = write_report(str(tmp_path / "r.html"), accounts, FEATURES[:1], summary)
    assert isinstance(out, Path) and out.exists()
    assert out.read_text(encoding="utf-8").count("<img") == 2
