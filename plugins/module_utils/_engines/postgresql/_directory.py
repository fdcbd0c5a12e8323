# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PostgreSQL's directory format: ``pg_dump -Fd -j N`` into a tree backup, ``pg_restore -j N`` out of it.

pg_dump writes ``toc.dat`` and one gzip-compressed data file per table (``<id>.dat.gz``) into
the hidden temp directory ``_tree`` describes, with N processes. Every file is read once, in
N threads, each data file while pg_dump writes it: its sha256, whether its gzip stream
decompresses to its end, and for a data file that it ends with COPY's ``\\.`` line and how many
rows it holds; ``pg_restore -l`` maps the data files to their tables. Only then is the manifest
written and the directory renamed into place.
The tools run on the managed host (``mode: host``): pg_dump writes the directory itself, so it
must run where the backup directory is.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core import _tree
from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import StreamChecked, Written, utcnow
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import ConfigError, StageError
from ansible_collections.cclite.backup.plugins.module_utils._core._process import run, start
from ansible_collections.cclite.backup.plugins.module_utils._engines.postgresql import _client as pg

FORMAT = "directory"
DATA_FILE = re.compile(r"(\d+)\.dat(?:\.gz)?")
TOC = "toc.dat"
END = b"\\.\n\n\n"  # what pg_dump writes after a table's last row in a directory dump
TABLE_DATA = re.compile(r"^(\d+); \d+ \d+ TABLE DATA (.*)$")
FINISHED = re.compile(rb"^pg_dump: finished item (\d+) TABLE DATA ", re.MULTILINE)
POLL = 0.05
LISTING_SHARE = 20  # the time between two listings of the dump directory, in listings' time


def check_mode(conn: pg.Connection) -> None:
    if conn.mode != "host":
        raise ConfigError(
            "the directory format needs mode host (postgresql_backup_mode: host): pg_dump and pg_restore write and read "
            "the directory themselves, so they must run on the host that holds the backup directory"
        )
    if conn.run_as:
        raise ConfigError(
            "the directory format runs pg_dump and pg_restore as the module's user, who owns the backup directory: "
            "unset run_as (postgresql_backup_run_as) and log in with login_user/login_password, or use the plain format"
        )


def check_jobs(jobs: int) -> int:
    if not 1 <= jobs <= 64:
        raise ConfigError("jobs must be 1 to 64 (postgresql_backup_jobs), not %d" % jobs)
    return jobs


class DataFile:
    """Content check of one data file: its rows (lines before COPY's end line) and that end."""

    def __init__(self) -> None:
        self.lines = 0
        self.tail = b""

    def feed(self, chunk: bytes) -> None:
        self.lines += chunk.count(b"\n")
        self.tail = (self.tail + chunk[-len(END) - 1:])[-len(END) - 1:]

    def result(self) -> str | None:
        if not self.tail.endswith(END) or (len(self.tail) > len(END) and self.tail[-len(END) - 1:-len(END)] != b"\n"):
            return "the table's data does not end with COPY's end line: the file is cut short"
        return None

    def stats(self) -> dict[str, int]:
        return {"rows": self.lines - END.count(b"\n")}


class DirectoryContent:
    """The content check of a directory dump (``_verify.TreeContent``)."""

    def consumer_for(self, name: str) -> DataFile | None:
        return DataFile() if DATA_FILE.fullmatch(name) else None

    def tree_result(self, names: t.Sequence[str]) -> str | None:
        if TOC not in names:
            return "%s is missing: pg_restore cannot read the dump" % TOC
        return None


class Content(pg.DumpComplete):
    """The plain dump's content check, which also knows directory dumps (``_verify``)."""

    tree = DirectoryContent()


def data_files(directory: str) -> list[str]:
    """The table data files pg_dump has begun to write in ``directory`` so far."""
    try:
        return sorted(entry.name for entry in os.scandir(directory) if DATA_FILE.fullmatch(entry.name) and entry.is_file())
    except OSError:
        return []


def table_names(listing: str) -> dict[str, str]:
    """Data file name -> ``schema.table``, from ``pg_restore -l`` (``<id>; <oid> <oid> TABLE DATA
    <schema> <table> <owner>``; a schema with a space in its name is read wrongly)."""
    found = {}
    for line in listing.splitlines():
        match = TABLE_DATA.match(line)
        if not match:
            continue
        rest = match.group(2).rsplit(" ", 1)[0]  # the owner is the last word
        schema, _sep, table = rest.partition(" ")
        found[match.group(1)] = "%s.%s" % (schema, table)
    return found


def listing(conn: pg.Connection, directory: str) -> str:
    """``pg_restore -l``: the dump's table of contents (read from the files, no server)."""
    return run(conn.command("pg_restore", ["--list", directory])).stdout.decode("utf-8", errors="replace")


