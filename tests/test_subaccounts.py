"""Sub-account slices: distillation hidden behind one IP of a reseller's account is found, and
legitimate resellers' slices lift nothing. Fitted on one seed, evaluated on another."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from detector import pipeline
from detector.models import DistillScorer
from detector.subaccounts import account_slices
from synthetic_logs.generate import Generated, generate

SCENARIO = """
name = "resellers"
start = 2026-11-02T00:00:00Z
days = 2

[models]
base = ["atlas-4o", "atlas-4o-mini"]
new = "atlas-5"
new_release_day = 1.0

[[group]]
archetype = "casual_chat"
accounts = 500

[[group]]
archetype = "power_user"
accounts = 120

[[group]]
archetype = "app_backend"
accounts = 60

[[group]]
archetype = "eval_harness"
accounts = 8

[[group]]
archetype = "researcher"
accounts = 20

[[group]]
archetype = "reseller"
accounts = 12

[[group]]
archetype = "reseller_mixed"
accounts = 4
"""


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Generated, Generated]:
    path = Path(tmp_path_factory.mktemp("scenario")) / "resellers.toml"
    path.write_text(SCENARIO)
    return generate(path, seed=5), generate(path, seed=6)


def _scored(model: DistillScorer, g: Generated) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Each account scored on its own features alone, and as the pipeline scores it (lifted
    by its IP / key slices), without campaigns."""
    res = pipeline.score(g.events, model, g.accounts, campaigns=False)
    return model.score(res.features), res.alone


def test_hidden_distiller_is_found_and_resellers_are_not(
    worlds: tuple[Generated, Generated],
) -> None:
    train, test = worlds
    # ~600 reference accounts resolve a 1 % false-positive rate, not 0.1 %
    model = pipeline.fit(train.events, train.accounts, scorer=DistillScorer(target_fpr=0.01))
    alone, lifted = _scored(model, test)
    both = (
        lifted.join(alone, on="account_id", suffix="_alone")
        .join(test.labels, on="account_id")
        .with_columns((pl.col("raw_score") > pl.col("raw_score_alone")).alias("lifted"))
    )
    mixed = both.filter(pl.col("archetype") == "reseller_mixed")
    assert mixed["flagged"].all(), mixed
    assert mixed["lifted"].all(), mixed  # its slice scores beyond the account itself
    assert mixed["reasons"].list.first().str.contains("traffic from ip").all()
    # the slice's own reasons are named as the slice's, not given as the account's values
    ip = mixed["reasons"].list.first().str.extract(r"traffic from ip (\S+) ")
    second = mixed["reasons"].list.get(1, null_on_oob=True)
    assert (second.str.starts_with("ip ") & second.str.contains(ip, literal=True)).all(), second
    normal = both.filter(~pl.col("is_attack"))
    assert normal["lifted"].sum() == 0, normal.filter(pl.col("lifted"))
    # accounts without a lift keep their own score exactly
    same = both.filter(~pl.col("lifted"))
    assert (same["score"] == same["score_alone"]).all()


def test_slices_only_for_multi_tenant_accounts(worlds: tuple[Generated, Generated]) -> None:
    g = worlds[1]
    compact = pipeline.compact_events(g.events)
    feats = pipeline.features(compact, g.accounts)
    slices = account_slices(compact, feats)
    parents = set(slices["parent_id"].unique().to_list())
    kinds = dict(g.labels.select("account_id", "archetype").iter_rows())
    assert parents and {kinds[p] for p in parents} <= {"reseller", "reseller_mixed"}
    counts = slices.group_by("account_id").len()["len"]
    assert int(counts.min() or 0) >= 50  # type: ignore[arg-type]
    assert slices["account_id"].str.contains("|", literal=True).all()


def test_supervised_models_do_not_lift_slices(worlds: tuple[Generated, Generated]) -> None:
    train, test = worlds
    model = pipeline.fit(train.events, train.accounts, train.labels)
    alone, lifted = _scored(model, test)
    assert lifted.equals(alone)
