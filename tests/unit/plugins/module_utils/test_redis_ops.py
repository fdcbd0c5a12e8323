# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Redis backup, verification and restore flows on the shared core.

Pure logic (names, AOF manifests, staging of restore files) runs on real files; the flows run
against a real redis-server on a Unix socket (skipped where it is not installed). RDB restores
stop and start a service, which the integration tests and the Molecule scenario cover.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import stat

import pytest

from ansible_collections.cclite.backup.plugins.module_utils._core import _ops
from ansible_collections.cclite.backup.plugins.module_utils._engines.redis import _client as rd
from ansible_collections.cclite.backup.plugins.module_utils._engines.redis import _snapshot
from ansible_collections.cclite.backup.plugins.module_utils._engines.redis import _engine as ops
from ansible_collections.cclite.backup.plugins.module_utils._engines.redis import _restore as redis_restore
from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import Compression
from ansible_collections.cclite.backup.plugins.module_utils._core._catalog import Entry, local_now
from ansible_collections.cclite.backup.plugins.module_utils._core._restore import RestoreSpec
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import ConfigError, RestoreError, VerifyError
from ansible_collections.cclite.backup.plugins.module_utils._core._verify import Rules

from ansible_collections.cclite.backup.tests.unit.plugins.module_utils.test_redis_server import Server, dumps, seed

needs_redis = pytest.mark.skipif(not shutil.which("redis-server"), reason="redis-server is not installed")


# --- names and AOF manifests -----------------------------------------------------------------


def test_catalog_names_follow_the_guide(tmp_path):
    rdb = ops.catalog(str(tmp_path), "rdb")
    assert rdb.directory == str(tmp_path / "redis")
    assert rdb.file_name(local_now().replace(year=2025, month=12, day=26, hour=2, minute=0, second=0), ".gz") == "redis_backup_20251226_020000.rdb.gz"
    assert rdb.latest_name(".gz") == "latest.rdb.gz"
    logical = ops.catalog(str(tmp_path), "logical")
    assert logical.latest_name(".gz") == "latest.keys.gz"
    assert rdb.parse("redis_backup_20251226_020000.keys.gz") is None  # the methods never mix
    assert rdb.layout.safety().prefix == "redis_safety"
    with pytest.raises(ConfigError, match="unknown method"):
        ops.catalog(str(tmp_path), "aof")


def test_aof_manifest_names_and_sequence():
    base, incr, text = redis_restore.aof_manifest("appendonly.aof", 7)
    assert (base, incr) == ("appendonly.aof.7.base.rdb", "appendonly.aof.7.incr.aof")
    assert text == "file appendonly.aof.7.base.rdb seq 7 type b\nfile appendonly.aof.7.incr.aof seq 7 type i\n"
    existing = "file appendonly.aof.3.base.rdb seq 3 type b\nfile appendonly.aof.2.incr.aof seq 2 type h\nfile appendonly.aof.4.incr.aof seq 4 type i\n"
    assert redis_restore.highest_seq(existing) == 4
    assert redis_restore.highest_seq("") == 0


# --- staging the files of an RDB restore -----------------------------------------------------


def host_restore(tmp_path) -> redis_restore.Restore:
    spec = RestoreSpec(ops.catalog(str(tmp_path / "backups")), "latest", True)
    return redis_restore.Restore(redis_restore.RestoreRequest(rd.Connection(mode="host"), spec))


def backup_file(tmp_path, content: bytes, sha: str | None = None) -> Entry:
    directory = tmp_path / "backups" / "redis"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "redis_backup_20250101_000000.rdb.gz"
    path.write_bytes(gzip.compress(content))
    manifest = {"artifact": {"sha256": sha}} if sha else None
    return Entry(path.name, str(path), local_now(), "", path.stat().st_size, manifest)


