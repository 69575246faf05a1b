"""What an analyst should do about a scored account or campaign: enforce, review or watch.

The score says how unusual an account is, the severity band (:mod:`detector.severity`) how
far into the tail of normal traffic, and the reasons why. The suggested action adds what the
pipeline knows about how much to trust that: whether a campaign of linked accounts with the
same unusual profile corroborates it, how many independent signals it rests on, how many
normal accounts a log this size is expected to put that high by chance, and whether the
unusual traffic is the whole account or one IP / key of a multi-tenant one.

Accounts (:func:`suggest`), first rule that applies:

- **none** — allow-listed by an analyst (a reason starting ``allow-listed``): never acted on.
- **enforce** — flagged, and either
  (a) a member whose score a *suspicious* campaign raised (its typical member is unusual on its
  own, see :mod:`detector.campaigns.scoring`), the campaign itself in the ``critical`` band:
  many linked accounts sharing infrastructure and the same unusual profile are not chance; or
  (b) on its own so rare that fewer than :data:`ENFORCE_EXPECTED_NORMALS` normal accounts of a
  log this size are expected to score as high (accounts × (1 − score / 100)), on at least
  :data:`ENFORCE_MIN_SIGNALS` independent signals (features named in its reasons).
- **review** — every other flagged account: one signal only, or no single strong signal (a
  combination of moderate ones), or a score a normal account of this log could reach by chance,
  or the unusual traffic is one IP / key slice of a multi-tenant account (act on that slice,
  not on the account and its other customers). The normal accounts the audit expects among
  the flagged ones should fall here: the campaign lift raised none in the labelled scenarios
  (``normals_lifted`` of the campaign metrics), so they are flagged on their own.
- **watch** — not flagged but ``critical`` or ``high``, or ``elevated`` and linked to a
  suspicious campaign: nothing to do yet; the live service re-scores it as traffic arrives.
- **none** — the rest.

Campaigns (:func:`campaign_actions`): **enforce** a suspicious campaign in the ``critical``
band with flagged members (on those members), **review** one with flagged members below
``critical``, **watch** a suspicious one with no member flagged; a group whose typical member is
ordinary is *linked, not suspicious* (a company behind one NAT, colleagues sharing an e-mail
domain) and gets no action.

>>> action, why = suggest(99.9999, True, ["cot_rate high: 80%", "bench_rate high: 40%"],
...                       n_accounts=1500)
>>> action
'enforce'
>>> print(why)  # doctest: +NORMALIZE_WHITESPACE
critical (rarer than 1 in 1,000,000 normal accounts) on 2 independent signals
(cot_rate, bench_rate); 0.0015 normal accounts of 1,500 expected this high
>>> suggest(99.95, True, ["cot_rate high: 80%"], n_accounts=1500)[0]
'review'
>>> suggest(99.2, False, [], n_accounts=1500)
('watch', 'high (rarer than 1 in 130 normal accounts), below the flag threshold')
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import polars as pl

from detector.calibration import score_reading
from detector.severity import severity

ACTIONS = ("enforce", "review", "watch")
# (b) above: a solo account is enforced when fewer normal accounts than this are expected to
# score as high in a log of its size, on at least this many distinct signals
ENFORCE_EXPECTED_NORMALS = 0.05
ENFORCE_MIN_SIGNALS = 2

_FEATURE = re.compile(r"^(\w+) (?:high|low):")
_SLICE_DETAIL = re.compile(r"^(?:ip|api_key_id) \S+: (\w+) (?:high|low):")


def _signals(reasons: Sequence[str]) -> list[str]:
    """The distinct features named in the account's own reasons, or its slice's."""
    out: list[str] = []
    for r in reasons:
        m = _FEATURE.match(r) or _SLICE_DETAIL.match(r)
        if m and m.group(1) not in out:
            out.append(m.group(1))
    return out


def _expected(score: float, n_accounts: int) -> float:
    return max(n_accounts * (100.0 - score) / 100.0, 0.0)


def _normals(x: float) -> str:
    """``0.0015 normal accounts``, ``1 normal account``."""
    n = f"{x:.2g}" if x < 10 else f"{x:,.0f}"
    return f"{n} normal account{'' if n == '1' else 's'}"


def suggest(
    score: float,
    flagged: bool,
    reasons: Sequence[str],
    *,
    n_accounts: int,
    suspicious_campaign: bool = False,
    campaign_critical: bool = False,
) -> tuple[str | None, str]:
    """``(action, why)`` for one account (see the module docstring); ``action`` is None for no
    action. ``suspicious_campaign``: the account belongs to a suspicious campaign;
    ``campaign_critical``: that campaign's score is in the critical band."""
    sev = severity(score)
    reading = score_reading(score)
    first = reasons[0] if reasons else ""
    for r in reasons:
        if r.startswith("allow-listed"):
            return None, r
    lifted = first.startswith("member of campaign")
    if flagged:
        if lifted and campaign_critical:
            cid = first.split(" ")[3]
            return "enforce", (
                f"{sev} ({reading}) as one of the linked accounts of campaign {cid}, which "
                "share infrastructure and the same unusual profile"
            )
        if first.startswith("traffic from "):
            what = first[len("traffic from ") :].split(" (")[0]
            return "review", (
                f"only the traffic from {what} is unusual in this multi-tenant account: "
                f"act on {what}, not on the whole account"
            )
        signals = _signals(reasons)
        expected = _expected(score, n_accounts)
        if (
            sev == "critical"
            and expected < ENFORCE_EXPECTED_NORMALS
            and len(signals) >= ENFORCE_MIN_SIGNALS
        ):
            return "enforce", (
                f"critical ({reading}) on {len(signals)} independent signals "
                f"({', '.join(signals)}); {_normals(expected)} of {n_accounts:,} expected "
                "this high"
            )
        if not signals:
            basis = "a combination of moderate signals, none strong alone"
        elif len(signals) == 1:
            basis = f"one signal only ({signals[0]})"
        else:
            basis = f"{len(signals)} signals ({', '.join(signals)})"
        chance = (
            f"; {_normals(expected)} of {n_accounts:,} expected this high"
            if expected >= ENFORCE_EXPECTED_NORMALS
            else ""
        )
        return "review", f"{sev or 'flagged'} on {basis}{chance}: confirm before acting"
    if sev in ("critical", "high"):
        return "watch", f"{sev} ({reading}), below the flag threshold"
    if sev == "elevated" and suspicious_campaign:
        return "watch", f"elevated ({reading}) and linked to a suspicious campaign"
    return None, ""


