# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Adoption of legacy backups: real gzip files as the guide's scripts make them, a stand-in deep check."""

from __future__ import annotations

import datetime
import gzip
import hashlib
import io
import json
import os
import tarfile
import typing as t

import pytest

from ansible_collections.cclite.backup.plugins.module_utils._core import _adopt, _manifest
from ansible_collections.cclite.backup.plugins.module_utils._engines.postgresql import _engine as pg_ops
from ansible_collections.cclite.backup.plugins.module_utils._engines.qdrant import _client as qd
from ansible_collections.cclite.backup.plugins.module_utils._engines.redis import _engine as rd_ops
from ansible_collections.cclite.backup.plugins.module_utils._core._catalog import POSTGRESQL, QDRANT, Catalog, Entry
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import VerifyError
from ansible_collections.cclite.backup.plugins.module_utils._core._lock import LOCK_NAME
from ansible_collections.cclite.backup.plugins.module_utils._core._ops import inspect
from ansible_collections.cclite.backup.plugins.module_utils._engines.postgresql._client import DumpComplete
from ansible_collections.cclite.backup.plugins.module_utils._core._verify import Report, Rules

SQL = (
    "--\n-- PostgreSQL database dump\n--\n\n"
    "-- Dumped from database version 15.8 (Debian 15.8-1.pgdg120+1)\n"
    "-- Dumped by pg_dump version 15.8 (Debian 15.8-1.pgdg120+1)\n\n"
    "CREATE TABLE public.users (id integer NOT NULL, name text);\n"
    "COPY public.users (id, name) FROM stdin;\n" + "".join("%d\tuser%d\n" % (i, i) for i in range(300)) + "\\.\n\n"
    "--\n-- PostgreSQL database dump complete\n--\n\n"
)
NOW = datetime.datetime(2025, 12, 27, 9, 0).astimezone()


class Deep:
    """A deep check that counts the rows of the dump it is given (as a scratch restore would)."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.hook: t.Callable[[Entry], None] | None = None

    def __call__(self, entry: Entry, report: Report) -> None:
        self.seen.append(entry.name)
        if self.hook is not None:
            self.hook(entry)
        rows = gzip.open(entry.path).read().decode().count("\tuser")
        report.passed("deep")
        report.measured = {"tables": {"public.users": rows}, "table_count": 1, "total_rows": rows}


@pytest.fixture
def catalog(tmp_path) -> Catalog:
    return Catalog(str(tmp_path / "backups"), POSTGRESQL)


def legacy(catalog: Catalog, stamp: str, data: bytes | None = None) -> str:
    """A dump as the guide's script writes it: pg_dump | gzip > postgres_backup_<stamp>.sql.gz."""
    os.makedirs(catalog.directory, exist_ok=True)
    path = os.path.join(catalog.directory, "postgres_backup_%s.sql.gz" % stamp)
    with open(path, "wb") as handle:
        handle.write(gzip.compress(SQL.encode()) if data is None else data)
    mtime = datetime.datetime.strptime(stamp, "%Y%m%d_%H%M%S").timestamp() + 4
    os.utime(path, (mtime, mtime))
    return path


def state(path: str) -> tuple[bytes, int]:
    with open(path, "rb") as handle:
        return handle.read(), os.stat(path).st_mtime_ns


def spec_for(catalog: Catalog, deep: Deep, **kwargs: t.Any) -> _adopt.AdoptSpec:
    values: dict[str, t.Any] = {"content": DumpComplete, "fmt": "plain", "versions": pg_ops.dump_versions, "database": "app"}
    values.update(kwargs)
    return _adopt.AdoptSpec(catalog=catalog, deep=deep, **values)


