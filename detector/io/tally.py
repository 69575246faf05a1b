"""How much of an input was read and what was wrong with it: the ``--max-errors`` budget of
``distillguard convert`` and ``distillguard audit``, and the one line they print about it.

An :class:`InputTally` is handed to a reader (:func:`detector.io.schema.read_events`, the
adapters of :mod:`detector.io.adapters`). The reader counts every record (an NDJSON line, a
Parquet row, a CSV record, an element of a JSON array), reports each bad one with
:meth:`InputTally.bad_record` and the incomplete last line of a log still being written with
:meth:`InputTally.incomplete_tail`, and calls :meth:`InputTally.check` once a file is read: past
the budget, :class:`~detector.io.schema.EventSchemaError` is raised with the problems.

``max_errors``: 0 (the default) fails on any bad record, naming each (up to
:data:`~detector.io.schema.MAX_REPORTED_PROBLEMS`); N > 0 skips up to N bad records (the run
fails at the N+1-th); -1 skips them all. Skipped records are counted and the first is named.

>>> from detector.io.schema import Problem
>>> t = InputTally(max_errors=5)
>>> t.records = 1000
>>> t.bad_record([Problem("a.jsonl", 7, "max_tokens", "expected an integer, got '1024'")])
>>> t.line()
"1 bad of 1,000 lines (first: a.jsonl:7: max_tokens: expected an integer, got '1024'); skipped"
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from detector.io.schema import MAX_REPORTED_PROBLEMS, EventSchemaError, Problem


def problem_text(p: Problem) -> str:
    """``file:line: field: reason`` (``file row N: ...`` for Parquet rows)."""
    where = p.source
    if p.line is not None:
        where += f":{p.line}" if p.kind == "line" else f" row {p.line}"
    return f"{where}: {p.field}: {p.reason}" if p.field else f"{where}: {p.reason}"


@dataclass
class InputTally:
    """Records read, bad records (and the first problems), incomplete last lines skipped."""

    max_errors: int = 0
    records: int = 0
    bad: int = 0
    problems: list[Problem] = field(default_factory=list)  # the first MAX_REPORTED_PROBLEMS
    tails: list[str] = field(default_factory=list)  # "file:line" of skipped incomplete lines
    unit: str = "lines"  # "rows" when every input is Parquet

    def __post_init__(self) -> None:
        if self.max_errors < -1:
            raise ValueError(f"max_errors {self.max_errors}: use -1 (skip all), 0 or a count")

    def bad_record(self, problems: Sequence[Problem]) -> None:
        """One bad record, with its problems (at least one)."""
        self.bad += 1
        room = MAX_REPORTED_PROBLEMS - len(self.problems)
        if room > 0:
            self.problems.extend(problems[:room])

    def bad_records(self, count: int, problems: Sequence[Problem]) -> None:
        """``count`` bad records at once (a Parquet scan), with the first of their problems."""
        self.bad += count
        room = MAX_REPORTED_PROBLEMS - len(self.problems)
        if room > 0:
            self.problems.extend(problems[:room])

    def incomplete_tail(self, source: str, line: int) -> None:
        """The last line of ``source``, unterminated and not JSON, was skipped: a log still
        being written (not counted as bad)."""
        self.tails.append(f"{source}:{line}")

    @property
    def over(self) -> bool:
        """More bad records than the budget allows."""
        return self.max_errors >= 0 and self.bad > self.max_errors

    def check(self) -> None:
        """Raise :class:`EventSchemaError` (with this tally) when past the budget."""
        if self.over:
            err = EventSchemaError(self.problems, truncated=self.bad > len(self.problems))
            err.tally = self
            raise err

    def line(self) -> str:
        """``"N bad of M lines (first: file:line: field: reason)"``, with the skipped tails."""
        text = f"{self.bad:,} bad of {self.records:,} {self.unit}"
        if self.problems:
            text += f" (first: {problem_text(self.problems[0])})"
        if self.bad and self.max_errors != 0:
            text += "; skipped" if not self.over else f"; more than --max-errors {self.max_errors}"
        if self.tails:
            text += "; incomplete last line skipped (a log still being written): " + ", ".join(
                self.tails
            )
        return text

    def summary(self) -> dict[str, object]:
        """For ``summary.json``."""
        return {
            "records": self.records,
            "bad": self.bad,
            "max_errors": self.max_errors,
            "first_problem": problem_text(self.problems[0]) if self.problems else None,
            "incomplete_tails": list(self.tails),
        }
