"""The traffic generator: determinism, coverage of archetypes, labels, no label leaks."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from detector.io.schema import EVENT_SCHEMA, LABEL_SCHEMA, read_events
from service.cli import app
from synthetic_logs.archetypes import ARCHETYPE_DIR, ARCHETYPES, ArchetypeError, load_archetypes
from synthetic_logs.generate import Generated, generate
from synthetic_logs.scenario import ScenarioError, builtin_names, load_scenario, parse_scenario


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_builtins_exist() -> None:
    assert {"demo", "default", "stealth", "adversarial"} <= set(builtin_names())
    assert 1500 <= load_scenario("demo").n_accounts <= 2500
    assert 15000 <= load_scenario("default").n_accounts <= 25000
    assert 10000 <= load_scenario("adversarial").n_accounts <= 20000


def test_same_seed_byte_identical(tmp_path: Path) -> None:
    outs = []
    for i in range(2):
        data = generate("demo", seed=5, scale=0.1)
        outs.append(data.write(tmp_path / f"run{i}"))
    for name in ("events", "accounts", "labels"):
        assert _digest(outs[0][name]) == _digest(outs[1][name]), name


def test_different_seed_differs() -> None:
    a = generate("demo", seed=1, scale=0.1)
    b = generate("demo", seed=2, scale=0.1)
    assert not a.events.select("request_id").equals(b.events.select("request_id"))


def test_schema_and_labels(demo_small: Generated) -> None:
    ev, labels = demo_small.events, demo_small.labels
    assert dict(ev.schema) == EVENT_SCHEMA
    assert list(labels.columns) == ["account_id", "is_attack", "archetype", "campaign_id"]
    assert dict(labels.schema) == LABEL_SCHEMA
    assert labels["account_id"].is_unique().all()
    # campaign ids only on attackers; every attacker has one
    normal = labels.filter(~pl.col("is_attack"))
    attack = labels.filter(pl.col("is_attack"))
    assert normal["campaign_id"].null_count() == normal.height
    assert attack["campaign_id"].null_count() == 0
    assert ev["request_id"].is_unique().all()
    assert set(ev["account_id"].unique()) <= set(labels["account_id"])
    assert ev["ts"].is_sorted()


def test_every_archetype_present_in_a_builtin() -> None:
    """``default`` has every archetype but those written for ``adversarial`` (adding them to
    ``default`` would change its output); the two together have them all."""
    seen: set[str] = set()
    for name in ("default", "adversarial"):
        sc = load_scenario(name, scale=0.05)
        data = generate(sc, seed=3)
        in_events = set(data.events.join(data.labels, on="account_id")["archetype"].unique())
        assert in_events == {g.archetype.name for g in sc.groups}, name
        seen |= in_events
    assert seen == set(ARCHETYPES)
    n_normal = sum(1 for a in ARCHETYPES.values() if not a.is_attack)
    assert n_normal >= 8 and len(ARCHETYPES) - n_normal >= 7


def test_no_label_leaks_in_ids(demo_small: Generated) -> None:
    ev = demo_small.events
    for col in ("account_id", "api_key_id", "request_id", "conversation_id"):
        values = ev[col].drop_nulls().head(2000).to_list()
        for name in ARCHETYPES:
            assert not any(name in v for v in values), (col, name)
    # account ids carry no order that reveals archetype: attackers are spread over the sort
    labels = demo_small.labels.sort("account_id")
    pos = np.flatnonzero(labels["is_attack"].to_numpy()) / labels.height
    assert 0.3 < float(pos.mean()) < 0.7


def test_hydra_members_low_and_slow(demo_small: Generated) -> None:
    per_acct = (
        demo_small.events.join(demo_small.labels, on="account_id")
        .filter(pl.col("archetype") == "hydra")
        .group_by("account_id")
        .len()
    )
    med = float(per_acct["len"].median())  # type: ignore[arg-type]
    assert 10 <= med <= 60  # ~26 requests a day, under any per-key rate limit


def test_hard_negatives_overlap_attackers(demo_small: Generated) -> None:
    """Single behaviours appear on both sides: CoT phrasing, logprobs, max_tokens caps, tools."""
    ev = demo_small.events.join(demo_small.labels, on="account_id")
    normal = ev.filter(~pl.col("is_attack"))
    assert normal.filter(pl.col("prompt").str.contains("(?i)step by step")).height > 0
    assert normal.filter(pl.col("logprobs")).height > 0
    assert normal.filter(pl.col("logit_bias_size") > 0).height > 0
    assert normal.filter(pl.col("tools_count") > 0).height > 0
    assert normal.filter(pl.col("model") == "atlas-5").height > 0
    assert normal.filter(pl.col("prompt").str.contains("(?i)grade|rubric")).height > 0


def test_scenario_errors_name_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('days = 1\n[[group]]\narchetype = "nope"\naccounts = 3\n')
    with pytest.raises(ScenarioError, match=r"bad.toml: group\[0\].archetype"):
        load_scenario(bad)
    with pytest.raises(ScenarioError, match="overrides"):
        parse_scenario({"group": [{"archetype": "hydra", "accounts": 2, "overrides": {"x": 1}}]})


def test_scenario_override_errors_name_the_field() -> None:
    group = {"archetype": "hydra", "accounts": 2}
    with pytest.raises(ScenarioError, match=r"group\[0\]\.overrides\.cot_rate: expected a share"):
        parse_scenario({"group": [{**group, "overrides": {"cot_rate": 1.5}}]})
    with pytest.raises(ScenarioError, match=r"overrides\.profile: 'lunar' is not one of"):
        parse_scenario({"group": [{**group, "overrides": {"profile": "lunar"}}]})
    with pytest.raises(ScenarioError, match=r"overrides\.tools_max: expected an integer"):
        parse_scenario({"group": [{**group, "overrides": {"tools_max": 2.5}}]})
    sc = parse_scenario({"group": [{**group, "overrides": {"max_tokens_choices": [64, 128]}}]})
    assert sc.groups[0].archetype.max_tokens_choices == (64, 128)


def test_archetype_files_load() -> None:
    assert load_archetypes() == ARCHETYPES
    assert ARCHETYPES["hydra"].is_attack and not ARCHETYPES["casual_chat"].is_attack
    assert ARCHETYPES["casual_chat"].cot_rate == 0.03  # from defaults.toml


@pytest.mark.parametrize(
    ("file_name", "old", "new", "message"),
    [
        (
            "attackers.toml",
            "[hydra]\n",
            "[hydra]\nlogprobs_rate = 1.5\n",
            r"attackers.toml: hydra.logprobs_rate: expected a share",
        ),
        ("customers.toml", "[casual_chat]\n", "[casual_chat]\nrate = 3\n", "unknown field"),
        ("customers.toml", 'content = "app"', 'content = "apps"', r"app_backend.content: 'apps'"),
        ("defaults.toml", "session_len = 5.0", "session_len = -1", r"defaults.toml: session_len"),
        ("defaults.toml", "is_attack = false", "#", r"missing field\(s\) \['is_attack'\]"),
        ("hour_profiles.toml", "0.2, 0.1, ", "0.2, ", r"hour_profiles.toml: diurnal: expected"),
    ],
)
def test_archetype_file_errors_name_file_and_field(
    tmp_path: Path, file_name: str, old: str, new: str, message: str
) -> None:
    for path in ARCHETYPE_DIR.glob("*.toml"):
        shutil.copy(path, tmp_path / path.name)
    target = tmp_path / file_name
    content = target.read_text(encoding="utf-8")
    assert old in content
    target.write_text(content.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(ArchetypeError, match=message):
        load_archetypes(tmp_path)


def test_cli_generate_ndjson_roundtrip(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app,
        [
            "generate",
            "--scenario",
            "demo",
            "--scale",
            "0.05",
            "--out",
            str(tmp_path),
            "--format",
            "ndjson",
            "--seed",
            "4",
        ],
    )
    assert res.exit_code == 0, res.output
    events = read_events(tmp_path / "events.ndjson").collect()
    direct = generate("demo", seed=4, scale=0.05).events
    assert events.height == direct.height
    assert events["ts"].equals(direct["ts"])
    assert (tmp_path / "labels.parquet").exists() and (tmp_path / "accounts.parquet").exists()


def test_cli_generate_unknown_scenario(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["generate", "--scenario", "nope", "--out", str(tmp_path)])
    assert res.exit_code == 2
    assert "not a built-in" in res.output


def test_real_corpus_prompts_are_used() -> None:
    from tests.conftest import corpora_dir

    corpus = corpora_dir()
    if corpus is None:
        pytest.skip("../shared/corpora not found (set DISTILLGUARD_CORPORA): real prompts untested")
    data = generate("demo", seed=7, scale=0.05, corpus=corpus)
    prompts = data.events.join(data.labels, on="account_id")
    # real Chatbot Arena / OpenAssistant text among casual users' first turns
    casual = prompts.filter(pl.col("archetype") == "casual_chat")["prompt"].to_list()
    from synthetic_logs.corpus import load_corpus

    real_chat = set(load_corpus(corpus).chat.to_list())
    assert sum(p in real_chat for p in casual) > 0.1 * len(casual)  # ~70 % of first turns
    attack = prompts.filter(pl.col("is_attack"))["prompt"].to_list()
    real_math = load_corpus(corpus).math.to_list()[:2000]
    assert any(q[:60] in p for p in attack for q in real_math[:200])


def test_output_does_not_depend_on_worker_count() -> None:
    one = generate("demo", seed=8, scale=0.1, workers=1)
    two = generate("demo", seed=8, scale=0.1, workers=3)
    assert one.events.equals(two.events) and one.labels.equals(two.labels)
