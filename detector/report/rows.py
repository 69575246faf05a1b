"""The rows of the report's lists, built from the audit's account and campaign tables.

One list, highest score first, holds what an analyst acts on: each suspicious campaign with a
flagged member as ONE row (its members, all of them, in its expanded body) and each flagged
account outside such a campaign as one row. The watch list holds the same kind of rows for
what is not flagged but worth watching (:mod:`detector.triage`); groups whose typical member
is ordinary are listed apart as "linked, not suspicious".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import polars as pl

from detector.report import fmt
from detector.report.plots import activity_figure
from detector.severity import SEVERITY_BANDS, severity

# the watch list shows at most this many rows (all of them are in accounts.parquet / .csv)
MAX_WATCH_ROWS = 50
# activity pictures are drawn for this many rows of a list at most (the highest scores)
MAX_ACTIVITY_FIGURES = 40
CAMPAIGN_REASON = ("member of campaign ", "linked to campaign ")


@dataclass
class Period:
    """The span of the log: the x axis of every activity picture."""

    start: datetime | None
    end: datetime | None


@dataclass
class Row:
    """One row of a list: a campaign or an account."""

    kind: str  # "campaign" or "account"
    id: str
    score: str
    score_value: float
    reading: str
    severity: str | None
    action: str | None
    action_why: str
    requests: str
    period: str
    headline: str  # campaign: its evidence sentence; account: its first reason
    details: list[str]  # further evidence / reasons shown in the row
    evidence: list[str] = field(default_factory=list)  # everything, in the expanded body
    n_members: int = 0
    members: list[dict[str, Any]] = field(default_factory=list)
    account: dict[str, Any] | None = None  # the account's context (kind "account")
    note: str = ""
    label: str | None = None
    is_attack: bool | None = None
    activity_img: str | None = None


def _label(rec: dict[str, Any]) -> tuple[str | None, bool | None]:
    if "_label_is_attack" not in rec:
        return None, None
    arch, attack = rec.get("_label_archetype"), rec.get("_label_is_attack")
    if arch is None and attack is None:
        return "unlabelled", None
    return f"{arch or '?'} ({'attack' if attack else 'normal'})", attack


def _own_reasons(reasons: list[str]) -> list[str]:
    """An account's reasons without the campaign sentence its campaign row already shows."""
    return [r for r in reasons if not r.startswith(CAMPAIGN_REASON)]


def account_view(rec: dict[str, Any]) -> dict[str, Any]:
    """One account's cells: score, severity, action, context, reasons, label."""
    reasons = fmt.str_list(rec.get("reasons"))
    label, attack = _label(rec)
    return {
        "id": str(rec["account_id"]),
        "score": fmt.score(rec.get("score")),
        "reading": fmt.reading(rec.get("score")),
        "severity": rec.get("severity"),
        "flagged": bool(rec.get("flagged")),
        "action": rec.get("action"),
        "action_why": rec.get("action_why") or "",
        "requests": fmt.fmt(rec.get("requests")),
        "first_seen": fmt.when(rec.get("first_seen")),
        "last_seen": fmt.when(rec.get("last_seen")),
        "period": fmt.period(rec.get("first_seen"), rec.get("last_seen")),
        "ips": fmt.top_values(rec.get("top_ips"), rec.get("n_ips")),
        "ranges": fmt.top_values(rec.get("top_ip_prefixes"), rec.get("n_ip_prefixes")),
        "api_keys": fmt.top_values(rec.get("top_api_keys"), rec.get("n_api_keys"), 32),
        "agents": fmt.top_values(rec.get("top_user_agents"), rec.get("n_user_agents")),
        "reasons": reasons,
        "own_reasons": _own_reasons(reasons),
        "campaign_id": rec.get("campaign_id"),
        "label": label,
        "is_attack": attack,
        "has_context": "requests" in rec,
    }


def _account_row(rec: dict[str, Any], note: str, period: Period, draw: bool) -> Row:
    view = account_view(rec)
    reasons = view["reasons"]
    img = None
    if draw and period.start is not None and period.end is not None and rec.get("hourly_requests"):
        img = activity_figure([(view["id"], rec["hourly_requests"])], period.start, period.end)
    return Row(
        kind="account",
        id=view["id"],
        score=view["score"],
        score_value=float(rec["score"]),
        reading=view["reading"],
        severity=view["severity"],
        action=view["action"],
        action_why=view["action_why"],
        requests=view["requests"],
        period=view["period"],
        headline=fmt.reason_head(reasons[0]) if reasons else "a combination of moderate signals",
        details=[fmt.reason_head(r) for r in reasons[1:3]],
        evidence=reasons,
        account=view,
        note=note,
        label=view["label"],
        is_attack=view["is_attack"],
        activity_img=img,
    )


