# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PostgreSQL point-in-time recovery: base backups, the WAL archive, and the restore engine.

The WAL archive is ``<backup_root>/postgresql/wal/``, filled by the server's ``archive_command``
(the role's ``cclite_wal.py``): ``<segment>.gz`` and ``<segment>.sha256``. Base backups are
``pg_basebackup`` tar streams (``-D - -Ft -X none``, the manifest injected into the tar) written
by the core's streaming writer into ``<backup_root>/postgresql_base/`` (a store of its own, so
the off-site copy uploads, fetches and prunes it like the others); their WAL comes from the
archive (``pg_basebackup`` waits until the server has archived it). A restore is the core's one
restore flow (``_restore``) with :class:`PitrRestore` as its engine: the base backup is unpacked
into a new data directory beside the live one, checked with ``pg_verifybackup``, a temporary
server on a private socket replays the archive to the target and is promoted and checked there;
only then is the live server stopped and the directories swapped (the old one kept until the run
succeeds, and put back if the swapped server does not come up).
"""

from __future__ import annotations

import datetime
import os
import re
import subprocess
import time
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core import _restore
from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import ArtifactReader, Source
from ansible_collections.cclite.backup.plugins.module_utils._core._catalog import POSTGRESQL_BASE, Catalog, Entry
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import BackupError, ConfigError, StageError
from ansible_collections.cclite.backup.plugins.module_utils._core._process import Command, Target, run, start
from ansible_collections.cclite.backup.plugins.module_utils._engines.postgresql import _client as pg

BASE = POSTGRESQL_BASE
FORMAT = "basebackup-tar"
WAL_SUBDIR = os.path.join("postgresql", "wal")
SEGMENT_RE = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$")
SEGMENT_SIZE = 16 * 1024 * 1024
TARGET_KINDS = ("time", "lsn", "name", "latest")


def base_catalog(root: str) -> Catalog:
    return Catalog(root, BASE)


def wal_dir(root: str) -> str:
    return os.path.join(root, WAL_SUBDIR)


def parse_lsn(text: str) -> int:
    hi, _sep, lo = text.strip().partition("/")
    try:
        return (int(hi, 16) << 32) + int(lo, 16)
    except ValueError as exc:
        raise ConfigError("%r is not an LSN: write it as PostgreSQL shows it, e.g. 0/3000060" % text) from exc


def format_lsn(value: int) -> str:
    return "%X/%X" % (value >> 32, value & 0xFFFFFFFF)


# --- the base backup ------------------------------------------------------------------------

class TarScan:
    """Content check of a base backup: walks the tar stream, keeps ``backup_label`` and the
    manifest's WAL ranges, and fails a stream that is cut or lacks either."""

    KEEP = ("backup_label", "backup_manifest")

    def __init__(self) -> None:
        self.buf = b""
        self.remaining = 0  # bytes of the current member still to come (with padding)
        self.member = ""
        self.size = 0
        self.kept: dict[str, bytes] = {}
        self.ended = False
        self.files = 0

    def feed(self, chunk: bytes) -> None:
        self.buf += chunk
        while True:
            if self.remaining:
                take = min(self.remaining, len(self.buf))
                if self.member in self.KEEP:
                    self.kept[self.member] = (self.kept.get(self.member, b"") + self.buf[:take])[-(1 << 20):]
                self.buf = self.buf[take:]
                self.remaining -= take
                if self.remaining:
                    return
                continue
            if len(self.buf) < 512:
                return
            header, self.buf = self.buf[:512], self.buf[512:]
            if header == b"\0" * 512:
                self.ended = True
                continue
            self.member = header[:100].rstrip(b"\0").decode("utf-8", "replace")
            self.size = int(header[124:136].rstrip(b"\0 ").decode() or "0", 8)
            self.files += 1
            self.remaining = (self.size + 511) // 512 * 512

    def result(self) -> str | None:
        if not self.ended or self.remaining:
            return "the tar stream is cut short"
        missing = [m for m in self.KEEP if m not in self.kept]
        return "the base backup has no %s" % " and no ".join(missing) if missing else None

    def stats(self) -> dict[str, t.Any]:
        label = self.kept.get("backup_label", b"").decode("utf-8", "replace")
        out: dict[str, t.Any] = {"files": self.files}
        found = re.search(r"START WAL LOCATION: ([0-9A-F]+/[0-9A-F]+) \(file ([0-9A-F]{24})\)", label)
        if found:
            out["start_lsn"], out["start_segment"] = found.group(1), found.group(2)
        found = re.search(r"START TIME: (.+)", label)
        if found:
            out["start_time"] = found.group(1).strip()
        found = re.search(r"START TIMELINE: (\d+)", label)
        if found:
            out["timeline"] = int(found.group(1))
        manifest = self.kept.get("backup_manifest", b"").decode("utf-8", "replace")
        ranges = re.findall(r'"Timeline": (\d+), "Start-LSN": "([0-9A-F/]+)", "End-LSN": "([0-9A-F/]+)"', manifest)
        if ranges:
            out["end_lsn"] = ranges[-1][2]
        return out


