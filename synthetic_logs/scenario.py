"""Scenarios: TOML files that say which accounts exist, for how long, and which campaigns run.

A scenario file::

    name = "demo"
    start = 2026-11-01T00:00:00Z
    days = 1

    [models]
    base = ["atlas-4o", "atlas-4o-mini"]
    new = "atlas-5"            # released during the window
    new_release_day = 0.25     # days after start

    [[group]]
    archetype = "casual_chat"
    accounts = 900

    [[group]]
    archetype = "hydra"
    accounts = 60
    campaign = "amber"          # one operator: shared templates, IP ranges, payment, timing
    languages = { zh = 1.0 }
    ip_ranges = 3               # /24 ranges in the campaign's proxy pool
    payment_pool = 4            # distinct payment fingerprints across the members
    overrides = { cot_rate = 0.9 }   # any archetype field (synthetic_logs/archetypes/defaults.toml)

Scenario-level keys beyond these: ``account_table = false`` (the logs come without an account
table: ``generate`` returns no accounts and writes no ``accounts.parquet``; labels still) and
``residential_ranges = N`` (every residential IP of every group, normal or not, lies in one of
N shared /24 ranges, as customers of a few big ISPs do; scaled with the scenario; 0, the default:
each in a random range of its own).

Group keys beyond these, for campaigns that hide: ``campaign_user_agents = false`` (members draw
their user agents like everyone, instead of sharing their operator's SDKs), ``bursts = K`` and
``burst_hours = H`` (members come online in K bursts of H hours inside the window, their first
request within minutes: the first-seen bursts left in logs without an account table; also for a
cohort of normal accounts that start together) and ``load_balanced = true`` (one dispatcher
hands the campaign's sessions out to its members in turns: even volumes, every session to one
member, the campaign's clock on every member; ``lockstep`` does not apply).

Built-ins live in ``synthetic_logs/scenarios``; ``load_scenario`` takes a built-in name or a path.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from synthetic_logs.archetypes import ARCHETYPES, Archetype, ArchetypeError

BUILTIN_DIR = Path(__file__).parent / "scenarios"


TOP_KEYS = frozenset(
    {
        "name",
        "description",
        "start",
        "days",
        "models",
        "group",
        "account_table",
        "residential_ranges",
    }
)
"""The keys a scenario file may hold outside its ``[[group]]`` tables."""


class ScenarioError(ValueError):
    """A scenario file is invalid; the message names the file and the key at fault."""


@dataclass(frozen=True)
class Group:
    """A scenario's ``[[group]]``: accounts of one archetype (overrides applied) and how they
    are linked (a campaign, a shared NAT, payment method or system prompt)."""

    archetype: Archetype
    accounts: int
    campaign: str | None = None
    languages: dict[str, float] | None = None
    ip_ranges: int = 3
    payment_pool: int = 3
    email_domains: int = 2
    lockstep: bool = True  # campaign members share session start times (synchronised)
    shared_system_prompt: bool = False  # e.g. users of one open-source app
    shared_network: bool = False  # e.g. a company's accounts behind one NAT
    shared_payment: bool = False  # e.g. a company paying for all its accounts
    campaign_user_agents: bool = True  # members share their operator's two SDK user agents
    bursts: int = 0  # accounts come online in this many bursts inside the window (0: at start)
    burst_hours: float = 3.0  # length of each burst
    load_balanced: bool = False  # a dispatcher hands the campaign's sessions out in turn


@dataclass(frozen=True)
class Scenario:
    """A scenario file: its window, models and groups of accounts."""

    name: str
    start: datetime
    days: float
    groups: tuple[Group, ...]
    base_models: tuple[str, ...] = ("atlas-4o", "atlas-4o-mini")
    new_model: str | None = "atlas-5"
    new_release_day: float = 0.25
    description: str = ""
    account_table: bool = True  # False: logs without an account table (accounts=None)
    residential_ranges: int = 0  # shared residential /24 ranges (0: none shared)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_accounts(self) -> int:
        """Accounts over all groups."""
        return sum(g.accounts for g in self.groups)


def builtin_names() -> list[str]:
    """Names of the built-in scenarios."""
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.toml"))


def load_scenario(name_or_path: str | Path, scale: float = 1.0) -> Scenario:
    """A built-in scenario by name, or a scenario TOML file by path. ``scale`` multiplies
    every group's account count (for quick tests)."""
    path = Path(name_or_path)
    if not path.exists():
        builtin = BUILTIN_DIR / f"{name_or_path}.toml"
        if not builtin.exists():
            raise ScenarioError(
                f"{name_or_path}: no such scenario file, and not a built-in "
                f"(built-ins: {', '.join(builtin_names())})"
            )
        path = builtin
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: invalid TOML: {exc}") from exc
    return parse_scenario(data, source=str(path), scale=scale)


