"""Linkage: evidence that two accounts are run by one operator, as weighted edges.

:func:`link_accounts` reads compact events (see :mod:`detector.fingerprints`) and, optionally,
the account table, and returns edges ``src, dst, weight, evidence`` between accounts that share
rare things. It never compares all pairs of accounts:

1. **Evidence values per account** (:func:`account_evidence`): the distinct prompt templates
   (``tmpl``, ``tmpl_tail``), near-duplicate band keys (``nd1``/``nd2``), system prompts, exact
   IPs, /24-/64 prefixes and user agents an account used at least ``min_uses`` times (one stray
   request does not link), plus its payment fingerprint and email domain from the account
   table. At most ``max_values`` values per account and kind (its most used).
2. **Rarity.** A value held by ``k`` of the ``N`` accounts weighs
   ``kind.weight * log(N / k) / log(N / 2)`` (the kind's full weight for a value two accounts
   share, falling towards 0 as it becomes common, IDF-like); values held by more than
   ``min(max_group, max(max_share * N, clique_max))`` accounts (a popular app's template, a
   NAT or carrier range used by thousands, gmail.com) are dropped.
3. **Candidate pairs by inverted index.** Accounts holding one value form a group. A group of
   at most ``clique_max`` accounts gives all its pairs; a larger one is ordered by a fixed hash
   of the account id and each member is paired with its next ``fanout`` members (a sorted-
   neighbourhood window). Members that share many large groups (a campaign's templates and
   ranges) sit close in every window, so cost grows with ``N * fanout``, not ``N**2``.
4. **Pair weight.** Every candidate pair is then scored on *all* the values it shares
   (a join, bounded by the candidates): per kind the sum of value weights, capped at
   ``kind.cap``; the *soft* kinds (prompt content, user agents) together are capped at
   ``soft_cap``, below the usual link threshold of 1.0 (:func:`detector.campaigns.
   find_campaigns`), so similar prompts alone never prove one operator (many independent
   developers use one open-source app, many researchers the same benchmark). A link needs
   *identity* evidence: a rare shared payment method alone (1.2), or a campaign email domain,
   shared IPs / ranges or synchronised activity together with similar prompts. A single
   coincidence (one shared company email domain 0.8, one residential IP with its /24 0.9) is
   not enough. Candidates are generated from identity values only (soft values cannot make an
   edge), which keeps their number near ``N * fanout``.
5. **Synchronised activity** among candidate pairs: the number of ``bucket_s`` time slots in
   which both accounts were active, against the ``m_a * m_b / T`` expected by chance; at least
   ``min_sync`` shared slots and a ratio above ``sync_ratio`` add up to ``timing.weight``.

Edges with ``weight >= min_edge`` are returned, ``src < dst``. Evidence strings name what the
pair shares, e.g. ``"payment method pm_81"``, ``"IP range 202.44.10.0/24"``,
``"4 prompt templates"``, ``"active together in 14 2-minute slots (38x chance)"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import polars as pl


@dataclass(frozen=True)
class EvidenceKind:
    """One kind of shared evidence and how much a shared value of it weighs."""

    name: str
    family: str  # "content" | "client" | "network" | "account" | "timing"
    weight: float  # weight of one shared value of rarity 1
    cap: float  # most this kind adds to one edge
    label: str  # plural noun for reasons
    singular: str  # singular noun for reasons
    readable: bool  # values can be shown (IPs, payment ids) vs opaque hashes
    # weighed by its own significance, not by how few hold it (an arrival burst is evidence
    # because it is a burst: its size is part of what makes it one)
    rarity_free: bool = False


EVIDENCE_KINDS: tuple[EvidenceKind, ...] = (
    EvidenceKind("tmpl", "content", 0.3, 0.9, "prompt templates", "prompt template", False),
    EvidenceKind("tmpl_tail", "content", 0.2, 0.6, "prompt endings", "prompt ending", False),
    EvidenceKind(
        "near_dup", "content", 0.1, 0.5, "near-duplicate prompts", "near-duplicate prompt", False
    ),
    EvidenceKind("system_prompt", "content", 0.5, 0.5, "system prompts", "system prompt", False),
    EvidenceKind("ip", "network", 0.6, 1.0, "IP addresses", "IP address", True),
    EvidenceKind("ip_prefix", "network", 0.3, 0.6, "IP ranges", "IP range", True),
    EvidenceKind("user_agent", "client", 0.3, 0.3, "user agents", "user agent", True),
    EvidenceKind("payment", "account", 1.2, 1.2, "payment methods", "payment method", True),
    EvidenceKind("email_domain", "account", 0.8, 0.8, "email domains", "email domain", True),
    EvidenceKind("timing", "timing", 0.5, 0.5, "synchronised time slots", "time slot", False),
    EvidenceKind(
        "arrival", "creation", 0.5, 0.5, "arrival bursts", "arrival burst", True, rarity_free=True
    ),
)
SOFT_FAMILIES = frozenset({"content", "client"})  # similar prompts / SDKs: support, not proof
KIND_BY_NAME: dict[str, EvidenceKind] = {k.name: k for k in EVIDENCE_KINDS}

# compact-event column -> evidence kind
EVENT_COLUMNS: dict[str, str] = {
    "tmpl": "tmpl",
    "tmpl_tail": "tmpl_tail",
    "nd1": "near_dup",
    "nd2": "near_dup",
    "sys_h": "system_prompt",
    "ip": "ip",
    "ip_prefix": "ip_prefix",
    "user_agent": "user_agent",
}
# account-table column -> evidence kind
ACCOUNT_COLUMNS: dict[str, str] = {"payment_fingerprint": "payment", "email_domain": "email_domain"}

EVIDENCE_SCHEMA: dict[str, pl.DataType] = {
    "account_id": pl.String(),
    "kind": pl.String(),
    "value": pl.String(),
    "uses": pl.UInt32(),
}
EDGE_SCHEMA: dict[str, pl.DataType] = {
    "src": pl.String(),
    "dst": pl.String(),
    "weight": pl.Float64(),
    "evidence": pl.List(pl.String()),
}


def _value_counts(events: pl.LazyFrame, col: str, min_uses: int) -> pl.LazyFrame:
    """``account_id, value, uses``: the values of ``col`` each account used ``min_uses`` times
    or more (``__acct``: the account's integer code)."""
    if events.collect_schema()[col] == pl.String():
        counts = events.group_by("__acct", col).agg(
            pl.col("account_id").first(), pl.len().alias("count")
        )
    else:  # events sorted by account: a small hash table per account, on one slice each
        counts = (
            events.group_by("__acct")
            .agg(pl.col("account_id").first(), pl.col(col).value_counts().alias("__vc"))
            .explode("__vc")
            .unnest("__vc")
        )
    return counts.filter(pl.col(col).is_not_null() & (pl.col("count") >= min_uses)).select(
        "account_id",
        pl.col(col).cast(pl.String).alias("value"),
        pl.col("count").cast(pl.UInt32).alias("uses"),
    )


def _most_used(values: pl.LazyFrame, max_values: int) -> pl.LazyFrame:
    """Each account's ``max_values`` most used values (ties: the smallest value first)."""
    many = pl.len().over("account_id") > max_values
    top = (
        values.filter(many)
        .group_by("account_id")
        .agg(
            pl.col("value", "uses").top_k_by(["uses", "value"], k=max_values, reverse=[False, True])
        )
        .explode("value", "uses")
    )
    return pl.concat([values.filter(~many), top])


def account_evidence(
    compact: pl.LazyFrame | pl.DataFrame,
    accounts: pl.DataFrame | None = None,
    *,
    min_uses: int = 2,
    max_values: int = 32,
) -> pl.DataFrame:
    """``account_id, kind, value, uses``: each account's distinct evidence values.

    Event values count only when used in at least ``min_uses`` requests; an account keeps at
    most ``max_values`` values per kind (its most used). Account-table values (payment
    fingerprint, email domain) count once, for accounts present in ``compact``.

    Accounts are counted by integer code (a categorical of ``account_id``). The hash columns
    are sorted by account once, so that each account's values are counted on one contiguous
    slice; the string columns (few distinct values per account) are grouped where they are."""
    lf = compact.lazy()
    names = lf.collect_schema().names()
    cols = [c for c in EVENT_COLUMNS if c in names]
    acct = pl.col("account_id").cast(pl.Categorical)  # integer codes, strings kept
    events = lf.select(acct.to_physical().alias("__acct"), acct.alias("account_id"), *cols)
    events = events.collect().lazy()
    hashes = [c for c in cols if events.collect_schema()[c] != pl.String()]
    # hash columns sorted by account (strings are cheaper grouped where they are)
    by_account = (
        events.select("__acct", "account_id", *hashes)
        .sort("__acct", maintain_order=True)
        .with_columns(pl.col("__acct").set_sorted())
        .collect()
        .lazy()
    )
    per_kind: dict[str, list[pl.LazyFrame]] = {}
    for col in cols:
        per_kind.setdefault(EVENT_COLUMNS[col], []).append(
            _value_counts(by_account if col in hashes else events, col, min_uses)
        )
    counted = pl.collect_all(
        [
            _most_used(pl.concat(parts).filter(pl.col("value") != ""), max_values).with_columns(
                pl.lit(kind).alias("kind")
            )
            for kind, parts in per_kind.items()
        ]
    )
    ev = (
        pl.concat(counted).lazy().select([pl.col(c).cast(t) for c, t in EVIDENCE_SCHEMA.items()])
        if counted
        else pl.LazyFrame(schema=EVIDENCE_SCHEMA)
    ).sort(["account_id", "kind", "uses", "value"], descending=[False, False, True, False])
    if accounts is not None:
        active = events.select(pl.col("account_id").unique().cast(pl.String))
        acct_table = accounts.lazy().join(active, on="account_id", how="semi")
        for col, kind in ACCOUNT_COLUMNS.items():
            if col in accounts.columns:
                ev = pl.concat(
                    [
                        ev,
                        acct_table.filter(pl.col(col).is_not_null() & (pl.col(col) != "")).select(
                            "account_id",
                            pl.lit(kind).alias("kind"),
                            pl.col(col).cast(pl.String).alias("value"),
                            pl.lit(1, dtype=pl.UInt32).alias("uses"),
                        ),
                    ]
                )
    return ev.select([pl.col(c).cast(t) for c, t in EVIDENCE_SCHEMA.items()]).collect()


def rarity(k: pl.Expr, n_accounts: int) -> pl.Expr:
    """IDF-like weight of a value held by ``k`` of ``n_accounts``: 1 at k = 2, 0 at k = N."""
    if n_accounts <= 2:
        return pl.lit(1.0)
    return (
        (pl.lit(float(n_accounts)) / k.cast(pl.Float64)).log() / math.log(n_accounts / 2.0)
    ).clip(0.0, 1.0)


def _candidate_pairs(held: pl.DataFrame, clique_max: int, fanout: int) -> pl.DataFrame:
    """``a, b`` (account indices, a < b): all pairs of small value groups, sorted-neighbourhood
    windows of ``fanout`` in larger ones."""
    g = (
        held.select("vid", "aidx", "rank", "k")
        .sort("vid", "rank")
        .with_columns(pl.int_range(pl.len(), dtype=pl.Int64).over("vid").alias("pos"))
    )
    width = pl.when(pl.col("k") <= clique_max).then(pl.col("k") - 1).otherwise(fanout)
    reach = pl.min_horizontal(width, pl.col("k").cast(pl.Int64) - 1 - pl.col("pos"))
    src = (
        g.filter(reach > 0)
        .select(
            "vid",
            pl.col("aidx").alias("a"),
            (pl.col("pos") + pl.int_ranges(1, reach + 1)).alias("pos"),
        )
        .explode("pos")
    )
    pairs = src.join(g.select("vid", "pos", pl.col("aidx").alias("b")), on=["vid", "pos"])
    return (
        pairs.select(pl.min_horizontal("a", "b").alias("a"), pl.max_horizontal("a", "b").alias("b"))
        .filter(pl.col("a") != pl.col("b"))
        .unique()
    )


def _sync_evidence(
    slots: pl.DataFrame,
    pairs: pl.DataFrame,
    bucket_s: int,
    min_sync: int,
    sync_ratio: float,
    n_slots: int | None = None,
) -> pl.DataFrame:
    """``a, b, kind="timing", w, n, values``: shared active time slots among ``pairs``
    (``slots``: ``aidx, slots``, every account's ``bucket_s`` time slots, a list). ``n_slots``:
    the window's number of slots (default: the extent of ``slots``, which is right when
    ``slots`` holds every account)."""
    if slots.height == 0 or pairs.height == 0:
        return pl.DataFrame()
    if n_slots is None:
        extent = slots.select(pl.col("slots").list.max().max() - pl.col("slots").list.min().min())
        n_slots = max(int(extent.item()) + 1, 1)
    active = pl.concat([pairs["a"], pairs["b"]]).unique().implode()
    per = slots.filter(pl.col("aidx").is_in(active)).select(
        "aidx",
        pl.col("slots").list.drop_nulls().list.unique(),  # the account's distinct slots
    )

    def side(s: str) -> pl.LazyFrame:
        return per.lazy().select(
            pl.col("aidx").alias(s),
            pl.col("slots").alias(f"s{s}"),
            pl.col("slots").list.len().alias(f"m{s}"),
        )

    shared = (
        pairs.lazy()
        .join(side("a"), on="a")
        .join(side("b"), on="b")
        .select(
            "a",
            "b",
            "ma",
            "mb",
            pl.col("sa").list.set_intersection(pl.col("sb")).list.len().alias("n"),
        )
        .filter(pl.col("n") > 0)
        .with_columns(
            (pl.col("n") / (pl.col("ma") * pl.col("mb") / n_slots)).alias("ratio"),
        )
        .filter((pl.col("n") >= min_sync) & (pl.col("ratio") >= sync_ratio))
        .collect()
    )
    kind = KIND_BY_NAME["timing"]
    # full weight at 10x the minimum ratio
    strength = ((pl.col("ratio") / sync_ratio).log() / math.log(10.0)).clip(0.0, 1.0)
    minutes = bucket_s / 60
    span = f"{minutes:g}-minute" if minutes >= 1 else f"{bucket_s}-second"
    return shared.select(
        "a",
        "b",
        pl.lit("timing").alias("kind"),
        (kind.weight * (0.3 + 0.7 * strength)).alias("w"),
        pl.col("n").cast(pl.UInt32),
        pl.concat_list(
            pl.format(
                "active together in {} {} slots ({}x chance)",
                pl.col("n"),
                pl.lit(span),
                pl.col("ratio").round(0).cast(pl.Int64),
            )
        ).alias("values"),
    )


def time_slot(bucket_s: int) -> pl.Expr:
    """The ``bucket_s``-second time slot of each event (for synchronised activity)."""
    return pl.col("ts").dt.epoch("s") // bucket_s


def account_index(account_ids: pl.Series) -> pl.DataFrame:
    """``account_id, aidx, rank``: every account's index in sorted order (so that ``a < b``
    means ``src < dst``) and its fixed hash, which orders the sorted-neighbourhood windows."""
    return (
        pl.DataFrame({"account_id": account_ids.cast(pl.String)})
        .unique()
        .sort("account_id")
        .with_columns(
            pl.int_range(pl.len(), dtype=pl.UInt32).alias("aidx"),
            pl.col("account_id").hash(17).alias("rank"),
        )
    )


def kind_table(kinds: tuple[EvidenceKind, ...] = EVIDENCE_KINDS) -> pl.DataFrame:
    """``kind, kw, cap, soft, free``: each evidence kind's weight, cap, whether it is soft and
    whether it is weighed without rarity."""
    return pl.DataFrame(
        {
            "kind": [k.name for k in kinds],
            "kw": [k.weight for k in kinds],
            "cap": [k.cap for k in kinds],
            "soft": [k.family in SOFT_FAMILIES for k in kinds],
            "free": [k.rarity_free for k in kinds],
        }
    )


def group_cap(n_accounts: int, max_group: int, max_share: float, clique_max: int) -> int:
    """Most accounts a value may be held by and still link them (see the module docstring)."""
    return min(max_group, max(int(max_share * n_accounts), clique_max))


def weighted(held: pl.DataFrame, n_accounts: int) -> pl.DataFrame:
    """``held`` (rows with ``kw``, ``free`` and ``k``, the value's number of holders) with
    ``w``, the weight of the shared value: ``kw * rarity(k, N)``, or ``kw`` for the kinds
    weighed without rarity."""
    rare = pl.when(pl.col("free")).then(1.0).otherwise(rarity(pl.col("k"), n_accounts))
    return held.with_columns((pl.col("kw") * rare).alias("w"))


def shared_per_kind(joined: pl.LazyFrame, readable: list[str]) -> pl.LazyFrame:
    """``a, b, kind, w, n, values``: per candidate pair and kind, the summed weight and number
    of the values both hold, and (readable kinds) the two weightiest. ``joined``: one row per
    pair and shared value (``a, b, kind, value, w``)."""
    return (
        joined.group_by("a", "b", "kind")
        .agg(
            pl.col("w").sum(),
            pl.len().cast(pl.UInt32).alias("n"),
            pl.col("value")
            .sort_by(["w", "value"], descending=[True, False])
            .head(2)
            .alias("values"),
        )
        .with_columns(
            pl.when(pl.col("kind").is_in(readable))
            .then(pl.col("values"))
            .otherwise(pl.lit([], dtype=pl.List(pl.String)))
        )
    )


def sync_candidates(per_kind: pl.DataFrame, kind_w: pl.DataFrame, min_edge: float) -> pl.DataFrame:
    """``a, b``: the pairs whose other evidence could reach ``min_edge`` with timing added."""
    pre = (
        per_kind.join(kind_w, on="kind")
        .group_by("a", "b")
        .agg(pl.min_horizontal("w", "cap").sum().alias("pre"))
    )
    return pre.filter(pl.col("pre") >= min_edge - KIND_BY_NAME["timing"].cap).select("a", "b")


def link_accounts(
    compact: pl.LazyFrame | pl.DataFrame,
    accounts: pl.DataFrame | None = None,
    *,
    evidence: pl.DataFrame | None = None,
    max_group: int = 2000,
    max_share: float = 0.05,
    clique_max: int = 32,
    fanout: int = 8,
    min_uses: int = 2,
    max_values: int = 32,
    soft_cap: float = 0.6,
    bucket_s: int = 120,
    min_sync: int = 4,
    sync_ratio: float = 10.0,
    min_edge: float = 0.5,
    seed_min: float = 0.1,
    kinds: tuple[EvidenceKind, ...] = EVIDENCE_KINDS,
) -> pl.DataFrame:
    """Edges ``src, dst, weight, evidence`` between accounts likely run by one operator.

    ``evidence`` (from :func:`account_evidence`) may be passed to reuse it. See the module
    docstring for how evidence is found and weighed. Each step is a function of its own
    (:func:`account_index`, :func:`weighted`, :func:`_candidate_pairs`,
    :func:`shared_per_kind`, :func:`sync_candidates`, :func:`_sync_evidence`,
    :func:`edge_weights`), which :mod:`detector.spark.linkage` runs per group on Spark."""
    lf = compact.lazy()
    if evidence is None:
        evidence = account_evidence(lf, accounts, min_uses=min_uses, max_values=max_values)
    use = {k.name: k for k in kinds}
    timing = "timing" in use
    slot = time_slot(bucket_s)
    # one pass over the events: the accounts and, for timing, each one's time slots
    per_account = (
        lf.group_by("account_id").agg(slot.alias("slots"))
        if timing
        else lf.select("account_id").unique()
    ).collect()
    ids = account_index(per_account["account_id"])
    slots = (
        ids.join(per_account, on="account_id").select("aidx", "slots").sort("aidx")
        if timing
        else None
    )
    n_acc = ids.height
    kind_w = kind_table(tuple(use.values()))
    held = evidence.join(ids, on="account_id").join(kind_w, on="kind")
    k_cap = group_cap(n_acc, max_group, max_share, clique_max)
    values = (
        held.group_by("kind", "value")
        .agg(pl.len().alias("k"), pl.col("free").first())
        .filter((pl.col("k") >= 2) & ((pl.col("k") <= k_cap) | pl.col("free")))
        .drop("free")
        .with_columns(pl.int_range(pl.len(), dtype=pl.UInt32).alias("vid"))
    )
    held = weighted(held.join(values, on=["kind", "value"]), n_acc)
    # candidates come from identity evidence (soft evidence alone can never reach an edge)
    seeds = held.filter(~pl.col("soft") & (pl.col("w") >= seed_min))
    pairs = _candidate_pairs(seeds, clique_max, fanout)

    # every value each candidate pair shares
    a_side = held.select(pl.col("aidx").alias("a"), "vid", "kind", "value", "w")
    b_side = held.select(pl.col("aidx").alias("b"), "vid")
    readable = [k.name for k in use.values() if k.readable]
    joined = pairs.lazy().join(a_side.lazy(), on="a").join(b_side.lazy(), on=["b", "vid"])
    per_kind = shared_per_kind(joined, readable).collect()
    if slots is not None and per_kind.height:
        sync_pairs = sync_candidates(per_kind, kind_w, min_edge)
        sync = _sync_evidence(slots, sync_pairs, bucket_s, min_sync, sync_ratio)
        if sync.height:
            per_kind = pl.concat([per_kind, sync.select(per_kind.columns)])
    return _edges(per_kind, kind_w, ids, use, soft_cap, min_edge)


def _edges(
    per_kind: pl.DataFrame,
    kind_w: pl.DataFrame,
    ids: pl.DataFrame,
    use: dict[str, EvidenceKind],
    soft_cap: float,
    min_edge: float,
) -> pl.DataFrame:
    if per_kind.height == 0:
        return pl.DataFrame(schema=EDGE_SCHEMA)
    edges = edge_weights(per_kind, kind_w, use, soft_cap, min_edge)
    return named_edges(edges, ids)


def named_edges(edges: pl.DataFrame, ids: pl.DataFrame) -> pl.DataFrame:
    """``src, dst, weight, evidence``: the edges of :func:`edge_weights` with account ids."""
    if edges.height == 0:
        return pl.DataFrame(schema=EDGE_SCHEMA)
    name = ids.select("aidx", "account_id")
    return (
        edges.join(name.rename({"aidx": "a", "account_id": "src"}), on="a")
        .join(name.rename({"aidx": "b", "account_id": "dst"}), on="b")
        .select(
            # ids are indexed in sorted order, so a < b means src < dst
            "src",
            "dst",
            pl.col("weight").cast(pl.Float64),
            "evidence",
        )
        .sort("src", "dst")
    )


def edge_weights(
    per_kind: pl.DataFrame,
    kind_w: pl.DataFrame,
    use: dict[str, EvidenceKind],
    soft_cap: float,
    min_edge: float,
) -> pl.DataFrame:
    """``a, b, weight, evidence``: each pair's capped weight and evidence sentences from its
    per-kind evidence (:func:`shared_per_kind`, timing rows of :func:`_sync_evidence`), the
    pairs of at least ``min_edge`` only. Pairs are independent: any split of ``per_kind`` by
    pair gives the same rows."""
    names = pl.DataFrame(
        {
            "kind": list(use),
            "label": [k.label for k in use.values()],
            "singular": [k.singular for k in use.values()],
        }
    )
    capped = (
        per_kind.join(kind_w, on="kind")
        .join(names, on="kind")
        .with_columns(
            pl.min_horizontal("w", "cap").alias("wc"),
            pl.when(pl.col("kind") == "timing")
            .then(pl.col("values").list.first())
            .when((pl.col("n") == 1) & (pl.col("values").list.len() > 0))
            .then(pl.format("{} {}", pl.col("singular"), pl.col("values").list.first()))
            .when(pl.col("n") == 1)
            .then(pl.format("1 {}", pl.col("singular")))
            .when(pl.col("values").list.len() > 0)
            .then(
                pl.format(
                    "{} {} ({}{})",
                    pl.col("n"),
                    pl.col("label"),
                    pl.col("values").list.join(", "),
                    pl.when(pl.col("n") > pl.col("values").list.len())
                    .then(pl.lit(", ..."))
                    .otherwise(pl.lit("")),
                )
            )
            .otherwise(pl.format("{} {}", pl.col("n"), pl.col("label")))
            .alias("text"),
        )
    )
    edges = (
        capped.sort(["wc", "text"], descending=[True, False])
        .group_by("a", "b")
        .agg(
            pl.col("wc").filter(pl.col("soft")).sum().alias("soft_w"),
            pl.col("wc").filter(~pl.col("soft")).sum().alias("other_w"),
            pl.col("text").alias("evidence"),
        )
        .with_columns(
            (pl.min_horizontal("soft_w", pl.lit(soft_cap)) + pl.col("other_w")).alias("weight")
        )
        .filter(pl.col("weight") >= min_edge)
        .select("a", "b", "weight", "evidence")
    )
    return edges