def suspicious_campaigns(campaigns: pl.DataFrame | None) -> pl.DataFrame:
    """``campaign_id, suspicious, campaign_critical`` of a campaign table: suspicious when its
    evidence lifts members (``lift > 0``; without a ``lift`` column: a score in a severity
    band)."""
    schema = {"campaign_id": pl.String, "suspicious": pl.Boolean, "campaign_critical": pl.Boolean}
    if campaigns is None or campaigns.height == 0:
        return pl.DataFrame(schema=schema)
    susp = (
        pl.col("lift").fill_null(0.0) > 0
        if "lift" in campaigns.columns
        else pl.col("score") >= 95.0
    )
    return campaigns.select(
        pl.col("campaign_id").cast(pl.String),
        susp.alias("suspicious"),
        (pl.col("score").map_elements(severity, return_dtype=pl.String) == "critical")
        .fill_null(False)
        .alias("campaign_critical"),
    ).cast(schema)  # type: ignore[arg-type]


def with_actions(accounts: pl.DataFrame, campaigns: pl.DataFrame | None) -> pl.DataFrame:
    """``accounts`` (``account_id, score, flagged, reasons, campaign_id``, ...) with
    ``severity``, ``action`` and ``action_why`` added after ``campaign_id`` (see the module
    docstring); ``campaigns`` is the campaign table the ``campaign_id`` refer to."""
    camp = suspicious_campaigns(campaigns)
    has_campaign = "campaign_id" in accounts.columns
    df = (
        accounts.join(camp, on="campaign_id", how="left")
        if has_campaign
        else accounts.with_columns(
            pl.lit(None, dtype=pl.Boolean).alias("suspicious"),
            pl.lit(None, dtype=pl.Boolean).alias("campaign_critical"),
        )
    )
    n = accounts.height
    actions: list[str | None] = []
    whys: list[str | None] = []
    for score, flagged, reasons, susp, crit in df.select(
        "score", "flagged", "reasons", "suspicious", "campaign_critical"
    ).iter_rows():
        if score is None:
            actions.append(None)
            whys.append(None)
            continue
        action, why = suggest(
            float(score),
            bool(flagged),
            reasons or [],
            n_accounts=n,
            suspicious_campaign=bool(susp),
            campaign_critical=bool(crit),
        )
        actions.append(action)
        whys.append(why or None)
    sev = pl.col("score").map_elements(severity, return_dtype=pl.String)
    out = accounts.with_columns(
        sev.alias("severity"),
        pl.Series("action", actions, dtype=pl.String),
        pl.Series("action_why", whys, dtype=pl.String),
    )
    cols = accounts.columns
    at = cols.index("campaign_id") + 1 if has_campaign else len(cols)
    return out.select(*cols[:at], "severity", "action", "action_why", *cols[at:])


