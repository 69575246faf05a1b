"""What the CLI prints: the audit's and the evaluation's tables for people (on stdout, with
progress and logs on stderr) and the ``--format json`` document for machines."""

from __future__ import annotations

import json
import textwrap
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import polars as pl
from rich import box
from rich.table import Table

from service.commands.app import OutputFormat
from service.commands.options import err, out

if TYPE_CHECKING:
    from detector.audit import AuditResult


def print_metrics(m: dict[str, Any]) -> None:
    rec = m.get("recall_at_fpr", {})
    out.print(
        f"ROC-AUC {m['roc_auc']:.4f}  PR-AUC {m['pr_auc']:.4f}  "
        f"recall@0.1%FPR {rec.get('0.001', float('nan')):.3f}  "
        f"recall@1%FPR {rec.get('0.01', float('nan')):.3f}",
        highlight=False,
    )
    tbl = Table(
        title="by archetype (at the flag threshold)", box=box.SIMPLE_HEAD, title_justify="left"
    )
    tbl.add_column("archetype")
    tbl.add_column("kind")
    tbl.add_column("accounts", justify="right")
    tbl.add_column("recall / FP rate", justify="right")
    for name, row in sorted(m["by_archetype"].items(), key=lambda kv: (kv[1]["kind"], kv[0])):
        val = row.get("recall", row.get("fp_rate", 0.0))
        tbl.add_row(name, row["kind"], str(row["n"]), f"{val:.3f}")
    out.print(tbl)
    cm = m.get("campaigns")
    if cm and cm.get("ari") is not None:
        out.print(
            f"campaigns: ARI {cm['ari']:.3f} against the true campaigns, "
            f"{100 * (cm['campaigns_detected'] or 0):.0f}% of true campaigns found; recall at "
            f"{100 * cm['fpr']:g}% FPR {cm['recall_without']:.3f} -> {cm['recall_with']:.3f} "
            f"with campaign evidence (campaign members {cm['member_recall_without']:.3f} -> "
            f"{cm['member_recall_with']:.3f}); normal accounts lifted: {cm['normals_lifted']}",
            highlight=False,
        )
    ttd = m.get("time_to_detect")
    if ttd and ttd.get("median_hours") is not None:
        out.print(
            f"time to detect: median {ttd['median_hours']:.1f} h, "
            f"{ttd['median_requests']:.0f} requests; {100 * ttd['detected_share']:.0f}% "
            "of attackers detected",
            highlight=False,
        )


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _print_json(doc: dict[str, Any]) -> None:
    """One JSON document on stdout, nothing else (no Rich wrapping or markup)."""
    import sys

    sys.stdout.write(json.dumps(doc, indent=2, default=_json_default) + "\n")
    sys.stdout.flush()


# the account columns of --format json (those the audit wrote; context ones when present)
JSON_ACCOUNT_COLUMNS = (
    "account_id",
    "score",
    "severity",
    "flagged",
    "action",
    "action_why",
    "campaign_id",
    "reasons",
    "requests",
    "first_seen",
    "last_seen",
    "n_ips",
    "n_ip_prefixes",
    "n_api_keys",
    "n_user_agents",
    "top_ips",
    "top_ip_prefixes",
    "top_api_keys",
    "top_user_agents",
)
JSON_CAMPAIGN_COLUMNS = (
    "campaign_id",
    "score",
    "severity",
    "suspicious",
    "action",
    "action_why",
    "n_members",
    "n_flagged",
    "requests",
    "first_seen",
    "last_seen",
    "evidence",
    "members",
)


def audit_document(result: AuditResult, top: int, with_paths: bool = True) -> dict[str, Any]:
    """``--format json``: the audit's summary, the accounts per severity band and suggested
    action, the ``top`` accounts by score and the ``top`` campaigns (suspicious first), and
    the paths of the outputs."""
    from detector.calibration import score_reading, score_text
    from detector.report.rows import action_counts, severity_counts

    table = result.accounts
    accounts = [
        {**row, "score_text": score_text(row["score"]), "reading": score_reading(row["score"])}
        for row in table.head(max(top, 0))
        .select([c for c in JSON_ACCOUNT_COLUMNS if c in table.columns])
        .iter_rows(named=True)
    ]
    doc: dict[str, Any] = {
        "summary": result.summary,
        "severity": dict(severity_counts(table)),
        "actions": dict(action_counts(table)),
        "accounts": accounts,
        "campaigns": [],
    }
    camps = _campaign_table(result)
    if camps is not None:
        doc["campaigns"] = (
            camps.head(max(top, 0))
            .select([c for c in JSON_CAMPAIGN_COLUMNS if c in camps.columns])
            .to_dicts()
        )
    if with_paths:
        doc["outputs"] = {k: str(v) for k, v in result.paths.items()}
    return doc


