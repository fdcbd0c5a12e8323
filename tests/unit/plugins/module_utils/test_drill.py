# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The drill flow (``_core._drill``): the restore flow into a target that is always removed, the
comparison's failures named, a drill that cannot run said why, the backup or set it picks, and
what the run record, JSON report and metrics keep of it. Real engines: tests/runner/test_drill.py."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import stat
import typing as t

import pytest

from ansible_collections.cclite.backup.plugins.filter.results import run_results
from ansible_collections.cclite.backup.plugins.module_utils._core import _drill, _restore
from ansible_collections.cclite.backup.plugins.module_utils._core._catalog import POSTGRESQL, Catalog
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import ConfigError, RestoreError
from ansible_collections.cclite.backup.plugins.module_utils._core._lock import StoreLock
from ansible_collections.cclite.backup.plugins.module_utils._reporting import _report
from ansible_collections.cclite.backup.tests.unit.plugins.module_utils.test_restore import FakeEngine, backup, spec_for


@pytest.fixture(name="catalog")
def catalog_fixture(tmp_path) -> Catalog:
    return Catalog(str(tmp_path / "backups"), POSTGRESQL)


class FakeTarget:
    def __init__(self, fail: str = "") -> None:
        self.fail = fail
        self.calls: list[str] = []

    def start(self) -> _drill.Where:
        self.calls.append("start")
        if self.fail == "start":
            raise _drill.DrillError("the postgresql drill cannot run: no image", drill={"why": "no image"})
        return _drill.Where("cclite-drill-x", "10.0.0.2", "the throwaway container cclite-drill-x")

    def logs(self) -> str:
        return ""

    def remove(self) -> list[str]:
        self.calls.append("remove")
        return ["could not remove the drill network n: busy"] if self.fail == "remove" else []


class FakeStore:
    def __init__(self, engine: FakeEngine, sample: list[str] | None = None, ready_after: int = 0) -> None:
        self.fake = engine
        self.problems = sample or []
        self.waits = ready_after

    def ready(self, where: _drill.Where) -> None:
        if self.waits:
            self.waits -= 1
            raise ConfigError("not yet")

    def engine(self, where: _drill.Where) -> FakeEngine:
        assert where.container == "cclite-drill-x"
        return self.fake

    def sample(self, where: _drill.Where, entry: t.Mapping[str, t.Any]) -> tuple[list[str], dict[str, t.Any]]:
        return self.problems, {"rows": 3, "tables": 1}

    def cleanup(self, where: _drill.Where) -> list[str]:
        return []


def test_a_drill_restores_through_the_flow_compares_and_removes_its_target(catalog):
    backup(catalog, 1, 5)
    newest = backup(catalog, 0, 7, latest=True)
    engine, target = FakeEngine(), FakeTarget()
    out = _drill.run_drill("postgresql", spec_for(catalog, confirm=False, safety_backup=True), FakeStore(engine, ready_after=2), target, 5)
    drill = out["drill"]
    assert drill["passed"] and drill["ran"] and drill["backup"] == newest.name
    assert drill["compared"] == {"tables": {"public.users": 7}, "sample": {"rows": 3, "tables": 1}}
    assert drill["restore_seconds"] >= 0 and drill["finished"] >= drill["started"]
    assert "safety" not in engine.calls  # nothing to keep: no safety backup
    assert target.calls == ["start", "remove"] and out["changed"] is False
    assert "the postgresql drill of %s passed" % newest.name in out["msg"] and "3 rows, 1 tables" in out["msg"]


def test_rows_missing_after_the_restore_fail_the_drill_naming_store_table_and_counts(catalog):
    backup(catalog, 0, 7, latest=True)
    target = FakeTarget()
    with pytest.raises(_drill.DrillError) as err:
        _drill.run_drill("postgresql", spec_for(catalog), FakeStore(FakeEngine(measured={"public.users": 4})), target)
    assert "the postgresql drill failed" in err.value.msg
    assert "table public.users has 4 rows, the manifest says 7" in err.value.msg
    assert err.value.details["drill"]["ran"] and not err.value.details["drill"]["passed"]
    assert target.calls == ["start", "remove"]


def test_a_sample_that_differs_fails_the_drill(catalog):
    backup(catalog, 0, 7, latest=True)
    with pytest.raises(_drill.DrillError) as err:
        _drill.run_drill("postgresql", spec_for(catalog), FakeStore(FakeEngine(), sample=["table public.users: rows differ"]), FakeTarget())
    assert "rows differ" in err.value.msg


