"""The Spark engine (detector/spark) against the local engine, on a real local Spark.

The tests that need Spark share one ``local[2]`` session per module (start-up costs ~15 s) and
skip, saying why, where PySpark or Java is missing (``pip install '.[spark]'``; Debian's
``openjdk-17-jre-headless``; ``.ci/run`` installs both). The merge rules of large accounts and
the Arrow bridge are checked without Spark.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import pytest
from typer.testing import CliRunner

from detector import pipeline
from detector.features import FEATURE_NAMES
from detector.io.schema import EVENT_SCHEMA, EventSchemaError
from detector.models import DistillScorer
from detector.spark import frames, skew
from detector.spark.session import SparkUnavailableError, java_available, require_pyspark
from detector.subaccounts import slice_features
from detector.window import Window
from service.cli import app
from synthetic_logs.generate import Generated, generate

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def _spark_missing() -> str | None:
    try:
        require_pyspark()
    except SparkUnavailableError as exc:
        return str(exc)
    if not java_available():
        return "no Java runtime (Spark needs Java 17+: apt-get install openjdk-17-jre-headless)"
    return None


needs_spark = pytest.mark.skipif(_spark_missing() is not None, reason=_spark_missing() or "")


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    from detector.spark.session import spark_session

    session = spark_session("local[2]")
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def small_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Generated]:
    """A small demo day (~40k events, ~450 accounts, every archetype and some campaigns)."""
    g = generate("demo", seed=3, scale=0.3)
    out = tmp_path_factory.mktemp("spark-log")
    g.write(out)
    return out, g


def _campaign_sets(path: Path) -> set[frozenset[str]]:
    camps = pl.read_parquet(path)
    return {frozenset(m) for m in camps["members"].to_list()}


@needs_spark
def test_spark_audit_equals_local_audit(
    spark: SparkSession, small_log: tuple[Path, Generated], tmp_path: Path
) -> None:
    """`distillguard audit --engine spark` on local[2] and the local audit of the same log:
    same accounts, scores within 0.01, same flags, same campaigns, same output files."""
    logs, _ = small_log
    train = generate("demo", seed=4, scale=0.3)  # another day: a model trained elsewhere,
    model = tmp_path / "model.joblib"  # at 2 % FPR so that the audited day has flags
    pipeline.fit(train.events, train.accounts, scorer=DistillScorer(target_fpr=0.02)).save(model)
    runner = CliRunner()
    common = ["audit", str(logs), "--model", str(model), "--out"]
    local = runner.invoke(app, [*common, str(tmp_path / "local")])
    assert local.exit_code == 0, local.output
    remote = runner.invoke(
        app, [*common, str(tmp_path / "spark"), "--engine", "spark", "--spark-master", "local[2]"]
    )
    assert remote.exit_code == 0, remote.output
    for name in ("accounts.parquet", "accounts.csv", "campaigns.parquet", "report.html"):
        assert (tmp_path / "spark" / name).stat().st_size > 0, name
    a = pl.read_parquet(tmp_path / "local" / "accounts.parquet")
    b = pl.read_parquet(tmp_path / "spark" / "accounts.parquet")
    assert set(a["account_id"]) == set(b["account_id"])
    both = a.join(b, on="account_id", suffix="_spark")
    assert both.height == a.height == b.height
    assert (both["score"] - both["score_spark"]).abs().max() <= 0.01
    assert (both["flagged"] == both["flagged_spark"]).all()
    assert both["flagged"].sum() > 0, "the log has accounts to flag"
    same_campaign = both["campaign_id"].fill_null("") == both["campaign_id_spark"].fill_null("")
    assert same_campaign.all()
    local_camps = _campaign_sets(tmp_path / "local" / "campaigns.parquet")
    assert local_camps and local_camps == _campaign_sets(tmp_path / "spark" / "campaigns.parquet")
    for f in FEATURE_NAMES:  # the same feature code on groups of accounts
        diff = (both[f] - both[f"{f}_spark"]).abs().max()
        assert diff is None or diff <= 1e-9 * max(1.0, float(both[f].abs().max() or 0)), f
    summary = json.loads((tmp_path / "spark" / "summary.json").read_text())
    assert summary["engine"] == "spark"
    assert (
        summary["n_events"]
        == json.loads((tmp_path / "local" / "summary.json").read_text())["n_events"]
    )
    assert summary["spark"]["n_candidate_pairs"] > 0


def _with_giant(g: Generated, share: float) -> tuple[pl.DataFrame, str]:
    """``g``'s events plus copies of the events of its account with the most IPs (a reseller:
    a large multi-tenant account, whose IP / key slices are scored too), shifted by whole
    seconds and given new request ids, until that account holds ``share`` of all events."""
    events = g.events
    widest = events.group_by("account_id").agg(pl.col("ip").n_unique(), pl.len())
    giant, _, n = widest.sort("ip", "account_id", descending=[True, False]).row(0)
    others = events.height - n
    want = int(share * others / (1 - share))
    mine = events.filter(pl.col("account_id") == giant)
    copies = [
        mine.with_columns(
            pl.col("ts") + timedelta(seconds=7 * k),
            (pl.col("request_id") + f"-copy{k}").alias("request_id"),
        )
        for k in range(1, want // n + 2)
    ]
    extra = pl.concat(copies).head(want - n)
    return pl.concat([events, extra]), giant


def test_chunk_merge_rules_exact_where_documented(small_log: tuple[Path, Generated]) -> None:
    """The merge of a large account's hourly chunks (no Spark): THE feature code on each chunk
    with the whole window, merged by skew.merge_features, equals the whole account's features
    for every feature skew.EXACT lists; the approximate ones stay bounded as documented."""
    _, g = small_log
    events, giant = _with_giant(g, 0.3)
    compact = pipeline.compact_events(events)
    window = Window.of(compact)
    exact = pipeline.features(compact, g.accounts, window)
    mine = compact.filter(pl.col("account_id") == giant)
    n = mine.height
    large = pl.DataFrame({"account_id": [giant], "n": [n]})
    chunks = skew.time_chunks(large, window, n // 4, first_group=10)
    assert chunks["n_chunks"][0] >= 4
    c = chunks.row(0, named=True)
    hour = pl.col("ts").dt.epoch("s") // 3600
    group = c["first_group"] + hour // c["chunk_h"] - c["base_hour"]
    rows = []
    for (grp,), part in mine.with_columns(group.alias("__grp")).group_by("__grp"):
        f = pipeline.features(part.drop("__grp"), g.accounts, window)
        rows.append(
            f.with_columns(pl.lit(part.height).alias(skew.N_EVENTS), pl.lit(grp).alias("__grp"))
        )
    per_group = pl.concat(rows).cast({skew.N_EVENTS: pl.Int64, "__grp": pl.Int64})
    merged = skew.merge_features(per_group, 10, "__grp").row(0, named=True)
    truth = exact.filter(pl.col("account_id") == giant).row(0, named=True)
    for name in skew.EXACT:
        want, got = truth[name], merged[name]
        if want is None:
            assert got is None, name
        else:
            assert got == pytest.approx(want, rel=1e-9, abs=1e-12), name
    for name in skew.LOWER_BOUND_MAX:
        assert merged[name] <= truth[name] + 1e-12, name
    assert merged["near_dup_rate"] <= truth["near_dup_rate"] + 1e-12


@needs_spark
def test_spark_splits_an_account_with_30_percent_of_the_events(
    spark: SparkSession, small_log: tuple[Path, Generated]
) -> None:
    """One account holds ~30 % of the events; with max_account_events at a quarter of it the
    Spark engine splits it into hourly chunks, no group holds more than the cap allows, every
    other account scores exactly as locally, the large account's exact features match and its
    flag, and the campaigns (whose evidence merges exactly) are the same."""
    from detector.spark.engine import SparkOptions, score_spark

    _, g = small_log
    events, giant = _with_giant(g, 0.3)
    n_giant = events.filter(pl.col("account_id") == giant).height
    assert 0.29 <= n_giant / events.height <= 0.31
    cap = n_giant // 4
    sizes = events.group_by("account_id").len()
    large = set(sizes.filter(pl.col("len") > cap)["account_id"])  # the giant, maybe others
    model = pipeline.fit(g.events, g.accounts)  # a model trained elsewhere: scores comparable
    local = pipeline.score(events, model, g.accounts)
    sdf = spark.createDataFrame(
        frames.to_spark(events, EVENT_SCHEMA), schema=frames.ddl(EVENT_SCHEMA)
    )
    run = score_spark(spark, sdf, model, g.accounts, options=SparkOptions(max_account_events=cap))
    stats = run.stats
    assert stats["n_large_accounts"] == len(large) and stats["n_chunk_groups"] >= 4
    # the large account's IP / key slices were computed (per slicing value, not per account)
    compact = pipeline.compact_events(events)
    meta, _ = slice_features(compact, local.features, g.accounts, Window.of(compact))
    assert meta.filter(pl.col("parent_id") == giant).height > 0
    assert stats["n_slices"] == meta.height
    # memory per group: no chunk of the large account holds more than twice the cap
    assert stats["max_chunk_events"] <= 2 * cap < n_giant
    a, b = local.accounts, run.scored.accounts
    both = a.join(b, on="account_id", suffix="_spark")
    assert both.height == a.height == b.height
    rest = both.filter(~pl.col("account_id").is_in(sorted(large)))
    assert (rest["score"] - rest["score_spark"]).abs().max() <= 0.01
    assert (rest["flagged"] == rest["flagged_spark"]).all()
    row = both.filter(pl.col("account_id") == giant).row(0, named=True)
    # the same slice lifts it, with the same share of the account in its reason
    assert row["reasons_spark"][0] == row["reasons"][0]
    for account in large:
        row = both.filter(pl.col("account_id") == account).row(0, named=True)
        assert row["flagged"] == row["flagged_spark"], account
        fa = local.features.filter(pl.col("account_id") == account).row(0, named=True)
        fb = run.scored.features.filter(pl.col("account_id") == account).row(0, named=True)
        for name in skew.EXACT:
            if fa[name] is not None:
                assert fb[name] == pytest.approx(fa[name], rel=1e-9, abs=1e-12), (account, name)
    assert local.campaigns is not None and run.scored.campaigns is not None
    sets = [
        {frozenset(m) for m in c.campaigns["members"].to_list()}
        for c in (local.campaigns, run.scored.campaigns)
    ]
    assert sets[0] == sets[1]


@needs_spark
def test_spark_reader_names_file_row_and_field(spark: SparkSession, tmp_path: Path) -> None:
    from detector.spark.read import read_events

    g = generate("demo", seed=4, scale=0.05)
    bad = g.events.head(50).with_columns(
        pl.when(pl.int_range(pl.len()) == 7)
        .then(None)
        .otherwise(pl.col("account_id"))
        .alias("account_id")
    )
    bad.write_parquet(tmp_path / "events.parquet")
    with pytest.raises(EventSchemaError) as err:
        read_events(spark, [tmp_path / "events.parquet"])
    assert f"{tmp_path / 'events.parquet'} row 8: field 'account_id' is required but null" in str(
        err.value
    )
    g.events.head(5).write_ndjson(tmp_path / "events.ndjson")
    with pytest.raises(EventSchemaError, match="reads Parquet only"):
        read_events(spark, [tmp_path / "events.ndjson"])
    g.events.head(5).drop("model").write_parquet(tmp_path / "nomodel.parquet")
    with pytest.raises(EventSchemaError, match="field 'model' missing required column"):
        read_events(spark, [tmp_path / "nomodel.parquet"])


def test_arrow_bridge_keeps_hash_bits_and_utc(small_log: tuple[Path, Generated]) -> None:
    """UInt64 hashes cross to Spark as Int64 with the same bits and come back equal."""
    _, g = small_log
    compact = pipeline.compact_events(g.events.head(2000))
    schema: dict[str, Any] = dict(compact.schema)
    wire = frames.to_spark(compact, schema)
    assert wire.schema.field("tmpl").type == "int64"
    back = frames.from_spark(wire, schema)
    assert back.equals(compact)
    assert "`nd1` bigint" in frames.ddl(schema) and "`ts` timestamp" in frames.ddl(schema)
