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
from ansible_collections.cclite.backup.plugins.module_utils._core._retention import Keep
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
        [LOCK_NAME, "latest.sql.gz", os.path.basename(path), os.path.basename(path) + ".manifest.json", _manifest.JOURNAL]
    )
    journal = catalog.journal.records()
    assert journal == {os.path.basename(path): {
        "op": "add", "name": os.path.basename(path), "size": artifact["size"], "sha256": artifact["sha256"],
        "created": artifact["created"], "kind": "scheduled"}}
    assert out["removed_partials"] == [] and out["preflight"]["expected"] is None
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
        "generations": {},
    }
    remaining = sorted(n for n in os.listdir(catalog.directory) if n != LOCK_NAME)
    assert remaining == sorted([
        os.path.basename(new), os.path.basename(new) + ".manifest.json",
        os.path.basename(recent), os.path.basename(recent) + ".manifest.json", "latest.sql.gz", _manifest.JOURNAL,
    ])
    # the journal knew the expired ones (recorded at the start of the run) and records their removal
    assert sorted(catalog.journal.records()) == sorted([os.path.basename(new), os.path.basename(recent)])
    with open(catalog.journal.path, encoding="utf-8") as handle:
        removed = [json.loads(line)["name"] for line in handle if '"remove"' in line]
    assert removed == [os.path.basename(expired_good), os.path.basename(expired_corrupt)]


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
    assert predicted["retention"] == {"deleted": [twenty], "protected": ten, "reason": "kept %s, the newest good backup" % os.path.basename(ten),
                                      "generations": {}}
    real = make_backup(spec, FakeProducer(), VERSIONS)
    assert set(predicted) == set(real) and set(predicted["artifact"]) == set(real["artifact"])
    # the sizes before the new backup, newest first (for the size trend); the real run reports
    # them once retention is done, which deleted both (the new backup is the newest good now)
    assert predicted["artifact"]["history"] == [sizes[ten], sizes[twenty]]
    assert real["artifact"]["history"] == [] and real["retention"]["deleted"] == [ten, twenty]
    assert set(predicted["retention"]) == set(real["retention"])


def test_generations_in_check_mode_and_in_the_run(catalog):
    """A dry run (check mode) lists what retention with generations would delete and deletes
    nothing; the run deletes what the rules leave once the new backup took its place."""
    ten, forty, forty_one, old = (old_backup(catalog, days) for days in (10, 40, 41, 75))
    spec = spec_for(catalog, retention_days=7, retention_keep=Keep(daily=2))
    before = snapshot(catalog.directory)
    predicted = predict_backup(spec)["retention"]
    assert snapshot(catalog.directory) == before
    # before the new backup: the two newest days are 10 and 40 days ago
    assert predicted["deleted"] == [forty_one, old] and predicted["protected"] == ten
    assert sorted(predicted["generations"]) == sorted(os.path.basename(p) for p in (ten, forty))
    real = make_backup(spec, FakeProducer(), VERSIONS)
    # the new backup is today's generation: 10 days ago is the second, 40 days ago goes too
    assert real["retention"]["deleted"] == [forty, forty_one, old]
    assert [e.path for e in catalog.entries()] == [real["artifact"]["path"], ten]
    assert list(real["retention"]["generations"]) == [os.path.basename(ten)]


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

    found = inspect(catalog, rules, "none", DumpComplete)
    backups, problems = found["backups"], found["problems"]
    assert [b["path"] for b in backups] == [newest, older] and problems == []
    assert found["healthy"] and found["latest"]["path"] == newest and found["directory"] == catalog.directory
    assert all("verification" not in b for b in backups)

    found = inspect(catalog, rules, "quick", DumpComplete)
    backups, problems = found["backups"], found["problems"]
    assert backups[0]["verification"]["checks"]["age"] == "failed"  # the age rule: newest only
    assert "age" not in backups[1]["verification"]["checks"]
    assert "stream" not in backups[0]["verification"]["checks"]  # quick reads no data
    assert len(problems) == 1 and "hours old" in problems[0] and found["healthy"] is False

    with open(older, "r+b") as handle:
        handle.truncate(os.path.getsize(older) - 4)
    found = inspect(catalog, rules, "full", DumpComplete)
    backups, problems = found["backups"], found["problems"]
    assert backups[0]["verification"]["checks"]["content"] == "ok"
    assert backups[1]["verification"]["checks"]["stream"] == "failed"
    assert any("truncated" in p for p in problems) and any("size" in p and "differs from the manifest" in p for p in problems)


