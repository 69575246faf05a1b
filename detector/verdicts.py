"""What the analyst decided about an account, kept, and what it does to scores.

A **verdict** is one of:

- ``abuse`` — confirmed distillation / extraction: a positive label for ``distillguard train``;
- ``benign`` — a false positive: a negative label (it may still be flagged again later);
- ``allow`` — allow-listed: the account is never flagged. Its score is still computed and
  shown, without any campaign's lift, and its first reason says so ("allow-listed on
  2026-03-02 by alice: research partner").

**The store** (:class:`VerdictStore`) is an append-only NDJSON file, one verdict per line,
each line written with one ``write`` and ``fsync``'d before :meth:`VerdictStore.record`
returns; the latest verdict of an account (the last line naming it) wins, and the history
stays. The command line keeps it beside the model (``verdicts.jsonl``), the service in its
state directory; both are the same format, so either file can be given to ``--verdicts``.
A last line cut short by a crash is skipped when reading and cut off before the next append.

**Effects** are applied by :func:`apply_verdicts`, called once from
:func:`detector.pipeline.score`, so the audit, the live service and the tests all get them.

>>> import polars as pl
>>> v = make_verdict("acct-1", "allow", by="alice", note="research partner",
...                  at=datetime(2026, 3, 2, tzinfo=UTC))
>>> scores = pl.DataFrame({"account_id": ["acct-1", "acct-2"], "score": [99.95, 99.2],
...     "raw_score": [9.0, 5.0], "flagged": [True, True], "reasons": [["r1"], ["r2"]],
...     "campaign_id": ["C-1", None]})
>>> out = apply_verdicts(scores, scores, verdict_frame([v]))
>>> out["flagged"].to_list()
[False, True]
>>> out["reasons"][0].to_list()
['allow-listed on 2026-03-02 by alice: research partner', 'r1']
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from detector.io.schema import check_string

log = logging.getLogger("distillguard.verdicts")

VERDICTS = ("abuse", "benign", "allow")
DEFAULT_NAME = "verdicts.jsonl"
MAX_NOTE_CHARS = 2000
MAX_BY_CHARS = 256
# a supervised model needs positives to learn from: HistGradientBoosting's leaves hold at least
# 20 samples, so fewer abuse verdicts than this cannot form a leaf of their own
MIN_ABUSE_FOR_SUPERVISED = 20

VERDICT_SCHEMA: dict[str, pl.DataType] = {
    "account_id": pl.String(),
    "verdict": pl.String(),
    "at": pl.Datetime("us", "UTC"),
    "by": pl.String(),
    "note": pl.String(),
}


class VerdictError(ValueError):
    """A verdict, or a line of a verdict store, is not valid (the message says where)."""


@dataclass(frozen=True)
class Verdict:
    account_id: str
    verdict: str  # abuse | benign | allow
    at: datetime  # when it was recorded (UTC)
    by: str
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "verdict": self.verdict,
            "at": self.at.isoformat(timespec="seconds"),
            "by": self.by,
            "note": self.note,
        }

    def reason(self) -> str:
        """``"allow-listed on 2026-03-02 by alice: note"`` (``"abuse"`` / ``"benign"``: "verdict
        abuse on ...")."""
        what = "allow-listed" if self.verdict == "allow" else f"verdict {self.verdict}"
        text = f"{what} on {self.at.date().isoformat()} by {self.by}"
        return f"{text}: {self.note}" if self.note else text


def _text(value: Any, name: str, limit: int) -> str:
    if not isinstance(value, str):
        raise VerdictError(f"{name}: expected a string, got {type(value).__name__}")
    if len(value) > limit:
        raise VerdictError(f"{name}: longer than {limit} characters ({len(value)})")
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in value):
        raise VerdictError(f"{name}: contains a control character")
    return value


def make_verdict(
    account_id: str, verdict: str, *, by: str, note: str = "", at: datetime | None = None
) -> Verdict:
    """A checked :class:`Verdict` (``at`` defaults to now): the account id follows the rules of
    event identifiers; ``by`` is 1 to 256 characters and ``note`` at most 2,000, neither with
    control characters. Raises :class:`VerdictError`."""
    if not isinstance(account_id, str):
        raise VerdictError(f"account_id: expected a string, got {type(account_id).__name__}")
    bad = check_string("account_id", account_id)
    if bad:
        raise VerdictError(f"account_id: {bad}")
    if verdict not in VERDICTS:
        raise VerdictError(f"verdict: {verdict!r} is not one of {', '.join(VERDICTS)}")
    by = _text(by, "by", MAX_BY_CHARS).strip()
    if not by:
        raise VerdictError("by: must not be empty")
    note = _text(note, "note", MAX_NOTE_CHARS).strip()
    when = (at if at is not None else datetime.now(UTC)).replace(microsecond=0)
    if when.tzinfo is None:
        raise VerdictError("at: a time with a time zone is needed")
    return Verdict(account_id, verdict, when.astimezone(UTC), by, note)


