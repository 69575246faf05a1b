"""Figures of the audit report, drawn on matplotlib ``Figure`` objects with the Agg canvas
(no pyplot, no global state) and returned as base64 PNG. Used by :mod:`detector.report.html`.

- :func:`rank_figure`: every account's score against its rank, on the scale of the plain reading
  ("1 in N normal accounts"), with the severity bands and the flag threshold: where the flagged
  accounts stand and how far the rest are from the line.
- :func:`activity_figure`: a campaign's (or one account's) requests per hour, member by
  member: coordinated accounts switch on and off together.
- :func:`archetype_figure`: with labels, recall per attack archetype and false-positive rate
  per normal archetype.
- :func:`features_figure`: flagged vs. other accounts, feature by feature.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import matplotlib.dates as mdates
import numpy as np
import numpy.typing as npt
import polars as pl
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, NullLocator

from detector.report.fmt import fmt, pct
from detector.severity import SEVERITY_BANDS

MAX_FEATURE_PANELS = 9
# Histograms of more rows than this are drawn from a seeded sample of the larger group.
MAX_HIST_ROWS = 50_000
# the rank figure draws the highest-ranked accounts up to this many
MAX_RANKED = 5_000
# activity heatmaps: at most this many member rows are drawn (the most active)
MAX_ACTIVITY_ROWS = 400
DPI = 96

C_NORMAL = "#4c78a8"
C_ATTACK = "#e45756"
C_UNLABELLED = "#9d9d9d"
C_FLAGGED = "#e45756"
C_OTHER = "#4c78a8"
C_CAMPAIGN = "#b42318"
C_SOLO = "#f28e2b"
C_BAND = {"critical": "#fde8e7", "high": "#fff1e0", "elevated": "#fdf8e1"}

FloatArray = npt.NDArray[np.float64]


def new_figure(width: float, height: float, constrained: bool = True) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained" if constrained else None)
    FigureCanvasAgg(fig)
    return fig


def png_b64(fig: Figure) -> str:
    """Encode ``fig`` as base64 PNG and release it."""
    try:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
        return base64.b64encode(buf.getvalue()).decode("ascii")
    finally:
        fig.clear()


def sample(values: FloatArray, limit: int, seed: int = 0) -> FloatArray:
    if values.size <= limit:
        return values
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(values, size=limit, replace=False))


def _rarity(scores: FloatArray) -> FloatArray:
    """Score -> "1 in N normal accounts" (N = 1 / share at least as high), bounded."""
    share = np.clip((100.0 - scores) / 100.0, 1e-12, 1.0)
    return np.asarray(1.0 / share, dtype=np.float64)


def _one_in(n: float) -> str:
    return f"1 in {n:,.0f}" if n >= 10 else f"1 in {n:.2g}"


def rank_figure(
    scores: FloatArray,
    group: Sequence[str],
    threshold: float | None,
    normal: npt.NDArray[np.bool_] | None = None,
) -> str:
    """Score against rank (both log scales), highest first. ``scores`` sorted descending;
    ``group[i]`` is ``"campaign"`` (member of a suspicious campaign), ``"solo"`` or ``"other"``;
    ``normal`` marks accounts labelled normal (drawn as crosses when given)."""
    n = min(len(scores), MAX_RANKED)
    y = _rarity(scores[:n])
    x = np.arange(1, n + 1, dtype=np.float64)
    kinds = np.asarray(list(group[:n]), dtype=object)
    fig = new_figure(9.5, 3.4)
    ax = fig.add_subplot()
    top = max(float(y.max()) * 3 if n else 10.0, 2000.0)
    bounds = [(name, 100.0 / (100.0 - lower)) for name, lower in SEVERITY_BANDS]
    upper = top
    for name, low in bounds:
        ax.axhspan(low, upper, color=C_BAND[name], zorder=0)
        ax.text(
            1.0,
            low,
            f" {name}",
            transform=ax.get_yaxis_transform(),
            fontsize=8,
            va="bottom",
            ha="left",
            color="#8a5a00",
            clip_on=False,
        )
        upper = low
    styles = (
        ("other", C_UNLABELLED, "other accounts", 6),
        ("solo", C_SOLO, "accounts on their own", 14),
        ("campaign", C_CAMPAIGN, "members of suspicious campaigns", 14),
    )
    for key, colour, label, size in styles:
        m = kinds == key
        if m.any():
            ax.scatter(
                x[m],
                y[m],
                s=size,
                color=colour,
                label=f"{label} ({int(m.sum()):,})",
                linewidths=0,
                zorder=2,
            )
    if normal is not None:
        nm = np.asarray(normal[:n], dtype=bool) & (kinds != "other")
        if nm.any():
            ax.scatter(
                x[nm],
                y[nm],
                s=28,
                marker="x",
                color="black",
                zorder=3,
                label=f"labelled normal ({int(nm.sum()):,})",
            )
    if threshold is not None:
        t = float(_rarity(np.array([threshold]))[0])
        ax.axhline(
            t,
            color="black",
            linestyle="--",
            linewidth=1.1,
            zorder=1,
            label=f"flag threshold {fmt(threshold)} ({_one_in(t)})",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(0.8, max(n, 10) * 1.25)
    ax.set_ylim(1.0, top)
    ticks = [10.0**k for k in range(0, int(math.log10(top)) + 1)]
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_formatter(lambda v, _pos: "any" if v <= 1 else _one_in(v))
    ax.xaxis.set_major_formatter(lambda v, _pos: f"{v:,.0f}")
    ax.set_xlabel("rank (1 = highest score)")
    ax.set_ylabel("as rare as (normal accounts)")
    ax.grid(alpha=0.25, which="major")
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    return png_b64(fig)


def activity_figure(
    rows: Sequence[tuple[str, Sequence[dict[str, Any]]]], start: datetime, end: datetime
) -> str | None:
    """Requests per hour: total on top, one heat row per account below (``rows``: account id
    and its ``hourly_requests``, see :mod:`detector.context`), over ``start``-``end``; the
    :data:`MAX_ACTIVITY_ROWS` most active accounts when there are more."""
    start = start.replace(minute=0, second=0, microsecond=0)
    n_hours = max(int((end - start).total_seconds() // 3600) + 1, 1)
    ranked = sorted(rows, key=lambda r: -sum(int(h["requests"]) for h in r[1] or []))
    shown = ranked[:MAX_ACTIVITY_ROWS]
    grid = np.zeros((len(shown), n_hours), dtype=np.float64)
    for i, (_, hours) in enumerate(shown):
        for h in hours or []:
            k = int((h["hour"] - start).total_seconds() // 3600)
            if 0 <= k < n_hours:
                grid[i, k] += float(h["requests"])
    if not grid.any():
        return None
    total = np.zeros(n_hours)
    for _, hours in ranked:
        for h in hours or []:
            k = int((h["hour"] - start).total_seconds() // 3600)
            if 0 <= k < n_hours:
                total[k] += float(h["requests"])
    x0 = mdates.date2num(start)
    x1 = mdates.date2num(start + timedelta(hours=n_hours))
    heat_h = min(0.35 + 0.08 * len(shown), 3.2)
    fig = new_figure(9.5, 1.3 + heat_h)
    ax_t, ax_h = fig.subplots(2, 1, sharex=True, height_ratios=[1.0, heat_h])
    centres = mdates.date2num([start + timedelta(hours=k) for k in range(n_hours)])
    ax_t.bar(centres, total, width=1 / 24, align="edge", color=C_CAMPAIGN, linewidth=0)
    ax_t.set_ylabel("requests\n/ hour", fontsize=8)
    ax_t.tick_params(labelsize=7)
    ax_t.grid(axis="y", alpha=0.3)
    masked = np.ma.masked_equal(grid, 0.0)
    img = ax_h.imshow(
        masked,
        aspect="auto",
        interpolation="nearest",
        cmap="YlOrRd",
        norm=LogNorm(vmin=1, vmax=max(float(grid.max()), 2.0)),
        extent=(x0, x1, len(shown), 0),
    )
    ax_h.set_facecolor("#f6f8fa")
    ax_h.set_yticks([])
    label = "accounts" if len(shown) == len(rows) else f"{len(shown)} most active of {len(rows)}"
    ax_h.set_ylabel(label if len(shown) > 1 else "", fontsize=8)
    ax_h.xaxis_date()
    locator = mdates.AutoDateLocator()
    ax_h.xaxis.set_major_locator(locator)
    ax_h.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax_h.tick_params(labelsize=7)
    bar = fig.colorbar(img, ax=ax_h, pad=0.01, fraction=0.03)
    bar.ax.tick_params(labelsize=7)
    bar.set_label("requests / hour", fontsize=7)
    return png_b64(fig)


def archetype_figure(rows: list[dict[str, Any]]) -> str:
    """Two horizontal bar panels: recall per attack archetype, FP rate per normal archetype."""
    attacks = sorted((r for r in rows if r["kind"] == "attack"), key=lambda r: r["rate"])
    normals = sorted((r for r in rows if r["kind"] != "attack"), key=lambda r: r["rate"])
    n_bars = max(len(attacks), len(normals), 1)
    fig = new_figure(10.5, 0.9 + 0.32 * n_bars)
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
        # rates are shares: the axis ends at 100 % at most (labels of long bars go inside)
        top = 1.0 if colour == C_ATTACK else min(max(float(rates.max()) * 1.3, 0.001), 1.0)
        ax.set_xlim(0, top)
        ax.xaxis.set_major_formatter(lambda v, _pos: f"{v * 100:.3g}%")
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(axis="x", alpha=0.3)
        for yi, rate in zip(y, rates, strict=True):
            inside = rate > 0.8 * top
            ax.text(
                float(rate),
                float(yi),
                f"{pct(rate)} " if inside else f" {pct(rate)}",
                va="center",
                ha="right" if inside else "left",
                color="white" if inside else "black",
                fontsize=7.5,
            )
    return png_b64(fig)


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
        note = f"constant = {fmt(float(both[0]))}"
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


def features_figure(
    accounts: pl.DataFrame, features: Sequence[str], flagged: npt.NDArray[np.bool_]
) -> str:
    n = len(features)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    # Fixed margins (in inches) rather than constrained layout: much faster for many panels.
    width, height = 3.6 * cols, 2.3 * rows + 0.5
    fig = new_figure(width, height, constrained=False)
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
        n_vals = sample(values[ok & ~flagged], MAX_HIST_ROWS)
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
    return png_b64(fig)
