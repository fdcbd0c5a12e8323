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
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PG_BIN = "/usr/lib/postgresql/15/bin"


# What the benchmark databases hold (--data):
#   mixed   the stack's kinds of data, by size: 60 % messages (a paragraph or two of text, a
#           uuid, a timestamp, JSON metadata), 25 % knowledge-base articles (eight paragraphs),
#           15 % events (narrow rows: ids, a timestamp, a digest, a short line, JSON);
#   events  only the narrow event rows: the server formats many small values per MB, so
#           pg_dump itself is slow and the compressor matters less (the worst case for zstd).
DATA = ("mixed", "events")

# ~135 bytes of dump text per row.
EVENTS_SQL = """
    CREATE TABLE events (id bigint PRIMARY KEY, at timestamptz, digest text, body text, meta jsonb);
    INSERT INTO events
    SELECT g, timestamptz '2025-01-01' + g * interval '1 second', md5(g::text),
           'user ' || (g % 5000) || ' did action ' || (g % 37) || ' on item ' || (g * 7 % 100003),
           jsonb_build_object('k', g % 11, 'ok', g % 2 = 0)
      FROM generate_series(1, ROWS) g;
"""

# The text is real: paragraphs (blocks between blank lines) of the Python sources, comments and
# docstrings of this interpreter's standard library and of the venv's packages, up to 64 MB (far
# more than gzip's 32 KB or zstd -1's 512 KB window can find again). Random words will not do:
# gzip runs on them at half the speed it has on real text, which would flatter zstd. With a
# pinned venv the text is the same on every run. A message is one or two paragraphs, an article
# eight; their counts assume ~530 and ~2,300 bytes of dump text a row (1024 MB gives 1.2 GB).
POOL_BYTES = 64 * 1024 * 1024
TEXT_SQL = """
    CREATE TABLE messages (id bigint PRIMARY KEY, conversation_id uuid, sender text, created_at timestamptz,
                           body text, metadata jsonb);
    INSERT INTO messages
    SELECT g, md5((g / 20)::text)::uuid, 'user' || (g::bigint * 7919 % 50000), timestamptz '2025-01-01' + g * interval '7 seconds',
           CASE WHEN g % 3 = 0 THEN a.text ELSE a.text || E'\\n\\n' || b.text END,
           jsonb_build_object('channel', (ARRAY['web', 'email', 'chat'])[1 + g % 3], 'lang', 'en', 'tokens', length(a.text) / 4)
      FROM generate_series(1, MESSAGES) g
      JOIN paragraphs a ON a.p = 1 + (g::bigint * 7919) % PARAGRAPHS
      JOIN paragraphs b ON b.p = 1 + (g::bigint * 104729) % PARAGRAPHS;
    CREATE TABLE articles (id bigint PRIMARY KEY, title text, body text, updated_at timestamptz, tags jsonb);
    INSERT INTO articles
    SELECT g, left(a.text, 60),
           (SELECT string_agg((SELECT x.text FROM paragraphs x WHERE x.p = 1 + (g::bigint * 7919 + k * 104729) % PARAGRAPHS),
                              E'\\n\\n' ORDER BY k)
              FROM generate_series(0, 7) k),
           timestamptz '2025-01-01' + g * interval '1 hour', jsonb_build_array('kb', 'topic' || g % 40)
      FROM generate_series(1, ARTICLES) g
      JOIN paragraphs a ON a.p = 1 + (g::bigint * 31) % PARAGRAPHS;
    DROP TABLE paragraphs;
"""


def paragraphs() -> tuple[bytes, int]:
    """The text pool as COPY data (paragraph number, text) and the number of paragraphs."""
    roots = [sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"]]
    skip = {"site-packages", "test", "tests", "__pycache__", "idlelib", "lib2to3"}
    escape = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
    lines, size = [], 0
    for root in roots:
        for where, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d not in skip)
            for name in sorted(f for f in files if f.endswith((".py", ".txt", ".rst", ".md"))):
                with open(os.path.join(where, name), encoding="utf-8", errors="replace") as handle:
                    text = handle.read().replace("\x00", "")
                for block in text.split("\n\n"):
                    block = block.strip("\n")
                    if len(block) < 40:
                        continue
                    lines.append("%d\t%s\n" % (len(lines) + 1, block.translate(escape)))
                    size += len(block)
                    if size >= POOL_BYTES:
                        return "".join(lines).encode(), len(lines)
    return "".join(lines).encode(), len(lines)


def sh(cmd: str, **kw: object) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-o", "pipefail", "-c", cmd], check=True, **kw)  # noqa: S603


def psql(port: int, sql: str, db: str = "postgres", stdin: bytes = b"") -> str:
    out = subprocess.run(
        ["runuser", "-u", "postgres", "--", "psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
         "-p", str(port), "-d", db, "-c", sql],
        check=True, capture_output=True, input=stdin, cwd="/", env=dict(os.environ, PGPASSWORD="bench"),
    )
    return out.stdout.decode().strip()


