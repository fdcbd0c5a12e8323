# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Redis' steps of the shared restore flow: an RDB put in place (AOF handled), or a logical load."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import tempfile
import time
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core import _restore
from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import ArtifactReader
from ansible_collections.cclite.backup.plugins.module_utils._core._catalog import Entry
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import BackupError, ConfigError, RestoreError, StageError
from ansible_collections.cclite.backup.plugins.module_utils._core._lock import process_alive
from ansible_collections.cclite.backup.plugins.module_utils._core._process import Command, run
from ansible_collections.cclite.backup.plugins.module_utils._engines.redis import _client as rd
from ansible_collections.cclite.backup.plugins.module_utils._engines.redis import _compare, _logical, _rdb, _snapshot
from ansible_collections.cclite.backup.plugins.module_utils._engines.redis._engine import Settings, connect, content_factory, make, totals


@dataclasses.dataclass
class RestoreRequest:
    conn: rd.Connection
    spec: _restore.RestoreSpec
    method: str = "rdb"
    service: str = "redis-server"
    service_manager: str = "auto"
    start_timeout: float = 300.0
    stop_timeout: float = 120.0
    replace_all: bool = True
    settings: Settings = dataclasses.field(default_factory=Settings)
    # what stops and starts the server instead of the service manager (a drill's scratch
    # redis-server: ``stop()`` and ``start()``, the latter returning once it loaded)
    control: t.Any = None


@dataclasses.dataclass
class Files:
    """Where the server keeps its data (paths as the server sees them) and how it persists."""

    directory: str
    rdb: str
    owner: tuple[int, int]
    mode: int
    aof: bool = False
    aof_dir: str = ""  # Redis 7 multi-part AOF directory; empty with a single-file AOF
    aof_file: str = ""  # appendfilename
    aof_existing: list[str] = dataclasses.field(default_factory=list)
    aof_seq: int = 0
    aof_owner: tuple[int, int] = (0, 0)
    current_rdb_version: int | None = None


MANIFEST_LINE = re.compile(r"^file (\S+) seq (\d+) type ([bhi])$")


def aof_manifest(appendfilename: str, seq: int) -> tuple[str, str, str]:
    """Names of a new base (our RDB), an empty incr file and the manifest that lists them."""
    base = "%s.%d.base.rdb" % (appendfilename, seq)
    incr = "%s.%d.incr.aof" % (appendfilename, seq)
    text = "file %s seq %d type b\nfile %s seq %d type i\n" % (base, seq, incr, seq)
    return base, incr, text


def highest_seq(manifest_text: str) -> int:
    seqs = [int(m.group(2)) for m in (MANIFEST_LINE.match(line.strip()) for line in manifest_text.splitlines()) if m]
    return max(seqs, default=0)


