# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Faults of WAL archiving against a real PostgreSQL 15 running the shipped archive command:
the command killed mid-segment, a full archive disk, an S3 outage. Each must leave the server
retrying (no segment marked archived, ``.done``, that is not stored whole) and be reported by
``pg_stat_archiver`` through the ``postgresql_wal_archiving`` module."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import typing as t

import pytest

from tests import throwaway_postgres
from tests.faults.harness import FIGURES, run
from tests.throwaway_postgres import free_port

PASSWORD = "Faults-PITR-Secret-91c3"
S3_SECRET = "Faults-PITR-S3-Secret-77aa"
SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                      "roles", "postgresql_backup", "files", "cclite_wal.py")


class Server:
    def __init__(self, port: int, data: str) -> None:
        self.port, self.data = port, data

    def psql(self, sql: str) -> str:
        env = dict(os.environ, PGPASSWORD=PASSWORD)
        return subprocess.run(["psql", "-X", "-At", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "postgres",
                               "-v", "ON_ERROR_STOP=1", "-c", sql], env=env, check=True, capture_output=True, text=True).stdout.strip()

    def switch(self, mb: int = 20) -> str:
        """Write about ``mb`` MB of WAL and close the segment; its name."""
        self.psql("CREATE TABLE IF NOT EXISTS junk (v text); INSERT INTO junk SELECT md5(random()::text) || md5(random()::text) "
                  "FROM generate_series(1, %d)" % (mb * 9000))
        return self.psql("SELECT pg_walfile_name(pg_switch_wal())")

    def archiver(self) -> dict[str, t.Any]:
        row = self.psql("SELECT archived_count, failed_count, coalesce(last_archived_wal, ''), coalesce(last_failed_wal, '') "
                        "FROM pg_stat_archiver").split("|")
        return {"archived": int(row[0]), "failed": int(row[1]), "last_archived": row[2], "last_failed": row[3]}

    def args(self, root: str) -> dict[str, t.Any]:
        return {"mode": "host", "login_host": "127.0.0.1", "login_port": self.port, "login_password": PASSWORD, "backup_root": root}


@pytest.fixture(scope="module")
def server() -> t.Iterator[Server]:
    if not throwaway_postgres.installed():
        pytest.skip("PostgreSQL 15 is not installed (apt-get install postgresql-15)")
    with throwaway_postgres.cluster(PASSWORD, "cclite-faults-pitr-", ["fsync=off", "archive_mode=on", "wal_level=replica"]) as (port, data):
        yield Server(port, data)


@pytest.fixture
def base() -> t.Iterator[str]:
    """A folder the server's OS user can reach (pytest's tmp_path is root's 0700)."""
    path = tempfile.mkdtemp(prefix="cclite-faults-pitr-root-", dir="/var/tmp")
    os.chmod(path, 0o755)
    yield path
    subprocess.run(["umount", "-l", os.path.join(path, "fs")], check=False, capture_output=True)
    shutil.rmtree(path, ignore_errors=True)


def install(server: Server, root: str, s3: dict[str, t.Any] | None = None, level: int = 1) -> str:
    """The role's setup, by hand: script and settings in the archive, then the module."""
    wal = os.path.join(root, "postgresql", "wal")
    os.makedirs(wal, exist_ok=True)
    shutil.copy(SCRIPT, os.path.join(wal, ".cclite-wal.py"))
    with open(os.path.join(wal, ".cclite-wal.json"), "w", encoding="utf-8") as handle:
        json.dump({"wal_dir": wal, "s3": s3, "compression_level": level}, handle)
    os.chmod(os.path.join(wal, ".cclite-wal.json"), 0o600)
    for path in (root, os.path.join(root, "postgresql"), wal, os.path.join(wal, ".cclite-wal.py"), os.path.join(wal, ".cclite-wal.json")):
        shutil.chown(path, "postgres")
    done = run("postgresql_wal_archiving", server.args(root))
    assert not done.failed, done.text
    assert PASSWORD not in done.text and S3_SECRET not in done.text
    server.psql("SELECT pg_reload_conf()")
    return wal


