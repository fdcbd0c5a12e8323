# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The history report's facts (gaps, anomalies, complete set, recovery point, drills), its page,
and the run reports it reads."""

from __future__ import annotations

import datetime
import json
import re

from ansible_collections.cclite.backup.plugins.module_utils._reporting import _html, _report

NOW = datetime.datetime(2026, 3, 10, 12, 0, tzinfo=datetime.timezone.utc)


def item(day: int, size: int = 1000, state: str = "good", store: str = "postgres", series: str = "") -> dict:
    infix = "_%s" % series if series else ""
    return {"name": "%s_backup%s_202603%02d_020000.sql.gz" % (store, infix, day), "created": "2026-03-%02dT02:00:30+00:00" % day,
            "size": size, "duration": 12.5, "series": series, "legacy": False,
            "verification": {"state": state, "checks": {"stream": "ok"}, "problems": [] if state == "good" else ["x: cut"]}}


def run(day: int, status: str, store: str = "postgresql", kind: str = "backup") -> dict:
    return {"run_id": "202603%02d_020000" % day, "playbook": kind, "started": "2026-03-%02dT02:00:00+00:00" % day,
            "ended": "2026-03-%02dT02:05:00+00:00" % day, "status": status, "stores": [store],
            "results": [{"store": store, "action": "backup", "target": "", "status": status, "error": "pg_dump failed" if status == "failed" else None}]}


def listing(*items: dict, directory: str = "/b/postgresql") -> dict:
    return {"directory": directory, "backups": list(reversed(items)), "problems": []}  # the info modules list newest first


def facts(catalog: dict, runs: list | None = None) -> dict:
    return _html.build({"h1": {"catalog": catalog, "runs": runs or []}}, _html.Trend(), NOW)["hosts"][0]


def test_gaps_tell_a_failed_night_from_a_missed_one_up_to_the_last_night_known():
    host = facts({"postgresql": [listing(item(1), item(2), item(5))]}, [run(3, "failed"), run(6, "failed", store="redis")])
    store = host["stores"][0]
    assert [(g["night"], g["kind"]) for g in store["gaps"]] == [("2026-03-03", "failed"), ("2026-03-04", "missed")]
    assert store["gaps"][0]["error"] == "pg_dump failed"
    # a failed last night (after the newest backup) is a gap too
    store = facts({"postgresql": [listing(item(1), item(2))]}, [run(3, "failed")])["stores"][0]
    assert [g["night"] for g in store["gaps"]] == ["2026-03-03"]


def test_anomalies_are_the_size_trend_of_each_backup_against_the_ones_before_it():
    sizes = [1000, 1010, 990, 1005, 5000, 1000, 300]
    store = facts({"postgresql": [listing(*(item(d + 1, s) for d, s in enumerate(sizes)))]})["stores"][0]
    assert store["anomalies"] == [store["backups"][4]["name"], store["backups"][6]["name"]]
    assert "much larger" in store["backups"][4]["anomaly"] and "much smaller" in store["backups"][6]["anomaly"]
    assert store["backups"][5]["anomaly"] is None  # the median of the 5 before it is still ~1000
    # the same rule as the run reports: fewer than min_history earlier backups never warn
    assert facts({"postgresql": [listing(item(1, 10), item(2, 5000))]})["stores"][0]["anomalies"] == []


def test_recovery_point_and_complete_set_count_only_good_backups():
    host = facts({
        "postgresql": [listing(item(8), item(9, state="bad"))],
        "redis": [listing(item(8, store="redis"), item(9, store="redis"), directory="/b/redis")],
    })
    pg, redis = host["stores"]
    assert pg["newest_good"]["name"] == item(8)["name"] and pg["recovery_point_hours"] == 58.0
    assert redis["recovery_point_hours"] == 34.0
    assert host["complete_set"]["night"] == "2026-03-08"
    assert host["complete_set"]["backups"] == {"postgresql": item(8)["name"], "redis": item(8, store="redis")["name"]}
    unverified = facts({"postgresql": [listing(item(8, state="unverified"))]})
    assert unverified["complete_set"] is None and unverified["stores"][0]["recovery_point_hours"] is None


def test_series_and_s3_copies():
    s3 = {"directory": "s3://bucket/cc-lite/postgresql", "backups": [item(2, series="crm")]}
    host = facts({"postgresql": [listing(item(1, series="crm"), item(2, series="crm")), s3]})
    assert len(host["stores"]) == 1 and host["stores"][0]["label"] == "postgresql/crm"
    assert [b["offsite"] for b in host["stores"][0]["backups"]] == [False, True]


def test_drill_is_only_a_successful_drill_run():
    assert facts({}, [run(2, "ok")])["last_drill"] is None
    assert facts({}, [run(3, "failed", kind="drill"), run(2, "ok", kind="drill")])["last_drill"]["run_id"] == "20260302_020000"


def test_drill_records_of_a_verify_run_count_when_every_drill_passed():
    drill = {"store": "redis", "action": "drill", "status": "ok"}
    passed, failed = dict(run(4, "ok"), results=[drill]), dict(run(5, "failed"), results=[drill, dict(drill, status="failed")])
    assert facts({}, [failed, passed])["last_drill"]["run_id"] == passed["run_id"]
    assert facts({}, [dict(run(6, "ok"), results=[dict(drill, action="verify")])])["last_drill"] is None


def test_page_marks_gaps_and_anomalies_and_embeds_the_facts():
    sizes = [1000, 1010, 990, 1005, 5000]
    built = _html.build({"db<1>": {"catalog": {"postgresql": [listing(*(item(d + 1, s) for d, s in enumerate(sizes) if d != 2))]},
                                   "runs": [run(9, "ok", kind="drill")]}}, _html.Trend(), NOW)
    page = _html.render(built, "<b>title</b>")
    assert "<b>title</b>" not in page and "&lt;b&gt;title&lt;/b&gt;" in page and 'data-host="db&lt;1&gt;"' in page
    assert page.count('<svg class="chart"') == 2
    assert re.findall(r'class="gap (\w+)" data-night="([\d-]+)"', page) == [("missed", "2026-03-03")] * 2
    assert re.findall(r'class="bar anomaly" data-backup="([^"]+)"', page) == [item(5)["name"]]
    data = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S).group(1)
    assert json.loads(data) == json.loads(json.dumps(built, default=str))
    assert "no drill recorded" not in page
    assert "no drill recorded" in _html.render(_html.build({"h": {}}, _html.Trend(), NOW))


def test_read_runs_newest_first_cut_to_the_run(tmp_path):
    logs = str(tmp_path / "logs")
    for day, kind, status in ((1, "backup", "ok"), (2, "verify", "problems"), (3, "backup", "failed")):
        report = _report.build_report({"id": "x%d" % day, "kind": kind, "started": "2026-03-%02dT02:00:00+00:00" % day},
                                      "h1", [{"store": "redis", "action": kind, "status": status, "history": [1, 2]}])
        _report.write_run(logs, report, "202603%02d_020000" % day)
    (tmp_path / "logs" / "backup_20260304_020000.json").write_text("not json")
    (tmp_path / "logs" / "cron.log").write_text("x")
    runs = _report.read_runs(logs)
    assert [(r["run_id"], r["status"]) for r in runs] == [("x3", "failed"), ("x2", "problems"), ("x1", "ok")]
    assert set(runs[0]["results"][0]) == set(_report.RECORD_KEYS) and runs[0]["file"] == "backup_20260303_020000.json"
    assert [r["run_id"] for r in _report.read_runs(logs, ["verify"])] == ["x2"]
    assert _report.read_runs(str(tmp_path / "missing")) == []
