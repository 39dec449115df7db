"""What ``deploy/`` ships for operators: the Grafana dashboard and the Prometheus alert rules
query only metrics the daemon exports, and ``promtool`` accepts the rules and the exposition.

``promtool`` comes from Debian's ``prometheus`` package (``.ci/run`` installs it); without it
the promtool checks skip on a laptop, never under ``CI=true``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest

from poller.daemon.metrics import PollerMetrics

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "poller.json"
RULES = ROOT / "deploy" / "prometheus" / "poller-rules.yml"
METRIC = re.compile(r"\bpoller_[a-z_]+")
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count",
                                                             "_created"), "gauge": ("",)}


def exported() -> set[str]:
    """Every sample name the daemon's registry can export (labelled metrics included)."""
    names: set[str] = set()
    for family in PollerMetrics().registry.collect():
        names.update(family.name + suffix for suffix in SUFFIXES[family.type])
    return names


def queries(node: Any) -> list[str]:
    """Every ``expr`` in a dashboard (panels, nested rows)."""
    found: list[str] = []
    if isinstance(node, dict):
        if isinstance(node.get("expr"), str):
            found.append(node["expr"])
        for value in node.values():
            found += queries(value)
    elif isinstance(node, list):
        for value in node:
            found += queries(value)
    return found


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        message = "promtool is not installed (Debian package prometheus)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}; CI must run these checks")
        pytest.skip(message)
    return path


def test_dashboard_queries_only_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    used = {name for expr in queries(dashboard) for name in METRIC.findall(expr)}
    assert used, "the dashboard queries poller's metrics"
    assert used <= exported(), sorted(used - exported())
    families = {name.removesuffix("_total").removesuffix("_bucket") for name in used}
    for wanted in ("poller_polls", "poller_poll_lateness_seconds", "poller_rate_limit_waits",
                   "poller_http_responses", "poller_status_transitions", "poller_member_events",
                   "poller_targets_retired", "poller_last_successful_tick_timestamp_seconds",
                   "poller_spool_waiting_results", "poller_webhook_events"):
        assert wanted in families, f"the dashboard shows {wanted}"


def test_dashboard_is_importable_as_is() -> None:
    """A Prometheus data source variable that every query uses, unique panel IDs, a uid."""
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert all('job=~"$job"' in t["expr"] or "$interval_seconds" in t["expr"]
                       for t in panel["targets"]), panel["title"]
    assert dashboard["uid"] == "poller"


def test_rules_query_only_exported_metrics() -> None:
    rules = yaml.safe_load(RULES.read_text())
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    used = {name for expr in exprs for name in METRIC.findall(expr)}
    assert used <= exported(), sorted(used - exported())
    assert len(exprs) >= 8


def test_promtool_accepts_the_rules() -> None:
    result = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_accepts_the_exposition() -> None:
    """``/metrics`` as the daemon serves it, with some of every kind observed, passes
    ``promtool check metrics`` (names, types, help, units)."""
    metrics = PollerMetrics()
    metrics.observe_poll_seconds("telnyx", 0.1)
    metrics.observe_poll_lateness("bandwidth", 0.2)
    metrics.observe_http_response("telnyx", 503)
    metrics.observe_rate_limit_wait("telnyx", 0.5)
    metrics.observe_internal_error("poll")
    metrics.observe_webhook("telnyx", rejected="bad_signature")
    result = subprocess.run([promtool(), "check", "metrics"],
                            input=generate_latest(metrics.registry), capture_output=True,
                            timeout=60, check=False)
    assert result.returncode == 0, (result.stdout + result.stderr).decode()


SERVICE = ROOT / "deploy" / "systemd" / "poller.service"


def test_the_documented_unit_is_the_shipped_one() -> None:
    docs = (ROOT / "docs" / "operations.md").read_text()
    shown = docs.split("## systemd", 1)[1].split("```ini\n", 1)[1].split("```", 1)[0]
    assert shown == SERVICE.read_text()


def test_the_unit_is_sandboxed() -> None:
    """``systemd-analyze security`` rates the unit's exposure at most 2.0 (of 10)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("systemd-analyze is not installed; CI must run this check")
        pytest.skip("systemd-analyze is not installed")
    result = subprocess.run([analyze, "security", "--offline=yes", str(SERVICE)],
                            capture_output=True, text=True, timeout=60, check=False)
    found = re.search(r"Overall exposure level for poller\.service: ([0-9.]+)", result.stdout)
    assert found is not None, result.stdout + result.stderr
    assert float(found.group(1)) <= 2.0, result.stdout
