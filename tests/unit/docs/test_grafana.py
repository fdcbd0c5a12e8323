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


def test_alert_rules_use_written_metrics_and_have_no_drill_rule():
    with open(RULES, encoding="utf-8") as handle:
        rules = [r for group in yaml.safe_load(handle)["groups"] for r in group["rules"]]
    assert [r["alert"] for r in rules] == ["CcliteBackupNoGoodBackup", "CcliteBackupSizeAnomaly"]
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"} and rule["annotations"]["summary"]
        assert set(METRIC_RE.findall(rule["expr"])) <= set(_report.METRICS) and METRIC_RE.search(rule["expr"])
    assert not any("drill" in m for m in _report.METRICS), "a drill metric exists now: add its alert rule and panel"


def test_promtool_accepts_the_alert_rules():
    if not shutil.which("promtool"):
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    out = subprocess.run(["promtool", "check", "rules", RULES], capture_output=True, text=True, check=False)
    assert out.returncode == 0 and "SUCCESS: 2 rules found" in out.stdout, out.stdout + out.stderr
