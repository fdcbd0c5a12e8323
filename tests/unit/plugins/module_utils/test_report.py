# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Size trends from the catalog, run logs and reports, their retention, and the metrics file."""

from __future__ import annotations

import datetime
import json
import os

import pytest

from ansible_collections.cclite.backup.plugins.module_utils._reporting import _report


def make(directory, name, size):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name), "wb") as handle:
        handle.write(b"x" * size)
    return os.path.join(directory, name)


def test_size_history_follows_the_series_and_skips_newer_backups(tmp_path):
    pg = str(tmp_path / "postgresql")
    make(pg, "postgres_backup_20251220_020000.sql.gz", 100)
    make(pg, "postgres_backup_20251221_020000.sql.zst", 200)  # another compression, same series
    new = make(pg, "postgres_backup_20251222_020000.sql.gz", 300)
    make(pg, "postgres_backup_20251223_020000.sql.gz", 999)  # newer: not history
    make(pg, "postgres_backup_crm_20251221_020000.sql.gz", 5000)  # another series
    created, sizes = _report.size_history(new, "postgresql")
    assert sizes == [200, 100] and created.startswith("2025-12-22T02:00:00")
    crm = make(pg, "postgres_backup_crm_20251222_020000.sql.gz", 10)
    assert _report.size_history(crm, "postgresql")[1] == [5000]
    assert _report.size_history(str(tmp_path / "other" / "x.gz"), "postgresql") is None
    assert _report.size_history(new, "unknown") is None


def test_trend_warns_only_with_enough_history_and_a_real_departure():
    record = {"store": "postgresql", "action": "backup", "status": "ok", "size": 100}
    out = _report.trend(record, [1000, 1000, 1000], min_history=3)
    assert out["previous_size"] == 1000 and out["size_change"] == -900 and out["size_change_percent"] == -90.0
    assert out["median_size"] == 1000 and out["median_ratio"] == 0.1
    assert len(out["warnings"]) == 1 and "much smaller" in out["warnings"][0]
    assert _report.trend(record, [1000, 1000], min_history=3)["warnings"] == []
    assert "much larger" in _report.trend(dict(record, size=5000), [1000] * 4)["warnings"][0]
    assert _report.trend(dict(record, size=1500), [1000] * 4)["warnings"] == []
    assert _report.trend(dict(record, status="failed"), [1000] * 4) == dict(record, status="failed", warnings=[])
    assert _report.trend(record, [])["warnings"] == [] and "previous_size" not in _report.trend(record, [])


def test_run_files_are_written_and_pruned_by_their_stamp(tmp_path):
    logs = str(tmp_path / "logs")
    run = {"id": "20251226_020000", "kind": "backup", "started": "2025-12-26T02:00:00+00:00"}
    records = [{"store": "postgresql", "action": "backup", "target": "db", "status": "ok", "artifact": "/b/x.sql.gz", "size": 5}]
    report = _report.build_report(run, "db1", records, [{"channel": "webhook", "status": "failed", "message": "HTTP 500"}])
    log, path = _report.write_run(logs, report, "20251226_020000")
    assert os.path.basename(log) == "backup_20251226_020000.log"
    log2 = _report.write_run(logs, report, "20251226_020000")[0]  # same second: a second name
    assert os.path.basename(log2) == "backup_20251226_020000_2.log"
    data = json.load(open(path))
    assert data["hosts"] == ["db1"] and data["status"] == "ok" and data["artifacts"][0]["artifact"] == "/b/x.sql.gz"
    assert "NOTIFY  webhook: failed" in open(log).read()
    make(logs, "cron.log", 1)
    make(logs, "verify_20250101_000000.json", 1)
    deleted = _report.prune_runs(logs, 30, now=datetime.datetime(2026, 1, 20))
    assert deleted == [os.path.join(logs, "verify_20250101_000000.json")]
    assert sorted(os.listdir(logs)) == ["backup_20251226_020000.json", "backup_20251226_020000.log",
                                        "backup_20251226_020000_2.json", "backup_20251226_020000_2.log", "cron.log"]
    with pytest.raises(Exception):
        _report.run_paths(logs, "../x", "20251226_020000")


