# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Redis backup and inspection on the shared flows of ``_ops`` (its restore steps: ``_restore``)."""

from __future__ import annotations

import dataclasses
import datetime
import os
import re
import tempfile
import time
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core import _adopt
from ansible_collections.cclite.backup.plugins.module_utils._core import _ops
from ansible_collections.cclite.backup.plugins.module_utils._core import _restore
from ansible_collections.cclite.backup.plugins.module_utils._engines.redis import _client as rd
from ansible_collections.cclite.backup.plugins.module_utils._engines.redis import _compare, _logical, _rdb, _scratch, _snapshot
from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import CHUNK, ArtifactReader, Source
from ansible_collections.cclite.backup.plugins.module_utils._core._catalog import REDIS, Catalog, Entry, Layout
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import BackupError, ConfigError, StageError
from ansible_collections.cclite.backup.plugins.module_utils._core._process import Command, run
from ansible_collections.cclite.backup.plugins.module_utils._core._verify import Report, Rules

# The logical method's files sit beside the RDBs: redis/redis_backup_YYYYMMDD_HHMMSS.keys.gz
LOGICAL = Layout("redis", "redis_backup", ".keys")
LAYOUTS = {"rdb": REDIS, "logical": LOGICAL}
SAVE_ATTEMPTS = 3


def catalog(root: str, method: str = "rdb", series: str = "") -> Catalog:
    if method not in LAYOUTS:
        raise ConfigError("unknown method %r: use rdb or logical" % method)
    return Catalog(root, LAYOUTS[method], series)


@dataclasses.dataclass(frozen=True)
class Settings:
    """How a backup is taken."""

    method: str = "rdb"
    transfer: str = "auto"  # auto | file | replication
    pause_ms: int = 1000
    sample_keys: int = 3
    bgsave_timeout: float = 3600.0


def content_factory(conn: rd.Connection, method: str, tool: bool = True) -> _ops.ContentFactory:
    """The content check of a method; redis-check-rdb's place is looked up once, when first needed.

    ``tool=False`` checks an RDB's structure only: for a backup's read-back, whose source went
    through redis-check-rdb while it was copied (:class:`RdbProducer`).
    """
    if method == "logical":
        return _logical.LogicalCheck
    if not tool:
        return lambda: _rdb.RdbCheck(None)
    found: list[tuple[Command | None, str]] = []

    def make() -> _rdb.RdbCheck:
        if not found:
            found.append(_rdb.checker_command(conn))
        return _rdb.RdbCheck(found[0])

    return make


def plan_transfer(session: rd.Session, conn: rd.Connection, requested: str) -> tuple[str, str | None]:
    """How the RDB gets here: ``("file", path)`` or ``("replication", None)``."""
    if requested not in ("auto", "file", "replication"):
        raise ConfigError("unknown rdb_transfer %r: use auto, file or replication" % requested)
    path = _snapshot.rdb_location(session) if conn.is_local else None
    if conn.mode == "docker":
        if requested == "replication":
            raise ConfigError("rdb_transfer replication runs redis-cli on the managed host: use mode host for it")
        if path is None:
            raise ConfigError(
                "the server refuses CONFIG GET dir/dbfilename, so its RDB cannot be found in %s; allow CONFIG for the "
                "backup user, or use method logical" % conn.container
            )
        return "file", path
    directory = os.path.dirname(path) if path else ""
    reachable = bool(path) and os.path.isdir(directory) and os.access(directory, os.R_OK | os.X_OK)
    if requested == "file":
        if not reachable:
            raise ConfigError(
                "rdb_transfer file needs the server's RDB on this host, but %s: use rdb_transfer auto or replication"
                % ("%s is not readable here" % directory if path else "the server is remote or refuses CONFIG GET dir")
            )
        return "file", path
    if requested == "replication" or not reachable:
        return "replication", None
    return "file", path


def totals(databases: t.Mapping[str, t.Mapping[str, int]]) -> tuple[int, int]:
    return sum(d.get("keys", 0) for d in databases.values()), sum(d.get("expires", 0) for d in databases.values())


class FollowLost(rd.RdbReplaced):
    """The RDB renamed into place is not the temp file read while Redis wrote it: take the
    backup again, copying the finished file."""