class BaseProducer:
    """``pg_basebackup`` as the core writer's source: one tar on stdout, WAL from the archive."""

    def __init__(self, conn: pg.Connection, label: str, rate: str = "") -> None:
        self.conn = conn
        self.label = label
        self.rate = rate

    def start(self) -> Source:
        args = ["-D", "-", "-F", "t", "-X", "none", "-c", "fast", "--manifest-checksums=SHA256", "-l", self.label, "--no-password"]
        if self.rate:
            args += ["-r", self.rate]
        return self.conn.command("pg_basebackup", args)

    def finish(self) -> dict[str, t.Any]:
        return {}

    def close(self) -> None:
        return None


# --- the WAL archive ------------------------------------------------------------------------

def segments(directory: str) -> list[tuple[int, int, str, float]]:
    """Archived segments: (timeline, segment number, name, mtime), in order."""
    found = []
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    for name in names:
        if not name.endswith(".gz") or name.startswith("."):
            continue
        m = SEGMENT_RE.match(name[:-3])
        if not m:
            continue
        tli, log, seg = (int(g, 16) for g in m.groups())
        segno = log * (0x100000000 // SEGMENT_SIZE) + seg
        found.append((tli, segno, name[:-3], os.path.getmtime(os.path.join(directory, name))))
    return sorted(found)


def gaps(found: t.Sequence[tuple[int, int, str, float]]) -> list[str]:
    """Missing segment numbers inside the archived range (a timeline switch is no gap)."""
    out = []
    seen = sorted({segno for _tli, segno, _n, _m in found})
    for before, after in zip(seen, seen[1:]):
        if after > before + 1:
            out.append("segments %d to %d (%s) are missing" % (before + 1, after - 1, format_lsn((before + 1) * SEGMENT_SIZE)))
    return out


def start_segno(entry: Entry) -> int | None:
    lsn = ((entry.manifest or {}).get("source") or {}).get("start_lsn")
    return parse_lsn(lsn) // SEGMENT_SIZE if lsn else None


EVENTS = ".cclite-wal-events.log"


def archive_events(directory: str, newest: float | None, keep: int = 20) -> tuple[list[str], list[str]]:
    """The archive command's last events (failures, interrupted attempts), and those since the
    newest stored segment: an archive that is failing now."""
    try:
        with open(os.path.join(directory, EVENTS), encoding="utf-8", errors="replace") as handle:
            lines = [line.rstrip("\n") for line in handle.readlines()[-keep:]]
    except FileNotFoundError:
        return [], []
    recent = []
    for line in lines:
        try:
            when = datetime.datetime.fromisoformat(line.split(" ", 1)[0]).timestamp()
        except ValueError:
            continue
        if newest is None or when > newest:
            recent.append(line)
    return lines, recent


def archive_info(root: str, now: float | None = None) -> dict[str, t.Any]:
    """The recoverable window, the recovery point and the gaps, for list, verify and reports."""
    now = time.time() if now is None else now
    bases = [e for e in base_catalog(root).entries() if not e.manifest_error]
    found = segments(wal_dir(root))
    oldest = bases[-1] if bases else None
    first = start_segno(oldest) if oldest else None
    needed = [s for s in found if first is None or s[1] >= first]
    newest = found[-1] if found else None
    problems = gaps(needed)
    events, failing = archive_events(wal_dir(root), newest[3] if newest else None)
    if oldest is not None and first is not None and not any(s[1] == first for s in found):
        problems.insert(0, "the oldest base backup %s needs segment %d, which is not archived" % (oldest.name, first))
    return {
        "base_backups": [dict(e.as_dict(), **{k: (e.manifest or {}).get("source", {}).get(k) for k in ("start_lsn", "end_lsn", "timeline")})
                         for e in bases],
        "segments": len(found),
        "newest_segment": newest[2] if newest else None,
        "newest_segment_time": datetime.datetime.fromtimestamp(newest[3], datetime.timezone.utc).isoformat() if newest else None,
        "recovery_point_age_seconds": round(now - newest[3], 1) if newest else None,
        "window": {
            "from": oldest.created.isoformat() if oldest else None,
            "to": datetime.datetime.fromtimestamp(newest[3], datetime.timezone.utc).isoformat() if newest else None,
        },
        "gaps": problems,
        "events": events,
        "failing": failing,
    }


def prune_wal(root: str, keep_from: int | None, check_mode: bool = False) -> list[str]:
    """Delete archived segments older than ``keep_from`` (the oldest kept base backup's first
    segment); never a timeline history file, never anything when no base backup is kept."""
    if keep_from is None:
        return []
    directory = wal_dir(root)
    removed = []
    for _tli, segno, name, _mtime in segments(directory):
        if segno >= keep_from:
            continue
        removed.append(name)
        if not check_mode:
            for suffix in (".gz", ".sha256"):
                try:
                    os.unlink(os.path.join(directory, name + suffix))
                except FileNotFoundError:
                    pass
    return removed


# --- the restore engine ---------------------------------------------------------------------

class Target_:  # pylint: disable=invalid-name
    """The recovery target: kind and value, and the settings that say it to PostgreSQL."""

    def __init__(self, kind: str, value: str) -> None:
        if kind not in TARGET_KINDS:
            raise ConfigError("unknown recovery target %r: use time, lsn, name or latest" % kind)
        if kind != "latest" and not value:
            raise ConfigError("restore_target_%s is empty: give the %s to recover to, or use latest" % (kind, kind))
        self.kind, self.value = kind, value
        self.time: datetime.datetime | None = None
        self.lsn: int | None = None
        if kind == "time":
            try:
                self.time = datetime.datetime.fromisoformat(value.strip().replace(" ", "T", 1))
            except ValueError as exc:
                raise ConfigError("restore_target_time %r is not 'YYYY-MM-DD HH:MM:SS[+TZ]'" % value) from exc
            if self.time.tzinfo is None:
                self.time = self.time.astimezone()  # the managed host's local time, as PostgreSQL would read it
        if kind == "lsn":
            self.lsn = parse_lsn(value)

    def settings(self) -> dict[str, str]:
        if self.kind == "latest":
            return {}
        name = {"time": "recovery_target_time", "lsn": "recovery_target_lsn", "name": "recovery_target_name"}[self.kind]
        value = self.time.isoformat(sep=" ") if self.time is not None else self.value
        return {name: value, "recovery_target_action": "promote", "recovery_target_inclusive": "on"}

    def admits(self, entry: Entry) -> bool:
        """Whether a base backup ends before the target (so recovery can reach it)."""
        source = (entry.manifest or {}).get("source") or {}
        if self.time is not None:
            return entry.created.astimezone() <= t.cast(datetime.datetime, self.time)
        if self.lsn is not None:
            end = source.get("end_lsn")
            return end is not None and parse_lsn(end) <= self.lsn
        return True

    def describe(self) -> str:
        return "latest (the end of the archive)" if self.kind == "latest" else "%s %s" % (self.kind, self.value)


# The leftovers of killed restores ($1: the live data directory, $2: pg_ctl); prints each removed.
# A postmaster.pid is trusted only when its process runs on that directory (a stale file's PID may
# belong to another process by now).
LEFTOVERS = r"""
for d in "$1".pitr-[0-9]*; do
  [ -d "$d" ] || continue
  stamp=${d#"$1".pitr-}
  case $stamp in *[!0-9]*) continue ;; esac
  pid=$(head -n 1 "$d/postmaster.pid" 2>/dev/null)
  case $pid in ''|*[!0-9]*) ;; *)
    if tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$d"; then
      "$2" -D "$d" -m immediate -w -t 60 stop > /dev/null 2>&1 || kill -KILL "$pid"
    fi ;;
  esac
  rm -rf "$d" "$d.log" "/tmp/cclite-pitr-$stamp" && echo "$d"
done
"""


def quoted(value: str) -> str:
    return "'%s'" % value.replace("'", "''")


class Server:
    """The live server's data directory and how to stop and start it, here or in its container."""

    def __init__(self, conn: pg.Connection, os_user: str, data_directory: str, config_file: str, bin_dir: str) -> None:
        self.conn = conn
        self.os_user = os_user
        self.data = data_directory.rstrip("/")
        self.config_file = config_file
        self.bin_dir = bin_dir
        self.files = Target(container=conn.container, container_user=os_user) if conn.mode == "docker" else Target(run_as=os_user)

    def tool(self, name: str) -> str:
        return os.path.join(self.bin_dir, name) if self.bin_dir else name

    def sh(self, argv: t.Sequence[str], stage: str = "", check: bool = True, stdin: bytes | None = None, timeout: float | None = None) -> str:
        res = run(self.files.command(list(argv), stage=stage or os.path.basename(argv[0])), stdin=stdin, timeout=timeout, check=check)
        return res.stdout.decode("utf-8", "replace") + ("" if res.rc == 0 else "\n" + res.stderr)

    def docker(self, args: t.Sequence[str], stage: str) -> str:
        res = run(Command(tuple([self.files.docker_bin] + list(args)), stage=stage), timeout=600)
        return res.stdout.decode("utf-8", "replace").strip()

    def stop(self) -> None:
        if self.conn.mode == "docker":
            self.docker(["stop", "-t", "300", self.conn.container], "docker stop")
        else:
            self.sh([self.tool("pg_ctl"), "-D", self.data, "-m", "fast", "-w", "-t", "300", "stop"], "pg_ctl stop")

    def start(self) -> None:
        if self.conn.mode == "docker":
            self.docker(["start", self.conn.container], "docker start")
        else:
            debian = re.match(r"^/etc/postgresql/([^/]+)/([^/]+)/postgresql\.conf$", self.config_file or "")
            if debian:
                self.sh(["pg_ctlcluster", debian.group(1), debian.group(2), "start"], "pg_ctlcluster start")
            else:
                self.sh([self.tool("pg_ctl"), "-D", self.data, "-w", "-t", "300", "-l", self.data + ".log", "start"], "pg_ctl start")
        deadline = time.time() + 300
        while time.time() < deadline:
            where = ["-p", str(self.conn.login_port)] + (["-h", self.conn.login_host] if self.conn.login_host else [])
            if run(self.files.command([self.tool("pg_isready"), "-q"] + where, stage="pg_isready"), check=False, timeout=30).rc == 0:
                return
            time.sleep(1)
        raise StageError("the server did not accept connections within 300 seconds of starting", stage="start")

    def rename(self, pairs: t.Sequence[tuple[str, str]]) -> None:
        """Rename directories while the server is down (in docker mode through a throwaway
        container sharing the stopped container's volumes, as the server's own user)."""
        for old, new in pairs:
            if self.conn.mode == "docker":
                image = self.docker(["inspect", "-f", "{{.Config.Image}}", self.conn.container], "docker inspect")
                self.docker(["run", "--rm", "--network", "none", "--volumes-from", self.conn.container, "--user", "root",
                             "--entrypoint", "mv", image, "-T", old, new], "mv")
            else:
                run(Command(("mv", "-T", old, new), stage="mv"))


class PitrRestore:
    """The engine of a point-in-time restore for ``_restore.Flow`` (see the module docstring)."""

    store = "postgresql"
    staged = True
    keeps_previous = True
    checks_while_loading = False  # the base backup is read whole before any change

    def __init__(self, server: Server, target: Target_, root: str, settings: str, stamp: str) -> None:
        self.server = server
        self.target = target
        self.root = root
        self.settings = settings  # the cclite_wal.py settings file, as the server sees it
        self.new = "%s.pitr-%s" % (server.data, stamp)
        self.old = "%s.pre-pitr-%s" % (server.data, stamp)
        self.socket = "/tmp/cclite-pitr-%s" % stamp
        self.prepared = False
        self.temp_running = False
        self.swapped = False
        self.result: dict[str, t.Any] = {"target": target.describe(), "data_directory": server.data, "previous_data_directory": None,
                                         "reached_lsn": None, "timeline": None, "databases": None,
                                         "leftovers_removed": []}

    # plan / choose ------------------------------------------------------------------------

    def plan(self) -> _restore.Plan:
        return _restore.Plan("the PostgreSQL data directory %s (%s)" % (self.server.data, self.server.files.describe()), True, self.result)

    def content(self) -> TarScan:
        return TarScan()

    def accept(self, entry: Entry, check: t.Any) -> str:
        if not self.target.admits(entry):
            raise ConfigError("the base backup %s ends after the target %s: choose an older base backup or a later target"
                              % (entry.name, self.target.describe()))
        return ", then replay the WAL archive to %s" % self.target.describe()

    def safety_backup(self, spec: _restore.RestoreSpec) -> dict[str, t.Any]:
        return {}  # the live data directory itself is kept (keeps_previous)

    # build the new data directory and recover it -------------------------------------------

    def psql(self, sql: str) -> list[str]:
        """A statement on the temporary server, as the live server's login (its pg_hba may ask a password)."""
        conn = self.server.conn
        env = {k: v for k, v in conn.env("postgres").items() if k in ("PGUSER", "PGPASSWORD", "PGCONNECT_TIMEOUT")}
        cmd = self.server.files.command([self.server.tool("psql"), "-h", self.socket, "-p", "5499", "-d", "postgres"] + pg.psql_args()
                                        + ["-c", sql], env, secret_env={"PGPASSWORD"}, stage="psql")
        out = run(cmd, timeout=600).stdout.decode("utf-8", "replace")
        return [line for line in out.splitlines() if line]

    def prepare(self, entry: Entry) -> None:
        s = self.server
        self.prepared = True
        self.result["leftovers_removed"] = self.clear_leftovers()
        s.sh(["mkdir", "-m", "0700", "-p", self.new, self.socket], "mkdir")
        cmd = s.files.command(["tar", "-x", "-C", self.new], stage="tar")
        with start(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL) as child:
            try:
                for chunk in ArtifactReader(entry.path).chunks():
                    child.stdin.write(chunk)
                child.stdin.close()
            except BrokenPipeError:
                pass
            child.wait()
            child.check()
        s.sh([s.tool("pg_verifybackup"), "-n", self.new], "pg_verifybackup")
        wal = "python3 %s restore %%f %%p" % os.path.join(os.path.dirname(self.settings), ".cclite-wal.py")
        lines = ["restore_command = %s" % quoted(wal)] + ["%s = %s" % (k, quoted(v)) for k, v in self.target.settings().items()]
        s.sh(["sh", "-c", 'cat >> "$1"/postgresql.auto.conf && : > "$1"/recovery.signal', "sh", self.new], "write recovery settings",
             stdin=("\n# cclite.backup point-in-time recovery (reset once recovered)\n" + "\n".join(lines) + "\n").encode())
        opts = ["-c", "port=5499", "-c", "listen_addresses=", "-c", "unix_socket_directories=%s" % self.socket,
                "-c", "archive_mode=off", "-c", "external_pid_file=", "-c", "cluster_name=cclite-pitr", "-c", "data_directory=%s" % self.new]
        if s.config_file and not s.config_file.startswith(s.data + "/"):
            opts += ["-c", "config_file=%s" % s.config_file]
        s.sh([s.tool("pg_ctl"), "-D", self.new, "-l", self.new + ".log", "-o", " ".join(opts), "start"], "pg_ctl start")
        self.temp_running = True
        self._await_promotion()
        self.result["databases"] = self.psql("SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1")
        self.result["reached_lsn"] = self.psql("SELECT pg_current_wal_lsn()")[0]
        self.result["timeline"] = int(self.psql("SELECT timeline_id FROM pg_control_checkpoint()")[0])
        self.psql("ALTER SYSTEM RESET restore_command")
        for name in ("recovery_target_time", "recovery_target_lsn", "recovery_target_name", "recovery_target_action",
                     "recovery_target_inclusive"):
            self.psql("ALTER SYSTEM RESET %s" % name)
        self.psql("CHECKPOINT")
        s.sh([s.tool("pg_ctl"), "-D", self.new, "-m", "fast", "-w", "-t", "300", "stop"], "pg_ctl stop")
        self.temp_running = False

    def clear_leftovers(self) -> list[str]:
        """The new data directories of restores that were killed, with the recovery server a
        killed run leaves running: that server stopped (when its ``postmaster.pid`` names a live
        process started on that directory), the directory, its log and its socket folder removed.
        The store lock is held, so none of them belongs to a restore still running."""
        out = self.server.sh(["sh", "-c", LEFTOVERS, "sh", self.server.data, self.server.tool("pg_ctl")], "remove leftovers")
        return [line for line in out.splitlines() if line.startswith(self.server.data + ".pitr-")]

    def _log_tail(self) -> str:
        out = self.server.sh(["tail", "-n", "5", self.new + ".log"], "tail", check=False)
        return " | ".join(line.strip() for line in out.splitlines() if line.strip())

    def _await_promotion(self, timeout: float = 3600) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            state = run(self.server.files.command([self.server.tool("pg_ctl"), "-D", self.new, "status"], stage="pg_ctl status"), check=False)
            if state.rc != 0:
                self.temp_running = False
                raise StageError("recovery stopped before it reached %s: %s" % (self.target.describe(), self._log_tail()), stage="recovery")
            try:
                if self.psql("SELECT pg_is_in_recovery()") == ["f"]:
                    return
            except BackupError as exc:
                if "authentication" in exc.msg or "password" in exc.msg:
                    raise StageError("cannot log in to the recovering server: %s" % exc.msg, stage="recovery") from exc
                # otherwise it is not accepting connections yet
            time.sleep(1)
        raise StageError("recovery did not finish within %d seconds" % timeout, stage="recovery")

    def measure(self, entry: Entry) -> list[_restore.Count] | None:
        return None  # the restored state is a point in time, not the backup's: there are no counts to hold it to

    # swap, finish, undo ----------------------------------------------------------------------

    def swap(self, entry: Entry) -> _restore.RollbackPoint | None:
        s = self.server
        s.stop()
        self.swapped = True
        s.rename([(s.data, self.old), (self.new, s.data)])
        self.result["previous_data_directory"] = self.old
        history = "%08X.history" % self.result["timeline"]
        s.start()
        # the temporary server did not archive (archive_mode off): the new timeline's history
        # goes to the archive now, so a later recovery can follow it
        s.sh(["sh", "-c", 'cd "$1"/pg_wal && python3 "$2" archive "$3" "$3"', "sh", s.data,
              os.path.join(os.path.dirname(self.settings), ".cclite-wal.py"), history], "archive the timeline history")
        return _restore.RollbackPoint(self.old, "stop the server, move %s aside and %s back to %s, start it" % (s.data, self.old, s.data))

    def finish(self, keep: bool) -> None:
        if not keep:
            self.server.sh(["rm", "-rf", self.old, self.new + ".log", self.socket], "rm")
            self.result["previous_data_directory"] = None

    def undo(self, swapped: bool) -> str:
        s = self.server
        if self.temp_running:
            s.sh([s.tool("pg_ctl"), "-D", self.new, "-m", "immediate", "-w", "stop"], "pg_ctl stop", check=False)
        if self.swapped:
            try:
                s.stop()
            except BackupError:
                pass
            s.rename([(s.data, self.new), (self.old, s.data)])
            s.start()
            self.result["previous_data_directory"] = None
            return "the old data directory is back in place and the server runs on it (the recovered one is %s)" % self.new
        if self.prepared:
            s.sh(["rm", "-rf", self.new, self.socket], "rm", check=False)
        return ""

    def summary(self) -> str:
        return "recovered to %s: LSN %s on timeline %s" % (self.target.describe(), self.result["reached_lsn"], self.result["timeline"])


def choose_base(catalog: Catalog, target: Target_) -> str:
    """The newest base backup that ends before the target."""
    for entry in catalog.entries():
        if not entry.manifest_error and target.admits(entry):
            return entry.name
    raise ConfigError("no base backup in %s ends before %s: the recoverable window starts with the oldest base backup"
                      % (catalog.directory, target.describe()))


def server_paths(conn: pg.Connection) -> tuple[str, str, str]:
    """The live server's data directory, config file and major version."""
    rows = pg.query(conn, "SELECT current_setting('data_directory'), current_setting('config_file'), current_setting('server_version_num')")
    data, config, version = rows[0].split("|")
    return data, config, str(int(version) // 10000)


def restore(spec: _restore.RestoreSpec, engine: PitrRestore, check_mode: bool) -> dict[str, t.Any]:
    out = _restore.restore(spec, engine, check_mode)
    out["target"] = engine.target.describe()
    return out


def configure_archiving(server: Server, wal: str, restart: bool) -> dict[str, t.Any]:
    """Point the server's archive_command at the shipped script (ALTER SYSTEM); archive_mode
    needs a restart, made only with ``restart``."""
    conn = server.conn
    probe = server.sh(["sh", "-c", 'test -w "$1" && test -r "$1"/.cclite-wal.py && test -r "$1"/.cclite-wal.json && echo ok', "sh", wal],
                      "check the WAL archive", check=False)
    if "ok" not in probe:
        where = "the container %s" % conn.container if conn.mode == "docker" else "this host"
        raise ConfigError(
            "the server's user %s cannot write %s or read the archive script there on %s: %s" % (
                server.os_user, wal, where,
                "start the container with -v %s:%s (the same path inside), as docs/pitr.md shows" % (wal, wal)
                if conn.mode == "docker" else "check the directory's owner"))
    command = "python3 %s archive %%p %%f" % os.path.join(wal, ".cclite-wal.py")
    rows = pg.query(conn, "SELECT name || '=' || setting || '=' || pending_restart FROM pg_settings "
                          "WHERE name IN ('archive_mode', 'archive_command', 'wal_level') ORDER BY name")
    now = {r.split("=", 2)[0]: r.split("=", 2)[1:] for r in rows}
    changed = []
    if now.get("wal_level", ["", ""])[0] == "minimal":
        pg.query(conn, "ALTER SYSTEM SET wal_level = replica")
        changed.append("wal_level")
    if now.get("archive_command", [""])[0] != command:
        pg.query(conn, "ALTER SYSTEM SET archive_command = %s" % quoted(command))
        changed.append("archive_command")
    if now.get("archive_mode", [""])[0] != "on":
        pg.query(conn, "ALTER SYSTEM SET archive_mode = on")
        changed.append("archive_mode")
    pg.query(conn, "SELECT pg_reload_conf()")
    pending = [r.split("=", 2)[0] for r in pg.query(conn, "SELECT name || '=' FROM pg_settings WHERE pending_restart")]
    needs = bool(set(pending) & {"archive_mode", "wal_level"}) or ("archive_mode" in changed or "wal_level" in changed)
    restarted = False
    if needs and restart:
        server.stop()
        server.start()
        restarted = True
    state = pg.query(conn, "SELECT archived_count || '|' || failed_count || '|' || coalesce(last_archived_wal, '') || '|' || "
                           "coalesce(last_failed_wal, '') || '|' || coalesce(extract(epoch FROM last_archived_time)::bigint::text, '') || '|' || "
                           "coalesce(extract(epoch FROM last_failed_time)::bigint::text, '') FROM pg_stat_archiver")[0].split("|")
    problems = []
    if state[5] and (not state[4] or int(state[5]) > int(state[4])):
        problems.append("WAL archiving is failing: %s failed attempt(s), the last for segment %s; the server keeps the WAL "
                        "and retries (its log says why)" % (state[1], state[3]))
    return {
        "problems": problems,
        "changed": bool(changed) or restarted,
        "settings_changed": changed,
        "archive_command": command,
        "restart_needed": needs and not restarted,
        "restarted": restarted,
        "archiver": {"archived_count": int(state[0]), "failed_count": int(state[1]), "last_archived_wal": state[2] or None,
                     "last_failed_wal": state[3] or None, "last_archived_time": int(state[4]) if state[4] else None,
                     "last_failed_time": int(state[5]) if state[5] else None},
    }
