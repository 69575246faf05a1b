"""Per-account context (detector/context.py) and suggested actions (detector/triage.py)."""

from __future__ import annotations

import polars as pl
import pytest

from detector import pipeline
from detector.audit import AuditResult
from detector.context import CONTEXT_COLUMNS, account_context
from detector.severity import severity
from detector.triage import campaign_actions, suggest, with_actions
from synthetic_logs.generate import Generated

N = 1_500  # accounts in the log of the unit cases


def test_context_adds_up_to_the_events(demo_small: Generated) -> None:
    compact = pipeline.compact_events(demo_small.events)
    ctx = account_context(compact)
    assert ctx.columns == ["account_id", *CONTEXT_COLUMNS]
    assert ctx.height == compact["account_id"].n_unique()
    assert ctx["requests"].sum() == compact.height
    assert (ctx["first_seen"] <= ctx["last_seen"]).all()
    hourly = ctx["hourly_requests"].list.eval(pl.element().struct.field("requests").sum())
    assert (hourly.list.first() == ctx["requests"]).all()
    # distinct counts and the top values agree with a direct count
    one = ctx.sort("n_ips", descending=True).row(0, named=True)
    mine = compact.filter(pl.col("account_id") == one["account_id"])
    counts = mine["ip"].value_counts(sort=True)
    assert one["n_ips"] == mine["ip"].n_unique() == counts.height
    top = [t["requests"] for t in one["top_ips"]]
    assert top == sorted(top, reverse=True) == counts["count"].head(3).to_list()
    for name in ("ip_prefixes", "api_keys", "user_agents"):
        assert (ctx[f"n_{name}"] >= ctx[f"top_{name}"].list.len()).all()


def test_audit_writes_context_and_actions(small_audit: AuditResult) -> None:
    acc = pl.read_parquet(small_audit.paths["accounts"])
    assert acc.columns[:5] == ["account_id", "score", "flagged", "reasons", "campaign_id"]
    assert set(CONTEXT_COLUMNS) | {"severity", "action", "action_why"} <= set(acc.columns)
    assert acc["requests"].sum() == small_audit.summary["n_events"]
    assert acc["severity"].to_list() == [severity(s) for s in acc["score"]]
    # every flagged account is to enforce or review, with a reason; nothing else is
    flagged = acc.filter("flagged")
    assert set(flagged["action"]) <= {"enforce", "review"} and flagged.height > 0
    assert flagged["action_why"].is_not_null().all()
    assert not acc.filter(~pl.col("flagged"))["action"].is_in(["enforce", "review"]).any()
    # members a critical suspicious campaign raised are to enforce
    lifted = flagged.filter(pl.col("reasons").list.first().str.starts_with("member of campaign"))
    assert lifted.height > 0 and (lifted["action"] == "enforce").all()


@pytest.mark.parametrize(
    ("score", "flagged", "reasons", "kwargs", "action", "why"),
    [
        # allow-listed: never acted on, whatever the score
        (99.99, False, ["allow-listed on 2026-11-02 by ana: our eval partner"], {}, None, "ana"),
        # lifted by a critical suspicious campaign
        (
            99.95,
            True,
            ["member of campaign C-1 (campaign score 99.99): 12 accounts sharing ..."],
            {"suspicious_campaign": True, "campaign_critical": True},
            "enforce",
            "campaign C-1",
        ),
        # rare enough for a log of N accounts, on two signals
        (99.9999, True, ["cot_rate high: 80%", "bench_rate high: 40%"], {}, "enforce", "2 indep"),
        # the same score on one signal only: review
        (99.9999, True, ["cot_rate high: 80%"], {}, "review", "one signal only (cot_rate)"),
        # flagged, but a normal account of this log could score this high by chance
        (99.95, True, ["cot_rate high: 80%", "bench_rate high: 40%"], {}, "review", "0.75 normal"),
        # no single strong signal
        (99.95, True, [], {}, "review", "combination of moderate signals"),
        # one IP of a multi-tenant account: act on the slice
        (
            99.99,
            True,
            ["traffic from ip 1.2.3.4 (419 requests, 11% of the account's) is on its own ..."],
            {},
            "review",
            "act on ip 1.2.3.4, not on the whole account",
        ),
        # below the threshold
        (99.5, False, ["cot_rate high: 60%"], {}, "watch", "high"),
        (96.0, False, [], {"suspicious_campaign": True}, "watch", "suspicious campaign"),
        (96.0, False, ["cot_rate high: 30%"], {}, None, ""),
        (50.0, False, [], {}, None, ""),
    ],
)
def test_suggested_action(
    score: float,
    flagged: bool,
    reasons: list[str],
    kwargs: dict[str, bool],
    action: str | None,
    why: str,
) -> None:
    got, text = suggest(score, flagged, reasons, n_accounts=N, **kwargs)
    assert got == action
    assert why in text


def test_campaign_actions_and_linked_groups() -> None:
    accounts = pl.DataFrame(
        {
            "account_id": ["a", "b", "c", "d", "e", "f", "g"],
            "score": [99.99, 99.98, 99.2, 97.0, 40.0, 30.0, 20.0],
            "flagged": [True, True, False, False, False, False, False],
            "reasons": [[], [], [], [], [], [], []],
            "campaign_id": ["C-1", "C-1", "C-2", "C-2", "C-3", "C-3", None],
        },
        schema_overrides={"reasons": pl.List(pl.String)},
    )
    campaigns = pl.DataFrame(
        {
            "campaign_id": ["C-1", "C-2", "C-3"],
            "score": [99.995, 99.3, 41.0],
            "n_members": [2, 2, 2],
            "lift": [1.0, 0.5, 0.0],
        }
    )
    out = {r["campaign_id"]: r for r in campaign_actions(campaigns, accounts).iter_rows(named=True)}
    assert out["C-1"]["action"] == "enforce" and out["C-1"]["n_flagged"] == 2
    assert out["C-2"]["action"] == "watch" and out["C-2"]["suspicious"]
    assert out["C-3"]["action"] is None and "linked, not suspicious" in out["C-3"]["action_why"]
    table = with_actions(accounts, campaigns)
    assert table.columns[:8] == [
        "account_id",
        "score",
        "flagged",
        "reasons",
        "campaign_id",
        "severity",
        "action",
        "action_why",
    ]
    # d: elevated, in a suspicious campaign -> watch; e: in a benign group -> nothing
    actions = dict(zip(table["account_id"], table["action"], strict=True))
    assert actions["d"] == "watch" and actions["e"] is None and actions["c"] == "watch"
