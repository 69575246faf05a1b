"""The campaigns' linkage picture of the report: linked accounts as points coloured by
campaign, links as lines (networkx's spring layout when installed, else a circle per campaign).
Drawn on a matplotlib ``Figure`` with the Agg canvas, returned as base64 PNG."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
from matplotlib.collections import LineCollection
from matplotlib.lines import Line2D

from detector.report.fmt import short
from detector.report.plots import C_UNLABELLED, new_figure, png_b64

MAX_NETWORK_NODES = 400
MAX_NETWORK_EDGES = 4_000
NETWORK_WIDTH = 9.5
NETWORK_ASPECT = 1.5
MAX_LEGEND_ENTRIES = 12
# 20 distinguishable campaign colours (Tableau 10, then matplotlib tab10).
PALETTE = [
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
]


def _grid_cols(n_groups: int, aspect: float = NETWORK_ASPECT) -> int:
    """Columns of a grid of ``n_groups`` cells that best fills a width/height ``aspect``."""
    return max(1, min(n_groups, math.ceil(math.sqrt(n_groups * aspect))))


def _circular_layout(groups: list[tuple[str, list[str]]]) -> dict[str, tuple[float, float]]:
    """Each campaign on its own circle; circles on a grid, radius growing with member count."""
    pos: dict[str, tuple[float, float]] = {}
    if not groups:
        return pos
    cols = _grid_cols(len(groups))
    biggest = max(len(m) for _, m in groups)
    for gi, (_, members) in enumerate(groups):
        cx, cy = float(gi % cols), -float(gi // cols)
        if len(members) == 1:
            pos[members[0]] = (cx, cy)
            continue
        radius = 0.42 * math.sqrt(len(members) / biggest)
        for k, node in enumerate(members):
            angle = 2 * math.pi * k / len(members)
            pos[node] = (cx + radius * math.cos(angle), cy + radius * math.sin(angle))
    return pos


def _spring_layout(
    nodes: list[str], edges: list[tuple[str, str, float]]
) -> dict[str, tuple[float, float]] | None:
    try:
        import networkx as nx
    except ImportError:
        return None
    graph = nx.Graph()
    graph.add_nodes_from(nodes)
    graph.add_weighted_edges_from(edges)
    layout = nx.spring_layout(graph, seed=0, weight="weight")
    return {str(k): (float(v[0]), float(v[1])) for k, v in layout.items()}


def network_figure(
    links: pl.DataFrame,
    node_campaign: dict[str, str | None],
    campaign_order: list[str],
) -> tuple[str, int, int, int, int]:
    """Linkage picture; returns (png, nodes shown, nodes total, edges shown, edges total)."""
    edges_df = links.select(
        pl.col("src").cast(pl.String),
        pl.col("dst").cast(pl.String),
        (
            pl.col("weight").cast(pl.Float64, strict=False)
            if "weight" in links.columns
            else pl.lit(1.0)
        )
        .fill_null(1.0)
        .alias("weight"),
        (
            pl.col("campaign_id").cast(pl.String)
            if "campaign_id" in links.columns
            else pl.lit(None, dtype=pl.String)
        ).alias("campaign_id"),
    ).drop_nulls(["src", "dst"])
    edge_rows = edges_df.rows()
    # Each node's campaign: the account table's, else the first edge that names one.
    camp: dict[str, str | None] = {}
    strength: dict[str, float] = {}
    for src, dst, w, cid in edge_rows:
        for node in (src, dst):
            if node not in camp or camp[node] is None:
                camp[node] = node_campaign.get(node) or cid
            strength[node] = strength.get(node, 0.0) + float(w)
    total_nodes, total_edges = len(camp), len(edge_rows)
    rank = {c: i for i, c in enumerate(campaign_order)}
    by_group: dict[str, list[str]] = {}
    for node, cid in camp.items():
        by_group.setdefault(cid if cid is not None else "(none)", []).append(node)
    ordered = sorted(
        by_group.items(),
        key=lambda kv: (rank.get(kv[0], len(rank) + (kv[0] == "(none)")), -len(kv[1]), kv[0]),
    )
    chosen: list[tuple[str, list[str]]] = []
    budget = MAX_NETWORK_NODES
    for cid, members in ordered:
        members = sorted(members, key=lambda n: (-strength[n], n))
        if len(members) > budget:
            if chosen:
                continue
            members = members[:budget]
        chosen.append((cid, sorted(members)))
        budget -= len(members)
        if budget <= 0:
            break
    keep = {n for _, m in chosen for n in m}
    shown_edges = [(s, d, float(w)) for s, d, w, _ in edge_rows if s in keep and d in keep]
    shown_edges.sort(key=lambda e: -e[2])
    shown_edges = shown_edges[:MAX_NETWORK_EDGES]
    nodes = [n for _, m in chosen for n in m]
    spring = _spring_layout(nodes, shown_edges)
    pos = spring or _circular_layout(chosen)
    height = 6.5
    if spring is None and chosen:
        # Fit the figure to the grid of circles (plus room for the legend on the right).
        cols = _grid_cols(len(chosen))
        rows = math.ceil(len(chosen) / cols)
        height = min(8.0, max(2.6, (NETWORK_WIDTH - 2.2) * rows / cols))
    fig = new_figure(NETWORK_WIDTH, height)
    ax = fig.add_subplot()
    if shown_edges:
        weights = np.array([e[2] for e in shown_edges], dtype=np.float64)
        wmax = float(weights.max()) or 1.0
        segments = [(pos[s], pos[d]) for s, d, _ in shown_edges]
        ax.add_collection(
            LineCollection(
                segments,
                colors="#555555",
                linewidths=0.3 + 1.5 * weights / wmax,
                alpha=0.25,
                zorder=1,
            )
        )
    handles: list[Line2D] = []
    node_size = 36 if len(nodes) <= 80 else 14
    cols = _grid_cols(len(chosen))
    for gi, (cid, members) in enumerate(chosen):
        colour = C_UNLABELLED if cid == "(none)" else PALETTE[gi % len(PALETTE)]
        xy = np.array([pos[n] for n in members], dtype=np.float64)
        ax.scatter(
            xy[:, 0],
            xy[:, 1],
            s=node_size,
            color=colour,
            edgecolors="white",
            linewidths=0.4,
            zorder=2,
        )
        if gi < MAX_LEGEND_ENTRIES:
            handles.append(
                Line2D(
                    [],
                    [],
                    marker="o",
                    linestyle="",
                    color=colour,
                    label=f"{short(cid, 28)} ({len(members)})",
                )
            )
        if spring is None and len(chosen) <= 48:
            ax.text(
                float(gi % cols),
                -float(gi // cols) - 0.47,
                short(cid, 18),
                ha="center",
                va="top",
                fontsize=7,
                color="#333333",
            )
    if len(chosen) > MAX_LEGEND_ENTRIES:
        handles.append(
            Line2D(
                [], [], linestyle="", label=(f"… {len(chosen) - MAX_LEGEND_ENTRIES} more campaigns")
            )
        )
    if len(nodes) <= 30:
        for node in nodes:
            x, y = pos[node]
            ax.annotate(node, (x, y), xytext=(3, 3), textcoords="offset points", fontsize=6)
    ax.autoscale_view()
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_axis_off()
    if handles:
        ax.legend(
            handles=handles,
            loc="upper left",
            bbox_to_anchor=(1.0, 1.0),
            fontsize=8,
            frameon=False,
            title="campaign (accounts)",
            title_fontsize=8,
        )
    return png_b64(fig), len(nodes), total_nodes, len(shown_edges), total_edges
