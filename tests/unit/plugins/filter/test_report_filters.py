# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The table, the run summary, the webhook payloads, redaction and the schedule calendar."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.cclite.backup.plugins.filter.report import (
    notification_outcome, notification_payload, redact, run_summary, run_table, secret_values, size_trend)
from ansible_collections.cclite.backup.plugins.filter.schedule import cron_weekday, schedule_calendar

OK = {"store": "postgresql", "action": "backup", "target": "operator_demo", "status": "ok",
      "artifact": "/b/postgresql/postgres_backup_20251226_020000.sql.gz", "size": 2048, "duration": 1.25,
      "previous_size": 1024, "size_change": 1024, "size_change_percent": 100.0, "problems": [], "warnings": ["size trend: big"]}
FAILED = {"store": "redis", "action": "backup", "target": "", "status": "failed", "artifact": None, "size": None,
          "duration": None, "problems": [], "warnings": [], "error": "AUTH failed for s3cr3t-pw"}


def test_table_is_aligned_with_one_row_per_record_and_unreachable_hosts():
    lines = run_table({"db1": [OK], "db2": [FAILED]}, ["db3"])
    assert lines[0].split() == ["HOST", "STORE", "ACTION", "TARGET", "STATUS", "ARTIFACT", "SIZE", "CHANGE", "DURATION", "NOTE"]
    starts = {line.split()[0]: line for line in lines[2:]}
    assert set(starts) == {"db1", "db2", "db3"}
    column = lines[0].index("STATUS")
    assert [line[column:column + 11].strip() for line in lines[2:]] == ["OK", "FAILED", "UNREACHABLE"]
    assert "+1.0 KiB (+100.0%)" in starts["db1"] and "1.2s" in starts["db1"] and starts["db1"].endswith("size trend: big")
    assert starts["db2"].endswith("AUTH failed for s3cr3t-pw")
    with pytest.raises(AnsibleFilterError):
        run_table(["not", "a", "mapping"])


def test_summary_status_counts_errors_and_warnings():
    summary = run_summary({"db1": [OK], "db2": [FAILED]}, {"id": "20251226_020000", "kind": "backup"}, ["db3"])
    assert summary["status"] == "failed"
    assert summary["counts"] == {"ok": 1, "problems": 0, "failed": 1}
    assert summary["summary"] == "cclite.backup backup FAILED on 3 hosts: 1 ok, 1 failed, 1 host(s) unreachable (run 20251226_020000)"
    assert summary["errors"] == ["db2 redis backup: AUTH failed for s3cr3t-pw", "db3: the host failed or could not be reached"]
    assert summary["warnings"] == ["db1 postgresql backup operator_demo: size trend: big"]
    [result] = summary["hosts"][0]["results"]
    assert result["artifact"] == "postgres_backup_20251226_020000.sql.gz" and result["size_human"] == "2.0 KiB"
    assert run_summary({"db1": [dict(OK, status="problems", problems=["too old"])]})["status"] == "problems"
    assert run_summary({})["status"] == "failed"  # nothing ran is not a success


def test_slack_payload_fields():
    payload = notification_payload(run_summary({"db1": [OK], "db2": [FAILED]}, {"kind": "verify"}), "slack")
    assert payload["text"].startswith(":x: cclite.backup verify FAILED on 2 hosts")
    first, second, errors, warnings = payload["attachments"]
    assert first["title"] == "db1 / postgresql / operator_demo" and first["color"] == "warning"
    assert {f["title"]: f["value"] for f in first["fields"]} == {
        "Status": "OK", "Artifact": "postgres_backup_20251226_020000.sql.gz", "Size": "2.0 KiB",
        "Change vs previous": "+1.0 KiB (+100.0%)", "Duration": "1.2s"}
    assert second["title"] == "db2 / redis / backup" and second["color"] == "danger"
    assert second["text"] == "• AUTH failed for s3cr3t-pw"
    assert errors["title"] == "Errors" and warnings["title"] == "Warnings"
    json_payload = notification_payload(run_summary({"db1": [OK]}), "json")
    assert json_payload["status"] == "ok" and json_payload["text"] == json_payload["summary"]
    with pytest.raises(AnsibleFilterError):
        notification_payload({}, "xml")


