# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Redis engine against a real redis-server: sessions, BGSAVE and how it fails, the logical
dump and restore, the throwaway server and redis-check-rdb.

Each test starts its own server on a Unix socket in its temp dir (no TCP port); the tests are
skipped where redis-server is not installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import typing as t

import pytest

from ansible_collections.cclite.backup.plugins.module_utils._core._restore import compare
from ansible_collections.cclite.backup.plugins.module_utils._engines.redis import _client as rd
from ansible_collections.cclite.backup.plugins.module_utils._engines.redis import _compare, _logical, _rdb, _scratch, _snapshot
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import StageError

pytestmark = pytest.mark.skipif(not shutil.which("redis-server"), reason="redis-server is not installed")

ALL_BYTES = bytes(range(256))


class Server:
    def __init__(self, directory: str, *args: str) -> None:
        self.dir = directory
        self.data = os.path.join(directory, "data")
        os.makedirs(self.data, exist_ok=True)
        self.socket = os.path.join(directory, "redis.sock")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", "0", "--unixsocket", self.socket, "--dir", self.data, "--save", "",
             "--logfile", os.path.join(directory, "redis.log"), *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.conn = rd.Connection(mode="host", login_unix_socket=self.socket)
        for _attempt in range(100):
            if os.path.exists(self.socket):
                break
            time.sleep(0.05)

    def session(self) -> rd.Session:
        return rd.Session(self.conn)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def server(tmp_path: t.Any) -> t.Iterator[Server]:
    srv = Server(str(tmp_path / "srv"))
    yield srv
    srv.stop()


def seed(session: rd.Session) -> None:
    session.pipeline([
        ("SET", "plain", "value"),
        ("SET", b"bin\x00\xff\n\"\\", ALL_BYTES * 3),
        ("SET", "ttl", "x", "PXAT", 4102444800123),
        ("HSET", "hash", "a", "1", b"\x00", b"\xff"),
        ("RPUSH", "list", "a", "b", "c"),
        ("SADD", "set", "x", "y"),
        ("ZADD", "zset", 1.5, "a", -2, "b"),
        ("XADD", "stream", "1-1", "f", "v"),
        ("SELECT", 3),
        ("SET", "db3", "three"),
        ("SELECT", 0),
    ])


def dumps(session: rd.Session) -> dict[tuple[int, bytes], tuple[bytes, int]]:
    """Every key's DUMP payload (members, for sets) and absolute expiry."""
    out = {}
    for name in rd.parse_keyspace(session.info("keyspace")):
        db = int(name[2:])
        session.call("SELECT", db)
        cursor = b"0"
        while True:
            reply = session.call("SCAN", cursor)
            cursor = reply[0]
            for key in reply[1:]:
                if session.call("TYPE", key)[0] == b"set":  # a hashtable set may come back in another order
                    value = sorted(session.call("SMEMBERS", key))
                else:
                    value = session.call("DUMP", key)[0]
                out[(db, key)] = (value, session.call("PEXPIRETIME", key)[0])
            if cursor == b"0":
                break
    session.call("SELECT", 0)
    return out


def test_session_is_binary_safe_both_ways(server):
    with server.session() as session:
        key = b"k\x00\r\n \"'\\\xff"
        assert session.call("SET", key, ALL_BYTES) == [b"OK"]
        assert session.call("GET", key) == [ALL_BYTES]
        assert session.call("DUMP", "missing") == [None]
        assert session.call("PTTL", key) == [-1]
        assert session.config_get("dbfilename") == "dump.rdb"
        assert session.config_get("no-such-setting") is None
        assert session.info("persistence")["loading"] == "0"


def test_bgsave_counts_exactly_and_samples(server):
    with server.session() as session:
        seed(session)
        snap = _snapshot.bgsave(session, server.conn, pause_ms=1000, sample_keys=3, timeout=60)
        assert snap.exact and snap.paused_ms is not None and snap.paused_ms < 1000
        assert snap.databases == {"db0": {"keys": 8, "expires": 1}, "db3": {"keys": 1, "expires": 0}}
        assert snap.saves == _snapshot.rdb_saves(session) == 1
        assert {e["db"] for e in snap.sample} == {0, 3}
        db3 = [e for e in snap.sample if e["db"] == 3][0]
        assert db3["key"] == "db3" and db3["type"] == "string" and db3["length"] == 5 and db3["expire_at_ms"] == -1
        assert os.path.getsize(os.path.join(server.data, "dump.rdb")) > 100
        # writes were paused for the count only: they work again
        assert session.call("SET", "after", "1") == [b"OK"]


def test_bgsave_without_pause_says_the_counts_are_approximate(server):
    with server.session() as session:
        seed(session)
        snap = _snapshot.bgsave(session, server.conn, pause_ms=0, sample_keys=3, timeout=60)
    assert not snap.exact and snap.sample == [] and snap.paused_ms is None


def test_a_failed_save_reports_the_reason_and_the_hint(server):
    with server.session() as session:
        seed(session)
        shutil.rmtree(server.data)  # Redis keeps its cwd, but can no longer create the temp RDB
        with pytest.raises(StageError) as info:
            _snapshot.bgsave(session, server.conn, timeout=30)
    assert "the background save failed" in info.value.msg
    assert "rdb_last_bgsave_status:err" in info.value.msg
    assert "vm.overcommit_memory" in info.value.msg


def test_a_stalled_save_fails_after_the_timeout(server):
    with server.session() as session:
        seed(session)
        session.call("CONFIG", "SET", "rdb-key-save-delay", 200000)  # 0.2 s per key
        with pytest.raises(StageError, match="did not finish within 0.5 seconds; it was left running"):
            _snapshot.bgsave(session, server.conn, timeout=0.5)
        session.call("CONFIG", "SET", "rdb-key-save-delay", 0)


