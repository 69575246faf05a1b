"""The ``distillguard`` command line: the front door that wires generator, detector and service.

Results (tables, summaries, paths of outputs, ``--format json``) go to stdout; progress,
warnings and errors go to stderr (the two consoles of :mod:`service.commands.options`). So
``distillguard demo > out.txt`` keeps the results and ``distillguard audit ... --format json |
jq`` reads clean JSON. The application, its shared options and what it prints live in
:mod:`service.commands` (``app``, ``show``); the verdict and export commands too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import polars as pl
import typer

from detector.io.schema import EventSchemaError
from detector.io.tally import InputTally
from service.commands.app import (
    TOP_DEFAULT,
    FormatOpt,
    OutputFormat,
    TopOpt,
    app,
    progress_bar,
)
from service.commands.options import (
    MaxErrorsOpt,
    VerdictsOpt,
    err,
    fail,
    input_error,
    report_input,
    report_verdicts,
    verdict_frame_for,
)
from service.commands.options import out as stdout
from service.commands.show import (
    _print_json,
    audit_document,
    print_audit,
    print_metrics,
    show_audit,
)

if TYPE_CHECKING:
    from detector.audit import AuditResult


@app.command()
def generate(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")],
    scenario: Annotated[
        str,
        typer.Option(
            "--scenario",
            "-s",
            help="Built-in name (demo, default, stealth, adversarial) or a TOML file.",
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
        raise fail(f"--format {fmt!r}: use parquet or ndjson")
    try:
        sc = load_scenario(scenario, scale=scale)
    except ScenarioError as exc:
        raise fail(str(exc)) from None
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
            raise fail(str(exc)) from None
        wtask = bar.add_task("writing", total=1)
        paths = data.write(out, fmt=fmt)
        bar.update(wtask, completed=1)
    n_attack = int(data.labels["is_attack"].sum())
    stdout.print(
        f"{data.events.height:,} events from {data.labels.height:,} accounts "
        f"({n_attack:,} attacking) -> {paths['events'].parent}",
        highlight=False,
        soft_wrap=True,
    )


@app.command()
def convert(
    source: Annotated[
        str,
        typer.Option("--from", help="Log format: openai, litellm, bedrock or azure-openai."),
    ],
    inputs: Annotated[list[Path], typer.Argument(help="Input log files.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output Parquet file.")],
    max_errors: MaxErrorsOpt = 0,
) -> None:
    """Convert request logs to canonical events: OpenAI-compatible JSONL, LiteLLM (SpendLogs or
    standard logging payloads), AWS Bedrock invocation logs, Azure OpenAI RequestResponse logs."""
    from detector.io.adapters import ADAPTERS
    from detector.io.adapters import convert as do_convert

    if source not in ADAPTERS:
        raise fail(f"--from {source!r}: choose one of {', '.join(sorted(ADAPTERS))}")
    tally = InputTally(max_errors=max_errors)
    try:
        n = do_convert(source, inputs, out, tally)
    except EventSchemaError as exc:
        raise input_error(exc, tally) from None
    except FileNotFoundError as exc:
        raise fail(str(exc)) from None
    report_input(tally)
    stdout.print(f"{n:,} events -> {out}", highlight=False, soft_wrap=True)


def _stage_printer() -> Callable[[str], None]:
    def show(stage: str) -> None:
        err.print(f"[dim]·[/] {stage}", highlight=False)

    return show


def _optional_tables(
    logs: list[Path], labels: Path | None, accounts: Path | None
) -> tuple[pl.DataFrame | None, pl.DataFrame | None]:
    """Labels and account table: given explicitly, or found beside the logs."""
    from detector.io.tables import load_accounts, load_labels, sibling_table

    lab = load_labels(labels) if labels else None
    acc_path = accounts or sibling_table(logs, "accounts.parquet")
    acc = load_accounts(acc_path) if acc_path else None
    return lab, acc


LogsArg = Annotated[
    list[Path], typer.Argument(help="Event logs: Parquet/NDJSON files, dirs, globs.")
]
LabelsOpt = Annotated[
    Path | None, typer.Option(help="Ground-truth labels (account_id, is_attack, archetype, ...).")
]
AccountsOpt = Annotated[
    Path | None,
    typer.Option(help="Account table (default: accounts.parquet beside the logs, if present)."),
]


@app.command()
def train(
    logs: LogsArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Model file to write.")],
    labels: LabelsOpt = None,
    accounts: AccountsOpt = None,
    target_fpr: Annotated[float, typer.Option(help="False-positive rate for flagging.")] = 0.001,
    verdicts: VerdictsOpt = None,
) -> None:
    """Fit the account scorer on logs (unsupervised; supervised too when labels are given).

    Abuse and benign verdicts (--verdicts, default verdicts.jsonl beside --out) are labels."""
    from detector.audit import train as do_train
    from detector.models import DistillScorer
    from service.commands.verdicts import train_on_verdicts

    verdict_table, store = verdict_frame_for(verdicts, out)
    try:
        lab, acc = _optional_tables(logs, labels, accounts)
        scorer = DistillScorer(target_fpr=target_fpr)
        if verdict_table is not None:
            model = train_on_verdicts(logs, out, verdict_table, store, lab, acc, scorer)
        else:
            model = do_train(logs, out, lab, acc, scorer, progress=_stage_printer())
    except (EventSchemaError, FileNotFoundError, ValueError) as exc:
        raise fail(str(exc)) from None
    from detector.audit import small_reference_note

    info = model.info()
    stdout.print(
        f"model -> {out} ({info['n_train']:,} accounts, supervised={info['supervised']}, "
        f"calibrated on {info['n_reference']:,} {info['reference']}, "
        f"threshold {info['threshold']:.1f})",
        highlight=False,
        soft_wrap=True,
    )
    note = small_reference_note(model)
    if note:
        err.print(f"[yellow]warning:[/] {note}", highlight=False)


def _run_audit(
    logs: list[Path],
    out: Path,
    model: Path | None,
    labels: Path | None,
    accounts: Path | None,
    time_to_detect: bool,
    campaigns: bool = True,
    target_fpr: float | None = None,
    engine: str = "local",
    spark_master: str = "local[*]",
    max_errors: int = 0,
    verdicts: Path | None = None,
) -> AuditResult:
    """Load what the options name and audit; input errors become a clear exit 2."""
    from detector.audit import audit as do_audit
    from detector.models import DistillScorer, ModelLoadError
    from detector.spark.session import SparkUnavailableError

    if engine not in ("local", "spark"):
        raise fail(f"--engine {engine!r}: use local or spark")
    tally = InputTally(max_errors=max_errors)
    verdict_table, store = verdict_frame_for(verdicts, model)
    try:
        scorer = DistillScorer.load(model) if model else None
        lab, acc = _optional_tables(logs, labels, accounts)
        if engine == "spark":
            from detector.spark.engine import audit as spark_audit

            if time_to_detect:
                raise ValueError("--time-to-detect runs with --engine local only")
            if verdicts is not None:
                raise ValueError("--verdicts runs with --engine local only")
            if target_fpr is not None:
                scorer = (
                    scorer.with_target_fpr(target_fpr)
                    if scorer is not None
                    else DistillScorer(target_fpr=target_fpr)
                )
            return spark_audit(
                logs,
                out,
                scorer,
                lab,
                acc,
                campaigns=campaigns,
                master=spark_master,
                progress=_stage_printer(),
            )
        result = do_audit(
            logs,
            out,
            scorer,
            lab,
            acc,
            campaigns=campaigns,
            with_time_to_detect=time_to_detect,
            target_fpr=target_fpr,
            progress=_stage_printer(),
            tally=tally,
            verdicts=verdict_table,
        )
        report_input(tally, result.summary)
        report_verdicts(result.summary, store)
        return result
    except EventSchemaError as exc:
        raise input_error(exc, tally) from None
    except (FileNotFoundError, ValueError, ModelLoadError) as exc:
        raise fail(str(exc)) from None
    except SparkUnavailableError as exc:
        raise fail(str(exc)) from None


@app.command()
def audit(
    logs: LogsArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")],
    model: Annotated[
        Path | None, typer.Option(help="Trained model (default: fit one on these logs).")
    ] = None,
    labels: LabelsOpt = None,
    accounts: AccountsOpt = None,
    time_to_detect: Annotated[
        bool, typer.Option(help="With labels: re-score at cut-offs to measure time to detect.")
    ] = False,
    top: TopOpt = TOP_DEFAULT,
    campaigns: Annotated[
        bool, typer.Option(help="Link accounts into campaigns and score those too.")
    ] = True,
    target_fpr: Annotated[
        float | None,
        typer.Option(help="False-positive rate to flag at (default: the model's, 0.001)."),
    ] = None,
    engine: Annotated[
        str, typer.Option(help="local (polars, this machine) or spark (pip install '.[spark]').")
    ] = "local",
    spark_master: Annotated[
        str,
        typer.Option(
            help="Spark master for --engine spark (SPARK_REMOTE and an active "
            "session take precedence)."
        ),
    ] = "local[*]",
    max_errors: MaxErrorsOpt = 0,
    verdicts: VerdictsOpt = None,
    fmt: FormatOpt = OutputFormat.text,
) -> None:
    """Score every account in the logs; write accounts.parquet/.csv, campaigns.parquet,
    summary.json and report.html.

    Also indicators.parquet (campaign indicators, for distillguard export) and, with a verdict
    store, verdicts.csv."""
    result = _run_audit(
        logs,
        out,
        model,
        labels,
        accounts,
        time_to_detect,
        campaigns,
        target_fpr=target_fpr,
        engine=engine,
        spark_master=spark_master,
        max_errors=max_errors,
        verdicts=verdicts,
    )
    show_audit(result, top, fmt)


@app.command()
def evaluate(
    logs: LogsArg,
    model: Annotated[Path, typer.Option(help="Trained model.")],
    labels: Annotated[Path, typer.Option(help="Ground-truth labels.")],
    accounts: AccountsOpt = None,
    time_to_detect: Annotated[bool, typer.Option(help="Also measure time to detect.")] = True,
    out: Annotated[Path | None, typer.Option(help="Write the metrics as JSON here.")] = None,
    verdicts: VerdictsOpt = None,
    top: TopOpt = TOP_DEFAULT,
    fmt: FormatOpt = OutputFormat.text,
) -> None:
    """Metrics of a trained model on labelled logs it was not fitted on.

    With a verdict store, also the precision of its flags against the verdicts."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        result = _run_audit(
            logs, Path(tmp), model, labels, accounts, time_to_detect, verdicts=verdicts
        )
    m = result.summary["metrics"]
    if out:
        review = {"verdicts": result.summary["verdicts"]} if "verdicts" in result.summary else {}
        out.write_text(json.dumps(m | review, indent=2) + "\n")
    if fmt is OutputFormat.json:
        _print_json({"metrics": m, **audit_document(result, top, with_paths=False)})
        return
    print_metrics(m)
    if out:
        stdout.print(f"metrics: {out}", highlight=False, soft_wrap=True)


