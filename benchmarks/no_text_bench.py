"""Detection without prompt text, run by hand (never in the test suite)::

    python benchmarks/no_text_bench.py [--scenario default]

What a source that logs no message text gives (Azure OpenAI RequestResponse logs, LiteLLM with
message logging off, OpenTelemetry without content capture, Bedrock without text delivery):
the scenario's seed 1 fits, seed 2 is evaluated (accounts with their IP / key slices, without
campaigns), (a) with text, (b) with ``prompt`` and ``system_prompt`` null in both days, and
(c) a model fitted on seed 1 WITH text scoring seed 2 without. Prints a Markdown section for
``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import platform
import time
from datetime import UTC, datetime

import numpy as np
import polars as pl


def block(mode: str, own: pl.DataFrame, features: pl.DataFrame, labels: pl.DataFrame) -> str:
    """Metrics of one fitted model's scores, and recall / FP rate per archetype."""
    from detector.evaluate import metrics

    m = metrics(own, labels)
    y = features.join(labels, on="account_id")
    scored = own.join(y.select("account_id", "archetype", "is_attack"), on="account_id")
    lines = [
        f"**{mode}**: ROC-AUC {m['roc_auc']:.4f}, PR-AUC {m['pr_auc']:.4f}, recall at 0.1 % "
        f"FPR {m['recall_at_fpr']['0.001']:.3f}, at 1 % FPR {m['recall_at_fpr']['0.01']:.3f}; "
        f"flagged: recall {m['flagged_recall']:.3f}, FP rate {m['flagged_fp_rate']:.4f}\n",
        "| archetype | kind | accounts | flagged at 0.1 % FPR | at 1 % FPR |",
        "|---|---|---:|---:|---:|",
    ]
    raw = scored["raw_score"].to_numpy()
    neg = scored.filter(~pl.col("is_attack"))["raw_score"].to_numpy()
    thr = {f: float(np.quantile(neg, 1 - f, method="higher")) for f in (0.001, 0.01)}
    tab = (
        scored.with_columns(
            (pl.Series(raw) > thr[0.001]).alias("at_0.1%"),
            (pl.Series(raw) > thr[0.01]).alias("at_1%"),
        )
        .group_by("archetype", "is_attack")
        .agg(pl.len().alias("n"), pl.col("at_0.1%").mean(), pl.col("at_1%").mean())
        .sort("is_attack", "archetype", descending=[True, False])
    )
    for r in tab.iter_rows(named=True):
        kind = "attack (recall)" if r["is_attack"] else "normal (FP rate)"
        lines.append(
            f"| {r['archetype']} | {kind} | {r['n']} | {r['at_0.1%']:.3f} | {r['at_1%']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", default="default")
    args = ap.parse_args()

    from detector import pipeline
    from detector.models import DistillScorer
    from synthetic_logs.generate import generate

    t = time.perf_counter()
    train, test = generate(args.scenario, seed=1), generate(args.scenario, seed=2)
    blank = [pl.lit(None, pl.String).alias(c) for c in ("prompt", "system_prompt")]
    with_text = (pipeline.compact_events(train.events), pipeline.compact_events(test.events))
    no_text = (
        pipeline.compact_events(train.events.with_columns(blank)),
        pipeline.compact_events(test.events.with_columns(blank)),
    )
    runs = [
        ("with prompt text, unsupervised", None, with_text[0], with_text[1]),
        ("with prompt text, supervised", train.labels, with_text[0], with_text[1]),
        ("NO prompt text, unsupervised", None, no_text[0], no_text[1]),
        ("NO prompt text, supervised", train.labels, no_text[0], no_text[1]),
        ("NO prompt text, unsupervised model fitted WITH text", None, with_text[0], no_text[1]),
    ]
    out = [
        f"### detection `{args.scenario}` without prompt text "
        "(`python benchmarks/no_text_bench.py`)\n",
        f"{platform.platform()}, Python {platform.python_version()}, polars {pl.__version__}, "
        f"{datetime.now(UTC):%Y-%m-%d}. Fit on seed 1, evaluated on seed 2; accounts with their "
        "IP / key slices, without campaigns; NO prompt text = `prompt` and `system_prompt` null.\n",
    ]
    for mode, labels, fit_on, score_on in runs:
        model = pipeline.fit(fit_on, train.accounts, labels, DistillScorer())
        res = pipeline.score(score_on, model, test.accounts, campaigns=False)
        out.append(block(mode, res.alone, res.features, test.labels))
    out.append(f"({time.perf_counter() - t:.0f} s in all)\n")
    print("\n".join(out), flush=True)


if __name__ == "__main__":
    main()