def parse_scenario(
    data: dict[str, Any], source: str = "<scenario>", scale: float = 1.0
) -> Scenario:
    """A scenario from its TOML ``data``; errors name ``source`` and the key at fault."""

    def fail(key: str, msg: str) -> ScenarioError:
        return ScenarioError(f"{source}: {key}: {msg}")

    unknown_top = sorted(set(data) - TOP_KEYS)
    if unknown_top:
        raise fail(", ".join(unknown_top), f"unknown key(s); allowed: {sorted(TOP_KEYS)}")
    start = data.get("start", datetime(2026, 11, 1, tzinfo=UTC))
    if isinstance(start, str):
        start = datetime.fromisoformat(start.replace("Z", "+00:00"))
    if not isinstance(start, datetime):
        raise fail("start", "expected a date-time such as 2026-11-01T00:00:00Z")
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    days = data.get("days", 1)
    if not isinstance(days, int | float) or days <= 0:
        raise fail("days", f"expected a positive number, got {days!r}")
    models = data.get("models", {})
    groups = []
    raw_groups = data.get("group", [])
    if not raw_groups:
        raise fail("group", "a scenario needs at least one [[group]]")
    allowed = {
        "archetype",
        "accounts",
        "campaign",
        "languages",
        "ip_ranges",
        "payment_pool",
        "email_domains",
        "lockstep",
        "shared_system_prompt",
        "shared_network",
        "shared_payment",
        "campaign_user_agents",
        "bursts",
        "burst_hours",
        "load_balanced",
        "overrides",
    }
    for i, g in enumerate(raw_groups):
        key = f"group[{i}]"
        unknown = sorted(set(g) - allowed)
        if unknown:
            raise fail(key, f"unknown key(s) {unknown}; allowed: {sorted(allowed)}")
        name = g.get("archetype")
        if name not in ARCHETYPES:
            raise fail(f"{key}.archetype", f"{name!r} is not one of {sorted(ARCHETYPES)}")
        overrides = g.get("overrides", {})
        if not isinstance(overrides, dict):
            raise fail(
                f"{key}.overrides", f"expected a table of archetype fields, got {overrides!r}"
            )
        try:
            arch = ARCHETYPES[name].with_overrides(overrides)
        except ArchetypeError as exc:  # exc.where: overrides[.field]
            raise fail(f"{key}.{exc.where}", exc.reason) from exc
        accounts = g.get("accounts")
        if not isinstance(accounts, int) or accounts < 1:
            raise fail(f"{key}.accounts", f"expected a positive integer, got {accounts!r}")
        for flag in ("campaign_user_agents", "load_balanced"):
            if not isinstance(g.get(flag, False), bool):
                raise fail(f"{key}.{flag}", f"expected true or false, got {g[flag]!r}")
        bursts = g.get("bursts", 0)
        if isinstance(bursts, bool) or not isinstance(bursts, int) or bursts < 0:
            raise fail(f"{key}.bursts", f"expected an integer >= 0, got {bursts!r}")
        burst_hours = g.get("burst_hours", 3.0)
        if isinstance(burst_hours, bool) or not isinstance(burst_hours, int | float):
            raise fail(f"{key}.burst_hours", f"expected a number of hours, got {burst_hours!r}")
        if not 0 < burst_hours <= 24 * float(days):
            raise fail(f"{key}.burst_hours", f"expected 0 < hours <= the window, got {burst_hours}")
        if g.get("load_balanced", False) and not g.get("campaign"):
            raise fail(f"{key}.load_balanced", "only a campaign has a dispatcher: set campaign")
        groups.append(
            Group(
                archetype=arch,
                accounts=max(1, round(accounts * scale)),
                campaign=g.get("campaign"),
                languages=g.get("languages"),
                ip_ranges=int(g.get("ip_ranges", 3)),
                payment_pool=int(g.get("payment_pool", 3)),
                email_domains=int(g.get("email_domains", 2)),
                lockstep=bool(g.get("lockstep", True)),
                shared_system_prompt=bool(g.get("shared_system_prompt", False)),
                shared_network=bool(g.get("shared_network", False)),
                shared_payment=bool(g.get("shared_payment", False)),
                campaign_user_agents=bool(g.get("campaign_user_agents", True)),
                bursts=bursts,
                burst_hours=float(burst_hours),
                load_balanced=bool(g.get("load_balanced", False)),
            )
        )
    account_table = data.get("account_table", True)
    if not isinstance(account_table, bool):
        raise fail("account_table", f"expected true or false, got {account_table!r}")
    ranges = data.get("residential_ranges", 0)
    if isinstance(ranges, bool) or not isinstance(ranges, int) or ranges < 0:
        raise fail("residential_ranges", f"expected an integer >= 0, got {ranges!r}")
    return Scenario(
        name=str(data.get("name", Path(source).stem)),
        start=start.astimezone(UTC),
        days=float(days),
        groups=tuple(groups),
        base_models=tuple(models.get("base", ("atlas-4o", "atlas-4o-mini"))),
        new_model=models.get("new", "atlas-5"),
        new_release_day=float(models.get("new_release_day", 0.25)),
        description=str(data.get("description", "")),
        account_table=account_table,
        residential_ranges=max(16, round(ranges * scale)) if ranges else 0,
    )