@app.command()
def demo(
    out: Annotated[
        Path | None, typer.Option(help="Keep the outputs here (default: a temporary folder).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the audited day (training uses seed+1).")] = 2,
    top: TopOpt = TOP_DEFAULT,
) -> None:
    """Generate the demo scenario, train on one day, audit another, show what was caught."""
    import tempfile

    from detector.audit import audit as do_audit
    from detector.audit import train as do_train
    from synthetic_logs.generate import generate as gen

    base = Path(out) if out else Path(tempfile.mkdtemp(prefix="distillguard-demo-"))
    stage = _stage_printer()
    stage(f"generating the demo scenario (training day: seed {seed + 1}; audited day: seed {seed})")
    train_dir, audit_dir = base / "train-logs", base / "logs"
    gen("demo", seed=seed + 1).write(train_dir)
    gen("demo", seed=seed).write(audit_dir)
    model_path = base / "model.joblib"
    model = do_train(
        [train_dir / "events.parquet"],
        model_path,
        accounts=pl.read_parquet(train_dir / "accounts.parquet"),
        progress=stage,
    )
    labels = pl.read_parquet(audit_dir / "labels.parquet")
    result = do_audit(
        [audit_dir / "events.parquet"],
        base / "audit",
        model,
        labels,
        pl.read_parquet(audit_dir / "accounts.parquet"),
        progress=stage,
    )
    print_audit(result, top)
    stdout.print(
        f"\nreport: {result.paths['report']}\noutputs: {base}", highlight=False, soft_wrap=True
    )