def marked_done(server: Server) -> set[str]:
    status = os.path.join(server.data, "pg_wal", "archive_status")
    return {n[:-5] for n in os.listdir(status) if n.endswith(".done")}


def check_stored(server: Server, wal: str, names: t.Iterable[str], settled: bool = True) -> None:
    """Every segment the server marked archived is in the archive whole: its content hashes to
    the sha256 recorded next to it, and equals the server's copy while it still has one."""
    for name in names:
        path = os.path.join(wal, name + ".gz")
        assert os.path.exists(path), "%s is marked archived but is not in the archive" % name
        with gzip.open(path) as handle:
            data = handle.read()
        with open(os.path.join(wal, name + ".sha256"), encoding="utf-8") as handle:
            assert hashlib.sha256(data).hexdigest() == handle.read().split()[0]
        original = os.path.join(server.data, "pg_wal", name)
        if os.path.exists(original):
            with open(original, "rb") as handle:
                assert handle.read() == data
    if settled:  # once the server's retry went through, the killed attempt's temp file is gone too
        assert not [n for n in os.listdir(wal) if n.endswith(".partial")], "a temp file was left behind"


def wait_for(what: t.Callable[[], bool], timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if what():
            return
        time.sleep(0.2)
    raise AssertionError("timed out")


def reported(server: Server, root: str, segment: str) -> dict[str, t.Any]:
    res = run("postgresql_wal_archiving", server.args(root))
    assert not res.failed, res.text
    failed = res.data["archiver"]["last_failed_wal"]
    # the oldest segment not stored is the one failing (the write spanned it and ``segment``)
    assert res.data["archiver"]["failed_count"] >= 1 and failed and failed <= segment, res.data
    assert failed not in marked_done(server)
    return res.data["archiver"]


def archiver_pids() -> list[int]:
    pids = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as handle:
                    if b".cclite-wal.py\0archive" in handle.read():
                        pids.append(int(pid))
            except OSError:
                pass
    return pids


def test_archive_command_killed_mid_segment(server: Server, base: str) -> None:
    root = os.path.join(base, "root")
    wal = install(server, root, level=9)  # slow enough to be caught writing
    server.switch(2)
    wait_for(lambda: server.archiver()["failed"] == 0 and server.archiver()["last_archived"] != "")
    before = server.archiver()
    kills = 0
    segment = ""
    for _attempt in range(5):
        segment = server.switch(20)
        deadline = time.time() + 30
        while time.time() < deadline and not kills:
            if any(n.startswith(".%s.gz." % segment) and n.endswith(".partial") for n in os.listdir(wal)):
                for pid in archiver_pids():
                    os.kill(pid, signal.SIGKILL)
                    kills += 1
            time.sleep(0.01)
        if kills:
            break
    assert kills, "never caught the archive command writing a segment"
    FIGURES.add("pitr: archive command killed mid-segment", kills)
    assert segment not in marked_done(server)
    check_stored(server, wal, marked_done(server), settled=False)
    # the server logs the failed attempt (exit code 137 through the shell, or the signal) and
    # retries (a command dying of a signal also restarts its archiver process); the segment
    # then arrives whole
    wait_for(lambda: segment in marked_done(server), timeout=180)
    check_stored(server, wal, marked_done(server))
    with open(os.path.join(server.data, "pg.log"), encoding="utf-8", errors="replace") as handle:
        log = handle.read()
    assert "failed with exit code 137" in log or "terminated by signal 9" in log, log[-2000:]
    info = run("postgresql_pitr_info", {"backup_root": root})
    assert any(" interrupted %s " % segment in line for line in info.data["events"]), info.text
    assert before["archived"] < server.archiver()["archived"]


def test_full_archive_disk(server: Server, base: str) -> None:
    root = os.path.join(base, "fs")
    os.mkdir(root)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24M,mode=0755", "tmpfs", root], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs (needs root): %s" % done.stderr.strip())
    wal = install(server, root)
    server.switch(2)
    status = os.path.join(server.data, "pg_wal", "archive_status")
    wait_for(lambda: server.archiver()["last_archived"] != "" and not any(n.endswith(".ready") for n in os.listdir(status)))
    filler = os.path.join(root, "filler")
    with open(filler, "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * (1 << 20))
                handle.flush()
        except OSError:
            pass
    failed = server.archiver()["failed"]
    segment = server.switch(20)
    wait_for(lambda: server.archiver()["failed"] > failed)
    assert segment not in marked_done(server)
    assert not os.path.exists(os.path.join(wal, segment + ".gz"))
    check_stored(server, wal, marked_done(server) & {n[:-3] for n in os.listdir(wal) if n.endswith(".gz")} | set())
    reported(server, root, segment)
    # the full disk has no room for the archive's event log either: the report is the server's
    # pg_stat_archiver (above) and a recovery point that stops at the last stored segment
    info = run("postgresql_pitr_info", {"backup_root": root})
    assert info.data["newest_segment"] < segment, info.text
    FIGURES.add("pitr: archive disk full, segment kept by the server")
    os.unlink(filler)
    server.psql("SELECT pg_switch_wal()")  # wakes the archiver at once
    wait_for(lambda: segment in marked_done(server), timeout=120)
    check_stored(server, wal, [segment])


def test_s3_outage(server: Server, base: str) -> None:
    boto3 = pytest.importorskip("boto3")
    moto = shutil.which("moto_server") or os.path.join(os.path.dirname(sys.executable), "moto_server")
    port = free_port()
    endpoint = "http://127.0.0.1:%d" % port

    def start_s3() -> subprocess.Popen:
        proc = subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="faults", aws_secret_access_key=S3_SECRET, region_name="us-east-1")
        wait_for(lambda: _try(lambda: client.create_bucket(Bucket="pitr-faults")), timeout=30)
        return proc

    proc = start_s3()
    try:
        root = os.path.join(base, "root")
        s3 = {"bucket": "pitr-faults", "prefix": "t", "endpoint_url": endpoint, "access_key": "faults", "secret_key": S3_SECRET, "timeout": 5}
        wal = install(server, root, s3=s3)
        first = server.switch(2)
        wait_for(lambda: first in marked_done(server))
        proc.terminate()
        proc.wait()
        failed = server.archiver()["failed"]
        segment = server.switch(2)
        wait_for(lambda: server.archiver()["failed"] > failed)
        assert segment not in marked_done(server)  # stored locally, not on S3: not archived
        assert os.path.exists(os.path.join(wal, segment + ".gz"))
        archiver = reported(server, root, segment)
        info = run("postgresql_pitr_info", {"backup_root": root})
        assert any("S3 is unreachable" in p for p in info.data["problems"]), info.text
        log = open(os.path.join(server.data, "pg.log"), encoding="utf-8", errors="replace").read()
        assert "S3 is unreachable" in log and S3_SECRET not in log
        FIGURES.add("pitr: S3 outage, segment kept by the server (failed attempts %d)" % archiver["failed_count"])
        proc = start_s3()  # a new, empty S3: the retry puts the segment there
        server.psql("SELECT pg_switch_wal()")
        wait_for(lambda: segment in marked_done(server), timeout=120)
        client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="faults", aws_secret_access_key=S3_SECRET, region_name="us-east-1")
        head = client.head_object(Bucket="pitr-faults", Key="t/postgresql_wal/%s.gz" % segment)
        with gzip.open(os.path.join(wal, segment + ".gz")) as handle:
            assert head["Metadata"]["sha256"] == hashlib.sha256(handle.read()).hexdigest()
        check_stored(server, wal, [segment])
    finally:
        proc.terminate()
        proc.wait()
        server.psql("ALTER SYSTEM SET archive_command = '/bin/true'")
        server.psql("SELECT pg_reload_conf()")


