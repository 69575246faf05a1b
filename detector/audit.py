"""The offline audit: logs in, scored and explained accounts out.

``audit(...)`` reads logs lazily (Parquet is scanned and fingerprinted on polars' streaming
engine), runs :func:`detector.pipeline.score` with a trained
:class:`~detector.models.DistillScorer` (or fits one on the logs themselves, unsupervised),
and writes ``accounts.parquet``, ``accounts.csv``, ``campaigns.parquet``, ``summary.json`` and
``report.html``. ``train(...)`` fits and saves a scorer with :func:`detector.pipeline.fit`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from scipy.stats import binom

from detector import pipeline
from detector.campaigns.scoring import CampaignResult
from detector.context import CONTEXT_COLUMNS, account_context
from detector.evaluate import campaign_metrics, metrics, time_to_detect
from detector.features import FEATURE_NAMES
from detector.indicators import write_review_outputs
from detector.intake import read_compact
from detector.io.schema import expand_paths
from detector.io.tally import InputTally
from detector.models import DistillScorer
from detector.triage import with_actions
from detector.verdicts import flag_precision

Progress = Callable[[str], None]


def _noop(_stage: str) -> None:
    return None


@dataclass
class AuditResult:
    # account_id, score, flagged, reasons, campaign_id, severity, action, action_why, raw_score,
    # context (detector.context), features
    accounts: pl.DataFrame
    summary: dict[str, Any]
    paths: dict[str, Path]
    campaigns: pl.DataFrame | None = None  # campaign_id, score, n_members, members, evidence


def train(
    log_paths: Sequence[str | Path],
    model_path: str | Path,
    labels: pl.DataFrame | None = None,
    accounts: pl.DataFrame | None = None,
    scorer: DistillScorer | None = None,
    progress: Progress = _noop,
) -> DistillScorer:
    """Fit a scorer on the logs (with ``labels`` when given) and save it to ``model_path``."""
    progress("reading, validating and fingerprinting logs")
    compact = read_compact(log_paths).compact
    progress("computing account features and fitting the scorer")
    model = pipeline.fit(compact, accounts, labels, scorer)
    model.save(model_path)
    return model


def audit(
    log_paths: Sequence[str | Path],
    out_dir: str | Path,
    model: DistillScorer | None = None,
    labels: pl.DataFrame | None = None,
    accounts: pl.DataFrame | None = None,
    *,
    campaigns: bool = True,
    with_time_to_detect: bool = False,
    target_fpr: float | None = None,
    progress: Progress = _noop,
    tally: InputTally | None = None,
    verdicts: pl.DataFrame | None = None,
) -> AuditResult:
    """Score every account of the logs with ``model`` (default: one fitted on these logs,
    unsupervised) through :func:`detector.pipeline.score`, and write the outputs. Logs are
    scanned lazily and fingerprinted on polars' streaming engine: only the compact events
    (hashes, markers and request metadata) are held in memory. ``target_fpr`` flags at another
    false-positive rate than the model's own. ``tally``: the budget of bad input records to
    skip, and what reading found (:class:`~detector.io.tally.InputTally`); a request logged
    twice counts once (:mod:`detector.intake`). ``verdicts``: the analyst's verdicts
    (:mod:`detector.verdicts`): applied to the scores, measured against the flags
    (``summary.json``: ``verdicts``) and written beside the outputs (``verdicts.csv``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    progress("reading, validating and fingerprinting logs")
    intake = read_compact(log_paths, tally)
    compact = intake.compact
    if model is None:
        model = DistillScorer() if target_fpr is None else DistillScorer(target_fpr=target_fpr)
    elif target_fpr is not None:
        model = model.with_target_fpr(target_fpr)
    result = pipeline.score(
        compact, model, accounts, campaigns=campaigns, progress=progress, verdicts=verdicts
    )
    ttd: Callable[[], dict[str, Any]] | None = None
    if labels is not None and with_time_to_detect:
        fitted, lab = result.model, labels

        def score_prefix(window: pl.LazyFrame) -> pl.DataFrame:
            return pipeline.score(window, fitted, accounts, campaigns=campaigns).accounts

        def prefixes() -> dict[str, Any]:
            return time_to_detect(compact.lazy(), lab, score_prefix)

        ttd = prefixes

    def review(table: pl.DataFrame, found: CampaignResult | None) -> dict[str, Path]:
        return write_review_outputs(out, table, compact, accounts, found, verdicts)

    progress("per-account context: requests, IPs, keys, user agents")
    context = account_context(compact)
    return finish(
        out,
        result,
        compact.height,
        log_paths,
        labels,
        progress,
        ttd,
        extra={"input": intake.summary()},
        verdicts=verdicts,
        review=review,
        context=context,
    )


def finish(
    out: Path,
    result: pipeline.Scored,
    n_events: int,
    log_paths: Sequence[str | Path],
    labels: pl.DataFrame | None = None,
    progress: Progress = _noop,
    time_to_detect_fn: Callable[[], dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
    verdicts: pl.DataFrame | None = None,
    review: Callable[[pl.DataFrame, CampaignResult | None], dict[str, Path]] | None = None,
    context: pl.DataFrame | None = None,
) -> AuditResult:
    """The audit's outputs from a scored window (:class:`detector.pipeline.Scored`), whichever
    engine computed it: the account table (with ``context``, :func:`account_context`, when the
    engine computed it), the summary (``extra`` added to it), metrics against ``labels`` (and
    time to detect, when ``time_to_detect_fn`` is given), the precision of the flags against
    ``verdicts``, the files (and ``review``'s, when given)."""
    model, feats, found = result.model, result.features, result.campaigns
    table = result.accounts.join(feats, on="account_id", how="left")
    if context is not None:
        table = table.join(context, on="account_id", how="left")
    table = table.select(
        "account_id",
        "score",
        "flagged",
        "reasons",
        "campaign_id",
        "raw_score",
        *(CONTEXT_COLUMNS if context is not None else ()),
        *FEATURE_NAMES,
    ).sort("score", "raw_score", descending=True)
    table = with_actions(table, found.campaigns if found is not None else None)
    summary: dict[str, Any] = {
        "n_accounts": table.height,
        "n_events": n_events,
        "n_flagged": int(table["flagged"].sum()),
        "n_campaigns": found.campaigns.height if found is not None else None,
        "threshold": model.threshold_,
        "target_fpr": model.target_fpr,
        "calibration": calibration_summary(result, labels),
        "model": model.info(),
        "inputs": [str(p) for p in _inputs(log_paths)],
        **(extra or {}),
    }
    if verdicts is not None:
        summary["verdicts"] = flag_precision(result.accounts, verdicts, model.threshold_)
    if labels is not None:
        progress("evaluating against labels")
        summary["metrics"] = metrics(result.accounts, labels)
        if found is not None:
            summary["metrics"]["campaigns"] = campaign_metrics(
                found.assignments, labels, result.alone, result.accounts
            )
        if time_to_detect_fn is not None:
            progress("time to detect (re-scoring at successive cut-offs)")
            summary["metrics"]["time_to_detect"] = time_to_detect_fn()
    progress("writing results")
    paths = write_outputs(out, table, summary, labels, found)
    if review is not None:
        paths.update(review(table, found))
    return AuditResult(table, summary, paths, found.campaigns if found is not None else None)


def calibration_summary(result: pipeline.Scored, labels: pl.DataFrame | None) -> dict[str, Any]:
    """What the flag threshold promises on this log, and, with labels, what it kept.

    ``expected_normal_flagged``: the target rate times the accounts the pipeline takes for
    normal (every account but the members of suspicious campaigns), with a 95 % binomial
    interval — an upper estimate, since attackers left among them push the threshold up.
    ``note``: set when the reference is too small to check the target rate against data."""
    model = result.model
    f = float(model.target_fpr)
    lifted = result.campaigns.lifted().len() if result.campaigns is not None else 0
    n_normal = max(result.accounts.height - lifted, 0)
    lo, hi = (int(v) for v in binom.interval(0.95, n_normal, f)) if n_normal else (0, 0)
    out: dict[str, Any] = {
        "target_fpr": f,
        "threshold": float(model.threshold_),
        "reference": model.reference_kind_,
        "n_reference": model.n_reference_,
        "resolvable_fpr": model.resolvable_fpr(),
        "expected_normal_flagged": {"estimate": f * n_normal, "interval_95": [lo, hi]},
        "note": small_reference_note(model),
    }
    if labels is not None:
        normal = result.accounts.join(
            labels.filter(~pl.col("is_attack")).select("account_id"), on="account_id"
        )
        count = int(normal["flagged"].sum())
        out["measured_normal_flagged"] = {
            "count": count,
            "of": normal.height,
            "rate": count / normal.height if normal.height else None,
        }
    return out


def small_reference_note(model: DistillScorer) -> str | None:
    """One line when the model's reference is too small for its target false-positive rate."""
    f, n = float(model.target_fpr), int(model.n_reference_)
    if n + 1 >= 1.0 / f:
        return None
    honour = next(r for r in (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5) if r * (n + 1) >= 1)
    return (
        f"only {n:,} reference accounts: the smallest false-positive rate they can resolve is "
        f"{100 / (n + 1):.2g} %, so the {100 * f:g} % threshold is extrapolated, not measured. "
        f"Audit with --model trained on a log of at least {int(1 / f):,} accounts, or pass "
        f"--target-fpr {honour:g}; the ranking holds either way."
    )


def _inputs(log_paths: Sequence[str | Path]) -> list[str | Path]:
    """The input files (URIs such as ``s3a://...``, read by the Spark engine, as given)."""
    local = [p for p in log_paths if "://" not in str(p)]
    remote = [p for p in log_paths if "://" in str(p)]
    return [*expand_paths(local), *remote] if local else list(remote)


def write_outputs(
    out: Path,
    table: pl.DataFrame,
    summary: dict[str, Any],
    labels: pl.DataFrame | None,
    found: CampaignResult | None = None,
) -> dict[str, Path]:
    from detector.report.html import write_report

    paths = {
        "accounts": out / "accounts.parquet",
        "csv": out / "accounts.csv",
        "summary": out / "summary.json",
        "report": out / "report.html",
    }
    table.write_parquet(paths["accounts"])
    links = None
    if found is not None:
        paths["campaigns"] = out / "campaigns.parquet"
        found.campaigns.write_parquet(paths["campaigns"])
        links = found.edges.join(
            found.assignments.rename({"account_id": "src"}), on="src", how="inner"
        ).select("src", "dst", "weight", "campaign_id")
    table.with_columns(pl.col("reasons").list.join(" | ")).select(
        "account_id", "score", "flagged", "reasons", "campaign_id"
    ).write_csv(paths["csv"])
    paths["summary"].write_text(json.dumps(summary, indent=2, default=str) + "\n")
    write_report(
        paths["report"],
        accounts=table,
        features=features_by_reason_frequency(table),
        summary=summary,
        labels=labels,
        campaigns=found.campaigns if found is not None else None,
        links=links,
    )
    return paths


def features_by_reason_frequency(table: pl.DataFrame) -> list[str]:
    """Feature names, those most often cited in flagged accounts' reasons first."""
    cited = (
        table.filter(pl.col("flagged"))
        .select(pl.col("reasons").explode().str.extract(r"^(\w+)", 1).alias("f"))
        .drop_nulls()
        .group_by("f")
        .len()
        .sort("len", "f", descending=[True, False])["f"]
        .to_list()
    )
    return [f for f in cited if f in FEATURE_NAMES] + [f for f in FEATURE_NAMES if f not in cited]
