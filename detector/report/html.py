"""The offline audit's self-contained HTML report.

:func:`render_report` turns the audit's account table (scores, severity, suggested action and
the per-account context of :mod:`detector.context`), the campaigns and ``summary.json`` into
one HTML document that opens on what an analyst acts on:

1. **Cards**: the flagged accounts (how many in campaigns, how many alone), the estimated false
   positives among them (``summary["calibration"]``: normal accounts expected above the
   threshold with a 95 % interval, and the measured count when labels were given), the
   severity bands, the suggested actions and the threshold.
2. **Flagged, highest score first**: suspicious campaigns with a flagged member and flagged
   accounts outside them, in ONE list (:mod:`detector.report.rows`). A campaign is one row
   with its evidence sentence; opened, it shows all its evidence, its members' activity per
   hour and every member (score, severity, action, requests, first / last seen, IPs and ranges,
   keys, user agents, own reasons). An account row opens on the same context and every reason.
3. **Watch list** (not flagged: critical / high accounts, suspicious campaigns without a flagged
   member) and **linked, not suspicious** groups (collapsed).
4. **Scores by rank** with the severity bands and the threshold; with labels, the metrics and
   recall / false-positive rate per archetype; then background figures (flagged vs. other
   feature distributions, the linkage picture) and how to read the report.

Everything is inside the file: inline CSS, no scripts, no external links, figures embedded as
base64 PNG (:mod:`detector.report.plots`). All text from the data goes through Jinja2
autoescaping.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from jinja2 import Environment

from detector.report import fmt
from detector.report.network import network_figure
from detector.report.plots import (
    MAX_FEATURE_PANELS,
    archetype_figure,
    features_figure,
    rank_figure,
)
from detector.report.rows import Period, action_counts, build_lists, severity_counts
from detector.severity import bands_text
from detector.triage import campaign_actions, with_actions

__all__ = ["render_report", "write_report"]


def _with_labels(accounts: pl.DataFrame, labels: pl.DataFrame | None) -> pl.DataFrame:
    if labels is None:
        return accounts
    cols = [c for c in ("is_attack", "archetype") if c in labels.columns]
    lab = labels.select(pl.col("account_id").cast(pl.String), *cols).unique(
        "account_id", keep="first"
    )
    lab = lab.rename({c: f"_label_{c}" for c in cols})
    return accounts.join(lab, on="account_id", how="left")


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
            rate_f = fmt.as_float(rate)
            rows.append(
                {
                    "archetype": str(name),
                    "kind": kind,
                    "n": int(info.get("n", 0) or 0),
                    "rate": rate_f if rate_f is not None else 0.0,
                    "rate_text": fmt.pct(rate_f),
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
                "rate_text": fmt.pct(rate),
            }
        )
    return rows, True


def _metric_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    if "roc_auc" in metrics:
        rows.append(("ROC AUC", fmt.fmt(fmt.as_float(metrics["roc_auc"]))))
    if "pr_auc" in metrics:
        rows.append(("PR AUC (average precision)", fmt.fmt(fmt.as_float(metrics["pr_auc"]))))
    for fpr, recall in (metrics.get("recall_at_fpr") or {}).items():
        fpr_f = fmt.as_float(fpr)
        label = fmt.pct(fpr_f) if fpr_f is not None else str(fpr)
        rows.append((f"recall at FPR {label}", fmt.pct(fmt.as_float(recall))))
    ttd = metrics.get("time_to_detect")
    if isinstance(ttd, dict):
        hours = fmt.as_float(ttd.get("median_hours"))
        reqs = fmt.as_float(ttd.get("median_requests"))
        rows.append(("time to detect, median", "—" if hours is None else f"{hours:.3g} h"))
        rows.append(("requests before detection, median", fmt.fmt(reqs)))
        if "detected_share" in ttd:
            rows.append(("attack accounts detected", fmt.pct(fmt.as_float(ttd["detected_share"]))))
    camp = metrics.get("campaigns")
    if isinstance(camp, dict):
        for key, value in camp.items():
            if isinstance(value, dict | list):
                continue
            label = (
                "campaign ARI (adjusted Rand index)"
                if key == "ari"
                else (f"campaigns: {fmt.humanize(key)}")
            )
            rows.append((label, fmt.fmt_keyed(key, value)))
    known = {"roc_auc", "pr_auc", "recall_at_fpr", "by_archetype", "time_to_detect", "campaigns"}
    for key, value in metrics.items():
        if key not in known and not isinstance(value, dict | list):
            rows.append((fmt.humanize(key), fmt.fmt_keyed(key, value)))
    return rows


def _false_positives(summary: dict[str, Any], n_flagged: int) -> dict[str, str]:
    """The card on the false positives expected among the flagged accounts."""
    cal = summary.get("calibration")
    if not isinstance(cal, dict) or "expected_normal_flagged" not in cal:
        target = fmt.as_float(summary.get("target_fpr"))
        n = summary.get("n_accounts")
        if target is None or not isinstance(n, int | float):
            return {"value": "—", "sub": "no calibration in the summary", "measured": ""}
        return {
            "value": f"≤ {target * float(n):.1f}",
            "sub": f"the target rate {fmt.pct(target)} times {fmt.fmt(n)} accounts",
            "measured": "",
        }
    exp = cal["expected_normal_flagged"]
    lo, hi = exp.get("interval_95") or [None, None]
    out = {
        "value": f"≈ {float(exp['estimate']):.1f} or fewer",
        "sub": (
            f"normal accounts expected among the {n_flagged:,} flagged "
            f"(95 % interval {lo}–{hi}; target rate {fmt.pct(cal.get('target_fpr'))})"
        ),
        "measured": "",
    }
    measured = cal.get("measured_normal_flagged")
    if isinstance(measured, dict):
        out["measured"] = (
            f"against the labels: {measured['count']:,} of {measured['of']:,} normal accounts "
            "flagged"
        )
    return out


def _subtitle(summary: dict[str, Any], period: Period) -> str:
    parts = []
    inputs = [Path(str(p)).name for p in summary.get("inputs") or []]
    if inputs:
        parts.append(
            ", ".join(inputs[:3]) + (f" +{len(inputs) - 3} more" if len(inputs) > 3 else "")
        )
    if period.start is not None and period.end is not None:
        parts.append(f"{fmt.period(period.start, period.end)} UTC")
    if summary.get("n_accounts") is not None:
        parts.append(f"{fmt.fmt(summary['n_accounts'])} accounts")
    if summary.get("n_events") is not None:
        parts.append(f"{fmt.fmt(summary['n_events'])} requests")
    model = summary.get("model")
    if isinstance(model, dict) and model.get("n_train") is not None:
        kind = "supervised" if model.get("supervised") else "unsupervised"
        parts.append(f"model: {kind}, fitted on {fmt.fmt(model['n_train'])} accounts")
    return " · ".join(parts)


def _model_items(summary: dict[str, Any]) -> list[tuple[str, str]]:
    model = summary.get("model") or {}
    if not isinstance(model, dict):
        return []
    return [
        (fmt.humanize(k), fmt.fmt_keyed(k, v))
        for k, v in model.items()
        if not isinstance(v, dict | list) and v is not None
    ]


def _network(links: pl.DataFrame, acc: pl.DataFrame, order: list[str]) -> tuple[str | None, str]:
    """The linkage picture and its caption (none without ``src``/``dst`` columns)."""
    if not {"src", "dst"} <= set(links.columns):
        return None, ""
    node_campaign: dict[str, str | None] = {}
    if "campaign_id" in acc.columns:
        node_campaign = dict(
            acc.select("account_id", pl.col("campaign_id").cast(pl.String))
            .drop_nulls("campaign_id")
            .iter_rows()
        )
    img, n_nodes, n_total, n_edges, e_total = network_figure(links, node_campaign, order)
    return img, (
        f"{n_nodes:,} of {n_total:,} linked accounts and {n_edges:,} of {e_total:,} links shown, "
        "coloured by campaign; thicker lines are stronger links."
    )


def render_report(
    accounts: pl.DataFrame,
    features: list[str],
    summary: dict[str, Any],
    labels: pl.DataFrame | None = None,
    campaigns: pl.DataFrame | None = None,
    links: pl.DataFrame | None = None,
    title: str = "distillguard audit",
) -> str:
    """Render the audit report as one self-contained HTML document (see the module docstring).

    ``accounts``: one row per account (``account_id, score, flagged, reasons, campaign_id``, the
    ``features`` columns, and — as the audit writes them — ``severity, action, action_why`` and
    the context columns; severity and action are derived here when absent). ``summary``: the
    audit's ``summary.json``. ``campaigns`` and ``links`` (``src, dst, weight, campaign_id``) add
    the campaign rows and the linkage picture."""
    acc = accounts.with_columns(pl.col("account_id").cast(pl.String))
    if "flagged" not in acc.columns:
        thr = fmt.as_float(summary.get("threshold"))
        acc = acc.with_columns(
            (pl.col("score") >= thr if thr is not None else pl.lit(False)).alias("flagged")
        )
    if "action" not in acc.columns:
        acc = with_actions(acc, campaigns)
    acc = _with_labels(acc, labels)
    has_labels = labels is not None
    period = Period(None, None)
    if {"first_seen", "last_seen"} <= set(acc.columns):
        period = Period(acc["first_seen"].min(), acc["last_seen"].max())  # type: ignore[arg-type]
    camp = (
        campaign_actions(campaigns, acc)
        if campaigns is not None and campaigns.height and "campaign_id" in acc.columns
        else None
    )
    lists = build_lists(acc, camp, period)

    cal_raw = summary.get("calibration")
    cal: dict[str, Any] = cal_raw if isinstance(cal_raw, dict) else {}
    threshold = fmt.as_float(cal.get("threshold", summary.get("threshold")))
    target = fmt.as_float(cal.get("target_fpr", summary.get("target_fpr")))
    n_ref = cal.get("n_reference")
    threshold_sub = f"top {fmt.pct(target)} of normal accounts" if target is not None else ""
    if n_ref is not None:
        threshold_sub += f": {fmt.fmt(n_ref)} reference accounts ({cal.get('reference')})"
    n_flagged = lists.n_flagged_accounts
    n_camps = sum(1 for r in lists.flagged if r.kind == "campaign")
    flagged_split = (
        f"{n_camps:,} campaign{'s' if n_camps != 1 else ''} "
        f"({lists.n_flagged_in_campaigns:,} flagged accounts) and "
        f"{lists.n_flagged_solo:,} account{'s' if lists.n_flagged_solo != 1 else ''} on "
        f"{'their' if lists.n_flagged_solo != 1 else 'its'} own"
    )

    # score against rank
    ranked = acc.sort(["score", "account_id"], descending=[True, False], nulls_last=True)
    suspicious = {r.id for r in lists.flagged + lists.watch if r.kind == "campaign"}
    in_susp = ranked["campaign_id"].is_in(sorted(suspicious)).fill_null(False).to_numpy()
    flagged_mask = ranked["flagged"].fill_null(False).to_numpy().astype(bool)
    groups = np.where(in_susp, "campaign", np.where(flagged_mask, "solo", "other"))
    normal = None
    if has_labels and "_label_is_attack" in ranked.columns:
        normal = (~ranked["_label_is_attack"].fill_null(True)).to_numpy().astype(bool)
    scores = ranked["score"].cast(pl.Float64).fill_null(0.0).to_numpy()
    rank_img = rank_figure(scores, list(groups), threshold, normal)

    metrics = summary.get("metrics") if isinstance(summary.get("metrics"), dict) else None
    metrics_rows = _metric_rows(metrics) if metrics else []
    arch_rows: list[dict[str, Any]] = []
    arch_computed = False
    arch_img = None
    if has_labels:
        arch_rows, arch_computed = _archetype_rows(metrics, acc)
        if arch_rows:
            arch_img = archetype_figure(arch_rows)

    shown_features = list(features)[:MAX_FEATURE_PANELS]
    all_flagged = acc["flagged"].fill_null(False).to_numpy().astype(bool)
    feature_img = (
        features_figure(acc, shown_features, all_flagged)
        if shown_features and all_flagged.any()
        else None
    )
    network_img, network_note = None, ""
    if campaigns is not None and links is not None and links.height:
        order = [r.id for r in lists.flagged + lists.watch + lists.linked if r.kind == "campaign"]
        network_img, network_note = _network(links, acc, order)

    html: str = _TEMPLATE.render(
        title=title,
        subtitle=_subtitle(summary, period),
        n_flagged=n_flagged,
        flagged_split=flagged_split,
        fp=_false_positives(summary, n_flagged),
        severity_counts=severity_counts(acc),
        action_counts=action_counts(acc),
        bands=bands_text(),
        threshold=fmt.fmt(threshold),
        threshold_sub=threshold_sub,
        note=cal.get("note"),
        flagged_rows=lists.flagged,
        watch_rows=lists.watch,
        n_watch=lists.n_watch,
        linked_rows=lists.linked,
        n_linked_accounts=sum(r.n_members for r in lists.linked),
        rank_img=rank_img,
        has_labels=has_labels,
        metrics_rows=metrics_rows,
        arch_img=arch_img,
        arch_rows=arch_rows,
        arch_computed=arch_computed,
        feature_img=feature_img,
        feature_names=shown_features,
        features_dropped=max(0, len(features) - len(shown_features)),
        network_img=network_img,
        network_note=network_note,
        model_items=_model_items(summary),
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
        accounts, features, summary, labels=labels, campaigns=campaigns, links=links, title=title
    )
    out.write_text(html, encoding="utf-8")
    return out


_TEMPLATE = Environment(autoescape=True).from_string(
    resources.files("detector.report").joinpath("report.html.j2").read_text(encoding="utf-8")
)
