"""Figures of the audit report, drawn on matplotlib ``Figure`` objects with the Agg canvas
(no pyplot, no global state) and returned as base64 PNG. Used by :mod:`detector.report`."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import NullLocator

MAX_TABLE_ROWS = 100
MAX_FEATURE_PANELS = 9
MAX_NETWORK_NODES = 400
MAX_NETWORK_EDGES = 4_000
MAX_MEMBERS_SHOWN = 10
# Histograms of more rows than this are drawn from a seeded sample of the larger group.
MAX_HIST_ROWS = 50_000
DPI = 96
NETWORK_WIDTH = 9.5
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
NETWORK_ASPECT = 1.5

C_NORMAL = "#4c78a8"
C_ATTACK = "#e45756"
C_UNLABELLED = "#9d9d9d"
C_FLAGGED = "#e45756"
C_OTHER = "#4c78a8"

FloatArray = npt.NDArray[np.float64]


# --------------------------------------------------------------------------------------------
# formatting helpers
# --------------------------------------------------------------------------------------------


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _fmt(value: Any) -> str:
    """A number or value for a table cell: thousands separators, about 3 significant digits."""
    if _is_missing(value):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        if value != 0 and value.is_integer() and abs(value) < 1e15:
            return f"{int(value):,}"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3g}"
    if isinstance(value, list | tuple):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def _pct(value: Any) -> str:
    """A share or rate (0-1) as a percentage."""
    if _is_missing(value):
        return "—"
    v = float(value) * 100.0
    if v == 0:
        return "0%"
    return f"{v:.3g}%"


_SHARE_WORDS = ("share", "rate", "recall", "precision", "fpr", "fraction", "purity")


def _fmt_keyed(key: str, value: Any) -> str:
    """Format ``value`` as a percentage when ``key`` names a share or rate."""
    if isinstance(value, float) and any(w in key.lower() for w in _SHARE_WORDS):
        return _pct(value)
    return _fmt(value)


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _humanize(key: str) -> str:
    return key.replace("_", " ")


def _as_float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


# --------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------


def _new_figure(width: float, height: float, constrained: bool = True) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained" if constrained else None)
    FigureCanvasAgg(fig)
    return fig


def _png_b64(fig: Figure) -> str:
    """Encode ``fig`` as base64 PNG and release it."""
    try:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
        return base64.b64encode(buf.getvalue()).decode("ascii")
    finally:
        fig.clear()


def _finite(values: FloatArray) -> FloatArray:
    return values[np.isfinite(values)]


def _sample(values: FloatArray, limit: int, seed: int = 0) -> FloatArray:
    if values.size <= limit:
        return values
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(values, size=limit, replace=False))


def _score_figure(
    scores: FloatArray, groups: list[tuple[str, FloatArray, str]], threshold: float | None
) -> str:
    """Histogram of all scores, log y, threshold line; ``groups`` stacked when given."""
    fig = _new_figure(9.5, 3.6)
    ax = fig.add_subplot()
    finite = _finite(scores)
    lo = min(0.0, float(finite.min())) if finite.size else 0.0
    hi = max(100.0, float(finite.max())) if finite.size else 100.0
    bins = np.linspace(lo, hi, 51)
    if not groups:
        groups = [("accounts", finite, C_NORMAL)]
    # Stacked bars as filled stairs: far fewer artists than one patch per bar. Zero is drawn at
    # 0.5, just below the visible range of the log axis.
    below = 0.5
    cum = np.zeros(bins.size - 1)
    for name, values, colour in groups:
        counts, _ = np.histogram(_finite(values), bins=bins)
        ax.stairs(
            np.maximum(cum + counts, below),
            bins,
            baseline=np.maximum(cum, below),
            fill=True,
            color=colour,
            label=f"{name} ({values.size:,})",
        )
        cum = cum + counts
    # Thin white separators between bars, as a histogram would have.
    heights = np.where(cum > 0, cum, below)
    ax.vlines(bins[1:-1], below, np.fmax(heights[:-1], heights[1:]), colors="white", lw=0.4)
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.7)
    if threshold is not None:
        ax.axvline(
            threshold,
            color="black",
            linestyle="--",
            linewidth=1.2,
            label=f"threshold {_fmt(threshold)}",
        )
    ax.set_xlabel("score (0–100, higher = more suspicious)")
    ax.set_ylabel("accounts (log scale)")
    ax.set_xlim(lo, hi)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=4, fontsize=9, frameon=False)
    return _png_b64(fig)


def _archetype_figure(rows: list[dict[str, Any]]) -> str:
    """Two horizontal bar panels: recall per attack archetype, FP rate per normal archetype."""
    attacks = sorted((r for r in rows if r["kind"] == "attack"), key=lambda r: r["rate"])
    normals = sorted((r for r in rows if r["kind"] != "attack"), key=lambda r: r["rate"])
    n_bars = max(len(attacks), len(normals), 1)
    fig = _new_figure(10.5, 0.9 + 0.32 * n_bars)
    ax_a, ax_n = fig.subplots(1, 2)
    panels: list[tuple[Axes, list[dict[str, Any]], str, str]] = [
        (ax_a, attacks, "recall per attack archetype", C_ATTACK),
        (ax_n, normals, "false-positive rate per normal archetype", C_NORMAL),
    ]
    for ax, part, title, colour in panels:
        ax.set_title(title, fontsize=10)
        if not part:
            ax.text(0.5, 0.5, "none in the labels", ha="center", va="center", color="#666")
            ax.set_axis_off()
            continue
        names = [f"{r['archetype']} (n={r['n']:,})" for r in part]
        rates = np.array([r["rate"] for r in part], dtype=np.float64)
        y = np.arange(len(part))
        ax.barh(y, rates, color=colour, height=0.7)
        ax.set_yticks(y, names, fontsize=8)
        ax.set_ylim(-0.6, n_bars - 0.4)
        top = 1.0 if colour == C_ATTACK else max(float(rates.max()) * 1.3, 0.001)
        ax.set_xlim(0, top * (1.18 if colour == C_ATTACK else 1.0))
        ax.xaxis.set_major_formatter(lambda v, _pos: f"{v * 100:.3g}%")
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(axis="x", alpha=0.3)
        for yi, rate in zip(y, rates, strict=True):
            ax.text(float(rate), float(yi), f" {_pct(rate)}", va="center", fontsize=7.5)
    return _png_b64(fig)


def _feature_panel(
    ax: Axes, name: str, flagged: FloatArray, normal: FloatArray, missing: bool = False
) -> bool:
    """Draw one flagged-vs-normal panel; False when there was nothing to draw."""
    ax.set_title(name, fontsize=9)
    ax.tick_params(labelsize=7)
    both = np.concatenate([flagged, normal])
    note = None
    if missing:
        note = "not in the table"
    elif both.size == 0:
        note = "no values"
    elif float(both.min()) == float(both.max()):
        note = f"constant = {_fmt(float(both[0]))}"
    if note is not None:
        ax.text(0.5, 0.5, note, ha="center", va="center", color="#666", transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
        return False
    lo, hi = float(both.min()), float(both.max())
    # Heavy right tail: the top is far above the middle (a wide left tail alone is not enough).
    mid = float(np.median(both))
    log_x = lo > 0 and hi >= 50 * mid and float(np.quantile(both, 0.99)) >= 5 * mid
    bins = np.geomspace(lo, hi, 41) if log_x else np.linspace(lo, hi, 41)
    for values, colour in ((normal, C_OTHER), (flagged, C_FLAGGED)):
        if values.size == 0:
            continue
        counts, _ = np.histogram(values, bins=bins)
        share = counts / values.size
        ax.stairs(share, bins, fill=True, color=colour, alpha=0.3, linewidth=0)
        ax.stairs(share, bins, color=colour, linewidth=1.1)
    if log_x:
        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(lo, hi)
    ax.set_ylim(bottom=0)
    ax.grid(axis="y", alpha=0.3)
    return True


def _features_figure(
    accounts: pl.DataFrame, features: Sequence[str], flagged: npt.NDArray[np.bool_]
) -> str:
    n = len(features)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    # Fixed margins (in inches) rather than constrained layout: much faster for many panels.
    width, height = 3.6 * cols, 2.3 * rows + 0.5
    fig = _new_figure(width, height, constrained=False)
    fig.subplots_adjust(
        left=0.65 / width,
        right=1 - 0.2 / width,
        bottom=0.35 / height,
        top=1 - 0.6 / height,
        wspace=0.3,
        hspace=0.42,
    )
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, name in enumerate(features):
        ax = axes[i // cols][i % cols]
        if name in accounts.columns:
            col = accounts.get_column(name).cast(pl.Float64, strict=False)
            values = col.fill_null(float("nan")).to_numpy().astype(np.float64, copy=False)
        else:
            values = np.full(accounts.height, np.nan)
        ok = np.isfinite(values)
        f_vals = values[ok & flagged]
        n_vals = _sample(values[ok & ~flagged], MAX_HIST_ROWS)
        drawn = _feature_panel(ax, name, f_vals, n_vals, missing=name not in accounts.columns)
        if drawn and i % cols == 0:
            ax.set_ylabel("share of group", fontsize=8)
    for j in range(n, rows * cols):
        axes[j // cols][j % cols].set_axis_off()
    fig.legend(
        handles=[
            Patch(
                facecolor=C_FLAGGED,
                alpha=0.5,
                edgecolor=C_FLAGGED,
                label=f"flagged ({int(flagged.sum()):,} accounts)",
            ),
            Patch(
                facecolor=C_OTHER,
                alpha=0.5,
                edgecolor=C_OTHER,
                label=f"not flagged ({int((~flagged).sum()):,})",
            ),
        ],
        loc="upper center",
        bbox_to_anchor=(0.5, 1.0),
        ncols=2,
        fontsize=9,
        frameon=False,
    )
    return _png_b64(fig)


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


def _network_figure(
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
    fig = _new_figure(NETWORK_WIDTH, height)
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
                    label=f"{_short(cid, 28)} ({len(members)})",
                )
            )
        if spring is None and len(chosen) <= 48:
            ax.text(
                float(gi % cols),
                -float(gi // cols) - 0.47,
                _short(cid, 18),
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
    return _png_b64(fig), len(nodes), total_nodes, len(shown_edges), total_edges


# --------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------
