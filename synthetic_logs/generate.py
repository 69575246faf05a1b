"""Generate labelled request-log traffic from a scenario, vectorised (numpy + polars).

For each group of accounts: per-account rates and active days, sessions placed by an hour-of-day
profile in the account's time zone, requests within sessions separated by think/script gaps,
then every request column drawn per event in bulk. No Python loop runs per event.

Same scenario + seed -> byte-identical output files.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from detector.schema import ACCOUNT_SCHEMA, EVENT_SCHEMA, LABEL_SCHEMA, TS_DTYPE
from synthetic_logs import calibration, text, vocab
from synthetic_logs.accounts import account_table, ip_pool, user_agents
from synthetic_logs.archetypes import HOUR_PROFILES
from synthetic_logs.corpus import load_corpus
from synthetic_logs.scenario import Group, Scenario, load_scenario

DAY_S = 86_400.0


@dataclass
class Generated:
    """Events, the optional account table and ground-truth labels."""

    events: pl.DataFrame
    accounts: pl.DataFrame
    labels: pl.DataFrame

    def write(self, out_dir: str | Path, fmt: str = "parquet") -> dict[str, Path]:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"accounts": out / "accounts.parquet", "labels": out / "labels.parquet"}
        if fmt == "parquet":
            paths["events"] = out / "events.parquet"
            self.events.write_parquet(paths["events"], compression="zstd", statistics=True)
        elif fmt == "ndjson":
            paths["events"] = out / "events.ndjson"
            self.events.with_columns(
                pl.col("ts").dt.to_string("%Y-%m-%dT%H:%M:%S%.6fZ")
            ).write_ndjson(paths["events"])
        else:
            raise ValueError(f"unknown format {fmt!r}: use parquet or ndjson")
        self.accounts.write_parquet(paths["accounts"], compression="zstd")
        self.labels.write_parquet(paths["labels"], compression="zstd")
        return paths


def generate(
    scenario: str | Path | Scenario,
    seed: int = 0,
    *,
    scale: float = 1.0,
    corpus: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
) -> Generated:
    """Generate a scenario. ``progress(done_groups, total_groups)`` is called after each group;
    ``workers`` threads generate groups in parallel (default: one per core); output is the same
    for any number of workers."""
    sc = scenario if isinstance(scenario, Scenario) else load_scenario(scenario, scale=scale)
    real = load_corpus(Path(corpus)) if corpus else None
    events, accounts, labels = [], [], []
    root = np.random.SeedSequence(seed)
    children = root.spawn(len(sc.groups))

    def one(gi: int) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        rng = np.random.default_rng(children[gi])  # each group has its own stream: order-free
        return _generate_group(sc, sc.groups[gi], gi, rng, real)

    # Groups run in threads (numpy and polars release the GIL in their heavy parts); results
    # are consumed in group order, so the output does not depend on scheduling.
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        for gi, (ev, acc, lab) in enumerate(pool.map(one, range(len(sc.groups)))):
            events.append(ev)
            accounts.append(acc)
            labels.append(lab)
            if progress:
                progress(gi + 1, len(sc.groups))
    ev_all = (
        pl.concat(events, how="vertical")
        .sort("ts", maintain_order=True)
        .select([pl.col(c).cast(t) for c, t in EVENT_SCHEMA.items()])
    )
    acc_all = (
        pl.concat(accounts)
        .sort("account_id")
        .select([pl.col(c).cast(t) for c, t in ACCOUNT_SCHEMA.items()])
    )
    lab_all = (
        pl.concat(labels)
        .sort("account_id")
        .select([pl.col(c).cast(t) for c, t in LABEL_SCHEMA.items()])
    )
    return Generated(ev_all, acc_all, lab_all)


# --------------------------------------------------------------------------- per group


def _ids(rng: np.random.Generator, prefix: str, n: int) -> pl.Series:
    """Opaque ids: a prefix and a random 62-bit number (no label can leak through them)."""
    raw = pl.Series(rng.integers(0, 2**62, n, dtype=np.int64)).cast(pl.String)
    return text.concat(prefix, raw)


def _choice(rng: np.random.Generator, weights: dict[str, float], n: int) -> np.ndarray:
    keys = list(weights)
    p = np.array([weights[k] for k in keys], dtype=float)
    return np.array(keys, dtype=object)[rng.choice(len(keys), size=n, p=p / p.sum())]


def _generate_group(
    sc: Scenario, group: Group, gi: int, rng: np.random.Generator, corpus: text.Corpus | None
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    arch = group.archetype
    n_acc = group.accounts
    n_days = max(1, int(np.ceil(sc.days)))
    horizon = sc.days * DAY_S
    release_s = sc.new_release_day * DAY_S if sc.new_model else None

    acct_ids = _ids(rng, "acct_", n_acc)
    rate = arch.rate_per_day * np.exp(rng.normal(0.0, arch.rate_spread, n_acc))
    tz = np.round(rng.normal(0.0, arch.tz_spread_h, n_acc)) if arch.tz_spread_h else np.zeros(n_acc)
    if group.campaign:  # one operator: one clock for all members
        tz[:] = tz[0]

    # ---- active account-days
    active = rng.random((n_acc, n_days)) < arch.active_day_prob
    active[np.arange(n_acc), rng.integers(0, n_days, n_acc)] = True
    start_s = np.zeros(n_acc)
    pivot_delay = rng.uniform(1.0, 20.0, n_acc) * 3600.0
    if arch.pivot and release_s is not None and arch.is_attack:
        # attackers that chase a new model mostly arrive once it is out
        start_s = np.where(rng.random(n_acc) < 0.6, release_s + pivot_delay * 0.5, 0.0)
    day_weight = np.ones((n_acc, n_days))
    if arch.ramp_up and n_days > 1:
        day_weight = np.linspace(0.3, 1.7, n_days)[None, :].repeat(n_acc, 0)

    # ---- sessions
    lam = (rate[:, None] * day_weight / max(arch.session_len, 1.0)) * active
    n_sess = rng.poisson(lam)
    flat_counts = n_sess.ravel()
    sess_acct = np.repeat(np.repeat(np.arange(n_acc), n_days), flat_counts)
    sess_day = np.repeat(np.tile(np.arange(n_days), n_acc), flat_counts)
    n_s = len(sess_acct)
    profile = np.asarray(HOUR_PROFILES[arch.profile], dtype=float)
    if group.campaign and arch.profile == "flat":
        # campaigns run on their own schedule: a random but shared hourly shape
        profile = profile * rng.uniform(0.5, 1.5, 24)
    local_hour = rng.choice(24, size=n_s, p=profile / profile.sum())
    utc_hour = (local_hour - tz[sess_acct]) % 24
    sess_start = sess_day * DAY_S + utc_hour * 3600.0 + rng.uniform(0, 3600.0, n_s)
    if group.campaign and group.lockstep and n_s > 0:
        # members pick start times from the campaign's shared schedule (+ small jitter)
        pool = sess_start[rng.integers(0, n_s, max(1, n_s // 8))]
        sess_start = pool[rng.integers(0, len(pool), n_s)] + rng.uniform(0, 90.0, n_s)
    sess_size = 1 + rng.poisson(max(arch.session_len - 1.0, 0.0), n_s)

    # ---- events
    n_ev = int(sess_size.sum())
    ev_sess = np.repeat(np.arange(n_s), sess_size)
    first_of_sess = np.concatenate([[0], np.cumsum(sess_size)[:-1]]) if n_s else np.zeros(0, int)
    pos = np.arange(n_ev) - np.repeat(first_of_sess, sess_size)
    gaps = rng.lognormal(np.log(arch.session_gap_s), 0.8, n_ev)
    gaps[pos == 0] = 0.0
    csum = np.cumsum(gaps)
    offset = csum - np.repeat(csum[first_of_sess] if n_s else csum[:0], sess_size)
    t = sess_start[ev_sess] + offset
    ev_acct = sess_acct[ev_sess]
    keep = (t < horizon) & (t >= start_s[ev_acct])
    t, ev_acct, ev_sess, pos = t[keep], ev_acct[keep], ev_sess[keep], pos[keep]
    n_ev = len(t)

    # ---- language, models, endpoints
    langs = group.languages or arch.languages
    acct_lang = _choice(rng, langs, n_acc)
    lang = pl.Series(acct_lang.astype(str), dtype=pl.String).gather(ev_acct)
    models = [*sc.base_models, sc.new_model or ""]
    n_base = len(sc.base_models)
    model_idx = rng.choice(n_base, n_ev, p=_model_weights(n_base))
    if sc.new_model and release_s is not None:
        eligible = t >= release_s + (pivot_delay[ev_acct] if arch.pivot else 6 * 3600.0)
        use_new = eligible & (rng.random(n_ev) < arch.new_model_share)
        model_idx = np.where(use_new, n_base, model_idx)
    model = pl.Series(models, dtype=pl.String).gather(model_idx)
    endpoint = _gather_choice(rng, arch.endpoints, n_ev)

    # ---- tokens and parameters
    fam_p = (
        calibration.PROMPT_TOKENS_CODE if arch.tokens == "code" else calibration.PROMPT_TOKENS_CONV
    )
    fam_c = (
        calibration.COMPLETION_TOKENS_CODE
        if arch.tokens == "code"
        else calibration.COMPLETION_TOKENS_CONV
    )
    prompt_tokens = np.maximum(1, fam_p.sample(rng, n_ev) * arch.prompt_scale)
    if arch.multi_turn:
        # Real context sizes already include the conversation so far: keep the calibrated
        # marginal distribution, but let the context grow within each session.
        prompt_tokens = prompt_tokens[np.lexsort((prompt_tokens, ev_sess))]
    completion = np.maximum(1, fam_c.sample(rng, n_ev) * arch.completion_scale)
    mt_choices = np.array(arch.max_tokens_choices)
    max_tokens = mt_choices[rng.integers(0, len(mt_choices), n_ev)].astype(float)
    max_tokens[rng.random(n_ev) < arch.max_tokens_null_rate] = np.nan
    temps = np.array(arch.temperature_choices, dtype=float)
    temperature = temps[rng.integers(0, len(temps), n_ev)]
    if arch.temperature_sweep:
        sweep = rng.random(n_ev) < 0.5
        temperature[sweep] = np.round(rng.uniform(0, 1.5, int(sweep.sum())), 2)
    temperature[rng.random(n_ev) < arch.temperature_null_rate] = np.nan
    top_p = np.where(rng.random(n_ev) < 0.1, rng.choice([0.9, 0.95, 1.0], n_ev), np.nan)
    n_param = np.where(rng.random(n_ev) < arch.n_gt1_rate, rng.integers(2, 9, n_ev), 1)
    logprobs = rng.random(n_ev) < arch.logprobs_rate
    tlp = np.array(arch.top_logprobs_choices)
    top_logprobs = np.where(logprobs, tlp[rng.integers(0, len(tlp), n_ev)], np.nan)
    logit_bias = np.where(
        rng.random(n_ev) < arch.logit_bias_rate, rng.integers(1, arch.logit_bias_max + 1, n_ev), 0
    )
    tools = np.where(
        rng.random(n_ev) < arch.tools_rate, rng.integers(1, arch.tools_max + 1, n_ev), 0
    )
    stream = rng.random(n_ev) < arch.stream_rate

    # ---- mixing (resellers with a distilling end customer)
    mixed = np.zeros(n_ev, dtype=bool)
    if arch.mix_fraction > 0:
        mixed = rng.random(n_ev) < arch.mix_fraction
        max_tokens[mixed] = 8192
        completion[mixed] = completion[mixed] * 2.5

    # ---- outcome
    capped = ~np.isnan(max_tokens) & (completion >= max_tokens)
    completion = np.where(np.isnan(max_tokens), completion, np.minimum(completion, max_tokens))
    failed = rng.random(n_ev) < arch.error_rate
    status = np.where(failed, rng.choice([400, 429, 500], n_ev, p=[0.3, 0.5, 0.2]), 200)
    completion = np.where(failed, 0, completion)
    finish_idx = np.where(capped, 0, np.where(tools > 0, 1, 2))
    finish_idx[(tools > 0) & (rng.random(n_ev) < 0.4)] = 2
    finish_idx[failed] = 3
    finish = pl.Series(["length", "tool_calls", "stop", None], dtype=pl.String).gather(finish_idx)
    latency = (150 + completion * rng.lognormal(np.log(18), 0.3, n_ev) + prompt_tokens * 0.05) * (
        1 + 0.5 * n_param * (n_param > 1)
    )

    # ---- infrastructure: keys, IPs, user agents
    n_keys_acc = 1 + rng.poisson(max(arch.n_keys - 1, 0), n_acc)
    key_of_ev = (rng.random(n_ev) * n_keys_acc[ev_acct]).astype(int)
    key_seed = rng.integers(0, 2**40, n_acc)
    api_key = pl.Series((key_seed[ev_acct] * 64 + key_of_ev).astype(np.int64)).cast(pl.String)
    api_key = text.concat("key_", api_key)
    ranges = None
    if group.campaign or group.shared_network:
        ranges = [
            f"{rng.integers(45, 220)}.{rng.integers(0, 256)}.{rng.integers(0, 256)}"
            for _ in range(max(1, group.ip_ranges))
        ]
    n_ips_acc = np.minimum(1 + rng.poisson(max(arch.n_ips - 1, 0), n_acc), 2000)
    if group.shared_network and ranges:
        nat = np.array([f"{r}.{rng.integers(1, 255)}" for r in ranges], dtype=object)
        ip_of_acc_pool = [nat] * n_acc
    else:
        kind = "proxy" if arch.ip_kind == "proxy" and ranges else arch.ip_kind
        all_ips = ip_pool(rng, kind, int(n_ips_acc.sum()), ranges)
        bounds = np.concatenate([[0], np.cumsum(n_ips_acc)])
        ip_of_acc_pool = [all_ips[bounds[i] : bounds[i + 1]] for i in range(n_acc)]
    pool_sizes = np.array([len(p) for p in ip_of_acc_pool])
    pool_start = np.concatenate([[0], np.cumsum(pool_sizes)[:-1]])
    flat_ips = np.concatenate(ip_of_acc_pool) if n_acc else np.zeros(0, dtype=object)
    ip_idx = pool_start[ev_acct] + (rng.random(n_ev) * pool_sizes[ev_acct]).astype(int)
    if mixed.any():  # the distilling end customer sits behind the reseller's first IP
        ip_idx[mixed] = pool_start[ev_acct[mixed]]
    ip = pl.Series(flat_ips.astype(str), dtype=pl.String).gather(ip_idx)
    acct_ua = user_agents(rng, arch.ua_kind, n_acc)
    if group.campaign:
        campaign_uas = user_agents(rng, "sdk", 2)
        acct_ua = campaign_uas[rng.integers(0, 2, n_acc)]
    ua_secondary = user_agents(rng, arch.ua_kind, n_acc)
    ua_pool = pl.Series(np.concatenate([acct_ua, ua_secondary]).astype(str), dtype=pl.String)
    ua = ua_pool.gather(np.where(rng.random(n_ev) < 0.85, ev_acct, ev_acct + n_acc))

    # ---- conversations
    conv = None
    if arch.multi_turn:
        conv_ids = _ids(rng, "conv_", n_s)
        conv = conv_ids.gather(ev_sess)

    # ---- text
    prompt, system_prompt, cot = _texts(sc, group, rng, corpus, ev_acct, pos, lang, n_acc)
    if mixed.any():
        attack_text = _payload_prompts(
            rng,
            _campaign_templates(rng, 4),
            n_ev,
            lang,
            {"math": 0.5, "code": 0.5},
            corpus,
            cot_rate=0.9,
        )
        prompt = pl.select(
            pl.when(pl.lit(pl.Series(mixed))).then(pl.lit(attack_text)).otherwise(pl.lit(prompt))
        ).to_series()

    ts = pl.Series(
        (np.int64(sc.start.timestamp() * 1e6) + (t * 1e6).astype(np.int64)), dtype=pl.Int64
    ).cast(TS_DTYPE)
    events = pl.DataFrame(
        {
            "ts": ts,
            "request_id": _ids(rng, "req_", n_ev),
            "account_id": acct_ids.gather(ev_acct),
            "api_key_id": api_key,
            "ip": ip,
            "user_agent": ua,
            "model": model,
            "endpoint": endpoint,
            "prompt": prompt,
            "system_prompt": system_prompt,
            "prompt_tokens": np.round(prompt_tokens).astype(np.int32),
            "completion_tokens": np.round(completion).astype(np.int32),
            "max_tokens": pl.Series(max_tokens).fill_nan(None).cast(pl.Int32),
            "temperature": pl.Series(temperature).fill_nan(None).cast(pl.Float32),
            "top_p": pl.Series(top_p).fill_nan(None).cast(pl.Float32),
            "n": n_param.astype(np.int16),
            "logprobs": logprobs,
            "top_logprobs": pl.Series(top_logprobs).fill_nan(None).cast(pl.Int16),
            "logit_bias_size": logit_bias.astype(np.int16),
            "tools_count": tools.astype(np.int16),
            "stream": stream,
            "status": status.astype(np.int16),
            "latency_ms": latency.astype(np.float32),
            "finish_reason": finish,
            "conversation_id": conv
            if conv is not None
            else pl.Series([None] * n_ev, dtype=pl.String),
        }
    )
    del cot
    accounts = account_table(sc, group, rng, acct_ids)
    labels = pl.DataFrame(
        {
            "account_id": acct_ids,
            "is_attack": [arch.is_attack] * n_acc,
            "archetype": [arch.name] * n_acc,
            "campaign_id": _campaign_labels(group, gi, rng, n_acc),
        },
        schema=LABEL_SCHEMA,
    )
    return events, accounts, labels


def _gather_choice(rng: np.random.Generator, weights: dict[str, float], n: int) -> pl.Series:
    keys = list(weights)
    p = np.array([weights[k] for k in keys], dtype=float)
    return pl.Series(keys, dtype=pl.String).gather(rng.choice(len(keys), size=n, p=p / p.sum()))


def _model_weights(k: int) -> np.ndarray:
    w = 1.0 / np.arange(1, k + 1)
    return w / w.sum()


def _campaign_labels(group: Group, gi: int, rng: np.random.Generator, n: int) -> list[str | None]:
    if not group.archetype.is_attack:
        return [None] * n
    if group.campaign:
        return [f"camp-{group.campaign}"] * n
    return [f"solo-{group.archetype.name}-{gi}-{i}" for i in range(n)]


def _campaign_templates(rng: np.random.Generator, k: int) -> list[tuple[str, str]]:
    return text.campaign_headers(rng, k)


def _payload_prompts(
    rng: np.random.Generator,
    templates: list[tuple[str, str]],
    n: int,
    lang: pl.Series,
    mix: dict[str, float],
    corpus: text.Corpus | None,
    cot_rate: float,
) -> pl.Series:
    """Distiller-style prompts: a campaign header + payload + (often) a CoT request."""
    heads = pl.Series([h for h, _ in templates], dtype=pl.String)
    foots = pl.Series([f for _, f in templates], dtype=pl.String)
    which = rng.integers(0, len(templates), n)
    payload = text.payload_text(rng, n, mix, corpus)
    cot = _cot_suffix(rng, lang, n, cot_rate)
    body = text.concat(heads.gather(which), payload, foots.gather(which), cot)
    return body.str.replace_all(r"\{lang_name\}", "English", literal=False)


def _cot_suffix(rng: np.random.Generator, lang: pl.Series, n: int, rate: float) -> pl.Series:
    use = rng.random(n) < rate
    out = np.full(n, "", dtype=object)
    lang_arr = lang.to_numpy()
    for code, phrases in vocab.COT_PHRASES.items():
        sel = use & (lang_arr == code)
        k = int(sel.sum())
        if k:
            out[sel] = np.array([" " + p for p in phrases], dtype=object)[
                rng.integers(0, len(phrases), k)
            ]
    return pl.Series(out, dtype=pl.String)


def _texts(
    sc: Scenario,
    group: Group,
    rng: np.random.Generator,
    corpus: text.Corpus | None,
    ev_acct: np.ndarray,
    pos: np.ndarray,
    lang: pl.Series,
    n_acc: int,
) -> tuple[pl.Series, pl.Series, pl.Series]:
    arch = group.archetype
    n = len(ev_acct)
    none = pl.Series([None] * n, dtype=pl.String)
    cot = _cot_suffix(rng, lang, n, arch.cot_rate)
    system = none
    if arch.content == "chat":
        prompt = text.concat(text.chat_text(rng, lang, pos, corpus), cot)
    elif arch.content in ("app", "batch", "agent"):
        pool = {
            "app": vocab.APP_TEMPLATES,
            "batch": vocab.BATCH_TEMPLATES,
            "agent": vocab.AGENT_TASKS,
        }[arch.content]
        k = max(1, arch.n_templates)
        # each account uses its own few templates (with its organisation's name resolved)
        acct_templates = [
            text.resolve_static(pool[int(j)], rng, ("org",))
            for _ in range(n_acc)
            for j in rng.integers(0, len(pool), k)
        ]
        tmpl_idx = ev_acct * k + rng.integers(0, k, n)
        body = None
        if arch.content == "agent":
            body = text.payload_text(rng, n, {"agent": 1.0}, corpus)
        prompt = text.fill_templates(rng, pl.Series(acct_templates), tmpl_idx, n, text=body)
        prompt = text.concat(prompt, cot)
        sys_pool = vocab.APP_SYSTEM_PROMPTS
        if group.shared_system_prompt:  # one open-source app used by many developers
            shared = text.resolve_static(
                sys_pool[int(rng.integers(0, len(sys_pool)))], rng, ("org",)
            )
            acct_sys = np.array([shared] * n_acc, dtype=object)
        else:
            acct_sys = np.array(
                [
                    text.resolve_static(
                        sys_pool[int(rng.integers(0, len(sys_pool)))], rng, ("org",)
                    )
                    for _ in range(n_acc)
                ],
                dtype=object,
            )
        system = pl.Series(acct_sys.astype(str), dtype=pl.String).gather(ev_acct)
    elif arch.content in ("payload", "eval"):
        if arch.is_attack:
            templates = _campaign_templates(rng, arch.n_templates)
            prompt = _payload_prompts(
                rng, templates, n, lang, arch.payload_mix, corpus, arch.cot_rate
            )
        else:
            prompt = text.concat(text.payload_text(rng, n, arch.payload_mix, corpus), cot)
    elif arch.content == "rubric":
        tmpl = pl.Series(list(vocab.RUBRIC_TEMPLATES))
        body = text.payload_text(rng, n, {"instruction": 0.5, "math": 0.5}, corpus)
        answer = text.filler(rng, n, 12)
        prompt = text.fill_templates(rng, tmpl, rng.integers(0, len(tmpl), n), n, body, answer)
        prompt = text.concat(prompt, cot)
    elif arch.content == "rewrite":
        tmpl = pl.Series(list(vocab.REWRITE_TEMPLATES))
        body = text.concat(
            text.payload_text(rng, n, {"instruction": 1.0}, corpus), " ", text.filler(rng, n, 10)
        )
        prompt = text.fill_templates(rng, tmpl, rng.integers(0, len(tmpl), n), n, body)
    elif arch.content == "probe":
        # extraction probes: short prompts, one token back, logprobs/logit_bias sweeps
        prompt = text.concat(
            text.pick(rng, ("The", "A", "In", "Once", "Token", "Q:", "Hello", "Translate:"), n),
            " ",
            text.filler(rng, n, 2),
        )
    else:
        raise ValueError(f"archetype {arch.name}: unknown content kind {arch.content!r}")
    if system is none and arch.system_prompt_rate > 0:
        use_sys = rng.random(n) < arch.system_prompt_rate
        generic = text.pick(
            rng,
            (
                "You are a helpful assistant.",
                "You are ChatGPT, a helpful assistant.",
                "Answer accurately.",
                "You are a senior engineer.",
            ),
            n,
        )
        system = pl.select(pl.when(pl.lit(pl.Series(use_sys))).then(pl.lit(generic))).to_series()
    return prompt, system, cot


# --------------------------------------------------------------------------- real corpora