class RdbProducer:
    """BGSAVE (keys counted with writes paused at the fork), then the RDB file through the writer;
    or, for a server elsewhere, ``redis-cli --rdb`` to a temp file first.

    On the server's own host (mode host, transfer file), with ``follow``, the RDB is copied
    while the save writes it: the save child's temp file is read as it grows, into the
    compressor and into ``redis-check-rdb`` (reading stdin), until the save has ended; then
    the file renamed into place must be the one that was read (same inode), or the backup is
    taken again without following. The save and the compression then overlap instead of
    running one after the other.
    """

    def __init__(
        self, session: rd.Session, conn: rd.Connection, settings: Settings, facts: t.Mapping[str, t.Any],
        transfer: str, path: str | None, tmp_dir: str, follow: bool = True,
    ) -> None:
        self.follow = follow
        self.failed: BaseException | None = None  # what the copy in the writer's thread raised
        self.stream_check: _rdb.RdbCheck | None = None
        self.followed: tuple[tuple[int, int], tuple[int, int]] | None = None  # (read, renamed into place)
        self.session = session
        self.conn = conn
        self.settings = settings
        self.facts = facts
        self.transfer = transfer
        self.path = path
        self.tmp_dir = tmp_dir
        self.tmp: str | None = None
        self.header = b""
        self.snapshot: _snapshot.Snapshot | None = None
        self.check: _rdb.SourceCheck | None = None

    def start(self) -> Source:
        if self.transfer == "replication":
            return self._replicate()
        v7 = rd.version_tuple(self.facts["redis_version"]) >= (7,)
        path = t.cast(str, self.path)  # plan_transfer gives "file" a path
        follow = self.follow and self.conn.mode == "host"
        before = _snapshot.temp_rdbs(os.path.dirname(path)) if follow else set()
        self.snapshot = _snapshot.start_bgsave(
            self.session, self.conn, pause_ms=self.settings.pause_ms, sample_keys=self.settings.sample_keys,
            timeout=self.settings.bgsave_timeout, v7=v7,
        )
        handle = _snapshot.open_temp_rdb(self.session, os.path.dirname(path), before) if follow else None
        if handle is not None:
            return self._follow(handle, path)
        _snapshot.wait_bgsave(self.session, self.conn, self.snapshot, self.settings.bgsave_timeout)
        try:
            self.header = _snapshot.read_header(self.conn, path)
        except OSError as exc:
            raise StageError("cannot read %s: %s" % (path, exc.strerror or exc)) from exc
        self.check = _rdb.SourceCheck(self.conn, path, local=self.conn.mode == "host")
        if self.conn.mode == "docker":
            return self.conn.tool(["cat", path], stage="cat")
        return Command(("cat", path), stage="cat")

    def _follow(self, handle: t.Any, path: str) -> Source:
        """The copy while the save writes (class docstring), run by the writer in its thread."""
        checker = _rdb.checker_command(self.conn)
        self.stream_check = _rdb.RdbCheck(checker if checker[0] is not None else None)
        self.stream_check.begin()  # here: a child started in the writer's thread would die with it
        check, snap = self.stream_check, t.cast(_snapshot.Snapshot, self.snapshot)

        def source(sink: t.BinaryIO) -> None:
            def copy(most: int = -1) -> bool:
                """Up to ``most`` chunks of what is there (-1: all): the save is looked at in between."""
                moved = 0
                while moved != most:
                    data = handle.read(CHUNK)
                    if not data:
                        break
                    if len(self.header) < 9:
                        self.header = (self.header + data[:9])[:9]
                    check.feed(data)
                    sink.write(data)
                    moved += 1
                return moved > 0

            try:
                _snapshot.wait_bgsave(self.session, self.conn, snap, self.settings.bgsave_timeout, tick=lambda: copy(4))
                copy()  # what the save wrote after our last look
                read, renamed = os.fstat(handle.fileno()), os.stat(path)
                self.followed = ((read.st_dev, read.st_ino), (renamed.st_dev, renamed.st_ino))
            except BaseException as exc:
                self.failed = exc
                raise
            finally:
                handle.close()

        return source

    def _replicate(self) -> Source:
        databases = rd.parse_keyspace(self.session.info("keyspace"))
        started = time.monotonic()
        fd, self.tmp = tempfile.mkstemp(dir=self.tmp_dir, prefix=".redis-rdb-", suffix=".partial")
        os.close(fd)
        try:
            run(self.conn.cli(["--rdb", self.tmp], stage="redis-cli --rdb"), timeout=self.settings.bgsave_timeout)
        except StageError as exc:
            raise StageError(
                rd.explain("the RDB transfer over replication failed: %s" % exc.msg, self.conn)
                + "; the server must allow SYNC for this user (managed Redis often does not: use method logical)",
                stage="redis-cli --rdb",
            ) from exc
        with open(self.tmp, "rb") as handle:
            self.header = handle.read(9)
        self.check = _rdb.SourceCheck(self.conn, self.tmp, local=True)
        self.snapshot = _snapshot.Snapshot(
            None, databases, False, None, [],
            ["counted with INFO keyspace just before the transfer; the server kept changing, so the counts are approximate"],
            started, round(time.monotonic() - started, 3),
        )
        return Command(("cat", self.tmp), stage="cat")

    def finish(self) -> dict[str, t.Any]:
        snap = t.cast(_snapshot.Snapshot, self.snapshot)  # start() ran: make_backup finishes only what it started
        if self.transfer == "file" and snap.saves is not None:
            now = _snapshot.rdb_saves(self.session)
            if now != snap.saves:
                raise rd.RdbReplaced("another save (rdb_saves %s, ours %s) replaced the RDB while it was copied" % (now, snap.saves))
        if self.followed is not None and self.followed[0] != self.followed[1]:
            raise FollowLost("the RDB renamed into place is not the temp file read while Redis wrote it")
        version = rd.rdb_version(self.header)
        if version is None:
            raise StageError("the copied file is not an RDB (it starts with %r)" % self.header)
        keys, expires = totals(snap.databases)
        if self.stream_check is not None:
            problem = self.stream_check.result()
            checked = None if self.stream_check.structure_only else {
                "keys": self.stream_check.keys, "expires": self.stream_check.expires,
                "already_expired": self.stream_check.already_expired}
            checked = {k: v for k, v in checked.items() if v is not None} if checked is not None else None
        else:
            checked, problem = self.check.result(self.settings.bgsave_timeout) if self.check else (None, None)
        if problem:
            raise StageError("the RDB Redis wrote did not pass redis-check-rdb: %s" % problem, stage="redis-check-rdb")
        if checked is None:
            snap.notes.append("redis-check-rdb is not installed here: only the RDB's header and end marker were checked")
        elif snap.exact and checked.get("keys") != keys:
            raise rd.RdbReplaced(
                "the RDB holds %s keys but %d were counted at the fork: it is not the file of our save" % (checked.get("keys"), keys)
            )
        return {
            "method": "rdb",
            "transfer": self.transfer,
            "redis_version": self.facts["redis_version"],
            "rdb_version": version,
            "used_memory": self.facts["used_memory"],
            "aof_enabled": self.facts["aof_enabled"],
            "databases": snap.databases,
            "keys": keys,
            "expires": expires,
            "counts_exact": snap.exact,
            "writes_paused_ms": snap.paused_ms,
            "save_seconds": snap.seconds,
            "rdb_saves": snap.saves,
            "sample": snap.sample,
            "rdb_check": {"tool": "redis-check-rdb", **checked} if checked is not None else None,
            "notes": snap.notes,
        }

    def close(self) -> None:
        if self.check is not None:
            self.check.close()
        if self.stream_check is not None and self.stream_check.child is not None:
            self.stream_check.child.close()
        if self.tmp and os.path.exists(self.tmp):
            os.unlink(self.tmp)


