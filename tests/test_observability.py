"""The observability stack: ``Dockerfile``, ``docker-compose.yml`` and ``deploy/``.

- promtool: the Prometheus config and rules are valid and the rule unit tests pass, with a
  firing and a not-firing case for every alert;
- end to end: a REAL Prometheus (Debian's ``prometheus``) scrapes a REAL service (uvicorn on a
  free localhost port) that was fed a generated scenario, with the project's rule files loaded;
  every PromQL expression of the dashboard and of the rules must return data from it;
- structure: the dashboard JSON (datasource uids, panel ids, targets) and the compose file
  (services, ports, mounted files, environment names), which cannot run here (no container
  engine).

The promtool and Prometheus tests skip, saying why, when the binaries are not installed
(``apt-get install prometheus``; ``.ci/run`` does it).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from service.settings import Settings
from tests.observability_support import (
    COMPOSE,
    DASHBOARD_PROVIDERS,
    DASHBOARDS,
    DATASOURCES,
    DEPLOY,
    DOCKERFILE,
    GRAFANA_BUILTINS,
    LABEL_VALUES,
    PROM_CONFIG,
    PROM_DIR,
    PROMETHEUS,
    PROMTOOL,
    REPO,
    RULE_FILES,
    RULE_TESTS,
    Stack,
    all_panels,
    base_expressions,
    bind_mounts,
    dashboard_exprs,
    environment,
    has_numbers,
    load_yaml,
    observability_stack,
    promtool,
    provisioned_datasource_uid,
    regex_value,
    replay_token_envvar,
    rules,
    substitute,
    variable_query,
    with_token_file,
)

needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not installed (Debian: apt-get install prometheus; .ci/run installs it)",
)
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None,
    reason="prometheus not installed (Debian: apt-get install prometheus; .ci/run installs it)",
)


# -------------------------------------------------------------------- promtool


@needs_promtool
def test_promtool_check_config(tmp_path: Path) -> None:
    """The config as is, but for the scrape token's file: the compose secret is mounted at
    /run/secrets/read_token in the container only (promtool checks that the file exists)."""
    config = with_token_file(load_yaml(PROM_CONFIG), tmp_path, "a-read-token")
    checked = tmp_path / "prometheus.yml"
    checked.write_text(yaml.safe_dump(config, sort_keys=False))
    shutil.copytree(PROM_DIR / "rules", tmp_path / "rules")
    done = promtool("check", "config", checked)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


@needs_promtool
def test_promtool_check_rules() -> None:
    assert RULE_FILES, "no rule file in deploy/prometheus/rules/"
    done = promtool("check", "rules", *RULE_FILES)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAILED" not in done.stdout + done.stderr


@needs_promtool
def test_promtool_test_rules() -> None:
    assert RULE_TESTS, "no rule unit test in deploy/prometheus/tests/"
    done = promtool("test", "rules", *RULE_TESTS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == len(RULE_TESTS), done.stdout


# -------------------------------------------------------------------- rules, statically


def test_every_alert_is_documented_and_waits_sensibly() -> None:
    alerts = rules("alert")
    names = [a["alert"] for a in alerts]
    assert len(names) == len(set(names)), "duplicate alert names"
    expected = {
        "DistillguardNewHighSeverityAccount",
        "DistillguardCampaignGrowing",
        "DistillguardIngestStalled",
        "DistillguardRescoringSlow",
        "DistillguardSnapshotStale",
    }
    assert expected <= set(names)
    for alert in alerts:
        name = alert["alert"]
        ann = alert.get("annotations", {})
        assert ann.get("summary", "").strip(), f"{name}: no summary annotation"
        assert len(ann.get("description", "").split()) >= 10, f"{name}: no real description"
        assert alert.get("labels", {}).get("severity") in {"critical", "warning", "info"}, name
        assert "for" in alert, f"{name}: say `for:` explicitly (0m for one-shot events)"
        if name != "DistillguardNewHighSeverityAccount" and "increase(" not in alert["expr"]:
            # conditions on a state must hold a while before anyone is woken up
            assert alert["for"] not in ("0", "0s", "0m"), f"{name}: fires on one evaluation"


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    alerts = {a["alert"] for a in rules("alert")}
    fires: set[str] = set()
    quiet: set[str] = set()
    tested_rule_files: set[Path] = set()
    for path in RULE_TESTS:
        doc = load_yaml(path)
        tested_rule_files |= {(path.parent / f).resolve() for f in doc["rule_files"]}
        for case in doc["tests"]:
            for check in case.get("alert_rule_test", []):
                name = check["alertname"]
                assert name in alerts, f"{path.name}: test of unknown alert {name}"
                (fires if check.get("exp_alerts") else quiet).add(name)
                for exp in check.get("exp_alerts") or []:
                    assert {"summary", "description"} <= set(exp.get("exp_annotations", {})), (
                        f"{path.name}: {name}: assert the rendered annotations too"
                    )
    assert alerts - fires == set(), "alerts with no firing test case"
    assert alerts - quiet == set(), "alerts with no not-firing test case"
    assert {p.resolve() for p in RULE_FILES} <= tested_rule_files


def test_every_recording_rule_is_unit_tested() -> None:
    tested = " ".join(
        check["expr"]
        for path in RULE_TESTS
        for case in load_yaml(path)["tests"]
        for check in case.get("promql_expr_test", [])
    )
    for rule in rules("record"):
        assert rule["record"].startswith("distillguard:"), rule["record"]
        assert rule["record"] in tested, f"recording rule {rule['record']} has no promql_expr_test"


def test_config_loads_every_rule_file() -> None:
    config = load_yaml(PROM_CONFIG)
    loaded = {p.resolve() for g in config["rule_files"] for p in PROM_DIR.glob(g)}
    assert loaded == {p.resolve() for p in RULE_FILES}
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    # /metrics needs the read token: Prometheus sends it from the secret compose mounts
    assert jobs["distillguard"]["authorization"] == {
        "type": "Bearer",
        "credentials_file": "/run/secrets/read_token",
    }


# -------------------------------------------------------------------- the dashboard


def test_dashboards_are_valid() -> None:
    assert DASHBOARDS, "no dashboard in deploy/grafana/dashboards/"
    uid = provisioned_datasource_uid()
    titles = set()
    for path in DASHBOARDS:
        dash = json.loads(path.read_text())
        titles.add(dash["title"])
        assert dash.get("uid"), f"{path.name}: pin the dashboard uid"
        assert dash.get("id") is None, f"{path.name}: provisioned dashboards carry no numeric id"
        assert int(dash["schemaVersion"]) >= 39, f"{path.name}: schemaVersion is old"
        panels = list(all_panels(dash))
        ids = [p["id"] for p in panels]
        assert all(isinstance(i, int) and i > 0 for i in ids), ids
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        cells: set[tuple[int, int]] = set()
        for panel in panels:
            where = f"{path.name}: panel {panel['id']} {panel.get('title')!r}"
            assert panel.get("title"), where
            pos = panel["gridPos"]
            assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, where
            mine = {
                (pos["y"] + dy, pos["x"] + dx) for dy in range(pos["h"]) for dx in range(pos["w"])
            }
            assert not mine & cells, f"{where} overlaps another panel"
            cells |= mine
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == {"type": "prometheus", "uid": uid}, where
            assert panel.get("targets"), f"{where}: no query"
            refs = [t["refId"] for t in panel["targets"]]
            assert len(refs) == len(set(refs)), f"{where}: duplicate refIds"
            for target in panel["targets"]:
                assert target.get("expr", "").strip(), f"{where} {target['refId']}: no expr"
                assert target["datasource"]["uid"] == uid, f"{where} {target['refId']}"
        for var in dash["templating"]["list"]:
            if var["type"] == "query":
                assert var["datasource"]["uid"] == uid, f"{path.name}: variable {var['name']}"
                assert LABEL_VALUES.match(variable_query(var)), variable_query(var)
        for ann in dash["annotations"]["list"]:
            if "expr" in ann:
                assert ann["datasource"]["uid"] == uid, f"{path.name}: annotation {ann['name']}"
        # every variable an expression uses is defined (or a Grafana built-in)
        names = {v["name"]: "x" for v in dash["templating"]["list"]} | GRAFANA_BUILTINS
        for _, expr in dashboard_exprs(dash):
            substitute(expr, names)  # raises KeyError on an undefined variable
    assert "distillguard — extraction monitor" in titles


def test_dashboard_shows_what_the_issue_asks_for() -> None:
    dash = json.loads((DEPLOY / "grafana" / "dashboards" / "distillguard.json").read_text())
    panels = {p["title"]: p for p in all_panels(dash)}
    exprs = " ".join(e for _, e in dashboard_exprs(dash))
    for metric in (
        "distillguard_events_ingested_total",
        "distillguard_events_rejected_total",
        "distillguard_accounts_by_severity",
        "distillguard_top_account_score",
        "distillguard_campaigns",
        "distillguard_campaign_size_bucket",
        "distillguard_rescore_duration_seconds_bucket",
        "distillguard_accounts_pending",
        "distillguard_snapshot_age_seconds",
        "distillguard_model_info",
    ):
        assert metric in exprs, metric
    heatmap = panels["Account score distribution over time"]
    assert heatmap["type"] == "heatmap"
    assert heatmap["targets"][0]["format"] == "heatmap"
    assert "distillguard_account_score_bucket" in heatmap["targets"][0]["expr"]
    latency = " ".join(t["expr"] for t in panels["Rescoring latency"]["targets"])
    assert "histogram_quantile(0.5," in latency and "histogram_quantile(0.99," in latency
    top = panels["Top suspicious accounts"]
    assert top["type"] == "table" and top["targets"][0].get("instant")
    assert {v["name"] for v in dash["templating"]["list"]} >= {"job", "instance"}


# -------------------------------------------------------------------- compose and Dockerfile


def test_compose_services_ports_and_mounts() -> None:
    compose = load_yaml(COMPOSE)
    services = compose["services"]
    assert {"distillguard", "feeder", "prometheus", "grafana"} <= set(services)
    ports = {name: [str(p) for p in svc.get("ports", [])] for name, svc in services.items()}
    # the service publishes no port and sits on the internal network only (so does the feeder);
    # Prometheus and Grafana publish on the host's loopback only
    networks = compose["networks"]
    for name in ("distillguard", "feeder"):
        assert not ports[name], f"{name} publishes a port"
        assert services[name]["networks"] == ["internal"], name
    assert networks["internal"]["internal"] is True
    assert "8000" in [str(p) for p in services["distillguard"]["expose"]]
    assert ports["prometheus"] == ["127.0.0.1:9090:9090"]
    assert ports["grafana"] == ["127.0.0.1:3000:3000"]
    assert "internal" in services["prometheus"]["networks"]  # to scrape the service
    declared_volumes = set(compose.get("volumes") or {})
    for name, svc in services.items():
        build = svc.get("build")
        if build is not None:
            context = REPO / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = (
                "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            )
            assert (context / dockerfile).is_file(), f"{name}: no {dockerfile} in {context}"
        for source, target in bind_mounts(svc):
            assert (REPO / source).exists(), f"{name}: mounted {source} -> {target} is missing"
        for vol in svc.get("volumes", []):
            source = vol.split(":")[0] if isinstance(vol, str) else vol.get("source", "")
            if source and not source.startswith((".", "/")):
                assert source in declared_volumes, f"{name}: undeclared volume {source}"
    # the feeder runs the service's image, waits for it and has no HTTP healthcheck of its own
    assert services["feeder"]["image"] == services["distillguard"]["image"]
    assert services["feeder"]["depends_on"]["distillguard"]["condition"] == "service_healthy"
    assert services["feeder"]["healthcheck"] == {"disable": True}
    feeder_cmd = " ".join(services["feeder"]["command"])
    assert "/app/deploy/feeder.py" in feeder_cmd and (DEPLOY / "feeder.py").is_file()


def test_compose_wires_prometheus_and_grafana_to_the_repo_files() -> None:
    services = load_yaml(COMPOSE)["services"]
    # Prometheus: the config and rules it is given are the repo's, where the config expects them
    prom = services["prometheus"]
    mounts = {target: (REPO / source).resolve() for source, target in bind_mounts(prom)}
    flags = dict(f.split("=", 1) for f in prom["command"] if "=" in f)
    config_in_container = flags["--config.file"]
    assert mounts[config_in_container] == PROM_CONFIG.resolve()
    config = load_yaml(PROM_CONFIG)
    config_dir = Path(config_in_container).parent
    for pattern in config["rule_files"]:
        rules_dir = str(config_dir / Path(pattern).parent)
        assert mounts.get(rules_dir) == (PROM_DIR / Path(pattern).parent).resolve(), pattern
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "distillguard"]
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == ["distillguard:8000"], "scrape the compose service on its port"
    # Grafana: provisioning and dashboards mounted where the provider looks for them
    graf = services["grafana"]
    mounts = {target: (REPO / source).resolve() for source, target in bind_mounts(graf)}
    assert mounts["/etc/grafana/provisioning"] == (DEPLOY / "grafana" / "provisioning").resolve()
    (provider,) = [p for f in DASHBOARD_PROVIDERS for p in load_yaml(f)["providers"]]
    dash_dir = provider["options"]["path"]
    assert mounts[dash_dir] == (DEPLOY / "grafana" / "dashboards").resolve()
    home = environment(graf)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(dash_dir + "/")
    assert (DEPLOY / "grafana" / "dashboards" / Path(home).name).is_file()
    (source,) = [s for p in DATASOURCES for s in load_yaml(p)["datasources"]]
    assert source["url"] == "http://prometheus:9090"


def test_compose_environment_names_are_settings() -> None:
    """A misspelt DISTILLGUARD_* variable would be silently ignored (extra="ignore")."""
    fields = {f"DISTILLGUARD_{name.upper()}" for name in Settings.model_fields}
    known = fields | {replay_token_envvar()}
    services = load_yaml(COMPOSE)["services"]
    for name, svc in services.items():
        for var in environment(svc):
            if var.startswith("DISTILLGUARD_"):
                assert var in known, f"{name}: {var} is not a Settings field"
    env = environment(services["distillguard"])
    assert {"DISTILLGUARD_INGEST_TOKENS", "DISTILLGUARD_READ_TOKENS"} <= set(env)
    feeder = environment(services["feeder"])
    assert feeder[replay_token_envvar()] == env["DISTILLGUARD_INGEST_TOKENS"]
    assert feeder["FEED_READ_TOKEN"] == env["DISTILLGUARD_READ_TOKENS"]
    # tokens are required, never a well-known fallback: ${VAR:?message}
    required = re.compile(r"^\$\{(?P<var>[A-Z_]+):\?[^}]+\}$")
    for value in (env["DISTILLGUARD_INGEST_TOKENS"], env["DISTILLGUARD_READ_TOKENS"]):
        assert required.match(value), value
    assert required.match(env["DISTILLGUARD_READ_TOKENS"])["var"] == "READ_TOKEN"  # type: ignore[index]
    for value in [*env.values(), *feeder.values()]:
        assert ":-" not in value, f"a fallback value: {value}"
    assert env["DISTILLGUARD_METRICS_PUBLIC"] == "false"
    # Prometheus gets the same READ_TOKEN as a secret file (prometheus.yml credentials_file)
    compose = load_yaml(COMPOSE)
    assert compose["secrets"]["read_token"] == {"environment": "READ_TOKEN"}
    assert "read_token" in services["prometheus"]["secrets"]
    for script in (DEPLOY / "entrypoint.sh", DOCKERFILE):
        for var in re.findall(r"\bDISTILLGUARD_[A-Z_]+", script.read_text()):
            assert var in known, f"{script.name}: {var} is not a Settings field"


def test_dockerfile() -> None:
    text = DOCKERFILE.read_text()
    lines = [ln.strip() for ln in text.replace("\\\n", " ").splitlines()]
    instructions = [ln for ln in lines if ln and not ln.startswith("#")]
    assert instructions[0] == "FROM python:3.11-slim"
    users = [ln.split()[1] for ln in instructions if ln.startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), "run as a non-root user"
    (health,) = [ln for ln in instructions if ln.startswith("HEALTHCHECK")]
    assert "/healthz" in health
    assert any(ln.startswith("RUN pip install .") for ln in instructions)
    for ln in instructions:
        if ln.startswith("COPY ") and "--from" not in ln:
            for source in ln.split()[1:-1]:
                assert (REPO / source).exists(), f"COPY {source}: missing"
    entrypoint = DEPLOY / "entrypoint.sh"
    assert "/app/deploy/entrypoint.sh" in text and entrypoint.stat().st_mode & 0o111
    script = entrypoint.read_text()
    assert "distillguard train" in script and "distillguard serve" in script
    assert "${DISTILLGUARD_HOST:-0.0.0.0}" in script and "${DISTILLGUARD_PORT:-8000}" in script


# -------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if PROMETHEUS is None:
        pytest.skip("prometheus not installed (Debian: apt-get install prometheus)")
    with observability_stack(tmp_path_factory.mktemp("observability")) as running:
        yield running


@needs_prometheus
def test_service_fed_a_scenario_flags_accounts(stack: Stack) -> None:
    api = stack.api
    assert stack.flagged, "the replayed scenario should flag attackers"
    assert stack.high, "some attackers should score >= 99 (the high band)"
    (window,) = api.query("distillguard_window_events")
    assert float(window["value"][1]) == stack.n_events
    (flagged,) = api.query("distillguard_flagged_accounts")
    assert float(flagged["value"][1]) == len(stack.flagged)


@needs_prometheus
def test_every_dashboard_query_returns_data(stack: Stack) -> None:
    api = stack.api
    for path in DASHBOARDS:
        dash = json.loads(path.read_text())
        # resolve the template variables the way Grafana does: in order, each from Prometheus
        values = dict(GRAFANA_BUILTINS)
        for var in dash["templating"]["list"]:
            m = LABEL_VALUES.match(variable_query(var))
            assert m, variable_query(var)
            selector = substitute(m["selector"], values)
            found = api.get(f"/api/v1/label/{m['label']}/values", **{"match[]": selector})
            assert found, f"{path.name}: variable ${var['name']} has no value"
            values[var["name"]] = regex_value(found) if var.get("multi") else found[0]
        assert values["instance"] == regex_value([stack.instance])
        empty, nan_only = [], []
        for where, expr in dashboard_exprs(dash):
            query = substitute(expr, values)
            result = api.query(query)
            if not result:
                empty.append(f"{where}: {query}")
            elif not has_numbers(result):
                nan_only.append(f"{where}: {query}")
        assert not empty, "dashboard queries with no data:\n" + "\n".join(empty)
        assert not nan_only, "dashboard queries returning only NaN:\n" + "\n".join(nan_only)


@needs_prometheus
def test_prometheus_loaded_every_rule_and_each_returns_data(stack: Stack) -> None:
    api = stack.api
    groups = api.get("/api/v1/rules")["groups"]
    loaded = {r["name"]: r for g in groups for r in g["rules"]}
    in_files = {r.get("record") or r["alert"]: r for r in rules("record") + rules("alert")}
    assert set(loaded) == set(in_files)
    problems = []
    for name, rule in loaded.items():
        if rule["health"] != "ok":
            problems.append(f"{name}: {rule['health']} {rule.get('lastError')}")
        if rule["type"] == "recording":
            # the expression and the series it records
            for expr in (rule["query"], name):
                if not has_numbers(api.query(expr)):
                    problems.append(f"recording {name}: no data for {expr}")
        else:
            api.query(rule["query"])  # the whole condition evaluates (empty: not firing)
            for base in base_expressions(rule["query"]):
                if not api.query(base):
                    problems.append(f"alert {name}: no data for {base}")
    assert not problems, "\n".join(problems)


@needs_prometheus
def test_new_high_severity_accounts_alert_fires_and_nothing_else(stack: Stack) -> None:
    api = stack.api
    alerts = api.get("/api/v1/alerts")["alerts"]
    firing = [a for a in alerts if a["state"] == "firing"]
    new_high = {
        a["labels"]["account_id"]
        for a in firing
        if a["labels"]["alertname"] == "DistillguardNewHighSeverityAccount"
    }
    assert new_high, "the attackers scoring >= 99 should raise the alert"
    assert new_high <= stack.high, "only accounts the service scores >= 99"
    others = sorted(
        {a["labels"]["alertname"] for a in firing} - {"DistillguardNewHighSeverityAccount"}
    )
    assert not others, f"unexpected alerts firing: {others}"
    for a in firing:
        assert a["annotations"]["summary"] and a["annotations"]["description"]
        assert a["labels"]["account_id"] in a["annotations"]["summary"]


# -------------------------------------------------------------------- PromQL helper


def test_base_expressions() -> None:
    assert base_expressions("up{job='x'} == 0") == ["up{job='x'}"]
    assert base_expressions("increase(f_total[15m]) > 0") == ["increase(f_total[15m])"]
    assert base_expressions("a:b >= 99\nunless on (job, account_id)\n(a:b offset 30m >= 99)") == [
        "a:b",
        "a:b",
    ]
    assert base_expressions('x{reason="and"} / (y + z) > 0.05') == ['x{reason="and"} / (y + z)']
    assert base_expressions("distillguard:campaigns_over_50_members > 0") == [
        "distillguard:campaigns_over_50_members"
    ]
