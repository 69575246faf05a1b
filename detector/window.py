"""The window a score is computed over, and what an account's features need to know of it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl


@dataclass(frozen=True)
class Window:
    """The whole window's context, for scoring some of its accounts on their own events.

    An account's features depend on its own events and on three facts about the whole
    window: its first and last timestamps (``requests_per_day`` divides by the window's
    length) and when each model first appeared in it (``new_model_share``). The live
    service rescores only the accounts that received events; passing the window keeps
    their features equal to those of the offline audit over the same events.
    """

    start: datetime
    end: datetime
    model_first_seen: pl.DataFrame  # model, first_ts

    @classmethod
    def of(cls, events: pl.DataFrame) -> Window:
        """The window spanned by ``events`` (compact or canonical events)."""
        start: datetime = events["ts"].min()  # type: ignore[assignment]
        end: datetime = events["ts"].max()  # type: ignore[assignment]
        first_seen = events.group_by("model").agg(pl.col("ts").min().alias("first_ts"))
        return cls(start, end, first_seen)