def test_a_deep_check_that_cannot_run_is_a_problem_not_a_note(catalog):
    newest = old_backup(catalog, 0)
    rules = Rules(max_age_hours=25.0, min_size_bytes=100)

    def without_tool(entry, report):
        report.skipped("deep", "redis-server is not installed on this host")

    found = inspect(catalog, rules, "deep", DumpComplete, deep=without_tool)
    assert found["healthy"] is False
    assert found["problems"] == ["%s: the deep check did not run (deep not checked: redis-server is not installed on this host)"
                                 % os.path.basename(newest)]
    assert found["backups"][0]["verification"]["checks"]["deep"] == "failed"
    assert inspect(catalog, rules, "deep", DumpComplete, deep=lambda e, r: r.passed("deep"))["healthy"] is True


def test_inspect_empty_store(catalog):
    found = inspect(catalog, Rules(), "quick", DumpComplete)
    backups, problems = found["backups"], found["problems"]
    assert backups == [] and problems == ["no postgresql backup in %s" % catalog.directory]


# issue 18 ------------------------------------------------------------------------------------


def two_backups(catalog: Catalog) -> tuple[str, str]:
    """A then B, both made by make_backup (B's dump differs, so their bytes differ)."""
    a = make_backup(spec_for(catalog), FakeProducer(SQL.replace("alice", "ALICE")), VERSIONS)["artifact"]["path"]
    b = make_backup(spec_for(catalog), FakeProducer(), VERSIONS)["artifact"]["path"]  # the next second's name
    assert a != b
    return a, b


def test_a_deleted_manifest_is_a_problem_and_the_journal_still_checks_the_bytes(catalog):
    a, b = two_backups(catalog)
    b_sha = sha256_of(b)
    os.unlink(b + ".manifest.json")
    shutil.copyfile(a, b)  # an older backup copied over B

    entry = {e.path: e for e in catalog.entries()}[b]
    assert not entry.legacy and entry.journal["sha256"] == b_sha
    assert not is_good(entry, DumpComplete)
    found = inspect(catalog, Rules(min_size_bytes=10), "full", DumpComplete)
    backups, problems = found["backups"], found["problems"]
    listed = {x["path"]: x for x in backups}[b]
    assert listed["legacy"] is False and listed["verification"]["state"] == "bad"
    assert listed["verification"]["checks"]["sha256"] == "failed"
    assert any("manifest missing" in p and "the journal" in p and b_sha in p for p in problems)
    assert any("differs from the journal's %s" % b_sha in p for p in problems)
    with pytest.raises(VerifyError) as err:
        full_read(entry, DumpComplete())
    assert "manifest missing" in err.value.msg
    # retention never takes it for the newest good backup
    assert catalog.prune(0, lambda e: is_good(e, DumpComplete), dry_run=True).protected == a


def test_a_deleted_manifest_with_the_bytes_intact_is_still_reported(catalog):
    _a, b = two_backups(catalog)
    os.unlink(b + ".manifest.json")
    found = inspect(catalog, Rules(min_size_bytes=10), "full", DumpComplete)
    backups, problems = found["backups"], found["problems"]
    listed = {x["path"]: x for x in backups}[b]
    assert listed["verification"]["checks"]["sha256"] == "ok" and listed["verification"]["checks"]["manifest"] == "failed"
    assert listed["legacy"] is False and any("manifest missing" in p for p in problems)