def _from_json(obj: Any) -> Verdict:
    if not isinstance(obj, dict):
        raise VerdictError(f"expected a JSON object, got {type(obj).__name__}")
    try:
        at = datetime.fromisoformat(str(obj.get("at", "")))
    except ValueError:
        raise VerdictError(f"at: cannot parse {obj.get('at')!r} as a time") from None
    return make_verdict(
        obj.get("account_id"),  # type: ignore[arg-type]
        obj.get("verdict", ""),
        by=obj.get("by", ""),
        note=obj.get("note", ""),
        at=at,
    )


class VerdictStore:
    """An append-only, fsync'd NDJSON file of verdicts (see the module docstring), read whole
    when opened; ``path=None`` keeps them in memory only. Thread-safe."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self._history: list[Verdict] = []
        self._latest: dict[str, Verdict] = {}
        self._frame: pl.DataFrame | None = None  # of _latest, built on demand
        if self.path is not None and self.path.exists():
            for v in self._read(self.path):
                self._add(v)

    @staticmethod
    def _read(path: Path) -> list[Verdict]:
        data = path.read_bytes()
        lines = data.split(b"\n")
        out: list[Verdict] = []
        for i, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                out.append(_from_json(json.loads(raw)))
            except (ValueError, UnicodeDecodeError) as exc:  # VerdictError, JSONDecodeError
                if i == len(lines):  # no newline after it: an append cut short by a crash
                    log.warning("%s:%d: incomplete last line skipped (%s)", path, i, exc)
                    continue
                raise VerdictError(f"{path}:{i}: {exc}") from None
        return out

    def _add(self, v: Verdict) -> None:
        self._history.append(v)
        self._latest[v.account_id] = v
        self._frame = None

    def record(self, v: Verdict) -> Verdict:
        """Append ``v`` durably (written and fsync'd before returning) and make it the
        account's current verdict. Raises OSError when the file cannot be written."""
        with self._lock:
            if self.path is not None:
                self._append(self.path, (json.dumps(v.to_json()) + "\n").encode())
            self._add(v)
        return v

    @staticmethod
    def _append(path: Path, line: bytes) -> None:
        new = not path.exists()
        if new:
            path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":  # a torn last line: cut it off
                keep = path.read_bytes().rfind(b"\n") + 1
                log.warning("%s: incomplete last line removed before appending", path)
                os.ftruncate(fd, keep)
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        if new:  # the file's creation is durable once its directory is synced
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def history(self) -> list[Verdict]:
        """Every verdict recorded, oldest first."""
        with self._lock:
            return list(self._history)

    def latest(self) -> dict[str, Verdict]:
        """The current verdict of each account."""
        with self._lock:
            return dict(self._latest)

    def get(self, account_id: str) -> Verdict | None:
        with self._lock:
            return self._latest.get(account_id)

    def frame(self) -> pl.DataFrame:
        """The current verdicts as a frame (:data:`VERDICT_SCHEMA`); kept until the next
        verdict (a rescoring pass asks for it every time)."""
        with self._lock:
            if self._frame is None:
                self._frame = verdict_frame(self._latest.values())
            return self._frame

    def __len__(self) -> int:
        with self._lock:
            return len(self._latest)


def verdict_frame(verdicts: Iterable[Verdict]) -> pl.DataFrame:
    """``account_id, verdict, at, by, note`` (the last of an account's verdicts wins)."""
    latest = {v.account_id: v for v in verdicts}
    rows = [v.to_json() | {"at": v.at} for v in latest.values()]
    return pl.DataFrame(rows, schema=VERDICT_SCHEMA, orient="row") if rows else empty_frame()


def empty_frame() -> pl.DataFrame:
    return pl.DataFrame(schema=VERDICT_SCHEMA)


def load_verdicts(path: str | Path) -> pl.DataFrame:
    """The current verdicts of the store at ``path`` (a missing file: none)."""
    return VerdictStore(path).frame()


def store_beside(model_path: str | Path) -> Path:
    """The default store of a model file: ``verdicts.jsonl`` in the same directory."""
    return Path(model_path).parent / DEFAULT_NAME


# --------------------------------------------------------------------------- effects


def apply_verdicts(
    accounts: pl.DataFrame, alone: pl.DataFrame, verdicts: pl.DataFrame | None
) -> pl.DataFrame:
    """Final account scores with the verdicts applied: an allow-listed account is never
    flagged, keeps its score on its own (``alone``: no campaign lifts it) and gets the reason
    "allow-listed on DATE by NAME: note" first. Other verdicts change nothing here. Columns
    and row order of ``accounts`` are kept."""
    if verdicts is None or verdicts.height == 0:
        return accounts
    allowed = verdicts.filter(pl.col("verdict") == "allow")
    if allowed.height == 0:
        return accounts
    notes = [make_verdict(**row).reason() for row in allowed.iter_rows(named=True)]
    allow = allowed.select("account_id").with_columns(pl.Series("__why", notes, dtype=pl.String))
    own = alone.select(
        "account_id",
        pl.col("score").alias("__score"),
        pl.col("raw_score").alias("__raw"),
        pl.col("reasons").alias("__reasons"),
    )
    df = accounts.join(allow, on="account_id", how="left").join(own, on="account_id", how="left")
    is_allowed = pl.col("__why").is_not_null()
    return df.with_columns(
        pl.when(is_allowed).then(pl.col("__score")).otherwise(pl.col("score")).alias("score"),
        pl.when(is_allowed).then(pl.col("__raw")).otherwise(pl.col("raw_score")).alias("raw_score"),
        pl.when(is_allowed).then(False).otherwise(pl.col("flagged")).alias("flagged"),
        pl.when(is_allowed)
        .then(pl.concat_list(pl.col("__why"), pl.col("__reasons")))
        .otherwise(pl.col("reasons"))
        .alias("reasons"),
    ).select(accounts.columns)


def allow_listed(verdicts: pl.DataFrame | None) -> set[str]:
    """Ids of the allow-listed accounts."""
    if verdicts is None or verdicts.height == 0:
        return set()
    return set(verdicts.filter(pl.col("verdict") == "allow")["account_id"].to_list())


# --------------------------------------------------------------------------- labels, precision


def verdict_labels(verdicts: pl.DataFrame) -> pl.DataFrame:
    """The label table of :func:`detector.pipeline.fit` (``account_id, is_attack``) from the
    ``abuse`` (true) and ``benign`` (false) verdicts; ``allow`` is no label."""
    return verdicts.filter(pl.col("verdict").is_in(["abuse", "benign"])).select(
        "account_id", (pl.col("verdict") == "abuse").alias("is_attack")
    )


def flag_precision(
    accounts: pl.DataFrame, verdicts: pl.DataFrame, threshold: float
) -> dict[str, Any]:
    """How the flags of ``accounts`` (``account_id, score, flagged``) stand against the
    analyst's verdicts. A flag is the score reaching ``threshold`` (an allow-listed account's
    score still counts: its flag was a false positive the analyst answered). ``precision``:
    abuse among the flagged accounts with a verdict (``allow`` and ``benign`` count against);
    ``abuse_missed``: accounts with an abuse verdict not flagged."""
    counts = verdicts.group_by("verdict").len()
    by_kind = {k: 0 for k in VERDICTS} | dict(counts.iter_rows())
    seen = accounts.select(
        "account_id", ((pl.col("score") >= threshold) | pl.col("flagged")).alias("__flag")
    ).join(verdicts.select("account_id", "verdict"), on="account_id", how="right")
    present = seen.filter(pl.col("__flag").is_not_null())
    flagged = present.filter(pl.col("__flag"))
    abuse = int((flagged["verdict"] == "abuse").sum())
    reviewed = flagged.height
    n_flagged = int(((accounts["score"] >= threshold) | accounts["flagged"]).sum())
    return {
        "verdicts": verdicts.height,
        "by_verdict": by_kind,
        "in_these_logs": present.height,
        "flagged_with_verdict": reviewed,
        "flagged_abuse": abuse,
        "flagged_not_abuse": reviewed - abuse,
        "precision": abuse / reviewed if reviewed else None,
        "flagged_without_verdict": n_flagged - reviewed,
        "abuse_missed": int(
            present.filter(~pl.col("__flag") & (pl.col("verdict") == "abuse")).height
        ),
    }


def precision_text(p: dict[str, Any]) -> str:
    """One line of :func:`flag_precision`."""
    if not p["flagged_with_verdict"]:
        return (
            f"verdicts: {p['verdicts']} ({p['in_these_logs']} of these accounts); none of the "
            f"flagged accounts has a verdict yet ({p['flagged_without_verdict']} flagged)"
        )
    return (
        f"precision of the flags against the verdicts: {p['precision']:.2f} "
        f"({p['flagged_abuse']} abuse of {p['flagged_with_verdict']} flagged accounts with a "
        f"verdict; {p['flagged_without_verdict']} flagged without one); abuse verdicts not "
        f"flagged: {p['abuse_missed']}"
    )
