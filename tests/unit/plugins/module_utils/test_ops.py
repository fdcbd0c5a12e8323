# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The shared backup flow with a stand-in producer whose dump is a real ``printf`` process."""

from __future__ import annotations

import datetime
import gzip
import hashlib
import json
import os
import shutil
import stat
import subprocess
import typing as t

import pytest

from ansible_collections.cclite.backup.plugins.module_utils._core import _manifest
from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import Compression, Written
from ansible_collections.cclite.backup.plugins.module_utils._core._catalog import POSTGRESQL, Catalog
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import ConfigError, LockTimeout, StageError, VerifyError
from ansible_collections.cclite.backup.plugins.module_utils._core._lock import LOCK_NAME, StoreLock
from ansible_collections.cclite.backup.plugins.module_utils._core._restore import full_read
from ansible_collections.cclite.backup.plugins.module_utils._core._ops import (
    BackupSpec,
    inspect,
    is_good,
    make_backup,
    predict_backup,
)
from ansible_collections.cclite.backup.plugins.module_utils._engines.postgresql._client import DumpComplete
from ansible_collections.cclite.backup.plugins.module_utils._core._process import Command
from ansible_collections.cclite.backup.plugins.module_utils._core._verify import Rules

SQL = (
    "--\n-- PostgreSQL database dump\n--\n\n"
    "CREATE TABLE public.users (id integer NOT NULL, name text);\n"
    "COPY public.users (id, name) FROM stdin;\n1\talice\n2\tbob\n3\tcarol\n\\.\n\n"
    "--\n-- PostgreSQL database dump complete\n--\n\n"
)
STATS = {"tables": {"public.users": 3}, "snapshot": "00000003-0000001B-1"}
VERSIONS = {"postgresql": "16.2", "pg_dump": "pg_dump (PostgreSQL) 16.2"}


class FakeProducer:
    """A Producer: start() gives a real process that prints the dump; finish() gives statistics."""

    def __init__(self, sql: str = SQL, stats: dict | None = None, finish_error: BaseException | None = None,
                 command: Command | None = None) -> None:
        self.sql = sql
        self.stats = STATS if stats is None else stats
        self.finish_error = finish_error
        self.command = command
        self.calls: list[str] = []

    def start(self) -> Command:
        self.calls.append("start")
        return self.command or Command(("printf", "%s", self.sql), stage="pg_dump")

    def finish(self) -> dict[str, t.Any]:
        self.calls.append("finish")
        if self.finish_error is not None:
            raise self.finish_error
        return self.stats

    def close(self) -> None:
        self.calls.append("close")


@pytest.fixture
def catalog(tmp_path) -> Catalog:
    return Catalog(str(tmp_path / "backups"), POSTGRESQL)


def spec_for(catalog: Catalog, **kwargs: t.Any) -> BackupSpec:
    values: dict[str, t.Any] = {"compression": Compression("gzip", 6, 1), "fmt": "plain", "content": DumpComplete, "database": "app"}
    values.update(kwargs)
    return BackupSpec(catalog, **values)


