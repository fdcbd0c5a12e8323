# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PostgreSQL backup, inspection and restore, on the shared flows of ``_ops``."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import re
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core import _adopt
from ansible_collections.cclite.backup.plugins.module_utils._core import _ops
from ansible_collections.cclite.backup.plugins.module_utils._engines.postgresql import _client as pg
from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import ArtifactReader, Compression, Source
from ansible_collections.cclite.backup.plugins.module_utils._core._catalog import POSTGRESQL, Catalog, Entry, local_now
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import BackupError, ConfigError, RestoreError
from ansible_collections.cclite.backup.plugins.module_utils._core._lock import StoreLock
from ansible_collections.cclite.backup.plugins.module_utils._core._verify import Report, Rules

FORMAT = "plain"


def catalog(root: str, series: str = "") -> Catalog:
    return Catalog(root, POSTGRESQL, series)


COUNT_ROWS = ("dump", "snapshot", "none")
INSERT_OPTIONS = ("--inserts", "--column-inserts", "--attribute-inserts", "--rows-per-insert")


class DumpProducer:
    """pg_dump of one database; with ``count_rows=snapshot``, the row counts of the same snapshot."""

    def __init__(self, conn: pg.Connection, database: str, dump_options: t.Sequence[str], count_rows: str) -> None:
        self.count_rows = count_rows
        self.dump = pg.ConsistentDump(conn, database, dump_options, count_rows == "snapshot")

    def start(self) -> Source:
        return self.dump.start()

    def finish(self) -> dict[str, t.Any]:
        counts = self.dump.finish()
        if self.count_rows != "snapshot":
            return {}  # counted from the dump by DumpStats, or not at all
        return {"tables": counts, "table_count": len(counts), "total_rows": sum(counts.values()), "counted": "snapshot"}

    def close(self) -> None:
        self.dump.close()


def probe(conn: pg.Connection, database: str) -> tuple[dict[str, str], dict[str, str]]:
    """The server's and pg_dump's versions, and the database's settings; fails when it does not exist.

    The query and ``pg_dump --version`` run side by side: each is a process (in docker mode a
    ``docker exec``), and everything before the dump starts is time the backup waits.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        tool = pool.submit(pg.tool_version, conn, "pg_dump")
        facts = pg.server_facts(conn, database)
        versions = {"server": facts.version, "tool": tool.result()}
    if facts.database is None:
        raise BackupError(
            "database %s does not exist on %s: check postgresql_backup_databases" % (database, conn.describe())
        )
    return versions, facts.database


@dataclasses.dataclass
class BackupRequest:
    conn: pg.Connection
    database: str
    spec: _ops.BackupSpec
    dump_options: t.Sequence[str] = ()
    count_rows: str = "dump"


def content_for(count_rows: str, dump_options: t.Sequence[str]) -> tuple[type[pg.DumpComplete], bool]:
    """The content check of a new dump, and whether its row counts go to the manifest."""
    if count_rows not in COUNT_ROWS:
        raise ConfigError("count_rows must be one of %s, not %r" % (", ".join(COUNT_ROWS), count_rows))
    if count_rows == "dump":
        inserts = [o for o in dump_options if o.split("=")[0] in INSERT_OPTIONS]
        if inserts:
            raise ConfigError(
                "count_rows=dump counts the rows of COPY blocks, and %s makes INSERT statements instead: "
                "use count_rows=snapshot with it" % inserts[0]
            )
        return pg.DumpStats, True
    return pg.DumpComplete, False


def backup(req: BackupRequest, check_mode: bool) -> dict[str, t.Any]:
    found, _settings = probe(req.conn, req.database)
    if check_mode:
        out = _ops.predict_backup(req.spec)
        out["artifact"]["versions"] = found
        return out
    producer = DumpProducer(req.conn, req.database, req.dump_options, req.count_rows)
    return _ops.make_backup(req.spec, producer, found)


def deep_check(conn: pg.Connection, database: str) -> t.Callable[[Entry, Report], None]:
    """Restore into a scratch database, compare every table's row count, drop it."""

    def check(entry: Entry, report: Report) -> None:
        scratch = pg.scratch_name(database or "cclite", "verify")
        try:
            pg.drop_database(conn, scratch)
            pg.create_database(conn, scratch, None)
            pg.load(conn, scratch, ArtifactReader(entry.path).chunks())
            counts = pg.count_rows(conn, scratch)
        except BackupError as exc:
            report.failed("deep", "restoring into a scratch database failed: %s" % exc.msg)
            return
        finally:
            try:
                pg.drop_database(conn, scratch)
            except BackupError as exc:
                report.notes.append("could not drop the scratch database %s: %s" % (scratch, exc.msg))
        report.measured = {"tables": counts, "table_count": len(counts), "total_rows": sum(counts.values())}
        expected = (entry.manifest or {}).get("source", {}).get("tables")
        if expected is None:
            report.passed("deep")
            report.notes.append("%s: restored %d tables; no manifest to compare row counts with" % (entry.name, len(counts)))
            return
        problems = pg.compare_counts(expected, counts)
        if problems:
            report.failed("deep", "; ".join(problems))
        else:
            report.passed("deep")

    return check


