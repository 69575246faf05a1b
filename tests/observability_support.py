"""Helpers for tests/test_observability.py: the deploy/ files, PromQL and Grafana-variable
handling, promtool, and a real Prometheus scraping a real service fed a generated scenario.
Not a test module."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import typer.main
import yaml

from detector import pipeline
from detector.models import DistillScorer
from service.cli import app as cli_app
from service.replay import replay
from service.settings import Settings
from synthetic_logs.generate import generate
from tests.service_support import (
    INGEST,
    READ,
    ThreadServer,
    all_accounts,
    client_for,
    free_port,
    settle,
)

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
PROM_DIR = DEPLOY / "prometheus"
PROM_CONFIG = PROM_DIR / "prometheus.yml"
RULE_FILES = sorted((PROM_DIR / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROM_DIR / "tests").glob("*.yml"))
DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
DATASOURCES = sorted((DEPLOY / "grafana" / "provisioning" / "datasources").glob("*.yml"))
DASHBOARD_PROVIDERS = sorted((DEPLOY / "grafana" / "provisioning" / "dashboards").glob("*.yml"))
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")

# Grafana's built-in interval variables, as the end-to-end test substitutes them. $__rate_interval
# is at least four scrape intervals in Grafana; 5m keeps every replayed event inside the window
# however slow the machine.
GRAFANA_BUILTINS = {"__rate_interval": "5m", "__interval": "15s", "__range": "1h"}


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def rules(kind: str) -> list[dict[str, Any]]:
    """Every rule of ``kind`` ("alert" or "record") in deploy/prometheus/rules/."""
    return [
        rule
        for path in RULE_FILES
        for group in load_yaml(path)["groups"]
        for rule in group["rules"]
        if kind in rule
    ]


def all_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows included, and the panels nested in collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def dashboard_exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """``(where, expr)`` of every PromQL expression: panel targets and query annotations."""
    out: list[tuple[str, str]] = []
    for panel in all_panels(dashboard):
        for target in panel.get("targets", []):
            out.append(
                (f"panel {panel['id']} {panel['title']!r} {target['refId']}", target["expr"])
            )
    for ann in dashboard.get("annotations", {}).get("list", []):
        if "expr" in ann:
            out.append((f"annotation {ann['name']!r}", ann["expr"]))
    return out


LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?P<selector>.+?)\s*,\s*(?P<label>\w+)\s*\)\s*$")


def variable_query(var: dict[str, Any]) -> str:
    query = var["query"]
    return str(query["query"] if isinstance(query, dict) else query)


def substitute(expr: str, values: dict[str, str]) -> str:
    """Grafana's variable syntaxes ``$var``, ``${var}``, ``${var:fmt}``, ``[[var]]``."""

    def value(m: re.Match[str]) -> str:
        name = next(g for g in m.groups() if g)
        if name not in values:
            raise KeyError(f"undefined dashboard variable ${name} in {expr!r}")
        return values[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)", value, expr)


