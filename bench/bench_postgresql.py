# Copyright (c) cclite.backup contributors
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark: the collection's PostgreSQL backup against the raw `pg_dump | gzip` pipeline.

Creates a throwaway PostgreSQL cluster with a database of about --size-mb MB, then, in one run:
  1. raw      `pg_dump DB | gzip -6 > file` (bash, pipefail)
  2. playbook `ansible-playbook playbooks/backup.yml` (gzip level 6, the default)
  3. playbook with compression zstd (level 1, the default)
  4. raw      `pg_dump DB | zstd -1 -T0 > file`, for reference
  5. raw      `pg_dump DB | cat > file`: how fast pg_dump alone is on this data
(--rounds times, interleaved) and a second, small database through the playbook, to show that the module's memory does not
grow with the database. Prints wall times, ratios and the module's peak RSS (VmHWM, sampled
from /proc while the module runs); ratios are the median of the rounds. Targets: playbook <= 1.10x raw; zstd >= 3x faster than raw
gzip; module peak memory <= 100 MB and independent of size.

The data (--data, see DATA) decides where the time goes. The default, mixed, is the stack's
kinds of data (messages, articles, events): pg_dump alone is fast and single-threaded gzip is
the bottleneck, as in the guide's setup. events is the worst case for zstd: narrow rows the
server formats slowly, so pg_dump itself bounds any compressor.

Run from the repository root after `make setup`:  .venv/bin/python bench/bench_postgresql.py
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import DATA, PG_PASSWORD, Cluster, median, pg_env, psql, run_playbook, sh  # noqa: E402  pylint: disable=wrong-import-position


def playbook(port: int, db: str, root: str, compression: str) -> tuple[float, float, dict]:
    extra = {
        "backup_root": root, "backup_stores": ["postgresql"], "postgresql_backup_mode": "host",
        "postgresql_backup_login_host": "127.0.0.1", "postgresql_backup_login_port": port,
        "postgresql_backup_login_password": PG_PASSWORD, "postgresql_backup_databases": [db],
        "postgresql_backup_compression": compression,
    }
    wall, peaks, _out = run_playbook("backup.yml", root, {"localhost": {}}, extra)
    link = os.path.join(root, "postgresql", "latest.sql" + (".gz" if compression == "gzip" else ".zst"))
    with open(os.path.realpath(link) + ".manifest.json") as f:
        manifest = json.load(f)
    return wall, peaks.get("postgresql_backup", 0.0), manifest


def raw_pipeline(port: int, work: str, compressor: str) -> tuple[float, int]:
    path = os.path.join(work, "raw.out")
    start = time.monotonic()
    sh("pg_dump -p %d -d bench_big | %s > %s" % (port, compressor, path), env=pg_env())
    wall = time.monotonic() - start
    size = os.path.getsize(path)
    os.unlink(path)
    return wall, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="size of the large database (default 1024)")
    parser.add_argument("--small-mb", type=int, default=64, help="size of the small database (default 64)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default 2); ratios are their median")
    parser.add_argument("--data", choices=DATA, default="mixed", help="what the databases hold (default mixed; see DATA)")
    parser.add_argument("--port", type=int, default=55499)
    args = parser.parse_args()

    cluster = Cluster(args.port)
    work = tempfile.mkdtemp(prefix="cclite-bench-")
    try:
        cluster.start()
        print("creating databases (%d MB and %d MB of %s data)..." % (args.size_mb, args.small_mb, args.data), flush=True)
        big = cluster.make_db("bench_big", args.size_mb, args.data)
        small = cluster.make_db("bench_small", args.small_mb, args.data)
        psql(args.port, "CHECKPOINT")
        print("bench_big: %.0f MB on disk; bench_small: %.0f MB" % (big / 2**20, small / 2**20), flush=True)

        # A shared machine's load varies: the raw pipelines and the playbooks run interleaved,
        # round after round, and each ratio is the median of its rounds.
        rounds = []
        for number in range(1, args.rounds + 1):
            dump, dump_size = raw_pipeline(args.port, work, "cat")
            raw, raw_size = raw_pipeline(args.port, work, "gzip -6")
            gz_wall, gz_peak, gz_manifest = playbook(args.port, "bench_big", os.path.join(work, "gz%d" % number), "gzip")
            zs_wall, zs_peak, zs_manifest = playbook(args.port, "bench_big", os.path.join(work, "zst%d" % number), "zstd")
            raw_zstd, raw_zstd_size = raw_pipeline(args.port, work, "zstd -q -1 -T0")
            rounds.append((raw, gz_wall, zs_wall, raw_zstd, dump))
            print("round %d: raw gzip %.1f s, playbook gzip %.1f s, playbook zstd %.1f s, raw zstd %.1f s, pg_dump alone %.1f s"
                  % (number, raw, gz_wall, zs_wall, raw_zstd, dump), flush=True)
        sm_wall, sm_peak, _manifest = playbook(args.port, "bench_small", os.path.join(work, "small"), "gzip")

        best = [min(r[i] for r in rounds) for i in range(5)]
        print()
        print("best of %d rounds; ratios are the median of the rounds" % args.rounds)
        print("raw pg_dump | cat > file       %7.1f s   %8.1f MB   pg_dump alone %.0f MB/s, gzip -6 %.0f MB/s"
              % (best[4], dump_size / 2**20, median([dump_size / 2**20 / r[4] for r in rounds]),
                 median([dump_size / 2**20 / r[0] for r in rounds])))
        print("raw pg_dump | gzip -6          %7.1f s   %8.1f MB" % (best[0], raw_size / 2**20))
        print("raw pg_dump | zstd -1 -T0      %7.1f s   %8.1f MB" % (best[3], raw_zstd_size / 2**20))
        print("playbook, gzip -6 (%s)    %7.1f s   %8.1f MB   module peak RSS %.1f MB"
              % (gz_manifest["compression"]["program"], best[1], gz_manifest["artifact"]["size"] / 2**20, gz_peak))
        print("playbook, zstd -%d              %7.1f s   %8.1f MB   module peak RSS %.1f MB"
              % (zs_manifest["compression"]["level"], best[2], zs_manifest["artifact"]["size"] / 2**20, zs_peak))
        print("playbook, small db (%d MB)     %7.1f s                module peak RSS %.1f MB" % (args.small_mb, sm_wall, sm_peak))
        print()
        print("ratio playbook gzip / raw gzip   %.2fx   (target <= 1.10x)" % median([r[1] / r[0] for r in rounds]))
        print("speed zstd playbook vs raw gzip  %.2fx   (target >= 3x)" % median([r[0] / r[2] for r in rounds]))
        print("speed zstd vs gzip playbook      %.2fx" % median([r[1] / r[2] for r in rounds]))
        print("ratio zstd playbook / raw zstd   %.2fx   (what the collection adds to the raw zstd pipeline)"
              % median([r[2] / r[3] for r in rounds]))
        print("module peak RSS big / small      %.1f MB / %.1f MB   (target <= 100 MB, independent of size)" % (max(gz_peak, zs_peak), sm_peak))
        print("rows recorded in the manifest    %d (counted from the %s)" % (gz_manifest["source"]["total_rows"], gz_manifest["source"]["counted"]))
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
