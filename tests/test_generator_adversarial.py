"""The `adversarial` scenario: attackers who know the features, measured on the generated data.

One generation at a tenth of the scenario (~1.4k accounts, a week) serves most tests; each
property the scenario promises is checked as a fact of the events, never of the generator's
internals: the hydra's share, IPs, user agents, clock, volume and first-seen bursts; prompts free
of the stock marker phrases; tool harvesting single-turn against agent products' tool loops; a
reseller's distilling end user behind shared egress IPs; the hard negatives; no account table.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from detector.io.schema import EVENT_SCHEMA, LABEL_SCHEMA
from synthetic_logs import vocab
from synthetic_logs.accounts import RESIDENTIAL_FIRST_OCTETS
from synthetic_logs.columns import Coded
from synthetic_logs.generate import Generated, generate
from synthetic_logs.group import END_USER_COLUMN, generate_group
from synthetic_logs.phrases import PHRASE_DIR, PhrasebookError, load_phrasebook, phrasebook
from synthetic_logs.scenario import ScenarioError, load_scenario, parse_scenario

SCALE = 0.1
HYDRA = "camp-ember"

# The stock elicitation, grading, "make it safe" and benchmark wording the paraphrased attackers
# must avoid: the stock phrases of vocab.py and the phrase lists the detector matched when the
# scenario was written (frozen here: the scenario is about evading *these*, whatever the
# detector matches later).
STOCK_COT = re.compile(
    r"(?i)step[ -]by[ -]step|chain[ -]of[ -]thought|show (?:your|all) (?:full )?(?:work|reasoning)|"
    r"(?:explain|articulate|walk through) (?:your|the) (?:internal )?(?:reasoning|chain|thought)|"
    r"reasoning before|think (?:carefully|through)|一步一步|逐步|推理过程|paso a paso|"
    r"schritt für schritt|étape par étape|шаг за шагом|ステップバイステップ|passo a passo"
)
STOCK_RUBRIC = re.compile(
    r"(?i)\brubric\b|\bgrader?\b|score (?:the|each|this)|scores? from \d|on a \d+-\d+ scale|"
    r"which of the two responses|rate (?:the|this) (?:response|answer)|\(0-\d+\)"
)
STOCK_REWRITE = re.compile(
    r"(?i)rewrite .{0,40}(?:safe|harmless|policy)|(?:safer|more neutral) tone|"
    r"remove anything harmful|policy-compliant"
)
BENCH_SCAFFOLDS = (" A) ", "(A) ", "Answer:", "Question (", "Question:", "def ", "```", "solve_")
PARAPHRASED = ("residential_hydra", "cot_harvester", "rubric_grader", "rewrite_safely")


@pytest.fixture(scope="module")
def adv() -> Generated:
    return generate("adversarial", seed=7, scale=SCALE)


@pytest.fixture(scope="module")
def ev(adv: Generated) -> pl.DataFrame:
    return adv.events.join(adv.labels, on="account_id")


def _num(value: object) -> float:
    """A Series statistic as a float (it is a number for the non-empty columns used here)."""
    assert isinstance(value, int | float), value
    return float(value)


def _stock_phrases() -> list[str]:
    return [p for phrases in vocab.COT_PHRASES.values() for p in phrases]


# --------------------------------------------------------------------------- the scenario


def test_scenario_loads_without_account_table(adv: Generated, tmp_path: Path) -> None:
    sc = load_scenario("adversarial")
    assert sc.days == 7 and not sc.account_table
    assert 10_000 <= sc.n_accounts <= 20_000  # about the size of `stealth`
    assert adv.accounts is None
    assert dict(adv.events.schema) == EVENT_SCHEMA and dict(adv.labels.schema) == LABEL_SCHEMA
    assert adv.events["ts"].is_sorted() and adv.events["request_id"].is_unique().all()
    small = generate("adversarial", seed=1, scale=0.02)
    paths = small.write(tmp_path)
    assert "accounts" not in paths and not (tmp_path / "accounts.parquet").exists()
    assert pl.read_parquet(paths["labels"]).equals(small.labels)
    assert pl.read_parquet(paths["events"]).height == small.events.height


def test_cli_generates_adversarial_without_account_table(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from service.cli import app

    args = ["generate", "--scenario", "adversarial", "--scale", "0.02", "--seed", "3"]
    res = CliRunner().invoke(app, [*args, "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "events.parquet").exists() and (tmp_path / "labels.parquet").exists()
    assert not (tmp_path / "accounts.parquet").exists()
    labels = pl.read_parquet(tmp_path / "labels.parquet")
    assert labels.equals(generate("adversarial", seed=3, scale=0.02).labels)


def test_account_table_switch_and_group_keys_are_checked() -> None:
    group = {"archetype": "hydra", "accounts": 3, "campaign": "x"}
    assert parse_scenario({"group": [group]}).account_table
    assert not parse_scenario({"account_table": False, "group": [group]}).account_table
    with pytest.raises(ScenarioError, match=r"<scenario>: account_table: expected true or false"):
        parse_scenario({"account_table": "no", "group": [group]})
    with pytest.raises(ScenarioError, match=r"acount_table: unknown key"):
        parse_scenario({"acount_table": False, "group": [group]})
    with pytest.raises(ScenarioError, match=r"group\[0\]\.load_balanced: only a campaign"):
        parse_scenario({"group": [{"archetype": "hydra", "accounts": 3, "load_balanced": True}]})
    with pytest.raises(ScenarioError, match=r"group\[0\]\.bursts: expected an integer"):
        parse_scenario({"group": [{**group, "bursts": -1}]})
    with pytest.raises(ScenarioError, match=r"residential_ranges: expected an integer"):
        parse_scenario({"residential_ranges": 2.5, "group": [group]})
    with pytest.raises(ScenarioError, match=r"overrides\.tool_steps: expected 0 \(off\) or"):
        parse_scenario({"group": [{**group, "overrides": {"tool_steps": 0.5}}]})
    assert load_scenario("adversarial", scale=0.1).residential_ranges == 150


def test_labels_mark_every_attacker(adv: Generated, ev: pl.DataFrame) -> None:
    labels = adv.labels
    attack = labels.filter(pl.col("is_attack"))
    assert attack["campaign_id"].null_count() == 0 and attack["archetype"].null_count() == 0
    assert (
        labels.filter(~pl.col("is_attack"))["campaign_id"].null_count()
        == labels.filter(~pl.col("is_attack")).height
    )
    hydra = labels.filter(pl.col("archetype") == "residential_hydra")
    assert set(hydra["campaign_id"]) == {HYDRA}
    sc = load_scenario("adversarial", scale=SCALE)
    assert set(ev["archetype"].unique()) == {g.archetype.name for g in sc.groups}


# --------------------------------------------------------------------------- the hydra


def test_hydra_is_a_tenth_of_accounts_each_on_one_shared_residential_ip(
    adv: Generated, ev: pl.DataFrame
) -> None:
    labels = adv.labels
    assert (labels["campaign_id"] == HYDRA).sum() >= 0.10 * labels.height
    v4 = ev.with_columns(
        pl.col("ip").str.extract(r"^(\d+\.\d+\.\d+)\.\d+$", 1).alias("p24"),
        pl.col("ip").str.extract(r"^(\d+)\.", 1).cast(pl.Int64).alias("octet"),
    )
    members = (
        v4.filter(pl.col("campaign_id") == HYDRA)
        .group_by("account_id")
        .agg(pl.col("ip").n_unique().alias("ips"), pl.col("p24").first(), pl.col("octet").first())
    )
    assert (members["ips"] == 1).all()  # one IP per member
    assert members["octet"].is_in(RESIDENTIAL_FIRST_OCTETS).all()  # residential space
    normal = (
        v4.filter(~pl.col("is_attack") & pl.col("p24").is_not_null())
        .group_by("p24")
        .agg(pl.col("account_id").n_unique().alias("normal_accounts"))
    )
    shared = members.join(normal, on="p24", how="inner")
    assert shared.height >= 0.99 * members.height  # its /24 is also used by normal accounts
    assert shared["normal_accounts"].median() >= 3  # by several, not by one stray user


def test_hydra_user_agents_are_everyones(ev: pl.DataFrame) -> None:
    hydra = ev.filter(pl.col("campaign_id") == HYDRA)
    normal_uas = set(ev.filter(~pl.col("is_attack"))["user_agent"].unique())
    assert set(hydra["user_agent"].unique()) <= normal_uas  # no campaign-unique user agent
    main = hydra.group_by("account_id", "user_agent").len().sort("len", descending=True)
    per_member = main.group_by("account_id").agg(pl.col("user_agent").first())
    top_share = per_member["user_agent"].value_counts()["count"].max() / per_member.height
    assert top_share < 0.3  # members' main user agents spread like everyone's, not one SDK
    assert hydra["user_agent"].str.starts_with("Mozilla").any()  # browsers among them


def test_hydra_clock_volume_and_load_balance(ev: pl.DataFrame) -> None:
    hydra = ev.filter(pl.col("campaign_id") == HYDRA)
    night = hydra.filter(pl.col("ts").dt.hour() < 6).height / hydra.height
    assert night < 0.05  # a human clock: the campaign's night (UTC) is nearly silent
    per = hydra.group_by("account_id").agg(
        pl.len().alias("n"),
        ((pl.col("ts").max() - pl.col("ts").min()).dt.total_seconds() / 86_400).alias("days"),
    )
    rate = (per["n"] / per["days"].clip(lower_bound=1.0)).to_numpy()
    assert 18 <= float(np.median(rate)) <= 36  # ~26 requests a day per member
    casual = ev.filter(pl.col("archetype") == "power_user").group_by("account_id").len()
    cv_hydra = rate.std() / rate.mean()
    cv_people = _num(casual["len"].std()) / _num(casual["len"].mean())
    assert cv_hydra < 0.25 < cv_people  # load-balanced: even volumes across members


def test_hydra_members_first_seen_in_a_few_bursts(ev: pl.DataFrame) -> None:
    sc = load_scenario("adversarial", scale=SCALE)
    group = next(g for g in sc.groups if g.campaign == "ember")
    first = (
        ev.filter(pl.col("campaign_id") == HYDRA)
        .group_by("account_id")
        .agg(pl.col("ts").min())["ts"]
        .sort()
        .dt.epoch("s")
        .to_numpy()
    )
    # clusters of first-seen times separated by more than two hours
    cuts = np.flatnonzero(np.diff(first) > 2 * 3600) + 1
    clusters = np.split(first, cuts)
    assert 1 < len(clusters) <= group.bursts
    # bursts of a few hours (two bursts may overlap into one cluster): together they cover at
    # most bursts x (burst_hours + the first request's quarter of an hour) of the week
    span_h = np.array([(c[-1] - c[0]) / 3600 for c in clusters])
    assert span_h.sum() <= group.bursts * (group.burst_hours + 0.25)
    assert span_h.max() <= (group.bursts - len(clusters) + 1) * (group.burst_hours + 0.25)
    # the bursts lie inside the window, not at its start
    start = ev["ts"].dt.epoch("s").min()
    assert (first - _num(start) > 3600).mean() > 0.5


def test_hydra_templates_few_but_paraphrased(ev: pl.DataFrame) -> None:
    hydra = ev.filter(pl.col("archetype") == "residential_hydra")
    english = hydra.filter(
        ~pl.col("prompt").str.contains(r"[\u0400-\u04ff\u3040-\u9fff\uac00-\ud7af]")
    )
    openings = english["prompt"].str.extract(r"^(\S+ \S+ \S+)", 1).drop_nulls()
    # three frames, worded anew on each request: many distinct openings, none dominant
    assert openings.n_unique() >= 30
    assert openings.value_counts()["count"].max() < 0.2 * len(openings)
    # shared across members: the same wording reaches many members
    per_opening = (
        english.with_columns(pl.col("prompt").str.extract(r"^(\S+ \S+ \S+)", 1).alias("o"))
        .group_by("o")
        .agg(pl.col("account_id").n_unique())
    )
    assert _num(per_opening["account_id"].max()) >= 10
    topics = hydra["prompt"].str.contains(r"(?i)km|how many|dollars|function|routine|code|元|个|件")
    assert topics.mean() > 0.6  # a narrow capability area: word problems and code


# --------------------------------------------------------------------------- content


@pytest.mark.parametrize("archetype", PARAPHRASED)
def test_paraphrased_harvest_has_no_stock_phrase(ev: pl.DataFrame, archetype: str) -> None:
    prompts = ev.filter(pl.col("archetype") == archetype)["prompt"]
    assert len(prompts) > 100
    assert not prompts.str.contains(STOCK_COT.pattern).any()
    assert not prompts.str.contains(STOCK_RUBRIC.pattern).any()
    assert not prompts.str.contains(STOCK_REWRITE.pattern).any()
    assert not prompts.str.contains_any(list(BENCH_SCAFFOLDS)).any()
    assert not prompts.str.contains_any(_stock_phrases()).any()


def test_reasoning_harvest_is_multilingual_and_varied() -> None:
    harvest = _group_frame("cot_harvester")["prompt"]  # ~80 accounts: every language drawn
    scripts = {
        "cjk": r"[\u3040-\u9fff]",
        "hangul": r"[\uac00-\ud7af]",
        "cyrillic": r"[\u0400-\u04ff]",
        "arabic": r"[\u0600-\u06ff]",
    }
    for name, pattern in scripts.items():
        assert harvest.str.contains(pattern).any(), name
    # the reasoning request closes the prompt, in the account's language and worded many ways:
    # hundreds of distinct endings, where the stock phrases give 14 in all
    assert len(_stock_phrases()) < 20
    assert harvest.str.slice(-40).n_unique() >= 500


def test_phrasebook_avoids_stock_wording_in_every_expansion() -> None:
    """Every wording the grammars can produce (not only those sampled) avoids the stock
    phrases: elicitation, frames, grading, rewrite and payload banks."""
    book = phrasebook()
    checked = 0
    for name, bank in book.banks().items():
        for grammars in bank.values():
            for g in grammars:
                for i in range(len(g.runs)):
                    for text in g.run_expansions(i):
                        checked += 1
                        for pattern in (STOCK_COT, STOCK_RUBRIC, STOCK_REWRITE):
                            assert not pattern.search(text), (g.where, text)
                        assert not any(m in text for m in BENCH_SCAFFOLDS), (g.where, text)
        assert name in book.banks()
    assert checked > 1000
    assert len(book.elicitation) >= 10  # languages


def test_phrasebook_errors_name_file_and_item(tmp_path: Path) -> None:
    for path in PHRASE_DIR.glob("*.toml"):
        shutil.copy(path, tmp_path / path.name)
    target = tmp_path / "elicitation.toml"
    text = target.read_text(encoding="utf-8")
    target.write_text(text.replace("en = [\n", 'en = [\n    "[unclosed {text}",\n', 1), "utf-8")
    with pytest.raises(PhrasebookError, match=r"elicitation.toml: en\[0\]"):
        load_phrasebook(tmp_path)
    target.write_text(text.replace("en = [\n", 'en = [\n    "{nope} x",\n', 1), "utf-8")
    with pytest.raises(PhrasebookError, match=r"elicitation.toml: en\[0\]: unknown slot"):
        load_phrasebook(tmp_path)
    target.write_text(text.replace("en = [\n", 'en = [\n    "a {text}",\n', 1), "utf-8")
    with pytest.raises(PhrasebookError, match=r"en\[0\]: slot\(s\) \['text'\] not allowed"):
        load_phrasebook(tmp_path)


# --------------------------------------------------------------------------- tools


def test_tool_harvesters_one_shot_agent_products_loop(ev: pl.DataFrame) -> None:
    harvest = ev.filter(pl.col("archetype") == "tool_harvester")
    agents = ev.filter(pl.col("archetype") == "agent_product")
    # harvesters: tools on every request, a new task each time, never a conversation
    assert (harvest["tools_count"] > 0).all()
    assert harvest["conversation_id"].null_count() == harvest.height
    assert harvest["prompt"].n_unique() > 0.9 * harvest.height
    per_acct = harvest.group_by("account_id").agg(pl.col("tools_count").n_unique())
    assert (per_acct["tools_count"] >= 5).all()  # a different tool set from request to request
    assert (harvest["finish_reason"] == "tool_calls").mean() > 0.7
    # agent products: conversations of several calls, one tool set each, and every tool call
    # followed by another call of the same conversation (carrying the tool's result)
    with_ids = agents.filter(pl.col("conversation_id").is_not_null())
    sends_ids = with_ids["account_id"].n_unique() / agents["account_id"].n_unique()
    assert 0.5 <= sends_ids < 1  # most clients send a conversation id, not all
    conv = (
        with_ids.sort("ts")
        .group_by("conversation_id", maintain_order=True)
        .agg(
            pl.len().alias("calls"),
            pl.col("tools_count").n_unique().alias("tool_sets"),
            pl.col("finish_reason"),
            pl.col("prompt").n_unique().alias("texts"),
        )
    )
    assert _num(conv["calls"].mean()) >= 3
    assert (conv["tool_sets"] == 1).all()
    last = conv["finish_reason"].list.last()
    assert (last != "tool_calls").all()  # a conversation never ends waiting on a tool
    assert (agents["finish_reason"] == "tool_calls").mean() > 0.4
    assert (conv["texts"] < conv["calls"]).mean() > 0.8  # tool results resend the user's turns
    multi_turn = conv.filter(pl.col("texts") > 1)
    assert multi_turn.height > 0.3 * conv.height  # users speak again after the agent answers
    # without ids the loop is still in the log: a tool call is followed, seconds later, by the
    # same account's next call resending the same user turns with more context
    no_ids = (
        agents.filter(pl.col("conversation_id").is_null())
        .sort("account_id", "ts")
        .with_columns(
            pl.col("prompt").shift(-1).over("account_id").alias("next_prompt"),
            pl.col("prompt_tokens").shift(-1).over("account_id").alias("next_tokens"),
            (pl.col("ts").shift(-1).over("account_id") - pl.col("ts"))
            .dt.total_seconds()
            .alias("gap"),
        )
        .filter(pl.col("finish_reason") == "tool_calls")
    )
    assert no_ids.height > 100
    resent = (no_ids["next_prompt"] == no_ids["prompt"]) & (no_ids["gap"] < 60)
    assert resent.mean() > 0.8
    assert (no_ids.filter(resent)["next_tokens"] >= no_ids.filter(resent)["prompt_tokens"]).all()


# --------------------------------------------------------------------------- resellers


def _group_frame(name: str) -> pl.DataFrame:
    """One group of the scenario (half its size) as a frame, with its end users."""
    sc = load_scenario("adversarial", scale=0.5)
    gi = next(i for i, g in enumerate(sc.groups) if g.archetype.name == name)
    rng = np.random.Generator(np.random.SFC64(3))
    aux = np.random.Generator(np.random.SFC64(4))
    events, _, _ = generate_group(sc, sc.groups[gi], gi, rng, None, None, aux)
    cols = ("account_id", "ip", "conversation_id", "prompt", END_USER_COLUMN)
    columns = {}
    for c in cols:
        coded = events[c]
        assert isinstance(coded, Coded)
        columns[c] = coded.pool.gather(coded.codes)
    return pl.DataFrame(columns)


def test_nat_reseller_distiller_shares_egress_ips_with_hundreds_of_end_users() -> None:
    frame = _group_frame("nat_reseller_mixed")
    assert frame[END_USER_COLUMN].null_count() == 0  # every request names its end user
    for _, acct in frame.group_by("account_id"):
        ips = acct["ip"].n_unique()
        assert ips <= 12  # a few egress IPs
        users_per_ip = acct.group_by("ip").agg(pl.col(END_USER_COLUMN).n_unique())
        assert _num(users_per_ip[END_USER_COLUMN].min()) >= 50
        # the distilling end user: one-shot requests (no conversation), one stable id
        one_shot = acct.filter(pl.col("conversation_id").is_null())
        assert one_shot[END_USER_COLUMN].n_unique() == 1
        share = one_shot.height / acct.height
        assert 0.05 <= share <= 0.15  # ~10 % of the reseller's traffic
        # spread over the egress IPs with everyone else: no IP isolates it
        assert one_shot["ip"].n_unique() == ips
        per_ip = acct.group_by("ip").agg(pl.col("conversation_id").is_null().mean())
        assert _num(per_ip["conversation_id"].max()) < 0.3


def test_every_reseller_names_its_end_users() -> None:
    frame = _group_frame("reseller")
    assert frame[END_USER_COLUMN].null_count() == 0
    assert frame.group_by("ip").agg(pl.col(END_USER_COLUMN).n_unique())[END_USER_COLUMN].max() == 1
    chat = _group_frame("casual_chat")
    assert chat[END_USER_COLUMN].null_count() == chat.height  # an account that is its own user
    if END_USER_COLUMN in EVENT_SCHEMA:  # the canonical column, once the schema has it
        small = generate("adversarial", seed=2, scale=0.05)
        ev = small.events.join(small.labels, on="account_id")
        resellers = ev.filter(pl.col("archetype").str.contains("reseller"))
        assert resellers[END_USER_COLUMN].null_count() == 0


# --------------------------------------------------------------------------- hard negatives


def test_hard_negatives_look_like_harvesting(ev: pl.DataFrame) -> None:
    tutor = ev.filter(pl.col("archetype") == "tutoring_app")
    assert tutor["prompt"].str.contains(STOCK_COT.pattern).mean() > 0.3  # "step by step"
    assert tutor["conversation_id"].null_count() == 0
    judge = ev.filter(pl.col("archetype") == "judge_product")
    assert judge["prompt"].str.contains(STOCK_RUBRIC.pattern).mean() > 0.3
    assert (judge["temperature"] == 0).all()
    lab = ev.filter(pl.col("archetype") == "logprob_lab")
    assert (lab["max_tokens"] == 1).all() and lab["logprobs"].mean() > 0.9
    assert lab["prompt"].str.contains_any(list(BENCH_SCAFFOLDS)).mean() > 0.3
    # a campus cohort: many students behind two campus IPs, starting together
    sc = load_scenario("adversarial", scale=SCALE)
    cohort_size = next(g.accounts for g in sc.groups if g.bursts and not g.campaign)
    casual = ev.filter(pl.col("archetype") == "casual_chat")
    by_ip = casual.group_by("ip").agg(pl.col("account_id").n_unique().alias("n"))
    assert _num(by_ip["n"].max()) >= 0.5 * cohort_size


# --------------------------------------------------------------------------- text sources


def test_adversarial_with_real_corpus_text() -> None:
    from synthetic_logs.corpus import load_corpus
    from tests.conftest import corpora_dir

    corpus = corpora_dir()
    if corpus is None:
        pytest.skip("../shared/corpora not found (set DISTILLGUARD_CORPORA): real prompts untested")
    data = generate("adversarial", seed=5, scale=0.03, corpus=corpus)
    ev = data.events.join(data.labels, on="account_id")
    gsm8k = load_corpus(corpus).math.str.slice(0, 50).to_list()
    hydra = ev.filter(pl.col("archetype") == "residential_hydra")["prompt"]
    real = hydra.str.contains_any(gsm8k)
    assert real.mean() > 0.4  # its maths payloads are real GSM8K items (70 % of its mix)
    assert not hydra.str.contains(STOCK_COT.pattern).any()  # still no stock phrase
