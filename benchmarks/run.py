"""Benchmarks, run by hand (never in the test suite). Each prints a Markdown section for
``benchmarks/RESULTS.md``.

    python benchmarks/run.py generate [--scenario default]
    python benchmarks/run.py audit [--scenario default]
    python benchmarks/run.py detection [--scenario default] [--scenario stealth] [--scale 1.0]
    python benchmarks/run.py cross-source [--scenario default] [--scale 0.5] [--corpus DIR]
    python benchmarks/run.py campaigns [--scenario demo] [--seeds 24] [--scale 1.0]
    python benchmarks/run.py spark [--scenario default] [--scales 1,2,4] [--master local[2]]

Timings on a noisy 2-core machine are compared as ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime

import polars as pl


def machine() -> str:
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


def bench_detection(scenario: str, scale: float = 1.0) -> str:
    """Detection in the flows a user runs, read from the 0-100 score: the self-fit audit of a
    log (no model, no labels: ``distillguard audit LOGS``), and a model trained on another log
    of the same scenario (``train`` on seed 1, ``audit --model`` of seed 2). Both score with
    slices and campaigns, as the audit does; labels are used only to measure."""
    from detector import pipeline
    from detector.evaluate import campaign_metrics, metrics
    from detector.models import DistillScorer
    from synthetic_logs.generate import generate

    t = time.perf_counter()
    train, test = generate(scenario, seed=1, scale=scale), generate(scenario, seed=2, scale=scale)
    c_test = pipeline.compact_events(test.events)
    flows = {
        "self-fit audit of seed 2": lambda: DistillScorer(),
        "trained on seed 1, audit of seed 2": lambda: pipeline.fit(train.events, train.accounts),
    }
    lines = [
        f"### detection `{scenario}` x{scale:g} in the user's flows (from the 0-100 score; "
        "slices and campaigns on)\n",
        "| flow | ROC-AUC | PR-AUC | recall @0.1 % FPR | @1 % FPR | flagged: recall | "
        "normal accounts flagged (target) | distinct flagged scores | campaign ARI | audit s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    tables = []
    for flow, make in flows.items():
        model = make()
        t0 = time.perf_counter()
        res = pipeline.score(c_test, model, test.accounts)
        secs = time.perf_counter() - t0
        m = metrics(res.accounts, test.labels)
        assert res.campaigns is not None
        ari = campaign_metrics(res.campaigns.assignments, test.labels, res.alone, res.accounts)
        flagged = res.accounts.filter(pl.col("flagged"))
        normal = res.accounts.join(test.labels.filter(~pl.col("is_attack")), on="account_id")
        f = res.model.target_fpr
        lines.append(
            f"| {flow} | {m['roc_auc']:.4f} | {m['pr_auc']:.4f} | "
            f"{m['recall_at_fpr']['0.001']:.3f} | {m['recall_at_fpr']['0.01']:.3f} | "
            f"{m['flagged_recall']:.3f} | {int(normal['flagged'].sum())} of {normal.height} = "
            f"{100 * m['flagged_fp_rate']:.3f} % ({100 * f:g} %) | "
            f"{flagged['score'].n_unique()} of {flagged.height} | {ari['ari']:.3f} | {secs:.1f} |"
        )
        rows = [
            f"\n**{flow}** — per archetype: flagged at the model's threshold, and at the "
            "0.1 % / 1 % FPR thresholds read off the labels\n",
            "| archetype | kind | accounts | flagged | at 0.1 % FPR | at 1 % FPR |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for name, r in sorted(m["by_archetype"].items(), key=lambda kv: (kv[1]["kind"], kv[0])):
            kind = "attack (recall)" if r["kind"] == "attack" else "normal (FP rate)"
            rate = r.get("recall", r.get("fp_rate", 0.0))
            rows.append(
                f"| {name} | {kind} | {r['n']} | {rate:.3f} | {r['at_fpr']['0.001']:.3f} | "
                f"{r['at_fpr']['0.01']:.3f} |"
            )
        tables.append("\n".join(rows))
    lines += tables
    lines.append(f"\n({time.perf_counter() - t:.0f} s in all)\n")
    return "\n".join(lines)


def bench_cross_source(scenario: str, scale: float, corpus: str) -> str:
    """Detection across text sources: a model trained on traffic whose prompts come from the
    generator's built-in vocabularies scores traffic whose prompts come from real corpora
    (``--corpus``), and the reverse, against the same-source runs (trained and audited on the
    same kind of text, other seeds). From the 0-100 score, slices and campaigns on."""
    from pathlib import Path

    from detector import pipeline
    from detector.evaluate import metrics
    from synthetic_logs.generate import generate

    t = time.perf_counter()
    root = Path(corpus)
    worlds = {
        (src, seed): generate(scenario, seed=seed, scale=scale, corpus=root if src else None)
        for src in (False, True)
        for seed in (1, 2)
    }
    name = {False: "built-in text", True: "corpus text"}
    lines = [
        f"### detection across text sources: `{scenario}` x{scale:g} (corpus {corpus})\n",
        "| trained on (seed 1) | audited (seed 2) | PR-AUC | recall @0.1 % FPR | @1 % FPR |",
        "|---|---|---:|---:|---:|",
    ]
    for train_src in (False, True):
        train = worlds[(train_src, 1)]
        model = pipeline.fit(train.events, train.accounts)
        for test_src in (train_src, not train_src):
            test = worlds[(test_src, 2)]
            res = pipeline.score(test.events, model, test.accounts)
            m = metrics(res.accounts, test.labels)
            lines.append(
                f"| {name[train_src]} | {name[test_src]} | {m['pr_auc']:.4f} | "
                f"{m['recall_at_fpr']['0.001']:.3f} | {m['recall_at_fpr']['0.01']:.3f} |"
            )
    lines.append(f"\n({time.perf_counter() - t:.0f} s in all)\n")
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


def _proc_tree(root: int) -> list[int]:
    """``root`` and every descendant process (from /proc; Linux)."""
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except OSError:
            continue
    return out


def _proc_status(pid: int) -> tuple[str, int, int]:
    """``(kind, rss_kib, hwm_kib)`` of a process: kind ``jvm``, ``python_worker`` (PySpark's
    daemon and its forked workers) or ``driver``."""
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
    fields = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0])
    kind = (
        "jvm" if "java" in cmd.split(" ")[0] else "python_worker" if "pyspark" in cmd else "driver"
    )
    return kind, fields.get("VmRSS", 0), fields.get("VmHWM", 0)


class PeakMemory:
    """Samples a process tree every ``every`` s: the peak RSS of the driver (the root), of the
    JVM, of the largest Python worker, and of all Python workers together."""

    def __init__(self, root: int, every: float = 0.2) -> None:
        import threading

        self.root, self.every = root, every
        self.peak: dict[str, float] = {"driver": 0, "jvm": 0, "worker_max": 0, "workers_sum": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            for pid in _proc_tree(self.root):
                try:
                    kind, rss, hwm = _proc_status(pid)
                except OSError:
                    continue
                if kind == "python_worker":
                    total += rss
                    self.peak["worker_max"] = max(self.peak["worker_max"], hwm)
                elif pid == self.root:
                    self.peak["driver"] = max(self.peak["driver"], hwm)
                else:
                    self.peak[kind] = max(self.peak[kind], hwm)
            self.peak["workers_sum"] = max(self.peak["workers_sum"], total)
            self._stop.wait(self.every)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        return {k: v / 1024 for k, v in self.peak.items()}  # MiB


def _child_sampled(code: str, env: dict[str, str] | None = None) -> dict[str, float]:
    """Run ``code`` in a fresh interpreter (last stdout line: a JSON dict), sampling the peak
    memory of it and its descendants (:class:`PeakMemory`)."""
    with tempfile.TemporaryFile("w+") as err:  # a file: Spark's logs must not fill a pipe
        proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env={**os.environ, **(env or {})},
        )
        sampler = PeakMemory(proc.pid)
        stdout, _ = proc.communicate()
        peak = sampler.stop()
        if proc.returncode:
            err.seek(0)
            raise RuntimeError(f"benchmark child failed ({proc.returncode}): {err.read()[-3000:]}")
    result: dict[str, float] = json.loads(stdout.strip().splitlines()[-1])
    result.update({f"peak_{k}_mib": v for k, v in peak.items()})
    return result


SPARK_DRIVER_MEMORY = "4g"  # the JVM heap of a local master (its executors are its threads)


def bench_spark(scenario: str, scales: list[float], master: str, seed: int = 1) -> str:
    """The audit on the local engine and on Spark (``master``), at several scales of
    ``scenario``: time and peak memory of each process."""
    rows = []
    for scale in scales:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [sys.executable, "-m", "service.cli", "generate", "--scenario", scenario,
                 "--seed", str(seed), "--scale", str(scale), "--out", tmp],
                check=True, capture_output=True,
            )  # fmt: skip
            load = (
                "import json, time\n"
                "from detector.io.tables import load_accounts\n"
                f"acc = load_accounts({tmp + '/accounts.parquet'!r})\n"
            )
            local = _child_sampled(
                load + "from detector.audit import audit\n"
                "t = time.perf_counter()\n"
                f"r = audit([{tmp + '/events.parquet'!r}], {tmp + '/local'!r}, accounts=acc)\n"
                "print(json.dumps({'t': time.perf_counter() - t, 'events': r.summary['n_events'],"
                " 'accounts': r.summary['n_accounts'], 'flagged': r.summary['n_flagged']}))"
            )
            spark = _child_sampled(
                load + "from detector.spark.engine import audit\n"
                "from detector.spark.session import spark_session\n"
                "t0 = time.perf_counter()\n"
                f"s = spark_session({master!r})\n"
                "s.sparkContext.setLogLevel('ERROR')\n"
                "t = time.perf_counter()\n"
                f"r = audit([{tmp + '/events.parquet'!r}], {tmp + '/spark'!r}, accounts=acc,"
                " spark=s)\n"
                "out = {'t_start': t - t0, 't': time.perf_counter() - t,"
                " 'flagged': r.summary['n_flagged'], 'stats': r.summary['spark']}\n"
                "print(json.dumps(out))",
                env={"PYSPARK_SUBMIT_ARGS": f"--driver-memory {SPARK_DRIVER_MEMORY} pyspark-shell"},
            )
            same = _same_results(f"{tmp}/local", f"{tmp}/spark")
        rows.append((scale, local, spark, same))
        print(
            f"  scale {scale}: local {local['t']:.0f} s, spark {spark['t']:.0f} s", file=sys.stderr
        )
    lines = [
        f"### `{scenario}` on Spark (`{master}`, driver JVM heap {SPARK_DRIVER_MEMORY}) vs the "
        "local engine (seed 1, self-fit, with the account table)\n",
        "| scale | events | accounts | local: time | local: peak RSS | Spark: time (+ start) "
        "| Spark: Python driver | Spark: JVM | Spark: largest Python worker | Spark: all "
        "Python workers | same scores / flags / campaigns |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for scale, loc, sp, same in rows:
        lines.append(
            f"| {scale:g} | {int(loc['events']):,} | {int(loc['accounts']):,} | {loc['t']:.0f} s "
            f"| {loc['peak_driver_mib']:,.0f} MiB | {sp['t']:.0f} s (+{sp['t_start']:.0f} s) "
            f"| {sp['peak_driver_mib']:,.0f} MiB | {sp['peak_jvm_mib']:,.0f} MiB "
            f"| {sp['peak_worker_max_mib']:,.0f} MiB | {sp['peak_workers_sum_mib']:,.0f} MiB "
            f"| {same} |"
        )
    lines.append("")
    for scale, _, sp, _ in rows:
        st = sp["stats"]
        stages = ", ".join(f"{k[2:-2]} {v:.0f} s" for k, v in st.items() if k.startswith("t_"))
        lines.append(
            f"- scale {scale:g}: {st['n_groups']} account groups (max {st['max_group_events']:,} "
            f"events in one), feature table on the driver {st['feature_table_mib']:.1f} MiB, "
            f"{st.get('n_candidate_pairs', 0):,} candidate pairs, {st.get('n_edges', 0):,} "
            f"edges; stages: {stages}"
        )
    return "\n".join(lines) + "\n"


def _same_results(local: str, spark: str) -> str:
    a = pl.read_parquet(f"{local}/accounts.parquet")
    b = pl.read_parquet(f"{spark}/accounts.parquet")
    both = a.join(b, on="account_id", suffix="_s")
    if both.height != a.height or a.height != b.height:
        return "different account sets"
    diff = float((both["score"] - both["score_s"]).abs().max() or 0.0)
    flags = int((both["flagged"] != both["flagged_s"]).sum())
    camps = int((both["campaign_id"].fill_null("") != both["campaign_id_s"].fill_null("")).sum())
    return f"max score diff {diff:.2g}, {flags} flags differ, {camps} campaign ids differ"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "what", choices=["generate", "audit", "detection", "cross-source", "campaigns", "spark"]
    )
    ap.add_argument("--corpus", default="../shared/corpora", help="real text for `cross-source`")
    ap.add_argument("--scenario", action="append")
    ap.add_argument("--seeds", type=int, default=24, help="draws for `campaigns`")
    ap.add_argument(
        "--scale", type=float, default=1.0, help="scenario scale (detection, campaigns)"
    )
    ap.add_argument("--scales", default="1,2,4", help="scenario scales for `spark`")
    ap.add_argument("--master", default="local[2]", help="Spark master for `spark`")
    args = ap.parse_args()
    scenarios = args.scenario or ["demo" if args.what == "campaigns" else "default"]
    print(f"_Machine: {machine()}_\n")
    for sc in scenarios:
        if args.what == "campaigns":
            print(bench_campaigns(sc, args.seeds, args.scale), flush=True)
            continue
        if args.what == "detection":
            print(bench_detection(sc, args.scale), flush=True)
            continue
        if args.what == "cross-source":
            print(bench_cross_source(sc, args.scale, args.corpus), flush=True)
            continue
        if args.what == "spark":
            scales = [float(x) for x in args.scales.split(",")]
            print(bench_spark(sc, scales, args.master), flush=True)
            continue
        fn = {"generate": bench_generate, "audit": bench_audit}
        print(fn[args.what](sc), flush=True)


if __name__ == "__main__":
    main()