def _campaign_row(camp: dict[str, Any], members: pl.DataFrame, period: Period, draw: bool) -> Row:
    evidence = fmt.str_list(camp.get("evidence"))
    member_views = [account_view(m) for m in members.iter_rows(named=True)]
    img = None
    drawable = draw and period.start is not None and period.end is not None
    if drawable and "hourly_requests" in members.columns:
        pairs = zip(
            members["account_id"].to_list(), members["hourly_requests"].to_list(), strict=True
        )
        img = activity_figure(list(pairs), period.start, period.end)  # type: ignore[arg-type]
    n_members = camp.get("n_members")
    content = [e for e in evidence[1:] if e.startswith(("typical member", "members' "))]
    labels = [v["label"] for v in member_views if v["label"]]
    n_attack = sum(1 for v in member_views if v["is_attack"])
    label = None
    if labels:
        label = f"{n_attack} of {len(member_views)} labelled attack"
    return Row(
        kind="campaign",
        id=str(camp["campaign_id"]),
        score=fmt.score(camp.get("score")),
        score_value=float(camp["score"]),
        reading=fmt.reading(camp.get("score")),
        severity=camp.get("severity"),
        action=camp.get("action"),
        action_why=camp.get("action_why") or "",
        requests=fmt.fmt(camp.get("requests")),
        period=fmt.period(camp.get("first_seen"), camp.get("last_seen")),
        headline=evidence[0] if evidence else f"{n_members} linked accounts",
        details=content[:2],
        evidence=evidence,
        n_members=int(n_members) if n_members is not None else len(member_views),
        members=member_views,
        label=label,
        is_attack=(n_attack > 0) if labels else None,
        activity_img=img,
    )


@dataclass
class Lists:
    flagged: list[Row]
    watch: list[Row]
    n_watch: int
    linked: list[Row]
    n_flagged_accounts: int
    n_flagged_solo: int
    n_flagged_in_campaigns: int


def build_lists(accounts: pl.DataFrame, campaigns: pl.DataFrame | None, period: Period) -> Lists:
    """The flagged list, the watch list and the linked-not-suspicious groups.

    ``accounts``: the audit's table with ``severity``/``action`` (:mod:`detector.triage`) and,
    when the audit computed it, the context (:mod:`detector.context`); ``campaigns``: the
    campaign table with ``severity``, ``suspicious``, ``n_flagged``, ``action``
    (:func:`detector.triage.campaign_actions`)."""
    acc = accounts.sort(["score", "account_id"], descending=[True, False], nulls_last=True)
    suspicious: set[str] = set()
    camp_rows: list[dict[str, Any]] = []
    if campaigns is not None and campaigns.height:
        camp_rows = list(campaigns.sort("score", descending=True).iter_rows(named=True))
        suspicious = {str(c["campaign_id"]) for c in camp_rows if c.get("suspicious")}
    in_susp = pl.col("campaign_id").is_in(pl.Series(sorted(suspicious), dtype=pl.String).implode())
    if "campaign_id" not in acc.columns:
        acc = acc.with_columns(pl.lit(None, dtype=pl.String).alias("campaign_id"))
    in_susp = in_susp.fill_null(False)
    flagged = pl.col("flagged").fill_null(False)
    solo_flagged = acc.filter(flagged & ~in_susp)
    solo_watch = acc.filter(~flagged & ~in_susp & (pl.col("action") == "watch"))
    by_campaign = acc.filter(pl.col("campaign_id").is_not_null()).partition_by(
        "campaign_id", as_dict=True, include_key=True
    )
    members_of = {str(k[0]): v for k, v in by_campaign.items()}
    empty = acc.clear()

    def note_for(rec: dict[str, Any]) -> str:
        cid = rec.get("campaign_id")
        return f"linked to group {cid} (not suspicious)" if cid else ""

    flagged_rows: list[Row] = []
    watch_rows: list[Row] = []
    linked_rows: list[Row] = []
    for camp in camp_rows:
        cid = str(camp["campaign_id"])
        members = members_of.get(cid, empty)
        if cid not in suspicious:
            linked_rows.append(_campaign_row(camp, members, period, draw=False))
        elif int(camp.get("n_flagged") or 0) > 0:
            flagged_rows.append(_campaign_row(camp, members, period, draw=True))
        else:
            watch_rows.append(_campaign_row(camp, members, period, draw=False))
    flagged_rows += [
        _account_row(r, note_for(r), period, draw=True) for r in solo_flagged.iter_rows(named=True)
    ]
    flagged_rows.sort(key=lambda r: (-r.score_value, r.kind, r.id))
    for i, row in enumerate(flagged_rows):
        if i >= MAX_ACTIVITY_FIGURES:
            row.activity_img = None
    watch_rows += [
        _account_row(r, note_for(r), period, draw=False)
        for r in solo_watch.head(MAX_WATCH_ROWS).iter_rows(named=True)
    ]
    watch_rows.sort(key=lambda r: (-r.score_value, r.kind, r.id))
    n_watch_campaigns = sum(1 for r in watch_rows if r.kind == "campaign")
    n_watch = n_watch_campaigns + solo_watch.height
    n_flagged = int(acc.select(flagged.sum()).item())
    return Lists(
        flagged=flagged_rows,
        watch=watch_rows[:MAX_WATCH_ROWS],
        n_watch=n_watch,
        linked=linked_rows,
        n_flagged_accounts=n_flagged,
        n_flagged_solo=solo_flagged.height,
        n_flagged_in_campaigns=n_flagged - solo_flagged.height,
    )


def severity_counts(accounts: pl.DataFrame) -> list[tuple[str, int]]:
    """Accounts per severity band, most severe first."""
    sev = (
        accounts["severity"]
        if "severity" in accounts.columns
        else accounts["score"].map_elements(severity, return_dtype=pl.String)
    )
    counts = sev.value_counts()
    found = dict(zip(counts[sev.name].to_list(), counts["count"].to_list(), strict=True))
    return [(name, int(found.get(name, 0))) for name, _ in SEVERITY_BANDS]


def action_counts(accounts: pl.DataFrame) -> list[tuple[str, int]]:
    counts = accounts["action"].value_counts()
    found = dict(zip(counts["action"].to_list(), counts["count"].to_list(), strict=True))
    return [(name, int(found.get(name, 0))) for name in ("enforce", "review", "watch")]
