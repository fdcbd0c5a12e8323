# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PostgreSQL backup, inspection and restore, on the shared flows of ``_ops``."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import os
import re
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core import _adopt
from ansible_collections.cclite.backup.plugins.module_utils._core import _ops
from ansible_collections.cclite.backup.plugins.module_utils._core import _restore
from ansible_collections.cclite.backup.plugins.module_utils._engines.postgresql import _client as pg
from ansible_collections.cclite.backup.plugins.module_utils._engines.postgresql import _directory
from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import ArtifactReader, Compression, Source
from ansible_collections.cclite.backup.plugins.module_utils._core._catalog import POSTGRESQL, Catalog, Entry, local_now
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import BackupError, ConfigError
from ansible_collections.cclite.backup.plugins.module_utils._core._options import ToolOptions
from ansible_collections.cclite.backup.plugins.module_utils._core._verify import LoadCheck, Report, Rules

FORMAT = "plain"
FORMATS = (FORMAT, _directory.FORMAT)


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
    fmt: str = FORMAT  # plain (one .sql.gz) or directory (pg_dump -Fd -j jobs)
    jobs: int = 2


# pg_dump's getopt (PostgreSQL 15-17) and the options that would move or reshape its output.
_OUTPUT = "the dump goes to pg_dump's standard output, which cclite.backup compresses, checks and renames into the backup directory"
PG_DUMP_OPTIONS = ToolOptions(
    tool="pg_dump",
    setting="dump_options (postgresql_backup_dump_options)",
    short_with_value="dfFhjnNpStTUZeE",
    short_flags="abBcCOsvwWx?V",
    long_with_value=frozenset((
        "compress", "dbname", "encoding", "exclude-schema", "exclude-table", "exclude-table-data", "extra-float-digits",
        "file", "filter", "format", "host", "jobs", "lock-wait-timeout", "port", "role", "rows-per-insert", "schema",
        "section", "superuser", "table", "username", "snapshot", "exclude-table-and-children", "table-and-children",
        "exclude-table-data-and-children", "include-foreign-data", "exclude-extension", "extension", "sync-method",
    )),
    long_flags=frozenset((
        "data-only", "blobs", "large-objects", "no-blobs", "no-large-objects", "clean", "create", "no-owner", "schema-only",
        "verbose", "no-password", "password", "no-privileges", "no-acl", "binary-upgrade", "column-inserts",
        "attribute-inserts", "disable-dollar-quoting", "disable-triggers", "enable-row-security", "if-exists", "inserts",
        "load-via-partition-root", "no-comments", "no-publications", "no-security-labels", "no-subscriptions",
        "no-table-access-method", "no-tablespaces", "no-toast-compression", "no-unlogged-table-data", "no-sync",
        "on-conflict-do-nothing", "quote-all-identifiers", "serializable-deferrable", "strict-names",
        "use-set-session-authorization", "help", "version", "oids",
    )),
    refused={
        "-f": "it writes the dump to a file of its own choosing, outside the backup directory, uncompressed and unchecked; " + _OUTPUT,
        "--file": "it writes the dump to a file of its own choosing, outside the backup directory, uncompressed and unchecked; " + _OUTPUT,
        "-F": "the backup is a plain SQL dump (that is what the catalog records, verify reads and restore replays); "
              "other formats are not supported",
        "--format": "the backup is a plain SQL dump (that is what the catalog records, verify reads and restore replays); "
                    "other formats are not supported",
        "-Z": "pg_dump's own compression would compress the dump twice and the checks would not read SQL; "
              "set the compression option (postgresql_backup_compression) instead",
        "--compress": "pg_dump's own compression would compress the dump twice and the checks would not read SQL; "
                      "set the compression option (postgresql_backup_compression) instead",
        "-j": "parallel jobs need the directory format, which writes a directory elsewhere",
        "--jobs": "parallel jobs need the directory format, which writes a directory elsewhere",
        "-d": "the database is the module's database option (postgresql_backup_databases); a connection string here "
              "could also put a password into the process list",
        "--dbname": "the database is the module's database option (postgresql_backup_databases); a connection string here "
                    "could also put a password into the process list",
        "-h": "the server is the module's login_host: the manifest would describe one server and hold another's data",
        "--host": "the server is the module's login_host: the manifest would describe one server and hold another's data",
        "-p": "the server is the module's login_port: the manifest would describe one server and hold another's data",
        "--port": "the server is the module's login_port: the manifest would describe one server and hold another's data",
        "-U": "the role is the module's login_user",
        "--username": "the role is the module's login_user",
        "-W": "it makes pg_dump prompt for a password, which never comes: the password is the module's login_password",
        "--password": "it makes pg_dump prompt for a password, which never comes: the password is the module's login_password",
        "--snapshot": "the module sets the snapshot itself when it counts rows (count_rows=snapshot)",
        "-?": "it prints the help instead of a dump",
        "--help": "it prints the help instead of a dump",
        "-V": "it prints the version instead of a dump",
        "--version": "it prints the version instead of a dump",
    },
    positional="a bare argument is a database name to pg_dump; the database is the module's database option",
)


