"""Prometheus on 127.0.0.1 with the project's scrape config and alert rules (deploy/prometheus/).

`pinpipe local up` plugs :func:`local_command` into its services; the tests start Prometheus with
:func:`prometheus_command` on a config made by :func:`render_config` (free ports, 1 s scrapes).
Prometheus itself comes from Debian's ``prometheus`` package (it brings ``promtool``).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import yaml


PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = PROJECT_ROOT / "deploy" / "prometheus"
CONFIG_FILE = PROMETHEUS_DIR / "prometheus.yml"
ALERTS_FILE = PROMETHEUS_DIR / "alerts.yml"
INSTALL_HINT = "apt-get install -y prometheus (Debian's package; it brings promtool)"


class PrometheusMissing(RuntimeError):
    pass


def binary(name: str = "prometheus") -> str:
    found = shutil.which(name)
    if found is None:
        raise PrometheusMissing(f"{name} is not installed: {INSTALL_HINT}")
    return found


def render_config(out_file: Path, targets: dict[str, list[str]] | None = None, scrape_interval: str | None = None,
                  rule_files: list[Path] | None = None) -> Path:
    """deploy/prometheus/prometheus.yml with other targets per job, scrape interval, rules (absolute paths)."""
    config = yaml.safe_load(CONFIG_FILE.read_text())
    if scrape_interval:
        config["global"]["scrape_interval"] = scrape_interval
        config["global"]["evaluation_interval"] = scrape_interval
    for job in config["scrape_configs"]:
        if targets and job["job_name"] in targets:
            job["static_configs"] = [{"targets": list(targets[job["job_name"]])}]
        if scrape_interval:
            job.pop("scrape_interval", None)
    config["rule_files"] = [str(p) for p in (rule_files or [ALERTS_FILE])]
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(yaml.safe_dump(config, sort_keys=False))
    return out_file


def prometheus_command(config_file: Path, port: int, storage_dir: Path, host: str = "127.0.0.1") -> list[str]:
    return [binary(), f"--config.file={config_file}", f"--web.listen-address={host}:{port}",
            f"--storage.tsdb.path={storage_dir}", "--storage.tsdb.retention.time=2d", "--web.enable-lifecycle",
            "--log.level=warn"]


def local_command(port: int, state_dir: Path) -> list[str]:
    """For `pinpipe local up`: Prometheus on 127.0.0.1:port scraping the job on its default port."""
    config = render_config(state_dir / "prometheus.yml")
    return prometheus_command(config, port, state_dir / "prometheus-data")


# -- what the dashboard and the alerts query (checked against a live Prometheus by the tests) --

DASHBOARD_FILE = PROJECT_ROOT / "deploy" / "grafana" / "dashboards" / "pinpipe.json"
# Grafana's variables, as a live Prometheus should see them: every query, a 1-minute rate window.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$query": ".+"}
_COMPARISON = re.compile(r"(==|!=|>=|<=|>|<)(?!\s*bool\b)")


def dashboard_queries(dashboard_file: Path = DASHBOARD_FILE) -> dict[str, str]:
    """{'<panel title> [<refId>]': PromQL with Grafana's variables filled in} for every panel target."""
    dashboard = json.loads(dashboard_file.read_text())
    queries = {}
    for panel in dashboard["panels"]:
        for target in panel.get("targets") or []:
            expr = target["expr"]
            for name, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(name, value)
            queries[f"{panel['title']} [{target['refId']}]"] = expr
    return queries


def alert_queries(alerts_file: Path = ALERTS_FILE) -> dict[str, str]:
    """{alert name: its expression}."""
    groups = yaml.safe_load(alerts_file.read_text())["groups"]
    return {rule["alert"]: rule["expr"].strip() for group in groups for rule in group["rules"] if "alert" in rule}


def with_bool(expr: str) -> str:
    """An alert expression whose comparisons keep every series (as 0/1) instead of filtering them.

    A healthy job's alert returns nothing; with ``bool`` it returns one series per thing it
    watches, which proves every metric and label it joins on is exported. Label matchers
    (``{a!="b"}``) and strings are left alone.
    """
    out, depth, quote, i = [], 0, None, 0
    while i < len(expr):
        char = expr[i]
        if quote:
            quote = None if char == quote else quote
        elif char in "\"'`":
            quote = char
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        elif depth == 0:
            match = _COMPARISON.match(expr, i)
            if match:
                out.append(match.group(1) + " bool")
                i = match.end()
                continue
        out.append(char)
        i += 1
    return "".join(out)
