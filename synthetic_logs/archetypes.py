"""Customer and attacker archetypes: how each kind of account behaves.

Every parameter is a distribution an account draws from; a scenario (TOML) says how many
accounts of each archetype there are and may override any field. Attackers and hard negatives
deliberately overlap on every single behaviour (volume, templates, CoT phrasing, benchmark
prompts, logprobs, tools, new-model use, cloud IPs): only combinations separate them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

# Hour-of-day profiles in the account's local time (24 relative weights).
HOUR_PROFILES: dict[str, tuple[float, ...]] = {
    # humans: asleep at night, peaks late morning and evening
    "diurnal": (
        0.2,
        0.1,
        0.05,
        0.05,
        0.05,
        0.1,
        0.3,
        0.6,
        1.0,
        1.4,
        1.6,
        1.6,
        1.4,
        1.5,
        1.6,
        1.5,
        1.4,
        1.2,
        1.1,
        1.2,
        1.3,
        1.1,
        0.8,
        0.4,
    ),
    # office hours on a working day
    "office": (
        0.02,
        0.02,
        0.02,
        0.02,
        0.02,
        0.05,
        0.2,
        0.8,
        1.8,
        2.2,
        2.2,
        2.0,
        1.4,
        2.0,
        2.2,
        2.1,
        1.8,
        1.0,
        0.4,
        0.2,
        0.1,
        0.05,
        0.03,
        0.02,
    ),
    # an app's end users across several time zones: softer than one human
    "soft": (
        0.5,
        0.4,
        0.35,
        0.3,
        0.3,
        0.4,
        0.6,
        0.8,
        1.0,
        1.2,
        1.3,
        1.3,
        1.3,
        1.3,
        1.3,
        1.3,
        1.2,
        1.2,
        1.2,
        1.2,
        1.1,
        1.0,
        0.8,
        0.6,
    ),
    # nightly batch windows
    "night": (
        1.0,
        3.0,
        4.0,
        4.0,
        3.0,
        1.0,
        0.1,
        0.02,
        0.02,
        0.02,
        0.02,
        0.02,
        0.02,
        0.02,
        0.02,
        0.02,
        0.02,
        0.02,
        0.02,
        0.02,
        0.02,
        0.05,
        0.2,
        0.5,
    ),
    # scripts that never sleep
    "flat": tuple([1.0] * 24),
}


@dataclass(frozen=True)
class Archetype:
    """Behaviour of one kind of account. Rates are per active day, medians across accounts."""

    name: str
    is_attack: bool = False
    # volume and timing
    rate_per_day: float = 10.0
    rate_spread: float = 0.8  # sigma of ln(rate) across accounts of this archetype
    active_day_prob: float = 0.6
    profile: str = "diurnal"
    tz_spread_h: float = 3.0  # std of the account's time-zone offset (hours)
    session_len: float = 5.0  # mean requests per session
    session_gap_s: float = 45.0  # median gap within a session
    # content
    content: str = "chat"  # chat | app | batch | eval | agent | payload | rubric | rewrite | probe
    payload_mix: dict[str, float] = field(default_factory=lambda: {"instruction": 1.0})
    n_templates: int = 3  # templates per account (app, batch) or per campaign (attackers)
    cot_rate: float = 0.03  # share of prompts that ask for step-by-step reasoning
    languages: dict[str, float] = field(
        default_factory=lambda: {
            "en": 0.8,
            "es": 0.05,
            "de": 0.04,
            "fr": 0.03,
            "zh": 0.03,
            "ja": 0.02,
            "pt": 0.02,
            "ru": 0.01,
        }
    )
    multi_turn: bool = True
    system_prompt_rate: float = 0.1
    # tokens and parameters
    tokens: str = "conv"  # calibration family: conv | code
    prompt_scale: float = 1.0
    completion_scale: float = 1.0
    max_tokens_null_rate: float = 0.6
    max_tokens_choices: tuple[int, ...] = (256, 512, 1024, 2048, 4096)
    temperature_null_rate: float = 0.5
    temperature_choices: tuple[float, ...] = (0.0, 0.2, 0.5, 0.7, 1.0)
    temperature_sweep: bool = False  # draw temperature uniformly from [0, 1.5] per request
    n_gt1_rate: float = 0.005
    logprobs_rate: float = 0.002
    top_logprobs_choices: tuple[int, ...] = (1, 5)
    logit_bias_rate: float = 0.0005
    logit_bias_max: int = 5
    tools_rate: float = 0.02
    tools_max: int = 4
    stream_rate: float = 0.6
    error_rate: float = 0.01
    # infrastructure
    ip_kind: str = "residential"  # residential | cloud | proxy | many
    n_ips: float = 2.0  # mean distinct IPs per account
    n_keys: float = 1.3
    ua_kind: str = "popular"  # popular | sdk | browser
    # models and lifecycle
    new_model_share: float = 0.05  # share of requests on the newest model once released
    pivot: bool = False  # moves most traffic to a new model within hours of release
    account_age_days: float = 300.0  # median age at scenario start
    ramp_up: bool = False  # volume grows over the window
    mix_fraction: float = 0.0  # resellers: share of traffic that is distillation
    endpoints: dict[str, float] = field(
        default_factory=lambda: {"chat.completions": 0.85, "responses": 0.12, "completions": 0.03}
    )

    def with_overrides(self, overrides: dict[str, Any]) -> Archetype:
        known = {f.name for f in fields(self)}
        bad = sorted(set(overrides) - known)
        if bad:
            raise KeyError(f"unknown archetype field(s) {bad}; known: {sorted(known)}")
        fixed: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()
        }
        return replace(self, **fixed)


_SDK_EN = {"en": 1.0}

ARCHETYPES: dict[str, Archetype] = {
    a.name: a
    for a in (
        # ------------------------------------------------------------------ normal customers
        Archetype(
            "casual_chat",
            rate_per_day=6,
            rate_spread=0.9,
            active_day_prob=0.45,
            session_len=4,
            session_gap_s=60,
            ua_kind="browser",
        ),
        Archetype(
            "power_user",
            rate_per_day=45,
            rate_spread=0.7,
            active_day_prob=0.85,
            session_len=12,
            session_gap_s=35,
            cot_rate=0.08,
            n_ips=3,
            tokens="code",
            stream_rate=0.8,
            max_tokens_null_rate=0.3,
        ),
        Archetype(
            "app_backend",
            rate_per_day=60,
            rate_spread=1.1,
            active_day_prob=0.98,
            profile="soft",
            session_len=1.2,
            session_gap_s=5,
            content="app",
            n_templates=3,
            multi_turn=False,
            system_prompt_rate=1.0,
            cot_rate=0.0,
            ip_kind="cloud",
            n_ips=3,
            ua_kind="sdk",
            max_tokens_null_rate=0.0,
            temperature_null_rate=0.0,
            temperature_choices=(0.3, 0.7),
            languages=_SDK_EN,
            account_age_days=400,
        ),
        Archetype(
            "batch_job",
            rate_per_day=1200,
            rate_spread=0.8,
            active_day_prob=0.5,
            profile="night",
            tz_spread_h=1.0,
            session_len=600,
            session_gap_s=1.5,
            content="batch",
            n_templates=1,
            multi_turn=False,
            system_prompt_rate=0.0,
            cot_rate=0.0,
            ip_kind="cloud",
            n_ips=2,
            ua_kind="sdk",
            stream_rate=0.0,
            max_tokens_null_rate=0.0,
            max_tokens_choices=(128, 256),
            temperature_null_rate=0.0,
            temperature_choices=(0.0,),
            completion_scale=0.3,
            languages=_SDK_EN,
            account_age_days=500,
            error_rate=0.02,
        ),
        Archetype(
            "eval_harness",
            rate_per_day=500,
            rate_spread=0.8,
            active_day_prob=0.3,
            profile="office",
            session_len=250,
            session_gap_s=0.8,
            content="eval",
            payload_mix={"mc": 0.5, "math": 0.3, "code": 0.2},
            multi_turn=False,
            system_prompt_rate=0.0,
            cot_rate=0.25,
            ip_kind="cloud",
            n_ips=1,
            ua_kind="sdk",
            stream_rate=0.0,
            max_tokens_null_rate=0.0,
            max_tokens_choices=(512, 1024),
            temperature_null_rate=0.0,
            temperature_choices=(0.0,),
            logprobs_rate=0.2,
            top_logprobs_choices=(5,),
            n_gt1_rate=0.1,
            languages=_SDK_EN,
        ),
        Archetype(
            "agent_product",
            rate_per_day=150,
            rate_spread=1.0,
            active_day_prob=0.95,
            profile="soft",
            session_len=8,
            session_gap_s=4,
            content="agent",
            multi_turn=True,
            system_prompt_rate=1.0,
            cot_rate=0.05,
            tools_rate=0.95,
            tools_max=20,
            ip_kind="cloud",
            n_ips=4,
            ua_kind="sdk",
            tokens="code",
            prompt_scale=2.5,
            languages=_SDK_EN,
            account_age_days=250,
        ),
        Archetype(
            "researcher",
            rate_per_day=35,
            rate_spread=1.0,
            active_day_prob=0.5,
            profile="office",
            session_len=30,
            session_gap_s=8,
            content="payload",
            payload_mix={"instruction": 0.5, "mc": 0.3, "math": 0.2},
            multi_turn=False,
            cot_rate=0.15,
            logprobs_rate=0.35,
            top_logprobs_choices=(5, 10, 20),
            logit_bias_rate=0.02,
            n_gt1_rate=0.1,
            temperature_sweep=True,
            ua_kind="sdk",
        ),
        Archetype(
            "reseller",
            rate_per_day=1500,
            rate_spread=0.8,
            active_day_prob=1.0,
            profile="soft",
            session_len=3,
            session_gap_s=20,
            content="chat",
            system_prompt_rate=0.4,
            ip_kind="many",
            n_ips=300,
            n_keys=40,
            ua_kind="sdk",
            tools_rate=0.15,
            cot_rate=0.05,
            account_age_days=500,
        ),
        Archetype(
            "early_adopter",
            rate_per_day=40,
            rate_spread=0.8,
            active_day_prob=0.8,
            session_len=10,
            session_gap_s=30,
            new_model_share=0.8,
            pivot=True,
            cot_rate=0.1,
            ua_kind="sdk",
            tokens="code",
        ),
        # ------------------------------------------------------------------ attackers
        Archetype(
            "bulk_distiller",
            is_attack=True,
            rate_per_day=6000,
            rate_spread=0.6,
            active_day_prob=1.0,
            profile="flat",
            session_len=80,
            session_gap_s=2.0,
            content="payload",
            payload_mix={"math": 0.3, "code": 0.3, "instruction": 0.4},
            n_templates=6,
            multi_turn=False,
            system_prompt_rate=0.2,
            cot_rate=0.6,
            ip_kind="cloud",
            n_ips=4,
            ua_kind="sdk",
            max_tokens_null_rate=0.0,
            max_tokens_choices=(4096, 8192),
            completion_scale=2.5,
            stream_rate=0.0,
            account_age_days=30,
        ),
        Archetype(
            "hydra",
            is_attack=True,
            rate_per_day=26,
            rate_spread=0.15,
            active_day_prob=1.0,
            profile="flat",
            session_len=2,
            session_gap_s=20,
            content="payload",
            payload_mix={"math": 0.4, "code": 0.3, "instruction": 0.3},
            n_templates=12,
            multi_turn=False,
            system_prompt_rate=0.0,
            cot_rate=0.8,
            ip_kind="proxy",
            n_ips=3,
            ua_kind="sdk",
            max_tokens_null_rate=0.0,
            max_tokens_choices=(8192,),
            completion_scale=2.0,
            stream_rate=0.0,
            account_age_days=20,
            tz_spread_h=0.0,
        ),
        Archetype(
            "cot_harvester",
            is_attack=True,
            rate_per_day=500,
            rate_spread=0.7,
            active_day_prob=0.95,
            profile="flat",
            session_len=20,
            session_gap_s=6,
            content="payload",
            payload_mix={"math": 0.5, "instruction": 0.5},
            n_templates=4,
            multi_turn=False,
            cot_rate=0.95,
            ip_kind="cloud",
            n_ips=2,
            ua_kind="sdk",
            max_tokens_null_rate=0.0,
            max_tokens_choices=(4096, 8192),
            completion_scale=2.5,
            stream_rate=0.1,
            account_age_days=60,
        ),
        Archetype(
            "capability_sweep",
            is_attack=True,
            rate_per_day=600,
            rate_spread=0.7,
            active_day_prob=0.95,
            profile="flat",
            session_len=40,
            session_gap_s=4,
            content="payload",
            payload_mix={"code": 0.3, "math": 0.2, "mc": 0.25, "agent": 0.25},
            n_templates=8,
            multi_turn=False,
            cot_rate=0.4,
            tools_rate=0.25,
            tools_max=12,
            ip_kind="cloud",
            n_ips=3,
            ua_kind="sdk",
            max_tokens_null_rate=0.0,
            max_tokens_choices=(4096,),
            completion_scale=1.8,
            stream_rate=0.0,
            tokens="code",
            account_age_days=45,
        ),
        Archetype(
            "logprob_extraction",
            is_attack=True,
            rate_per_day=1500,
            rate_spread=0.7,
            active_day_prob=1.0,
            profile="flat",
            session_len=200,
            session_gap_s=0.8,
            content="probe",
            multi_turn=False,
            cot_rate=0.0,
            system_prompt_rate=0.0,
            max_tokens_null_rate=0.0,
            max_tokens_choices=(1,),
            logprobs_rate=0.98,
            top_logprobs_choices=(20,),
            logit_bias_rate=0.7,
            logit_bias_max=300,
            temperature_null_rate=0.0,
            temperature_choices=(0.0,),
            stream_rate=0.0,
            ip_kind="cloud",
            n_ips=2,
            ua_kind="sdk",
            endpoints={"completions": 0.6, "chat.completions": 0.4},
            account_age_days=15,
            prompt_scale=0.2,
        ),
        Archetype(
            "rubric_grader",
            is_attack=True,
            rate_per_day=350,
            rate_spread=0.7,
            active_day_prob=0.95,
            profile="flat",
            session_len=30,
            session_gap_s=5,
            content="rubric",
            n_templates=3,
            multi_turn=False,
            cot_rate=0.2,
            ip_kind="cloud",
            n_ips=2,
            ua_kind="sdk",
            max_tokens_null_rate=0.0,
            max_tokens_choices=(1024, 2048),
            temperature_null_rate=0.0,
            temperature_choices=(0.0,),
            stream_rate=0.0,
            prompt_scale=2.0,
            account_age_days=40,
        ),
        Archetype(
            "rewrite_safely",
            is_attack=True,
            rate_per_day=300,
            rate_spread=0.7,
            active_day_prob=0.95,
            profile="flat",
            session_len=30,
            session_gap_s=5,
            content="rewrite",
            n_templates=3,
            multi_turn=False,
            cot_rate=0.1,
            ip_kind="cloud",
            n_ips=2,
            ua_kind="sdk",
            max_tokens_null_rate=0.0,
            max_tokens_choices=(2048,),
            stream_rate=0.0,
            prompt_scale=1.5,
            account_age_days=40,
        ),
        Archetype(
            "reseller_mixed",
            is_attack=True,
            rate_per_day=1500,
            rate_spread=0.8,
            active_day_prob=1.0,
            profile="soft",
            session_len=3,
            session_gap_s=20,
            content="chat",
            system_prompt_rate=0.4,
            ip_kind="many",
            n_ips=300,
            n_keys=40,
            ua_kind="sdk",
            tools_rate=0.15,
            cot_rate=0.05,
            account_age_days=400,
            mix_fraction=0.10,
        ),
        Archetype(
            "model_pivot",
            is_attack=True,
            rate_per_day=400,
            rate_spread=0.7,
            active_day_prob=1.0,
            profile="flat",
            session_len=30,
            session_gap_s=4,
            content="payload",
            payload_mix={"code": 0.4, "math": 0.3, "instruction": 0.3},
            n_templates=6,
            multi_turn=False,
            cot_rate=0.7,
            ip_kind="cloud",
            n_ips=3,
            ua_kind="sdk",
            max_tokens_null_rate=0.0,
            max_tokens_choices=(8192,),
            completion_scale=2.0,
            stream_rate=0.0,
            new_model_share=0.95,
            pivot=True,
            account_age_days=90,
        ),
    )
}

NORMAL_ARCHETYPES = tuple(a for a in ARCHETYPES.values() if not a.is_attack)
ATTACK_ARCHETYPES = tuple(a for a in ARCHETYPES.values() if a.is_attack)