def campaign_actions(campaigns: pl.DataFrame, accounts: pl.DataFrame) -> pl.DataFrame:
    """The campaign table with ``severity``, ``suspicious``, ``n_flagged`` (members flagged),
    ``requests`` (of all members, when ``accounts`` has the context column), ``first_seen``,
    ``last_seen``, ``action`` and ``action_why`` (see the module docstring)."""
    camp = suspicious_campaigns(campaigns)
    members = accounts.filter(pl.col("campaign_id").is_not_null()).group_by("campaign_id")
    aggs = [pl.col("flagged").fill_null(False).sum().cast(pl.Int64).alias("n_flagged")]
    for col, agg in (("requests", "sum"), ("first_seen", "min"), ("last_seen", "max")):
        if col in accounts.columns:
            aggs.append(getattr(pl.col(col), agg)().alias(col))
    stats = members.agg(aggs)
    df = (
        campaigns.drop(
            [c for c in ("requests", "first_seen", "last_seen") if c in campaigns.columns]
        )
        .with_columns(pl.col("campaign_id").cast(pl.String))
        .join(camp, on="campaign_id", how="left")
        .join(stats, on="campaign_id", how="left")
        .with_columns(pl.col("n_flagged").fill_null(0))
    )
    actions: list[str | None] = []
    whys: list[str | None] = []
    for susp, crit, n_flagged, n in df.select(
        "suspicious", "campaign_critical", "n_flagged", "n_members"
    ).iter_rows():
        action, why = _campaign_action(bool(susp), bool(crit), int(n_flagged), int(n or 0))
        actions.append(action)
        whys.append(why)
    return df.with_columns(
        pl.col("score").map_elements(severity, return_dtype=pl.String).alias("severity"),
        pl.Series("action", actions, dtype=pl.String),
        pl.Series("action_why", whys, dtype=pl.String),
    ).drop("campaign_critical")


def _campaign_action(
    suspicious: bool, critical: bool, n_flagged: int, n_members: int
) -> tuple[str | None, str]:
    if not suspicious:
        return None, "linked, not suspicious: its typical member is ordinary"
    who = (
        f"its {n_flagged} flagged members (of {n_members})"
        if n_flagged < n_members
        else f"all {n_members} members"
    )
    if n_flagged and critical:
        return "enforce", f"critical campaign: act on {who} together"
    if n_flagged:
        return "review", f"suspicious campaign below critical: review {who}"
    return "watch", "suspicious campaign with no member flagged yet"