def regex_value(values: list[str]) -> str:
    """A multi-value variable as Grafana writes it into a PromQL regex matcher: ``(a|b)``, regex
    characters escaped (the backslash doubled, PromQL strings being Go-escaped)."""
    escaped = [re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\\\1", v) for v in values]
    return "(" + "|".join(escaped) + ")"


# -------------------------------------------------------------------- PromQL, for the alerts

SET_OPERATOR = re.compile(r"(?<![\w:])(and|or|unless)(?![\w:])")
VECTOR_MATCHING = re.compile(r"^\s*(on|ignoring)\s*\([^)]*\)\s*(group_\w+\s*(\([^)]*\))?)?")
SCALAR_COMPARISON = re.compile(r"\s*(==|!=|>=|<=|>|<)\s*(bool\s+)?[-+]?[0-9.]+(e[-+]?[0-9]+)?\s*$")
OFFSET = re.compile(r"\s+offset\s+-?\d+[smhdwy]")


def top_level_spans(expr: str) -> list[tuple[int, int]]:
    """Spans of ``expr`` outside brackets and quotes."""
    spans, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(expr):
        if quote:
            if ch == quote and expr[i - 1] != "\\":
                quote = ""
            continue
        if ch in "\"'`":
            quote = ch
        if ch in "([{":
            if depth == 0:
                spans.append((start, i))
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                start = i + 1
    if depth == 0:
        spans.append((start, len(expr)))
    return spans


def strip_parens(expr: str) -> str:
    """``((a > 1))`` -> ``a > 1``; ``(a) + (b)`` stays."""
    expr = expr.strip()
    while expr.startswith("(") and top_level_spans(expr) == [(0, 0), (len(expr), len(expr))]:
        expr = expr[1:-1].strip()
    return expr


def base_expressions(expr: str) -> list[str]:
    """The series an alert condition is computed from: ``a > 5 unless on (x) (b offset 30m >= 1)``
    gives ``a`` and ``b``. The operands of top-level ``and``/``or``/``unless``, each without its
    comparison to a number and its ``offset``. An alert fires when its condition holds; these
    must return data whatever the condition, or the alert could never fire."""
    cuts = [
        (start + m.start(), start + m.end())
        for start, end in top_level_spans(expr)
        for m in SET_OPERATOR.finditer(expr[start:end])
    ]
    pieces, prev = [], 0
    for a, b in cuts:
        pieces.append(expr[prev:a])
        prev = b
    pieces.append(expr[prev:])
    out = []
    for piece in pieces:
        piece = strip_parens(VECTOR_MATCHING.sub("", piece))
        piece = strip_parens(SCALAR_COMPARISON.sub("", piece))
        out.append(OFFSET.sub("", piece).strip())
    return out


def promtool(*args: str | Path, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    cmd = [PROMTOOL, *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def provisioned_datasource_uid() -> str:
    sources = [s for p in DATASOURCES for s in load_yaml(p)["datasources"]]
    prometheus = [s for s in sources if s["type"] == "prometheus"]
    assert len(prometheus) == 1, "one provisioned Prometheus datasource"
    uid = prometheus[0].get("uid")
    assert uid, "the provisioned datasource pins its uid"
    return str(uid)


def bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """``(source, target)`` of the service's bind mounts (sources that are paths)."""
    out = []
    for vol in service.get("volumes", []):
        if isinstance(vol, dict):
            if vol.get("type") == "bind":
                out.append((vol["source"], vol["target"]))
            continue
        source, target = vol.split(":")[:2]
        if source.startswith((".", "/")):
            out.append((source, target))
    return out


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def replay_token_envvar() -> str:
    command = typer.main.get_command(cli_app)
    replay_cmd = command.commands["replay"]  # type: ignore[attr-defined]
    (param,) = [p for p in replay_cmd.params if p.name == "token"]
    return str(param.envvar)


# -------------------------------------------------------------------- end to end


@dataclass
class Stack:
    api: PromAPI  # the Prometheus HTTP API
    service: str
    instance: str  # the scrape target as Prometheus labels it
    n_events: int
    flagged: set[str]  # accounts the service flags, from its API
    high: set[str]  # accounts scoring >= 99, from its API


def train_model(out: Path) -> tuple[DistillScorer, Path]:
    """A scorer fitted on a small generated day (no account table, as the service scores)."""
    train = generate("demo", seed=1, scale=0.3)
    model = pipeline.fit(train.events, scorer=DistillScorer(target_fpr=0.02))
    return model, model.save(out / "model.joblib")


def with_token_file(config: dict[str, Any], out: Path, token: str) -> dict[str, Any]:
    """``config`` with the distillguard job's bearer-token file (the compose secret) replaced
    by a file of ``out`` holding ``token``."""
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "distillguard"]
    secret = out / "read_token"
    secret.write_text(token + "\n")
    job["authorization"]["credentials_file"] = str(secret)
    return config


def prometheus_config(out: Path, target: str, token: str = READ) -> Path:
    """The project's prometheus.yml, scraping ``target`` every second with ``token`` (in the
    file the config names), its rules loaded from the repo (absolute paths) and evaluated every
    second."""
    config = with_token_file(load_yaml(PROM_CONFIG), out, token)
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(PROM_DIR / pattern) for pattern in config["rule_files"]]
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "distillguard"]
    job["static_configs"] = [{"targets": [target]}]
    config["scrape_configs"] = [job]  # the compose file's other jobs have no target here
    path = out / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def wait_until(check: Callable[[], bool], timeout: float, every: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return True
        except httpx.HTTPError:
            pass
        time.sleep(every)
    return False


class PromAPI:
    """Prometheus's HTTP API: ``get`` for the JSON endpoints, ``query`` for instant queries."""

    def __init__(self, url: str) -> None:
        self.client = httpx.Client(base_url=url, timeout=10)

    def get(self, path: str, **params: Any) -> Any:
        resp = self.client.get(path, params=params)
        resp.raise_for_status()
        body = resp.json()
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        resp = self.client.post("/api/v1/query", data={"query": expr})
        body = resp.json()
        assert resp.status_code == 200 and body["status"] == "success", (
            f"{expr!r}: {body.get('errorType')}: {body.get('error')}"
        )
        data = body["data"]
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])


