"""Logs in, as the offline commands read them: validated (with a budget of bad records to
skip), fingerprinted, and de-duplicated on ``request_id`` across every input.

A request logged twice (the same file given twice, overlapping exports, a gateway that retried
its delivery) counts once, as the live service counts it (its ingest is idempotent on
``request_id``): the first occurrence, in the order the inputs were given, is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from detector import pipeline
from detector.io.schema import read_events
from detector.io.tally import InputTally


@dataclass
class Intake:
    """Compact events of the logs, with what reading them found."""

    compact: pl.DataFrame
    tally: InputTally = field(default_factory=InputTally)
    duplicates: int = 0  # rows dropped: their request_id came earlier

    def summary(self) -> dict[str, object]:
        """For ``summary.json`` (``input``)."""
        return {**self.tally.summary(), "duplicates_dropped": self.duplicates}

    def lines(self) -> list[str]:
        """What to tell the user about the input (stderr)."""
        out = [self.tally.line()]
        if self.duplicates:
            out.append(
                f"{self.duplicates:,} duplicate request_id rows dropped (the first occurrence "
                "of each request is kept)"
            )
        return out


def dedupe(compact: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """``compact`` with each ``request_id`` once (its first row), and how many rows went."""
    unique = compact.unique(subset="request_id", keep="first", maintain_order=True)
    return unique, compact.height - unique.height


def read_compact(log_paths: Sequence[str | Path], tally: InputTally | None = None) -> Intake:
    """Read, validate, fingerprint and de-duplicate the logs (see the module docstring)."""
    tally = tally if tally is not None else InputTally()
    compact = pipeline.compact_events(read_events(log_paths, tally=tally))
    compact, dropped = dedupe(compact)
    return Intake(compact, tally, dropped)