def test_a_replaced_manifest_disagrees_with_the_journal(catalog):
    a, b = two_backups(catalog)
    shutil.copyfile(a, b)
    manifest = _manifest.read(a)
    manifest["artifact"]["name"] = os.path.basename(b)
    with open(b + ".manifest.json", "w", encoding="utf-8") as handle:  # by hand: not through the journal
        json.dump(manifest, handle)
    entry = {e.path: e for e in catalog.entries()}[b]
    assert entry.manifest_error and "differs from the journal's" in entry.manifest_error
    assert not is_good(entry, DumpComplete)


def test_a_legacy_backup_stays_legacy(catalog):
    legacy = old_backup(catalog, 1, manifest=False)
    make_backup(spec_for(catalog), FakeProducer(), VERSIONS)
    entry = {e.path: e for e in catalog.entries()}[legacy]
    assert entry.legacy and entry.journal is None and entry.manifest_error is None


def test_backups_made_before_the_journal_are_recorded_by_the_next_run(catalog):
    older = old_backup(catalog, 1)
    os.unlink(catalog.journal.path)
    make_backup(spec_for(catalog), FakeProducer(), VERSIONS)
    assert catalog.journal.records()[os.path.basename(older)]["sha256"] == sha256_of(older)


def test_stale_partials_are_reported_then_removed_by_the_next_run(catalog):
    old_backup(catalog, 0.01, latest=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    leftover = os.path.join(catalog.directory, ".postgres_backup_20990101_000000.sql.gz.%d.abcdefgh.partial" % dead.pid)
    with open(leftover, "wb") as handle:
        handle.write(b"x" * 4321)
    found = inspect(catalog, Rules(min_size_bytes=10), "quick", DumpComplete)
    _backups, problems = found["backups"], found["problems"]
    assert any(leftover in p and "4321 bytes" in p and "killed" in p for p in problems)
    out = make_backup(spec_for(catalog), FakeProducer(), VERSIONS)
    assert out["removed_partials"] == [{"name": os.path.basename(leftover), "size": 4321, "pid": dead.pid}]
    assert not os.path.exists(leftover)
    found = inspect(catalog, Rules(min_size_bytes=10), "quick", DumpComplete)
    _backups, problems = found["backups"], found["problems"]
    assert problems == []


def test_inspect_checks_that_latest_is_the_newest_intact_backup(catalog):
    newest = old_backup(catalog, 0.01)
    older = old_backup(catalog, 1, latest=True)
    rules = Rules(min_size_bytes=10)
    found = inspect(catalog, rules, "quick", DumpComplete)
    _backups, problems = found["backups"], found["problems"]
    assert problems == ["%s points at %s, but the newest intact backup is %s: a restore of latest would take the wrong file; "
                        "run a backup (it moves latest), or restore %s by name"
                        % (os.path.join(catalog.directory, "latest.sql.gz"), os.path.basename(older),
                           os.path.basename(newest), os.path.basename(newest))]
    # latest on a corrupt newest backup is reported too, and the corruption itself
    os.unlink(os.path.join(catalog.directory, "latest.sql.gz"))
    os.symlink(os.path.basename(newest), os.path.join(catalog.directory, "latest.sql.gz"))
    with open(newest, "r+b") as handle:
        handle.truncate(os.path.getsize(newest) - 4)
    found = inspect(catalog, rules, "full", DumpComplete)
    _backups, problems = found["backups"], found["problems"]
    assert any("points at %s, but the newest intact backup is %s" % (os.path.basename(newest), os.path.basename(older)) in p
               for p in problems)
    found = inspect(catalog, rules, "none", DumpComplete)
    _backups, problems = found["backups"], found["problems"]
    assert problems == []


def test_a_latest_link_out_of_the_store_says_what_is_wrong(catalog, tmp_path):
    old_backup(catalog, 0.01)
    outside = tmp_path / "elsewhere.sql.gz"
    outside.write_bytes(gzip.compress(b"x"))
    os.symlink(str(outside), os.path.join(catalog.directory, "latest.sql.gz"))
    with pytest.raises(ConfigError) as err:
        catalog.resolve("latest")
    assert "points at %s, outside %s" % (outside, catalog.directory) in err.value.msg
    assert "expected" not in err.value.msg
    found = inspect(catalog, Rules(min_size_bytes=10), "quick", DumpComplete)
    _backups, problems = found["backups"], found["problems"]
    assert any("outside" in p for p in problems)


def test_a_name_that_is_not_a_backup_says_what_names_look_like(catalog):
    with pytest.raises(ConfigError) as err:
        catalog.resolve("notes.txt")
    assert "postgres_backup_YYYYMMDD_HHMMSS.sql[.gz|.zst]" in err.value.msg


def test_an_unwritable_backup_root_fails_with_what_where_and_the_fix(catalog):
    catalog.ensure()
    os.chmod(catalog.directory, 0o500)
    try:
        if os.access(catalog.directory, os.W_OK):
            pytest.skip("running as root: permissions do not stop writes (the fault suite mounts a read-only file system)")
        with pytest.raises(ConfigError) as err:
            make_backup(spec_for(catalog), FakeProducer(), VERSIONS)
    finally:
        os.chmod(catalog.directory, 0o700)
    assert err.value.msg.startswith("cannot write backups to %s: permission denied." % catalog.directory)


def test_unwritable_message_for_a_read_only_file_system():
    from ansible_collections.cclite.backup.plugins.module_utils._core._catalog import unwritable
    import errno
    msg = unwritable("/srv/backups/postgresql", OSError(errno.EROFS, "Read-only file system"))
    assert msg == ("cannot write backups to /srv/backups/postgresql: the file system is mounted read-only. Nothing was written; "
                   "remount it read-write, or set backup_root to a directory on a writable file system")


def test_free_space_is_checked_before_anything_is_written(catalog):
    older = old_backup(catalog, 1)
    free = os.statvfs(catalog.directory).f_bavail * os.statvfs(catalog.directory).f_frsize
    # the previous backup's recorded size is what the next one is expected to need: make it huge
    entry = catalog.entries()[0]
    manifest = dict(entry.manifest, artifact=dict(entry.manifest["artifact"], size=free * 2))
    catalog.journal.add(manifest)
    _manifest.write_json(older + ".manifest.json", manifest)
    before = snapshot(catalog.directory)
    with pytest.raises(ConfigError) as err:
        make_backup(spec_for(catalog), FakeProducer(), VERSIONS)
    assert err.value.msg.startswith("not enough free space for a backup in %s: " % catalog.directory)
    assert "expected (%s was" % os.path.basename(older) in err.value.msg and "plus 25%" in err.value.msg
    assert err.value.details["preflight"]["free"] > 0 and err.value.details["preflight"]["expected"] == int(free * 2 * 1.25)
    assert snapshot(catalog.directory) == before
    assert [e.path for e in catalog.entries()] == [older]


def test_free_space_of_a_first_backup_uses_the_engine_estimate(catalog):
    free = os.statvfs(os.path.dirname(catalog.root)).f_bavail * os.statvfs(os.path.dirname(catalog.root)).f_frsize
    with pytest.raises(ConfigError) as err:
        make_backup(spec_for(catalog, estimate=lambda: free * 4), FakeProducer(), VERSIONS)
    assert "a compressed dump is taken as 50% of it" in err.value.msg
    out = make_backup(spec_for(catalog, estimate=lambda: 1000), FakeProducer(), VERSIONS)
    assert out["preflight"]["expected"] == 500
    unknown = predict_backup(spec_for(Catalog(str(catalog.root) + "2", POSTGRESQL), estimate=lambda: None))
    assert unknown["preflight"]["expected"] is None and "cannot tell" in unknown["preflight"]["basis"]