def has_numbers(result: list[dict[str, Any]]) -> bool:
    return any(not math.isnan(float(r["value"][1])) for r in result)


@contextmanager
def running_prometheus(config: Path, data_dir: Path) -> Iterator[PromAPI]:
    """A real Prometheus on a free localhost port (never the packaged service's 9090), its own
    config and storage; stopped (SIGTERM, then SIGKILL) whatever happens."""
    assert PROMETHEUS is not None
    url = f"http://127.0.0.1:{free_port()}"
    log_path = data_dir / "prometheus.log"
    cmd = [
        PROMETHEUS,
        f"--config.file={config}",
        f"--storage.tsdb.path={data_dir / 'tsdb'}",
        f"--web.listen-address={url.removeprefix('http://')}",
        "--log.level=warn",
    ]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=log)
    api = PromAPI(url)
    try:
        ready = wait_until(lambda: api.client.get("/-/ready").is_success, 30)
        if not ready:
            raise RuntimeError(
                f"prometheus not ready (exit {proc.poll()}): {log_path.read_text()[-3000:]}"
            )
        yield api
    finally:
        api.client.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def settled_accounts(url: str, timeout: float = 60.0) -> dict[str, dict[str, Any]]:
    """The service's accounts once every event is scored and a campaign pass has run on them:
    two reads, a campaign interval apart, that agree."""
    deadline = time.monotonic() + timeout
    with client_for(url) as c:
        settle(c)
        before = all_accounts(c, READ)
        while True:
            time.sleep(2.5)  # > campaign_interval_s + a rescoring pass
            settle(c)
            now = all_accounts(c, READ)
            same = {a: (r["score"], r["flagged"]) for a, r in now.items()} == {
                a: (r["score"], r["flagged"]) for a, r in before.items()
            }
            if same or time.monotonic() > deadline:
                return now
            before = now


@contextmanager
def observability_stack(tmp: Path) -> Iterator[Stack]:
    """Train a small model; serve it (real uvicorn, free localhost port); start a real Prometheus
    scraping it every second with the project's rules; replay another generated day into the
    service; wait until Prometheus has scraped the settled state and evaluated its rules."""
    model, model_file = train_model(tmp)
    events = generate("demo", seed=2, scale=0.3).events.sort("ts", "request_id")
    events_file = tmp / "events.parquet"
    events.write_parquet(events_file)
    settings = Settings(
        model_path=model_file,
        port=free_port(),
        ingest_tokens=[INGEST],
        read_tokens=[READ],
        snapshot_path=tmp / "state",
        snapshot_interval_s=1.0,
        rescore_interval_s=0.2,
        campaign_interval_s=1.0,  # campaigns detected within the test, not after 30 s
        top_n=20,
    )
    target = f"127.0.0.1:{settings.port}"
    with (
        ThreadServer(settings, model) as server,
        running_prometheus(prometheus_config(tmp, target), tmp) as api,
    ):
        # scraped at least once before the traffic, so the rates see it arrive
        if not wait_until(lambda: bool(api.query(f'up{{instance="{target}"}} == 1')), 30):
            targets = api.get("/api/v1/targets")["activeTargets"]
            errors = [(t["scrapeUrl"], t["health"], t["lastError"]) for t in targets]
            raise AssertionError(f"Prometheus cannot scrape the service: {errors}")
        replay(events_file, server.url, token=INGEST, progress=False)
        accounts = settled_accounts(server.url)
        flagged = {a for a, row in accounts.items() if row["flagged"]}
        # Prometheus has scraped the settled state and evaluated the rules on it (if not in
        # time, the tests' own assertions say what is missing)
        wait_until(
            lambda: bool(
                api.query(f"distillguard_window_events == {events.height}")
                and api.query("distillguard_accounts_pending == 0")
                and api.query(f"distillguard_flagged_accounts == {len(flagged)}")
                and api.query('ALERTS{alertname="DistillguardNewHighSeverityAccount"}')
            ),
            30,
        )
        time.sleep(2)  # two more scrapes and rule evaluations
        yield Stack(
            api=api,
            service=server.url,
            instance=target,
            n_events=events.height,
            flagged=flagged,
            high={a for a, row in accounts.items() if row["score"] >= 99},
        )
