# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The run-record filters on registered results shaped as Ansible registers them."""

from __future__ import annotations

import pytest

from ansible_collections.cclite.backup.plugins.filter.results import FilterModule, catalog_lines, run_line, run_results
from ansible_collections.cclite.backup.plugins.module_utils._reporting import _report

PATH = "/var/backups/cc-lite/postgresql/postgres_backup_app_20250615_120000.sql.gz"
SHA = "ab" * 32
DUMP_FAILED = "pg_dump failed with exit status 1: pg_dump: error: permission denied for table secrets"

LOOPED = {
    "changed": True,
    "msg": "One or more items failed",
    "failed": True,
    "results": [
        {
            "item": "app", "ansible_loop_var": "item", "changed": True, "failed": False, "msg": "made a backup of app",
            "artifact": {"path": PATH, "name": PATH.rsplit("/", 1)[1], "size": 1536, "sha256": SHA, "duration": 12.34},
        },
        {"item": "crm", "ansible_loop_var": "item", "changed": False, "failed": True, "msg": DUMP_FAILED, "rc": 1, "stage": "pg_dump"},
        {"item": "old", "ansible_loop_var": "item", "changed": False, "skipped": True, "skip_reason": "Conditional result was False"},
    ],
}


def test_looped_results():
    assert run_results(LOOPED, "postgresql", "backup") == [
        {
            "store": "postgresql", "action": "backup", "target": "app", "status": "ok", "artifact": PATH, "size": 1536,
            "sha256": SHA, "duration": 12.34, "problems": [], "message": "made a backup of app",
        },
        {
            "store": "postgresql", "action": "backup", "target": "crm", "status": "failed", "artifact": None, "size": None,
            "sha256": None, "duration": None, "problems": [], "message": DUMP_FAILED, "error": DUMP_FAILED,
        },
    ]


def test_single_failed_result():
    failed = {"failed": True, "msg": "another cclite.backup run holds the postgresql lock", "database": "app", "changed": False}
    assert run_results(failed, "postgresql", "backup") == [{
        "store": "postgresql", "action": "backup", "target": "app", "status": "failed", "artifact": None, "size": None,
        "sha256": None, "duration": None, "problems": [], "message": failed["msg"], "error": failed["msg"],
    }]
    assert run_results({"failed": True}, "redis", "backup")[0]["error"] == "failed"


def test_single_result_with_problems_and_a_loop_item_that_is_not_a_name():
    checked = {"item": {"name": "app"}, "database": "app", "changed": False, "problems": ["b.sql.gz: only 100 bytes"], "msg": "1 problem"}
    record = run_results(checked, "postgresql", "verify")[0]
    assert (record["target"], record["status"], record["problems"], record["artifact"]) == ("app", "problems", ["b.sql.gz: only 100 bytes"], None)
    assert "error" not in record


def test_restore_reports_the_backup_it_restored_from():
    restored = {"changed": True, "database": "app", "msg": "restored app", "restored_from": {"path": PATH, "size": 1536, "sha256": SHA}}
    record = run_results(restored, "postgresql", "restore")[0]
    assert (record["artifact"], record["size"], record["sha256"], record["status"]) == (PATH, 1536, SHA, "ok")
    assert run_results(restored, "postgresql", "backup")[0]["artifact"] is None  # only a restore reads restored_from


def test_a_loop_over_nothing():
    assert run_results({"results": [], "skipped": True, "changed": False, "msg": "No items in the list"}, "postgresql", "backup") == []


def test_a_skipped_single_result_is_no_record():
    assert run_results({"changed": False, "skipped": True, "skip_reason": "Conditional result was False"}, "postgresql", "backup") == []