def test_adopts_good_legacy_backups_without_touching_them(catalog):
    paths = [legacy(catalog, "20251225_020000"), legacy(catalog, "20251226_020000")]
    before = [state(p) for p in paths]
    deep = Deep()
    out = _adopt.adopt(spec_for(catalog, deep), False, NOW)
    assert out["changed"] and not out["failed_adoption"] and not out["problems"]
    assert [a["name"] for a in out["adopted"]] == ["postgres_backup_20251226_020000.sql.gz", "postgres_backup_20251225_020000.sql.gz"]
    assert deep.seen == [a["name"] for a in out["adopted"]]  # every legacy backup, not only the newest
    assert [state(p) for p in paths] == before
    for path in paths:
        manifest = _manifest.read(path)
        assert manifest is not None
        assert manifest["kind"] == "adopted" and manifest["format"] == "plain" and manifest["database"] == "app"
        assert manifest["artifact"] == {"name": os.path.basename(path), "size": os.path.getsize(path),
                                        "sha256": hashlib.sha256(before[paths.index(path)][0]).hexdigest()}
        assert manifest["compression"] == {"algorithm": "gzip", "level": None, "program": None}
        assert manifest["source"] == {"tables": {"public.users": 300}, "table_count": 1, "total_rows": 300}
        assert manifest["versions"] == {"server": "15.8", "tool": "15.8", "collection": _manifest.COLLECTION_VERSION}
        stamp = datetime.datetime.strptime(os.path.basename(path)[16:31], "%Y%m%d_%H%M%S").astimezone()
        assert datetime.datetime.fromisoformat(manifest["started"]) == stamp
        assert datetime.datetime.fromisoformat(manifest["ended"]) == stamp + datetime.timedelta(seconds=4)
        assert manifest["adopted"]["at"] == NOW.isoformat()
        assert manifest["adopted"]["checks"] == {"size": "ok", "manifest": "skipped", "stream": "ok", "sha256": "skipped",
                                                 "content": "ok", "deep": "ok"}
    assert not os.path.exists(os.path.join(catalog.directory, LOCK_NAME)) or open(os.path.join(catalog.directory, LOCK_NAME)).read() == ""
    # the adopted backups are now first-class: the sha256 check runs and passes
    found = inspect(catalog, Rules(max_age_hours=1e6), "full", DumpComplete, NOW)
    backups, problems = found["backups"], found["problems"]
    assert not problems and [b["verification"]["checks"]["sha256"] for b in backups] == ["ok", "ok"]
    assert [b["legacy"] for b in backups] == [False, False]


def test_second_run_changes_nothing(catalog):
    path = legacy(catalog, "20251226_020000")
    _adopt.adopt(spec_for(catalog, Deep()), False, NOW)
    manifest = state(_manifest.path_for(path))
    deep = Deep()
    out = _adopt.adopt(spec_for(catalog, deep), False, NOW)
    assert not out["changed"] and out["adopted"] == [] and deep.seen == []
    assert out["not_legacy"] == [{"name": os.path.basename(path), "path": path, "reason": "has a manifest (adopted)"}]
    assert state(_manifest.path_for(path)) == manifest


def test_check_mode_reports_and_writes_nothing(catalog):
    path = legacy(catalog, "20251226_020000")
    listing = sorted(os.listdir(catalog.directory))
    out = _adopt.adopt(spec_for(catalog, Deep()), True, NOW)
    assert out["changed"] and [a["name"] for a in out["adopted"]] == [os.path.basename(path)]
    assert out["adopted"][0]["manifest"] == _manifest.path_for(path) and out["adopted"][0]["source"]["total_rows"] == 300
    assert sorted(os.listdir(catalog.directory)) == listing  # no manifest, no lock file