def sha256_of(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def old_backup(catalog: Catalog, days: float, *, ext: str = ".gz", sql: str = SQL, latest: bool = False, manifest: bool = True) -> str:
    """A backup made ``days`` ago, as an earlier run would have left it."""
    catalog.ensure()
    stamp = datetime.datetime.now().astimezone().replace(microsecond=0) - datetime.timedelta(days=days)
    path = os.path.join(catalog.directory, catalog.file_name(stamp, ext))
    data = gzip.compress(sql.encode()) if ext == ".gz" else subprocess.run(
        ["zstd", "-q", "-c"], input=sql.encode(), capture_output=True, check=True).stdout
    with open(path, "wb") as handle:
        handle.write(data)
    if manifest:
        compression = Compression("gzip" if ext == ".gz" else "zstd", 6 if ext == ".gz" else 3, 1)
        written = Written(path, len(data), hashlib.sha256(data).hexdigest(), stamp, stamp)
        _manifest.write(path, _manifest.build("postgresql", written, compression, fmt="plain", host="h"))
    if latest:
        os.symlink(os.path.basename(path), os.path.join(catalog.directory, catalog.latest_name(ext)))
    return path


def snapshot(directory: str) -> dict[str, str]:
    """Every entry of the store but the lock file: link targets and file checksums."""
    state = {}
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if name == LOCK_NAME:
            continue
        state[name] = "-> " + os.readlink(path) if os.path.islink(path) else sha256_of(path)
    return state


def test_make_backup_writes_artifact_manifest_and_latest(catalog):
    producer = FakeProducer()
    out = make_backup(spec_for(catalog), producer, VERSIONS)

    artifact = out["artifact"]
    path = artifact["path"]
    assert os.path.dirname(path) == catalog.directory and catalog.parse(os.path.basename(path)) is not None
    assert path.endswith(".sql.gz") and artifact["name"] == os.path.basename(path)
    with open(path, "rb") as handle:
        assert gzip.decompress(handle.read()).decode() == SQL
    assert artifact["sha256"] == sha256_of(path) and artifact["size"] == os.path.getsize(path)
    assert (artifact["format"], artifact["compression"], artifact["versions"]) == ("plain", "gzip", VERSIONS)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600

    assert out["manifest"] == path + ".manifest.json"
    with open(out["manifest"], encoding="utf-8") as handle:
        manifest = json.load(handle)
    assert stat.S_IMODE(os.stat(out["manifest"]).st_mode) == 0o600
    assert manifest["schema"] == "cclite.backup/manifest" and manifest["store"] == "postgresql"
    assert (manifest["database"], manifest["series"], manifest["format"], manifest["kind"]) == ("app", "", "plain", "scheduled")
    assert manifest["artifact"] == {"name": os.path.basename(path), "size": os.path.getsize(path), "sha256": sha256_of(path)}
    assert manifest["compression"] == {"algorithm": "gzip", "level": 6, "program": "gzip"}
    assert manifest["source"] == STATS and out["source"] == STATS
    assert manifest["versions"] == dict(VERSIONS, collection="0.1.0")
    assert manifest["ended"] == artifact["created"]

    assert out["latest"] == os.path.join(catalog.directory, "latest.sql.gz")
    assert os.readlink(out["latest"]) == os.path.basename(path)
    assert out["retention"] is None
    assert producer.calls == ["start", "finish", "close"]
    assert sorted(os.listdir(catalog.directory)) == sorted(
        [LOCK_NAME, "latest.sql.gz", os.path.basename(path), os.path.basename(path) + ".manifest.json"]
    )
    assert os.path.isdir(os.path.join(catalog.root, "logs"))


@pytest.mark.skipif(shutil.which("zstd") is None, reason="the zstd program is not installed")
def test_make_backup_moves_latest_across_extensions(catalog):
    older = old_backup(catalog, 1, latest=True)
    out = make_backup(spec_for(catalog, compression=Compression("zstd", 3, 1)), FakeProducer(), VERSIONS)
    path = out["artifact"]["path"]
    assert path.endswith(".sql.zst")
    assert subprocess.run(["zstd", "-d", "-c", "-q", path], capture_output=True, check=True).stdout.decode() == SQL
    links = {n: os.readlink(os.path.join(catalog.directory, n)) for n in os.listdir(catalog.directory) if n.startswith("latest")}
    assert links == {"latest.sql.zst": os.path.basename(path)}  # the old latest.sql.gz is gone
    assert os.path.exists(older)  # the older backup itself stays


def test_finish_failure_leaves_everything_as_it_was(catalog):
    older = old_backup(catalog, 1, latest=True)
    before = snapshot(catalog.directory)
    producer = FakeProducer(finish_error=StageError("counting rows failed: the session ended"))
    with pytest.raises(StageError) as err:
        make_backup(spec_for(catalog), producer, VERSIONS)
    assert err.value.msg == "counting rows failed: the session ended"
    assert snapshot(catalog.directory) == before  # no artifact, no manifest, no temp file, latest unchanged
    assert os.readlink(os.path.join(catalog.directory, "latest.sql.gz")) == os.path.basename(older)
    assert producer.calls == ["start", "finish", "close"]


def test_incomplete_dump_is_never_written(catalog):
    older = old_backup(catalog, 1, latest=True)
    before = snapshot(catalog.directory)
    producer = FakeProducer(sql=SQL.replace("-- PostgreSQL database dump complete", "-- (cut)"))
    with pytest.raises(VerifyError) as err:
        make_backup(spec_for(catalog), producer, VERSIONS)
    assert err.value.msg.startswith("the new backup failed its read-back check: ")
    assert "does not end with pg_dump's 'dump complete' line" in err.value.msg
    assert snapshot(catalog.directory) == before
    assert catalog.resolve("latest").path == older


def test_failing_dump_is_never_written(catalog):
    old_backup(catalog, 1, latest=True)
    before = snapshot(catalog.directory)
    producer = FakeProducer(command=Command(
        ("sh", "-c", "printf 'CREATE TABLE t (id int);\\n'; echo 'pg_dump: error: query failed: permission denied' >&2; exit 1"),
        stage="pg_dump",
    ))
    with pytest.raises(StageError) as err:
        make_backup(spec_for(catalog), producer, VERSIONS)
    assert err.value.msg == "pg_dump failed with exit status 1: pg_dump: error: query failed: permission denied"
    assert producer.calls == ["start", "close"]  # never finished: the data did not make it
    assert snapshot(catalog.directory) == before


def test_regular_latest_file_is_refused_before_any_work(catalog):
    catalog.ensure()
    with open(os.path.join(catalog.directory, "latest.sql.gz"), "wb") as handle:
        handle.write(b"a manual dump")
    producer = FakeProducer()
    with pytest.raises(ConfigError):
        make_backup(spec_for(catalog), producer, VERSIONS)
    assert producer.calls == []
    assert os.listdir(catalog.directory) == ["latest.sql.gz"]


def test_busy_store_is_refused_before_any_work(catalog):
    catalog.ensure()
    producer = FakeProducer()
    with StoreLock(catalog.directory, "postgresql", "postgresql restore"):
        with pytest.raises(LockTimeout) as err:
            make_backup(spec_for(catalog, lock_timeout=0.2), producer, VERSIONS)
    assert "running postgresql restore" in err.value.msg
    assert producer.calls == []
    assert [n for n in os.listdir(catalog.directory) if n != LOCK_NAME] == []


def test_without_moving_latest(catalog):
    older = old_backup(catalog, 1, latest=True)
    out = make_backup(spec_for(catalog, move_latest=False), FakeProducer(), VERSIONS)
    assert out["latest"] is None and os.path.exists(out["artifact"]["path"])
    assert os.readlink(os.path.join(catalog.directory, "latest.sql.gz")) == os.path.basename(older)


def test_retention_after_a_backup(catalog):
    recent = old_backup(catalog, 2)
    expired_good = old_backup(catalog, 10)
    expired_corrupt = old_backup(catalog, 20)
    with open(expired_corrupt, "r+b") as handle:
        handle.truncate(os.path.getsize(expired_corrupt) - 5)

    out = make_backup(spec_for(catalog, retention_days=7), FakeProducer(), VERSIONS)
    new = out["artifact"]["path"]
    assert out["retention"] == {
        "deleted": [expired_good, expired_corrupt],
        "protected": new,
        "reason": "kept %s, the newest good backup" % os.path.basename(new),
    }
    remaining = sorted(n for n in os.listdir(catalog.directory) if n != LOCK_NAME)
    assert remaining == sorted([
        os.path.basename(new), os.path.basename(new) + ".manifest.json",
        os.path.basename(recent), os.path.basename(recent) + ".manifest.json", "latest.sql.gz",
    ])


def test_predict_backup_writes_nothing_and_has_the_same_shape(catalog, tmp_path):
    ten = old_backup(catalog, 10)
    twenty = old_backup(catalog, 20)
    before = snapshot(catalog.directory)
    spec = spec_for(catalog, retention_days=7)
    predicted = predict_backup(spec)
    sizes = {path: os.path.getsize(path) for path in (ten, twenty)}
    assert snapshot(catalog.directory) == before
    assert os.path.dirname(predicted["artifact"]["path"]) == catalog.directory
    assert predicted["artifact"]["name"].endswith(".sql.gz") and predicted["artifact"]["sha256"] is None
    assert predicted["manifest"] == predicted["artifact"]["path"] + ".manifest.json"
    assert predicted["latest"] == os.path.join(catalog.directory, "latest.sql.gz")
    # today, before the new backup exists, the 10-day one is the newest good: it stays
    assert predicted["retention"] == {"deleted": [twenty], "protected": ten, "reason": "kept %s, the newest good backup" % os.path.basename(ten)}
    real = make_backup(spec, FakeProducer(), VERSIONS)
    assert set(predicted) == set(real) and set(predicted["artifact"]) == set(real["artifact"])
    # the sizes before the new backup, newest first (for the size trend); the real run reports
    # them once retention is done, which deleted both (the new backup is the newest good now)
    assert predicted["artifact"]["history"] == [sizes[ten], sizes[twenty]]
    assert real["artifact"]["history"] == [] and real["retention"]["deleted"] == [ten, twenty]
    assert set(predicted["retention"]) == set(real["retention"])


def test_is_good_and_the_full_read_before_a_restore(catalog):
    good = old_backup(catalog, 1)
    bad = old_backup(catalog, 2, sql=SQL.replace("dump complete", "dump interrupted"))
    corrupt = old_backup(catalog, 3)
    with open(corrupt, "r+b") as handle:
        handle.truncate(30)
    by_path = {e.path: e for e in catalog.entries()}
    assert [is_good(by_path[p], DumpComplete) for p in (good, bad, corrupt)] == [True, False, False]

    report = full_read(by_path[good], DumpComplete())
    assert report.state == "good" and report.checks == {"stream": "ok", "sha256": "ok", "content": "ok"}
    with pytest.raises(VerifyError) as err:
        full_read(by_path[corrupt], DumpComplete())
    assert err.value.msg.startswith("refusing to restore %s, nothing was changed: " % os.path.basename(corrupt))
    assert err.value.details["report"]["state"] == "bad"
    assert err.value.details["report"]["checks"]["stream"] == "failed"


def test_inspect_levels(catalog):
    newest = old_backup(catalog, 2, sql=SQL + "-- " + "x" * 3000 + "\n-- PostgreSQL database dump complete\n")
    older = old_backup(catalog, 3)
    rules = Rules(max_age_hours=25.0, min_size_bytes=100)

    backups, problems = inspect(catalog, rules, "none", DumpComplete)
    assert [b["path"] for b in backups] == [newest, older] and problems == []
    assert all("verification" not in b for b in backups)

    backups, problems = inspect(catalog, rules, "quick", DumpComplete)
    assert backups[0]["verification"]["checks"]["age"] == "failed"  # the age rule: newest only
    assert "age" not in backups[1]["verification"]["checks"]
    assert "stream" not in backups[0]["verification"]["checks"]  # quick reads no data
    assert len(problems) == 1 and "hours old" in problems[0]

    with open(older, "r+b") as handle:
        handle.truncate(os.path.getsize(older) - 4)
    backups, problems = inspect(catalog, rules, "full", DumpComplete)
    assert backups[0]["verification"]["checks"]["content"] == "ok"
    assert backups[1]["verification"]["checks"]["stream"] == "failed"
    assert any("truncated" in p for p in problems) and any("size" in p and "differs from the manifest" in p for p in problems)


def test_inspect_empty_store(catalog):
    backups, problems = inspect(catalog, Rules(), "quick", DumpComplete)
    assert backups == [] and problems == ["no postgresql backup in %s" % catalog.directory]
