"""The offline audit's self-contained HTML report.

:func:`render_report` turns the scored account table (plus, optionally, ground-truth labels, the
campaigns found and their linkage edges) into one HTML document: key numbers, metrics against
labels, the top flagged accounts with their reasons, the score distribution, flagged-vs-normal
feature distributions and the campaigns with a picture of their linkage.

Everything is inside the file: inline CSS, no scripts, figures embedded as base64 PNG. Figures
are drawn on :class:`matplotlib.figure.Figure` objects with the Agg canvas (no pyplot, no global
state). All text from the data goes through Jinja2 autoescaping.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from jinja2 import Environment

__all__ = ["render_report", "write_report"]
from detector.calibration import score_reading, score_text
from detector.report.plots import (
    C_ATTACK,
    C_NORMAL,
    C_UNLABELLED,
    MAX_FEATURE_PANELS,
    MAX_MEMBERS_SHOWN,
    MAX_TABLE_ROWS,
    FloatArray,
    _archetype_figure,
    _as_float,
    _features_figure,
    _fmt,
    _fmt_keyed,
    _humanize,
    _network_figure,
    _pct,
    _score_figure,
)


def _str_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value if v is not None]


def _with_labels(accounts: pl.DataFrame, labels: pl.DataFrame | None) -> pl.DataFrame:
    if labels is None:
        return accounts
    cols = [c for c in ("is_attack", "archetype") if c in labels.columns]
    lab = labels.select(pl.col("account_id").cast(pl.String), *cols).unique(
        "account_id", keep="first"
    )
    lab = lab.rename({c: f"_label_{c}" for c in cols})
    return accounts.with_columns(pl.col("account_id").cast(pl.String)).join(
        lab, on="account_id", how="left"
    )


def _archetype_rows(
    metrics: dict[str, Any] | None, accounts: pl.DataFrame
) -> tuple[list[dict[str, Any]], bool]:
    """Per-archetype rates from ``metrics`` or, failing that, from labels and flags."""
    by_arch = (metrics or {}).get("by_archetype") or {}
    rows: list[dict[str, Any]] = []
    if by_arch:
        for name, info in by_arch.items():
            kind = str(info.get("kind", "normal"))
            rate = info.get("recall") if kind == "attack" else info.get("fp_rate")
            rate_f = _as_float(rate)
            rows.append(
                {
                    "archetype": str(name),
                    "kind": kind,
                    "n": int(info.get("n", 0) or 0),
                    "rate": rate_f if rate_f is not None else 0.0,
                    "rate_text": _pct(rate_f),
                }
            )
        return rows, False
    if "_label_archetype" not in accounts.columns or "_label_is_attack" not in accounts.columns:
        return rows, False
    agg = (
        accounts.filter(pl.col("_label_archetype").is_not_null())
        .group_by("_label_archetype")
        .agg(
            pl.col("_label_is_attack").any().alias("attack"),
            pl.len().alias("n"),
            pl.col("flagged").cast(pl.Float64).mean().alias("rate"),
        )
        .sort("_label_archetype")
    )
    for name, attack, n, rate in agg.rows():
        rows.append(
            {
                "archetype": str(name),
                "kind": "attack" if attack else "normal",
                "n": int(n),
                "rate": float(rate or 0.0),
                "rate_text": _pct(rate),
            }
        )
    return rows, True


def _metric_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    if "roc_auc" in metrics:
        rows.append(("ROC AUC", _fmt(_as_float(metrics["roc_auc"]))))
    if "pr_auc" in metrics:
        rows.append(("PR AUC (average precision)", _fmt(_as_float(metrics["pr_auc"]))))
    for fpr, recall in (metrics.get("recall_at_fpr") or {}).items():
        fpr_f = _as_float(fpr)
        label = _pct(fpr_f) if fpr_f is not None else str(fpr)
        rows.append((f"recall at FPR {label}", _pct(_as_float(recall))))
    ttd = metrics.get("time_to_detect")
    if isinstance(ttd, dict):
        hours = _as_float(ttd.get("median_hours"))
        reqs = _as_float(ttd.get("median_requests"))
        rows.append(("time to detect, median", "—" if hours is None else f"{hours:.3g} h"))
        rows.append(("requests before detection, median", _fmt(reqs)))
        if "detected_share" in ttd:
            rows.append(("attack accounts detected", _pct(_as_float(ttd["detected_share"]))))
    camp = metrics.get("campaigns")
    if isinstance(camp, dict):
        for key, value in camp.items():
            if isinstance(value, dict | list):
                continue
            label = (
                "campaign ARI (adjusted Rand index)"
                if key == "ari"
                else (f"campaigns: {_humanize(key)}")
            )
            rows.append((label, _fmt_keyed(key, value)))
    known = {"roc_auc", "pr_auc", "recall_at_fpr", "by_archetype", "time_to_detect", "campaigns"}
    for key, value in metrics.items():
        if key not in known and not isinstance(value, dict | list):
            rows.append((_humanize(key), _fmt_keyed(key, value)))
    return rows


def _score(value: Any) -> str:
    """A score with the decimals it needs to differ from its neighbours (99.9731)."""
    v = _as_float(value)
    return "—" if v is None else score_text(v)


def _reading(value: Any) -> str:
    v = _as_float(value)
    return "" if v is None else score_reading(v)


def _flagged_rows(accounts: pl.DataFrame, has_labels: bool) -> tuple[list[dict[str, Any]], int]:
    flagged = accounts.filter(pl.col("flagged").fill_null(False))
    top = flagged.sort(["score", "account_id"], descending=[True, False], nulls_last=True).head(
        MAX_TABLE_ROWS
    )
    rows: list[dict[str, Any]] = []
    for rank, rec in enumerate(top.iter_rows(named=True), start=1):
        truth = None
        if has_labels:
            arch = rec.get("_label_archetype")
            attack = rec.get("_label_is_attack")
            if arch is None and attack is None:
                truth = "unlabelled"
            else:
                truth = f"{arch or '?'} ({'attack' if attack else 'normal'})"
        rows.append(
            {
                "rank": rank,
                "account_id": str(rec["account_id"]),
                "score": _score(rec.get("score")),
                "reading": _reading(rec.get("score")),
                "campaign": rec.get("campaign_id"),
                "reasons": _str_list(rec.get("reasons")),
                "truth": truth,
                "is_attack": rec.get("_label_is_attack"),
            }
        )
    return rows, flagged.height


def _campaign_rows(campaigns: pl.DataFrame) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """Rows for the campaigns table, the extra numeric columns, and campaign ids by score."""
    base = {"campaign_id", "score", "n_members", "members", "evidence"}
    extra = [c for c in campaigns.columns if c not in base and campaigns.schema[c].is_numeric()]
    ordered = (
        campaigns.sort("score", descending=True, nulls_last=True)
        if "score" in campaigns.columns
        else campaigns
    )
    rows: list[dict[str, Any]] = []
    order: list[str] = []
    for rec in ordered.iter_rows(named=True):
        members = _str_list(rec.get("members"))
        n_members = rec.get("n_members")
        cid = str(rec.get("campaign_id"))
        order.append(cid)
        rows.append(
            {
                "campaign_id": cid,
                "score": _score(rec.get("score")),
                "n_members": _fmt(int(n_members) if n_members is not None else len(members)),
                "evidence": _str_list(rec.get("evidence")),
                "members": members[:MAX_MEMBERS_SHOWN],
                "more_members": max(0, len(members) - MAX_MEMBERS_SHOWN),
                "extra": [_fmt_keyed(c, rec.get(c)) for c in extra],
            }
        )
    return rows, extra, order


# --------------------------------------------------------------------------------------------
# template
# --------------------------------------------------------------------------------------------

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
:root { --fg:#1f2328; --muted:#59636e; --line:#d1d9e0; --bg2:#f6f8fa; --accent:#b42318; }
* { box-sizing:border-box; }
body { font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
  color:var(--fg); margin:0 auto; padding:24px 28px 48px; max-width:1180px; }
h1 { font-size:24px; margin:0 0 4px; }
h2 { font-size:18px; margin:36px 0 10px; padding-bottom:4px; border-bottom:1px solid var(--line); }
p.note, .muted { color:var(--muted); }
p.note { margin:4px 0 10px; font-size:13px; }
nav { font-size:13px; margin:6px 0 14px; }
nav a { color:var(--muted); margin-right:14px; text-decoration:none; }
nav a:hover { text-decoration:underline; }
.cards { display:flex; flex-wrap:wrap; gap:10px; margin:14px 0 6px; }
.card { border:1px solid var(--line); border-radius:6px; padding:8px 14px; min-width:130px;
  background:var(--bg2); }
.card .k { font-size:12px; color:var(--muted); }
.card .v { font-size:20px; font-weight:600; }
.card .s { font-size:12px; color:var(--muted); }
table { border-collapse:collapse; width:100%; font-size:13px; margin:6px 0 10px; }
th, td { text-align:left; vertical-align:top; padding:5px 8px;
  border-bottom:1px solid var(--line); }
th { background:var(--bg2); font-weight:600; position:sticky; top:0; }
tbody tr:nth-child(even) { background:#fbfcfd; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
table.kv { width:auto; min-width:420px; }
table.kv td:first-child { color:var(--muted); padding-right:24px; }
code, .id { font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; font-size:12px; }
ul.reasons { margin:0; padding-left:18px; }
ul.reasons li { margin:1px 0; }
.tag { display:inline-block; font-size:11px; padding:0 6px; border-radius:9px;
  background:#eef1f4; color:var(--muted); white-space:nowrap; }
.tag.attack { background:#fde8e7; color:var(--accent); }
img.fig { display:block; max-width:100%; height:auto; margin:8px 0; }
details { margin:6px 0; }
summary { cursor:pointer; color:var(--muted); font-size:13px; }
.members .id { display:inline-block; margin-right:8px; }
</style>
</head>
<body>
<header id="top">
<h1>{{ title }}</h1>
<nav>
{%- if metrics_rows or arch_img %}<a href="#metrics">metrics</a>{% endif -%}
<a href="#flagged">flagged accounts</a><a href="#scores">score distribution</a>
{%- if feature_img %}<a href="#features">features</a>{% endif -%}
{%- if campaign_rows is not none %}<a href="#campaigns">campaigns</a>{% endif -%}
</nav>
<div class="cards">
{%- for card in cards %}
<div class="card"><div class="k">{{ card.k }}</div><div class="v">{{ card.v }}</div>
{%- if card.s %}<div class="s">{{ card.s }}</div>{% endif %}</div>
{%- endfor %}
</div>
{%- if model_items %}
<p class="note">model:
{%- for k, v in model_items %} {{ k }} <code>{{ v }}</code>{% if not loop.last %} ·{% endif %}
{%- endfor %}</p>
{%- endif %}
</header>

{%- if has_labels %}
<section id="metrics">
<h2>Metrics against labels</h2>
{%- if metrics_rows %}
<table class="kv"><tbody>
{%- for k, v in metrics_rows %}
<tr><td>{{ k }}</td><td class="num">{{ v }}</td></tr>
{%- endfor %}
</tbody></table>
{%- else %}
<p class="note">The summary carries no metrics.</p>
{%- endif %}
{%- if arch_img %}
{%- if arch_computed %}
<p class="note">Per-archetype rates below are computed here from the labels and the flags.</p>
{%- endif %}
<img class="fig" alt="recall per attack archetype and false-positive rate per normal archetype"
 src="data:image/png;base64,{{ arch_img }}">
<details><summary>per-archetype numbers</summary>
<table><thead><tr><th>archetype</th><th>kind</th><th class="num">accounts</th>
<th class="num">recall / FP rate</th></tr></thead><tbody>
{%- for r in arch_rows %}
<tr><td>{{ r.archetype }}</td><td><span class="tag{{ ' attack' if r.kind == 'attack' else '' }}">
{{- r.kind }}</span></td><td class="num">{{ '{:,}'.format(r.n) }}</td>
<td class="num">{{ r.rate_text }}</td></tr>
{%- endfor %}
</tbody></table></details>
{%- endif %}
</section>
{%- endif %}

<section id="flagged">
<h2>Top flagged accounts</h2>
<p class="note">
{%- if n_flagged_rows == 0 %}No account is flagged.
{%- elif n_flagged_rows > flagged_rows|length %}The {{ flagged_rows|length }} highest-scoring of
 {{ '{:,}'.format(n_flagged_rows) }} flagged accounts.
{%- else %}All {{ '{:,}'.format(n_flagged_rows) }} flagged accounts, highest score first.
{%- endif %}</p>
{%- if flagged_rows %}
<table>
<thead><tr><th class="num">#</th><th>account</th><th class="num">score</th><th>campaign</th>
{%- if has_labels %}<th>label</th>{% endif %}<th>reasons</th></tr></thead>
<tbody>
{%- for r in flagged_rows %}
<tr><td class="num">{{ r.rank }}</td><td class="id">{{ r.account_id }}</td>
<td class="num">{{ r.score }}<br><small>{{ r.reading }}</small></td>
<td>{% if r.campaign %}<span class="id">{{ r.campaign }}</span>
{%- else %}<span class="muted">—</span>{% endif %}</td>
{%- if has_labels %}
<td><span class="tag{{ ' attack' if r.is_attack else '' }}">{{ r.truth }}</span></td>
{%- endif %}
<td>{% if r.reasons %}<ul class="reasons">
{%- for reason in r.reasons %}<li>{{ reason }}</li>{% endfor %}</ul>
{%- else %}<span class="muted">—</span>{% endif %}</td></tr>
{%- endfor %}
</tbody></table>
{%- endif %}
</section>

<section id="scores">
<h2>Score distribution</h2>
<p class="note">All {{ '{:,}'.format(n_scored) }} accounts; log-scale counts; the dashed line is the
 flagging threshold.{% if has_labels %} Bars are stacked by label.{% endif %}</p>
<img class="fig" alt="score distribution histogram" src="data:image/png;base64,{{ score_img }}">
</section>

{%- if feature_img %}
<section id="features">
<h2>Flagged vs normal</h2>
<p class="note">Distribution of {{ feature_names|length }}
 feature{{ 's' if feature_names|length != 1 }} within each group (each group's bars sum to 1);
 log x axis where the values are positive and heavy-tailed.
{%- if features_dropped %}
 {{ features_dropped }} further feature{{ 's' if features_dropped != 1 }} not shown.{% endif %}</p>
<img class="fig" alt="flagged vs normal feature distributions"
 src="data:image/png;base64,{{ feature_img }}">
</section>
{%- endif %}

{%- if campaign_rows is not none %}
<section id="campaigns">
<h2>Campaigns</h2>
{%- if campaign_summary %}
<div class="cards">
{%- for k, v in campaign_summary %}
<div class="card"><div class="k">{{ k }}</div><div class="v">{{ v }}</div></div>
{%- endfor %}
</div>
{%- endif %}
{%- if campaign_rows %}
<table>
<thead><tr><th>campaign</th><th class="num">score</th><th class="num">members</th>
{%- for c in campaign_extra %}<th class="num">{{ c }}</th>{% endfor %}
<th>evidence</th><th>member accounts</th></tr></thead>
<tbody>
{%- for r in campaign_rows %}
<tr><td class="id">{{ r.campaign_id }}</td><td class="num">{{ r.score }}</td>
<td class="num">{{ r.n_members }}</td>
{%- for v in r.extra %}<td class="num">{{ v }}</td>{% endfor %}
<td>{% if r.evidence %}<ul class="reasons">
{%- for e in r.evidence %}<li>{{ e }}</li>{% endfor %}</ul>
{%- else %}<span class="muted">—</span>{% endif %}</td>
<td class="members">{% for m in r.members %}<span class="id">{{ m }}</span> {% endfor %}
{%- if r.more_members %}<span class="muted">… and {{ '{:,}'.format(r.more_members) }} more</span>
{%- endif %}</td></tr>
{%- endfor %}
</tbody></table>
{%- else %}
<p class="note">No campaign found.</p>
{%- endif %}
{%- if network_img %}
<h3>Linkage</h3>
<p class="note">{{ network_note }}</p>
<img class="fig" alt="campaign linkage network" src="data:image/png;base64,{{ network_img }}">
{%- endif %}
</section>
{%- endif %}
</body>
</html>
"""