class DirectoryDump:
    """``_ops.TreeWriter`` and ``_ops.Producer`` of a directory-format backup."""

    def __init__(self, conn: pg.Connection, database: str, dump_options: t.Sequence[str], count_rows: str,
                 jobs: int, level: int, file_mode: int = 0o600) -> None:
        check_mode(conn)
        self.conn = conn
        self.jobs = check_jobs(jobs)
        self.level = level
        self.file_mode = file_mode
        self.count_rows = count_rows
        self.dump = pg.ConsistentDump(conn, database, list(dump_options), count_rows == "snapshot")
        self.stats: dict[str, t.Any] = {}
        self.compression = {"algorithm": "gzip", "level": level, "program": "pg_dump"}

    def start(self) -> t.Any:
        raise NotImplementedError("a directory dump is written by write(), not streamed")

    def _run_dump(self, tmp: str, scanner: _tree.Scanner) -> None:
        """pg_dump; each table's data file is read by ``scanner`` while pg_dump writes it (a new
        file in the directory is followed as it grows), and is complete once pg_dump says it is
        finished (``--verbose``: "finished item N TABLE DATA") or has exited, so the check ends
        with the dump instead of reading the biggest table again after it."""
        cmd = self.dump.start()
        # ConsistentDump asks for a plain dump; pg_dump takes the last --format it is given
        argv = cmd.argv + ("--format=directory", "--jobs=%d" % self.jobs, "--compress=%d" % self.level, "--verbose",
                           "--file=" + tmp)
        suffix = ".dat.gz" if self.level else ".dat"
        with start(type(cmd)(argv, cmd.env, cmd.secret_env, cmd.stage, cmd.inner), stdout=subprocess.DEVNULL) as child:
            offset, pending, next_listing = 0, b"", 0.0
            while True:
                try:
                    child.proc.wait(POLL)
                except subprocess.TimeoutExpired:
                    pass
                ended = child.proc.returncode is not None
                if not ended and time.monotonic() >= next_listing:
                    # a directory of thousands of tables: its listing is looked at less often
                    listed = time.monotonic()
                    for name in data_files(tmp):
                        scanner.follow(name)
                    next_listing = time.monotonic() + max(POLL, LISTING_SHARE * (time.monotonic() - listed))
                data = child.stderr_from(offset)
                while data:
                    offset += len(data)
                    pending += data
                    data = child.stderr_from(offset)
                lines, _sep, pending = pending.rpartition(b"\n")
                for match in FINISHED.finditer(lines):
                    scanner.submit(match.group(1).decode("ascii") + suffix)
                if ended:
                    break
            child.check()

    def write(self, dest: str, commit: t.Callable[[str, Written], None]) -> Written:
        started = utcnow()
        if os.path.lexists(dest):
            raise ConfigError("%s already exists; refusing to overwrite an artifact" % dest)
        try:
            with _tree.in_place(dest) as tmp:
                content = DirectoryContent()
                with _tree.Scanner(tmp, content.consumer_for, self.jobs) as scanner:
                    self._run_dump(tmp, scanner)
                    names = _tree.names(tmp)
                    tables = table_names(listing(self.conn, tmp))
                    scanned = scanner.finish(names)
                problem = scanned.content or content.tree_result(names)
                if self.count_rows == "dump":
                    counts = {}
                    for item in scanned.files:
                        match = DATA_FILE.fullmatch(item.name)
                        if match and "rows" in item.stats:
                            counts[tables.get(match.group(1), item.name)] = item.stats["rows"]
                    self.stats = {"tables": counts, "table_count": len(counts), "total_rows": sum(counts.values()), "counted": "dump"}
                _tree.fsync_tree(tmp, self.file_mode)
                checked = StreamChecked(scanned.stream, scanned.content_size, problem)
                written = Written(dest, scanned.size, scanned.sha256, started, utcnow(), checked, scanned.listed())
                commit(tmp, written)
            return written
        except OSError as exc:
            raise StageError("writing %s failed: %s; check free space and permissions there" % (dest, exc.strerror or exc)) from exc

    def finish(self) -> dict[str, t.Any]:
        counts = self.dump.finish()
        if self.count_rows == "snapshot":
            return {"tables": counts, "table_count": len(counts), "total_rows": sum(counts.values()), "counted": "snapshot"}
        return dict(self.stats)

    def close(self) -> None:
        self.dump.close()


def load(conn: pg.Connection, database: str, directory: str, jobs: int) -> None:
    """``pg_restore -j N`` of a directory dump into ``database`` (a staging or scratch one);
    the first error stops it."""
    check_mode(conn)
    args = ["--jobs=%d" % check_jobs(jobs), "--exit-on-error", "--no-password", "--dbname=" + database, directory]
    cmd = conn.command("pg_restore", args, database)
    with start(cmd, stdout=subprocess.DEVNULL) as child:
        child.wait()
        if child.returncode != 0:
            raise StageError("pg_restore into %s failed: %s" % (database, child.stderr() or "(no error output)"), stage="pg_restore")
