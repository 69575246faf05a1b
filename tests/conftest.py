"""Shared fixtures: small generated scenarios (cached per session) and the corpora location."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from synthetic_logs.generate import Generated, generate

if TYPE_CHECKING:
    from detector.audit import AuditResult

REPO = Path(__file__).resolve().parents[1]


def corpora_dir() -> Path | None:
    """``../shared/corpora`` beside the repo (or $DISTILLGUARD_CORPORA), if present."""
    env = os.environ.get("DISTILLGUARD_CORPORA")
    path = Path(env) if env else REPO.parent / "shared" / "corpora"
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def demo_small() -> Generated:
    """The demo scenario at 40 % of its accounts (fast, every archetype present)."""
    return generate("demo", seed=11, scale=0.4)


@pytest.fixture(scope="session")
def small_audit(demo_small: Generated, tmp_path_factory: pytest.TempPathFactory) -> AuditResult:
    """The self-fit audit of :func:`demo_small` (with its labels and account table): three
    suspicious campaigns, a benign linked group, the report written (about 5 s)."""
    from detector.audit import audit

    base = tmp_path_factory.mktemp("small_audit")
    demo_small.write(base / "logs")
    return audit(
        [base / "logs" / "events.parquet"],
        base / "audit",
        labels=demo_small.labels,
        accounts=demo_small.accounts,
    )
