"""The ``distillguard`` command line: the front door that wires generator, detector and service."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from detector.schema import EventSchemaError

app = typer.Typer(
    name="distillguard",
    help="Find accounts distilling an LLM API from its request logs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


@app.command()
def generate(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")],
    scenario: Annotated[
        str,
        typer.Option(
            "--scenario", "-s", help="Built-in name (demo, default, stealth) or a TOML file."
        ),
    ] = "demo",
    seed: Annotated[int, typer.Option(help="Random seed: same seed, byte-identical output.")] = 0,
    fmt: Annotated[str, typer.Option("--format", help="parquet or ndjson")] = "parquet",
    scale: Annotated[float, typer.Option(help="Multiply every group's account count.")] = 1.0,
    corpus: Annotated[
        Path | None, typer.Option(help="Folder of real prompt files, e.g. ../shared/corpora.")
    ] = None,
) -> None:
    """Generate labelled synthetic traffic: events, accounts and labels."""
    from synthetic_logs.generate import generate as gen
    from synthetic_logs.scenario import ScenarioError, load_scenario

    if fmt not in ("parquet", "ndjson"):
        raise _fail(f"--format {fmt!r}: use parquet or ndjson")
    try:
        sc = load_scenario(scenario, scale=scale)
    except ScenarioError as exc:
        raise _fail(str(exc)) from None
    with progress_bar() as bar:
        task = bar.add_task(f"generating {sc.name}", total=len(sc.groups))
        try:
            data = gen(
                sc,
                seed=seed,
                corpus=corpus,
                progress=lambda done, _total: bar.update(task, completed=done),
            )
        except FileNotFoundError as exc:
            raise _fail(str(exc)) from None
        wtask = bar.add_task("writing", total=1)
        paths = data.write(out, fmt=fmt)
        bar.update(wtask, completed=1)
    n_attack = int(data.labels["is_attack"].sum())
    console.print(
        f"{data.events.height:,} events from {data.labels.height:,} accounts "
        f"({n_attack:,} attacking) -> {paths['events'].parent}"
    )


@app.command()
def convert(
    source: Annotated[str, typer.Option("--from", help="Log format: openai or litellm.")],
    inputs: Annotated[list[Path], typer.Argument(help="Input log files.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output Parquet file.")],
) -> None:
    """Convert gateway logs (OpenAI-compatible JSONL, LiteLLM SpendLogs) to canonical events."""
    from detector.adapters import ADAPTERS
    from detector.adapters import convert as do_convert

    if source not in ADAPTERS:
        raise _fail(f"--from {source!r}: choose one of {', '.join(sorted(ADAPTERS))}")
    try:
        n = do_convert(source, inputs, out)
    except EventSchemaError as exc:
        raise _fail(str(exc)) from None
    except FileNotFoundError as exc:
        raise _fail(str(exc)) from None
    console.print(f"{n:,} events -> {out}")


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
