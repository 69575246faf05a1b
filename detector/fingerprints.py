"""Per-event prompt fingerprints: one compiled pass per prompt, plus polars expressions.

:func:`fingerprint_events` maps canonical events to *compact* events: every non-text column kept,
``prompt`` and ``system_prompt`` replaced by hashes and markers. Everything downstream (features,
linkage, the streaming service's window) reads compact events only.

Added columns
- ``tmpl``, ``tmpl_tail``: template hashes — the first (last) :data:`TEMPLATE_WORDS` words of
  the prompt after normalisation (lower case; numbers and capitalised names -> ``0``; quoted
  spans -> ``"q"``). A distiller's header/footer around varying payloads, or an
  app's fixed wrapper, keeps one ``tmpl``; free-form human text almost never repeats it.
- ``nd1``, ``nd2``: near-duplicate band keys — two LSH bands of :data:`BAND_ROWS` MinHashes
  over the normalised word set. Two prompts with word-set Jaccard similarity J share a band key
  with probability ``1 - (1 - J**3)**2`` (0.57 at J = 0.7, 0.016 at J = 0.2).
- ``sys_h``: hash of the system prompt (null when none): exact sharing is what matters.
- ``cot``, ``rubric``, ``rewrite``, ``bench``: markers for chain-of-thought elicitation, grading
  rubrics / reward-model use, "rewrite this safely", and benchmark-style items (multiple choice,
  ``Answer:``, code stubs), in the languages the markers list.
- ``script``: dominant script of the prompt: latin, cjk, cyrillic, arabic, other, none.
- ``topic``: coarse topic by keywords (code, math, science, writing, business, ...; ``other``).
- ``prompt_chars``: prompt length in characters; ``ip_prefix``: /24 (IPv4) or /64 (IPv6).

Template, word and band hashes are 64-bit hashes computed by the compiled kernel in
:mod:`detector._fpkernel` (one pass per prompt; :func:`normalise_text` is the same normalisation
as a polars expression, kept as the reference the kernel is tested against); ``sys_h`` is
polars' hash. Hash values are stable for a given code version, which is all the features need
(they count equalities, never store hash values in a model).
"""

from __future__ import annotations

import re

import numpy as np
import polars as pl

from detector._fpkernel import BAND_ROWS as BAND_ROWS
from detector._fpkernel import N_BANDS as N_BANDS
from detector._fpkernel import SCRIPTS, fingerprint_prompts, ip_prefixes
from detector._fpkernel import TEMPLATE_WORDS as TEMPLATE_WORDS

COT_PATTERN = (
    r"(?i)step[ -]by[ -]step|chain[ -]of[ -]thought|show (?:your|all) (?:full )?(?:work|reasoning)|"
    r"(?:explain|articulate|walk through) (?:your|the) (?:internal )?(?:reasoning|chain|thought)|"
    r"reasoning before|think (?:carefully|through)|一步一步|逐步|推理过程|paso a paso|"
    r"schritt für schritt|étape par étape|шаг за шагом|ステップバイステップ|passo a passo"
)
RUBRIC_PATTERN = (
    r"(?i)\brubric\b|\bgrader?\b|score (?:the|each|this)|scores? from \d|on a \d+-\d+ scale|"
    r"which of the two responses|rate (?:the|this) (?:response|answer)|\(0-\d+\)"
)
REWRITE_PATTERN = (
    r"(?i)rewrite .{0,40}(?:safe|harmless|policy)|(?:safer|more neutral) tone|"
    r"remove anything harmful|policy-compliant"
)
# Literal markers (Aho-Corasick: one pass) of benchmark-style items: multiple-choice options,
# "Answer:" / "Question:" scaffolds, code stubs.
BENCH_MARKERS = (" A) ", "(A) ", "Answer:", "Question (", "Question:", "def ", "```", "solve_")

# Keywords matched on the normalised (lower-case) prompt with Aho-Corasick (``contains_any``),
# which is an order of magnitude faster than one regex per topic.
TOPIC_KEYWORDS: dict[str, tuple[str, ...]] = {
    "code": (
        "python",
        "function",
        " code",
        "sql",
        " bug",
        "debug",
        "script",
        " api",
        "react",
        "rust",
        "java",
        "regex",
        "docker",
        "kubernetes",
        "typescript",
        "compile",
        "stack trace",
        "def ",
        "unit test",
    ),
    "math": (
        "how many",
        "calculate",
        "equation",
        "probability",
        "algebra",
        "integer",
        "statistics",
        "percent",
        "solve",
    ),
    "science": ("physics", "chemistry", "biology", "quantum", "virology", "astronomy", "molecule"),
    "agentic": (
        "book ",
        "schedule",
        "email",
        "ticket",
        "refund",
        "jira",
        "pull request",
        "database",
        "query",
    ),
    "business": (
        "marketing",
        "business",
        "sales",
        "budget",
        "invoice",
        "customer",
        "product",
        "seo",
    ),
    "writing": (
        "essay",
        "letter",
        "poem",
        "story",
        "speech",
        "paragraph",
        "resume",
        " post",
        "chapter",
    ),
    "education": ("student", "homework", "exam", "class", "tutor", "lesson", "history"),
    "life": (
        "recipe",
        "trip",
        "travel",
        "workout",
        "garden",
        "wedding",
        "birthday",
        "sleep",
        " dog",
    ),
}
# Every value of a compact event's ``topic``: the keyword topics, then "other" (no keyword).
TOPICS: tuple[str, ...] = (*TOPIC_KEYWORDS, "other")

COMPACT_DROP = ("prompt", "system_prompt")
# Raised whenever hash values change for the same text (1: polars hashes; 2: the compiled
# kernel). Compact events of different versions must not be mixed: their template and
# near-duplicate hashes never compare equal. The service records it in its snapshots.
FINGERPRINT_VERSION = 3  # 3: no template / near-duplicate keys without prompt text


# Capitalised names (ASCII word boundaries: the Unicode-aware ``\b`` costs ~1.5x) and digit runs
# are both masked to "0" in one pass; quoted spans become "q".
_NAME_OR_NUMBER = r"(?-u:\b)[A-Z][a-z]{2,}(?-u:\b)|[0-9]+"
_QUOTED = r"\"[^\"]{0,200}\"|'[^']{0,200}'|`[^`]{0,200}`"
_WHITESPACE = ["\n", "\t", "\r"]


def normalise_text(expr: pl.Expr) -> pl.Expr:
    """Mask the parts of a prompt that vary inside one template.

    Capitalised names and numbers become ``0``, quoted spans ``"q"``; line breaks and tabs become
    spaces in one Aho-Corasick pass. Runs of spaces are left alone: they only add empty "words",
    identically for every copy of a template."""
    return (
        expr.str.replace_all(_NAME_OR_NUMBER, "0")
        .str.to_lowercase()
        .str.replace_all(_QUOTED, '"q"')
        .str.replace_many(_WHITESPACE, [" "] * len(_WHITESPACE))
        .str.strip_chars()
    )


def ip_prefix(expr: pl.Expr) -> pl.Expr:
    """/24 for IPv4, /64 (first four groups) for IPv6. (Reference: :func:`fingerprint_events`
    uses the compiled :func:`detector._fpkernel.ip_prefixes`, which computes the same.)"""
    v4 = expr.str.extract(r"^([0-9]+\.[0-9]+\.[0-9]+)\.[0-9]+$", 1)
    v6 = expr.str.extract(r"^([0-9a-fA-F]*:[0-9a-fA-F]*:[0-9a-fA-F]*:[0-9a-fA-F]*)", 1)
    return pl.when(expr.str.contains(":", literal=True)).then(v6 + "::/64").otherwise(v4 + ".0/24")


def _script(expr: pl.Expr) -> pl.Expr:
    """Script of the first CJK / Cyrillic / Arabic letter in the prompt, else latin (or none
    for an empty prompt). One regex pass."""
    # Only prompts with a non-ASCII byte go through the regex (the others are null to it): ~5x
    # cheaper on mostly-ASCII traffic.
    non_ascii = pl.when(expr.str.len_bytes() != expr.str.len_chars()).then(expr)
    first = non_ascii.str.extract(
        r"([\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\u0400-\u04ff\u0600-\u06ff])", 1
    )
    return (
        pl.when(expr.is_null() | (expr.str.len_chars() == 0))
        .then(pl.lit("none"))
        .when(first.is_null())
        .then(pl.lit("latin"))
        .when(first < "\u0600")
        .then(pl.lit("cyrillic"))
        .when(first < "\u3040")
        .then(pl.lit("arabic"))
        .otherwise(pl.lit("cjk"))
    )


_KEYWORD_TOPIC = {k: t for t, ks in TOPIC_KEYWORDS.items() for k in ks}
_KEYWORD_RE = "(" + "|".join(re.escape(k) for k in _KEYWORD_TOPIC) + ")"