def check_dump_options(dump_options: t.Sequence[str]) -> None:
    """Refuse pg_dump options that would write elsewhere, change the format or the source."""
    PG_DUMP_OPTIONS.check(dump_options)


def content_for(count_rows: str, dump_options: t.Sequence[str]) -> tuple[type[pg.DumpComplete], bool]:
    """The content check of a new dump, and whether its row counts go to the manifest."""
    if count_rows not in COUNT_ROWS:
        raise ConfigError("count_rows must be one of %s, not %r" % (", ".join(COUNT_ROWS), count_rows))
    check_dump_options(dump_options)
    if count_rows == "dump":
        inserts = [o for o in dump_options if o.split("=")[0] in INSERT_OPTIONS]
        if inserts:
            raise ConfigError(
                "count_rows=dump counts the rows of COPY blocks, and %s makes INSERT statements instead: "
                "use count_rows=snapshot with it" % inserts[0]
            )
        return pg.DumpStats, True
    return pg.DumpComplete, False


def database_size(conn: pg.Connection, database: str) -> int | None:
    """pg_database_size: what the free-space check of a first backup starts from."""
    lines = pg.query(conn, "SELECT pg_database_size(current_database());", database)
    return int(lines[0]) if lines and lines[0].strip().isdigit() else None


def backup(req: BackupRequest, check_mode: bool) -> dict[str, t.Any]:
    check_dump_options(req.dump_options)
    spec = dataclasses.replace(req.spec, estimate=lambda: database_size(req.conn, req.database))
    tree = None
    if req.fmt == _directory.FORMAT:  # its settings are checked before anything runs
        tree = _directory.DirectoryDump(req.conn, req.database, req.dump_options, req.count_rows, req.jobs,
                                        directory_level(spec.compression), spec.file_mode)
        spec = dataclasses.replace(spec, fmt=_directory.FORMAT)
    elif req.fmt != FORMAT:
        raise ConfigError("format must be plain or directory, not %r" % req.fmt)
    found, _settings = probe(req.conn, req.database)
    if check_mode:
        out = _ops.predict_backup(spec)
        out["artifact"]["versions"] = found
        return out
    if tree is not None:
        return _ops.make_backup(spec, tree, found, tree)
    producer = DumpProducer(req.conn, req.database, req.dump_options, req.count_rows)
    return _ops.make_backup(spec, producer, found)


def directory_level(compression: Compression) -> int:
    """pg_dump's own gzip level for the directory format's files (0: uncompressed)."""
    if compression.algorithm == "none":
        return 0
    if compression.algorithm != "gzip":
        raise ConfigError(
            "the directory format compresses each table with pg_dump's gzip (PostgreSQL 15): set compression gzip "
            "(postgresql_backup_compression) with a level of 1 to 9, or none"
        )
    return compression.level


def deep_check(conn: pg.Connection, database: str, jobs: int = 0) -> t.Callable[[Entry, Report], None]:
    """Restore into a scratch database, compare every table's row count, drop it (a directory
    dump with ``pg_restore -j jobs``, 0: one per core)."""

    def check(entry: Entry, report: Report) -> None:
        scratch = pg.scratch_name(database or "cclite", "verify")
        try:
            pg.drop_database(conn, scratch)
            pg.create_database(conn, scratch, None)
            load_entry(conn, scratch, entry, jobs)
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
        problems = _restore.compare(pg.table_counts(expected, counts))
        if problems:
            report.failed("deep", "; ".join(problems))
        else:
            report.passed("deep")

    return check


def load_entry(conn: pg.Connection, database: str, entry: Entry, jobs: int = 0, check: LoadCheck | None = None) -> None:
    """Load a backup into ``database``: psql for a plain dump, pg_restore -j for a directory.
    With ``check``, a plain dump is read through it, so the full check runs as it loads."""
    if entry.tree:
        _directory.load(conn, database, entry.path, jobs or min(8, os.cpu_count() or 1))
    else:
        pg.load(conn, database, check.chunks() if check is not None else ArtifactReader(entry.path).chunks())


