"""Formatting of values for the report's tables and cards (plain strings; the template escapes)."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from detector.calibration import score_reading, score_text

_SHARE_WORDS = ("share", "rate", "recall", "precision", "fpr", "fraction", "purity")


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def fmt(value: Any) -> str:
    """A number or value for a table cell: thousands separators, about 3 significant digits."""
    if is_missing(value):
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
        return ", ".join(fmt(v) for v in value)
    return str(value)


def pct(value: Any) -> str:
    """A share or rate (0-1) as a percentage: ``0.001`` -> ``0.1%``."""
    if is_missing(value):
        return "—"
    v = float(value) * 100.0
    if v == 0:
        return "0%"
    return f"{v:.3g}%"


def fmt_keyed(key: str, value: Any) -> str:
    """Format ``value`` as a percentage when ``key`` names a share or rate."""
    if isinstance(value, float) and any(w in key.lower() for w in _SHARE_WORDS):
        return pct(value)
    return fmt(value)


def short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def humanize(key: str) -> str:
    return key.replace("_", " ")


def as_float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def score(value: Any) -> str:
    """A score with the decimals it needs to differ from its neighbours (99.9731)."""
    v = as_float(value)
    return "—" if v is None else score_text(v)


def reading(value: Any) -> str:
    v = as_float(value)
    return "" if v is None else score_reading(v)


def when(value: Any) -> str:
    """A timestamp to the minute, UTC: ``2026-11-02 00:26``."""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return "—" if value is None else str(value)


def period(first: Any, last: Any) -> str:
    """``2026-11-02 00:26 – 16:49`` (the date once when both fall on the same day)."""
    if isinstance(first, datetime) and isinstance(last, datetime):
        if first.date() == last.date():
            return f"{when(first)} – {last.strftime('%H:%M')}"
        return f"{when(first)} – {when(last)}"
    return f"{when(first)} – {when(last)}"


def str_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value if v is not None]


def top_values(items: Any, n_distinct: Any, limit: int = 60) -> dict[str, Any]:
    """A context column (``n_...`` and ``top_...``, see :mod:`detector.context`) for a cell:
    ``{"n": "3", "top": [("1.2.3.4", "412", full text)], "more": 1}``."""
    values = []
    for item in items or []:
        text = str(item.get("value"))
        values.append((short(text, limit), fmt(item.get("requests")), text))
    n = int(n_distinct) if isinstance(n_distinct, int | float) else len(values)
    return {"n": fmt(n), "top": values, "more": max(n - len(values), 0)}


def reason_head(reason: str) -> str:
    """A reason without its explanation: ``cot_rate high: 76% vs typical 0% (p90 18%)``."""
    return reason.split(" — ")[0]