_ENV = Environment(autoescape=True, trim_blocks=False, lstrip_blocks=False)
_COMPILED = _ENV.from_string(_TEMPLATE)


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------


def render_report(
    accounts: pl.DataFrame,
    features: list[str],
    summary: dict[str, Any],
    labels: pl.DataFrame | None = None,
    campaigns: pl.DataFrame | None = None,
    links: pl.DataFrame | None = None,
    title: str = "distillguard audit",
) -> str:
    """Render the audit report as one self-contained HTML document.

    ``accounts`` has one row per account (``account_id``, ``score``, ``flagged``, ``reasons``,
    ``campaign_id`` and the ``features`` columns); ``summary`` carries the key numbers and, with
    labels, ``metrics``. ``campaigns`` and ``links`` add the campaigns section and its linkage
    picture. See the module docstring for what is shown.
    """
    acc = accounts
    if "flagged" not in acc.columns:
        thr = _as_float(summary.get("threshold"))
        acc = acc.with_columns(
            (pl.col("score") >= thr if thr is not None else pl.lit(False)).alias("flagged")
        )
    acc = _with_labels(acc.with_columns(pl.col("account_id").cast(pl.String)), labels)
    has_labels = labels is not None
    scores = (
        acc.get_column("score").cast(pl.Float64, strict=False).fill_null(float("nan")).to_numpy()
    )
    flagged_mask = acc.get_column("flagged").fill_null(False).cast(pl.Boolean).to_numpy()

    threshold = _as_float(summary.get("threshold"))
    target_fpr = _as_float(summary.get("target_fpr"))
    n_accounts = summary.get("n_accounts", acc.height)
    n_flagged = summary.get("n_flagged", int(flagged_mask.sum()))
    share = None
    if isinstance(n_accounts, int | float) and isinstance(n_flagged, int | float) and n_accounts:
        share = float(n_flagged) / float(n_accounts)
    cards = [
        {"k": "accounts", "v": _fmt(n_accounts), "s": ""},
        {"k": "events", "v": _fmt(summary.get("n_events")), "s": ""},
        {"k": "flagged", "v": _fmt(n_flagged), "s": f"{_pct(share)} of accounts" if share else ""},
        {
            "k": "threshold (score)",
            "v": _fmt(threshold),
            "s": f"target FPR {_pct(target_fpr)}" if target_fpr is not None else "",
        },
    ]
    model = summary.get("model") or {}
    model_items: list[tuple[str, str]] = []
    if isinstance(model, dict):
        for key in ("version", "trained_at"):
            if key in model:
                model_items.append((_humanize(key), _fmt(model[key])))
        for key, value in model.items():
            if key not in ("version", "trained_at") and not isinstance(value, dict | list):
                model_items.append((_humanize(key), _fmt_keyed(key, value)))

    # Metrics against labels.
    metrics = summary.get("metrics") if isinstance(summary.get("metrics"), dict) else None
    metrics_rows = _metric_rows(metrics) if metrics else []
    arch_rows: list[dict[str, Any]] = []
    arch_computed = False
    arch_img = None
    if has_labels:
        arch_rows, arch_computed = _archetype_rows(metrics, acc)
        if arch_rows:
            arch_img = _archetype_figure(arch_rows)

    flagged_rows, n_flagged_rows = _flagged_rows(acc, has_labels)

    # Score distribution, stacked by label when labels are given.
    groups: list[tuple[str, FloatArray, str]] = []
    if has_labels and "_label_is_attack" in acc.columns:
        truth = acc.get_column("_label_is_attack")
        attack = truth.fill_null(False).to_numpy().astype(bool)
        unknown = truth.is_null().to_numpy()
        normal = ~attack & ~unknown
        groups = [("normal", scores[normal], C_NORMAL), ("attack", scores[attack], C_ATTACK)]
        if unknown.any():
            groups.append(("unlabelled", scores[unknown], C_UNLABELLED))
    score_img = _score_figure(scores, groups, threshold)

    shown_features = list(features)[:MAX_FEATURE_PANELS]
    feature_img = (
        _features_figure(acc, shown_features, flagged_mask.astype(bool)) if shown_features else None
    )

    # Campaigns.
    campaign_rows: list[dict[str, Any]] | None = None
    campaign_extra: list[str] = []
    campaign_summary: list[tuple[str, str]] = []
    network_img = None
    network_note = ""
    if campaigns is not None:
        campaign_rows, campaign_extra, order = _campaign_rows(campaigns)
        camp_sum = summary.get("campaigns")
        if isinstance(camp_sum, dict):
            campaign_summary = [
                (_humanize(k), _fmt_keyed(k, v))
                for k, v in camp_sum.items()
                if not isinstance(v, dict | list)
            ]
        if links is not None and links.height and {"src", "dst"} <= set(links.columns):
            node_campaign: dict[str, str | None] = {}
            if "campaign_id" in acc.columns:
                node_campaign = dict(
                    acc.select("account_id", pl.col("campaign_id").cast(pl.String))
                    .drop_nulls("campaign_id")
                    .iter_rows()
                )
            network_img, n_nodes, n_total, n_edges, e_total = _network_figure(
                links, node_campaign, order
            )
            network_note = (
                f"{n_nodes:,} of {n_total:,} linked accounts and {n_edges:,} of {e_total:,} "
                "links shown, coloured by campaign; thicker lines are stronger links."
            )

    html: str = _COMPILED.render(
        title=title,
        cards=cards,
        model_items=model_items,
        has_labels=has_labels,
        metrics_rows=metrics_rows,
        arch_img=arch_img,
        arch_rows=arch_rows,
        arch_computed=arch_computed,
        flagged_rows=flagged_rows,
        n_flagged_rows=n_flagged_rows,
        n_scored=int(np.isfinite(scores).sum()),
        score_img=score_img,
        feature_img=feature_img,
        feature_names=shown_features,
        features_dropped=max(0, len(features) - len(shown_features)),
        campaign_rows=campaign_rows,
        campaign_extra=[_humanize(c) for c in campaign_extra],
        campaign_summary=campaign_summary,
        network_img=network_img,
        network_note=network_note,
    )
    return html


def write_report(
    path: str | Path,
    accounts: pl.DataFrame,
    features: list[str],
    summary: dict[str, Any],
    labels: pl.DataFrame | None = None,
    campaigns: pl.DataFrame | None = None,
    links: pl.DataFrame | None = None,
    title: str = "distillguard audit",
) -> Path:
    """Render the report (see :func:`render_report`) and write it to ``path`` as UTF-8."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    html = render_report(
        accounts,
        features,
        summary,
        labels=labels,
        campaigns=campaigns,
        links=links,
        title=title,
    )
    out.write_text(html, encoding="utf-8")
    return out