class Cluster:
    def __init__(self, port: int) -> None:
        self.port = port
        self.dir = tempfile.mkdtemp(prefix="cclite-bench-pg-")
        os.chmod(self.dir, 0o755)
        shutil.chown(self.dir, "postgres")

    def start(self) -> None:
        pw = os.path.join(self.dir, "pw")
        with open(pw, "w") as f:
            f.write("bench")
        shutil.chown(pw, "postgres")
        run = ["runuser", "-u", "postgres", "--"]
        subprocess.run(run + [PG_BIN + "/initdb", "-D", self.dir + "/data", "-U", "postgres", "--pwfile", pw,
                              "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8"],
                       check=True, cwd="/", stdout=subprocess.DEVNULL)
        subprocess.run(run + [PG_BIN + "/pg_ctl", "-D", self.dir + "/data", "-w", "-l", self.dir + "/log", "-o",
                              "-p %d -k %s -c listen_addresses=127.0.0.1 -c shared_buffers=256MB" % (self.port, self.dir),
                              "start"], check=True, cwd="/", stdout=subprocess.DEVNULL)

    def stop(self) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", PG_BIN + "/pg_ctl", "-D", self.dir + "/data", "-m", "fast",
                        "stop"], cwd="/", stdout=subprocess.DEVNULL, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def make_db(self, name: str, size_mb: int, data: str) -> int:
        """A database of about ``size_mb`` MB of dump text; ``data`` says what it holds (see DATA)."""
        psql(self.port, "CREATE DATABASE %s" % name)
        size = size_mb * 1024 * 1024
        shares = {"mixed": {"messages": 0.60, "articles": 0.25, "events": 0.15}, "events": {"events": 1.0}}[data]
        if "messages" in shares:
            psql(self.port, "CREATE UNLOGGED TABLE paragraphs (p int PRIMARY KEY, text text)", name)
            pool, count = paragraphs()
            psql(self.port, "COPY paragraphs FROM STDIN", name, stdin=pool)
            psql(self.port, "ANALYZE paragraphs", name)
            psql(self.port, TEXT_SQL.replace("PARAGRAPHS", str(count))
                 .replace("MESSAGES", str(max(100, int(size * shares["messages"]) // 530)))
                 .replace("ARTICLES", str(max(10, int(size * shares["articles"]) // 2300))), name)
        psql(self.port, EVENTS_SQL.replace("ROWS", str(max(1000, int(size * shares["events"]) // 135))), name)
        return int(psql(self.port, "SELECT pg_database_size('%s')" % name))


class PeakRss:
    """Samples VmHWM of the module processes (AnsiballZ_postgresql_backup) while they run."""

    def __init__(self, needle: str) -> None:
        self.needle = needle.encode()
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    with open("/proc/%s/cmdline" % pid, "rb") as f:
                        if self.needle not in f.read():
                            continue
                    with open("/proc/%s/status" % pid) as f:
                        for line in f:
                            if line.startswith("VmHWM:"):
                                self.peak_kb = max(self.peak_kb, int(line.split()[1]))
                except OSError:
                    continue
            time.sleep(0.05)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def playbook(port: int, db: str, root: str, compression: str) -> tuple[float, float, dict]:
    os.makedirs(root)
    inventory = os.path.join(root, "inventory.json")
    with open(inventory, "w") as f:
        json.dump({"cclite_backup": {"hosts": {"localhost": {"ansible_connection": "local",
                                                             "ansible_python_interpreter": sys.executable}}}}, f)
    extra = {
        "backup_root": root, "backup_stores": ["postgresql"], "postgresql_backup_mode": "host",
        "postgresql_backup_login_host": "127.0.0.1", "postgresql_backup_login_port": port,
        "postgresql_backup_login_password": "bench", "postgresql_backup_databases": [db],
        "postgresql_backup_compression": compression,
    }
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".collections"), ANSIBLE_STDOUT_CALLBACK="json")
    start = time.monotonic()
    with PeakRss("AnsiballZ_postgresql_backup") as peak:
        out = subprocess.run(
            [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inventory,
             os.path.join(ROOT, "playbooks", "backup.yml"), "-e", json.dumps(extra)],
            capture_output=True, text=True, env=env, check=False,
        )
    wall = time.monotonic() - start
    if out.returncode != 0:
        sys.exit("playbook failed:\n" + out.stdout[-3000:] + out.stderr[-3000:])
    link = os.path.join(root, "postgresql", "latest.sql" + (".gz" if compression == "gzip" else ".zst"))
    with open(os.path.realpath(link) + ".manifest.json") as f:
        manifest = json.load(f)
    return wall, peak.peak_kb / 1024.0, manifest


def raw_pipeline(port: int, work: str, compressor: str) -> tuple[float, int]:
    path = os.path.join(work, "raw.out")
    start = time.monotonic()
    sh("pg_dump -h 127.0.0.1 -U postgres -p %d -d bench_big | %s > %s" % (port, compressor, path),
       env=dict(os.environ, PGPASSWORD="bench"))
    wall = time.monotonic() - start
    size = os.path.getsize(path)
    os.unlink(path)
    return wall, size


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


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