@dataclasses.dataclass
class RestoreRequest:
    conn: pg.Connection
    catalog: Catalog
    name: str
    database: str
    confirm: bool
    safety_backup: bool = True
    keep_previous: bool = False
    compression: Compression = dataclasses.field(default_factory=Compression)
    lock_timeout: float = 600.0
    file_mode: int = 0o600


class Restore:
    """Restore a plain dump so that a failure at any step leaves the current data in place.

    check the file -> safety backup of the current database -> load into a new database ->
    compare row counts -> swap names (one transaction) -> ANALYZE -> drop the old database.
    """

    def __init__(self, req: RestoreRequest) -> None:
        self.req = req
        self.stamp = local_now().strftime("%Y%m%d%H%M%S")
        self.staging = pg.scratch_name(req.database, "restore")
        self.previous = pg.scratch_name(req.database, "pre_restore_%s" % self.stamp)

    def plan(self) -> tuple[Entry, dict[str, str] | None, str]:
        name = self.req.name
        if name.startswith("safety/"):  # rolling back to the copy an earlier restore kept
            safety = Catalog(self.req.catalog.root, self.req.catalog.layout.safety(), self.req.database)
            entry = safety.resolve(name[len("safety/"):])
        else:
            entry = self.req.catalog.resolve(name)
        facts = pg.server_facts(self.req.conn, self.req.database)
        return entry, facts.database, facts.version

    def run(self, check_mode: bool) -> dict[str, t.Any]:
        req = self.req
        entry, current, server = self.plan()
        out: dict[str, t.Any] = {
            "restored_from": entry.as_dict(),
            "database": req.database,
            "server_version": server,
            "safety_backup": None,
            "previous_database": None,
            "tables": None,
            "changed": True,
        }
        if check_mode:
            _ops.check_before_restore(entry, pg.DumpComplete)
            out["msg"] = "would restore %s into %s (check mode: file checked, nothing changed)" % (entry.name, req.database)
            return out
        if not req.confirm:
            raise RestoreError(
                "refusing to restore %s into %s without confirmation: set confirm: true "
                "(restore_confirm=true for the playbooks) once you are sure" % (entry.name, req.database)
            )
        _ops.check_before_restore(entry, pg.DumpComplete)
        with StoreLock(req.catalog.directory, "postgresql", "postgresql restore", req.lock_timeout):
            if current is not None and req.safety_backup:
                out["safety_backup"] = self._safety_backup(server)
            counts = self._load(entry, current)
            out["tables"] = counts
            if current is not None:
                pg.swap(req.conn, req.database, self.staging, self.previous)
            else:
                pg.query(
                    req.conn,
                    "SELECT format('ALTER DATABASE %I RENAME TO %I', :'new', :'db') \\gexec\n",
                    variables=[("new", self.staging), ("db", req.database)],
                )
            pg.analyze(req.conn, req.database)
            if current is not None:
                if req.keep_previous:
                    out["previous_database"] = self.previous
                else:
                    pg.drop_database(req.conn, self.previous)
        out["msg"] = self._message(entry, out)
        return out

    def _safety_backup(self, server: str) -> dict[str, t.Any]:
        req = self.req
        safety = Catalog(req.catalog.root, req.catalog.layout.safety(), req.database)
        spec = _ops.BackupSpec(
            catalog=safety,
            compression=req.compression,
            fmt=FORMAT,
            content=pg.DumpStats,
            content_stats=True,
            database=req.database,
            kind="safety",
            move_latest=False,
            lock_timeout=req.lock_timeout,
            file_mode=req.file_mode,
        )
        try:
            # the plan has queried the server and found the database: only pg_dump's version is new
            found = {"server": server, "tool": pg.tool_version(req.conn, "pg_dump")}
            result = _ops.make_backup(spec, DumpProducer(req.conn, req.database, (), "dump"), found)
        except BackupError as exc:
            raise RestoreError("the safety backup of %s failed, nothing was changed: %s" % (req.database, exc.msg)) from exc
        return result["artifact"]

    def _load(self, entry: Entry, current: dict[str, str] | None) -> dict[str, int]:
        req = self.req
        pg.drop_database(req.conn, self.staging)  # left by a run that was killed
        pg.create_database(req.conn, self.staging, current)
        try:
            pg.load(req.conn, self.staging, ArtifactReader(entry.path).chunks())
            counts = pg.count_rows(req.conn, self.staging)
            expected = (entry.manifest or {}).get("source", {}).get("tables")
            if expected is not None:
                problems = pg.compare_counts(expected, counts)
                if problems:
                    raise RestoreError("the restored data does not match the manifest: %s" % "; ".join(problems))
        except BackupError as exc:
            pg.drop_database(req.conn, self.staging)
            raise RestoreError("%s; %s was not changed" % (exc.msg, req.database)) from exc
        return counts

    def _message(self, entry: Entry, out: dict[str, t.Any]) -> str:
        msg = "restored %s into %s (%d tables, %d rows)" % (
            entry.name,
            self.req.database,
            len(out["tables"]),
            sum(out["tables"].values()),
        )
        if out["safety_backup"]:
            msg += "; the data it replaced is saved in %s (to roll back, restore safety/%s)" % (
                out["safety_backup"]["path"],
                out["safety_backup"]["name"],
            )
        if out["previous_database"]:
            msg += "; the old database is kept as %s" % out["previous_database"]
        return msg


