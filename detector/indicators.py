"""Campaign indicators: the values a campaign's members share, for sharing and blocking.

:func:`campaign_indicators` lists, for every campaign of an audit, the evidence values its
members hold in common (:func:`detector.campaigns.linkage.account_evidence`): IP addresses and
ranges, user agents, prompt-template and system-prompt fingerprints, payment fingerprints and
e-mail domains. A value counts when at least 2 members hold it and the campaign holds at least
half of its holders in the whole log (an IP range of a campaign, not of a corporate NAT that a
campaign member also uses); a content or client value (templates, system prompts, user agents)
also needs 2 % of the members, as the campaign's own summary does. ``distillguard audit``
writes them to ``indicators.parquet``; ``distillguard export`` turns them into CSV, JSON or
STIX 2.1.

Template and system-prompt values are distillguard's fingerprints (``tmpl`` and ``sys_h`` of
:mod:`detector.fingerprints`: hashes of the normalised text), not the text: they identify the
same template in another distillguard's logs, and reveal no prompt.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from detector.campaigns.linkage import account_evidence
from detector.campaigns.scoring import CampaignResult

# evidence kind -> (indicator kind, content or client: needs a share of the members)
KINDS: dict[str, tuple[str, bool]] = {
    "ip": ("ip", False),
    "ip_prefix": ("ip_range", False),
    "user_agent": ("user_agent", True),
    "tmpl": ("template_hash", True),
    "system_prompt": ("system_prompt_hash", True),
    "payment": ("payment_fingerprint", False),
    "email_domain": ("email_domain", False),
}
MIN_SHARE = 0.02
MAX_PER_KIND = 100

INDICATOR_SCHEMA: dict[str, pl.DataType] = {
    "campaign_id": pl.String(),
    "kind": pl.String(),
    "value": pl.String(),
    "holders": pl.Int64(),  # members holding it
    "total": pl.Int64(),  # accounts of the log holding it
}


def campaign_indicators(
    compact: pl.DataFrame, accounts: pl.DataFrame | None, campaigns: pl.DataFrame
) -> pl.DataFrame:
    """``campaign_id, kind, value, holders, total`` for ``campaigns`` (a campaign summary:
    ``campaign_id, members, n_members``) over the compact events of the log (see the module
    docstring); most held first, at most 100 per campaign and kind."""
    if campaigns.height == 0:
        return pl.DataFrame(schema=INDICATOR_SCHEMA)
    evidence = account_evidence(compact, accounts).filter(pl.col("kind").is_in(list(KINDS)))
    members = campaigns.select("campaign_id", "n_members", pl.col("members").alias("account_id"))
    members = members.explode("account_id")
    total = evidence.group_by("kind", "value").agg(pl.len().cast(pl.Int64).alias("total"))
    soft = [k for k, (_, is_soft) in KINDS.items() if is_soft]
    held = (
        evidence.join(members, on="account_id")
        .group_by("campaign_id", "kind", "value")
        .agg(pl.len().cast(pl.Int64).alias("holders"), pl.first("n_members"))
        .join(total, on=["kind", "value"])
        .filter(
            (pl.col("holders") >= 2)
            & (2 * pl.col("holders") >= pl.col("total"))
            & (
                ~pl.col("kind").is_in(soft)
                | (pl.col("holders") >= (MIN_SHARE * pl.col("n_members")).ceil())
            )
        )
        .sort(["campaign_id", "kind", "holders", "value"], descending=[False, False, True, False])
        .group_by("campaign_id", "kind", maintain_order=True)
        .head(MAX_PER_KIND)
    )
    names = {k: name for k, (name, _) in KINDS.items()}
    return held.select(
        "campaign_id",
        pl.col("kind").replace_strict(names, return_dtype=pl.String),
        "value",
        "holders",
        "total",
    )


def verdicts_table(table: pl.DataFrame, verdicts: pl.DataFrame) -> pl.DataFrame:
    """The current verdicts with this audit's score, flag and campaign of each account (null
    for accounts not in the logs): ``verdicts.csv``."""
    return verdicts.join(
        table.select("account_id", "score", "flagged", "campaign_id"), on="account_id", how="left"
    ).sort("at", "account_id")


def write_review_outputs(
    out: Path,
    table: pl.DataFrame,
    compact: pl.DataFrame,
    accounts: pl.DataFrame | None,
    found: CampaignResult | None,
    verdicts: pl.DataFrame | None,
) -> dict[str, Path]:
    """``indicators.parquet`` (with campaigns) and ``verdicts.csv`` (with a verdict store)."""
    paths: dict[str, Path] = {}
    if found is not None:
        paths["indicators"] = out / "indicators.parquet"
        campaign_indicators(compact, accounts, found.campaigns).write_parquet(paths["indicators"])
    if verdicts is not None:
        paths["verdicts"] = out / "verdicts.csv"
        verdicts_table(table, verdicts).write_csv(paths["verdicts"])
    return paths
