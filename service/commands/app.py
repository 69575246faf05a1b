"""The ``distillguard`` typer application: clean help text, the shared options (``--top``,
``--format``), ``--version`` and the progress bar. Commands register on :data:`app` from
:mod:`service.cli` and :mod:`service.commands`."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from service.commands.options import err, out

# accounts (and campaigns) printed by audit, evaluate and demo unless --top says otherwise
TOP_DEFAULT = 10


class _Argument(TyperArgument):
    """A positional argument shown as ``LOGS...`` in the usage line and the help panel (typer
    0.29 prints ``{logs}...`` and a ``<list[Path]>`` type)."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None

    def get_usage_pieces(self, ctx: Any) -> list[str]:
        name = self.display_name_raw
        return [name if self.required else f"[{name}]"]


def _clean_params(params: list[Any]) -> list[Any]:
    """Flags without a ``<bool>`` value placeholder; arguments named ``NAME...``."""
    for p in params:
        if isinstance(p, TyperOption) and p.is_flag and p.metavar is None:
            p.metavar = ""
        elif isinstance(p, TyperArgument) and not isinstance(p, _Argument):
            p.__class__ = _Argument
            if p.metavar is None:
                p.metavar = (p.name or "arg").upper() + ("..." if p.nargs != 1 else "")
    return params


class _Command(TyperCommand):
    def get_params(self, ctx: Any) -> list[Any]:
        return _clean_params(super().get_params(ctx))


class _Group(TyperGroup):
    def get_params(self, ctx: Any) -> list[Any]:
        return _clean_params(super().get_params(ctx))


class _Typer(typer.Typer):
    """Every command gets the clean help of :class:`_Command` unless it names its own class."""

    def command(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("cls", _Command)
        return super().command(*args, **kwargs)


app = _Typer(
    name="distillguard",
    help="Find accounts distilling an LLM API from its request logs.",
    cls=_Group,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # help paragraphs are joined like Markdown: docstrings wrap freely
    rich_markup_mode="markdown",
)


class OutputFormat(StrEnum):
    text = "text"
    json = "json"


FormatOpt = Annotated[
    OutputFormat,
    typer.Option(
        "--format",
        help="text: tables for people; json: the summary and the top accounts and campaigns "
        "as one JSON document on stdout (progress stays on stderr).",
    ),
]
TopOpt = Annotated[int, typer.Option(help="Accounts and campaigns to print.")]


def _version(value: bool) -> None:
    if value:
        import importlib.metadata

        try:
            version = importlib.metadata.version("distillguard")
        except importlib.metadata.PackageNotFoundError:  # pragma: no cover - not installed
            version = "unknown (not installed)"
        out.print(f"distillguard {version}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Find accounts distilling an LLM API from its request logs."""


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )
