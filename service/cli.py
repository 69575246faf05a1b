"""The ``distillguard`` command line: the front door that wires generator, detector and service.

Results (tables, summaries, paths of outputs, ``--format json``) go to stdout, through
:data:`stdout`; progress, warnings and errors go to stderr, through :data:`console`. So
``distillguard demo > out.txt`` keeps the results and ``distillguard audit ... --format json |
jq`` reads clean JSON.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import polars as pl
import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from detector.io.schema import EventSchemaError
from detector.io.tally import InputTally
from service.commands.options import (
    MaxErrorsOpt,
    VerdictsOpt,
    input_error,
    report_input,
    report_verdicts,
    verdict_frame_for,
)

if TYPE_CHECKING:
    from detector.audit import AuditResult

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
# progress, warnings and errors
console = Console(stderr=True)
# results: tables, summaries, paths of outputs
stdout = Console()


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
        stdout.print(f"distillguard {version}", highlight=False)
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
        raise _fail(f"--from {source!r}: choose one of {', '.join(sorted(ADAPTERS))}")
    tally = InputTally(max_errors=max_errors)
    try:
        n = do_convert(source, inputs, out, tally)
    except EventSchemaError as exc:
        raise input_error(exc, tally) from None
    except FileNotFoundError as exc:
        raise _fail(str(exc)) from None
    report_input(tally)
    stdout.print(f"{n:,} events -> {out}", highlight=False, soft_wrap=True)


def _stage_printer() -> Callable[[str], None]:
    def show(stage: str) -> None:
        console.print(f"[dim]·[/] {stage}", highlight=False)

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
        raise _fail(str(exc)) from None
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
        console.print(f"[yellow]warning:[/] {note}", highlight=False)


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
        raise _fail(f"--engine {engine!r}: use local or spark")
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
        raise _fail(str(exc)) from None
    except SparkUnavailableError as exc:
        raise _fail(str(exc)) from None


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


def print_metrics(m: dict[str, Any]) -> None:
    rec = m.get("recall_at_fpr", {})
    stdout.print(
        f"ROC-AUC {m['roc_auc']:.4f}  PR-AUC {m['pr_auc']:.4f}  "
        f"recall@0.1%FPR {rec.get('0.001', float('nan')):.3f}  "
        f"recall@1%FPR {rec.get('0.01', float('nan')):.3f}",
        highlight=False,
    )
    tbl = Table(
        title="by archetype (at the flag threshold)", box=box.SIMPLE_HEAD, title_justify="left"
    )
    tbl.add_column("archetype")
    tbl.add_column("kind")
    tbl.add_column("accounts", justify="right")
    tbl.add_column("recall / FP rate", justify="right")
    for name, row in sorted(m["by_archetype"].items(), key=lambda kv: (kv[1]["kind"], kv[0])):
        val = row.get("recall", row.get("fp_rate", 0.0))
        tbl.add_row(name, row["kind"], str(row["n"]), f"{val:.3f}")
    stdout.print(tbl)
    cm = m.get("campaigns")
    if cm and cm.get("ari") is not None:
        stdout.print(
            f"campaigns: ARI {cm['ari']:.3f} against the true campaigns, "
            f"{100 * (cm['campaigns_detected'] or 0):.0f}% of true campaigns found; recall at "
            f"{100 * cm['fpr']:g}% FPR {cm['recall_without']:.3f} -> {cm['recall_with']:.3f} "
            f"with campaign evidence (campaign members {cm['member_recall_without']:.3f} -> "
            f"{cm['member_recall_with']:.3f}); normal accounts lifted: {cm['normals_lifted']}",
            highlight=False,
        )
    ttd = m.get("time_to_detect")
    if ttd and ttd.get("median_hours") is not None:
        stdout.print(
            f"time to detect: median {ttd['median_hours']:.1f} h, "
            f"{ttd['median_requests']:.0f} requests; {100 * ttd['detected_share']:.0f}% "
            "of attackers detected",
            highlight=False,
        )


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _print_json(doc: dict[str, Any]) -> None:
    """One JSON document on stdout, nothing else (no Rich wrapping or markup)."""
    import sys

    sys.stdout.write(json.dumps(doc, indent=2, default=_json_default) + "\n")
    sys.stdout.flush()


# the account columns of --format json (those the audit wrote; context ones when present)
JSON_ACCOUNT_COLUMNS = (
    "account_id",
    "score",
    "severity",
    "flagged",
    "action",
    "action_why",
    "campaign_id",
    "reasons",
    "requests",
    "first_seen",
    "last_seen",
    "n_ips",
    "n_ip_prefixes",
    "n_api_keys",
    "n_user_agents",
    "top_ips",
    "top_ip_prefixes",
    "top_api_keys",
    "top_user_agents",
)
JSON_CAMPAIGN_COLUMNS = (
    "campaign_id",
    "score",
    "severity",
    "suspicious",
    "action",
    "action_why",
    "n_members",
    "n_flagged",
    "requests",
    "first_seen",
    "last_seen",
    "evidence",
    "members",
)


def audit_document(result: AuditResult, top: int, with_paths: bool = True) -> dict[str, Any]:
    """``--format json``: the audit's summary, the accounts per severity band and suggested
    action, the ``top`` accounts by score and the ``top`` campaigns (suspicious first), and
    the paths of the outputs."""
    from detector.calibration import score_reading, score_text
    from detector.report.rows import action_counts, severity_counts

    table = result.accounts
    accounts = [
        {**row, "score_text": score_text(row["score"]), "reading": score_reading(row["score"])}
        for row in table.head(max(top, 0))
        .select([c for c in JSON_ACCOUNT_COLUMNS if c in table.columns])
        .iter_rows(named=True)
    ]
    doc: dict[str, Any] = {
        "summary": result.summary,
        "severity": dict(severity_counts(table)),
        "actions": dict(action_counts(table)),
        "accounts": accounts,
        "campaigns": [],
    }
    camps = _campaign_table(result)
    if camps is not None:
        doc["campaigns"] = (
            camps.head(max(top, 0))
            .select([c for c in JSON_CAMPAIGN_COLUMNS if c in camps.columns])
            .to_dicts()
        )
    if with_paths:
        doc["outputs"] = {k: str(v) for k, v in result.paths.items()}
    return doc


def _campaign_table(result: AuditResult) -> pl.DataFrame | None:
    """The campaigns with severity and suggested action, suspicious ones first, by score."""
    from detector.triage import campaign_actions

    if result.campaigns is None or result.campaigns.height == 0:
        return None
    return campaign_actions(result.campaigns, result.accounts).sort(
        ["suspicious", "score"], descending=True, nulls_last=True
    )


def show_audit(result: AuditResult, top: int, fmt: OutputFormat = OutputFormat.text) -> None:
    """An audit's results on stdout: tables for people, or one JSON document."""
    if fmt is OutputFormat.json:
        _print_json(audit_document(result, top))
        return
    print_audit(result, top)
    stdout.print(f"\nreport: {result.paths['report']}", highlight=False, soft_wrap=True)


def _shorten(text: str, lines: int, reserved: int = 36) -> str:
    """``text`` cut to about ``lines`` lines of the column left after ``reserved`` columns."""
    width = max(stdout.width - reserved, 30)
    return textwrap.shorten(text, width=width * lines, placeholder=" …")


def print_audit(result: AuditResult, top: int) -> None:
    """The audit in three short sections: what was flagged and how sure, each suspicious
    campaign once, and the strongest accounts outside campaigns (then the metrics, with
    labels)."""
    from detector.calibration import score_text

    table, summary = result.accounts, result.summary
    cal = summary["calibration"]
    expected = cal["expected_normal_flagged"]
    camps = _campaign_table(result)
    suspicious = camps.filter(pl.col("suspicious")) if camps is not None else pl.DataFrame()
    susp_ids = suspicious["campaign_id"].to_list() if suspicious.height else []
    in_susp = pl.col("campaign_id").is_in(pl.Series(susp_ids, dtype=pl.String).implode())
    solo = table.filter(~in_susp.fill_null(False))
    n_flagged = summary["n_flagged"]
    n_solo_flagged = int(solo["flagged"].sum())
    stdout.print(
        f"{summary['n_accounts']:,} accounts, {summary['n_events']:,} requests: "
        f"[bold]{n_flagged:,} flagged[/] ({n_flagged - n_solo_flagged:,} in "
        f"{int((suspicious['n_flagged'] > 0).sum()) if suspicious.height else 0} campaigns, "
        f"{n_solo_flagged:,} on their own) at score >= {cal['threshold']:g}, the top "
        f"{100 * cal['target_fpr']:g} % of normal accounts ({cal['n_reference']:,} reference "
        "accounts)",
        highlight=False,
    )
    stdout.print(
        f"estimated false positives among them: {expected['estimate']:.1f} or fewer normal "
        f"accounts (95 % interval {expected['interval_95'][0]}-{expected['interval_95'][1]})",
        highlight=False,
    )
    if cal.get("measured_normal_flagged"):
        m = cal["measured_normal_flagged"]
        stdout.print(
            f"against the labels: {m['count']} of {m['of']:,} normal accounts flagged "
            f"({100 * (m['rate'] or 0):.2f} %, target {100 * cal['target_fpr']:g} %)",
            highlight=False,
        )
    if cal.get("note"):
        console.print(f"[yellow]note:[/] {cal['note']}", highlight=False)
    if suspicious.height:
        n_linked = camps.height - suspicious.height if camps is not None else 0
        ctbl = Table(
            title=f"suspicious campaigns: {suspicious.height}"
            + (
                f" (and {n_linked} linked group{'s' if n_linked != 1 else ''} not suspicious: "
                "see the report)"
                if n_linked
                else ""
            ),
            box=box.SIMPLE_HEAD,
            title_justify="left",
        )
        for col in ("score", "severity", "action", "campaign"):
            ctbl.add_column(col, justify="right" if col == "score" else "left")
        for row in suspicious.head(max(top, 0)).iter_rows(named=True):
            headline = row["evidence"][0] if row["evidence"] else ""
            ctbl.add_row(
                score_text(row["score"]),
                row["severity"] or "—",
                row["action"] or "—",
                f"[bold]{row['campaign_id']}[/] · {row['n_members']} accounts, "
                f"{row['n_flagged']} flagged\n{_shorten(headline, 2)}",
            )
        stdout.print(ctbl)
    atbl = Table(
        title="strongest accounts outside campaigns"
        + ("" if n_solo_flagged else " (none flagged)"),
        box=box.SIMPLE_HEAD,
        title_justify="left",
    )
    for col in ("score", "severity", "action", "account"):
        atbl.add_column(col, justify="right" if col == "score" else "left")
    for row in solo.head(max(top, 0)).iter_rows(named=True):
        reasons = [r for r in row["reasons"] if not r.startswith("linked to campaign")]
        first = reasons[0].split(" — ")[0] if reasons else "a combination of moderate signals"
        requests = f" · {row['requests']:,} requests" if row.get("requests") is not None else ""
        atbl.add_row(
            score_text(row["score"]),
            row.get("severity") or "—",
            row.get("action") or "—",
            f"[bold]{row['account_id']}[/]{requests}\n{_shorten(first, 2)}",
        )
    stdout.print(atbl)
    if "metrics" in summary:
        print_metrics(summary["metrics"])


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
        raise _fail(f"invalid settings: {exc}") from None
    try:
        run_server(settings)
    except ModelLoadError as exc:
        raise _fail(str(exc)) from None


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
        raise _fail(str(exc)) from None
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
