"""The HTML audit report: what it opens on, one row per campaign with all its members, the
per-account context, the watch list and linked groups, escaping, self-containment, odd input.

The real-audit tests read the report of the ``small_audit`` fixture (a self-fit audit of a
small demo log: three suspicious campaigns and a benign group); the rest render synthetic
tables. ``tests/test_report_browser.py`` renders it in a real browser."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from detector.audit import AuditResult
from detector.calibration import score_reading
from detector.report.html import render_report, write_report
from detector.severity import severity

FEATURES = ["req_rate", "prompt_len", "template_share", "logprob_share", "night_share", "n_ips"]
N_ACCOUNTS = 2_000
ATTACK_ARCHETYPES = ["bulk_distiller", "hydra", "cot_harvester"]
NORMAL_ARCHETYPES = ["casual_chat", "app_backend", "researcher"]
IMG_RE = re.compile(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def _section(html: str, name: str) -> str:
    start = html.index(f'<section id="{name}">')
    return html[start : html.index("</section>", start)]


def _items(section: str) -> list[str]:
    """The rows (``<details class="item ...">``) of a list section."""
    parts = section.split('<details class="item ')[1:]
    return [p[: p.index("</details>")] for p in parts]


def _summary(item: str) -> str:
    return item[: item.index("</summary>")]


def _assert_self_contained(html: str) -> None:
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.IGNORECASE)
    assert "http://" not in html and "https://" not in html
    assert "<link" not in html.lower()
    assert "<script" not in html.lower()
    assert "@import" not in html and "url(" not in html


def _images(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in IMG_RE.findall(html)]


# --------------------------------------------------------------------------------------------
# the report of a real audit
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real(small_audit: AuditResult) -> tuple[AuditResult, str]:
    return small_audit, small_audit.paths["report"].read_text(encoding="utf-8")


def test_opens_on_flagged_false_positives_severity_and_actions(
    real: tuple[AuditResult, str],
) -> None:
    result, html = real
    summary = result.summary
    cal = summary["calibration"]
    header = html[: html.index('<section id="flagged">')]
    flagged_card = header[header.index('id="card-flagged"') :]
    assert f"{summary['n_flagged']:,} accounts" in flagged_card[:300]
    fp_card = header[header.index('id="card-fp"') :]
    estimate = cal["expected_normal_flagged"]["estimate"]
    lo, hi = cal["expected_normal_flagged"]["interval_95"]
    assert f"≈ {estimate:.1f} or fewer" in fp_card[:600]
    assert f"95 % interval {lo}–{hi}" in fp_card[:600]
    measured = cal["measured_normal_flagged"]
    assert f"{measured['count']:,} of {measured['of']:,} normal accounts" in fp_card[:800]
    for band in ("critical", "high", "elevated"):
        assert f'<span class="pill {band}">{band}</span>' in header
    for action in ("enforce", "review", "watch"):
        assert f'<span class="pill {action}">{action}</span>' in header
    assert cal["note"] and cal["note"].split(":")[0] in header  # small log: the note is shown
    # the lists come first, the figures after them
    order = ["flagged", "watch", "linked", "ranks", "labels", "background", "about"]
    positions = [html.index(f'<section id="{s}">') for s in order]
    assert positions == sorted(positions)
    assert "Score distribution" not in html  # the flat histogram is gone
    _assert_self_contained(html)


def test_one_list_one_row_per_campaign_with_all_members(real: tuple[AuditResult, str]) -> None:
    result, html = real
    acc, camps = result.accounts, result.campaigns
    assert camps is not None
    flagged_list = _section(html, "flagged")
    items = _items(flagged_list)
    suspicious = camps.filter(pl.col("lift") > 0)
    benign = camps.filter(pl.col("lift") == 0)
    assert suspicious.height >= 2 and benign.height >= 1
    # every flagged account is in the list: as a member of its campaign's row, or its own row
    in_susp = pl.col("campaign_id").is_in(suspicious["campaign_id"].implode()).fill_null(False)
    solo = acc.filter(pl.col("flagged") & ~in_susp)
    assert len(items) == suspicious.height + solo.height
    for camp in suspicious.iter_rows(named=True):
        rows = [i for i in items if camp["campaign_id"] in _summary(i)]
        assert len(rows) == 1, camp["campaign_id"]  # ONE row per campaign
        row = rows[0]
        assert row.startswith("campaign")
        assert camp["evidence"][0] in _summary(row)  # its evidence sentence, in the row itself
        assert f"{camp['n_members']:,} accounts" in _summary(row)
        members = camp["members"]
        body = row[row.index("</summary>") :]
        assert all(m in body for m in members)  # ALL its members, however many
        assert body.count('<tr><td class="id">') == len(members)
        assert f"All {len(members):,} members" in body
    assert "more</span>" not in flagged_list and "… and" not in flagged_list
    # highest score first
    scores = [float(re.search(r'class="score">([\d.]+)<', _summary(i)).group(1)) for i in items]  # type: ignore[union-attr]
    assert scores == sorted(scores, reverse=True)
    # a benign group is "linked, not suspicious", never a row of the flagged list
    linked = _section(html, "linked")
    for cid in benign["campaign_id"]:
        assert cid not in "".join(_summary(i) for i in items)
        assert cid in linked
    assert '<details class="fold">' in linked  # collapsed


def test_every_member_shows_its_context(real: tuple[AuditResult, str]) -> None:
    result, html = real
    acc = result.accounts
    flagged_list = _section(html, "flagged")
    member = acc.filter(pl.col("flagged")).row(0, named=True)
    row = flagged_list[flagged_list.index(f'<tr><td class="id">{member["account_id"]}') :]
    row = row[: row.index("</tr>")]
    assert member["severity"] == severity(member["score"]) == "critical"
    assert '<span class="pill critical">critical</span>' in row
    assert score_reading(member["score"]) in row
    assert f'<span class="pill {member["action"]}">' in row
    assert f'<td class="num">{member["requests"]:,}</td>' in row
    assert member["first_seen"].strftime("%Y-%m-%d %H:%M") in row
    top_ip = member["top_ips"][0]
    assert f"{top_ip['value']}</span> ({top_ip['requests']:,})" in row
    assert member["top_api_keys"][0]["value"] in row
    assert member["top_user_agents"][0]["value"][:20] in row
    own = [r for r in member["reasons"] if not r.startswith("member of campaign")]
    assert own and all(r.split(" — ")[0] in row for r in own)
    # the campaign's activity picture is in its row
    first = _items(flagged_list)[0]
    assert "requests per hour of the campaign" in first
    assert all(img.startswith(b"\x89PNG\r\n\x1a\n") for img in _images(html))


def test_watch_list_has_the_strongest_accounts_below_the_threshold(
    real: tuple[AuditResult, str],
) -> None:
    result, html = real
    acc = result.accounts
    watch = _section(html, "watch")
    expected = acc.filter((pl.col("action") == "watch") & pl.col("campaign_id").is_null()).sort(
        "score", descending=True
    )
    assert expected.height > 0
    items = _items(watch)
    assert expected["account_id"][0] in _summary(items[0])
    assert all(not r for r in acc.filter(pl.col("action") == "watch")["flagged"])


# --------------------------------------------------------------------------------------------
# synthetic tables: odd input, escaping, solo accounts, no flags
# --------------------------------------------------------------------------------------------


def _frames(
    seed: int = 7, n: int = N_ACCOUNTS
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame, dict[str, Any]]:
    """Accounts without the audit's context columns (an older accounts.parquet), labels,
    three campaigns and their links."""
    rng = np.random.default_rng(seed)
    ids = [f"acct_{i:05d}" for i in range(n)]
    is_attack = np.zeros(n, dtype=bool)
    is_attack[rng.choice(n, size=60, replace=False)] = True
    score = np.where(is_attack, rng.uniform(99.8, 99.999, n), rng.beta(1.2, 8, n) * 100)
    threshold = 99.9
    flagged = score >= threshold
    campaign = np.array([None] * n, dtype=object)
    attack_idx = np.flatnonzero(is_attack)
    for j, i in enumerate(attack_idx[:36]):
        campaign[i] = f"camp_{j % 3}"
    reasons: list[list[str]] = []
    for i in range(n):
        r = [f"cot_rate high: {score[i]:.0f}% vs typical 0% — reasoning harvesting"]
        if i % 2 == 0:
            r.append("bench_rate high: <script>alert('x')</script> — benchmark items")
        reasons.append(r if score[i] >= 95 else [])
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
        is_attack, rng.choice(ATTACK_ARCHETYPES, n), rng.choice(NORMAL_ARCHETYPES, n)
    )
    labels = pl.DataFrame({"account_id": ids, "is_attack": is_attack, "archetype": archetype})
    camp_ids = ["camp_0", "camp_1", "camp_2"]
    members = {c: [ids[i] for i in range(n) if campaign[i] == c] for c in camp_ids}
    campaigns = pl.DataFrame(
        {
            "campaign_id": camp_ids,
            "score": [99.99, 99.95, 41.2],
            "n_members": [len(members[c]) for c in camp_ids],
            "members": [members[c] for c in camp_ids],
            "evidence": [
                ["12 accounts sharing 3 prompt templates", "same /24 <b>range</b>"],
                ["12 accounts sharing 1 system prompt"],
                ["12 accounts sharing 1 IP range"],
            ],
            "lift": [2.0, 1.5, 0.0],
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
    summary: dict[str, Any] = {
        "n_accounts": n,
        "n_events": 123_456,
        "n_flagged": int(flagged.sum()),
        "threshold": threshold,
        "target_fpr": 0.001,
        "model": {"distillguard": "v<1>", "n_train": n, "supervised": False},
        "metrics": {"roc_auc": 0.987, "pr_auc": 0.91, "recall_at_fpr": {"0.001": 0.62}},
    }
    return accounts, labels, campaigns, links, summary


@pytest.fixture(scope="module")
def frames() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame, dict[str, Any]]:
    return _frames()


@pytest.fixture(scope="module")
def full_html(frames: tuple[Any, ...], tmp_path_factory: pytest.TempPathFactory) -> str:
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


def test_tables_without_context_columns(frames: tuple[Any, ...], full_html: str) -> None:
    accounts = frames[0]
    html = full_html
    assert "<title>audit &lt;test&gt;</title>" in html
    flagged_list = _section(html, "flagged")
    items = _items(flagged_list)
    in_camp = pl.col("campaign_id").is_in(["camp_0", "camp_1"]).fill_null(False)
    solo = accounts.filter(pl.col("flagged") & ~in_camp)
    assert solo.height > 0
    assert len(items) == 2 + solo.height  # two suspicious campaigns, every solo flagged account
    for acct in solo["account_id"]:
        assert sum(acct in _summary(i) for i in items) == 1
    # severity and action are derived when the table lacks them
    assert '<span class="pill enforce">' in flagged_list
    # camp_2 (lift 0) is a linked group, not a campaign row; its flagged members are rows of
    # their own that say so
    assert "camp_2" in _section(html, "linked")
    assert not [i for i in items if i.startswith("campaign") and "camp_2" in _summary(i)]
    assert "linked to group camp_2 (not suspicious)" in flagged_list
    assert "same /24 &lt;b&gt;range&lt;/b&gt;" in html
    assert "&lt;script&gt;" in html and "<script>" not in html
    assert "v&lt;1&gt;" in html  # model version, escaped
    # no calibration section in this summary: the card falls back to the target rate
    assert "≤ 2.0" in html[: html.index('<section id="flagged">')]
    _assert_self_contained(html)
    # no context: the cells say so instead of failing
    assert "— requests" not in html
    assert (
        len(_images(html)) == 4
    )  # rank, archetypes, features, linkage; no activity without context


def test_no_flags_and_no_campaigns(frames: tuple[Any, ...]) -> None:
    accounts, _, campaigns, _, summary = frames
    quiet = accounts.with_columns(pl.lit(False).alias("flagged"), pl.col("score") * 0.9)
    html = render_report(quiet, FEATURES, summary, campaigns=campaigns.clear())
    assert "No account is flagged" in html
    assert 'id="linked"' not in html and 'id="labels"' not in html
    assert len(_images(html)) == 1  # the rank figure only (no flagged accounts to compare)


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


def test_network_capped(frames: tuple[Any, ...]) -> None:
    accounts, _, _, _, summary = frames
    rng = np.random.default_rng(3)
    ids = accounts["account_id"].to_list()
    # 25 campaigns of 30 accounts: 750 linked accounts, more than the ~400 drawn.
    members = [ids[k * 30 : (k + 1) * 30] for k in range(25)]
    camp_ids = [f"c{k:02d}" for k in range(25)]
    campaigns = pl.DataFrame(
        {
            "campaign_id": camp_ids,
            "score": np.linspace(99.99, 50, 25),
            "n_members": [30] * 25,
            "members": members,
            "evidence": [["30 accounts sharing 1 ASN"]] * 25,
        }
    )
    edges = [
        (m[a], m[(a + step) % 30], float(rng.random()), c)
        for c, m in zip(camp_ids, members, strict=True)
        for a in range(30)
        for step in (1, int(rng.integers(2, 29)))
    ]
    links = pl.DataFrame(edges, schema=["src", "dst", "weight", "campaign_id"], orient="row")
    table = accounts.with_columns(pl.lit(None, dtype=pl.String).alias("campaign_id"))
    html = render_report(table, [], summary, campaigns=campaigns, links=links)
    shown = re.search(r"([\d,]+) of ([\d,]+) linked accounts", html)
    assert shown is not None
    assert int(shown.group(1).replace(",", "")) <= 400
    assert int(shown.group(2).replace(",", "")) == 750


def test_write_report_positional(frames: tuple[Any, ...], tmp_path: Path) -> None:
    accounts, _, _, _, summary = frames
    out = write_report(str(tmp_path / "r.html"), accounts, FEATURES[:1], summary)
    assert isinstance(out, Path) and out.exists()
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