def _try(action: t.Callable[[], t.Any]) -> bool:
    try:
        action()
        return True
    except Exception:  # pylint: disable=broad-exception-caught  # not up yet
        return False


@pytest.fixture
def restorable(base: str) -> t.Iterator[Server]:
    """A cluster of its own whose settings are in postgresql.auto.conf, so that the server a
    point-in-time restore starts on the recovered directory (plain pg_ctl start) has them too;
    its socket beside the data directory (a base backup copies a socket's lock file in it)."""
    settings = ["fsync=off", "wal_level=replica"]
    with throwaway_postgres.cluster(PASSWORD, "cclite-faults-pitr-restore-", settings) as (port, data):
        server = Server(port, data)
        shutil.chown(os.path.dirname(data), "postgres")  # as /var/lib/postgresql/15: the server's user writes beside its data
        for name, value in (("port", str(port)), ("listen_addresses", "127.0.0.1"), ("unix_socket_directories", os.path.dirname(data)),
                            ("fsync", "off"), ("wal_level", "replica")):
            server.psql("ALTER SYSTEM SET %s = '%s'" % (name, value))
        yield server


def as_postgres(*argv: str) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *argv], cwd="/", check=True, capture_output=True)


def test_a_restore_first_stops_and_removes_what_a_killed_restore_left(restorable: Server, base: str) -> None:
    server = restorable
    wal = install(server, base)
    restarted = run("postgresql_wal_archiving", dict(server.args(base), restart=True))
    assert not restarted.failed, restarted.text
    made = run("postgresql_basebackup", server.args(base))
    assert not made.failed, made.text
    server.psql("CREATE TABLE kept (v int); INSERT INTO kept SELECT generate_series(1, 50)")
    server.switch(1)
    wait_for(lambda: any(n.endswith(".gz") for n in os.listdir(wal)))

    # what a restore killed while it recovered leaves: its new data directory beside the live
    # one, and the temporary server (socket only, port 5499) still running on it
    stamp = "20260101000000"
    left, socket_dir = server.data + ".pitr-" + stamp, "/tmp/cclite-pitr-" + stamp
    for path in (left, socket_dir):
        os.mkdir(path, 0o700)
        shutil.chown(path, "postgres")
    pg = throwaway_postgres.PGBIN
    as_postgres(os.path.join(pg, "initdb"), "-D", left, "-U", "postgres", "--auth=trust")
    as_postgres(os.path.join(pg, "pg_ctl"), "-D", left, "-w", "-l", left + ".log", "-o",
                "-c port=5499 -c listen_addresses= -c unix_socket_directories=%s" % socket_dir, "start")
    with open(os.path.join(left, "postmaster.pid"), encoding="utf-8") as handle:
        leftover_pid = int(handle.readline())

    def alive(pid: int) -> bool:
        try:
            with open("/proc/%d/stat" % pid, encoding="utf-8") as handle:
                return handle.read().split(")")[-1].split()[0] != "Z"
        except OSError:
            return False

    try:
        assert alive(leftover_pid)
        res = run("postgresql_pitr_restore", dict(server.args(base), confirm=True, data_directory=server.data,
                                                  bin_dir=pg, config_file=os.path.join(server.data, "postgresql.conf")))
        assert not res.failed, res.text
        assert res.data["leftovers_removed"] == [left]
        assert not os.path.exists(left) and not os.path.exists(left + ".log") and not os.path.exists(socket_dir)
        wait_for(lambda: not alive(leftover_pid), timeout=10)
        # the restore itself went through: the recovered server holds the rows written after the base backup
        assert server.psql("SELECT count(*) FROM kept") == "50"
        assert not [n for n in os.listdir(os.path.dirname(server.data)) if ".pitr-" in n]
    finally:
        if alive(leftover_pid):
            os.kill(leftover_pid, signal.SIGKILL)