class Restore:
    """The Redis steps of the shared restore flow (``_restore``); the safety backup before any
    change is the rollback point.

    RDB: accept (the RDB format this Redis reads) -> prepare: stage the new files beside the
    old -> swap: stop, move them into place, start, wait for the load -> measure: key counts
    -> finish: remove the replaced AOF files. Logical: swap is FLUSHALL and RESTORE of every
    key; measure compares with what the dump held.
    """

    staged = False
    keeps_previous = False
    checks_while_loading = False  # it loads in place: the artifact is read whole before any change

    def __init__(self, req: RestoreRequest) -> None:
        self.req = req
        self.conn = req.conn
        self.store = req.spec.catalog.layout.store
        self.actions: list[str] = []
        self.session: rd.Session | None = None
        self.files_: Files | None = None
        self.checker: tuple[Command | None, str] | None = None
        self.work = ""
        self.staging: dict[str, str] = {}
        self.state = ""  # what a failed swap left, in words
        self.stats: dict[str, t.Any] = {}
        self.result: dict[str, t.Any] = {}

    def _docker(self, *args: str, timeout: float | None = 120) -> bytes:
        target = self.conn.target()
        return run(Command((target.docker_bin,) + args, stage="docker"), timeout=timeout).stdout

    def _there(self, argv: t.List[str]) -> str | None:
        """What a tool prints where the server's files are (its container, or this host); None when it fails."""
        result = run(self.conn.tool(argv, stage=argv[0]), check=False)
        return result.stdout.decode("utf-8", errors="replace") if result.rc == 0 else None

    def _stat(self, path: str) -> tuple[int, int, int] | None:
        """uid, gid and mode of a path where the server is; ``None`` when it does not exist."""
        found = self._there(["stat", "-c", "%u %g %a", path])
        return (int(found.split()[0]), int(found.split()[1]), int(found.split()[2], 8)) if found else None

    def files(self, session: rd.Session) -> Files:
        """The server's data files and their owner, found through CONFIG GET."""
        if not self.conn.is_local:
            raise ConfigError(
                "an RDB restore replaces the server's files, so it must run where they are (mode docker, or mode "
                "host on the Redis host); for a server elsewhere use method logical"
            )
        path = _snapshot.rdb_location(session)
        if path is None:
            raise ConfigError("the server refuses CONFIG GET dir/dbfilename: cannot find where to put the RDB")
        directory = os.path.dirname(path)
        existing = self._stat(path)
        found = existing or self._stat(directory)
        if found is None:
            raise ConfigError("Redis' dir %s does not exist %s" % (directory, "in %s" % self.conn.container if self.conn.mode == "docker" else "on this host"))
        mode = existing[2] if existing else 0o660  # a new dump.rdb: as Redis' service umask (007) makes it
        files = Files(directory, path, (found[0], found[1]), mode & 0o666)
        files.aof = session.config_get("appendonly") == "yes"
        files.aof_file = session.config_get("appendfilename") or "appendonly.aof"
        dirname = session.config_get("appenddirname")
        if files.aof:
            if dirname:  # Redis 7: a directory with a manifest, base and incr files
                files.aof_dir = os.path.join(directory, dirname)
                files.aof_existing = sorted((self._there(["ls", "-1A", files.aof_dir]) or "").split())
                files.aof_seq = highest_seq(self._there(["cat", os.path.join(files.aof_dir, files.aof_file + ".manifest")]) or "")
                aof_stat = self._stat(files.aof_dir)
                files.aof_owner = (aof_stat[0], aof_stat[1]) if aof_stat else files.owner
            else:
                files.aof_owner = files.owner
        if existing is not None:
            try:
                files.current_rdb_version = rd.rdb_version(_snapshot.read_header(self.conn, path))
            except (OSError, StageError):
                files.current_rdb_version = None
        return files

    def _service_command(self, action: str) -> Command:
        manager = self.req.service_manager
        if manager == "auto":
            if os.path.isdir("/run/systemd/system") and shutil.which("systemctl"):
                manager = "systemd"
            elif shutil.which("service"):
                manager = "sysv"
            else:
                raise ConfigError("no service manager found (systemctl or service): set service_manager")
        if not self.req.service:
            raise ConfigError("a host-mode RDB restore stops and starts Redis: set the option service")
        if manager == "systemd":
            return Command(("systemctl", action, self.req.service), stage="systemctl")
        if manager == "sysv":
            return Command(("service", self.req.service, action), stage="service")
        raise ConfigError("unknown service_manager %r: use auto, systemd or sysv" % manager)

    # the steps ---------------------------------------------------------------------------

    def run(self, check_mode: bool) -> dict[str, t.Any]:
        try:
            return _restore.restore(self.req.spec, self, check_mode)
        finally:
            if self.session is not None:
                self.session.close()

    def plan(self) -> _restore.Plan:
        self.session = connect(self.conn, "restore into %s (it must be running)" % self.conn.describe())
        self.facts = rd.server_facts(self.session)
        self.result = {
            "method": self.req.method, "server_version": self.facts["redis_version"], "databases": None, "aof": None,
            "actions": self.actions,
        }
        if self.req.method == "rdb":
            self.files_ = self.files(self.session)
            if self.conn.mode == "host" and self.req.control is None:
                self._service_command("stop")  # fails now, not after the safety backup
            self.result["aof"] = {"enabled": self.files_.aof}
            self.checker = _rdb.checker_command(self.conn)
        return _restore.Plan(self.conn.describe(), True, self.result)

    def content(self) -> t.Any:
        return _rdb.RdbCheck(self.checker) if self.checker is not None else _logical.LogicalCheck()

    def accept(self, entry: Entry, check: t.Any) -> str:
        """An RDB in a format newer than this Redis reads (its current RDB's, or its release's) is refused."""
        if self.files_ is not None:
            readable = max([v for v in (self.files_.current_rdb_version, rd.rdb_format_of(self.facts["redis_version"])) if v], default=0)
            if readable and check.version and check.version > readable:
                raise RestoreError(
                    "refusing to restore %s, nothing was changed: its RDB format %d is newer than the %d this "
                    "Redis %s writes, so it could not load it" % (entry.name, check.version, readable, self.facts["redis_version"])
                )
            self.checked = check
        return ""

    def safety_backup(self, spec: _restore.RestoreSpec) -> dict[str, t.Any]:
        req = self.req
        session = t.cast(rd.Session, self.session)
        backup = spec.safety_spec(req.method, content_factory(self.conn, req.method, tool=False))
        transfer, path = ("logical", None) if req.method == "logical" else ("file", _snapshot.rdb_location(session))
        settings = dataclasses.replace(req.settings, method=req.method, transfer="file")
        artifact = make(session, self.conn, backup, settings, self.facts, transfer, path)["artifact"]
        self.actions.append("saved the current data in %s" % artifact["path"])
        return artifact

    def prepare(self, entry: Entry) -> None:
        if self.files_ is not None:
            self.work = tempfile.mkdtemp(dir=self.req.spec.catalog.directory, prefix=".restore-")
            self.staging = self._stage(entry, self.files_, self.work)

    def swap(self, entry: Entry) -> None:
        if self.files_ is not None:
            t.cast(rd.Session, self.session).close()
            try:
                self.session = self._restore_rdb(entry, self.files_)
            finally:
                shutil.rmtree(self.work, ignore_errors=True)
        else:
            self._restore_logical(entry, t.cast(rd.Session, self.session))
        self.result["databases"] = rd.parse_keyspace(t.cast(rd.Session, self.session).info("keyspace"))

    def measure(self, entry: Entry) -> list[_restore.Count]:
        actual = self.result["databases"]
        if self.files_ is None:
            return _compare.database_counts(_logical.expected_after_load(self.stats), actual) if self.req.replace_all else []
        counts: list[_restore.Count] = []
        source = (entry.manifest or {}).get("source", {})
        if source.get("counts_exact") and source.get("databases") is not None:
            counts += _compare.database_counts(source["databases"], actual)
        checked = self.checked
        if checked.keys is not None:
            expires = checked.expires or 0
            counts.append(_restore.Count("Redis", "keys", totals(actual)[0], checked.keys, checked.keys - expires, "%d with a TTL" % expires))
        return counts

    def finish(self, keep: bool) -> None:
        if self.files_ is not None and self.files_.aof and self.files_.aof_dir:
            self.result["aof"]["removed"] = self._remove_old_aof(self.files_)

    def undo(self, swapped: bool) -> str:
        if self.work:
            shutil.rmtree(self.work, ignore_errors=True)
        for tmp in self.staging:
            if os.path.exists(tmp):
                os.unlink(tmp)
        self.staging = {}
        return self.state

    def summary(self) -> str:
        databases = self.result["databases"] or {}
        aof = (self.result.get("aof") or {}).get("action")
        return "%d keys in %d database(s)%s" % (totals(databases)[0], len(databases), "; %s" % aof if aof else "")

    # RDB -----------------------------------------------------------------------------------

    def _stage(self, entry: Entry, files: Files, work: str) -> dict[str, str]:
        """Write the new files before anything stops: decompressed RDB, and the AOF files.

        Host mode writes them as hidden files beside the ones they replace (one rename each
        later); docker mode writes them in ``work`` on this host, owned as the container's.
        """
        staged: dict[str, str] = {}
        host = self.conn.mode == "host"
        rdb_tmp = os.path.join(files.directory if host else work, ".%s.cclite-restore" % os.path.basename(files.rdb))
        reader = ArtifactReader(entry.path)
        with open(rdb_tmp, "wb") as out:
            for chunk in reader.chunks():
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        expected = (entry.manifest or {}).get("artifact", {}).get("sha256")
        if expected and reader.sha256 != expected:
            os.unlink(rdb_tmp)
            raise RestoreError("%s changed while it was being restored; nothing was changed" % entry.name)
        self._own(rdb_tmp, files.owner, files.mode)
        staged[rdb_tmp] = files.rdb
        if files.aof and files.aof_dir:
            seq = files.aof_seq + 1
            base, incr, manifest = aof_manifest(files.aof_file, seq)
            where = files.aof_dir if host else work
            base_tmp, incr_tmp, manifest_tmp = (os.path.join(where, ".%s.cclite-restore" % n) for n in (base, incr, files.aof_file + ".manifest"))
            if host:
                os.link(rdb_tmp, base_tmp)  # same data, same file system: no second copy
            else:
                shutil.copyfile(rdb_tmp, base_tmp)
            with open(incr_tmp, "wb"):
                pass
            with open(manifest_tmp, "w", encoding="utf-8") as handle:
                handle.write(manifest)
            for path in (base_tmp, incr_tmp, manifest_tmp):
                self._own(path, files.aof_owner, files.mode)
            staged[base_tmp] = os.path.join(files.aof_dir, base)
            staged[incr_tmp] = os.path.join(files.aof_dir, incr)
            staged[manifest_tmp] = os.path.join(files.aof_dir, files.aof_file + ".manifest")  # renamed last
        elif files.aof:  # before Redis 7: one AOF file, which may be a plain RDB ("RDB preamble")
            aof_tmp = os.path.join(files.directory if host else work, ".%s.cclite-restore" % files.aof_file)
            if host:
                os.link(rdb_tmp, aof_tmp)
            else:
                shutil.copyfile(rdb_tmp, aof_tmp)
            self._own(aof_tmp, files.aof_owner, files.mode)
            staged[aof_tmp] = os.path.join(files.directory, files.aof_file)
        return staged

    @staticmethod
    def _own(path: str, owner: tuple[int, int], mode: int) -> None:
        os.chmod(path, mode)
        if (os.stat(path).st_uid, os.stat(path).st_gid) != owner:
            try:
                os.chown(path, owner[0], owner[1])
            except PermissionError as exc:
                raise RestoreError(
                    "cannot give the new files Redis' owner %d:%d (run the restore as root: become: true); "
                    "nothing was changed" % owner
                ) from exc

    def _stop(self, facts: t.Mapping[str, t.Any]) -> None:
        req = self.req
        if req.control is not None:
            req.control.stop()
            self.actions.append("stopped the scratch redis-server")
            return
        if self.conn.mode == "docker":
            self._docker("stop", "-t", str(int(req.stop_timeout)), self.conn.container, timeout=req.stop_timeout + 60)
            self.actions.append("stopped the container %s" % self.conn.container)
            return
        run(self._service_command("stop"), timeout=req.stop_timeout + 60)
        pid = facts.get("process_id") or 0
        deadline = time.monotonic() + req.stop_timeout
        while True:  # service managers may return before Redis has saved and exited
            gone = not (pid and process_alive(pid))
            if gone:
                try:
                    rd.Session(dataclasses.replace(self.conn, connect_timeout=1)).close()
                    gone = False
                except BackupError:
                    pass
            if gone:
                break
            if time.monotonic() > deadline:
                raise RestoreError(
                    "Redis (pid %s) still runs %g seconds after '%s'; nothing was replaced. Check that "
                    "the option service names the service that runs it" % (pid, req.stop_timeout, " ".join(self._service_command("stop").argv))
                )
            time.sleep(0.2)
        self.actions.append("stopped Redis (%s)" % " ".join(self._service_command("stop").argv))

    def _start(self) -> None:
        if self.req.control is not None:
            self.req.control.start()
            self.actions.append("started the scratch redis-server")
        elif self.conn.mode == "docker":
            self._docker("start", self.conn.container)
            self.actions.append("started the container %s" % self.conn.container)
        else:
            run(self._service_command("start"), timeout=self.req.start_timeout)
            self.actions.append("started Redis (%s)" % " ".join(self._service_command("start").argv))

    def _place(self, staged: t.Mapping[str, str]) -> None:
        for tmp, final in staged.items():
            if self.conn.mode == "docker":
                self._docker("cp", "-a", tmp, "%s:%s" % (self.conn.container, final), timeout=None)
            else:
                os.replace(tmp, final)
        if self.conn.mode == "host":
            for directory in {os.path.dirname(f) for f in staged.values()}:
                fd = os.open(directory, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)

    def _wait_loaded(self) -> rd.Session:
        deadline = time.monotonic() + self.req.start_timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                session = rd.Session(dataclasses.replace(self.conn, connect_timeout=2))
            except BackupError as exc:
                last = exc.msg
                time.sleep(0.3)
                continue
            try:
                p = session.info("persistence")
                if p.get("loading") == "0" and p.get("async_loading", "0") == "0":
                    return session
                last = "still loading (%s%% done)" % p.get("loading_loaded_perc", "?")
            except BackupError as exc:
                last = exc.msg
            session.close()
            time.sleep(0.3)
        raise RestoreError(
            "Redis did not come back within %g seconds after the restore (%s); see %s"
            % (self.req.start_timeout, last, "docker logs %s" % self.conn.container if self.conn.mode == "docker" else "the Redis log")
        )

    def _restore_rdb(self, entry: Entry, files: Files) -> rd.Session:
        self._stop(self.facts)
        try:
            self._place(self.staging)
        except BaseException as exc:
            self._start()
            raise RestoreError(
                "putting the RDB in place failed (%s); Redis was started again with the data it had"
                % (exc.msg if isinstance(exc, BackupError) else exc)
            ) from exc
        self.staging = {}
        self.state = "the backup's files are in place but Redis is not running"
        self.actions.append("put %s in place as %s" % (entry.name, files.rdb))
        if files.aof:
            self.result["aof"]["action"] = (
                "appendonly is yes, so Redis loads the AOF and ignores %s: installed the backup as the AOF "
                "base (%s) with a new manifest" % (os.path.basename(files.rdb), files.aof_dir or files.aof_file)
                if files.aof_dir
                else "appendonly is yes: replaced %s with the backup (an AOF may be a plain RDB)" % files.aof_file
            )
            self.actions.append(self.result["aof"]["action"])
        self._start()
        self.state = "the backup's files are in place and Redis runs, but it did not finish loading them"
        session = self._wait_loaded()
        self.state = ""
        self.actions.append("Redis loaded the data")
        return session

    def _remove_old_aof(self, files: Files) -> list[str]:
        """The replaced AOF files, now referenced by no manifest."""
        keep = set(aof_manifest(files.aof_file, files.aof_seq + 1)[:2]) | {files.aof_file + ".manifest"}
        old = [os.path.join(files.aof_dir, n) for n in files.aof_existing if n not in keep and not n.startswith(".")]
        if not old:
            return []
        if self.conn.mode == "docker":
            run(self.conn.tool(["rm", "-f", "--"] + old, stage="rm"))
        else:
            for path in old:
                if os.path.lexists(path):
                    os.unlink(path)
        self.actions.append("removed the replaced AOF files (%d)" % len(old))
        return old

    # logical -------------------------------------------------------------------------------

    def _restore_logical(self, entry: Entry, session: rd.Session) -> None:
        if self.req.replace_all:
            session.call("FLUSHALL", timeout=3600)
            self.state = "every key was deleted (FLUSHALL)"
            self.actions.append("deleted every key (FLUSHALL)")
        self.state = "the server holds part of the backup"
        self.stats = _logical.restore_logical(session, ArtifactReader(entry.path).chunks(), empty=self.req.replace_all)
        self.state = ""
        self.actions.append("restored %d keys (RESTORE ... ABSTTL)" % self.stats["keys"])
        self.result["duplicates"] = sum(self.stats["duplicates"].values())
