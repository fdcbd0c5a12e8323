# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Redis helpers that need no server: redis-cli argv/env, quoting and reply parsing, INFO,
the logical format, the RDB content check, count comparison, and the session's failure modes.

Where a test needs redis-cli, docker or redis-check-rdb, a stand-in script on PATH plays it:
argv, environment and output are checked at the real process boundary.
"""

from __future__ import annotations

import gzip
import io
import json
import struct

import pytest

from ansible_collections.cclite.backup.plugins.module_utils._core._restore import compare
from ansible_collections.cclite.backup.plugins.module_utils._engines.redis import _client as rd
from ansible_collections.cclite.backup.plugins.module_utils._engines.redis import _compare, _logical, _rdb, _snapshot
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import ConfigError, StageError
from ansible_collections.cclite.backup.plugins.module_utils._core._process import GUARD, run

PASSWORD = "r3dis-pa55-that-must-not-leak"


# --- argv and secrets ------------------------------------------------------------------------


def test_docker_command_passes_the_password_by_name_only():
    conn = rd.Connection(mode="docker", container="cc-lite-redis", login_password=PASSWORD, login_user="backup")
    cmd = conn.cli(["--csv"])
    assert cmd.argv == (
        "docker", "exec", "-i", "-e", "REDISCLI_AUTH", "cc-lite-redis",
        "redis-cli", "-p", "6379", "--user", "backup", "--csv",
    )
    assert not any(PASSWORD in arg for arg in cmd.argv)
    assert cmd.env == {"REDISCLI_AUTH": PASSWORD}
    assert cmd.secrets() == [PASSWORD] and PASSWORD not in cmd.display()


def test_docker_command_at_the_process_boundary(tmp_path, fake_program):
    argv_file, password_file = tmp_path / "argv", tmp_path / "password"
    fake_program("docker", 'printf "%%s\\n" "$@" > "%s"; printf "%%s" "$REDISCLI_AUTH" > "%s"' % (argv_file, password_file))
    conn = rd.Connection(mode="docker", container="cache", container_user="redis", login_password=PASSWORD)
    run(conn.cli(["INFO", "server"]))
    assert password_file.read_text() == PASSWORD  # docker exec -e REDISCLI_AUTH copies it from its environment
    assert PASSWORD not in argv_file.read_text()
    assert argv_file.read_text().splitlines() == [
        "exec", "-i", "-u", "redis", "-e", "REDISCLI_AUTH", "cache", "sh", "-c", GUARD, "sh",
        "redis-cli", "-p", "6379", "INFO", "server",
    ]


def test_host_mode_tls_and_socket_argv():
    conn = rd.Connection(
        mode="host", login_host="cache.internal", login_port=6380, tls=True, ca_cert="/ca.pem",
        client_cert="/c.pem", client_key="/k.pem", validate_certs=False,
    )
    assert conn.cli(["PING"]).argv == (
        "redis-cli", "-h", "cache.internal", "-p", "6380", "--tls", "--cacert", "/ca.pem",
        "--cert", "/c.pem", "--key", "/k.pem", "--insecure", "PING",
    )
    sock = rd.Connection(mode="host", login_unix_socket="/run/redis.sock", login_host="ignored")
    assert sock.cli([]).argv == ("redis-cli", "-s", "/run/redis.sock")
    assert "REDISCLI_AUTH" not in sock.cli([]).env


def test_certificates_without_tls_are_refused():
    with pytest.raises(ConfigError, match="need tls"):
        rd.Connection(mode="host", ca_cert="/ca.pem").cli([])


def test_unknown_mode_and_missing_container():
    with pytest.raises(ConfigError, match="unknown mode"):
        rd.Connection(mode="k8s").target()
    with pytest.raises(ConfigError, match="redis_backup_container"):
        rd.Connection(mode="docker", container="").target()


@pytest.mark.parametrize(
    "host, socket_path, mode, local",
    [("", "", "host", True), ("localhost", "", "host", True), ("::1", "", "host", True),
     ("10.0.0.7", "", "host", False), ("10.0.0.7", "/s", "host", True), ("10.0.0.7", "", "docker", True)],
)
def test_is_local(host, socket_path, mode, local):
    assert rd.Connection(mode=mode, login_host=host, login_unix_socket=socket_path).is_local is local


def test_explain_adds_the_fix():
    conn = rd.Connection(mode="host")
    assert "redis_backup_login_password" in rd.explain("AUTH failed: WRONGPASS invalid", conn)
    assert "method logical" in rd.explain("ERR unknown command 'BGSAVE'", conn)
    assert "docker compose up -d" in rd.explain("Error: No such container: x", conn)
    assert rd.explain("something else", conn) == "something else"


# --- quoting and parsing ---------------------------------------------------------------------


def test_quote_escapes_everything_redis_cli_would_misread():
    assert rd.quote(b'a b"c\\d') == b'"a b\\"c\\\\d"'
    assert rd.quote(b"\x00\n\xff") == b'"\\x00\\x0a\\xff"'
    assert rd.quote("caf\u00e9") == b'"caf\\xc3\\xa9"'
    assert rd.quote(42) == b'"42"'
    assert rd.command_line(["RESTORE", b"k", 0, b"\x01"]) == b'RESTORE "k" "0" "\\x01"\n'


def test_command_names_are_checked():
    with pytest.raises(ConfigError):
        rd.command_line(['GET "x"\nFLUSHALL', "k"])


def test_parse_csv_items():
    assert rd.parse_csv(b'"PONG"') == [b"PONG"]
    assert rd.parse_csv(b"42") == [42]
    assert rd.parse_csv(b"-2") == [-2]
    assert rd.parse_csv(b"NULL") == [None]
    assert rd.parse_csv(b'"0","a,b","c\\"d"') == [b"0", b"a,b", b'c"d']
    assert rd.parse_csv(b'"0",') == [b"0"]  # SCAN with an empty page
    assert rd.parse_csv(b"") == []
    assert rd.parse_csv(b'"\\x00\\x04x\\x01\\xffy\\n\\b\\r\\t\\a\\\\"') == [b"\x00\x04x\x01\xffy\n\b\r\t\a\\"]


def test_parse_csv_errors_are_values():
    items = rd.parse_csv(b'ERROR,"BUSYKEY Target key name already exists."')
    assert items == [rd.ErrorReply("BUSYKEY Target key name already exists.")]
    assert items[0].code == "BUSYKEY"
    assert rd.parse_csv(b'"OK",ERROR,"ERR x",1') == [b"OK", rd.ErrorReply("ERR x"), 1]


def test_parse_csv_rejects_garbage():
    with pytest.raises(StageError):
        rd.parse_csv(b'"unterminated')


def test_quote_then_parse_round_trips_every_byte():
    data = bytes(range(256)) * 3
    quoted = rd.quote(data)
    assert rd.parse_csv(quoted) == [data]  # the two escape syntaxes agree


def test_parse_info_and_keyspace():
    info = rd.parse_info("# Keyspace\r\ndb0:keys=5,expires=2,avg_ttl=0\r\ndb12:keys=1,expires=0,avg_ttl=0\r\n\r\n# X\r\nloading:0\r\n")
    assert info["loading"] == "0"
    assert rd.parse_keyspace(info) == {"db0": {"keys": 5, "expires": 2}, "db12": {"keys": 1, "expires": 0}}
    assert list(rd.parse_keyspace({"db10": "keys=1,expires=0", "db2": "keys=3,expires=1"})) == ["db2", "db10"]


def test_versions_and_keys():
    assert rd.rdb_version(b"REDIS0010") == 10 and rd.rdb_version(b"REDIS0011rest") == 11
    assert rd.rdb_version(b"REDIS") is None and rd.rdb_version(b"\x1f\x8b\x08aaaaaa") is None
    assert rd.version_tuple("7.0.15") == (7, 0, 15) and rd.version_tuple("6.2.14") < (7,)
    payload = b"\x00\x03abc" + struct.pack("<H", 10) + b"\x00" * 8
    assert _logical.payload_rdb_version(payload) == 10 and _logical.payload_rdb_version(b"short") is None
    assert rd.key_record(b"session:1") == {"key": "session:1", "key_base64": "c2Vzc2lvbjox"}
    assert rd.key_record(b"\xff\x00")["key"] is None and rd.key_record(b"a\nb")["key"] is None


# --- the logical format ----------------------------------------------------------------------


def logical_file(keys=(("db0", b"k1", -1, b"payload-1"),), header=None) -> bytes:
    sink = io.BytesIO()
    writer = _logical.LogicalWriter(sink, header or {"redis_version": "7.0.15"})
    current = None
    for db, key, expire, payload in keys:
        if db != current:
            writer.select(int(db[2:]))
            current = db
        writer.key(key, expire, payload)
    writer.end()
    return sink.getvalue()


SAMPLE_KEYS = (
    ("db0", b"a", -1, b"x" * 10),
    ("db0", b"\x00bin\xff", 1700000000000, bytes(range(256))),
    ("db3", b"", -1, b""),
    ("db3", b"big", 5, b"y" * 300000),
)


def test_logical_format_round_trips_in_any_chunking():
    data = logical_file(SAMPLE_KEYS)
    assert data.startswith(b"CCLITE-REDIS-LOGICAL 1\n")
    for size in (1, 7, 4096, len(data)):
        parser = _logical.LogicalParser()
        records = []
        for start in range(0, len(data), size):
            records += parser.feed(data[start:start + size])
        parser.finish()
        assert records[0][0] == "header" and records[0][1]["format"] == "cclite.backup/redis-logical"
        keys = [r[1:] for r in records if r[0] == "key"]
        assert keys == [entry[1:] for entry in SAMPLE_KEYS]
        assert [r[1] for r in records if r[0] == "db"] == [0, 3]
        assert records[-1] == ("end", 4, {"db0": {"keys": 2, "expires": 1}, "db3": {"keys": 2, "expires": 1}})


@pytest.mark.parametrize("cut", [0, 10, 30, 60, 100, -5, -1])
def test_truncated_logical_files_are_detected(cut):
    data = logical_file(SAMPLE_KEYS[:2])[:cut]
    check = _logical.LogicalCheck()
    check.feed(data)
    assert check.result() is not None


def test_logical_check_finds_corruption():
    data = logical_file(SAMPLE_KEYS)
    check = _logical.LogicalCheck()
    check.feed(data.replace(b"\x00\x00\x00\x00K", b"\x00\x00\x00\x00X", 1))  # the first key record's type byte
    assert "unknown record type" in check.result()
    check = _logical.LogicalCheck()
    check.feed(b"REDIS0010not a logical dump")
    assert "not a cclite.backup logical" in check.result()
    check = _logical.LogicalCheck()
    check.feed(logical_file() + b"trailing")
    assert check.result() == "data follows the end record"
    # an end record that does not match the records
    good = logical_file(SAMPLE_KEYS[:1])
    tampered = good.replace(b"E" + struct.pack(">Q", 1), b"E" + struct.pack(">Q", 2))
    check = _logical.LogicalCheck()
    check.feed(tampered)
    assert "counts 2 keys, the file holds 1" in check.result()
    check = _logical.LogicalCheck()
    check.feed(logical_file(SAMPLE_KEYS))
    assert check.result() is None


def test_logical_keys_before_a_database_are_refused():
    data = _logical.LOGICAL_MAGIC + b"{}\n" + b"K" + struct.pack(">I", 1) + b"k" + struct.pack(">q", -1) + struct.pack(">I", 0)
    with pytest.raises(ValueError, match="before any database"):
        _logical.LogicalParser().feed(data)


# --- RDB content check -----------------------------------------------------------------------

RDB = b"REDIS0010" + b"\xfa\x09redis-ver\x067.0.15" + b"\xfe\x00\xfb\x01\x00\x00\x01k\x01v" + b"\xff" + b"\x11" * 8


def feed(check, data, size=5):
    for start in range(0, len(data), size):
        check.feed(data[start:start + size])
    return check.result()


def test_rdb_check_without_the_tool_reports_that_it_cannot_run():
    check = _rdb.RdbCheck((None, "redis-check-rdb is not installed on this host"))
    assert feed(check, RDB) == "redis-check-rdb cannot run: redis-check-rdb is not installed on this host"
    assert check.version == 10


def test_rdb_check_header_and_end_marker(tmp_path, fake_program):
    fake_program("redis-check-rdb", 'cat > /dev/null; echo "[info] 1 keys read"; echo "[info] 0 expires"; echo "[info] 0 already expired"')
    tool = (rd.Command(("redis-check-rdb", "/dev/stdin")), "this host")
    check = _rdb.RdbCheck(tool)
    assert feed(check, RDB) is None
    assert (check.keys, check.expires, check.already_expired, check.version) == (1, 0, 0, 10)
    assert "not an RDB" in feed(_rdb.RdbCheck(tool), b"PGDMP" + RDB[5:])
    assert "cut short" in feed(_rdb.RdbCheck(tool), RDB[:-3])


def test_rdb_check_reports_the_tools_verdict(fake_program):
    fake_program(
        "redis-check-rdb",
        'cat > /dev/null; echo "[offset 0] Checking RDB file /dev/stdin"; echo "--- RDB ERROR DETECTED ---";'
        ' echo "[offset 82] Unexpected EOF reading RDB file"; echo "[info] 3 keys read"; exit 1',
    )
    check = _rdb.RdbCheck((rd.Command(("redis-check-rdb", "/dev/stdin")), "this host"))
    assert feed(check, RDB) == "redis-check-rdb found a problem: Unexpected EOF reading RDB file (the RDB is truncated)"
    assert check.keys == 3


def test_rdb_check_explains_a_too_old_tool(fake_program):
    fake_program("redis-check-rdb", 'cat > /dev/null; echo "--- RDB ERROR DETECTED ---"; echo "[offset 9] Can\'t handle RDB format version 11"; exit 1')
    problem = feed(_rdb.RdbCheck((rd.Command(("redis-check-rdb", "/dev/stdin")), "this host")), RDB.replace(b"0010", b"0011"))
    assert "cannot read RDB format version 11" in problem and "newer redis-tools" in problem


def test_rdb_check_survives_a_tool_that_stops_reading(fake_program):
    fake_program("redis-check-rdb", 'head -c 3 > /dev/null; echo "--- RDB ERROR DETECTED ---"; echo "[offset 3] Wrong signature"; exit 1')
    big = RDB[:-9] + b"\x00" * (3 * 1024 * 1024) + RDB[-9:]
    problem = feed(_rdb.RdbCheck((rd.Command(("redis-check-rdb", "/dev/stdin")), "this host")), big, size=65536)
    assert problem == "redis-check-rdb found a problem: Wrong signature"


def test_checker_is_the_containers_when_it_runs(fake_program):
    fake_program("docker", 'echo true')
    cmd, where = _rdb.checker_command(rd.Connection(mode="docker", container="cache"))
    assert cmd.argv == ("docker", "exec", "-i", "cache", "redis-check-rdb", "/dev/stdin") and where == "container cache"


def test_checker_falls_back_to_the_host_or_says_why(fake_program, monkeypatch):
    fake_program("docker", 'echo false')
    monkeypatch.setenv("PATH", str(fake_program("docker", "echo false")).rsplit("/", 1)[0])  # no host tool either
    cmd, where = _rdb.checker_command(rd.Connection(mode="docker", container="cache"))
    assert cmd is None and "cache is not running" in where and "redis-tools" in where


# --- counts ----------------------------------------------------------------------------------


def test_compare_databases_allows_only_expired_keys_to_be_missing():
    expected = {"db0": {"keys": 10, "expires": 3}, "db2": {"keys": 5, "expires": 0}}
    assert compare(_compare.database_counts(expected, {"db0": {"keys": 10}, "db2": {"keys": 5}})) == []
    assert compare(_compare.database_counts(expected, {"db0": {"keys": 7}, "db2": {"keys": 5}})) == []
    assert compare(_compare.database_counts(expected, {"db0": {"keys": 6}, "db2": {"keys": 5}})) == [
        "db0 has 6 keys, the manifest says 10 (3 with a TTL, so at least 7)"
    ]
    assert compare(_compare.database_counts(expected, {"db0": {"keys": 11}, "db2": {"keys": 5}}))
    assert compare(_compare.database_counts(expected, {"db0": {"keys": 10}})) == ["db2 has 0 keys, the manifest says 5"]
    assert compare(_compare.database_counts(expected, {"db0": {"keys": 10}, "db2": {"keys": 5}, "db9": {"keys": 1}})) == [
        "db9 has 1 keys, the manifest says 0"
    ]


def test_expected_after_load_subtracts_duplicates():
    stats = {"databases": {"db0": {"keys": 5, "expires": 1}}, "duplicates": {"db0": 2}}
    assert _logical.expected_after_load(stats) == {"db0": {"keys": 3, "expires": 1}}


# --- the session's failure modes (a stand-in redis-cli) --------------------------------------

FAKE_CLI = r'''#!/usr/bin/env python3
import os, sys
mode = os.environ.get("FAKE_MODE", "")
if mode == "auth":
    sys.stderr.write("AUTH failed: WRONGPASS invalid username-password pair or user is disabled.\n"); sys.stderr.flush()
if mode == "refused":
    sys.stderr.write("Could not connect to Redis at 127.0.0.1:6379: Connection refused\n"); sys.stderr.flush()
if mode == "exit":
    sys.stderr.write("Error response from daemon: No such container: cache\n"); sys.exit(1)
for line in sys.stdin:
    if mode in ("refused", "silent"):
        continue
    word = line.split(" ", 1)[0].strip()
    if word == "ECHO":
        print(line.split(" ", 1)[1].strip(), flush=True)
    elif word == "PING":
        print('"PONG"', flush=True)
    elif word == "INFO":
        print("# Persistence\r\nloading:0\r\nrdb_saves:" + os.environ.get("REDISCLI_AUTH", "none") + "\r", flush=True)
    elif word == "BAD":
        print('ERROR,"ERR unknown command \'BAD\'"', flush=True)
    else:
        print('"OK"', flush=True)
'''


@pytest.fixture
def fake_cli(fake_program, monkeypatch):
    fake_program("redis-cli", "")
    path = fake_program("redis-cli", "")
    with open(path, "w") as handle:
        handle.write(FAKE_CLI)

    def mode(name: str) -> None:
        monkeypatch.setenv("FAKE_MODE", name)

    return mode


def test_session_talks_and_frames_multiline_replies(fake_cli):
    fake_cli("")
    conn = rd.Connection(mode="host", login_password=PASSWORD)
    with rd.Session(conn) as session:
        assert session.info("persistence") == {"loading": "0", "rdb_saves": PASSWORD}  # env reached the tool
        assert session.call("SET", "k", b"\x00") == [b"OK"]
        assert session.pipeline([("SET", "a", 1)] * 3000) == [[b"OK"]] * 3000  # more than a pipe buffer
        with pytest.raises(StageError, match="method logical"):
            session.call("BAD")
        assert session.call("BAD", allow_error=True)[0].code == "ERR"
    assert PASSWORD not in " ".join(session.cmd.argv)


def test_session_reports_a_wrong_password_without_it(fake_cli):
    fake_cli("auth")
    with pytest.raises(StageError) as info:
        rd.Session(rd.Connection(mode="host", login_password=PASSWORD))
    assert "AUTH failed" in info.value.msg and "redis_backup_login_password" in info.value.msg
    assert PASSWORD not in info.value.msg


def test_session_reports_a_refused_connection_at_once(fake_cli):
    fake_cli("refused")
    with pytest.raises(StageError, match="Connection refused.*is Redis running"):
        rd.Session(rd.Connection(mode="host", connect_timeout=30))


def test_session_reports_a_tool_that_exits(fake_cli):
    fake_cli("exit")
    with pytest.raises(StageError, match="No such container: cache.*docker compose up"):
        rd.Session(rd.Connection(mode="host"))


def test_session_times_out(fake_cli):
    fake_cli("silent")
    with pytest.raises(StageError, match="did not answer within"):
        rd.Session(rd.Connection(mode="host", connect_timeout=1))


def test_missing_redis_cli_is_a_config_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="redis-tools"):
        rd.Session(rd.Connection(mode="host"))


def test_overcommit_hint_names_the_setting():
    assert "vm.overcommit_memory = 1" in _snapshot.overcommit_hint()


def test_argument_spec_matches_the_connection():
    spec = rd.connection_argument_spec()
    conn = rd.connection_from({name: option.get("default") for name, option in spec.items()})
    assert conn == rd.Connection()
    assert spec["login_password"]["no_log"] is True


def test_gzip_logical_file_reads_back_through_the_artifact_reader(tmp_path):
    from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import ArtifactReader

    path = tmp_path / "redis_backup_20250101_000000.keys.gz"
    path.write_bytes(gzip.compress(logical_file(SAMPLE_KEYS)))
    check = _logical.LogicalCheck()
    for chunk in ArtifactReader(str(path)).chunks():
        check.feed(chunk)
    assert check.result() is None
    assert json.loads(logical_file().split(b"\n")[1])["version"] == 1


@pytest.mark.parametrize(
    "version, fmt",
    [("7.0.15", 10), ("7.2.4", 11), ("7.4.1", 12), ("6.2.14", 9), ("5.0.7", 9), ("4.0.14", 8), ("3.2.12", None), ("8.0.0", None)],
)
def test_rdb_format_of_a_release(version, fmt):
    assert rd.rdb_format_of(version) == fmt