def test_a_drill_that_cannot_start_says_why_and_a_target_left_behind_is_a_problem(catalog):
    backup(catalog, 0, 7, latest=True)
    with pytest.raises(_drill.DrillError) as err:
        _drill.run_drill("postgresql", spec_for(catalog), FakeStore(FakeEngine()), FakeTarget("start"))
    assert err.value.msg == "the postgresql drill cannot run: no image"
    assert err.value.details["drill"]["ran"] is False and err.value.details["drill"]["why"] == "no image"
    with pytest.raises(_drill.DrillError) as err:
        _drill.run_drill("postgresql", spec_for(catalog), FakeStore(FakeEngine()), FakeTarget("remove"))
    assert "could not remove the drill network" in err.value.msg


def test_a_server_that_never_answers_fails_the_drill(catalog):
    backup(catalog, 0, 7, latest=True)
    target = FakeTarget()
    with pytest.raises(_drill.DrillError) as err:
        _drill.run_drill("postgresql", spec_for(catalog), FakeStore(FakeEngine(), ready_after=1000), target, start_timeout=0.6)
    assert "did not answer within 0.6 seconds: not yet" in err.value.msg and target.calls == ["start", "remove"]


def test_pick_a_set_a_random_older_backup_or_the_newest(catalog):
    old = backup(catalog, 3, 5)
    older = backup(catalog, 2, 6)
    newest = backup(catalog, 0, 7, latest=True)
    spec = spec_for(catalog)
    assert _drill.pick(spec, "postgresql", "").name == "latest"
    stamp = newest.name.split("_", 2)[2].split(".")[0]
    assert _drill.pick(spec, "postgresql", stamp).name == newest.name
    picked = {_drill.pick(spec, "postgresql", "random", random.Random(seed)).name for seed in range(20)}
    assert picked == {old.name, older.name}  # never the newest
    with pytest.raises(_drill.DrillError) as exc:
        _drill.pick(spec, "postgresql", "19990101_000000")
    assert "the postgresql drill cannot run: backup set 19990101_000000 is not complete: postgresql: no backup in the set" in exc.value.msg
    assert exc.value.details["drill"]["ran"] is False and exc.value.details["drill"]["set"] == "19990101_000000"
    # a file named (verify.yml names each store's file of the set it resolved) is drilled, the set recorded
    assert _drill.pick(dataclasses.replace(spec, name=old.name), "postgresql", "20260301_020000").name == old.name
    manifest = older.path + ".manifest.json"  # a set's run id, as backup runs write it into every manifest
    with open(manifest, encoding="utf-8") as handle:
        data = json.load(handle)
    with open(manifest, "w", encoding="utf-8") as handle:
        json.dump(dict(data, run_id="20260301_020000"), handle)
    assert _drill.pick(spec, "postgresql", "20260301_020000").name == older.name
    # a backup of the set that is not good (its size differs from its manifest's) is no backup of the set
    with open(older.path, "ab") as handle:
        handle.write(b"x")
    with pytest.raises(_drill.DrillError) as exc:
        _drill.pick(spec, "postgresql", "20260301_020000")
    assert "backup set 20260301_020000 is not complete: postgresql: %s is bad" % older.name in exc.value.msg


def test_sizes_and_available_memory(tmp_path):
    assert _drill.parse_size("512m") == 512 * 2 ** 20 and _drill.parse_size("2G") == 2 * 2 ** 30 and _drill.parse_size("1.5g") == 3 * 2 ** 29
    for bad in ("", "lots", "-1g", "0"):
        with pytest.raises(ConfigError, match="is not a size like 512m"):
            _drill.parse_size(bad)
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemAvailable:     1024 kB\n")
    assert _drill.available_memory(str(meminfo)) == 1024 * 1024
    assert _drill.available_memory(str(tmp_path / "none")) is None