@dataclasses.dataclass
class RestoreRequest:
    conn: pg.Connection
    database: str
    spec: _restore.RestoreSpec
    jobs: int = 2  # pg_restore's processes, for a directory dump
    keep_previous_count: int = 1  # with keep_previous: replaced databases of this database kept, the newest


class Restore:
    """The PostgreSQL steps of the shared restore flow (``_restore``).

    prepare: load the dump into a new database in one transaction. measure: every table's row
    count there, with ANALYZE beside it, before the swap. swap: refuse new connections to the
    current database, end the open ones, and rename it aside and the new one into its place in one transaction; the
    renamed database keeps connections disabled, so it holds every write acknowledged before
    the swap and nothing after it: it is the rollback point, no dump needed. finish: drop the
    replaced database unless ``keep_previous``; with it, the replaced databases
    of earlier restores beyond ``keep_previous_count`` are dropped, oldest first.

    The load reads the whole artifact (psql is fed the checked stream; a directory's files are
    hashed in a thread while pg_restore reads them), so the full check runs during it.
    """

    store = POSTGRESQL.store
    staged = True
    keeps_previous = True
    checks_while_loading = True

    def __init__(self, req: RestoreRequest) -> None:
        self.req = req
        self.conn = req.conn
        self.stamp = local_now().strftime("%Y%m%d%H%M%S")
        self.staging = pg.scratch_name(req.database, "restore")
        self.previous = pg.scratch_name(req.database, "pre_restore_%s" % self.stamp)
        if req.spec.keep_previous and req.keep_previous_count < 1:
            raise ConfigError(
                "keep_previous_count is %d: give 1 or more replaced databases to keep (postgresql_backup_restore_keep_previous_count), "
                "or set keep_previous false to keep none; nothing was changed" % req.keep_previous_count
            )
        self.notes: list[str] = []
        self.current: dict[str, str] | None = None
        self.swapped = self.prepared = False
        self.result: dict[str, t.Any] = {}

    def run(self, check_mode: bool) -> dict[str, t.Any]:
        return _restore.restore(self.req.spec, self, check_mode)

    def plan(self) -> _restore.Plan:
        facts = pg.server_facts(self.conn, self.req.database)
        self.current = facts.database
        self.server = facts.version
        self.result = {"database": self.req.database, "server_version": facts.version, "previous_database": None, "tables": None,
                       "dropped_previous": []}
        plan = _restore.Plan("%s on %s" % (self.req.database, self.conn.describe()), facts.database is not None, self.result)
        self.notes = plan.notes
        return plan

    def content(self) -> pg.DumpComplete:
        return _directory.Content()

    def accept(self, entry: Entry, check: t.Any) -> str:
        if entry.tree:
            _directory.check_mode(self.conn)
            return " (pg_restore -j %d)" % _directory.check_jobs(self.req.jobs)
        return ""

    def safety_backup(self, spec: _restore.RestoreSpec) -> dict[str, t.Any]:
        """A dump of the replaced database; after the swap, of the kept one (connections are
        allowed for the dump only: nobody else knows its name)."""
        database = self.previous if self.swapped else self.req.database
        backup = spec.safety_spec(FORMAT, pg.DumpStats, content_stats=True, database=self.req.database)
        found = {"server": self.server, "tool": pg.tool_version(self.conn, "pg_dump")}
        if self.swapped:
            allow_connections(self.conn, database, True)
        try:
            return _ops.make_backup(backup, DumpProducer(self.conn, database, (), "dump"), found)["artifact"]
        finally:
            if self.swapped:
                allow_connections(self.conn, database, False)

    def prepare(self, entry: Entry, check: LoadCheck | None = None) -> None:
        self.prepared = True  # from here on, the staging database is this run's (under the lock)
        if self.current is not None:  # two restores in one second: the later one's kept name is a second on
            taken = set(kept_databases(self.conn, self.req.database))
            stamp = datetime.datetime.strptime(self.stamp, "%Y%m%d%H%M%S")
            while self.previous in taken:
                stamp += datetime.timedelta(seconds=1)
                self.stamp = stamp.strftime("%Y%m%d%H%M%S")
                self.previous = pg.scratch_name(self.req.database, "pre_restore_%s" % self.stamp)
        pg.drop_database(self.conn, self.staging)  # left by a run that was killed
        pg.create_database(self.conn, self.staging, self.current)
        load_entry(self.conn, self.staging, entry, self.req.jobs, check)

    def measure(self, entry: Entry) -> list[_restore.Count] | None:
        """Every table's row count in the staging database, with its ANALYZE beside it (two
        sessions: the statistics move with the database at the swap, so the restored data
        serves with them from the first query, and no ANALYZE runs after the swap)."""
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            analyzed = pool.submit(pg.analyze, self.conn, self.staging)
            counts = self.result["tables"] = pg.count_rows(self.conn, self.staging)
            analyzed.result()
        expected = (entry.manifest or {}).get("source", {}).get("tables")
        if expected is None:
            return None
        return pg.table_counts(expected, counts)

    def swap(self, entry: Entry) -> _restore.RollbackPoint | None:
        db = self.req.database
        if self.current is None:
            rename(self.conn, self.staging, db)
            return None
        pg.swap(self.conn, db, self.staging, self.previous)
        self.swapped = True
        return _restore.RollbackPoint(
            "the database %s (connections disabled)" % self.previous,
            "rename %s aside, rename %s to %s and allow connections to it" % (db, self.previous, db),
        )

    def finish(self, keep: bool) -> None:
        if self.swapped:
            if keep:
                self.result["previous_database"] = self.previous
            else:
                pg.drop_database(self.conn, self.previous)
        if keep:
            self.prune()

    def prune(self) -> None:
        """After success: of the replaced databases kept for this database, drop those beyond
        ``keep_previous_count``, oldest first (the one this restore kept is the newest). A
        drop that fails is a note: the restore itself succeeded."""
        older = [name for name in kept_databases(self.conn, self.req.database) if name != self.previous]
        room = self.req.keep_previous_count - (1 if self.swapped else 0)
        for name in older[max(room, 0):]:
            try:
                pg.drop_database(self.conn, name)
            except BackupError as exc:
                self.notes.append("could not drop the replaced database %s kept by an earlier restore: %s" % (name, exc.msg))
                continue
            self.result["dropped_previous"].append(name)

    def undo(self, swapped: bool) -> str:
        if swapped:
            if self.swapped:
                self.result["previous_database"] = self.previous
            return "%s holds the restored data" % self.req.database
        if self.prepared:
            pg.drop_database(self.conn, self.staging)
        return ""

    def summary(self) -> str:
        tables = self.result["tables"] or {}
        return "%d tables, %d rows" % (len(tables), sum(tables.values()))