def _campaign_table(result: AuditResult) -> pl.DataFrame | None:
    """The campaigns with severity and suggested action, suspicious ones first, by score."""
    from detector.triage import campaign_actions

    if result.campaigns is None or result.campaigns.height == 0:
        return None
    return campaign_actions(result.campaigns, result.accounts).sort(
        ["suspicious", "score"], descending=True, nulls_last=True
    )


def show_audit(result: AuditResult, top: int, fmt: OutputFormat = OutputFormat.text) -> None:
    """An audit's results on stdout: tables for people, or one JSON document."""
    if fmt is OutputFormat.json:
        _print_json(audit_document(result, top))
        return
    print_audit(result, top)
    out.print(f"\nreport: {result.paths['report']}", highlight=False, soft_wrap=True)


def _shorten(text: str, lines: int, reserved: int = 36) -> str:
    """``text`` cut to about ``lines`` lines of the column left after ``reserved`` columns."""
    width = max(out.width - reserved, 30)
    return textwrap.shorten(text, width=width * lines, placeholder=" …")


def print_audit(result: AuditResult, top: int) -> None:
    """The audit in three short sections: what was flagged and how sure, each suspicious
    campaign once, and the strongest accounts outside campaigns (then the metrics, with
    labels)."""
    from detector.calibration import score_text

    table, summary = result.accounts, result.summary
    cal = summary["calibration"]
    expected = cal["expected_normal_flagged"]
    camps = _campaign_table(result)
    suspicious = camps.filter(pl.col("suspicious")) if camps is not None else pl.DataFrame()
    susp_ids = suspicious["campaign_id"].to_list() if suspicious.height else []
    in_susp = pl.col("campaign_id").is_in(pl.Series(susp_ids, dtype=pl.String).implode())
    solo = table.filter(~in_susp.fill_null(False))
    n_flagged = summary["n_flagged"]
    n_solo_flagged = int(solo["flagged"].sum())
    out.print(
        f"{summary['n_accounts']:,} accounts, {summary['n_events']:,} requests: "
        f"[bold]{n_flagged:,} flagged[/] ({n_flagged - n_solo_flagged:,} in "
        f"{int((suspicious['n_flagged'] > 0).sum()) if suspicious.height else 0} campaigns, "
        f"{n_solo_flagged:,} on their own) at score >= {cal['threshold']:g}, the top "
        f"{100 * cal['target_fpr']:g} % of normal accounts ({cal['n_reference']:,} reference "
        "accounts)",
        highlight=False,
    )
    out.print(
        f"estimated false positives among them: {expected['estimate']:.1f} or fewer normal "
        f"accounts (95 % interval {expected['interval_95'][0]}-{expected['interval_95'][1]})",
        highlight=False,
    )
    if cal.get("measured_normal_flagged"):
        m = cal["measured_normal_flagged"]
        out.print(
            f"against the labels: {m['count']} of {m['of']:,} normal accounts flagged "
            f"({100 * (m['rate'] or 0):.2f} %, target {100 * cal['target_fpr']:g} %)",
            highlight=False,
        )
    if cal.get("note"):
        err.print(f"[yellow]note:[/] {cal['note']}", highlight=False)
    if suspicious.height:
        n_linked = camps.height - suspicious.height if camps is not None else 0
        ctbl = Table(
            title=f"suspicious campaigns: {suspicious.height}"
            + (
                f" (and {n_linked} linked group{'s' if n_linked != 1 else ''} not suspicious: "
                "see the report)"
                if n_linked
                else ""
            ),
            box=box.SIMPLE_HEAD,
            title_justify="left",
        )
        for col in ("score", "severity", "action", "campaign"):
            ctbl.add_column(col, justify="right" if col == "score" else "left")
        for row in suspicious.head(max(top, 0)).iter_rows(named=True):
            headline = row["evidence"][0] if row["evidence"] else ""
            ctbl.add_row(
                score_text(row["score"]),
                row["severity"] or "—",
                row["action"] or "—",
                f"[bold]{row['campaign_id']}[/] · {row['n_members']} accounts, "
                f"{row['n_flagged']} flagged\n{_shorten(headline, 2)}",
            )
        out.print(ctbl)
    atbl = Table(
        title="strongest accounts outside campaigns"
        + ("" if n_solo_flagged else " (none flagged)"),
        box=box.SIMPLE_HEAD,
        title_justify="left",
    )
    for col in ("score", "severity", "action", "account"):
        atbl.add_column(col, justify="right" if col == "score" else "left")
    for row in solo.head(max(top, 0)).iter_rows(named=True):
        reasons = [r for r in row["reasons"] if not r.startswith("linked to campaign")]
        first = reasons[0].split(" — ")[0] if reasons else "a combination of moderate signals"
        requests = f" · {row['requests']:,} requests" if row.get("requests") is not None else ""
        atbl.add_row(
            score_text(row["score"]),
            row.get("severity") or "—",
            row.get("action") or "—",
            f"[bold]{row['account_id']}[/]{requests}\n{_shorten(first, 2)}",
        )
    out.print(atbl)
    if "metrics" in summary:
        print_metrics(summary["metrics"])
