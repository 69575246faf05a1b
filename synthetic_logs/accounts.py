"""Accounts and their infrastructure: IP pools (residential, cloud, proxy ranges), user agents,
each request's API key, IP and user agent (:func:`draw_infrastructure`), a reseller's end users
(:func:`draw_end_users`), and the optional account table (age, payment fingerprint, e-mail
domain, country, tier).

A scenario with ``residential_ranges`` draws every residential IP from one set of shared /24
ranges (:func:`residential_ranges`), with uneven popularity (big ISPs), so that a residential
proxy's exit IPs sit in the same ranges as ordinary customers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import polars as pl

from detector.io.schema import TS_DTYPE
from synthetic_logs import text, vocab
from synthetic_logs.calibration import categorical
from synthetic_logs.columns import Coded, ids
from synthetic_logs.scenario import Group, Scenario

# User agents with their relative popularity among ordinary customers (browsers most common).
# Every one of these is used by legitimate customers too.
USER_AGENTS: tuple[tuple[str, int], ...] = (
    ("OpenAI/Python 1.54.3", 14),
    ("OpenAI/Python 1.40.0", 6),
    ("OpenAI/Python 1.12.0", 2),
    ("OpenAI/NodeJS/4.73.0", 9),
    ("OpenAI/NodeJS/4.28.0", 3),
    ("python-requests/2.32.3", 6),
    ("python-requests/2.31.0", 3),
    ("curl/8.5.0", 3),
    ("axios/1.7.7", 4),
    ("langchain-openai/0.2.9", 6),
    ("litellm/1.52.0", 4),
    ("llama-index/0.11.20", 2),
    ("Go-http-client/2.0", 2),
    ("okhttp/4.12.0", 2),
    ("aiohttp/3.10.10", 3),
    ("httpx/0.27.2", 3),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/130.0 Safari/537.36", 10),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 Safari/605.1.15", 8),
    ("OpenAI/Java 0.8.1", 1),
    ("anthropic-compat/0.3.1", 1),
    ("Dart/3.5 (dart:io)", 1),
    ("reqwest/0.12.8", 1),
)
EMAIL_DOMAINS = (
    "gmail.com",
    "outlook.com",
    "yahoo.com",
    "proton.me",
    "icloud.com",
    "qq.com",
    "163.com",
    "mail.ru",
    "gmx.de",
    "hotmail.com",
)
COUNTRIES = ("US", "GB", "DE", "FR", "IN", "BR", "JP", "CN", "SG", "CA", "ES", "RU", "KR", "NG")

# Cloud provider prefixes shared by many legitimate backends (and by attackers).
CLOUD_PREFIXES = tuple(
    f"{a}.{b}"
    for a, b in [
        (3, 8),
        (3, 90),
        (13, 52),
        (18, 204),
        (34, 102),
        (34, 141),
        (35, 186),
        (35, 230),
        (20, 42),
        (20, 118),
        (40, 76),
        (52, 14),
        (54, 210),
        (104, 196),
        (138, 68),
        (159, 65),
        (167, 99),
        (141, 95),
        (51, 158),
        (65, 108),
    ]
)


# First octets of the residential space (ISP customer ranges).
RESIDENTIAL_FIRST_OCTETS = (24, 31, 37, 46, 62, 73, 76, 81, 86, 89, 92, 98, 109, 112, 176, 185, 188)


@dataclass(frozen=True)
class SharedRanges:
    """Residential /24 ranges shared by every group of a scenario, with their popularity."""

    prefixes: pl.Series  # "a.b.c"
    cdf: np.ndarray  # cumulative popularity, last = 1

    def pick(self, rng: np.random.Generator, n: int) -> pl.Series:
        """``n`` prefixes drawn by popularity."""
        return self.prefixes.gather(np.searchsorted(self.cdf, rng.random(n), side="right"))


def residential_ranges(rng: np.random.Generator, n: int) -> SharedRanges:
    """``n`` distinct residential /24 ranges, popularity lognormal (sigma 0.8)."""
    seen: dict[str, None] = {}
    while len(seen) < n:
        k = n - len(seen)
        a = rng.choice(RESIDENTIAL_FIRST_OCTETS, k)
        b, c = rng.integers(0, 256, k), rng.integers(0, 256, k)
        seen.update(dict.fromkeys(f"{x}.{y}.{z}" for x, y, z in zip(a, b, c, strict=True)))
    weight = np.exp(rng.normal(0.0, 0.8, n))
    cdf = np.cumsum(weight) / weight.sum()
    cdf[-1] = 1.0
    return SharedRanges(pl.Series(list(seen), dtype=pl.String), cdf)


def ip_pool(
    rng: np.random.Generator,
    kind: str,
    n: int,
    ranges: list[str] | None,
    shared: SharedRanges | None = None,
    ipv6_share: float = 0.15,
) -> pl.Series:
    """``n`` IP strings of a kind: residential (v4, in ``shared`` ranges when given, or v6),
    cloud, proxy (from ``ranges``)."""
    host = _dec(rng.integers(1, 255, n))
    if kind == "cloud":
        pre = text.pick(rng, CLOUD_PREFIXES, n)
        return text.concat(pre, ".", _dec(rng.integers(0, 256, n)), ".", host)
    if kind == "proxy" and ranges:
        return text.concat(text.pick(rng, ranges, n), ".", host)
    # residential / many: public-looking space (the scenario's shared ranges, if any); some
    # IPv6 /64s
    if shared is not None:
        out = text.concat(shared.pick(rng, n), ".", host)
        v6 = rng.random(n) < ipv6_share
    else:
        a = rng.choice(RESIDENTIAL_FIRST_OCTETS, n)
        b, c = rng.integers(0, 256, n), rng.integers(0, 256, n)
        v6 = rng.random(n) < ipv6_share
        out = text.concat(_dec(a), ".", _dec(b), ".", _dec(c), ".", host)
    if v6.any():
        k = int(v6.sum())
        g = rng.integers(0, 65536, (k, 4))
        v6_ips = [f"2a02:{r[0]:x}:{r[1]:x}:{r[2]:x}::{r[3]:x}" for r in g]
        out = out.scatter(np.flatnonzero(v6), pl.Series(v6_ips, dtype=pl.String))
    return out


def _dec(values: np.ndarray) -> pl.Series:
    """Integers as decimal strings."""
    return pl.Series(values).cast(pl.String)


def user_agents(rng: np.random.Generator, kind: str, n: int) -> np.ndarray:
    """``n`` user agents of a kind: popular (ordinary customers' mix), sdk (no browsers) or
    browser (browsers six times as likely)."""
    uas = np.array([ua for ua, _ in USER_AGENTS], dtype=object)
    w = np.array([weight for _, weight in USER_AGENTS], dtype=float)
    is_browser = np.array([ua.startswith("Mozilla") for ua, _ in USER_AGENTS])
    if kind == "sdk":
        w = np.where(is_browser, 0.0, w)
    elif kind == "browser":
        w = np.where(is_browser, w * 6, w)
    return uas[categorical(rng, w, n)]


def campaign_email_domains(sc: Scenario, group: Group, rng: np.random.Generator) -> list[str]:
    """A campaign's throwaway e-mail domains, ``mailNNN.tld``: each campaign of the scenario
    draws NNN from its own block of 100-999, so two operators never share a domain by chance
    (an accidental shared domain would link unrelated campaigns into one)."""
    names = sorted({g.campaign for g in sc.groups if g.campaign})
    block = max(1, 900 // max(1, len(names)))  # (more than 900 campaigns: one number each)
    lo = 100 + names.index(str(group.campaign)) * block
    return [
        f"mail{rng.integers(lo, lo + block)}.{rng.choice(['xyz', 'top', 'cc'])}"
        for _ in range(max(1, group.email_domains))
    ]


@dataclass(frozen=True)
class Infrastructure:
    """Where each request comes from."""

    api_key: Coded
    ip: Coded
    user_agent: Coded


def draw_infrastructure(
    group: Group,
    ev_acct: np.ndarray,
    mixed: np.ndarray,
    rng: np.random.Generator,
    shared: SharedRanges | None = None,
) -> Infrastructure:
    """Each event's API key, IP and user agent, drawn in this order; ``ev_acct`` is the account
    of each event, ``mixed`` marks a reseller's distilling end customer's requests, ``shared``
    the scenario's shared residential ranges."""
    api_key = _api_keys(group, ev_acct, rng)
    ip = _ips(group, ev_acct, mixed, rng, shared)
    ua = _event_user_agents(group, ev_acct, rng)
    return Infrastructure(api_key=api_key, ip=ip, user_agent=ua)


def _api_keys(group: Group, ev_acct: np.ndarray, rng: np.random.Generator) -> Coded:
    """A few keys per account (1 + Poisson), each request on one of its account's keys."""
    n_acc, n_ev = group.accounts, len(ev_acct)
    n_keys_acc = 1 + rng.poisson(max(group.archetype.n_keys - 1, 0), n_acc)
    key_of_ev = (rng.random(n_ev) * n_keys_acc[ev_acct]).astype(int)
    key_seed = rng.integers(0, 2**40, n_acc)
    # each account's keys built once, then gathered per event
    key_start = np.concatenate([[0], np.cumsum(n_keys_acc)[:-1]])
    key_acct = np.repeat(np.arange(n_acc), n_keys_acc)
    key_num = key_seed[key_acct] * 64 + (np.arange(len(key_acct)) - key_start[key_acct])
    key_pool = text.concat("key_", pl.Series(key_num.astype(np.int64)).cast(pl.String))
    return Coded(key_start[ev_acct] + key_of_ev, key_pool)


def _ips(
    group: Group,
    ev_acct: np.ndarray,
    mixed: np.ndarray,
    rng: np.random.Generator,
    shared: SharedRanges | None,
) -> Coded:
    """Each account's own slice of IPs of the archetype's kind (a campaign's proxies from its
    few /24 ranges; a NAT's accounts all share the same few IPs), one per request. A reseller's
    distilling end customer sits behind its first IP, unless the reseller models its end users
    (they all share its egress IPs)."""
    arch = group.archetype
    n_acc, n_ev = group.accounts, len(ev_acct)
    ranges = None
    if group.campaign or group.shared_network:
        ranges = [
            f"{rng.integers(45, 220)}.{rng.integers(0, 256)}.{rng.integers(0, 256)}"
            for _ in range(max(1, group.ip_ranges))
        ]
    n_ips_acc = np.minimum(1 + rng.poisson(max(arch.n_ips - 1, 0), n_acc), 2000)
    if group.shared_network and ranges:
        ips = pl.Series([f"{r}.{rng.integers(1, 255)}" for r in ranges], dtype=pl.String)
        pool_sizes = np.full(n_acc, len(ips))
        pool_start = np.zeros(n_acc, dtype=np.int64)
    else:
        kind = "proxy" if arch.ip_kind == "proxy" and ranges else arch.ip_kind
        ips = ip_pool(rng, kind, int(n_ips_acc.sum()), ranges, shared, arch.ipv6_share)
        pool_sizes = n_ips_acc
        pool_start = np.concatenate([[0], np.cumsum(pool_sizes)[:-1]])
    ip_idx = pool_start[ev_acct] + (rng.random(n_ev) * pool_sizes[ev_acct]).astype(np.int64)
    if mixed.any() and not arch.end_users:  # the distiller sits behind the reseller's first IP
        ip_idx[mixed] = pool_start[ev_acct[mixed]]
    return Coded(ip_idx, ips)


def _event_user_agents(group: Group, ev_acct: np.ndarray, rng: np.random.Generator) -> Coded:
    """Two user agents per account (a campaign's members share two SDKs as their main one,
    unless the group says they draw their own), the main one on 85 % of its requests."""
    arch = group.archetype
    n_acc, n_ev = group.accounts, len(ev_acct)
    acct_ua = user_agents(rng, arch.ua_kind, n_acc)
    if group.campaign and group.campaign_user_agents:
        campaign_uas = user_agents(rng, "sdk", 2)
        acct_ua = campaign_uas[rng.integers(0, 2, n_acc)]
    ua_secondary = user_agents(rng, arch.ua_kind, n_acc)
    ua_pool = pl.Series(np.concatenate([acct_ua, ua_secondary]).astype(str), dtype=pl.String)
    return Coded(np.where(rng.random(n_ev) < 0.85, ev_acct, ev_acct + n_acc), ua_pool)


def draw_end_users(
    group: Group,
    ev_acct: np.ndarray,
    ev_sess: np.ndarray,
    ip: Coded,
    mixed: np.ndarray,
    rng: np.random.Generator,
) -> Coded:
    """Each request's end user (a reseller's customer, as an OpenAI ``user`` / LiteLLM
    ``end_user`` field carries it): codes into ``eu_`` ids, null for an account that is its own
    user. ``rng`` is the group's second stream (drawing here changes no other column).

    - ``end_users > 0``: each account has 1 + Poisson(end_users - 1) end users of lognormal
      activity (sigma 1.2); each session is one end user's; the distilling end customer's
      requests (``mixed``) carry one more id of the account;
    - a reseller with ``ip_kind = "many"`` (each end user on an IP of their own): the end user
      of the request's IP; the distilling end customer its own id;
    - otherwise null."""
    arch = group.archetype
    n_acc, n_ev = group.accounts, len(ev_acct)
    if arch.end_users > 0:
        n_users = 1 + rng.poisson(arch.end_users - 1.0, n_acc)
        weight = np.exp(rng.normal(0.0, 1.2, int(n_users.sum())))
        cum = np.cumsum(weight)
        last = np.cumsum(n_users) - 1
        lo = np.where(last - n_users >= 0, cum[np.maximum(last - n_users, 0)], 0.0)
        n_sess = int(ev_sess.max()) + 1 if n_ev else 0
        sess_acct = np.zeros(n_sess, dtype=np.int64)
        sess_acct[ev_sess] = ev_acct
        target = lo[sess_acct] + rng.random(n_sess) * (cum[last] - lo)[sess_acct]
        user = np.minimum(np.searchsorted(cum, target, side="right"), last[sess_acct])
        code = user[ev_sess]
        n_own = len(weight)
    elif arch.ip_kind == "many" and not group.shared_network:
        code = ip.codes.astype(np.int64)
        n_own = len(ip.pool)
    else:
        return Coded.const(None, n_ev)
    code = np.where(mixed, n_own + ev_acct, code) + 1  # one distiller id per account; 0 = null
    pool = pl.concat([pl.Series([None], dtype=pl.String), ids(rng, "eu_", n_own + n_acc)])
    return Coded(code, pool)


def account_table(
    sc: Scenario,
    group: Group,
    rng: np.random.Generator,
    acct_ids: pl.Series,
    online: np.ndarray | None = None,
) -> pl.DataFrame:
    """The optional account table: age (a campaign's accounts created in a burst; accounts
    that come ``online`` inside the window created up to an hour before), payment
    fingerprint, e-mail domain, country and tier."""
    arch = group.archetype
    n = len(acct_ids)
    age_days = arch.account_age_days * np.exp(rng.normal(0, 0.7, n))
    if group.campaign:  # accounts created in a burst, shortly before use
        base = arch.account_age_days * float(np.exp(rng.normal(0, 0.3)))
        age_days = base + rng.uniform(0, 3, n)
    created = pl.Series([sc.start - timedelta(days=float(d)) for d in age_days], dtype=TS_DTYPE)
    pay = rng.integers(0, 2**40, n)
    if group.campaign or group.shared_payment:
        pool = rng.integers(0, 2**40, max(1, group.payment_pool if group.campaign else 1))
        pay = pool[rng.integers(0, len(pool), n)]
    payment = text.concat("pm_", pl.Series(pay).cast(pl.String))
    domains = np.array(EMAIL_DOMAINS, dtype=object)[rng.integers(0, len(EMAIL_DOMAINS), n)]
    company = rng.random(n) < (0.9 if arch.rate_per_day > 100 and not arch.is_attack else 0.3)
    own = np.array(
        [
            f"{vocab.ORGS[i % len(vocab.ORGS)].lower().replace(' ', '')}{j}.com"
            for i, j in zip(rng.integers(0, 99, n), rng.integers(0, 9999, n), strict=True)
        ],
        dtype=object,
    )
    domains = np.where(company, own, domains)
    if group.campaign:
        pool_d = np.array(campaign_email_domains(sc, group, rng), dtype=object)
        domains = np.where(rng.random(n) < 0.8, pool_d[rng.integers(0, len(pool_d), n)], domains)
    if group.shared_payment:
        domains[:] = domains[0]
    country = np.array(COUNTRIES, dtype=object)[rng.integers(0, len(COUNTRIES), n)]
    tiers = ("free", "tier1", "tier2", "tier3", "tier4", "tier5", "enterprise")
    tw = np.array([0.3, 0.25, 0.15, 0.1, 0.08, 0.07, 0.05])
    if arch.rate_per_day > 500:
        tw = np.array([0.0, 0.05, 0.1, 0.2, 0.25, 0.25, 0.15])
    tier = np.array(tiers, dtype=object)[categorical(rng, tw, n)]
    if online is not None:
        age_days = (rng.uniform(0.0, 3600.0, n) - online) / 86_400.0
        created = pl.Series([sc.start - timedelta(days=float(d)) for d in age_days], dtype=TS_DTYPE)
    return pl.DataFrame(
        {
            "account_id": acct_ids,
            "created_at": created,
            "payment_fingerprint": payment,
            "email_domain": pl.Series(domains.astype(str)),
            "country": pl.Series(country.astype(str)),
            "tier": pl.Series(tier.astype(str)),
        }
    )
