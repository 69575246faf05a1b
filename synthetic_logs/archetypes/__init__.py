"""Customer and attacker archetypes: how each kind of account behaves.

The archetypes are data, in the TOML files beside this module:

- ``defaults.toml``: every field, its default and what it means;
- ``hour_profiles.toml``: the hour-of-day shapes a ``profile`` can name;
- ``customers.toml`` and ``attackers.toml``: one table per archetype, with the fields where it
  differs from the defaults.

This module reads them into one frozen :class:`Archetype` per table (:data:`ARCHETYPES`) and
checks every value; a bad one raises :class:`ArchetypeError` naming the file, archetype and field.
A scenario (``synthetic_logs/scenario.py``) says how many accounts of each archetype there are and
may override any field per group (:meth:`Archetype.with_overrides`, checked the same way).

Every parameter is a distribution an account draws from. Attackers and hard negatives deliberately
overlap on every single behaviour (volume, templates, CoT phrasing, benchmark prompts, logprobs,
tools, new-model use, cloud IPs): only combinations separate them.
"""

from __future__ import annotations

import math
import tomllib
import typing
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ARCHETYPE_DIR = Path(__file__).parent
ARCHETYPE_FILES = ("customers.toml", "attackers.toml")
"""The files of archetype tables, in the order :data:`ARCHETYPES` lists them."""

# The values a field may take where a fixed set of code paths reads it.
CONTENT_KINDS = (
    "chat",
    "app",
    "batch",
    "classify",
    "moderation",
    "eval",
    "agent",
    "payload",
    "rubric",
    "rewrite",
    "probe",
    "tutor",
    "judge",
    "toolcall",
)
PAYLOAD_KINDS = ("instruction", "math", "code", "mc", "agent")
TOKEN_FAMILIES = ("conv", "code")
IP_KINDS = ("residential", "cloud", "proxy", "many")
UA_KINDS = ("popular", "sdk", "browser")
PHRASINGS = ("stock", "paraphrased")


