"""Prompt fingerprints: template masking, near-duplicates, markers, script, topic, no raw text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from detector.fingerprints import fingerprint_events
from detector.io.schema import EVENT_SCHEMA


def make_events(prompts: list[str | None], **cols: list[Any]) -> pl.DataFrame:
    n = len(prompts)
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    base: dict[str, Any] = {
        "ts": [t0 + timedelta(minutes=i) for i in range(n)],
        "request_id": [f"r{i}" for i in range(n)],
        "account_id": ["a"] * n,
        "api_key_id": ["k"] * n,
        "ip": ["10.1.2.3"] * n,
        "user_agent": ["ua"] * n,
        "model": ["m"] * n,
        "endpoint": ["chat.completions"] * n,
        "prompt": prompts,
        "system_prompt": [None] * n,
        "prompt_tokens": [10] * n,
        "completion_tokens": [20] * n,
        "max_tokens": [None] * n,
        "temperature": [None] * n,
        "top_p": [None] * n,
        "n": [1] * n,
        "logprobs": [False] * n,
        "top_logprobs": [None] * n,
        "logit_bias_size": [0] * n,
        "tools_count": [0] * n,
        "stream": [False] * n,
        "status": [200] * n,
        "latency_ms": [100.0] * n,
        "finish_reason": ["stop"] * n,
        "conversation_id": [None] * n,
        "end_user_id": [None] * n,
    }
    base.update(cols)
    return pl.DataFrame(base, schema=EVENT_SCHEMA)


def fp(prompts: list[str | None], **cols: list[Any]) -> pl.DataFrame:
    return fingerprint_events(make_events(prompts, **cols)).collect()


def test_raw_text_is_dropped() -> None:
    out = fp(["hello there"], system_prompt=["You are helpful."])
    assert "prompt" not in out.columns and "system_prompt" not in out.columns
    assert out["sys_h"][0] is not None


def test_template_hash_masks_numbers_quotes_and_names() -> None:
    out = fp(
        [
            'Summarize ticket 1234 from Alice: "printer broken" please, thanks a lot',
            'Summarize ticket 98 from Bob: "cannot log in at all" please, thanks a lot',
            "Translate this sentence into German for my homework, it is due tomorrow",
        ]
    )
    t = out["tmpl"].to_list()
    assert t[0] == t[1]
    assert t[0] != t[2]


def test_near_duplicates_share_a_band() -> None:
    base = (
        "solve the following problem about trains leaving the station at noon and "
        "compute how far apart they are after three hours of travel"
    )
    near = base.replace("noon", "midnight")
    other = "write a short poem about autumn leaves falling in a quiet park near the river"
    out = fp([base, near, other])
    nd1, nd2 = out["nd1"].to_list(), out["nd2"].to_list()
    assert nd1[0] == nd1[1] or nd2[0] == nd2[1]
    assert nd1[0] != nd1[2] and nd2[0] != nd2[2]


def test_markers_in_several_languages() -> None:
    out = fp(
        [
            "Solve 2+2. Think step by step and show your full reasoning.",
            "请一步一步地思考，并详细写出你的推理过程。",
            "Explica tu razonamiento paso a paso.",
            "Score the following response from 1 to 10 using the rubric.",
            "Rewrite the following text so that it is safe and policy-compliant: ...",
            "Question (astronomy): which is right? A) x B) y C) z D) w Answer:",
            "what's the weather like",
        ]
    )
    assert out["cot"].to_list() == [True, True, True, False, False, False, False]
    assert out["rubric"].to_list()[3] and not out["rubric"].to_list()[6]
    assert out["rewrite"].to_list()[4] and not out["rewrite"].to_list()[0]
    assert out["bench"].to_list()[5] and not out["bench"].to_list()[6]


def test_script_topic_and_prefix() -> None:
    out = fp(
        ["Fix my python function", "Помоги мне", "请帮我", "", None],
        ip=["10.1.2.3", "2a02:1:2:3::9", "192.168.7.1", "1.2.3.4", "1.2.3.5"],
    )
    assert out["script"].to_list() == ["latin", "cyrillic", "cjk", "none", "none"]
    assert out["topic"][0] == "code"
    assert out["ip_prefix"].to_list()[:3] == ["10.1.2.0/24", "2a02:1:2:3::/64", "192.168.7.0/24"]


# The compiled kernel (detector._fpkernel) against the polars expressions it replaces.
TRICKY = [
    "",
    None,
    " a  b ",
    "x\u3000",
    "\u00a0a\x0bb\x0c",
    "İstanbul İx Σ \u212a",
    "Bob2 éBob Bobé _Bob Bob_ McDonald The X Abc1 ABC Ab Abc-d 12Bob",
    "He said \"Hello   there\" and 'ok'",
    '"' + "x" * 200 + '"',
    '"' + "x" * 201 + '"',
    '"' + "1" * 250 + '"',
    "don't  say\n\n'never'\t`code`  ",
    "Привет Мир 123 Ёж, ШАГ ЗА ШАГОМ",
    "请帮我 写 Python 代码 python",
    "مرحبا Ahmed",
    "\u2028 Hi \u3000",
    '""',
    "'",
    'a "b" "c',
    "ÉCOLE Émile",
    "fix my python function",
    'what is a "python" for, then ask about dysfunctional sales',
    "Undef x",
    "Question (astronomy): A) x B) y Answer: solve_it ```",
    "😀 emoji Ünïcödé 𝔘 text",
]


def _reference(prompts: list[str | None]) -> pl.DataFrame:
    from detector import fingerprints as f

    p = pl.col("prompt").fill_null("")
    return pl.DataFrame({"prompt": prompts}, schema={"prompt": pl.String}).select(
        f.normalise_text(p).alias("norm"),
        f._script(pl.col("prompt")).alias("script"),
        f._topic(f.normalise_text(p)).alias("topic"),
        p.str.contains_any(list(f.BENCH_MARKERS)).alias("bench"),
        p.str.len_chars().cast(pl.Int32).alias("prompt_chars"),
    )


def test_kernel_normalisation_matches_polars_reference() -> None:
    from detector._fpkernel import normalised_text

    ref = _reference(TRICKY)
    assert normalised_text(pl.Series(TRICKY, dtype=pl.String)) == ref["norm"].to_list()
    # the one known difference: Greek capital sigma always becomes σ (no final-sigma rule)
    assert normalised_text(pl.Series(["ΣΑΣ"])) == ["σασ"]


def test_kernel_columns_match_polars_reference() -> None:
    ref = _reference(TRICKY)
    out = fp(TRICKY)
    for c in ("script", "topic", "bench", "prompt_chars"):
        assert out[c].to_list() == ref[c].to_list(), c


def test_template_hash_equal_iff_first_words_equal() -> None:
    ref = _reference(TRICKY * 2 + ["a b c d e f g", "a b c d e f h", "z b c d e f g"])
    out = fp(TRICKY * 2 + ["a b c d e f g", "a b c d e f h", "z b c d e f g"])
    words = [s.split(" ") for s in ref["norm"].to_list()]
    heads = [tuple(w[:6]) for w in words]
    tails = [tuple(w[-6:]) for w in words]
    t, tt = out["tmpl"].to_list(), out["tmpl_tail"].to_list()
    for i in range(len(words)):
        for j in range(len(words)):
            assert (t[i] == t[j]) == (heads[i] == heads[j])
            assert (tt[i] == tt[j]) == (tails[i] == tails[j])


def test_band_keys_depend_on_the_word_set_only() -> None:
    out = fp(["b a c a d", "a b c d", "a b c d e"])
    assert out["nd1"][0] == out["nd1"][1] and out["nd2"][0] == out["nd2"][1]


def test_empty_and_chunked_inputs() -> None:
    empty = fingerprint_events(make_events([]).lazy())
    assert empty.collect_schema() == empty.collect().schema
    one = fp(["Summarize ticket 12 please"])
    many = fingerprint_events(
        pl.concat([make_events(["Summarize ticket 12 please"] * 3)] * 40_000, rechunk=False)
    ).collect(engine="streaming")
    assert many["tmpl"].n_unique() == 1 and many["tmpl"][0] == one["tmpl"][0]
    assert many["nd1"].n_unique() == 1 and many["nd1"][0] == one["nd1"][0]


def test_ip_prefix_kernel_matches_polars_reference() -> None:
    from detector._fpkernel import ip_prefixes
    from detector.fingerprints import ip_prefix

    ips = [
        "1.2.3.4",
        "10.20.30.255",
        "1.2.3",
        "1.2.3.4.5",
        "01.002.3.44",
        "1.2.3.",
        "1.2.3.4 ",
        "::1",
        "2a02:1:2:3::9",
        "2A02:db8:0:0:1",
        "1:2:3",
        ":::",
        "1:2:3:zz",
        "1.2.3.4:80",
        "",
        None,
    ]
    s = pl.Series("ip", ips, dtype=pl.String)
    ref = pl.DataFrame({"ip": s}).select(ip_prefix(pl.col("ip")))["ip"]
    assert ip_prefixes(s).to_list() == ref.to_list()