def test_bad_backups_stay_legacy_with_reasons(catalog):
    good = legacy(catalog, "20251224_020000")
    data = gzip.compress(SQL.encode())
    truncated = legacy(catalog, "20251225_020000", data[: len(data) - 30])
    cut_sql = legacy(catalog, "20251226_020000", gzip.compress(SQL.split("--\n-- PostgreSQL database dump complete", maxsplit=1)[0].encode()))
    tiny = legacy(catalog, "20251227_020000", gzip.compress(b"--\n"))
    before = {p: state(p) for p in (good, truncated, cut_sql, tiny)}
    out = _adopt.adopt(spec_for(catalog, Deep(), rules=Rules(min_size_bytes=200)), False, NOW)
    assert [a["path"] for a in out["adopted"]] == [good]
    failed = {f["path"]: f for f in out["failed_adoption"]}
    assert sorted(failed) == sorted([truncated, cut_sql, tiny])
    assert failed[truncated]["checks"]["stream"] == "failed" and "truncated" in failed[truncated]["problems"][0]
    assert failed[cut_sql]["checks"]["content"] == "failed" and "dump complete" in failed[cut_sql]["problems"][0]
    assert failed[tiny]["checks"]["size"] == "failed" and "probably empty" in failed[tiny]["problems"][0]
    assert out["problems"] == [p for f in out["failed_adoption"] for p in f["problems"]]
    for path in (truncated, cut_sql, tiny):
        assert state(path) == before[path] and not os.path.exists(_manifest.path_for(path))
    assert "1 legacy backup(s)" in _adopt.result(dict(out), False, False)["msg"]
    with pytest.raises(VerifyError, match="did not pass and stay legacy") as raised:
        _adopt.result(dict(out), False, True)
    assert raised.value.details["adopted"][0]["path"] == good


def test_a_deep_check_that_fails_or_cannot_run_prevents_adoption(catalog):
    path = legacy(catalog, "20251226_020000")

    def failing(entry: Entry, report: Report) -> None:
        report.failed("deep", "restoring into a scratch database failed: boom")

    def skipping(entry: Entry, report: Report) -> None:
        report.skipped("deep", "redis-server is not installed on this host")

    for deep, words in ((failing, "boom"), (skipping, "the deep check could not run")):
        out = _adopt.adopt(spec_for(catalog, t.cast(t.Any, deep)), False, NOW)
        assert not out["adopted"] and words in out["failed_adoption"][0]["problems"][0]
        assert not os.path.exists(_manifest.path_for(path))


def test_a_file_changed_during_the_check_is_not_adopted(catalog):
    path = legacy(catalog, "20251226_020000")
    deep = Deep()
    deep.hook = lambda entry: os.utime(entry.path, (1, 1))  # something touched it meanwhile
    out = _adopt.adopt(spec_for(catalog, deep), False, NOW)
    assert not out["adopted"] and "changed while it was checked" in out["failed_adoption"][0]["problems"][0]
    assert not os.path.exists(_manifest.path_for(path))


def test_backups_with_a_manifest_or_a_broken_one_are_skipped(catalog):
    adopted = legacy(catalog, "20251225_020000")
    broken = legacy(catalog, "20251226_020000")
    _adopt.adopt(spec_for(catalog, Deep()), False, NOW)
    with open(_manifest.path_for(broken), "w") as handle:
        handle.write("{not json")
    out = _adopt.adopt(spec_for(catalog, Deep()), False, NOW)
    assert not out["changed"] and [s["path"] for s in out["not_legacy"]] == [broken, adopted]
    assert "cannot be read" in out["not_legacy"][0]["reason"]
    assert open(_manifest.path_for(broken)).read() == "{not json"


def test_empty_store_adopts_nothing(catalog):
    out = _adopt.adopt(spec_for(catalog, Deep()), False, NOW)
    assert out == {"directory": catalog.directory, "adopted": [], "failed_adoption": [], "not_legacy": [], "problems": [], "changed": False}


def test_versions_read_from_the_artifacts():
    assert pg_ops.dump_versions(SQL.encode()) == {"server": "15.8", "tool": "15.8"}
    assert pg_ops.dump_versions(b"-- no header\n") == {}
    rdb = b"REDIS0011\xfa\x09redis-ver\x057.2.4\xfa\x0aredis-bits\xc0\x40"
    assert rd_ops.rdb_versions(rdb) == {"server": "7.2.4"}
    assert rd_ops.rdb_versions(b"REDIS0011\xfa\x09redis-ver\x067.2") == {}
    assert rd_ops.rdb_versions(b"REDIS0009") == {}


