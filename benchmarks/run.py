"""Benchmarks, run by hand (never in the test suite). Each prints a Markdown section for
``benchmarks/RESULTS.md``.

    python benchmarks/run.py generate [--scenario default]
    python benchmarks/run.py audit [--scenario default]
    python benchmarks/run.py detection [--scenario default] [--scenario stealth]
    python benchmarks/run.py campaigns [--scenario demo] [--seeds 24] [--scale 1.0]

Timings on a noisy 2-core machine are compared as ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime

import polars as pl


def machine() -> str:
    import os

    return (
        f"{platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"polars {pl.__version__}, {datetime.now(UTC):%Y-%m-%d}"
    )


def _child(code: str) -> dict[str, float]:
    """Run ``code`` in a fresh interpreter; it prints a JSON dict as its last line. Adds the
    child's own peak RSS (``peak_rss_mib``)."""
    code += (
        "\nimport resource as _r, json as _j\n"
        "print(_j.dumps({'peak_rss_mib': _r.getrusage(_r.RUSAGE_SELF).ru_maxrss / 1024}))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    lines = out.stdout.strip().splitlines()
    result: dict[str, float] = json.loads(lines[-2])
    result.update(json.loads(lines[-1]))
    return result


def bench_generate(scenario: str, seed: int = 1) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        r = _child(
            "import json, time\n"
            "from synthetic_logs.generate import generate\n"
            "t = time.perf_counter()\n"
            f"g = generate({scenario!r}, seed={seed})\n"
            "t_gen = time.perf_counter() - t\n"
            f"g.write({tmp!r})\n"
            "t_all = time.perf_counter() - t\n"
            "print(json.dumps({'events': g.events.height, 'accounts': g.labels.height,"
            " 't_gen': t_gen, 't_all': t_all}))"
        )
    rate = r["events"] / r["t_all"]
    return (
        f"### generate `{scenario}` (seed {seed})\n\n"
        f"- {int(r['events']):,} events, {int(r['accounts']):,} accounts\n"
        f"- generate {r['t_gen']:.1f} s + write Parquet = {r['t_all']:.1f} s "
        f"-> **{rate / 1e6:.2f} M events/s** to Parquet (target >= 1 M/s)\n"
        f"- peak RSS {r['peak_rss_mib']:,.0f} MiB\n"
    )


def bench_audit(scenario: str, seed: int = 1) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "service.cli",
                "generate",
                "--scenario",
                scenario,
                "--seed",
                str(seed),
                "--out",
                tmp,
            ],
            check=True,
            capture_output=True,
        )
        ev = f"{tmp}/events.parquet"
        base = _child(
            "import json, time, polars as pl\n"
            "t = time.perf_counter()\n"
            f"n = pl.scan_parquet({ev!r}).select(pl.col('prompt').hash().sum(), pl.len())"
            ".collect().row(0)[1]\n"
            "print(json.dumps({'t': time.perf_counter() - t, 'events': n}))"
        )
        aud = _child(
            "import json, time\n"
            "from detector.audit import audit\n"
            "t = time.perf_counter()\n"
            f"r = audit([{ev!r}], {tmp + '/audit'!r})\n"
            "print(json.dumps({'t': time.perf_counter() - t, 'events': r.summary['n_events']}))"
        )
    n = aud["events"]
    return (
        f"### audit `{scenario}` end to end (seed {seed}, unsupervised self-fit, no model)\n\n"
        f"- {int(n):,} events: audit {aud['t']:.1f} s -> **{n / aud['t'] / 1e6:.2f} M events/s** "
        f"(read, validate, fingerprint, features, fit, score, write outputs and report)\n"
        f"- polars reading the same Parquet and hashing its prompt column: {base['t']:.2f} s "
        f"-> audit / baseline time ratio **{aud['t'] / base['t']:.1f}x**\n"
        f"- peak RSS: audit {aud['peak_rss_mib']:,.0f} MiB\n"
    )