LOGICAL_NOTE = (
    "a logical dump is not a point-in-time image: keys are read one batch at a time while the server keeps "
    "changing, so keys written, deleted or renamed during the dump may be missing, stale, or present twice"
)


class LogicalProducer:
    """SCAN + DUMP + expiry of every key into the logical format, from its own redis-cli session."""

    def __init__(self, conn: rd.Connection, facts: t.Mapping[str, t.Any]) -> None:
        self.conn = conn
        self.facts = facts
        self.stats: dict[str, t.Any] = {}

    def start(self) -> Source:
        header = {
            "redis_version": self.facts["redis_version"],
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        }

        def source(sink: t.BinaryIO) -> None:
            with rd.Session(self.conn, timeout=600) as session:
                databases = rd.parse_keyspace(session.info("keyspace"))
                self.stats = _logical.dump_logical(session, sink, list(databases), header)

        return source

    def finish(self) -> dict[str, t.Any]:
        keys, expires = totals(self.stats["databases"])
        return {
            "method": "logical",
            "format_version": _logical.LOGICAL_VERSION,
            "redis_version": self.facts["redis_version"],
            "rdb_version": self.stats["rdb_version"],
            "used_memory": self.facts["used_memory"],
            "databases": self.stats["databases"],
            "keys": keys,
            "expires": expires,
            "skipped": self.stats["skipped"],
            "counts_exact": False,
            "notes": [LOGICAL_NOTE],
        }

    def close(self) -> None:
        pass