def snapshot_tar(points: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        data = b"x" * points
        info = tarfile.TarInfo("0/segments/data")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def legacy_bundle(members: dict[str, bytes]) -> bytes:
    """What ``tar -czf qdrant_backup_<stamp>.tar.gz -C <dir> .`` makes of downloaded snapshots."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        directory = tarfile.TarInfo("./")
        directory.type = tarfile.DIRTYPE
        archive.addfile(directory)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_bundle_check_reads_a_legacy_tar_of_snapshots():
    docs, faq = snapshot_tar(5), snapshot_tar(12)
    check = qd.BundleCheck()
    check.feed(legacy_bundle({"./docs-1234-2025-12-26-02-00-00.snapshot": docs, "./my-faq-1234-2025-12-26-02-00-01.snapshot": faq}))
    assert check.result() is None
    manifest = t.cast(dict, check.manifest)
    assert manifest["legacy"] and manifest["kind"] == "collections" and manifest["server"] == {}
    assert manifest["collections"] == [
        {"name": "docs", "member": "./docs-1234-2025-12-26-02-00-00.snapshot", "snapshot": "docs-1234-2025-12-26-02-00-00.snapshot",
         "size": len(docs), "sha256": hashlib.sha256(docs).hexdigest()},
        {"name": "my-faq", "member": "./my-faq-1234-2025-12-26-02-00-01.snapshot", "snapshot": "my-faq-1234-2025-12-26-02-00-01.snapshot",
         "size": len(faq), "sha256": hashlib.sha256(faq).hexdigest()},
    ]
    outer = {"source": {"collections": {"docs": {"points_count": 5}}}}
    counted = qd.with_source_counts(manifest, outer)
    assert counted["collections"][0]["points_count"] == 5 and "points_count" not in counted["collections"][1]


@pytest.mark.parametrize(
    "members, problem",
    [
        ({"./docs-1-2025-12-26-02-00-00.snapshot": b"a", "./docs-1-2025-12-26-03-00-00.snapshot": b"b"}, "several snapshots of collection docs"),
        ({"./full-snapshot-2025-12-26-02-00-00.snapshot": b"a"}, "is a full-storage snapshot"),
        ({"./notes.txt": b"a"}, "has no manifest.json"),
        ({"collections/docs.snapshot": b"a"}, "has no manifest.json"),  # a cclite.backup bundle cut short
    ],
)
def test_bundle_check_refuses_what_it_cannot_restore(members, problem):
    check = qd.BundleCheck()
    check.feed(legacy_bundle(members))
    assert problem in t.cast(str, check.result())


def test_qdrant_legacy_bundle_truncated_is_not_adopted(tmp_path):
    catalog = Catalog(str(tmp_path), QDRANT)
    os.makedirs(catalog.directory)
    data = gzip.compress(legacy_bundle({"./docs-1-2025-12-26-02-00-00.snapshot": snapshot_tar(2000)}))
    path = os.path.join(catalog.directory, "qdrant_backup_20251226_020000.tar.gz")
    with open(path, "wb") as handle:
        handle.write(data[: len(data) - 40])
    deep = Deep()
    out = _adopt.adopt(_adopt.AdoptSpec(catalog, qd.BundleCheck, deep, "qdrant-snapshots", rules=Rules(min_size_bytes=10)), False, NOW)
    assert not out["adopted"] and deep.seen == [] and out["failed_adoption"][0]["checks"]["stream"] == "failed"
    assert os.listdir(catalog.directory) == [os.path.basename(path)] or sorted(os.listdir(catalog.directory)) == sorted([os.path.basename(path), LOCK_NAME])
    assert json.dumps(out)  # the result is plain data