def fake_docker(tmp_path, image_present: bool) -> str:
    """A docker client at the process boundary: inspect answers, nothing else is expected."""
    path = tmp_path / "docker"
    path.write_text(
        "#!/bin/sh\n"
        'case "$1 $2" in\n'
        '"container inspect") echo \'[{"Config": {"Image": "stack:1", "Cmd": ["redis"], "Env": ["REDIS_PASSWORD=s3"]}}]\' ;;\n'
        '"image inspect") exit %d ;;\n'
        '*) echo "unexpected: $*" >&2; exit 9 ;;\n'
        "esac\n" % (0 if image_present else 1)
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_docker_target_refuses_without_the_image_or_the_memory(tmp_path):
    spec = _drill.DockerSpec("redis", "cc-lite-redis", docker_bin=fake_docker(tmp_path, False))
    target = _drill.DockerTarget(spec)
    with pytest.raises(_drill.DrillError, match="the redis drill cannot run: the image stack:1 of cc-lite-redis is not on this Docker host"):
        target.start()
    assert target.remove() == []  # nothing was made
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemAvailable:     102400 kB\n")
    spec = _drill.DockerSpec("redis", "cc-lite-redis", memory="1g", docker_bin=fake_docker(tmp_path, True), meminfo=str(meminfo))
    expected = "it needs 1024 MiB of memory .redis_backup_drill_memory, or drill_memory for every store. and this host has 100 MiB available"
    with pytest.raises(_drill.DrillError, match=expected):
        _drill.DockerTarget(spec).start()
    with pytest.raises(_drill.DrillError, match="no production container to take the image from: set qdrant_backup_drill_container"):
        _drill.DockerTarget(_drill.DockerSpec("qdrant", "", docker_bin=fake_docker(tmp_path, True))).start()


def test_the_run_record_report_and_metrics_keep_the_drill():
    drill = {"store": "redis", "set": None, "backup": "redis_backup_x.rdb.gz", "server": "c", "ran": True, "passed": True,
             "started": 100.0, "finished": 160.0, "duration_seconds": 60.0, "restore_seconds": 41.5,
             "compared": {"databases": {"db0": {"keys": 3}}}, "problems": [], "why": None}
    ok = run_results({"drill": drill, "restored_from": {"path": "/b/redis_backup_x.rdb.gz", "size": 10}, "msg": "passed"}, "redis", "drill")[0]
    assert ok["status"] == "ok" and ok["duration"] == 41.5 and ok["drill"]["compared"] == drill["compared"]
    failed = run_results({"failed": True, "msg": "the redis drill cannot run: no image",
                          "drill": {"ran": False, "passed": False, "why": "no image"}}, "redis", "drill")[0]
    assert failed["status"] == "failed" and failed["error"] == "the redis drill cannot run: no image"
    report = _report.build_report({"id": "r", "kind": "verify"}, "db1", [ok, failed])
    assert [(d["status"], d["passed"], d.get("why")) for d in report["drills"]] == [("ok", True, None), ("failed", False, "no image")]
    samples = _report.update_metrics({}, [ok], 200.0)
    labels = (("store", "redis"), ("target", ""))
    assert samples[("cclite_backup_drill_last_success_timestamp_seconds", labels)] == 160.0
    assert samples[("cclite_backup_drill_duration_seconds", labels)] == 41.5
    samples = _report.update_metrics(samples, [failed], 300.0)
    assert samples[("cclite_backup_drill_last_status", labels)] == 0.0
    assert samples[("cclite_backup_drill_last_success_timestamp_seconds", labels)] == 160.0  # the last success stays
    assert "cclite_backup_drill_duration_seconds" in _report.render_metrics(samples)


class LockProbe(FakeEngine):
    """A restore engine that, while its load runs, tries what a backup and retention of the store would."""

    def __init__(self, catalog: Catalog) -> None:
        super().__init__()
        self.catalog = catalog
        self.seen: dict[str, t.Any] = {}

    def prepare(self, entry: t.Any) -> None:
        with StoreLock(self.catalog.directory, "postgresql", "postgresql backup", timeout=0):  # a backup does not wait
            self.seen["backup lock"] = "free"
        self.seen["pruned"] = self.catalog.prune(1, lambda e: True)
        super().prepare(entry)


def test_a_drill_holds_no_store_lock_and_retention_keeps_what_it_reads(catalog):
    old = backup(catalog, 5, 3)
    backup(catalog, 0, 7, latest=True)
    engine = LockProbe(catalog)
    out = _drill.run_drill("postgresql", spec_for(catalog, name=old.name), FakeStore(engine), FakeTarget(), 5)
    assert out["drill"]["passed"] and out["drill"]["backup"] == old.name
    assert engine.seen["backup lock"] == "free"
    pruned = engine.seen["pruned"]
    assert pruned.deleted == [] and "a restore drill is reading the backups of this store" in pruned.reason
    assert os.path.exists(old.path)
    # once the drill is over, retention deletes the expired backup
    assert catalog.prune(1, lambda e: True).deleted == [old.path] and not os.path.exists(old.path)
    # a real restore still takes the store's lock: a backup waits for it
    with StoreLock(catalog.directory, "postgresql", "postgresql backup", timeout=0):
        with pytest.raises(RestoreError, match="step 'take the lock': another cclite.backup run holds the postgresql lock"):
            _restore.Flow(spec_for(catalog, lock_timeout=0), FakeEngine()).run(False)