def connect(conn: rd.Connection, what: str) -> rd.Session:
    try:
        return rd.Session(conn)
    except StageError as exc:
        raise StageError("cannot %s: %s" % (what, exc.msg), **exc.details) from exc


def versions(conn: rd.Connection, facts: t.Mapping[str, t.Any]) -> dict[str, str]:
    return {"server": facts["redis_version"], "tool": rd.cli_version(conn)}


@dataclasses.dataclass
class BackupRequest:
    conn: rd.Connection
    spec: _ops.BackupSpec
    settings: Settings = dataclasses.field(default_factory=Settings)


def make(
    session: rd.Session, conn: rd.Connection, spec: _ops.BackupSpec, settings: Settings,
    facts: t.Mapping[str, t.Any], transfer: str, path: str | None,
) -> dict[str, t.Any]:
    """One backup through the shared flow; a save replaced by a later one is taken again."""
    found = versions(conn, facts)
    # the free-space check of a first backup starts from the memory the data takes
    spec = dataclasses.replace(spec, estimate=lambda: int(facts["used_memory"]) or None)
    follow = True
    for attempt in range(1, SAVE_ATTEMPTS + 1):
        if settings.method == "logical":
            producer: _ops.Producer = LogicalProducer(conn, facts)
        else:
            producer = RdbProducer(session, conn, settings, facts, transfer, path, spec.catalog.directory, follow)
        try:
            return _ops.make_backup(spec, producer, found)
        except StageError as exc:  # the copy in the writer's thread reaches here as "the data source failed"
            failed = getattr(producer, "failed", None)
            replaced = exc if isinstance(exc, rd.RdbReplaced) else failed if isinstance(failed, rd.RdbReplaced) else None
            if replaced is None:
                raise
            follow = follow and not isinstance(replaced, FollowLost)
            if attempt == SAVE_ATTEMPTS:
                raise StageError(
                    "%s, %d times in a row: the server saves very often (save rules, replicas syncing); run the "
                    "backup again later or relax the save rules" % (replaced.msg, SAVE_ATTEMPTS)
                ) from exc
    raise AssertionError("unreachable")


def backup(req: BackupRequest, check_mode: bool) -> dict[str, t.Any]:
    conn, settings = req.conn, req.settings
    with connect(conn, "back up %s" % conn.describe()) as session:
        facts = rd.server_facts(session)
        transfer, path = ("logical", None) if settings.method == "logical" else plan_transfer(session, conn, settings.transfer)
        if check_mode:
            out = _ops.predict_backup(dataclasses.replace(req.spec, estimate=lambda: int(facts["used_memory"]) or None))
            out["artifact"]["versions"] = versions(conn, facts)
            keys, expires = totals(facts["databases"])
            out["source"] = {
                "method": settings.method,
                "transfer": transfer,
                "redis_version": facts["redis_version"],
                "used_memory": facts["used_memory"],
                "databases": facts["databases"],
                "keys": keys,
                "expires": expires,
            }
            return out
        return make(session, conn, req.spec, settings, facts, transfer, path)


