# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The dr role's filters: store counts after a restore against the manifest, recovery time and point."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.cclite.backup.plugins.filter.recovery import FilterModule, dr_figures, dr_step_line, dr_step_records, dr_store_checks
from ansible_collections.cclite.backup.plugins.module_utils._reporting import _report

PG = "/b/postgresql/postgres_backup_20251226_020000.sql.gz"
RD = "/b/redis/redis_backup_20251226_020000.rdb.gz"
QD = "/b/qdrant/qdrant_backup_20251226_020000.tar.gz"
MANIFESTS = {
    PG: {"source": {"tables": {"public.users": 500, "public.conversations": 1500}}},
    RD: {"source": {"databases": {"db0": {"keys": 4, "expires": 2}, "db1": {"keys": 1, "expires": 0}}}},
    QD: {"source": {"collections": {"knowledge_base": {"points_count": 20}, "busy": {"points_count": 10, "points_count_after": 12}}}},
}


def pg_result(tables: dict, failed: bool = False) -> dict:
    item = {"item": "operator_demo", "database": "operator_demo", "failed": failed, "tables": tables,
            "restored_from": {"path": PG, "name": PG.rsplit("/", 1)[1]}}
    return {"results": [item, {"item": "other", "skipped": True}]}


def test_postgresql_counts_equal_the_manifest() -> None:
    [record] = dr_store_checks(pg_result({"public.users": 500, "public.conversations": 1500}), "postgresql", MANIFESTS)
    assert record["status"] == "ok" and record["target"] == "operator_demo"
    assert record["info"] == "rows per table equal the manifest (2 tables, 2000 rows)"
    assert _report.note(record) == record["info"]


def test_postgresql_table_that_differs_or_is_missing_fails() -> None:
    [record] = dr_store_checks(pg_result({"public.users": 499}), "postgresql", MANIFESTS)
    assert record["status"] == "failed"
    assert "table public.conversations is missing (1500 rows expected)" in record["error"]
    assert "table public.users has 499 rows, the manifest says 500" in record["error"]


def test_failed_restore_gets_no_check_and_no_manifest_fails() -> None:
    assert dr_store_checks(pg_result({}, failed=True), "postgresql", MANIFESTS) == []
    [record] = dr_store_checks(pg_result({"public.users": 500}), "postgresql", {})
    assert record["status"] == "failed" and "no manifest" in record["error"]


def test_redis_keys_with_a_ttl_may_have_expired_but_no_more() -> None:
    ok = {"restored_from": {"path": RD}, "databases": {"db0": {"keys": 3}, "db1": {"keys": 1}}}
    [record] = dr_store_checks(ok, "redis", MANIFESTS)
    assert record["status"] == "ok", record
    lost = {"restored_from": {"path": RD}, "databases": {"db0": {"keys": 1}}}
    [record] = dr_store_checks(lost, "redis", MANIFESTS)
    assert record["status"] == "failed"
    assert "db0 has 1 keys, the manifest says 4 (2 with a TTL, so at least 2)" in record["error"]
    assert "db1 is missing (1 keys expected)" in record["error"]


def test_qdrant_points_within_what_the_backup_recorded() -> None:
    ok = {"restored_from": {"path": QD}, "collections": [{"name": "knowledge_base", "points_count": 20}, {"name": "busy", "points_count": 11}]}
    [record] = dr_store_checks(ok, "qdrant", MANIFESTS)
    assert record["status"] == "ok" and "2 collections, 31 points" in record["info"]
    bad = {"restored_from": {"path": QD}, "collections": [{"name": "knowledge_base", "points_count": 19}]}
    [record] = dr_store_checks(bad, "qdrant", MANIFESTS)
    assert record["status"] == "failed" and "collection knowledge_base has 19 points" in record["error"]


def test_unknown_store_is_refused() -> None:
    with pytest.raises(AnsibleFilterError, match="unknown store 'mysql'"):
        dr_store_checks({}, "mysql", {})


STEPS = [
    {"step": "datastores", "start": 1000.0, "end": 1002.5, "status": "ok", "target": "c", "detail": "running"},
    {"step": "stop application", "start": 1002.5, "end": 1003.0, "status": "ok", "target": "cc-lite-backend", "detail": "stopped"},
    {"step": "restore", "start": 1003.0, "end": 1010.2, "status": "failed", "target": "postgresql", "detail": "sha256 differs"},
]


def test_figures_time_each_step_and_the_point_is_the_oldest_backup_s_age() -> None:
    figure = dr_figures(STEPS, "2025-12-26T08:30:00+00:00", [{"created": "2025-12-26T02:00:05+00:00"}, {"created": "2025-12-26T02:00:00Z"}])
    assert [s["seconds"] for s in figure["steps"]] == [2.5, 0.5, 7.2]
    assert figure["recovery_time_seconds"] == 10.2
    assert figure["recovery_point_seconds"] == 6.5 * 3600
    assert figure["text"] == "recovery time 10.2s; recovery point 6h 30m (the backups restored were made 2025-12-26T02:00:00+00:00)"
    records = dr_step_records(figure)
    assert [(r["action"], r["status"]) for r in records] == [("datastores", "ok"), ("stop application", "ok"), ("restore", "failed"), ("recovery", "ok")]
    assert records[2]["error"] == "sha256 differs" and records[1]["info"] == "stopped"
    assert records[-1]["duration"] == 10.2
    assert dr_step_line(figure["steps"][2]) == "restore postgresql               7.2s  FAILED  sha256 differs"


def test_figures_without_a_restore_say_so_and_bad_steps_are_refused() -> None:
    assert dr_figures(STEPS[:1], "2025-12-26T08:30:00", [])["text"] == "recovery time 2.5s; recovery point - (nothing restored)"
    with pytest.raises(AnsibleFilterError, match="not as expected"):
        dr_figures([{"step": "x"}], "2025-12-26T08:30:00", [])


def test_filters_are_registered() -> None:
    assert set(FilterModule().filters()) == {"dr_store_checks", "dr_figures", "dr_step_records", "dr_step_line"}
