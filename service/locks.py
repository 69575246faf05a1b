"""The five locks of the scoring state, and the one order in which they are taken.

One :class:`StateLocks` is shared by the parts of :class:`service.state.ScoringState`: the
window store (:mod:`service.window_store`), the pass coordinator (:mod:`service.passes`) and
durability (:mod:`service.durability`). Every method of theirs is thread-safe through it.

**Order.** A thread holding one of these locks only ever takes locks further down this list
(never one above), so no two threads can wait on each other:

1. ``snapshot`` — one snapshot at a time.
2. ``maint`` — one rescoring pass or snapshot at a time (a snapshot never falls between a
   pass's eviction and its swap of the compacted window).
3. ``fp`` — one fingerprinting of the queue at a time; held while taking the queue *and*
   adding its compact events to the window, so "every event acknowledged before X is in the
   window or being fingerprinted by me" holds for whoever holds it.
4. ``wal`` — log order: one ingest from its duplicate check to its apply (the only writer of
   the seen ids' additions and of the window end); also restore, and a snapshot's log rotation.
5. ``fields`` — the in-memory fields of the store and the coordinator. Held briefly, never
   for I/O or polars work on the window. Reentrant (restore holds it while fingerprinting).

Methods documented "(``fields`` held)" expect their caller to hold ``fields``; a method that
runs without a lock held names the ones it takes.
"""

from __future__ import annotations

import threading


class StateLocks:
    """The locks of one scoring state (see the module docstring for their order)."""

    __slots__ = ("fields", "fp", "maint", "snapshot", "wal")

    def __init__(self) -> None:
        self.snapshot = threading.Lock()
        self.maint = threading.Lock()
        self.fp = threading.Lock()
        self.wal = threading.Lock()
        self.fields = threading.RLock()
