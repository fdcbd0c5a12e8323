# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What PostgreSQL brings to a restore drill (``_core._drill``): its restore engine on the drill
server, and a sample of every table's rows from the dump compared with the restored table."""

from __future__ import annotations

import dataclasses
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core import _restore
from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import ArtifactReader
from ansible_collections.cclite.backup.plugins.module_utils._core._drill import Where
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import BackupError
from ansible_collections.cclite.backup.plugins.module_utils._core._process import run
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


def quote(identifier: str) -> str:
    return '"%s"' % identifier.replace('"', '""')
