# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What PostgreSQL brings to a restore drill (``_core._drill``): its restore engine on the drill
server, and a sample of every table's rows from the dump compared with the restored table."""

from __future__ import annotations

import dataclasses
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core import _restore
from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import ArtifactReader
from ansible_collections.cclite.backup.plugins.module_utils._core._drill import DrillError, Where
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import BackupError
from ansible_collections.cclite.backup.plugins.module_utils._core._process import Command, run
from ansible_collections.cclite.backup.plugins.module_utils._engines.postgresql import _client as pg
from ansible_collections.cclite.backup.plugins.module_utils._engines.postgresql._engine import Restore, RestoreRequest

SAMPLE_ROWS = 3  # per table: the first rows of its COPY block


def lines(chunks: t.Iterable[bytes]) -> t.Iterator[bytes]:
    rest = b""
    for chunk in chunks:
        parts = (rest + chunk).split(b"\n")
        rest = parts.pop()
        yield from parts
    if rest:
        yield rest


def dump_sample(path: str, per_table: int = SAMPLE_ROWS) -> dict[str, list[bytes]]:
    """The first ``per_table`` rows of every table's COPY block, as COPY text lines."""
    sample: dict[str, list[bytes]] = {}
    table: str | None = None
    for line in lines(ArtifactReader(path).chunks()):
        if table is None:
            table = pg.copy_table(line)
            if table is not None:
                sample.setdefault(table, [])
        elif line == b"\\.":
            table = None
        elif len(sample[table]) < per_table:
            sample[table].append(line)
    return sample


@dataclasses.dataclass
class Drill:
    """The drill engine; ``kept`` is a dedicated drill server (its database dropped afterwards)."""

    conn: pg.Connection  # the production connection, whose login the drill container shares
    database: str
    spec: _restore.RestoreSpec
    kept: pg.Connection | None = None
    per_table: int = SAMPLE_ROWS

    def on(self, where: Where) -> pg.Connection:
        if self.kept is not None:
            return self.kept
        if not where.container:  # a scratch cluster on this host: its socket directory and port
            host, port = where.address.rsplit(":", 1)
            return pg.Connection(mode="host", login_unix_socket=host, login_port=int(port), login_user="postgres", maintenance_db="postgres")
        # in the drill container: its local socket, as the container's postgres user
        return dataclasses.replace(self.conn, mode="docker", container=where.container, login_host="", login_unix_socket="")

    def ready(self, where: Where) -> None:
        pg.query(self.on(where), "SELECT 1;")

    def engine(self, where: Where) -> Restore:
        return Restore(RestoreRequest(self.on(where), self.database, self.spec))

    def sample(self, where: Where, entry: t.Mapping[str, t.Any]) -> tuple[list[str], dict[str, t.Any]]:
        conn = self.on(where)
        problems = []
        compared = tables = 0
        if os.path.isdir(entry["path"]) or not entry["path"].endswith((".sql.gz", ".sql.zst", ".sql")):
            return [], {"rows": 0, "note": "the row sample reads plain SQL dumps only; the row counts were compared"}
        for table, rows in sorted(dump_sample(entry["path"], self.per_table).items()):
            if not rows:
                continue
            schema, name = table.split(".", 1)
            sql = "COPY (SELECT * FROM ONLY %s.%s LIMIT %d) TO STDOUT" % (quote(schema), quote(name), len(rows))
            got = run(conn.command("psql", pg.psql_args() + ["-c", sql], self.database)).stdout.split(b"\n")
            got = [g for g in got if g]
            compared += len(rows)
            tables += 1
            if got != rows:
                problems.append(
                    "table %s: the first %d rows restored differ from the dump's (a sample of rows; the dump has %r, "
                    "the restore %r)" % (table, len(rows), rows[0][:80], (got or [b""])[0][:80])
                )
        return problems, {"rows": compared, "tables": tables}

    def cleanup(self, where: Where) -> list[str]:
        if self.kept is None:
            return []  # the container goes, with its data
        try:
            pg.drop_database(self.kept, self.database)
        except BackupError as exc:
            return ["could not drop %s on the drill server: %s" % (self.database, exc.msg)]
        return []


class HostScratch:
    """Host mode: a scratch cluster from the binaries of the production server's major version
    (``/usr/lib/postgresql/<major>/bin``), in a temp directory, listening only on a socket there
    on a free port, run as the OS user ``postgres``; stopped and deleted afterwards."""

    def __init__(self, conn: pg.Connection, lib: str = "/usr/lib/postgresql", user: str = "postgres") -> None:
        self.conn, self.lib, self.user = conn, lib, user
        self.base = ""
        self.bindir = ""

    def cannot(self, why: str) -> DrillError:
        return DrillError("the postgresql drill cannot run: %s" % why, drill={"ran": False, "why": why})

    def _as_user(self, *argv: str) -> None:
        run(Command(("runuser", "-u", self.user, "--") + argv, stage=os.path.basename(argv[0])), timeout=300)

    def start(self) -> Where:
        major = pg.server_version(self.conn).split(".")[0].split()[0]  # a read of the production server, nothing more
        self.bindir = os.path.join(self.lib, major, "bin")
        if not os.path.exists(os.path.join(self.bindir, "initdb")):
            raise self.cannot("no initdb of PostgreSQL %s in %s on this host, to start a scratch server from the server's "
                              "own binaries (install postgresql-%s, or set postgresql_drill_target)" % (major, self.bindir, major))
        try:
            pwd.getpwnam(self.user)
        except KeyError:
            raise self.cannot("there is no OS user %s to run a scratch server as" % self.user) from None
        if shutil.which("runuser") is None:
            raise self.cannot("runuser is not installed (util-linux)")
        self.base = tempfile.mkdtemp(prefix="cclite-drill-postgresql-", dir="/var/tmp")
        os.chmod(self.base, 0o700)
        shutil.chown(self.base, self.user)
        data = os.path.join(self.base, "data")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self._as_user(os.path.join(self.bindir, "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8")
        self._as_user(os.path.join(self.bindir, "pg_ctl"), "-D", data, "-w", "-l", os.path.join(self.base, "log"), "-o",
                      "-p %d -k %s -c listen_addresses=''" % (port, self.base), "start")
        return Where("", "%s:%d" % (self.base, port), "a scratch PostgreSQL %s in %s (port %d, socket only)" % (major, self.base, port))

    def logs(self) -> str:
        try:
            with open(os.path.join(self.base, "log"), encoding="utf-8", errors="replace") as handle:
                return handle.read()[-800:]
        except OSError:
            return ""

    def remove(self) -> list[str]:
        if not self.base:
            return []
        problems = []
        data = os.path.join(self.base, "data")
        if os.path.exists(os.path.join(data, "postmaster.pid")):
            stop = subprocess.run(["runuser", "-u", self.user, "--", os.path.join(self.bindir, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop"],
                                  capture_output=True, text=True, check=False, cwd="/")
            if stop.returncode != 0:
                problems.append("could not stop the scratch server in %s: %s" % (self.base, stop.stderr.strip()[-300:]))
        if not problems:
            shutil.rmtree(self.base, ignore_errors=True)
        self.base = ""
        return problems


def quote(identifier: str) -> str:
    return '"%s"' % identifier.replace('"', '""')