def bench_detection(scenario: str) -> str:
    from detector import pipeline
    from detector.evaluate import metrics
    from detector.models import DistillScorer
    from synthetic_logs.generate import generate

    t = time.perf_counter()
    train, test = generate(scenario, seed=1), generate(scenario, seed=2)
    c_train = pipeline.compact_events(train.events)
    c_test = pipeline.compact_events(test.events)
    lines = [
        f"### detection `{scenario}` (fit on seed 1, evaluated on seed 2; accounts with their "
        "IP / key slices, without campaigns)\n"
    ]
    for mode, labels in (("unsupervised", None), ("supervised", train.labels)):
        model = pipeline.fit(c_train, train.accounts, labels, DistillScorer())
        res = pipeline.score(c_test, model, test.accounts, campaigns=False)
        own, f_test = res.alone, res.features
        m = metrics(own, test.labels)
        y = f_test.join(test.labels, on="account_id")
        scored = own.join(y.select("account_id", "archetype", "is_attack"), on="account_id")
        lines.append(
            f"**{mode}**: ROC-AUC {m['roc_auc']:.4f}, PR-AUC {m['pr_auc']:.4f}, recall at 0.1 % "
            f"FPR {m['recall_at_fpr']['0.001']:.3f}, at 1 % FPR {m['recall_at_fpr']['0.01']:.3f}; "
            f"flagged (score >= {model.threshold_:.1f}): recall {m['flagged_recall']:.3f}, "
            f"FP rate {m['flagged_fp_rate']:.4f}\n"
        )
        raw = scored["raw_score"].to_numpy()
        neg = scored.filter(~pl.col("is_attack"))["raw_score"].to_numpy()
        import numpy as np

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
        lines.append("| archetype | kind | accounts | flagged at 0.1 % FPR | at 1 % FPR |")
        lines.append("|---|---|---:|---:|---:|")
        for r in tab.iter_rows(named=True):
            kind = "attack (recall)" if r["is_attack"] else "normal (FP rate)"
            lines.append(
                f"| {r['archetype']} | {kind} | {r['n']} | {r['at_0.1%']:.3f} | {r['at_1%']:.3f} |"
            )
        lines.append("")
    lines.append(f"({time.perf_counter() - t:.0f} s in all)\n")
    return "\n".join(lines)


def bench_campaigns(scenario: str, n_seeds: int, scale: float = 1.0) -> str:
    """How often the campaign layer gets a whole draw right: fit on seed 0, then on seeds
    1..n_seeds (the audit's path: slices, then campaigns) count the hydra campaigns found as
    exactly one served campaign with exactly their members, lifted and all flagged, and the
    legitimate groups (campaigns of normal accounts only) that lift their members."""
    import warnings

    from detector import pipeline
    from synthetic_logs.generate import generate

    t = time.perf_counter()
    warnings.simplefilter("ignore", RuntimeWarning)
    train = generate(scenario, seed=0, scale=scale)
    model = pipeline.fit(train.events, train.accounts)
    rows = []
    for seed in range(1, n_seeds + 1):
        g = generate(scenario, seed=seed, scale=scale)
        found = pipeline.score(g.events, model, g.accounts).campaigns
        assert found is not None
        acc = {r["account_id"]: r for r in found.accounts.iter_rows(named=True)}
        camps = {r["campaign_id"]: r for r in found.campaigns.iter_rows(named=True)}
        hydras = (
            g.labels.filter(pl.col("archetype") == "hydra")
            .group_by("campaign_id")
            .agg(pl.col("account_id").filter(pl.col("account_id").is_in(list(acc))).sort())
        )
        exact = lifted = 0
        for members in hydras["account_id"].to_list():
            cids = {acc[m]["campaign_id"] for m in members}
            c = camps.get(cids.pop()) if len(cids) == 1 else None
            exact += c is not None and sorted(c["members"]) == members
            lifted += c is not None and c["lift"] > 0 and all(acc[m]["flagged"] for m in members)
        normals = set(g.labels.filter(~pl.col("is_attack"))["account_id"].to_list())
        legit = [c for c in camps.values() if set(c["members"]) <= normals]
        bad_legit = sum(c["lift"] > 0 for c in legit)
        rows.append((seed, hydras.height, exact, lifted, len(legit), bad_legit))
    ok = sum(h == e == li and b == 0 for _, h, e, li, _, b in rows)
    lines = [
        f"### campaigns `{scenario}` at scale {scale}: {n_seeds} draws (model fitted on seed 0)\n",
        f"- draws with every hydra exact, lifted and flagged, and no legitimate group lifted: "
        f"**{ok} / {n_seeds}**",
        f"- hydra campaigns found exactly: {sum(r[2] for r in rows)} / {sum(r[1] for r in rows)}; "
        f"lifted with every member flagged: {sum(r[3] for r in rows)}",
        f"- legitimate groups that lift their members: {sum(r[5] for r in rows)} of "
        f"{sum(r[4] for r in rows)}\n",
        "| seed | hydras | exact | lifted, all flagged | legit groups | legit lifted |",
        "|---:|---:|---:|---:|---:|---:|",
        *(f"| {' | '.join(str(v) for v in r)} |" for r in rows),
        f"\n({time.perf_counter() - t:.0f} s in all)\n",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["generate", "audit", "detection", "campaigns"])
    ap.add_argument("--scenario", action="append")
    ap.add_argument("--seeds", type=int, default=24, help="draws for `campaigns`")
    ap.add_argument("--scale", type=float, default=1.0, help="scenario scale for `campaigns`")
    args = ap.parse_args()
    scenarios = args.scenario or ["demo" if args.what == "campaigns" else "default"]
    print(f"_Machine: {machine()}_\n")
    for sc in scenarios:
        if args.what == "campaigns":
            print(bench_campaigns(sc, args.seeds, args.scale), flush=True)
            continue
        fn = {"generate": bench_generate, "audit": bench_audit, "detection": bench_detection}
        print(fn[args.what](sc), flush=True)


if __name__ == "__main__":
    main()
