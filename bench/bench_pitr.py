# Copyright (c) cclite.backup contributors
# SPDX-License-Identifier: GPL-3.0-or-later
"""Point-in-time recovery against pgBackRest on the same database in one run: a base backup
(cclite.backup's postgresql_basebackup vs ``pgbackrest backup --type=full``) and a restore to a
point in time (postgresql_pitr_restore vs ``pgbackrest restore --type=time`` plus starting a
server on it until it is promoted). Both archive every segment (one archive_command calls both).

Run as root (it starts a throwaway PostgreSQL 15 and needs the Debian package pgbackrest):
``python bench/bench_pitr.py [--scale 68]`` (pgbench scale 68 is about 1 GB).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import PG_BIN, PG_PASSWORD, ROOT, Cluster, free_port, pg_env, private_file, psql  # noqa: E402

SCRIPT = os.path.join(ROOT, "roles", "postgresql_backup", "files", "cclite_wal.py")


def module(name: str, args: dict) -> tuple[float, dict]:
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, ".collections"))
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "ansible_collections.cclite.backup.plugins.modules." + name],
                         input=json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode(), capture_output=True, env=env, cwd="/", check=False)
    took = time.monotonic() - start
    data = json.loads(out.stdout.decode().strip().splitlines()[-1])
    if data.get("failed"):
        raise SystemExit("%s failed: %s" % (name, data.get("msg")))
    return took, data


def as_postgres(argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", "postgres", "--"] + argv, check=True, cwd="/", env=pg_env(), **kw)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=int, default=68)
    opts = parser.parse_args()
    if not shutil.which("pgbackrest"):
        raise SystemExit("pgbackrest is not installed (apt-get install pgbackrest)")
    port = free_port()
    cluster = Cluster(port, ("archive_mode=on", "max_wal_size=4GB", "wal_level=replica"))
    try:
        cluster.start()
        # the server's own settings (not pg_ctl -o), so the restore's stop and start keep them
        for sql in ("ALTER SYSTEM SET port = %d" % port, "ALTER SYSTEM SET unix_socket_directories = '%s'" % cluster.dir,
                    "ALTER SYSTEM SET listen_addresses = '127.0.0.1'", "ALTER SYSTEM SET shared_buffers = '256MB'",
                    "ALTER SYSTEM SET archive_command = '/bin/true'", "SELECT pg_reload_conf()"):
            psql(port, sql)  # the load's WAL is not archived: both base backups come after it
        t0 = time.monotonic()
        as_postgres([PG_BIN + "/pgbench", "-i", "-q", "-s", str(opts.scale), "-h", "127.0.0.1", "-p", str(port), "postgres"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        size = int(psql(port, "SELECT pg_database_size('postgres')"))
        print("database: %.0f MB (pgbench scale %d), loaded in %.0f s" % (size / 1e6, opts.scale, time.monotonic() - t0))

        root = os.path.join(cluster.dir, "backups")
        wal = os.path.join(root, "postgresql", "wal")
        repo = os.path.join(cluster.dir, "pgbackrest")
        os.makedirs(wal)
        os.makedirs(repo)
        shutil.copy(SCRIPT, os.path.join(wal, ".cclite-wal.py"))
        with open(os.path.join(wal, ".cclite-wal.json"), "w", encoding="utf-8") as handle:
            json.dump({"wal_dir": wal, "s3": None, "compression_level": 6}, handle)
        conf = private_file(cluster.dir, "pgbackrest.conf", (
            "[global]\nrepo1-path=%s\ncompress-type=gz\ncompress-level=6\nprocess-max=2\nstart-fast=y\nlog-level-console=warn\n"
            "[bench]\npg1-path=%s\npg1-port=%d\npg1-socket-path=%s\npg1-user=postgres\n") % (repo, cluster.data, port, cluster.dir))
        subprocess.run(["chown", "-R", "postgres:postgres", root, repo, conf], check=True)
        both = "pgbackrest --config=%s --stanza=bench archive-push %%p && python3 %s/.cclite-wal.py archive %%p %%f" % (conf, wal)
        psql(port, "ALTER SYSTEM SET archive_command = '%s'" % both)
        psql(port, "SELECT pg_reload_conf()")
        bk = ["pgbackrest", "--config=%s" % conf, "--stanza=bench"]
        as_postgres(bk + ["stanza-create"])
        as_postgres(bk + ["check"])
        conn = {"mode": "host", "login_host": "127.0.0.1", "login_port": port, "login_password": PG_PASSWORD, "backup_root": root}

        ours_backup, made = module("postgresql_basebackup", dict(conn, compression="gzip"))
        t0 = time.monotonic()
        as_postgres(bk + ["backup", "--type=full"])
        theirs_backup = time.monotonic() - t0
        theirs_size = int(subprocess.run(["du", "-sb", os.path.join(repo, "backup")], capture_output=True, check=True, text=True).stdout.split()[0])
        print("base backup: cclite.backup %.1f s (%.0f MB), pgBackRest %.1f s (%.0f MB)" % (
            ours_backup, made["artifact"]["size"] / 1e6, theirs_backup, theirs_size / 1e6), flush=True)

        psql(port, "CREATE TABLE marks (what text); INSERT INTO marks VALUES ('A')")
        target = psql(port, "SELECT now()::text FROM pg_sleep(1.5)")
        psql(port, "SELECT pg_sleep(1.5); INSERT INTO marks VALUES ('B')")
        seg = psql(port, "SELECT pg_walfile_name(pg_switch_wal())")
        deadline = time.time() + 120
        while not os.path.exists(os.path.join(wal, seg + ".gz")) and time.time() < deadline:
            time.sleep(0.5)

        ours_restore, restored = module("postgresql_pitr_restore", dict(conn, target="time", target_value=target, confirm=True))
        rows = psql(port, "SELECT string_agg(what, ',') FROM marks")
        assert rows == "A", "cclite.backup restored %r, not A" % rows

        # pgBackRest: restore into a new directory and start a server on it until it is promoted
        other = os.path.join(cluster.dir, "pgbr-data")
        os.mkdir(other, 0o700)
        shutil.chown(other, "postgres")
        port2 = free_port()
        t0 = time.monotonic()
        as_postgres(bk + ["restore", "--pg1-path=%s" % other, "--type=time", "--target=%s" % target, "--target-action=promote"])
        as_postgres([PG_BIN + "/pg_ctl", "-D", other, "-w", "-t", "3600", "-l", cluster.dir + "/pgbr.log", "-o",
                     "-p %d -c archive_mode=off -c unix_socket_directories=%s" % (port2, cluster.dir), "start"], stdout=subprocess.DEVNULL)
        while psql(port2, "SELECT pg_is_in_recovery()") != "f":
            time.sleep(0.2)
        theirs_restore = time.monotonic() - t0
        rows2 = psql(port2, "SELECT string_agg(what, ',') FROM marks")
        as_postgres([PG_BIN + "/pg_ctl", "-D", other, "-m", "fast", "stop"], stdout=subprocess.DEVNULL)
        assert rows2 == "A", "pgBackRest restored %r, not A" % rows2

        print("| step | cclite.backup | pgBackRest | ratio (ours / theirs) |")
        print("|---|---|---|---|")
        print("| base backup (gzip 6) | %.1f s, %.0f MB | %.1f s, %.0f MB | %.2f |" % (
            ours_backup, made["artifact"]["size"] / 1e6, theirs_backup, theirs_size / 1e6, ours_backup / theirs_backup))
        print("| restore to a time (A there, B not) | %.1f s | %.1f s | %.2f |" % (ours_restore, theirs_restore, ours_restore / theirs_restore))
        print("(ours includes reading the whole base backup against its sha256, pg_verifybackup, stopping the live server and the swap;"
              " pgBackRest's is restore + start until promoted, into a second directory)")
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