def test_run_line():
    ok, failed = run_results(LOOPED, "postgresql", "backup")
    assert run_line(ok) == "postgresql | backup | app | OK | postgres_backup_app_20250615_120000.sql.gz | 1.5 KiB | 12.3s"
    assert run_line(failed) == "postgresql | backup | crm | FAILED | " + DUMP_FAILED
    problems = {"store": "postgresql", "action": "verify", "target": "app", "status": "problems", "problems": ["a: too old", "b: too small"]}
    assert run_line(problems) == "postgresql | verify | app | PROBLEMS | a: too old; b: too small"
    assert run_line({}) == "? | ? | ?"
    assert run_line({"store": "redis", "action": "backup", "status": "ok", "artifact": "/x/dump.rdb", "size": None}) == (
        "redis | backup | OK | dump.rdb | -"
    )


@pytest.mark.parametrize("size, text", [
    (0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (5 * 1024 ** 2, "5.0 MiB"), (3 * 1024 ** 3 + 1, "3.0 GiB"),
    (5 * 1024 ** 4, "5.0 TiB"), (1536.0, "1.5 KiB"), (True, "-"), (None, "-"), ("2048", "-"),
])
def test_sizes_in_lines(size, text):
    assert run_line({"store": "s", "action": "a", "status": "ok", "artifact": "/a/f", "size": size}) == "s | a | OK | f | " + text


def test_catalog_lines():
    catalog = {
        "postgresql": [{
            "directory": "/b/postgresql",
            "backups": [
                {"name": "postgres_backup_20250615_120000.sql.gz", "created": "2025-06-15T12:00:05.123456+00:00", "size": 2048,
                 "legacy": False, "encrypted": True, "verification": {"state": "good"}},
                {"name": "postgres_backup_20250614_120000.sql.gz", "created": "2025-06-14T12:00:00+00:00", "size": 100, "legacy": True},
            ],
            "problems": ["postgres_backup_20250614_120000.sql.gz: only 100 bytes (floor 1024): the dump is probably empty"],
        }],
        "redis": [{"directory": "/b/redis", "backups": []}],
    }
    assert catalog_lines(catalog) == [
        "postgresql (/b/postgresql): 2 backup(s)",
        "  postgres_backup_20250615_120000.sql.gz  2025-06-15T12:00:05  2.0 KiB  good encrypted",
        "  postgres_backup_20250614_120000.sql.gz  2025-06-14T12:00:00  100 B  not checked legacy",
        "  problem: postgres_backup_20250614_120000.sql.gz: only 100 bytes (floor 1024): the dump is probably empty",
        "redis (/b/redis): 0 backup(s)",
    ]
    assert catalog_lines({}) == []


def test_filter_names():
    assert FilterModule().filters() == {"run_results": run_results, "run_line": run_line, "catalog_lines": catalog_lines}


def test_restore_reports_its_own_size_and_duration():
    restored = {"changed": True, "database": "app", "msg": "restored app", "restored_from": {"path": PATH, "size": 1536, "sha256": SHA, "duration": 12.3},
                "restore": {"size": 40960, "duration": 2.5}}
    record = run_results(restored, "postgresql", "restore")[0]
    assert (record["artifact"], record["size"], record["duration"]) == (PATH, 40960, 2.5)
    assert record["artifact_size"] == 1536  # the file's, beside its sha256


def test_the_run_log_gives_an_artifact_its_own_size_and_a_restore_the_data_it_loaded():
    made = {"changed": True, "database": "app", "msg": "backed up app", "artifact": {"path": PATH, "size": 1536, "sha256": SHA}}
    restored = {"changed": True, "database": "app", "msg": "restored app", "restored_from": {"path": PATH, "size": 1536, "sha256": SHA},
                "restore": {"size": 40960, "duration": 2.5}}
    records = run_results(made, "postgresql", "backup") + run_results(restored, "postgresql", "restore")
    log = _report.render_log({"playbook": "restore", "run_id": "r1", "host": "db1", "status": "ok", "results": records})
    lines = [line for line in log.splitlines() if line.startswith("ARTIFACT")]
    assert lines == ["ARTIFACT %s size=1536 sha256=%s" % (PATH, SHA), "ARTIFACT %s size=1536 sha256=%s restored=40960" % (PATH, SHA)]
