"""Shared fixtures: small generated scenarios (cached per session) and the corpora location."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from synthetic_logs.generate import Generated, generate

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
