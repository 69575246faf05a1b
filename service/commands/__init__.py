"""Commands of the ``distillguard`` CLI that live outside :mod:`service.cli`: ``verdict``
(:mod:`service.commands.verdicts`) and ``export`` (:mod:`service.commands.export`)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the commands of this package to ``app``."""
    from service.commands.export import export
    from service.commands.verdicts import verdict

    app.command()(verdict)
    app.command()(export)