def _topic(normalised: pl.Expr) -> pl.Expr:
    """Topic of the first topic keyword in the normalised prompt (one regex pass)."""
    return (
        normalised.str.extract(_KEYWORD_RE, 1)
        .replace_strict(_KEYWORD_TOPIC, default="other", return_dtype=pl.String)
        .fill_null("other")
    )


_KEYWORDS = tuple(_KEYWORD_TOPIC)
_KEYWORD_TOPIC_INDEX = tuple(TOPICS.index(_KEYWORD_TOPIC[k]) for k in _KEYWORDS)
_FP_FIELDS = {
    "tmpl": pl.UInt64,
    "tmpl_tail": pl.UInt64,
    "nd1": pl.UInt64,
    "nd2": pl.UInt64,
    "bench": pl.Boolean,
    "script": pl.String,
    "topic": pl.String,
    "prompt_chars": pl.Int32,
}
_FP_DTYPE = pl.Struct(_FP_FIELDS)
_SCRIPT_NAMES = pl.Series(SCRIPTS, dtype=pl.String)
_TOPIC_NAMES = pl.Series(TOPICS, dtype=pl.String)


def _fingerprint_batch(prompts: pl.Series) -> pl.Series:
    """The compiled per-prompt pass (:func:`detector._fpkernel.fingerprint_prompts`) on one
    batch of the prompt column -> a struct Series of its outputs."""
    r = fingerprint_prompts(prompts, _KEYWORDS, _KEYWORD_TOPIC_INDEX, BENCH_MARKERS)
    topic = r["topic"].astype(np.int64)
    topic[topic < 0] = len(TOPICS) - 1
    return pl.DataFrame(
        {
            "tmpl": r["tmpl"],
            "tmpl_tail": r["tmpl_tail"],
            "nd1": r["nd"][:, 0],
            "nd2": r["nd"][:, 1],
            "bench": r["bench"],
            "script": _SCRIPT_NAMES.gather(r["script"]),
            "topic": _TOPIC_NAMES.gather(topic),
            "prompt_chars": r["prompt_chars"],
        },
        schema=_FP_FIELDS,
    ).to_struct(prompts.name)


def fingerprint_events(events: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame:
    """Canonical events -> compact events (no raw text). Pure and lazy.

    Text normalisation, words, word hashes, MinHash band keys, template hashes, topic, script,
    length and benchmark markers come from one compiled pass per prompt
    (:mod:`detector._fpkernel`, run batch by batch), the IP prefix from a compiled loop too;
    the regex markers and ``sys_h`` are polars expressions."""
    lf = events.lazy()
    prompt = pl.col("prompt").fill_null("")
    has_text = pl.col("prompt").is_not_null() & (pl.col("prompt") != "")
    fp = pl.col("__fp").struct
    return (
        lf.with_columns(
            pl.col("prompt")
            .map_batches(_fingerprint_batch, return_dtype=_FP_DTYPE, is_elementwise=True)
            .alias("__fp")
        )
        .with_columns(
            # no prompt text (not logged): no template and no near-duplicate keys, rather than
            # the hashes of an empty prompt that every such request would share
            *[pl.when(has_text).then(fp.field(c)).alias(c) for c in ("tmpl", "tmpl_tail")],
            pl.when(pl.col("system_prompt").is_not_null())
            .then(pl.col("system_prompt").hash(11))
            .alias("sys_h"),
            prompt.str.contains(COT_PATTERN).alias("cot"),
            prompt.str.contains(RUBRIC_PATTERN).alias("rubric"),
            prompt.str.contains(REWRITE_PATTERN).alias("rewrite"),
            fp.field("bench"),
            fp.field("script"),
            fp.field("topic"),
            fp.field("prompt_chars"),
            pl.col("ip")
            .map_batches(ip_prefixes, return_dtype=pl.String, is_elementwise=True)
            .alias("ip_prefix"),
        )
        .with_columns(*[pl.when(has_text).then(fp.field(c)).alias(c) for c in ("nd1", "nd2")])
        .drop(["__fp", *COMPACT_DROP])
    )


COMPACT_TEXT_COLUMNS = (
    "tmpl",
    "tmpl_tail",
    "nd1",
    "nd2",
    "sys_h",
    "cot",
    "rubric",
    "rewrite",
    "bench",
    "script",
    "topic",
    "prompt_chars",
    "ip_prefix",
)