def test_stage_writes_rdb_and_aof_files_beside_the_old_ones(tmp_path):
    data = tmp_path / "data"
    aof = data / "appendonlydir"
    aof.mkdir(parents=True)
    (data / "dump.rdb").write_bytes(b"old")
    uid, gid = os.getuid(), os.getgid()
    files = redis_restore.Files(str(data), str(data / "dump.rdb"), (uid, gid), 0o640, aof=True, aof_dir=str(aof),
                                aof_file="appendonly.aof", aof_existing=["appendonly.aof.3.base.rdb"], aof_seq=3, aof_owner=(uid, gid))
    restore = host_restore(tmp_path)
    staged = restore._stage(backup_file(tmp_path, b"REDIS0010new-data"), files, str(tmp_path / "work"))
    assert list(staged.values()) == [
        str(data / "dump.rdb"), str(aof / "appendonly.aof.4.base.rdb"), str(aof / "appendonly.aof.4.incr.aof"),
        str(aof / "appendonly.aof.manifest"),  # the manifest last: once it moves, Redis reads the new files
    ]
    tmp_rdb, tmp_base, tmp_incr, tmp_manifest = list(staged)
    assert os.path.dirname(tmp_rdb) == str(data) and os.path.basename(tmp_rdb).startswith(".")
    assert open(tmp_rdb, "rb").read() == b"REDIS0010new-data"
    assert os.stat(tmp_base).st_ino == os.stat(tmp_rdb).st_ino  # a link, not a second copy
    assert os.path.getsize(tmp_incr) == 0
    assert open(tmp_manifest).read() == redis_restore.aof_manifest("appendonly.aof", 4)[2]
    assert stat.S_IMODE(os.stat(tmp_rdb).st_mode) == 0o640
    assert (data / "dump.rdb").read_bytes() == b"old"  # nothing replaced yet
    restore._place(staged)
    assert (data / "dump.rdb").read_bytes() == b"REDIS0010new-data"
    assert (aof / "appendonly.aof.manifest").read_text().startswith("file appendonly.aof.4.base.rdb seq 4 type b")
    assert sorted(p for p in os.listdir(data) if p.startswith(".")) == []


