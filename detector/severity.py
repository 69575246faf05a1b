"""Severity bands of the 0-100 account score: the one definition, for the service and the report.

A score reads as "in the top x % of normal traffic" (see :mod:`detector.models`), so the bands
are lower bounds on it. They are exclusive: a score is in the first band whose bound it reaches,
and below the last band it has no severity (``None``).
"""

from __future__ import annotations

# (name, lowest score of the band), most severe first
SEVERITY_BANDS: tuple[tuple[str, float], ...] = (
    ("critical", 99.9),
    ("high", 99.0),
    ("elevated", 95.0),
)


def severity(score: float) -> str | None:
    """The band of ``score`` (``"critical"``, ``"high"``, ``"elevated"``), or None below them."""
    for name, lower in SEVERITY_BANDS:
        if score >= lower:
            return name
    return None


def bands_text() -> str:
    """The bands in words, for help texts: ``"critical >= 99.9, high >= 99, elevated >= 95"``."""
    return ", ".join(f"{name} >= {lower:g}" for name, lower in SEVERITY_BANDS)
