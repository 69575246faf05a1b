"""The timing stage of a group: when each account sends its requests.

Per account a rate (requests per active day) and a clock (time-zone offset); per account-day
whether the account is active; per active day a Poisson number of sessions, placed by the
archetype's hour-of-day profile in the account's local time (a campaign's members on a shared
schedule); per session a few requests separated by lognormal gaps. Events come out in time order.

Groups that come online in bursts (``Group.bursts``) start within the window, each account with
a first session minutes after it comes online. A load-balanced campaign (``Group.load_balanced``)
draws its sessions as one stream on the campaign's clock and hands them to its members in turns.
An agent's tool loops (``Archetype.tool_steps``) mark which requests are a user's turn (the
others carry a tool's result, seconds after the call before them): :class:`Turns`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from synthetic_logs import calibration
from synthetic_logs.archetypes import HOUR_PROFILES
from synthetic_logs.columns import lognormal
from synthetic_logs.scenario import Group, Scenario

DAY_S = 86_400.0


@dataclass(frozen=True)
class Timeline:
    """A group's events in time order, and what later stages need to know about them."""

    t: np.ndarray  # seconds since the scenario's start, ascending
    ev_acct: np.ndarray  # the account of each event (an index among the group's accounts)
    ev_sess: np.ndarray  # the session of each event (an index among the group's sessions)
    pos: np.ndarray  # the event's position in its session (0: the first request)
    n_sessions: int
    # The session of each event in the order the events were made (by session, then position);
    # ``by_time`` takes that order to time order. Growing contexts are sorted within sessions.
    session_major: np.ndarray
    by_time: np.ndarray
    pivot_delay: np.ndarray  # per account: seconds after a new model's release it may move
    online: np.ndarray | None = None  # per account: when it came online (bursts), seconds
    turns: Turns | None = None  # tool loops: which requests are a user's turn

    @property
    def n_events(self) -> int:
        """Events in the group."""
        return len(self.t)


@dataclass(frozen=True)
class Turns:
    """An agent's conversations as tool loops, per event in time order: the user's turn it
    belongs to (an index among the group's user turns, which are numbered by session, then
    position) and whether it ends that turn (the next request of its session, if any, is the
    user's next turn); per user turn its rank in its conversation (0: the first)."""

    turn: np.ndarray
    last_of_turn: np.ndarray  # bool
    rank: np.ndarray  # per user turn
    is_user: np.ndarray  # bool, per event: the request starts a user turn

    @property
    def n_turns(self) -> int:
        """User turns in the group."""
        return len(self.rank)


USER_TURN_GAP = 8.0
"""A user's next turn comes this many times later than a tool's result would (reading, typing)."""
WARM_UP_S = 900.0
"""An account that comes online sends its first request within this many seconds."""


@dataclass(frozen=True)
class Sessions:
    """The group's sessions, in the order they were drawn (by account, then day)."""

    acct: np.ndarray  # the account of each session
    start: np.ndarray  # seconds since the scenario's start
    size: np.ndarray  # requests in each session (before the window's end cuts any)


def release_seconds(sc: Scenario) -> float | None:
    """When the scenario's new model is released (seconds after its start), if it has one."""
    return sc.new_release_day * DAY_S if sc.new_model else None


def draw_timeline(sc: Scenario, group: Group, rng: np.random.Generator) -> Timeline:
    """The group's request times. The steps draw from ``rng`` in this order: account clocks,
    active days, sessions, requests within sessions."""
    n_days = max(1, int(np.ceil(sc.days)))
    rate, tz = _account_clocks(group, rng)
    active, day_weight, start_s, pivot_delay = _active_days(group, n_days, release_seconds(sc), rng)
    online = _bursts(sc, group, tz, rng) if group.bursts else None
    if online is not None:
        start_s = np.maximum(start_s, online)
    if group.load_balanced:
        sessions = _dispatched_sessions(sc, group, online, tz, rng)
    else:
        sessions = _sessions(group, rate[:, None] * day_weight * active, tz, rng)
    if online is not None:
        sessions = _with_first_sessions(group, sessions, online, rng)
    tl = _requests(group, sessions, start_s, pivot_delay, sc.days * DAY_S, rng)
    return tl if online is None else replace(tl, online=online)