def test_stage_refuses_a_file_that_changed_since_it_was_checked(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    files = redis_restore.Files(str(data), str(data / "dump.rdb"), (os.getuid(), os.getgid()), 0o600)
    restore = host_restore(tmp_path)
    with pytest.raises(RestoreError, match="changed while it was being restored; nothing was changed"):
        restore._stage(backup_file(tmp_path, b"REDIS0010x", sha="0" * 64), files, str(tmp_path / "work"))
    assert os.listdir(data) == []


def test_single_file_aof_is_replaced_by_the_rdb(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    files = redis_restore.Files(str(data), str(data / "dump.rdb"), (os.getuid(), os.getgid()), 0o600, aof=True, aof_file="appendonly.aof")
    restore = host_restore(tmp_path)
    staged = restore._stage(backup_file(tmp_path, b"REDIS0009old-redis"), files, str(tmp_path / "work"))
    assert sorted(staged.values()) == [str(data / "appendonly.aof"), str(data / "dump.rdb")]


def test_host_restore_needs_a_service(tmp_path):
    req = redis_restore.RestoreRequest(rd.Connection(mode="host"), RestoreSpec(ops.catalog(str(tmp_path)), "latest", True), service="")
    with pytest.raises(ConfigError, match="set the option service"):
        redis_restore.Restore(req)._service_command("stop")
    req.service, req.service_manager = "redis-server", "systemd"
    assert redis_restore.Restore(req)._service_command("start").argv == ("systemctl", "start", "redis-server")
    req.service_manager = "sysv"
    assert redis_restore.Restore(req)._service_command("stop").argv == ("service", "redis-server", "stop")


# --- the flows on a real server --------------------------------------------------------------


@pytest.fixture
def server(tmp_path):
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    srv = Server(str(tmp_path / "srv"))
    with srv.session() as session:
        seed(session)
    yield srv
    srv.stop()


def spec_for(root: str, conn: rd.Connection, method: str = "rdb", **kw) -> _ops.BackupSpec:
    return _ops.BackupSpec(
        catalog=ops.catalog(root, method), compression=Compression("gzip", 1), fmt=method,
        content=ops.content_factory(conn, method), **kw,
    )


@needs_redis
def test_plan_transfer(server):
    with server.session() as session:
        assert ops.plan_transfer(session, server.conn, "auto") == ("file", os.path.join(server.data, "dump.rdb"))
        assert ops.plan_transfer(session, server.conn, "replication") == ("replication", None)
        with pytest.raises(ConfigError, match="unknown rdb_transfer"):
            ops.plan_transfer(session, server.conn, "scp")
        remote = rd.Connection(mode="host", login_host="10.9.9.9")
        assert ops.plan_transfer(session, remote, "auto") == ("replication", None)
        with pytest.raises(ConfigError, match="needs the server's RDB on this host"):
            ops.plan_transfer(session, remote, "file")


@needs_redis
def test_check_mode_predicts_and_writes_nothing(server, tmp_path):
    root = str(tmp_path / "b")
    out = ops.backup(ops.BackupRequest(server.conn, spec_for(root, server.conn)), check_mode=True)
    assert out["artifact"]["size"] is None and out["artifact"]["path"].endswith(".rdb.gz")
    assert out["source"]["transfer"] == "file" and out["source"]["keys"] == 9
    assert not os.path.exists(os.path.join(root, "redis")) or os.listdir(os.path.join(root, "redis")) == []
    with server.session() as session:
        assert _snapshot.rdb_saves(session) == 0  # no save was started


@needs_redis
def test_rdb_backup_then_verify_deep(server, tmp_path):
    root = str(tmp_path / "b")
    out = ops.backup(ops.BackupRequest(server.conn, spec_for(root, server.conn)), check_mode=False)
    source = out["source"]
    assert source["counts_exact"] and source["keys"] == 9 and source["rdb_version"] >= 9
    assert source["rdb_check"] == {"tool": "redis-check-rdb", "keys": 9, "expires": 1, "already_expired": 0}
    assert source["databases"] == {"db0": {"keys": 8, "expires": 1}, "db3": {"keys": 1, "expires": 0}}
    manifest = json.load(open(out["manifest"]))
    assert manifest["source"] == source and manifest["artifact"]["sha256"] == out["artifact"]["sha256"]
    assert os.readlink(out["latest"]) == out["artifact"]["name"]
    report = ops.info(ops.catalog(root), Rules(min_size_bytes=1), "deep", server.conn, "rdb")
    assert report["healthy"], report["problems"]
    checks = report["backups"][0]["verification"]["checks"]
    assert checks["deep"] == checks["content"] == checks["sha256"] == "ok"


@needs_redis
def test_replication_transfer(server, tmp_path):
    root = str(tmp_path / "b")
    settings = ops.Settings(transfer="replication")
    out = ops.backup(ops.BackupRequest(server.conn, spec_for(root, server.conn), settings), check_mode=False)
    assert out["source"]["transfer"] == "replication" and not out["source"]["counts_exact"]
    assert [n for n in os.listdir(os.path.join(root, "redis")) if n.endswith(".partial")] == []  # temp RDB gone
    report = ops.info(ops.catalog(root), Rules(min_size_bytes=1), "full", server.conn, "rdb")
    assert report["healthy"], report["problems"]


def slow_save(session: rd.Session, keys: int = 3000, delay_us: int = 100) -> None:
    """Enough keys, each saved ``delay_us`` late (rdb-key-save-delay), for a save that lasts a while."""
    session.pipeline([("SET", "slow:%d" % i, "v" * 64) for i in range(keys)])
    session.call("CONFIG", "SET", "rdb-key-save-delay", delay_us)


@needs_redis
def test_the_rdb_is_copied_while_redis_writes_it(server, tmp_path):
    """On the server's host the save child's temp file is read as it grows; the file renamed
    into place is the one read, redis-check-rdb read the whole stream, the backup verifies."""
    root = str(tmp_path / "b")
    with server.session() as session:
        slow_save(session)
        facts = rd.server_facts(session)
        transfer, path = ops.plan_transfer(session, server.conn, "file")
        producer = ops.RdbProducer(session, server.conn, ops.Settings(), facts, transfer, path, root)
        out = _ops.make_backup(spec_for(root, server.conn), producer, {"server": facts["redis_version"], "tool": "-"})
        session.call("CONFIG", "SET", "rdb-key-save-delay", 0)
    assert producer.followed is not None and producer.followed[0] == producer.followed[1]
    assert out["source"]["keys"] == 3009 and out["source"]["rdb_check"]["keys"] == 3009
    with open(path, "rb") as rdb, gzip.open(out["artifact"]["path"]) as copy:
        assert copy.read() == rdb.read()
    report = ops.info(ops.catalog(root), Rules(min_size_bytes=1), "full", server.conn, "rdb")
    assert report["healthy"], report["problems"]


@needs_redis
def test_a_followed_file_that_is_not_the_one_renamed_into_place_is_taken_again(server, tmp_path, monkeypatch):
    """The file read while the save ran is not the RDB renamed into place (here: another file):
    the backup is taken again, copying the finished RDB, and nothing of the first try is kept."""
    root = str(tmp_path / "b")
    other = tmp_path / "other.rdb"
    with server.session() as session:
        slow_save(session)
        _snapshot.bgsave(session, server.conn, timeout=30)
        shutil.copy(os.path.join(server.data, "dump.rdb"), other)
        opened = []
        monkeypatch.setattr(_snapshot, "open_temp_rdb", lambda *a, **k: opened.append(1) or open(other, "rb", buffering=0))
        out = ops.backup(ops.BackupRequest(server.conn, spec_for(root, server.conn)), check_mode=False)
        session.call("CONFIG", "SET", "rdb-key-save-delay", 0)
    assert opened == [1]  # followed once, then not again
    assert out["source"]["keys"] == 3009 and out["source"]["rdb_check"]["keys"] == 3009
    assert sorted(n for n in os.listdir(os.path.join(root, "redis")) if n.startswith("redis_backup_")) == [
        out["artifact"]["name"], out["artifact"]["name"] + ".manifest.json"]


@needs_redis
def test_a_save_that_replaced_ours_is_detected(server, tmp_path):
    with server.session() as session:
        facts = rd.server_facts(session)
        transfer, path = ops.plan_transfer(session, server.conn, "file")
        producer = ops.RdbProducer(session, server.conn, ops.Settings(), facts, transfer, path, str(tmp_path))
        producer.start()
        _snapshot.bgsave(session, server.conn, timeout=30)  # another save, after ours
        with pytest.raises(rd.RdbReplaced, match="replaced the RDB while it was copied"):
            producer.finish()


@needs_redis
def test_logical_backup_restore_and_refusals(server, tmp_path):
    root = str(tmp_path / "b")
    out = ops.backup(ops.BackupRequest(server.conn, spec_for(root, server.conn, "logical"), ops.Settings(method="logical")), False)
    assert out["artifact"]["name"].endswith(".keys.gz") and out["source"]["keys"] == 9
    assert "not a point-in-time image" in out["source"]["notes"][0]
    report = ops.info(ops.catalog(root, "logical"), Rules(min_size_bytes=1), "deep", server.conn, "logical")
    assert report["healthy"], report["problems"]
    with server.session() as session:
        before = dumps(session)
        session.pipeline([("FLUSHALL",), ("SET", "marker", "still here")])

    def request(**kw):
        base = dict(name="latest", confirm=True)
        base.update(kw)
        return redis_restore.RestoreRequest(server.conn, RestoreSpec(ops.catalog(root, "logical"), **base), method="logical")

    with pytest.raises(RestoreError, match="without confirmation"):
        redis_restore.Restore(request(confirm=False)).run(check_mode=False)
    checked = redis_restore.Restore(request(confirm=False)).run(check_mode=True)
    assert "check mode" in checked["msg"]
    broken = os.path.join(root, "redis", "redis_backup_20200101_000000.keys.gz")
    with open(out["artifact"]["path"], "rb") as src, open(broken, "wb") as dst:
        dst.write(src.read()[:-40])
    with pytest.raises(VerifyError, match="nothing was changed"):
        redis_restore.Restore(request(name=os.path.basename(broken))).run(check_mode=False)
    with server.session() as session:
        assert session.call("GET", "marker") == [b"still here"]
    os.unlink(broken)

    result = redis_restore.Restore(request()).run(check_mode=False)
    assert result["databases"] == {"db0": {"keys": 8, "expires": 1}, "db3": {"keys": 1, "expires": 0}}
    assert result["safety_backup"]["path"].startswith(os.path.join(root, "redis", "safety", "redis_safety_"))
    assert result["duplicates"] == 0 and "FLUSHALL" in " ".join(result["actions"])
    with server.session() as session:
        assert dumps(session) == before
    # and back to what the restore replaced
    back = redis_restore.Restore(request(name="safety/" + result["safety_backup"]["name"])).run(check_mode=False)
    assert back["databases"] == {"db0": {"keys": 1, "expires": 0}}


@needs_redis
def test_rdb_restore_of_a_remote_server_is_refused(server, tmp_path):
    root = str(tmp_path / "b")
    ops.backup(ops.BackupRequest(server.conn, spec_for(root, server.conn)), check_mode=False)
    with server.session() as session:
        with pytest.raises(ConfigError, match="use method logical"):
            remote = rd.Connection(mode="host", login_host="10.9.9.9")
            redis_restore.Restore(redis_restore.RestoreRequest(remote, RestoreSpec(ops.catalog(root), "latest", True))).files(session)


def test_a_zombie_is_not_a_running_server():
    import subprocess
    import time

    child = subprocess.Popen(["sleep", "0"])
    for _attempt in range(50):  # exited but not reaped: a zombie, as under a container's sleep PID 1
        with open("/proc/%d/stat" % child.pid) as handle:
            if handle.read().rsplit(")", 1)[-1].split()[0] == "Z":
                break
        time.sleep(0.05)
    assert redis_restore.process_alive(child.pid) is False
    child.wait()
    assert redis_restore.process_alive(child.pid) is False
    assert redis_restore.process_alive(os.getpid()) is True


@needs_redis
def test_an_rdb_that_fails_redis_check_rdb_is_never_kept(server, tmp_path, fake_program):
    fake_program("redis-check-rdb", 'echo "--- RDB ERROR DETECTED ---"; echo "[offset 9] Wrong RDB checksum"; exit 1')
    root = str(tmp_path / "b")
    with pytest.raises(Exception, match="did not pass redis-check-rdb: redis-check-rdb found a problem: Wrong RDB checksum"):
        ops.backup(ops.BackupRequest(server.conn, spec_for(root, server.conn)), check_mode=False)
    assert [n for n in os.listdir(os.path.join(root, "redis")) if not n.startswith(".")] == []


@needs_redis
def test_an_rdb_with_other_keys_than_counted_is_taken_again(server, tmp_path, fake_program):
    fake_program("redis-check-rdb", 'echo "[info] 3 keys read"; echo "[info] 0 expires"')
    with pytest.raises(Exception, match="9 were counted at the fork.*3 times in a row"):
        ops.backup(ops.BackupRequest(server.conn, spec_for(str(tmp_path / "b"), server.conn)), check_mode=False)
