# Copyright (c) cclite.backup contributors
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one bench: every engine's playbook against its raw pipeline, backup and restore, in one run.

Sections (each one that cannot run prints why and the bench goes on):
  postgresql  plain format: raw `pg_dump | gzip -6`, `| pigz -6`, `| zstd -1 -T0` against
              backup.yml with gzip and with zstd; raw `gunzip -c | psql` and `zstd -dc | psql`
              against restore.yml (restore_confirm=true) of the same gzip file.
  directory   raw `pg_dump -Fd -j2 -Z1` and `pg_restore -j2` against backup.yml and restore.yml
              with postgresql_backup_format: directory, jobs 2, level 1.
  pgbackrest  a full backup (zstd, 2 processes) of the same cluster and its restore + start, if
              the pgbackrest package is installed; it runs last, as it restarts the cluster with
              archive_mode on. Debian's build may lack zstd: then lz4 (or gz), said in the output,
              and the zstd target is "not available".
  redis       raw `redis-cli --rdb` + gzip -6 with repl-diskless-sync-delay 0 against backup.yml
              (gzip -6, one thread: like for like); restore.yml against the raw way of restoring
              the same RDB (stop, gunzip the RDB into place, start, wait until loaded). That is
              the fair comparison: restore.yml restores that same RDB file the same way; a
              `redis-cli --pipe` of a logical dump is a different format with other costs.
  qdrant      the project's Qdrant test server (tests/qdrant_server) with a seeded collection:
              raw snapshot create + download (HTTP) against backup.yml; raw snapshot upload
              against restore.yml.
  memory      peak RSS (VmHWM) of every module process, for the small and the large data.
  scaling     1, 2, 4 and 8 managed hosts (local connections, separate backup roots, -f 8)
              backing up a tiny PostgreSQL database at once.
  fixed       backup.yml of a 100-row database, and in turn the same with the collection at
              --baseline (main when issue 20 was filed), extracted with git archive.

The floor: in the postgresql, directory, scaling and fixed sections, each round also runs the
raw pipeline as the one task of a playbook (FLOOR_PLAYBOOK: an ansible.builtin.shell task on the
same local-connection hosts, nothing checked, recorded or reported), which is what any playbook
pays for starting ansible-playbook, a task and a module on this machine. Its ratio to the raw
pipeline is printed beside the target it bounds: a target below its floor cannot be met by any
playbook here, whatever it leaves out.

Raw pipelines and playbooks run interleaved, --rounds times; every ratio is the median of the
rounds and is printed with its target from issue 20 (MET / NOT MET). Results go to --json.

Run from the repository root after `make setup`:  .venv/bin/python bench/bench_all.py [--quick]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (  # noqa: E402  pylint: disable=wrong-import-position
    DATA, PG_BIN, PG_PASSWORD, REDIS_PASSWORD, ROOT, Cluster, PlaybookFailed, RedisServer, free_port, median,
    checkout, newest_manifest, pg_env, private_file, psql, redis_cli, run_playbook, sh, timed,
)

# The raw pipeline as the one task of a playbook: the floor (module docstring). The password
# comes with the extra vars (a 0600 file) into the task's environment, never argv.
FLOOR_PLAYBOOK = """\
---
- name: The raw pipeline as the one task of a playbook (the bench's floor)
  hosts: cclite_backup
  gather_facts: false
  tasks:
    - name: Run the raw pipeline
      ansible.builtin.shell: "set -o pipefail; {{ floor_command }}"
      args:
        executable: /bin/bash
      environment:
        PGPASSWORD: "{{ floor_password }}"
        PGUSER: postgres
        PGHOST: 127.0.0.1
      changed_when: true
"""

BASELINE = "74580e4"  # main when issue 20 was filed: its 1.8 s fixed cost is this code on that day's machine
DEFAULT_JSON = os.path.join(ROOT, "tests", "output", "bench", "results.json")


