"""``distillguard verdict``: record what the analyst decided about an account, or list the
verdicts; and ``train`` on them (:func:`train_on_verdicts`). The store and the effects of a
verdict are in :mod:`detector.verdicts`."""

from __future__ import annotations

import getpass
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.table import Table
from rich.text import Text
from sklearn.base import clone

from detector import pipeline
from detector.intake import read_compact
from detector.models import DistillScorer
from detector.verdicts import (
    MIN_ABUSE_FOR_SUPERVISED,
    VerdictError,
    VerdictStore,
    make_verdict,
    store_beside,
    verdict_labels,
)
from service.commands.options import err, fail, out


def _default_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        return "unknown"


def _store_path(verdicts: Path | None, model: Path | None) -> Path:
    if verdicts is not None:
        return verdicts
    model = model or (Path(p) if (p := os.environ.get("DISTILLGUARD_MODEL_PATH")) else None)
    if model is None:
        raise fail(
            "which verdict store? Give --verdicts PATH, or --model MODEL (the store is "
            "verdicts.jsonl beside it)"
        )
    return store_beside(model)


def verdict(
    account: Annotated[
        str | None, typer.Argument(help="The account the verdict is about.", show_default=False)
    ] = None,
    abuse: Annotated[bool, typer.Option("--abuse", help="Confirmed abuse (a label).")] = False,
    benign: Annotated[bool, typer.Option("--benign", help="A false positive (a label).")] = False,
    allow: Annotated[
        bool,
        typer.Option("--allow", help="Allow-list: never flagged again; no campaign lifts it."),
    ] = False,
    note: Annotated[str, typer.Option(help="Why (shown with the account's reasons).")] = "",
    by: Annotated[
        str | None, typer.Option(help="Who decided (default: your user name).", show_default=False)
    ] = None,
    verdicts: Annotated[
        Path | None,
        typer.Option(help="Verdict store (default: verdicts.jsonl beside --model)."),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            envvar="DISTILLGUARD_MODEL_PATH", help="The model whose store to use (see --verdicts)."
        ),
    ] = None,
    list_: Annotated[
        bool, typer.Option("--list", help="List the current verdicts (with --history: all).")
    ] = False,
    history: Annotated[
        bool, typer.Option("--history", help="With --list: every verdict, oldest first.")
    ] = False,
) -> None:
    """Record a verdict about an account (--abuse, --benign or --allow), or --list them.

    The store is an append-only file, each verdict written and synced to disk before this
    returns; an account's latest verdict wins. audit, evaluate and train read it."""
    path = _store_path(verdicts, model)
    try:
        store = VerdictStore(path)
    except (VerdictError, OSError) as exc:
        raise fail(f"verdict store {path}: {exc}") from None
    if list_:
        _print(store, path, history)
        return
    chosen = [name for name, on in (("abuse", abuse), ("benign", benign), ("allow", allow)) if on]
    if account is None or len(chosen) != 1:
        raise fail("give an ACCOUNT and exactly one of --abuse, --benign, --allow (or --list)")
    try:
        v = make_verdict(account, chosen[0], by=by or _default_user(), note=note)
        store.record(v)
    except VerdictError as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"cannot write the verdict store {path}: {exc}") from None
    out.print(
        f"{v.account_id}: {v.reason()} -> {path}", highlight=False, markup=False, soft_wrap=True
    )


def _print(store: VerdictStore, path: Path, history: bool) -> None:
    rows = store.history() if history else sorted(store.latest().values(), key=lambda v: v.at)
    table = Table(title=Text(f"{len(rows)} verdict{'s' if len(rows) != 1 else ''} in {path}"))
    for col in ("account", "verdict", "at", "by", "note"):
        table.add_column(col)
    for v in rows:
        table.add_row(*(Text(x) for x in (v.account_id, v.verdict, v.at.isoformat(), v.by, v.note)))
    out.print(table)


def train_on_verdicts(
    logs: Sequence[Path],
    model_path: Path,
    verdicts: pl.DataFrame,
    store: Path,
    labels: pl.DataFrame | None,
    accounts: pl.DataFrame | None,
    scorer: DistillScorer,
) -> DistillScorer:
    """Fit and save a scorer with the abuse and benign verdicts as labels (over ``labels``,
    when given: a verdict wins), saying on stderr what the verdicts did.

    With at least :data:`MIN_ABUSE_FOR_SUPERVISED` abuse verdicts among the accounts of the
    logs (or with ``labels``), the scorer is fitted supervised through
    :func:`detector.pipeline.fit`. Every account without an abuse label counts as normal there
    (benign verdicts add nothing an unlabelled account does not), and the calibration reference
    is those accounts. With fewer, a supervised model would learn nothing it could generalise:
    the scorer is fitted unsupervised, as without labels, and the abuse accounts are left out of
    its calibration reference, with the members of suspicious campaigns."""
    err.print("[dim]·[/] reading, validating and fingerprinting logs", highlight=False)
    compact = read_compact(logs).compact
    present = set(compact["account_id"].unique().to_list())
    vlab = verdict_labels(verdicts).filter(pl.col("account_id").is_in(sorted(present)))
    n_abuse = int(vlab["is_attack"].sum())
    n_benign = vlab.height - n_abuse
    merged = vlab
    if labels is not None:
        rest = labels.select("account_id", "is_attack").join(vlab, on="account_id", how="anti")
        merged = pl.concat([rest, vlab])
    said = f"{n_abuse} abuse and {n_benign} benign verdicts on these accounts ({store})"
    err.print("[dim]·[/] computing account features and fitting the scorer", highlight=False)
    if labels is not None or n_abuse >= MIN_ABUSE_FOR_SUPERVISED:
        model = pipeline.fit(compact, accounts, merged, scorer)
        err.print(
            f"supervised on {said}{' over --labels' if labels is not None else ''}: every "
            "account without an abuse label counts as normal and makes the calibration "
            "reference",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    else:
        res = pipeline.score(compact, clone(scorer), accounts)
        model = res.model
        abusive = set(vlab.filter(pl.col("is_attack"))["account_id"].to_list())
        lifted = set(res.campaigns.lifted().to_list()) if res.campaigns is not None else set()
        out_ids = sorted(abusive | lifted)
        keep = res.features.filter(~pl.col("account_id").is_in(out_ids))
        model.set_reference(
            model.raw_score(keep),
            kind=f"accounts without an abuse verdict, outside suspicious campaigns "
            f"({len(out_ids)} left out)",
        )
        err.print(
            f"{said}: too few for a supervised model (it needs at least "
            f"{MIN_ABUSE_FOR_SUPERVISED} abuse verdicts), so the scorer is fitted unsupervised; "
            f"the {n_abuse} abuse accounts are left out of its calibration reference. Benign "
            "verdicts count as normal, as unlabelled accounts do; allow-lists apply when "
            "scoring.",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    model.save(model_path)
    return model