def _account_clocks(group: Group, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Each account's rate (requests per active day, lognormal around the archetype's median)
    and time-zone offset in whole hours (a campaign's members share their operator's)."""
    arch = group.archetype
    n_acc = group.accounts
    rate = arch.rate_per_day * np.exp(rng.normal(0.0, arch.rate_spread, n_acc))
    tz = np.round(rng.normal(0.0, arch.tz_spread_h, n_acc)) if arch.tz_spread_h else np.zeros(n_acc)
    if group.campaign:  # one operator: one clock for all members
        tz[:] = tz[0]
    return rate, tz


def _active_days(
    group: Group, n_days: int, release_s: float | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Which account-days are active (every account at least one), each day's weight (a
    ramp-up grows from 0.3 to 1.7), when each account starts (attackers chasing a new model
    mostly arrive once it is out) and each account's pivot delay after a release (seconds)."""
    arch = group.archetype
    n_acc = group.accounts
    active = rng.random((n_acc, n_days)) < arch.active_day_prob
    active[np.arange(n_acc), rng.integers(0, n_days, n_acc)] = True
    start_s = np.zeros(n_acc)
    pivot_delay = rng.uniform(1.0, 20.0, n_acc) * 3600.0
    if arch.pivot and release_s is not None and arch.is_attack:
        start_s = np.where(rng.random(n_acc) < 0.6, release_s + pivot_delay * 0.5, 0.0)
    day_weight = np.ones((n_acc, n_days))
    if arch.ramp_up and n_days > 1:
        day_weight = np.linspace(0.3, 1.7, n_days)[None, :].repeat(n_acc, 0)
    return active, day_weight, start_s, pivot_delay


