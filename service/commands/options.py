"""Options and helpers the commands share: ``--max-errors`` and its summary line, and the
verdict store (``--verdicts``, by default ``verdicts.jsonl`` beside the model)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import polars as pl
import typer
from rich.console import Console

from detector.io.schema import EventSchemaError
from detector.io.tally import InputTally
from detector.verdicts import VerdictError, load_verdicts, precision_text, store_beside

err = Console(stderr=True)  # progress, logs and problems
out = Console()  # results

MaxErrorsOpt = Annotated[
    int,
    typer.Option(
        "--max-errors",
        min=-1,
        help="Bad input lines to skip before failing: 0 fails on any (the default), "
        "-1 skips them all. Prints 'N bad of M lines' either way.",
    ),
]
VerdictsOpt = Annotated[
    Path | None,
    typer.Option(
        "--verdicts",
        help="Verdict store (distillguard verdict); default: verdicts.jsonl beside the model, "
        "when it exists.",
    ),
]


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print("error:", style="bold red", end=" ")
    err.print(message, highlight=False, markup=False, soft_wrap=True)
    return typer.Exit(code)


def report_input(tally: InputTally, summary: dict[str, Any] | None = None) -> None:
    """'N bad of M lines (first: ...)' and the duplicates dropped, on stderr."""
    err.print(tally.line(), highlight=False, markup=False, soft_wrap=True)
    dropped = (summary or {}).get("input", {}).get("duplicates_dropped")
    if dropped:
        err.print(
            f"{dropped:,} duplicate request_id rows dropped (the first occurrence of each request "
            "is kept)",
            highlight=False,
            markup=False,
        )


def input_error(exc: EventSchemaError, tally: InputTally) -> typer.Exit:
    """An input error: its problems, then the tally line."""
    exit_ = fail(str(exc))
    if tally.records or tally.bad:
        err.print(tally.line(), highlight=False, markup=False, soft_wrap=True)
    return exit_


def verdict_frame_for(path: Path | None, model: Path | None) -> tuple[pl.DataFrame | None, Path]:
    """The current verdicts of ``path``, else of the store beside ``model`` (None when that
    default store does not exist), and the store's path."""
    store = path if path is not None else store_beside(model) if model is not None else None
    if store is None:
        return None, Path()
    if path is None and not store.exists():
        return None, store
    try:
        return load_verdicts(store), store
    except (VerdictError, OSError) as exc:
        raise fail(f"verdict store {store}: {exc}") from None


def report_verdicts(summary: dict[str, Any], store: Path) -> None:
    """The precision of the flags against the verdicts, on stderr."""
    p = summary.get("verdicts")
    if p is not None:
        err.print(
            f"{precision_text(p)} (store: {store})", highlight=False, markup=False, soft_wrap=True
        )
