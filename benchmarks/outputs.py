"""What a change does to the outputs users see, run by hand (never in the test suite).

    python benchmarks/outputs.py dump DIR [--scenario demo --scenario default ...] [--scale 1]
    python benchmarks/outputs.py compare OLD_DIR NEW_DIR

``dump`` runs the command-line flows a user runs, through the installed ``distillguard``
command (so that any version of the code can be dumped the same way): for each scenario,
``generate --seed 1`` and ``--seed 2``, the self-fit ``audit`` of seed 2, ``train`` on seed 1
and ``audit --model`` of seed 2. It keeps each audit's ``accounts.parquet`` and
``campaigns.parquet``.

``compare`` lists, per scenario and flow, how many accounts changed score (by more than 1e-9),
raw score, flag, reasons or campaign, and whether the campaigns' memberships are the same;
exit status 1 when anything differs.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import polars as pl

FLOWS = ("selffit", "trained")


def _run(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "service.cli", *args], check=True, capture_output=True)


def dump(out: Path, scenarios: list[str], scale: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for sc in scenarios:
        with tempfile.TemporaryDirectory() as tmp:
            t = Path(tmp)
            for seed in (1, 2):
                _run("generate", "--scenario", sc, "--seed", str(seed), "--scale", str(scale),
                     "--out", str(t / f"s{seed}"))  # fmt: skip
            _run("audit", str(t / "s2" / "events.parquet"), "--out", str(t / "selffit"))
            _run("train", str(t / "s1" / "events.parquet"), "--out", str(t / "model.joblib"))
            _run("audit", str(t / "s2" / "events.parquet"), "--model", str(t / "model.joblib"),
                 "--out", str(t / "trained"))  # fmt: skip
            for flow in FLOWS:
                dest = out / sc / flow
                dest.mkdir(parents=True, exist_ok=True)
                for name in ("accounts.parquet", "campaigns.parquet", "summary.json"):
                    if (t / flow / name).exists():
                        shutil.copy(t / flow / name, dest / name)
        print(f"{sc}: dumped", flush=True)


def _members(path: Path) -> set[tuple[str, ...]]:
    if not path.exists():
        return set()
    return {tuple(sorted(m)) for m in pl.read_parquet(path)["members"].to_list()}


def compare(old: Path, new: Path) -> int:
    differs = 0
    for sc_dir in sorted(p for p in old.iterdir() if p.is_dir()):
        for flow in FLOWS:
            a_path, b_path = sc_dir / flow / "accounts.parquet", new / sc_dir.name / flow
            if not a_path.exists() or not (b_path / "accounts.parquet").exists():
                continue
            cols = ["account_id", "score", "raw_score", "flagged", "reasons", "campaign_id"]
            a = pl.read_parquet(a_path).select(cols)
            b = pl.read_parquet(b_path / "accounts.parquet").select(cols)
            j = a.join(b, on="account_id", how="full", suffix="_new", coalesce=True)
            missing = j.filter(pl.col("score").is_null() | pl.col("score_new").is_null()).height
            changed = {
                "score": (pl.col("score") - pl.col("score_new")).abs() > 1e-9,
                "raw_score": (pl.col("raw_score") - pl.col("raw_score_new")).abs() > 1e-9,
                "flagged": pl.col("flagged") != pl.col("flagged_new"),
                "reasons": pl.col("reasons") != pl.col("reasons_new"),
                "campaign_id": pl.col("campaign_id").ne_missing(pl.col("campaign_id_new")),
            }
            counts = j.select([e.fill_null(True).sum().alias(k) for k, e in changed.items()]).row(
                0, named=True
            )
            same_campaigns = _members(sc_dir / flow / "campaigns.parquet") == _members(
                b_path / "campaigns.parquet"
            )
            flagged = (int(a["flagged"].sum()), int(b["flagged"].sum()))
            line = (
                f"{sc_dir.name:10s} {flow:8s} accounts {a.height}/{b.height} (missing {missing}); "
                + ", ".join(f"{k} changed {v}" for k, v in counts.items())
                + f"; flagged {flagged[0]} -> {flagged[1]}; campaigns same: {same_campaigns}"
            )
            print(line)
            differs += missing + sum(counts.values()) + (not same_campaigns)
    return 1 if differs else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    d = sub.add_parser("dump")
    d.add_argument("out", type=Path)
    d.add_argument("--scenario", action="append")
    d.add_argument("--scale", type=float, default=1.0)
    c = sub.add_parser("compare")
    c.add_argument("old", type=Path)
    c.add_argument("new", type=Path)
    args = ap.parse_args()
    if args.what == "dump":
        dump(args.out, args.scenario or ["demo", "default", "stealth"], args.scale)
    else:
        sys.exit(compare(args.old, args.new))


if __name__ == "__main__":
    main()