@app.command()
def serve(
    model: Annotated[Path, typer.Option(help="Trained model (distillguard train).")],
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
) -> None:
    """Run the streaming scoring service (FastAPI under uvicorn).

    Everything else comes from DISTILLGUARD_* environment variables (tokens, window, rescoring
    interval, snapshot path, limits): see service/settings.py and the README."""
    from pydantic import ValidationError

    from detector.models import ModelLoadError
    from service.server import run_server
    from service.settings import Settings

    try:
        settings = Settings(model_path=model, host=host, port=port)
    except ValidationError as exc:
        raise fail(f"invalid settings: {exc}") from None
    try:
        run_server(settings)
    except ModelLoadError as exc:
        raise fail(str(exc)) from None


@app.command()
def replay(
    logs: LogsArg,
    url: Annotated[str, typer.Option(help="Service base URL, e.g. http://127.0.0.1:8000.")],
    rate: Annotated[
        float | None, typer.Option(help="Events per second (default: as fast as accepted).")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Events per request.")] = 1000,
    token: Annotated[
        str | None, typer.Option(envvar="DISTILLGUARD_TOKEN", help="Bearer token (ingest scope).")
    ] = None,
) -> None:
    """Stream a log to the service in batches, in time order, with a progress bar."""
    from service.replay import ReplayError
    from service.replay import replay as do_replay

    try:
        counts = do_replay(logs, url, rate=rate, batch_size=batch_size, token=token, progress=True)
    except (EventSchemaError, FileNotFoundError, ReplayError) as exc:
        raise fail(str(exc)) from None
    stdout.print(
        f"{counts['events']:,} events in {counts['batches']:,} batches: "
        f"{counts['accepted']:,} accepted, {counts['duplicates']:,} duplicates, "
        f"{counts['rejected']:,} rejected ({counts['events_per_s']:,.0f} events/s)",
        highlight=False,
    )


from service.commands import register  # noqa: E402 - verdict and export (issue 16)

register(app)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
