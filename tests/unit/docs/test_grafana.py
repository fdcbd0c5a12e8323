# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Grafana dashboard and the Prometheus alert rules under docs/grafana/ query only the
metrics the collection writes (the writer's own table, _report.METRICS), and promtool accepts the rules."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

from ansible_collections.cclite.backup.plugins.module_utils._reporting import _report

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))), "docs", "grafana")
DASHBOARD = os.path.join(DOCS, "cclite-backup-dashboard.json")
RULES = os.path.join(DOCS, "cclite-backup-alerts.yml")
RULE_TESTS = os.path.join(DOCS, "cclite-backup-alerts-test.yml")
ALERTS = ["CcliteBackupNoGoodBackup", "CcliteBackupNoGoodDrill", "CcliteBackupNeverDrilled", "CcliteBackupSizeAnomaly"]
METRIC_RE = re.compile(r"\bcclite_[a-zA-Z0-9_:]+")


def queries(dashboard: dict) -> list[str]:
    found = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    found += [v["definition"] for v in dashboard["templating"]["list"] if v.get("definition")]
    return found


def test_dashboard_queries_every_written_metric_and_no_other():
    with open(DASHBOARD, encoding="utf-8") as handle:
        dashboard = json.load(handle)
    exprs = queries(dashboard)
    assert exprs and all(METRIC_RE.search(e) for e in exprs), "a query without a cclite metric"
    named = {m for e in exprs for m in METRIC_RE.findall(e)}
    assert named - set(_report.METRICS) == set(), "the dashboard queries metrics the collection does not write"
    assert set(_report.METRICS) - named == set(), "metrics the collection writes but the dashboard does not show"
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_alert_rules_use_written_metrics():
    with open(RULES, encoding="utf-8") as handle:
        rules = [r for group in yaml.safe_load(handle)["groups"] for r in group["rules"]]
    assert [r["alert"] for r in rules] == ALERTS
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"} and rule["annotations"]["summary"]
        assert set(METRIC_RE.findall(rule["expr"])) <= set(_report.METRICS) and METRIC_RE.search(rule["expr"])
    drill = {m for m in _report.METRICS if "drill" in m}
    assert {"cclite_backup_drill_last_success_timestamp_seconds", "cclite_backup_drill_duration_seconds"} <= drill
    assert any("drill" in m for r in rules for m in METRIC_RE.findall(r["expr"]))


def test_every_alert_has_a_case_that_fires_and_one_that_does_not():
    with open(RULE_TESTS, encoding="utf-8") as handle:
        cases = [c for test in yaml.safe_load(handle)["tests"] for c in test["alert_rule_test"]]
    for alert in ALERTS:
        mine = [c for c in cases if c["alertname"] == alert]
        assert any(c["exp_alerts"] for c in mine) and any(not c["exp_alerts"] for c in mine), alert


def promtool():
    if not shutil.which("promtool"):
        if os.environ.get("CI"):
            pytest.fail("promtool is not installed: apt-get install prometheus (tests/harness/system-packages.txt)")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return shutil.which("promtool")


def test_promtool_accepts_the_alert_rules():
    out = subprocess.run([promtool(), "check", "rules", RULES], capture_output=True, text=True, check=False)
    assert out.returncode == 0 and "SUCCESS: %d rules found" % len(ALERTS) in out.stdout, out.stdout + out.stderr


def test_the_alerts_fire_on_the_series_that_should_fire_them_and_only_then():
    out = subprocess.run([promtool(), "test", "rules", os.path.basename(RULE_TESTS)], cwd=DOCS, capture_output=True, text=True, check=False)
    assert out.returncode == 0 and "SUCCESS" in out.stdout, out.stdout + out.stderr