def deep_check(conn: rd.Connection, method: str) -> t.Callable[[Entry, Report], None]:
    """Load the backup into a throwaway redis-server and compare it with its manifest."""

    def check(entry: Entry, report: Report) -> None:
        manifest = entry.manifest or {}
        source = manifest.get("source", {})
        try:
            scratch = _scratch.ScratchServer(ArtifactReader(entry.path).chunks() if method == "rdb" else None)
        except ConfigError as exc:
            report.skipped("deep", exc.msg)
            return
        except BackupError as exc:
            if "Can't handle RDB format version" in exc.msg:
                report.skipped("deep", "this host's redis-server is older than the backup's RDB format: %s" % exc.msg)
            else:
                report.failed("deep", "a throwaway redis-server could not load it: %s" % exc.msg)
            return
        problems: list[str] = []
        in_file: int | None = None
        with scratch:
            session = t.cast(rd.Session, scratch.session)
            expected = source.get("databases")
            try:
                if method == "logical":
                    stats = _logical.restore_logical(session, ArtifactReader(entry.path).chunks(), empty=True)
                    expected = _logical.expected_after_load(stats)
                actual = rd.parse_keyspace(session.info("keyspace"))
                loaded = session.info("persistence")
                if "rdb_last_load_keys_loaded" in loaded:
                    in_file = int(loaded["rdb_last_load_keys_loaded"]) + int(loaded.get("rdb_last_load_keys_expired", "0"))
                if expected is not None and (method == "logical" or source.get("counts_exact")):
                    problems += _restore.compare(_compare.database_counts(expected, actual))
                    if method == "rdb" and in_file is not None and "keys" in source:
                        if in_file != source["keys"]:
                            problems.append("the RDB holds %d keys, the manifest says %d" % (in_file, source["keys"]))
                elif expected is not None:
                    report.notes.append("%s: key counts in the manifest are approximate; not compared" % entry.name)
                sample = source.get("sample") or []
                sample_problems, compared = _compare.check_sample(session, sample, int(time.time() * 1000))
                problems += sample_problems
            except BackupError as exc:
                problems.append("checking the throwaway server failed: %s" % exc.msg)
                actual, compared = {}, 0
        if problems:
            report.failed("deep", "; ".join(problems))
            return
        report.passed("deep")
        keys, expires = totals(actual)
        if method == "rdb":  # what the file holds, for adoption (a fixed image: the counts are exact)
            report.measured = {
                "method": "rdb",
                "rdb_version": rd.rdb_version(_adopt.read_head(entry.path, 9)),
                "databases": actual,
                "keys": keys if in_file is None else in_file,
                "expires": expires,
                "counts_exact": True,
            }
        report.notes.append(
            "%s: a throwaway redis-server loaded %d keys in %d database(s); %d sampled key(s) matched"
            % (entry.name, keys, len(actual), compared)
        )

    return check


def info(
    catalog_: Catalog, rules: Rules, level: str, conn: rd.Connection, method: str, now: datetime.datetime | None = None,
) -> dict[str, t.Any]:
    deep = deep_check(conn, method) if level == "deep" else None
    return dict(_ops.inspect(catalog_, rules, level, content_factory(conn, method), now, deep), method=method)


REDIS_VER = re.compile(rb"\xfa\x09redis-ver([\x00-\x3f])")


def rdb_versions(head: bytes) -> dict[str, str]:
    """The Redis version an RDB names in its ``redis-ver`` auxiliary field (the server that wrote it)."""
    match = REDIS_VER.search(head[:4096])
    if not match:
        return {}
    length = ord(match.group(1))
    value = head[match.end():match.end() + length]
    return {"server": value.decode("ascii", "replace")} if len(value) == length else {}


def adopt(
    catalog_: Catalog, rules: Rules, conn: rd.Connection, check_mode: bool,
    lock_timeout: float = 600.0, file_mode: int = 0o600, now: datetime.datetime | None = None,
) -> dict[str, t.Any]:
    """Adopt the legacy RDB backups: each is checked with redis-check-rdb and loaded into a
    throwaway redis-server, whose key counts are recorded."""
    spec = _adopt.AdoptSpec(
        catalog=catalog_,
        content=content_factory(conn, "rdb"),
        deep=deep_check(conn, "rdb"),
        fmt="rdb",
        versions=rdb_versions,
        rules=rules,
        lock_timeout=lock_timeout,
        file_mode=file_mode,
    )
    return _adopt.adopt(spec, check_mode, now)