class ArchetypeError(ValueError):
    """An archetype value is invalid. ``where`` names the file (or override) and field at fault,
    ``reason`` what is wrong with it."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason


@dataclass(frozen=True)
class Archetype:
    """Behaviour of one kind of account. Rates are per active day, medians across accounts; what
    each field means, and its default, is in ``defaults.toml``."""

    name: str
    is_attack: bool
    # volume and timing
    rate_per_day: float
    rate_spread: float  # sigma of ln(rate) across accounts of this archetype
    active_day_prob: float
    profile: str  # a name in hour_profiles.toml
    tz_spread_h: float  # std of the account's time-zone offset (hours)
    session_len: float  # mean requests per session
    session_gap_s: float  # median gap within a session
    # content
    content: str  # one of CONTENT_KINDS
    payload_mix: dict[str, float]  # PAYLOAD_KINDS -> weight
    n_templates: int  # templates per account (app, batch) or per campaign (attackers)
    cot_rate: float  # share of prompts that ask for step-by-step reasoning
    languages: dict[str, float]  # language code -> weight
    multi_turn: bool
    conversation_ids: float  # share of multi-turn accounts whose client sends a conversation id
    system_prompt_rate: float
    phrasing: str  # stock | paraphrased (synthetic_logs/phrases)
    # tokens and parameters
    tokens: str  # calibration family: conv | code
    prompt_scale: float
    completion_scale: float
    max_tokens_null_rate: float
    max_tokens_choices: tuple[int, ...]
    temperature_null_rate: float
    temperature_choices: tuple[float, ...]
    temperature_sweep: bool  # draw temperature uniformly from [0, 1.5] per request
    n_gt1_rate: float
    logprobs_rate: float
    top_logprobs_choices: tuple[int, ...]
    logit_bias_rate: float
    logit_bias_max: int
    tools_rate: float
    tools_max: int
    tool_stop_share: float  # requests with tools that end in "stop" rather than "tool_calls"
    tool_steps: float  # agents: mean model calls per user turn (tool loops); 0: none
    stream_rate: float
    error_rate: float
    # infrastructure
    ip_kind: str  # residential | cloud | proxy | many
    n_ips: float  # mean distinct IPs per account
    n_keys: float
    ua_kind: str  # popular | sdk | browser
    ipv6_share: float  # residential IPs that are IPv6
    end_users: float  # resellers: mean end users behind the account's shared egress; 0: none
    # models and lifecycle
    new_model_share: float  # share of requests on the newest model once released
    pivot: bool  # moves most traffic to a new model within hours of release
    account_age_days: float  # median age at scenario start
    ramp_up: bool  # volume grows over the window
    mix_fraction: float  # resellers: share of traffic that is distillation
    endpoints: dict[str, float]  # endpoint -> weight

    def with_overrides(self, overrides: Mapping[str, Any]) -> Archetype:
        """This archetype with some fields replaced (a scenario group's ``overrides``), each
        value checked like one in the archetype files. Errors name ``overrides.<field>``."""
        return replace(self, **_checked_fields(overrides, HOUR_PROFILES, "overrides"))


# --------------------------------------------------------------------------- checking values

FIELD_TYPES: dict[str, Any] = typing.get_type_hints(Archetype)
SHARE_FIELDS = frozenset(
    {
        "active_day_prob",
        "cot_rate",
        "system_prompt_rate",
        "max_tokens_null_rate",
        "temperature_null_rate",
        "n_gt1_rate",
        "logprobs_rate",
        "logit_bias_rate",
        "tools_rate",
        "stream_rate",
        "error_rate",
        "new_model_share",
        "mix_fraction",
        "tool_stop_share",
        "ipv6_share",
        "conversation_ids",
    }
)
"""Fields that are shares of requests (or days): numbers in [0, 1]."""
POSITIVE_FIELDS = frozenset(
    {
        "rate_per_day",
        "session_len",
        "session_gap_s",
        "prompt_scale",
        "completion_scale",
        "n_templates",
        "logit_bias_max",
        "tools_max",
        "n_ips",
        "n_keys",
        "account_age_days",
    }
)
"""Fields that must be greater than 0 (every other number must not be negative)."""
ZERO_OR_AT_LEAST_ONE = frozenset({"tool_steps", "end_users"})
"""Means of counts that are either off (0) or at least 1."""
CHOICES: dict[str, Collection[str]] = {
    "content": CONTENT_KINDS,
    "tokens": TOKEN_FAMILIES,
    "ip_kind": IP_KINDS,
    "ua_kind": UA_KINDS,
    "phrasing": PHRASINGS,
}


def _checked_fields(
    raw: Mapping[str, Any], profiles: Collection[str], where: str, sep: str = "."
) -> dict[str, Any]:
    """``raw`` (field -> value, as read from TOML) checked and converted to the field types.
    Errors name ``where`` + ``sep`` + the field."""
    unknown = sorted(set(raw) - set(FIELD_TYPES))
    if unknown:
        raise ArchetypeError(where, f"unknown field(s) {unknown}; known: {sorted(FIELD_TYPES)}")
    out: dict[str, Any] = {}
    for name, value in raw.items():
        try:
            out[name] = _checked_value(name, value, profiles)
        except ValueError as exc:
            raise ArchetypeError(f"{where}{sep}{name}", str(exc)) from None
    return out


def _checked_value(name: str, value: Any, profiles: Collection[str]) -> Any:
    """One field's value converted to its type (an int where a float is expected becomes a
    float, a list a tuple); raises ``ValueError`` saying what is wrong."""
    kind = FIELD_TYPES[name]
    if kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        return value
    if kind is str:
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {value!r}")
        allowed = profiles if name == "profile" else CHOICES.get(name)
        if allowed is not None and value not in allowed:
            raise ValueError(f"{value!r} is not one of {sorted(allowed)}")
        return value
    if kind is int or kind is float:
        number = _number(value, integer=kind is int)
        if name in SHARE_FIELDS and number > 1:
            raise ValueError(f"expected a share in [0, 1], got {value!r}")
        if name in POSITIVE_FIELDS and number <= 0:
            raise ValueError(f"expected a number > 0, got {value!r}")
        if name in ZERO_OR_AT_LEAST_ONE and 0 < number < 1:
            raise ValueError(f"expected 0 (off) or a number >= 1, got {value!r}")
        return number
    if typing.get_origin(kind) is tuple:
        if not isinstance(value, list | tuple) or not value:
            raise ValueError(f"expected a non-empty list of numbers, got {value!r}")
        integer = typing.get_args(kind)[0] is int
        return tuple(_number(v, integer=integer) for v in value)
    if typing.get_origin(kind) is dict:
        if not isinstance(value, dict) or not value:
            raise ValueError(f"expected a table of weights such as {{ en = 1.0 }}, got {value!r}")
        if name == "payload_mix" and not set(value) <= set(PAYLOAD_KINDS):
            bad = sorted(set(value) - set(PAYLOAD_KINDS))
            raise ValueError(f"unknown payload kind(s) {bad}; known: {list(PAYLOAD_KINDS)}")
        weights = {str(k): _number(v, integer=False) for k, v in value.items()}
        if not sum(weights.values()) > 0:
            raise ValueError(f"weights must not all be 0, got {value!r}")
        return weights
    raise TypeError(f"archetype field {name}: no check for type {kind!r}")  # a new field type


def _number(value: Any, integer: bool) -> int | float:
    """A finite, non-negative number (an int if ``integer``, else a float)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected {'an integer' if integer else 'a number'}, got {value!r}")
    if integer and not isinstance(value, int):
        raise ValueError(f"expected an integer, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"expected a finite number >= 0, got {value!r}")
    return int(value) if integer else float(value)


# --------------------------------------------------------------------------- reading the files


def _read_toml(path: Path) -> dict[str, Any]:
    """A TOML file's tables; invalid TOML raises :class:`ArchetypeError` naming the file."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ArchetypeError(str(path), f"invalid TOML: {exc}") from exc


def load_hour_profiles(path: Path) -> dict[str, tuple[float, ...]]:
    """Hour-of-day profiles: name -> 24 relative weights (local hours 0 to 23)."""
    out: dict[str, tuple[float, ...]] = {}
    for name, weights in _read_toml(path).items():
        try:
            if not isinstance(weights, list) or len(weights) != 24:
                raise ValueError(f"expected a list of 24 weights, got {weights!r}")
            out[name] = tuple(_number(w, integer=False) for w in weights)
            if not sum(out[name]) > 0:
                raise ValueError("weights must not all be 0")
        except ValueError as exc:
            raise ArchetypeError(f"{path}: {name}", str(exc)) from None
    return out


def load_archetypes(
    directory: Path = ARCHETYPE_DIR, profiles: Collection[str] | None = None
) -> dict[str, Archetype]:
    """Every archetype in ``directory`` (laid out like this package), by name, in file order.
    ``profiles``: the hour-profile names a ``profile`` may take (default: those of
    ``hour_profiles.toml`` in ``directory``)."""
    if profiles is None:
        profiles = load_hour_profiles(directory / "hour_profiles.toml")
    defaults_path = directory / "defaults.toml"
    defaults = _checked_fields(_read_toml(defaults_path), profiles, str(defaults_path), ": ")
    missing = sorted(set(FIELD_TYPES) - set(defaults) - {"name"})
    if missing:
        raise ArchetypeError(str(defaults_path), f"missing field(s) {missing}")
    if "name" in defaults:
        raise ArchetypeError(f"{defaults_path}: name", "each archetype is named by its table")
    out: dict[str, Archetype] = {}
    for file_name in ARCHETYPE_FILES:
        path = directory / file_name
        for name, table in _read_toml(path).items():
            where = f"{path}: {name}"
            if not isinstance(table, dict):
                raise ArchetypeError(where, "expected a table ([name] followed by its fields)")
            if name in out:
                raise ArchetypeError(where, "defined twice")
            if "name" in table:
                raise ArchetypeError(f"{where}.name", "an archetype is named by its table")
            out[name] = Archetype(
                name=name, **{**defaults, **_checked_fields(table, profiles, where)}
            )
    return out


HOUR_PROFILES: dict[str, tuple[float, ...]] = load_hour_profiles(
    ARCHETYPE_DIR / "hour_profiles.toml"
)
ARCHETYPES: dict[str, Archetype] = load_archetypes(ARCHETYPE_DIR, HOUR_PROFILES)