def _bursts(sc: Scenario, group: Group, tz: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """When each account comes online (seconds after the window's start): ``group.bursts``
    bursts of ``group.burst_hours`` each, starting in working hours (8-16 h on the first
    account's clock) on days drawn from the first 80 % of the window; each account joins one
    burst at a uniform time inside it."""
    horizon = sc.days * DAY_S
    length = group.burst_hours * 3600.0
    last_day = max(1, int(sc.days * 0.8))
    day = rng.integers(0, last_day, group.bursts)
    local = rng.uniform(8.0, 16.0, group.bursts)
    start = day * DAY_S + ((local - tz[0]) % 24) * 3600.0
    start = np.clip(start, 0.0, max(horizon - length - WARM_UP_S, 0.0))
    which = rng.integers(0, group.bursts, group.accounts)
    return start[which] + rng.uniform(0.0, length, group.accounts)


def _with_first_sessions(
    group: Group, sessions: Sessions, online: np.ndarray, rng: np.random.Generator
) -> Sessions:
    """``sessions`` and, per account, a first session within :data:`WARM_UP_S` of coming
    online (a new account is tried at once)."""
    n_acc = group.accounts
    start = online + rng.uniform(0.0, WARM_UP_S, n_acc)
    size = 1 + rng.poisson(max(group.archetype.session_len - 1.0, 0.0), n_acc)
    return Sessions(
        acct=np.concatenate([sessions.acct, np.arange(n_acc)]),
        start=np.concatenate([sessions.start, start]),
        size=np.concatenate([sessions.size, size]),
    )


def _dispatched_sessions(
    sc: Scenario,
    group: Group,
    online: np.ndarray | None,
    tz: np.ndarray,
    rng: np.random.Generator,
) -> Sessions:
    """A load-balanced campaign's sessions: one stream of sessions per hour, Poisson around the
    members online times the per-member rate times the profile's weight of the hour on the
    campaign's clock; handed to the members in turns (each turn a random order of every member
    online when it starts, so every member gets one session per turn and no two get the same
    one). Members thus share the campaign's daily shape and have nearly equal volumes."""
    arch = group.archetype
    n_acc = group.accounts
    horizon = sc.days * DAY_S
    on = np.zeros(n_acc) if online is None else online
    order = np.argsort(on, kind="stable")
    on_sorted = on[order]
    n_hours = int(np.ceil(horizon / 3600.0))
    hour_start = np.arange(n_hours) * 3600.0
    profile = np.asarray(HOUR_PROFILES[arch.profile], dtype=float)
    weight = profile[(np.arange(n_hours) + int(tz[0])) % 24] / profile.mean()
    members = np.searchsorted(on_sorted, hour_start + 1800.0, side="right")
    per_hour = arch.rate_per_day / max(arch.session_len, 1.0) / 24.0
    counts = rng.poisson(members * per_hour * weight)
    start = np.repeat(hour_start, counts) + rng.uniform(0.0, 3600.0, int(counts.sum()))
    start.sort()
    acct = np.full(len(start), -1, dtype=np.int64)
    j = int(np.searchsorted(start, on_sorted[0], side="right")) if n_acc else len(start)
    while j < len(start):  # one iteration per turn: about one per member session
        k = int(np.searchsorted(on_sorted, start[j], side="right"))
        take = min(k, len(start) - j)
        acct[j : j + take] = order[rng.permutation(k)[:take]]
        j += take
    keep = acct >= 0
    size = 1 + rng.poisson(max(arch.session_len - 1.0, 0.0), int(keep.sum()))
    return Sessions(acct=acct[keep], start=start[keep], size=size)


def _sessions(
    group: Group, day_rate: np.ndarray, tz: np.ndarray, rng: np.random.Generator
) -> Sessions:
    """Sessions of each account-day (``day_rate``: expected requests, 0 when inactive): how
    many, when each starts (an hour from the profile in local time, a campaign's members from
    one shared schedule when in lockstep) and how many requests each holds."""
    arch = group.archetype
    n_acc, n_days = day_rate.shape
    n_sess = rng.poisson(day_rate / max(arch.session_len, 1.0))
    flat_counts = n_sess.ravel()
    sess_acct = np.repeat(np.repeat(np.arange(n_acc), n_days), flat_counts)
    sess_day = np.repeat(np.tile(np.arange(n_days), n_acc), flat_counts)
    n_s = len(sess_acct)
    profile = np.asarray(HOUR_PROFILES[arch.profile], dtype=float)
    if group.campaign and arch.profile == "flat":
        # campaigns run on their own schedule: a random but shared hourly shape
        profile = profile * rng.uniform(0.5, 1.5, 24)
    local_hour = calibration.categorical(rng, profile, n_s)
    utc_hour = (local_hour - tz[sess_acct]) % 24
    start = sess_day * DAY_S + utc_hour * 3600.0 + rng.uniform(0, 3600.0, n_s)
    if group.campaign and group.lockstep and n_s > 0:
        # members pick start times from the campaign's shared schedule (+ small jitter)
        pool = start[rng.integers(0, n_s, max(1, n_s // 8))]
        start = pool[rng.integers(0, len(pool), n_s)] + rng.uniform(0, 90.0, n_s)
    size = 1 + rng.poisson(max(arch.session_len - 1.0, 0.0), n_s)
    return Sessions(sess_acct, start, size)


def _requests(
    group: Group,
    sessions: Sessions,
    start_s: np.ndarray,
    pivot_delay: np.ndarray,
    horizon: float,
    rng: np.random.Generator,
) -> Timeline:
    """Requests within sessions (lognormal gaps around the archetype's median), without those
    past the window's end or before their account starts, in time order."""
    arch = group.archetype
    size = sessions.size
    n_s = len(size)
    n_ev = int(size.sum())
    ev_sess = np.repeat(np.arange(n_s), size)
    first_of_sess = np.concatenate([[0], np.cumsum(size)[:-1]]) if n_s else np.zeros(0, int)
    pos = np.arange(n_ev) - np.repeat(first_of_sess, size)
    gaps = lognormal(rng, np.log(arch.session_gap_s), 0.8, n_ev)
    gaps[pos == 0] = 0.0
    is_user: np.ndarray | None = None
    if arch.tool_steps > 0:  # a user's turn starts a tool loop of tool_steps calls on average
        is_user = (pos == 0) | (rng.random(n_ev) < 1.0 / arch.tool_steps)
        gaps[is_user] *= USER_TURN_GAP
    csum = np.cumsum(gaps)
    offset = csum - np.repeat(csum[first_of_sess] if n_s else csum[:0], size)
    t = sessions.start[ev_sess] + offset
    ev_acct = sessions.acct[ev_sess]
    keep = (t < horizon) & (t >= start_s[ev_acct])
    t, ev_acct, ev_sess, pos = t[keep], ev_acct[keep], ev_sess[keep], pos[keep]
    # Events in time order from here on: merging the groups' sorted runs into one sorted frame
    # is much cheaper than sorting shuffled rows.
    by_time = np.argsort(t)  # float times: ties (which would need a stable sort) do not occur
    turns = None if is_user is None else _turns(is_user[keep], ev_sess, by_time)
    return Timeline(
        t=t[by_time],
        ev_acct=ev_acct[by_time],
        ev_sess=ev_sess[by_time],
        pos=pos[by_time],
        n_sessions=n_s,
        session_major=ev_sess,
        by_time=by_time,
        pivot_delay=pivot_delay,
        turns=turns,
    )


def _turns(is_user: np.ndarray, ev_sess: np.ndarray, by_time: np.ndarray) -> Turns:
    """Tool-loop turns from the events in session-major order (``is_user``: starts a user
    turn, ``ev_sess``: session), returned in time order (``by_time``). The first request kept
    of a session (the window may cut the ones before) starts a user turn."""
    n = len(ev_sess)
    same_as_prev = np.zeros(n, dtype=bool)
    same_as_prev[1:] = ev_sess[1:] == ev_sess[:-1]
    is_user = is_user | ~same_as_prev
    turn = np.cumsum(is_user) - 1
    next_same = np.append(same_as_prev[1:], False)
    next_user = np.append(is_user[1:], True)
    last = ~next_same | next_user
    turn_sess = ev_sess[is_user]
    first = np.ones(len(turn_sess), dtype=bool)
    first[1:] = turn_sess[1:] != turn_sess[:-1]
    idx = np.arange(len(turn_sess))
    rank = idx - np.maximum.accumulate(np.where(first, idx, 0))
    return Turns(
        turn=turn[by_time], last_of_turn=last[by_time], rank=rank, is_user=is_user[by_time]
    )