KEPT_STAMP = re.compile(r"[0-9]{14}")


def kept_databases(conn: pg.Connection, database: str) -> list[str]:
    """The replaced databases restores kept for ``database`` (``<database>__pre_restore_<stamp>``), newest first."""
    prefix = pg.scratch_name(database, "pre_restore_%s" % ("0" * 14))[:-14]
    names = pg.query(conn, "SELECT datname FROM pg_database WHERE left(datname, length(:'prefix')) = :'prefix';",
                     variables=[("prefix", prefix)])
    found = [n for n in names if n.startswith(prefix) and KEPT_STAMP.fullmatch(n[len(prefix):])]
    return sorted(found, key=lambda n: n[len(prefix):], reverse=True)


def allow_connections(conn: pg.Connection, database: str, allow: bool) -> None:
    pg.query(
        conn, "SELECT format('ALTER DATABASE %%I ALLOW_CONNECTIONS %s', :'db') \\gexec\n" % ("true" if allow else "false"),
        variables=[("db", database)],
    )


def rename(conn: pg.Connection, old: str, new: str) -> None:
    pg.query(conn, "SELECT format('ALTER DATABASE %I RENAME TO %I', :'old', :'new') \\gexec\n", variables=[("old", old), ("new", new)])


def info(
    catalog_: Catalog, rules: Rules, level: str, conn: pg.Connection | None, database: str, now: datetime.datetime | None = None,
) -> dict[str, t.Any]:
    deep = deep_check(conn, database) if level == "deep" and conn is not None else None
    return _ops.inspect(catalog_, rules, level, _directory.Content, now, deep)


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
        content=_directory.Content,
        deep=deep_check(conn, database),
        fmt=FORMAT,
        versions=dump_versions,
        rules=rules,
        database=database,
        lock_timeout=lock_timeout,
        file_mode=file_mode,
    )
    return _adopt.adopt(spec, check_mode, now)