def test_a_running_save_is_waited_for(server):
    with server.session() as session:
        seed(session)
        session.call("CONFIG", "SET", "rdb-key-save-delay", 30000)  # about 0.3 s for the whole save
        session.call("BGSAVE")
        snap = _snapshot.bgsave(session, server.conn, timeout=30)
        assert snap.saves == 2 and _snapshot.rdb_saves(session) == 2  # ours is the second, it waited


def test_a_disabled_bgsave_points_at_the_logical_method(tmp_path):
    srv = Server(str(tmp_path / "s"), "--rename-command", "BGSAVE", "")
    try:
        with srv.session() as session:
            with pytest.raises(StageError, match="BGSAVE was refused.*method logical"):
                _snapshot.bgsave(session, srv.conn, timeout=5)
    finally:
        srv.stop()


def test_logical_dump_and_restore_are_exact(server, tmp_path):
    import io

    with server.session() as session:
        seed(session)
        before = dumps(session)
        sink = io.BytesIO()
        stats = _logical.dump_logical(session, sink, ["db0", "db3"], {"redis_version": "7.0.0"}, batch=2)
    assert stats["keys"] == 9 and stats["databases"]["db0"] == {"keys": 8, "expires": 1}
    assert stats["rdb_version"] and stats["skipped"] == 0
    with _scratch.ScratchServer() as scratch:
        loaded = _logical.restore_logical(scratch.session, [sink.getvalue()], empty=True, batch=3)
        assert loaded["keys"] == 9 and loaded["duplicates"] == {}
        assert dumps(scratch.session) == before
        assert compare(_compare.database_counts(_logical.expected_after_load(loaded), rd.parse_keyspace(scratch.session.info("keyspace")))) == []


def test_logical_restore_counts_duplicates_and_keeps_the_later_copy():
    import io

    sink = io.BytesIO()
    with _scratch.ScratchServer() as source:
        source.session.pipeline([("SET", "k", "old")])
        old = source.session.call("DUMP", "k")[0]
        source.session.pipeline([("SET", "k", "new")])
        new = source.session.call("DUMP", "k")[0]
    writer = _logical.LogicalWriter(sink, {})
    writer.select(0)
    writer.key(b"k", -1, old)
    writer.key(b"k", -1, new)
    writer.key(b"gone", 1000, old)  # expired long ago: RESTORE ... ABSTTL does not create it
    writer.end()
    with _scratch.ScratchServer() as target:
        stats = _logical.restore_logical(target.session, [sink.getvalue()], empty=True)
        assert stats["duplicates"] == {"db0": 1} and stats["expired_on_load"] == 1
        assert target.session.call("GET", "k") == [b"new"]
        assert target.session.call("EXISTS", "gone") == [0]
        assert rd.parse_keyspace(target.session.info("keyspace")) == {"db0": {"keys": 1, "expires": 0}}


def test_logical_restore_stops_at_the_first_error_and_says_where():
    import io

    sink = io.BytesIO()
    writer = _logical.LogicalWriter(sink, {})
    writer.select(0)
    writer.key(b"bad", -1, b"not a dump payload at all")
    writer.end()
    with _scratch.ScratchServer() as target:
        with pytest.raises(StageError, match="RESTORE failed after 0 keys were restored: ERR DUMP payload"):
            _logical.restore_logical(target.session, [sink.getvalue()], empty=True)
    with _scratch.ScratchServer() as target:
        with pytest.raises(StageError, match="truncated"):
            _logical.restore_logical(target.session, [sink.getvalue()[:-20]], empty=True)


def test_scratch_server_loads_an_rdb_and_leaves_nothing(server):
    with server.session() as session:
        seed(session)
        snap = _snapshot.bgsave(session, server.conn, sample_keys=5, timeout=60)
    with open(os.path.join(server.data, "dump.rdb"), "rb") as handle:
        rdb = handle.read()
    with _scratch.ScratchServer([rdb[:100], rdb[100:]]) as scratch:
        directory = scratch.dir
        assert rd.parse_keyspace(scratch.session.info("keyspace")) == snap.databases
        problems, compared = _compare.check_sample(scratch.session, snap.sample, int(time.time() * 1000))
        assert problems == [] and compared == len(snap.sample) > 0
        scratch.session.call("SET", "plain", "changed")
        entry = [{"db": 0, "key": "plain", "key_base64": "cGxhaW4=", "type": "string", "length": 5, "sha256": "0" * 64, "expire_at_ms": -1}]
        problems = _compare.check_sample(scratch.session, entry, int(time.time() * 1000))[0]
        assert problems == ["db0 key plain has length 7, the manifest says 5"]
    assert not os.path.exists(directory)


def test_scratch_server_reports_a_bad_rdb():
    with pytest.raises(StageError, match="throwaway redis-server stopped"):
        _scratch.ScratchServer([b"REDIS0010garbage"])


def test_redis_check_rdb_on_real_files(server):
    if not shutil.which("redis-check-rdb"):
        pytest.skip("redis-check-rdb is not installed")
    with server.session() as session:
        seed(session)
        _snapshot.bgsave(session, server.conn, timeout=60)
    with open(os.path.join(server.data, "dump.rdb"), "rb") as handle:
        rdb = handle.read()
    tool = _rdb.checker_command(rd.Connection(mode="host"))
    good = _rdb.RdbCheck(tool)
    for start in range(0, len(rdb), 64):
        good.feed(rdb[start:start + 64])
    assert good.result() is None and good.keys == 9 and good.expires == 1
    cut = _rdb.RdbCheck(tool)
    cut.feed(rdb[:len(rdb) // 2])
    problem = cut.result()
    assert "cut short" in problem and "redis-check-rdb found a problem" in problem and "truncated" in problem