class Bench:
    """Collects figures, ratios against targets and skipped sections; prints as it goes."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = tempfile.mkdtemp(prefix="cclite-bench-")
        os.chmod(self.work, 0o755)
        self.results: dict = {
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "settings": {k: v for k, v in vars(args).items() if k != "json"},
            "machine": {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg()},
            "sections": {}, "ratios": [], "peak_rss_mb": {}, "unavailable": {},
        }
        self.peaks: dict[tuple[str, str], float] = {}

    # -- recording ------------------------------------------------------------------------

    def figure(self, section: str, label: str, seconds: float | None, note: str = "") -> None:
        self.results["sections"].setdefault(section, {})[label] = seconds
        text = "not available" if seconds is None else "%7.2f s" % seconds
        print("  %-52s %s%s" % (label, text, ("   " + note) if note else ""), flush=True)

    def rounds(self, section: str, label: str, values: list[float]) -> float:
        best = min(values)
        self.results["sections"].setdefault(section, {})[label] = {"best": best, "rounds": values}
        print("  %-52s %7.2f s   (rounds: %s)" % (label, best, ", ".join("%.2f" % v for v in values)), flush=True)
        return best

    def ratio(self, label: str, values: list[float], target: float | None, note: str = "", floor: list[float] | None = None) -> None:
        """A ratio's median against its target; ``floor``: the same ratio of the one-task playbook, per round."""
        value = median(values)
        met = None if target is None else value <= target
        row = {"ratio": label, "median": value, "rounds": values, "target": target, "met": met}
        if floor:
            row["floor"] = median(floor)
            row["floor_rounds"] = floor
            note = ("floor %.2fx%s" % (row["floor"], ", above the target" if target is not None and row["floor"] > target else "")
                    + ("; " + note if note else ""))
        self.results["ratios"].append(row)
        verdict = "" if target is None else "  target <= %.2fx  %s" % (target, "MET" if met else "NOT MET")
        print("  RATIO %-46s %6.2fx%s%s" % (label, value, verdict, ("   " + note) if note else ""), flush=True)

    def floor(self, label: str, command: str, hosts: dict[str, dict] | None = None, forks: int = 5) -> float:
        """Wall time of the raw ``command`` as the one task of a playbook (FLOOR_PLAYBOOK) on ``hosts``."""
        path = os.path.join(self.work, "floor.yml")
        if not os.path.exists(path):
            with open(path, "w") as f:
                f.write(FLOOR_PLAYBOOK)
        work = os.path.join(self.work, "floor-run")
        wall, _peaks, _out = run_playbook("floor-%s.yml" % label, work, hosts or {"localhost": {}},
                                          {"floor_command": command, "floor_password": PG_PASSWORD}, forks=forks, playbook=path)
        shutil.rmtree(work, ignore_errors=True)
        return wall

    def unavailable(self, label: str, why: str) -> None:
        self.results["unavailable"][label] = why
        print("  %-52s not available (%s)" % (label, why), flush=True)

    def peak(self, data: str, peaks: dict[str, float]) -> None:
        for module, mb in peaks.items():
            self.peaks[(module, data)] = max(self.peaks.get((module, data), 0.0), mb)

    def section(self, name: str, run) -> None:
        print("\n== %s (%s)" % (name, time.strftime("%H:%M:%S")), flush=True)
        try:
            run()
        except Exception as exc:  # noqa: BLE001  a section that cannot run must not stop the others
            why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if isinstance(exc, subprocess.CalledProcessError) and exc.stderr:
                why += ": " + (exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr).strip()[-500:]
            self.results["unavailable"][name] = why
            print("  SECTION FAILED: %s" % why, flush=True)
            if self.args.verbose or isinstance(exc, PlaybookFailed):
                traceback.print_exc()

    # -- PostgreSQL -----------------------------------------------------------------------

    def pg_extra(self, root: str, db: str) -> dict[str, object]:
        return {
            "backup_root": root, "backup_stores": ["postgresql"], "postgresql_backup_mode": "host",
            "postgresql_backup_login_host": "127.0.0.1", "postgresql_backup_login_port": self.pg.port,
            "postgresql_backup_login_password": PG_PASSWORD, "postgresql_backup_databases": [db],
        }

    def pg_playbook(self, name: str, root: str, db: str, data: str, **settings: object) -> tuple[float, dict]:
        extra = self.pg_extra(root, db)
        # the file to restore is named as an operator names it (restore-db.sh --postgres NAME):
        # restore_<store>_file, which also skips resolving a backup set
        file = settings.pop("restore_file", None)
        extra.update({"postgresql_backup_" + k: v for k, v in settings.items()})
        if name == "restore.yml":
            extra.update({"restore_confirm": True}, **({"restore_postgresql_file": file} if file else {}))
        wall, peaks, _out = run_playbook(name, root, {"localhost": {}}, extra)
        self.peak(data, peaks)
        return wall, peaks

    def raw_dump(self, db: str, compressor: str) -> float:
        out = os.path.join(self.work, "raw.out")
        wall = timed("pg_dump -p %d -d %s | %s > %s" % (self.pg.port, db, compressor, out), env=pg_env())
        os.unlink(out)
        return wall

    def raw_restore(self, path: str, decompressor: str) -> float:
        psql(self.pg.port, "DROP DATABASE IF EXISTS bench_raw_restore")
        start = time.monotonic()
        psql(self.pg.port, "CREATE DATABASE bench_raw_restore")
        sh("%s %s | psql -X -q -v ON_ERROR_STOP=1 -p %d -d bench_raw_restore > /dev/null" % (decompressor, path, self.pg.port),
           env=pg_env())
        wall = time.monotonic() - start
        psql(self.pg.port, "DROP DATABASE bench_raw_restore")
        return wall

    def postgresql_plain(self) -> None:
        names = ("raw pg_dump | gzip -6", "raw pg_dump | pigz -6", "raw pg_dump | zstd -1 -T0",
                 "backup.yml gzip", "backup.yml zstd", "raw gunzip -c | psql", "raw zstd -dc | psql", "restore.yml (gzip file)",
                 "floor: pg_dump | zstd -1 -T0 as one playbook task")
        times: dict[str, list[float]] = {n: [] for n in names}
        for number in range(1, self.args.rounds + 1):
            times[names[0]].append(self.raw_dump("bench_big", "gzip -6"))
            gz_root = os.path.join(self.work, "pg-gz%d" % number)
            times[names[3]].append(self.pg_playbook("backup.yml", gz_root, "bench_big", "large", compression="gzip")[0])
            times[names[1]].append(self.raw_dump("bench_big", "pigz -6"))
            zs_root = os.path.join(self.work, "pg-zst%d" % number)
            times[names[4]].append(self.pg_playbook("backup.yml", zs_root, "bench_big", "large", compression="zstd")[0])
            times[names[2]].append(self.raw_dump("bench_big", "zstd -q -1 -T0"))
            out = os.path.join(self.work, "floor.out")
            times[names[8]].append(self.floor("zstd", "pg_dump -p %d -d bench_big | zstd -q -1 -T0 > %s" % (self.pg.port, out)))
            os.unlink(out)
            gz_path, gz_manifest = newest_manifest(gz_root, "postgresql")
            zs_path, _zs_manifest = newest_manifest(zs_root, "postgresql")
            times[names[5]].append(self.raw_restore(gz_path, "gunzip -c"))
            times[names[7]].append(self.pg_playbook("restore.yml", gz_root, "bench_big", "large",
                                                    restore_file=gz_manifest["artifact"]["name"])[0])
            times[names[6]].append(self.raw_restore(zs_path, "zstd -q -dc"))
            shutil.rmtree(zs_root, ignore_errors=True)
            shutil.rmtree(gz_root, ignore_errors=True)
            print("  round %d: %s" % (number, ", ".join("%s %.1f s" % (n, times[n][-1]) for n in names)), flush=True)
        for label in names:
            self.rounds("postgresql", label, times[label])

        def pair(a: str, b: str) -> list[float]:
            return [x / y for x, y in zip(times[a], times[b], strict=True)]

        self.ratio("pg backup.yml gzip / raw pg_dump|gzip -6 (the guide)", pair(names[3], names[0]), None)
        self.ratio("pg backup.yml gzip / raw pg_dump|pigz -6", pair(names[3], names[1]), None)
        self.ratio("pg backup.yml zstd / raw pg_dump|zstd -1 -T0", pair(names[4], names[2]), 1.3, floor=pair(names[8], names[2]))
        self.ratio("pg backup.yml zstd / its floor", pair(names[4], names[8]), None)
        self.ratio("pg restore.yml / raw gunzip -c|psql", pair(names[7], names[5]), 1.3)
        self.pg_zstd_backup = times[names[4]]

    def directory_supported(self) -> bool:
        with open(os.path.join(ROOT, "roles", "postgresql_backup", "meta", "argument_specs.yml")) as f:
            specs = f.read()
        return "postgresql_backup_format" in specs and "directory" in specs.split("postgresql_backup_format", 1)[1][:600]

    def postgresql_directory(self) -> None:
        raw_dump, raw_restore, pb_dump, pb_restore, floor_dump, floor_restore = [], [], [], [], [], []
        supported = self.directory_supported()
        for number in range(self.args.rounds):  # raw and playbook interleaved: a shared machine's load drifts
            out = os.path.join(self.work, "raw.dir")
            raw_dump.append(timed("pg_dump -Fd -j2 -Z1 -p %d -d bench_big -f %s" % (self.pg.port, out), env=pg_env()))
            root = os.path.join(self.work, "pg-dir%d" % number)
            if supported:
                pb_dump.append(self.pg_playbook("backup.yml", root, "bench_big", "large", format="directory",
                                                compression_level=1, jobs=2)[0])
            psql(self.pg.port, "DROP DATABASE IF EXISTS bench_raw_restore")
            start = time.monotonic()
            psql(self.pg.port, "CREATE DATABASE bench_raw_restore")
            sh("pg_restore -j2 -p %d -d bench_raw_restore %s" % (self.pg.port, out), env=pg_env())
            raw_restore.append(time.monotonic() - start)
            psql(self.pg.port, "DROP DATABASE bench_raw_restore")
            # the floors: the same restore (of the raw dump) and the same dump, each as one playbook task
            floor_restore.append(self.floor("pg-restore", "psql -X -q -p %d -d postgres -c 'CREATE DATABASE bench_raw_restore' && "
                                            "pg_restore -j2 -p %d -d bench_raw_restore %s" % (self.pg.port, self.pg.port, out)))
            psql(self.pg.port, "DROP DATABASE bench_raw_restore")
            shutil.rmtree(out)
            floor_dump.append(self.floor("pg-dump-fd", "pg_dump -Fd -j2 -Z1 -p %d -d bench_big -f %s" % (self.pg.port, out)))
            shutil.rmtree(out)
            if supported:
                _path, manifest = newest_manifest(root, "postgresql")
                pb_restore.append(self.pg_playbook("restore.yml", root, "bench_big", "large", format="directory", jobs=2,
                                                   restore_file=manifest["artifact"]["name"])[0])
                shutil.rmtree(root, ignore_errors=True)
        self.rounds("directory", "raw pg_dump -Fd -j2 -Z1", raw_dump)
        self.rounds("directory", "raw pg_restore -j2", raw_restore)
        self.rounds("directory", "floor: pg_dump -Fd -j2 -Z1 as one playbook task", floor_dump)
        self.rounds("directory", "floor: pg_restore -j2 as one playbook task", floor_restore)
        if not supported:
            why = "the collection has no postgresql_backup_format: directory yet"
            self.unavailable("backup.yml directory -j2", why)
            self.unavailable("restore.yml directory -j2", why)
            self.results["ratios"].append({"ratio": "pg directory backup.yml / raw pg_dump -Fd -j2", "median": None,
                                           "target": 1.2, "met": None})
            self.results["ratios"].append({"ratio": "pg directory restore.yml / raw pg_restore -j2", "median": None,
                                           "target": 1.2, "met": None})
            return
        self.rounds("directory", "backup.yml directory -j2", pb_dump)
        self.rounds("directory", "restore.yml directory -j2", pb_restore)
        self.ratio("pg directory backup.yml / raw pg_dump -Fd -j2", [a / b for a, b in zip(pb_dump, raw_dump, strict=True)], 1.2,
                   floor=[a / b for a, b in zip(floor_dump, raw_dump, strict=True)])
        self.ratio("pg directory restore.yml / raw pg_restore -j2", [a / b for a, b in zip(pb_restore, raw_restore, strict=True)], 1.2,
                   floor=[a / b for a, b in zip(floor_restore, raw_restore, strict=True)])

    def pgbackrest(self) -> None:
        if not shutil.which("pgbackrest"):
            raise RuntimeError("pgbackrest is not installed (apt-get install -y pgbackrest)")
        home = os.path.join(self.work, "pgbackrest")
        os.makedirs(os.path.join(home, "repo"))
        os.makedirs(os.path.join(home, "log"))
        os.makedirs(os.path.join(home, "lock"))
        conf = os.path.join(home, "pgbackrest.conf")
        with open(conf, "w") as f:
            f.write("[global]\nrepo1-path=%s/repo\nlog-path=%s/log\nlock-path=%s/lock\nlog-level-console=warn\n"
                    "start-fast=y\narchive-timeout=30\nprocess-max=2\nrepo1-retention-full=9\n"
                    "[bench]\npg1-path=%s\npg1-port=%d\npg1-socket-path=%s\n"
                    % (home, home, home, self.pg.data, self.pg.port, self.pg.dir))
        sh("chown -R postgres %s" % home)
        base = ["runuser", "-u", "postgres", "--", "pgbackrest", "--config=" + conf, "--stanza=bench"]
        # pgBackRest backs up a cluster that archives its WAL: restart this throwaway one with it on.
        # It connects over the socket with the password from a 0600 PGPASSFILE, never argv.
        archive = "pgbackrest --config=%s --stanza=bench archive-push %%p" % conf
        psql(self.pg.port, "ALTER SYSTEM SET archive_mode = on")
        psql(self.pg.port, "ALTER SYSTEM SET archive_command = '%s'" % archive)
        self.pg.pg_ctl("restart")
        passfile = private_file(home, "pgpass", "*:*:*:postgres:%s\n" % PG_PASSWORD)
        shutil.chown(passfile, "postgres")
        env = dict(os.environ, PGPASSFILE=passfile)

        def run(argv: list[str]) -> None:
            subprocess.run(argv, check=True, cwd="/", capture_output=True, env=env)

        run(base + ["stanza-create"])
        # Debian's build may lack zstd: the first compression this pgbackrest allows, zstd first (the issue's).
        compress = None
        for kind, level in (("zstd", 1), ("lz4", 1), ("gz", 6)):
            probe = subprocess.run(base + ["--type=full", "--compress-type=" + kind, "--compress-level=%d" % level, "backup"],
                                   cwd="/", capture_output=True, env=env, check=False)
            if probe.returncode == 0:
                compress = (kind, level)
                break
            if b"not allowed" not in probe.stderr:
                raise subprocess.CalledProcessError(probe.returncode, probe.args, probe.stdout, probe.stderr)
            print("  pgbackrest: compress-type %s not allowed in this build" % kind, flush=True)
        if compress is None:
            raise RuntimeError("this pgbackrest allows none of zstd, lz4, gz")
        backup = base + ["--type=full", "--compress-type=" + compress[0], "--compress-level=%d" % compress[1], "backup"]
        backups, restores = [], []
        for number in range(self.args.rounds):
            start = time.monotonic()
            run(backup)
            backups.append(time.monotonic() - start)
            target = os.path.join(home, "restore%d" % number)
            os.makedirs(target, mode=0o700)
            shutil.chown(target, "postgres")
            port = free_port()
            start = time.monotonic()
            run(base + ["--pg1-path=" + target, "--type=immediate", "--target-action=promote", "restore"])
            subprocess.run(["runuser", "-u", "postgres", "--", PG_BIN + "/pg_ctl", "-D", target, "-w", "-t", "3600",
                            "-l", target + ".log", "-o", "-p %d -k %s -c archive_mode=off" % (port, home), "start"],
                           check=True, cwd="/", stdout=subprocess.DEVNULL)
            restores.append(time.monotonic() - start)
            subprocess.run(["runuser", "-u", "postgres", "--", PG_BIN + "/pg_ctl", "-D", target, "-m", "immediate", "stop"],
                           check=False, cwd="/", stdout=subprocess.DEVNULL)
            shutil.rmtree(target, ignore_errors=True)
        version = subprocess.run(["pgbackrest", "version"], capture_output=True, text=True, check=False).stdout.strip()
        self.results["sections"].setdefault("pgbackrest", {})["version"] = version
        self.rounds("pgbackrest", "%s full backup, %s -%d, 2 processes" % (version, *compress), backups)
        self.rounds("pgbackrest", "pgBackRest restore + start (whole cluster)", restores)
        zstd = getattr(self, "pg_zstd_backup", None)
        if zstd and compress[0] != "zstd":
            self.unavailable("pg backup.yml zstd / pgBackRest full zstd", "this pgbackrest build has no zstd; "
                             "the ratio against its %s backup follows, without the target" % compress[0])
            self.ratio("pg backup.yml zstd / pgBackRest full %s" % compress[0], [a / b for a, b in zip(zstd, backups, strict=True)], None)
        elif zstd:
            self.ratio("pg backup.yml zstd / pgBackRest full zstd", [a / b for a, b in zip(zstd, backups, strict=True)], 1.2,
                       "(logical dump of one database against a physical copy of the cluster)")

    def scaling(self) -> None:
        walls: dict[int, list[float]] = {n: [] for n in (1, 2, 4, 8)}
        floors: dict[int, list[float]] = {1: [], 8: []}
        for _number in range(self.args.rounds):
            for count in walls:
                root = os.path.join(self.work, "scale%d" % count)
                hosts = {"h%d" % i: {"backup_root": os.path.join(root, "h%d" % i)} for i in range(1, count + 1)}
                extra = {"backup_stores": ["postgresql"], "postgresql_backup_mode": "host",
                         "postgresql_backup_login_host": "127.0.0.1", "postgresql_backup_login_port": self.pg.port,
                         "postgresql_backup_login_password": PG_PASSWORD, "postgresql_backup_databases": ["bench_tiny"]}
                wall, peaks, _out = run_playbook("backup.yml", root, hosts, extra, forks=8)
                self.peak("small", peaks)
                walls[count].append(wall)
                shutil.rmtree(root, ignore_errors=True)
            for count, values in floors.items():  # the same dump as one playbook task on as many hosts
                os.makedirs(os.path.join(self.work, "scale-floor"), exist_ok=True)
                hosts = {"h%d" % i: {"floor_out": os.path.join(self.work, "scale-floor", "h%d.sql.gz" % i)} for i in range(1, count + 1)}
                values.append(self.floor("scaling", "pg_dump -p %d -d bench_tiny | gzip > {{ floor_out }}" % self.pg.port, hosts, forks=8))
                shutil.rmtree(os.path.join(self.work, "scale-floor"), ignore_errors=True)
        for count, values in walls.items():
            self.rounds("scaling", "backup.yml, %d host%s at once (-f 8)" % (count, "s" if count > 1 else ""), values)
        for count, values in floors.items():
            self.rounds("scaling", "floor: pg_dump | gzip as one playbook task, %d host%s (-f 8)" % (count, "s" if count > 1 else ""), values)
        self.ratio("scaling 8 hosts / 1 host", [a / b for a, b in zip(walls[8], walls[1], strict=True)], 2.0,
                   floor=[a / b for a, b in zip(floors[8], floors[1], strict=True)])
        self.ratio("scaling 4 hosts / 1 host", [a / b for a, b in zip(walls[4], walls[1], strict=True)], None)

    def fixed_cost(self) -> None:
        """backup.yml of a 100-row database; with --baseline, the collection at that commit in turn
        (the same machine, the same minutes: the issue's 1.8 s was measured on another day)."""
        walls, base, floors = [], [], []
        tree = ""
        if self.args.baseline:
            try:
                tree = checkout(self.args.baseline, self.work)
            except (OSError, subprocess.CalledProcessError) as exc:  # not a git checkout, or a shallow one
                self.unavailable("fixed cost / the collection at %s" % self.args.baseline, "git archive failed: %s" % exc)
        for number in range(self.args.rounds):
            root = os.path.join(self.work, "fixed%d" % number)
            walls.append(self.pg_playbook("backup.yml", root, "bench_rows100", "small")[0])
            shutil.rmtree(root, ignore_errors=True)
            out = os.path.join(self.work, "floor.out")
            floors.append(self.floor("fixed", "pg_dump -p %d -d bench_rows100 | gzip > %s" % (self.pg.port, out)))
            os.unlink(out)
            if tree:
                base.append(run_playbook("backup.yml", root, {"localhost": {}}, self.pg_extra(root, "bench_rows100"), tree=tree)[0])
                shutil.rmtree(root, ignore_errors=True)
        best = self.rounds("fixed", "backup.yml of a 100-row database", walls)
        self.rounds("fixed", "floor: pg_dump | gzip of it as one playbook task", floors)
        met = median(walls) <= 1.8
        self.results["ratios"].append({"ratio": "fixed cost, seconds (median)", "median": median(walls), "rounds": walls,
                                       "target": 1.8, "met": met})
        print("  TIME  fixed cost backup.yml 100 rows, median %.2f s (best %.2f s)  target <= 1.80 s  %s"
              % (median(walls), best, "MET" if met else "NOT MET"), flush=True)
        self.ratio("fixed cost / its floor (same run)", [a / b for a, b in zip(walls, floors, strict=True)], None)
        if tree:
            self.rounds("fixed", "backup.yml of a 100-row database, the collection at %s" % self.args.baseline, base)
            self.ratio("fixed cost / the collection at %s (same run)" % self.args.baseline,
                       [a / b for a, b in zip(walls, base, strict=True)], 1.0)
            shutil.rmtree(tree, ignore_errors=True)

    def postgresql_small(self) -> None:
        root = os.path.join(self.work, "pg-small")
        wall = self.pg_playbook("backup.yml", root, "bench_small", "small", compression="gzip")[0]
        self.figure("memory", "backup.yml gzip of the small database", wall)
        _path, manifest = newest_manifest(root, "postgresql")
        wall = self.pg_playbook("restore.yml", root, "bench_small", "small", restore_file=manifest["artifact"]["name"])[0]
        self.figure("memory", "restore.yml of the small database", wall)
        shutil.rmtree(root, ignore_errors=True)

    # -- Redis ----------------------------------------------------------------------------

    def redis_playbook(self, name: str, server: RedisServer, root: str, data: str, **settings: object) -> float:
        extra = {"backup_root": root, "backup_stores": ["redis"], "redis_backup_mode": "host",
                 "redis_backup_login_port": server.port, "redis_backup_login_password": REDIS_PASSWORD,
                 "redis_backup_service": server.service, "redis_backup_service_manager": "sysv"}
        file = settings.pop("restore_file", None)  # named as for PostgreSQL
        extra.update({"redis_backup_" + k: v for k, v in settings.items()})
        if name == "restore.yml":
            extra.update({"restore_confirm": True}, **({"restore_redis_file": file} if file else {}))
        wall, peaks, _out = run_playbook(name, root, {"localhost": {}}, extra)
        self.peak(data, peaks)
        return wall

    def redis(self) -> None:
        big, small = RedisServer(service=True), RedisServer(service=True)
        try:
            print("  populating %d keys (small server: %d)..." % (self.args.redis_keys, self.args.redis_small_keys), flush=True)
            big.populate(self.args.redis_keys, 128)
            small.populate(self.args.redis_small_keys, 128)
            env = dict(os.environ, REDISCLI_AUTH=REDIS_PASSWORD)
            raw_b, pb_b, raw_r, pb_r = [], [], [], []
            for number in range(self.args.rounds):
                # set every round: the raw restore below restarts the server, which forgets a CONFIG SET
                # (rounds after the first then waited the default 5 s before the transfer began)
                redis_cli(big.port, "CONFIG", "SET", "repl-diskless-sync-delay", "0")
                raw = os.path.join(self.work, "raw.rdb")
                raw_b.append(timed("redis-cli -p %d --rdb %s >/dev/null 2>&1 && gzip -6 < %s > %s.gz" % (big.port, raw, raw, raw), env=env))
                os.unlink(raw)
                root = os.path.join(self.work, "redis%d" % number)
                pb_b.append(self.redis_playbook("backup.yml", big, root, "large", compression_threads=1))
                # raw restore of the same RDB: stop, gunzip into place, start, wait until loaded
                start = time.monotonic()
                big.shutdown()
                sh("gunzip -c %s.gz > %s.tmp && mv %s.tmp %s" % (raw, big.rdb, big.rdb, big.rdb))
                big.start()
                raw_r.append(time.monotonic() - start)
                os.unlink(raw + ".gz")
                _path, manifest = newest_manifest(root, "redis")
                pb_r.append(self.redis_playbook("restore.yml", big, root, "large", restore_file=manifest["artifact"]["name"]))
                shutil.rmtree(root, ignore_errors=True)
                print("  round %d: raw backup %.1f s, backup.yml %.1f s, raw restore %.1f s, restore.yml %.1f s"
                      % (number + 1, raw_b[-1], pb_b[-1], raw_r[-1], pb_r[-1]), flush=True)
            self.rounds("redis", "raw redis-cli --rdb + gzip -6 (sync delay 0)", raw_b)
            self.rounds("redis", "backup.yml gzip -6, 1 thread", pb_b)
            self.rounds("redis", "raw restore: stop, gunzip RDB, start", raw_r)
            self.rounds("redis", "restore.yml", pb_r)
            self.ratio("redis backup.yml gzip / raw (no sync delay)", [a / b for a, b in zip(pb_b, raw_b, strict=True)], 1.2)
            self.ratio("redis restore.yml / raw RDB restore", [a / b for a, b in zip(pb_r, raw_r, strict=True)], None)
            root = os.path.join(self.work, "redis-small")
            self.figure("memory", "redis backup.yml, small server",
                        self.redis_playbook("backup.yml", small, root, "small", compression_threads=1))
        finally:
            big.stop()
            small.stop()

    # -- Qdrant ---------------------------------------------------------------------------

    def qdrant(self) -> None:
        try:
            import qdrant_edge  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
        except ImportError as exc:
            raise RuntimeError("the Qdrant test server needs qdrant-edge-py: %s" % exc) from exc
        storage = os.path.join(self.work, "qdrant-storage")
        log = open(os.path.join(self.work, "qdrant.log"), "w")  # noqa: SIM115  pylint: disable=consider-using-with
        proc = subprocess.Popen([sys.executable, "-m", "tests.qdrant_server", "--host", "127.0.0.1", "--port", "0",  # noqa: S603
                                 "--storage", storage, "--quiet"], cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True)
        try:
            first = proc.stdout.readline()
            url = "http://" + first.split("http://", 1)[1].split()[0].rstrip("/") if "http://" in first else ""
            if not url:
                raise RuntimeError("the Qdrant test server did not say where it listens: %r" % first)
            for _attempt in range(100):
                try:
                    with urllib.request.urlopen(url + "/healthz", timeout=2):
                        break
                except OSError:
                    time.sleep(0.1)
            self.qdrant_seed(url, "bench_big", self.args.qdrant_points)
            self.qdrant_seed(url, "bench_small", max(10, self.args.qdrant_points // 100))
            raw_b, pb_b, raw_r, pb_r = [], [], [], []
            for number in range(self.args.rounds):
                raw = os.path.join(self.work, "raw.snapshot")
                start = time.monotonic()
                name = self.qdrant_call(url, "POST", "/collections/bench_big/snapshots?wait=true")["result"]["name"]
                sh("curl -sSf -o %s %s/collections/bench_big/snapshots/%s" % (raw, url, name))
                raw_b.append(time.monotonic() - start)
                self.qdrant_call(url, "DELETE", "/collections/bench_big/snapshots/%s?wait=true" % name)
                root = os.path.join(self.work, "qdrant%d" % number)
                extra = {"backup_root": root, "backup_stores": ["qdrant"], "qdrant_backup_url": url,
                         "qdrant_backup_collections": ["bench_big"]}
                wall, peaks, _out = run_playbook("backup.yml", root, {"localhost": {}}, extra)
                self.peak("large", peaks)
                pb_b.append(wall)
                start = time.monotonic()
                sh("curl -sSf -o /dev/null -F snapshot=@%s '%s/collections/bench_big/snapshots/upload?priority=snapshot&wait=true'"
                   % (raw, url))
                raw_r.append(time.monotonic() - start)
                os.unlink(raw)
                _path, manifest = newest_manifest(root, "qdrant")
                extra.update({"restore_confirm": True, "restore_qdrant_file": manifest["artifact"]["name"]})
                wall, peaks, _out = run_playbook("restore.yml", root, {"localhost": {}}, extra)
                self.peak("large", peaks)
                pb_r.append(wall)
                shutil.rmtree(root, ignore_errors=True)
            self.rounds("qdrant", "raw snapshot create + download", raw_b)
            self.rounds("qdrant", "backup.yml", pb_b)
            self.rounds("qdrant", "raw snapshot upload (priority snapshot)", raw_r)
            self.rounds("qdrant", "restore.yml", pb_r)
            self.ratio("qdrant backup.yml / raw snapshot + download", [a / b for a, b in zip(pb_b, raw_b, strict=True)], None)
            self.ratio("qdrant restore.yml / raw snapshot upload", [a / b for a, b in zip(pb_r, raw_r, strict=True)], None)
            root = os.path.join(self.work, "qdrant-small")
            wall, peaks, _out = run_playbook("backup.yml", root, {"localhost": {}}, {
                "backup_root": root, "backup_stores": ["qdrant"], "qdrant_backup_url": url,
                "qdrant_backup_collections": ["bench_small"]})
            self.peak("small", peaks)
            self.figure("memory", "qdrant backup.yml, small collection", wall)
        finally:
            proc.terminate()
            proc.wait()
            log.close()

    @staticmethod
    def qdrant_call(url: str, method: str, path: str, body: object = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url + path, data=data, method=method, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=600) as response:  # noqa: S310  a local test server
            return json.loads(response.read() or b"{}")

    def qdrant_seed(self, url: str, collection: str, points: int, dim: int = 256) -> None:
        self.qdrant_call(url, "PUT", "/collections/" + collection, {"vectors": {"size": dim, "distance": "Cosine"}})
        batch = 500
        for first in range(0, points, batch):
            ids = list(range(first + 1, min(points, first + batch) + 1))
            vectors = [[((i * 7919 + k * 104729) % 1000) / 1000.0 for k in range(dim)] for i in ids]
            payloads = [{"doc": "document %d" % i, "chunk": i % 17} for i in ids]
            self.qdrant_call(url, "PUT", "/collections/%s/points?wait=true" % collection,
                             {"batch": {"ids": ids, "vectors": vectors, "payloads": payloads}})

    # -- the run --------------------------------------------------------------------------

    def run(self) -> None:
        args = self.args
        wanted = set(args.only or SECTIONS)
        try:
            if wanted & {"postgresql", "directory", "pgbackrest", "scaling", "fixed"}:
                self.pg = Cluster(args.port)
                self.pg.start()
                print("creating PostgreSQL databases (%s MB and %s MB of %s data)..." % (args.size_mb, args.small_mb, args.data),
                      flush=True)
                big = self.pg.make_db("bench_big", args.size_mb, args.data)
                small = self.pg.make_db("bench_small", args.small_mb, args.data)
                self.pg.make_rows_db("bench_rows100", 100)
                self.pg.make_rows_db("bench_tiny", 100)
                psql(args.port, "CHECKPOINT")
                self.results["settings"]["pg_bytes"] = {"bench_big": big, "bench_small": small}
                print("bench_big: %.0f MB on disk; bench_small: %.0f MB" % (big / 2**20, small / 2**20), flush=True)
            steps = {
                "postgresql": self.postgresql_plain, "directory": self.postgresql_directory, "fixed": self.fixed_cost,
                "scaling": self.scaling, "redis": self.redis, "qdrant": self.qdrant, "pgbackrest": self.pgbackrest,
            }
            for name in SECTIONS:
                if name in wanted:
                    self.section(name, steps[name])
                    if name == "postgresql":
                        self.section("postgresql small (memory)", self.postgresql_small)
        finally:
            if getattr(self, "pg", None):
                self.pg.stop()
            shutil.rmtree(self.work, ignore_errors=True)
        self.report_memory()
        self.results["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        self.results["machine"]["loadavg_end"] = os.getloadavg()
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(self.results, f, indent=2, sort_keys=True)
            f.write("\n")
        self.summary()
        print("\nresults written to %s" % args.json)

    def report_memory(self) -> None:
        print("\n== peak memory of the module processes (VmHWM, MB): large data / small data")
        modules = sorted({module for module, _data in self.peaks})
        worst = 0.0
        for module in modules:
            large, small = self.peaks.get((module, "large")), self.peaks.get((module, "small"))
            worst = max(worst, large or 0.0, small or 0.0)
            self.results["peak_rss_mb"][module] = {"large": large, "small": small}
            print("  %-36s %8s / %-8s" % (module, "-" if large is None else "%.1f" % large, "-" if small is None else "%.1f" % small))
        met = worst <= 100 if modules else None
        self.results["ratios"].append({"ratio": "peak RSS of any module process, MB", "median": worst, "target": 100, "met": met})
        print("  PEAK  any module process %.1f MB  target <= 100 MB  %s"
              % (worst, "not available" if met is None else "MET" if met else "NOT MET"))

    def summary(self) -> None:
        print("\n== targets of issue 20 (ratios: median of %d round%s)" % (self.args.rounds, "s" if self.args.rounds > 1 else ""))
        if self.args.quick:
            print("  SMOKE TEST (--quick): at these sizes ansible-playbook's start-up dominates every ratio; not a record")
        for row in self.results["ratios"]:
            if row["target"] is None:
                continue
            verdict = "not available" if row["met"] is None else ("MET" if row["met"] else "NOT MET")
            value = "-" if row["median"] is None else "%.2f" % row["median"]
            floor = "  (floor %.2f%s)" % (row["floor"], ": the target is below it" if row["floor"] > row["target"] else "") if "floor" in row else ""
            print("  %-56s %8s  target <= %-6s %s%s" % (row["ratio"], value, row["target"], verdict, floor))
        for label, why in self.results["unavailable"].items():
            print("  %-56s not available: %s" % (label, why))


SECTIONS = ("postgresql", "directory", "fixed", "scaling", "redis", "qdrant", "pgbackrest")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--size-mb", type=float, default=1024, help="PostgreSQL large database, MB of dump text (default 1024)")
    parser.add_argument("--small-mb", type=float, default=64, help="PostgreSQL small database (default 64)")
    parser.add_argument("--data", choices=DATA, default="mixed", help="what the databases hold (default mixed)")
    parser.add_argument("--redis-keys", type=int, default=3_000_000, help="keys in the large Redis (default 3000000)")
    parser.add_argument("--redis-small-keys", type=int, default=10_000, help="keys in the small Redis (default 10000)")
    parser.add_argument("--qdrant-points", type=int, default=100_000, help="256-dim points in the large Qdrant collection")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3); ratios are their median")
    parser.add_argument("--only", action="append", choices=SECTIONS, help="run only this section (repeatable)")
    parser.add_argument("--quick", action="store_true", help="small sizes and one round: a smoke test of a few minutes")
    parser.add_argument("--port", type=int, default=55499, help="port of the throwaway PostgreSQL cluster")
    parser.add_argument("--json", default=DEFAULT_JSON, help="where the results go (default tests/output/bench/results.json)")
    parser.add_argument("--baseline", default=BASELINE,
                        help="git commit whose collection the fixed section also runs, in turn (default %s, when issue 20 "
                             "was filed; empty: none)" % BASELINE)
    parser.add_argument("--verbose", action="store_true", help="print the traceback of a failed section")
    args = parser.parse_args()
    if args.quick:
        args.size_mb, args.small_mb, args.rounds = min(args.size_mb, 16), min(args.small_mb, 2), 1
        args.redis_keys, args.redis_small_keys = min(args.redis_keys, 100_000), min(args.redis_small_keys, 1000)
        args.qdrant_points = min(args.qdrant_points, 2000)
    if os.geteuid() != 0:
        sys.exit("bench_all.py runs throwaway servers as the postgres user and installs a throwaway init script: run it as root")
    Bench(args).run()


if __name__ == "__main__":
    main()
