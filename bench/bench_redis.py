# Copyright (c) cclite.backup contributors
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark: the collection's Redis backup against the raw `redis-cli --rdb` + gzip pipeline.

Starts a throwaway redis-server holding --keys keys (DEBUG POPULATE, values of --value-size
bytes, spread over two databases, a tenth of them with a TTL), then, in one run:
  1. raw       `redis-cli --rdb FILE && gzip -6 < FILE > FILE.gz` (the issue's baseline), also
               once more with Redis' repl-diskless-sync-delay (5 s by default) set to 0
  2. playbook  `ansible-playbook playbooks/backup.yml`, gzip -6 with one thread (the gzip
               program, like for like with the raw pipeline)
  (1 and 2 --rounds times, interleaved, since a shared machine's load varies a lot)
  3. playbook  with the defaults (gzip -6 through pigz on every core when pigz is installed)
  4. playbook  with compression zstd
and a playbook run against a second, small server (--small-keys) to show that the module's
memory does not grow with the data. Every playbook run includes what the raw pipeline skips:
the write pause and exact key counts, the read-back through redis-check-rdb, the manifest.
Prints wall times, ratios and the module's peak RSS (VmHWM of AnsiballZ_redis_backup, sampled
from /proc while it runs). Targets: playbook (gzip) <= 1.10x raw; module peak memory <= 100 MB
and independent of the data.

Run from the repository root after `make setup`:  .venv/bin/python bench/bench_redis.py
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import REDIS_PASSWORD, RedisServer, newest_manifest, redis_cli, run_playbook, task_seconds  # noqa: E402  pylint: disable=wrong-import-position

PASSWORD = REDIS_PASSWORD
cli = redis_cli


def playbook(port: int, root: str, **settings: object) -> tuple[float, float, dict]:
    extra = {
        "backup_root": root, "backup_stores": ["redis"], "redis_backup_mode": "host",
        "redis_backup_login_port": port, "redis_backup_login_password": PASSWORD,
    }
    extra.update({"redis_backup_" + k: v for k, v in settings.items()})
    wall, peaks, out = run_playbook("backup.yml", root, {"localhost": {}}, extra)
    _path, manifest = newest_manifest(root, "redis")
    manifest["module_seconds"] = task_seconds(out, "Back up the Redis data")
    return wall, peaks.get("redis_backup", 0.0), manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--keys", type=int, default=1_000_000, help="keys in the large server (default 1000000)")
    parser.add_argument("--value-size", type=int, default=128, help="bytes per value (default 128)")
    parser.add_argument("--small-keys", type=int, default=10_000, help="keys in the small server (default 10000)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of raw and gzip playbook runs, interleaved so both see the same load (default 3)")
    args = parser.parse_args()

    big, small = RedisServer(), RedisServer()
    work = tempfile.mkdtemp(prefix="cclite-bench-")
    try:
        print("populating %d keys of %d bytes (and %d in a small server)..." % (args.keys, args.value_size, args.small_keys), flush=True)
        keyspace = big.populate(args.keys, args.value_size)
        small.populate(args.small_keys, args.value_size)
        memory = cli(big.port, "INFO", "memory").split("used_memory_human:")[1].split()[0]
        print("large server: %s, used_memory %s" % (", ".join("%s %s" % kv for kv in keyspace.items()), memory), flush=True)

        def raw_pipeline() -> tuple[float, int, int]:
            raw_file = os.path.join(work, "raw.rdb")
            start = time.monotonic()
            subprocess.run(["redis-cli", "-p", str(big.port), "--rdb", raw_file], check=True, capture_output=True,
                           env=dict(os.environ, REDISCLI_AUTH=PASSWORD))
            subprocess.run(["bash", "-o", "pipefail", "-c", "gzip -6 < %s > %s.gz" % (raw_file, raw_file)], check=True)
            wall = time.monotonic() - start
            sizes = os.path.getsize(raw_file), os.path.getsize(raw_file + ".gz")
            os.unlink(raw_file)
            os.unlink(raw_file + ".gz")
            return wall, sizes[0], sizes[1]

        delay = cli(big.port, "CONFIG", "GET", "repl-diskless-sync-delay").split()[-1]
        rounds = []
        for index in range(args.rounds):
            raw, rdb_size, raw_size = raw_pipeline()
            cli(big.port, "CONFIG", "SET", "repl-diskless-sync-delay", "0")
            raw_nodelay = raw_pipeline()[0]
            cli(big.port, "CONFIG", "SET", "repl-diskless-sync-delay", delay)
            gz_wall, gz_peak, gz = playbook(big.port, os.path.join(work, "gz%d" % index), compression_threads=1)
            rounds.append((raw, raw_nodelay, gz_wall, gz["module_seconds"], gz_peak, gz))
            print("round %d: raw %.1f s (%.1f s without the %s s diskless-sync delay), playbook %.1f s, module %.1f s"
                  % (index + 1, raw, raw_nodelay, delay, gz_wall, gz["module_seconds"]), flush=True)

        def median(values: list[float]) -> float:
            ordered = sorted(values)
            return ordered[len(ordered) // 2] if len(ordered) % 2 else (ordered[len(ordered) // 2 - 1] + ordered[len(ordered) // 2]) / 2

        raw = min(r[0] for r in rounds)
        raw_nodelay = min(r[1] for r in rounds)
        best = min(rounds, key=lambda r: r[3])
        gz_wall, gz_peak, gz = min(r[2] for r in rounds), max(r[4] for r in rounds), best[5]
        ratio_playbook = median([r[2] / r[0] for r in rounds])
        ratio_module = median([r[3] / r[0] for r in rounds])
        ratio_nodelay = median([r[3] / r[1] for r in rounds])

        df_wall, df_peak, df = playbook(big.port, os.path.join(work, "default"))
        zs_wall, zs_peak, zs = playbook(big.port, os.path.join(work, "zst"), compression="zstd")
        sm_wall, sm_peak, sm = playbook(small.port, os.path.join(work, "small"))

        def line(label: str, wall: float, manifest: dict, peak: float) -> str:
            return "%-38s %7.1f s   %8.1f MB   module %5.1f s, peak RSS %5.1f MB   (save %.1f s, copy %.1f s, pause %.1f ms)" % (
                label, wall, manifest["artifact"]["size"] / 2**20, manifest["module_seconds"], peak,
                manifest["source"]["save_seconds"], manifest["duration_seconds"], manifest["source"]["writes_paused_ms"] or 0)

        print()
        print("RDB %.1f MB, %d keys" % (rdb_size / 2**20, gz["source"]["keys"]))
        print("best of %d rounds for the raw pipeline and the gzip playbook; ratios are the median of the rounds" % args.rounds)
        print("%-38s %7.1f s   %8.1f MB" % ("raw redis-cli --rdb + gzip -6", raw, raw_size / 2**20))
        print("%-38s %7.1f s" % ("  the same, diskless-sync delay 0", raw_nodelay))
        print(line("playbook, gzip -6, 1 thread (%s)" % gz["compression"]["program"], gz_wall, gz, gz_peak))
        print(line("playbook, defaults (%s)" % df["compression"]["program"], df_wall, df, df_peak))
        print(line("playbook, zstd -%d" % zs["compression"]["level"], zs_wall, zs, zs_peak))
        print(line("playbook, small server (%d keys)" % args.small_keys, sm_wall, sm, sm_peak))
        print()
        print("ratio playbook gzip / raw gzip      %.2fx   (target <= 1.10x; includes ansible-playbook start-up and the"
              " report tasks: %.1f s for the small server)" % (ratio_playbook, sm_wall))
        print("ratio module gzip / raw gzip        %.2fx   (the backup task alone)" % ratio_module)
        print("ratio module gzip / raw, no delay   %.2fx   (the stringent comparison)" % ratio_nodelay)
        print("ratio playbook defaults / raw gzip  %.2fx" % (df_wall / raw))
        print("ratio playbook zstd / raw gzip      %.2fx" % (zs_wall / raw))
        print("module peak RSS large / small       %.1f MB / %.1f MB   (target <= 100 MB, independent of size)"
              % (max(gz_peak, df_peak, zs_peak), sm_peak))
        print("keys counted exactly at the fork    %s (%d)" % (gz["source"]["counts_exact"], gz["source"]["keys"]))
    finally:
        big.stop()
        small.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