def info(
    catalog_: Catalog,
    rules: Rules,
    level: str,
    conn: pg.Connection | None,
    database: str,
    now: datetime.datetime | None = None,
) -> dict[str, t.Any]:
    deep = deep_check(conn, database) if level == "deep" and conn is not None else None
    return _ops.inspect(catalog_, rules, level, pg.DumpComplete, now, deep)


DUMP_HEADER = {
    "server": re.compile(rb"^-- Dumped from database version (\S+)", re.MULTILINE),
    "tool": re.compile(rb"^-- Dumped by pg_dump version (\S+)", re.MULTILINE),
}


def dump_versions(head: bytes) -> dict[str, str]:
    """The server and pg_dump versions a plain dump's header names."""
    found = {}
    for key, pattern in DUMP_HEADER.items():
        match = pattern.search(head)
        if match:
            found[key] = match.group(1).decode("ascii", "replace")
    return found


def adopt(
    catalog_: Catalog, rules: Rules, conn: pg.Connection, database: str, check_mode: bool,
    lock_timeout: float = 600.0, file_mode: int = 0o600, now: datetime.datetime | None = None,
) -> dict[str, t.Any]:
    """Adopt the legacy dumps: each is restored into a scratch database, its row counts recorded."""
    pg.server_version(conn)  # the deep check needs the server: fail early, with the connection's message
    spec = _adopt.AdoptSpec(
        catalog=catalog_,
        content=pg.DumpComplete,
        deep=deep_check(conn, database),
        fmt=FORMAT,
        versions=dump_versions,
        rules=rules,
        database=database,
        lock_timeout=lock_timeout,
        file_mode=file_mode,
    )
    return _adopt.adopt(spec, check_mode, now)
