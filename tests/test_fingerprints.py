"""Prompt fingerprints: template masking, near-duplicates, markers, script, topic, no raw text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from detector.fingerprints import fingerprint_events
from detector.schema import EVENT_SCHEMA


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