def test_redact_masks_secrets_everywhere_and_their_url_forms():
    data = {"text": "AUTH failed for s3cr3t-pw", "list": ["https://hooks/T0/B0/xy z", "https://hooks/T0/B0/xy%20z"], "n": 3}
    out = redact(data, ["s3cr3t-pw", "xy z", "", "ab", None, True])
    assert out == {"text": "AUTH failed for ********", "list": ["https://hooks/T0/B0/********", "https://hooks/T0/B0/********"], "n": 3}
    assert redact("nothing", []) == "nothing"
    assert redact("a ab abc", ["ab"]) == "a ab abc"  # too short to mask


def test_secret_values_by_name_on_every_host():
    hostvars = {"db1": {"postgresql_backup_login_password": "pw-1", "backup_root": "/b", "vault_x": "v"},
                "db2": {"redis_backup_login_password": "pw-2", "backup_s3_secret_key": "sk", "n_token": 5}}
    pattern = "(?i)(_key|password|token)$|^vault_"
    assert secret_values(hostvars, ["db1", "db2", "gone"], pattern) == ["pw-1", "pw-2", "sk", "v"]
    with pytest.raises(AnsibleFilterError):
        secret_values(hostvars, ["db1"], "(")


def test_notification_outcome():
    assert notification_outcome({"skipped": True}, "webhook") == []
    assert notification_outcome({"status": 204}, "webhook")[0]["status"] == "ok"
    [bad] = notification_outcome({"status": -1, "msg": "Request failed: connection refused"}, "healthcheck")
    assert bad == {"channel": "healthcheck", "status": "failed", "http_status": -1,
                   "message": "healthcheck could not be delivered: Request failed: connection refused"}


@pytest.mark.parametrize("job, calendar", [
    ({"minute": 0, "hour": 2}, "*-*-* 02:00:00"),
    ({"minute": 0, "hour": 3, "weekday": 0}, "Sun *-*-* 03:00:00"),
    ({"minute": 45, "hour": 5, "weekday": "1,2,3,4,5"}, "Mon,Tue,Wed,Thu,Fri *-*-* 05:45:00"),
    ({"minute": 15, "hour": "*", "weekday": "sat"}, "Sat *-*-* *:15:00"),
    ({"minute": 0, "hour": 7, "weekday": 7}, "Sun *-*-* 07:00:00"),
    ({"on_calendar": "hourly", "minute": "x"}, "hourly"),
])
def test_schedule_calendar(job, calendar):
    assert schedule_calendar(dict(job, name="j")) == calendar


@pytest.mark.parametrize("job", [{"hour": 24}, {"minute": "*/5"}, {"weekday": "someday"}, {"weekday": 8}])
def test_schedule_calendar_refuses_what_it_cannot_translate(job):
    with pytest.raises(AnsibleFilterError):
        schedule_calendar(dict(job, name="j"))
    if "weekday" in job:
        with pytest.raises(AnsibleFilterError):
            cron_weekday(dict(job, name="j"))


def test_size_trend_uses_the_history_the_module_returned():
    new = {"store": "postgresql", "action": "backup", "status": "ok", "artifact": "/b/postgresql/x.sql.gz",
           "size": 400, "history": [1000, 1100, 900, 1000], "created": "2026-11-27T02:00:00+00:00"}
    verify = {"store": "postgresql", "action": "verify", "status": "ok", "artifact": None}
    out = size_trend([new, verify], min_history=3)
    assert "history" not in out[0]
    assert out[0]["previous_size"] == 1000 and out[0]["size_change"] == -600 and out[0]["median_size"] == 1000
    assert out[0]["warnings"] == ["size trend: 400 B is 40% of the median of the previous 4 backups (1000 B): much smaller, data may be missing"]
    assert out[1] == dict(verify, warnings=[])
    assert size_trend([dict(new, history=[1000])], min_history=3)[0]["warnings"] == []  # too little history
    with pytest.raises(AnsibleFilterError):
        size_trend("not a list")
