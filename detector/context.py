"""Per-account context for the analyst: how much traffic, when, from where, with what.

The scores say *how unusual* an account is and the reasons *why*; before acting an analyst
also asks how many requests it made, over which period, from how many IP addresses, ranges,
API keys and clients, and which ones. :func:`account_context` computes that once, from the
compact events the audit already holds (:func:`detector.pipeline.compact_events`), and the
audit joins it onto ``accounts.parquet``; the report and the CLI read it from there.

Columns (one row per account, :data:`CONTEXT_COLUMNS`):

- ``requests``: events in the log; ``first_seen``, ``last_seen``: their first and last ``ts``.
- ``n_ips``, ``n_ip_prefixes``, ``n_api_keys``, ``n_user_agents``: distinct client IPs, their
  /24 (IPv4) or /64 (IPv6) ranges, API keys and user agents (a source that does not log one
  gives the single value ``unknown``).
- ``top_ips``, ``top_ip_prefixes``, ``top_api_keys``, ``top_user_agents``: the
  :data:`TOP_VALUES` most frequent values, each ``{value, requests}``, most requests first
  (ties: by value).
- ``hourly_requests``: ``{hour, requests}`` for every clock hour (UTC) with traffic, in time
  order: the account's activity over the log, which the report draws for campaigns.

>>> from datetime import datetime, timezone
>>> t = datetime(2026, 11, 1, 9, 30, tzinfo=timezone.utc)
>>> ev = pl.DataFrame({
...     "account_id": ["a", "a", "a", "b"], "ts": [t, t, t.replace(hour=11), t],
...     "ip": ["1.2.3.4", "1.2.3.4", "1.2.3.9", "5.6.7.8"],
...     "ip_prefix": ["1.2.3.0/24", "1.2.3.0/24", "1.2.3.0/24", "5.6.7.0/24"],
...     "api_key_id": ["k1", "k1", "k2", "k3"], "user_agent": ["ua", "ua", "ua", "ua"],
... })
>>> ctx = account_context(ev)
>>> ctx.select("account_id", "requests", "n_ips", "n_ip_prefixes", "n_api_keys").rows()
[('a', 3, 2, 1, 2), ('b', 1, 1, 1, 1)]
>>> ctx["top_ips"][0].to_list()
[{'value': '1.2.3.4', 'requests': 2}, {'value': '1.2.3.9', 'requests': 1}]
>>> [(h["hour"].hour, h["requests"]) for h in ctx["hourly_requests"][0]]
[(9, 2), (11, 1)]
"""

from __future__ import annotations

import polars as pl

# the most frequent values kept per column
TOP_VALUES = 3
# (plural used in the column names n_<plural> and top_<plural>, event column)
_DIMENSIONS = (
    ("ips", "ip"),
    ("ip_prefixes", "ip_prefix"),
    ("api_keys", "api_key_id"),
    ("user_agents", "user_agent"),
)
CONTEXT_COLUMNS: tuple[str, ...] = (
    "requests",
    "first_seen",
    "last_seen",
    *(f"n_{name}" for name, _ in _DIMENSIONS),
    *(f"top_{name}" for name, _ in _DIMENSIONS),
    "hourly_requests",
)


def account_context(compact: pl.DataFrame | pl.LazyFrame, top: int = TOP_VALUES) -> pl.DataFrame:
    """The context of every account of ``compact`` (compact or canonical events: ``account_id,
    ts, ip, ip_prefix, api_key_id, user_agent``), one row per account, sorted by account id;
    columns as in the module docstring."""
    lf = compact.lazy()
    out = lf.group_by("account_id").agg(
        pl.len().cast(pl.Int64).alias("requests"),
        pl.col("ts").min().alias("first_seen"),
        pl.col("ts").max().alias("last_seen"),
    )
    for name, column in _DIMENSIONS:
        counts = (
            lf.group_by("account_id", column)
            .agg(pl.len().cast(pl.Int64).alias("requests"))
            .sort(["account_id", "requests", column], descending=[False, True, False])
            .group_by("account_id", maintain_order=True)
            .agg(
                pl.len().cast(pl.Int64).alias(f"n_{name}"),
                pl.struct(pl.col(column).cast(pl.String).alias("value"), "requests")
                .head(top)
                .alias(f"top_{name}"),
            )
        )
        out = out.join(counts, on="account_id", how="left")
    hourly = (
        lf.group_by("account_id", pl.col("ts").dt.truncate("1h").alias("hour"))
        .agg(pl.len().cast(pl.Int64).alias("requests"))
        .sort("account_id", "hour")
        .group_by("account_id", maintain_order=True)
        .agg(pl.struct("hour", "requests").alias("hourly_requests"))
    )
    out = out.join(hourly, on="account_id", how="left")
    return out.select("account_id", *CONTEXT_COLUMNS).sort("account_id").collect()