def test_metrics_update_keeps_other_stores_and_round_trips(tmp_path):
    directory = str(tmp_path / "textfile")
    backup = {"store": "postgresql", "action": "backup", "target": 'db"1', "status": "ok", "artifact": "/a", "size": 2048,
              "duration": 1.5, "created": "2025-12-26T02:00:00+00:00", "median_ratio": 0.9}
    path = _report.write_metrics(directory, [backup], 1766714400.0)
    _report.write_metrics(directory, [{"store": "redis", "action": "verify", "target": "", "status": "problems"}], 1766728800.0)
    _report.write_metrics(directory, [dict(backup, status="failed", artifact=None)], 1766800000.0)
    samples = _report.parse_metrics(open(path).read())
    pg = (("store", "postgresql"), ("target", 'db"1'))
    assert samples[("cclite_backup_last_size_bytes", pg)] == 2048
    assert samples[("cclite_backup_last_success_timestamp_seconds", pg)] == 1766714400.0  # from the backup, kept after the failure
    assert samples[("cclite_backup_last_run_status", tuple(sorted(pg + (("action", "backup"),))))] == 0
    assert samples[("cclite_backup_last_verification_status", (("store", "redis"), ("target", "")))] == 0
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"
    assert not [n for n in os.listdir(directory) if n.endswith(".partial")]
    text = open(path).read()
    assert "# TYPE cclite_backup_last_size_bytes gauge" in text and 'target="db\\"1"' in text


def _cron_line(when):
    return "%s cclite-backup[42] backup: start (cclite.backup.backup)\n" % when.strftime("%Y-%m-%dT%H:%M:%S+0000")


def test_cron_log_is_closed_once_a_day_and_goes_with_the_run_logs(tmp_path):
    logs = str(tmp_path / "logs")
    os.makedirs(logs)
    cron = os.path.join(logs, "cron.log")
    day1 = datetime.datetime(2026, 1, 1, 2, 0, 0)
    with open(cron, "w") as handle:
        handle.write(_cron_line(day1) + "PLAY RECAP\n")
    # the same day: nothing to do
    assert _report.rotate_cron_log(logs, now=day1 + datetime.timedelta(hours=4)) is None
    # the next day: closed under the time it was closed, content unchanged; a dry run only says so
    day2 = datetime.datetime(2026, 1, 2, 2, 0, 1)
    closed = os.path.join(logs, "cron_20260102_020001.log")
    assert _report.rotate_cron_log(logs, now=day2, dry_run=True) == closed
    assert os.listdir(logs) == ["cron.log"]
    assert _report.rotate_cron_log(logs, now=day2) == closed
    assert os.listdir(logs) == ["cron_20260102_020001.log"]
    assert open(closed).read() == _cron_line(day1) + "PLAY RECAP\n"
    # kept as long as the run logs: 30 days after it was closed, then deleted by the same pruning
    assert _report.prune_runs(logs, 30, now=day2 + datetime.timedelta(days=29)) == []
    with open(cron, "w") as handle:
        handle.write(_cron_line(day2 + datetime.timedelta(days=30)))
    assert _report.prune_runs(logs, 30, now=day2 + datetime.timedelta(days=31)) == [closed]
    assert os.listdir(logs) == ["cron.log"]  # the open one is never pruned


def test_cron_log_rotation_leaves_odd_files_alone(tmp_path):
    logs = str(tmp_path)
    assert _report.rotate_cron_log(logs) is None  # none there
    open(os.path.join(logs, "cron.log"), "w").close()
    assert _report.rotate_cron_log(logs, now=datetime.datetime(2030, 1, 1)) is None  # empty
    os.unlink(os.path.join(logs, "cron.log"))
    os.symlink("/etc/passwd", os.path.join(logs, "cron.log"))
    assert _report.rotate_cron_log(logs, now=datetime.datetime(2030, 1, 1)) is None  # a link: not ours
    os.unlink(os.path.join(logs, "cron.log"))
    with open(os.path.join(logs, "cron.log"), "w") as handle:
        handle.write("no stamp here\n")
    old = datetime.datetime(2029, 12, 30).timestamp()
    os.utime(os.path.join(logs, "cron.log"), (old, old))
    assert _report.rotate_cron_log(logs, now=datetime.datetime(2030, 1, 1)) == os.path.join(logs, "cron_20300101_000000.log")
