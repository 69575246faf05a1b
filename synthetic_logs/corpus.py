"""Real prompt text from ``../shared/corpora`` (``--corpus``): chat prompts for normal users,
instructions, GSM8K and HumanEval items for distillers' and eval harnesses' payloads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl


@dataclass
class Corpus:
    """Optional real prompt text (from ``--corpus``) that replaces built-in pools."""

    chat: pl.Series = field(default_factory=lambda: pl.Series([], dtype=pl.String))
    instructions: pl.Series = field(default_factory=lambda: pl.Series([], dtype=pl.String))
    math: pl.Series = field(default_factory=lambda: pl.Series([], dtype=pl.String))
    code: pl.Series = field(default_factory=lambda: pl.Series([], dtype=pl.String))


def load_corpus(corpus_dir: Path) -> Corpus:
    """Real prompt text from ``../shared/corpora`` (or a folder laid out like it)."""
    import gzip
    import json

    def jsonl(path: Path, key: str | Callable[[Any], str]) -> list[str]:
        if not path.exists():
            return []
        opener = gzip.open if path.suffix == ".gz" else open
        out = []
        with opener(path, "rt", encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                obj = json.loads(line)
                if callable(key):
                    val = key(obj)
                elif isinstance(obj, str):  # a file of bare JSON strings
                    val = obj
                else:
                    val = obj.get(key)
                if isinstance(val, str) and val.strip():
                    out.append(val.strip())
        return out

    if not corpus_dir.is_dir():
        raise FileNotFoundError(f"{corpus_dir}: corpus folder not found")
    np_ = corpus_dir / "normal_prompts"
    ip_ = corpus_dir / "instruction_prompts"
    bm = corpus_dir / "benchmarks"

    def first_turn(o: Any) -> str:
        msgs = (o.get("prompter_messages") or []) if isinstance(o, dict) else []
        return str(msgs[0].get("text", "")) if msgs else ""

    chat = (
        jsonl(np_ / "arena_hard_v0.1.jsonl", "prompt")
        + jsonl(np_ / "prompt_lottery_en_250_text.jsonl", "text")
        + jsonl(np_ / "en_100_tree_prompter_turns.jsonl", first_turn)
    )
    instr = jsonl(ip_ / "self_instruct_seed_tasks.jsonl", "instruction") + jsonl(
        ip_ / "self_instruct_user_oriented.jsonl", "instruction"
    )
    return Corpus(
        chat=pl.Series(chat, dtype=pl.String),
        instructions=pl.Series(instr, dtype=pl.String),
        math=pl.Series(jsonl(bm / "gsm8k_train.jsonl", "question"), dtype=pl.String),
        code=pl.Series(jsonl(bm / "HumanEval.jsonl.gz", "prompt"), dtype=pl.String),
    )
