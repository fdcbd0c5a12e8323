# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PostgreSQL engine: connections, queries, consistent dumps, loading and swapping databases.

The client tools run where the server's tools are (inside the container in docker mode, so
their version matches the server's). Connection settings reach them as libpq environment
variables (``PGHOST``, ``PGPASSWORD``, ...), never as arguments.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import subprocess
import threading
import time
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core import _progress
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import ConfigError, RestoreError, StageError, with_hint
from ansible_collections.cclite.backup.plugins.module_utils._core._restore import Count
from ansible_collections.cclite.backup.plugins.module_utils._core._process import Command, Target, run, start

DUMP_COMPLETE = b"-- PostgreSQL database dump complete"
SENTINEL = "__CCLITE_BACKUP_END__"
MAX_IDENTIFIER = 63
# Debian's client tools (/usr/bin/psql, pg_dump, ...) are links to pg_wrapper, a Perl script that
# picks one of the versions installed under PG_LIB: about 40 ms a call, and a restore makes a
# dozen calls. With one version installed there is nothing to pick (see host_tool).
PG_WRAPPER = "/usr/share/postgresql-common/pg_wrapper"
PG_LIB = "/usr/lib/postgresql"

# Every ordinary table (partitions included, partitioned parents excluded: their rows are
# counted in their partitions), counted exactly, one JSON object a line.
COUNT_TABLES_SQL = r"""
SELECT format('SELECT json_build_object(''table'', %L, ''rows'', count(*))::text FROM %I.%I',
              n.nspname || '.' || c.relname, n.nspname, c.relname)
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r'
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg\_toast%'
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                    WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
 ORDER BY n.nspname, c.relname
\gexec
"""


@dataclasses.dataclass(frozen=True)
class Connection:
    """Where the server is and how to log in."""

    mode: str = "docker"  # docker | host
    container: str = "cc-lite-postgres"
    container_user: str = "postgres"
    run_as: str = ""
    login_host: str = ""
    login_port: int = 5432
    login_user: str = "postgres"
    login_password: str = ""
    login_unix_socket: str = ""
    ssl_mode: str = "prefer"
    ca_cert: str = ""
    maintenance_db: str = "postgres"
    connect_timeout: int = 10

    def target(self) -> Target:
        if self.mode == "docker":
            if not self.container:
                raise ConfigError("mode docker needs the container's name (postgresql_backup_container)")
            return Target(container=self.container, container_user=self.container_user)
        if self.mode != "host":
            raise ConfigError("unknown mode %r: use docker or host" % self.mode)
        return Target(run_as=self.run_as)

    def env(self, database: str) -> dict[str, str]:
        env = {
            "PGDATABASE": database,
            "PGPORT": str(self.login_port),
            "PGUSER": self.login_user,
            "PGSSLMODE": self.ssl_mode,
            "PGAPPNAME": "cclite.backup",
            "PGCONNECT_TIMEOUT": str(self.connect_timeout),
        }
        host = self.login_host or self.login_unix_socket
        if host:
            env["PGHOST"] = host
        if self.ca_cert:
            env["PGSSLROOTCERT"] = self.ca_cert
        if self.login_password:
            env["PGPASSWORD"] = self.login_password
        return env

    def command(self, tool: str, args: t.Sequence[str], database: str = "") -> Command:
        return self.target().command(
            [tool if self.mode == "docker" else host_tool(tool)] + list(args), self.env(database or self.maintenance_db),
            secret_env={"PGPASSWORD"}, stage=tool,
        )

    def secrets(self) -> list[str]:
        return [self.login_password] if self.login_password else []

    def describe(self) -> str:
        where = self.target().describe()
        server = self.login_host or self.login_unix_socket or "the local socket"
        return "PostgreSQL at %s (port %d) from %s" % (server, self.login_port, where)


@functools.lru_cache(maxsize=None)
def host_tool(tool: str) -> str:
    """The program to run for ``tool`` on this host: ``tool`` itself (found on PATH), or, when that
    is Debian's pg_wrapper and exactly one version is installed, that version's binary, which is
    what the wrapper would run (PGCLUSTER set: the wrapper decides, as it would without us)."""
    found = shutil.which(tool)
    if not found or os.environ.get("PGCLUSTER") or os.path.realpath(found) != PG_WRAPPER:
        return tool
    try:
        versions = [v for v in os.listdir(PG_LIB) if os.path.isdir(os.path.join(PG_LIB, v, "bin"))]
    except OSError:
        return tool
    direct = os.path.join(PG_LIB, versions[0], "bin", tool) if len(versions) == 1 else ""
    return direct if direct and os.access(direct, os.X_OK) else tool


def psql_args(*variables: tuple[str, str]) -> list[str]:
    args = ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "--no-password"]
    for name, value in variables:
        args += ["-v", "%s=%s" % (name, value)]
    return args


def query(conn: Connection, sql: str, database: str = "", variables: t.Sequence[tuple[str, str]] = ()) -> list[str]:
    """Run SQL (from stdin) and return the output lines."""
    try:
        result = run(conn.command("psql", psql_args(*variables) + ["-f", "-"], database), stdin=sql.encode())
    except StageError as exc:
        raise StageError(explain(exc.msg, conn), **exc.details) from exc
    return [line for line in result.stdout.decode("utf-8", errors="replace").splitlines() if line]


def explain(message: str, conn: Connection) -> str:
    """Add the likely fix to the errors people meet first."""
    hints = (
        ("password authentication failed", "check postgresql_backup_login_password (it is never shown)"),
        ("no password supplied", "set postgresql_backup_login_password, or use peer authentication"),
        ("does not exist", "check the database and role names"),
        ("No such container", "start the container (docker compose up -d) or set postgresql_backup_container"),
        ("is not running", "start the container (docker compose up -d)"),
        ("Connection refused", "is PostgreSQL running and listening on that host and port?"),
        ("could not connect", "is PostgreSQL running? check login_host / login_port / login_unix_socket"),
        ("Is the server running", "is PostgreSQL running? check login_host / login_port / login_unix_socket"),
    )
    return with_hint(message, hints)


def server_version(conn: Connection) -> str:
    return query(conn, "SHOW server_version;")[0].strip()


def tool_version(conn: Connection, tool: str = "pg_dump") -> str:
    return run(conn.target().command([tool, "--version"], stage=tool)).stdout.decode().strip()


@dataclasses.dataclass(frozen=True)
class ServerFacts:
    """What one query tells about the server and a database on it."""

    version: str
    database: dict[str, str] | None  # owner, encoding, locale and privileges; None: it does not exist


def server_facts(conn: Connection, database: str) -> ServerFacts:
    """The server's version and a database's settings, in one round trip (each psql call is a
    process, and in docker mode a ``docker exec``)."""
    rows = query(
        conn,
        "SELECT json_build_object('version', current_setting('server_version'), 'database',"
        " (SELECT json_build_object('owner', pg_get_userbyid(datdba), 'encoding', pg_encoding_to_char(encoding),"
        " 'collate', datcollate, 'ctype', datctype, 'acl', datacl::text)"
        " FROM pg_database WHERE datname = :'db'))::text;",
        variables=[("db", database)],
    )
    facts = json.loads(rows[0])
    return ServerFacts(facts["version"].strip(), facts["database"])


def parse_counts(lines: t.Iterable[str]) -> dict[str, int]:
    counts = {}
    for line in lines:
        try:
            row = json.loads(line)
            counts[row["table"]] = int(row["rows"])
        except (ValueError, KeyError, TypeError) as exc:
            raise StageError("unexpected output while counting rows: %r (%s)" % (line[:200], exc)) from exc
    return counts


def count_rows(conn: Connection, database: str) -> dict[str, int]:
    return parse_counts(query(conn, COUNT_TABLES_SQL, database))


class Session:
    """A long-lived psql process: statements in, lines out, ended by a sentinel line."""

    def __init__(self, conn: Connection, database: str) -> None:
        self.cmd = conn.command("psql", psql_args() + ["-f", "-"], database)
        self.conn = conn
        self.child = start(self.cmd, stdin=subprocess.PIPE)
        self.proc = self.child.proc

    def _stderr(self) -> str:
        return self.child.stderr()

    def execute(self, sql: str) -> list[str]:
        if self.proc.stdin is None or self.proc.stdout is None:
            raise StageError("psql has no pipes")
        try:
            self.proc.stdin.write(("%s\n\\echo %s\n" % (sql, SENTINEL)).encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        lines = []
        while True:
            raw = self.proc.stdout.readline()
            if not raw:
                self.proc.wait()
                raise StageError(explain("psql failed: %s" % (self._stderr() or "(no error output)"), self.conn))
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            if line == SENTINEL:
                return [x for x in lines if x]
            lines.append(line)

    def close(self) -> None:
        self.child.close(grace=30)

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ConsistentDump:
    """A dump, and with ``count_rows`` table row counts from the same snapshot.

    Counting, a REPEATABLE READ transaction exports its snapshot; pg_dump runs with
    ``--snapshot`` and the same session counts the rows of every table meanwhile, so the counts
    in the manifest describe exactly the data in the dump, even on a busy server.
    """

    def __init__(self, conn: Connection, database: str, dump_options: t.Sequence[str] = (), count_rows: bool = True):
        self.conn = conn
        self.database = database
        self.dump_options = list(dump_options)
        self.count_rows = count_rows
        self.counts: dict[str, int] = {}
        self._errors: list[BaseException] = []
        self._thread: threading.Thread | None = None
        self.session: Session | None = None

    def start(self) -> Command:
        """Return the pg_dump command to run; counting rows, open the snapshot and start counting.

        Without counting, pg_dump's own snapshot is the consistent one: no session is opened.
        """
        args = ["--format=plain", "--no-password"] + self.dump_options
        # a consistent set holds until the application is paused, then fixes the point in an
        # instant: an exported snapshot, not pg_dump's own (taken after it started and connected)
        export = self.count_rows or _progress.holding()
        if not export:
            _progress.fixed_on_first_output()  # pg_dump writes only once its snapshot is taken
        if export:
            self.session = Session(self.conn, self.database)
            _progress.hold()
            self.session.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;")
            snapshot = self.session.execute("SELECT pg_export_snapshot();")[0].strip()
            _progress.point_fixed()  # the dump (and the counts) read this snapshot
            if self.count_rows:
                self._thread = threading.Thread(target=self._count, args=(self.session,), daemon=True)
                self._thread.start()
            args.insert(2, "--snapshot=%s" % snapshot)
        return self.conn.command("pg_dump", args, self.database)

    def _count(self, session: Session) -> None:
        try:
            self.counts = parse_counts(session.execute(COUNT_TABLES_SQL))
        except BaseException as exc:
            self._errors.append(exc)

    def finish(self) -> dict[str, int]:
        if self._thread is not None:
            self._thread.join()
        if self._errors:
            raise self._errors[0]
        if self.session is not None:
            self.session.execute("COMMIT;")
        return self.counts

    def close(self) -> None:
        if self.session is None:
            return
        if self._thread is not None and self._thread.is_alive():
            self.session.proc.kill()
            self._thread.join(timeout=10)
        self.session.close()


class DumpComplete:
    """Content check: a plain dump that pg_dump finished ends with its 'dump complete' line."""

    WINDOW = 64 * 1024

    def __init__(self) -> None:
        self._tail = b""
        self.size = 0

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if len(chunk) >= self.WINDOW:  # the whole window is in this chunk: copy only its end
            self._tail = chunk[-self.WINDOW:]
        else:
            self._tail = (self._tail + chunk)[-self.WINDOW:]

    def result(self) -> str | None:
        if DUMP_COMPLETE not in self._tail:
            return "the SQL does not end with pg_dump's 'dump complete' line: the dump was cut short"
        return None


def _identifier(text: str, pos: int) -> tuple[str, int]:
    """One identifier as pg_dump writes it (quoted when needed) at ``pos``; returns it and the end."""
    if text.startswith('"', pos):
        out = []
        pos += 1
        while pos < len(text):
            if text[pos] == '"':
                if text.startswith('""', pos):
                    out.append('"')
                    pos += 2
                    continue
                return "".join(out), pos + 1
            out.append(text[pos])
            pos += 1
        raise ValueError("unterminated quoted identifier")
    end = pos
    while end < len(text) and text[end] not in ". (":
        end += 1
    return text[pos:end], end


def copy_table(line: bytes) -> str | None:
    """``schema.table`` (unquoted, as the row counts name it) of a ``COPY ... FROM stdin;`` line."""
    if not (line.startswith(b"COPY ") and line.endswith(b" FROM stdin;")):
        return None
    text = line.decode("utf-8", errors="replace")
    try:
        schema, pos = _identifier(text, 5)
        if not text.startswith(".", pos):
            return None
        table, _pos = _identifier(text, pos + 1)
    except ValueError:
        return None
    return "%s.%s" % (schema, table)


class DumpStats(DumpComplete):
    """Content check that also counts the rows of every table in the dump as it streams by.

    pg_dump writes each table's data as ``COPY schema.table (...) FROM stdin;``, one line per
    row (newlines in values are escaped), ended by a ``\\.`` line. Counting those lines gives
    exactly what the dump holds (tables whose data is excluded have no block), at the cost
    of counting newlines in data that is decompressed anyway. Memory stays constant: of a
    line split between chunks, at most ``LINE_CAP`` bytes are kept.
    """

    LINE_CAP = 1024 * 1024

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, int] = {}
        self._table: str | None = None
        self._rows = 0
        self._line = bytearray()  # the start of a line split between chunks
        self._long = False  # that line is longer than LINE_CAP

    def _keep(self, part: bytes) -> None:
        room = self.LINE_CAP - len(self._line)
        if len(part) > room:
            self._long = True
        self._line += part[: max(room, 0)]

    def _take(self, part: bytes) -> tuple[bytes, bool]:
        self._keep(part)
        line, long = bytes(self._line), self._long
        self._line.clear()
        self._long = False
        return line, long

    def _end_copy(self) -> None:
        if self._table is not None:
            self.tables[self._table] = self.tables.get(self._table, 0) + self._rows
        self._table = None

    def feed(self, chunk: bytes) -> None:
        super().feed(chunk)
        pos, size = 0, len(chunk)
        while pos < size:
            nl = chunk.find(b"\n", pos)
            if self._table is None or self._line or self._long:
                # a header line, or the end of a line split between chunks
                if nl < 0:
                    self._keep(chunk[pos:])
                    return
                line, long = self._take(chunk[pos:nl])
                pos = nl + 1
                if self._table is None:
                    table = None if long else copy_table(line)
                    if table is not None:
                        self._table, self._rows = table, 0
                elif not long and line == b"\\.":
                    self._end_copy()
                else:
                    self._rows += 1
                continue
            # in a COPY block, at the start of a line
            if chunk.startswith(b"\\.\n", pos):
                self._end_copy()
                pos += 3
                continue
            # the end line starts with a backslash, which most data never holds: looking for
            # one (memchr) first spares a search for the whole marker in almost every chunk
            end = chunk.find(b"\n\\.\n", pos) if chunk.find(b"\\", pos) >= 0 else -1
            if end >= 0:
                self._rows += chunk.count(b"\n", pos, end + 1)
                self._end_copy()
                pos = end + 4
                continue
            last = chunk.rfind(b"\n", pos)
            if last >= 0:
                self._rows += chunk.count(b"\n", pos, last + 1)
                pos = last + 1
            self._keep(chunk[pos:])
            return

    def result(self) -> str | None:
        problem = super().result()
        if problem is None and self._table is not None:
            return "the data of %s is cut short: its COPY block has no end" % self._table
        return problem

    def stats(self) -> dict[str, t.Any]:
        return {"tables": dict(self.tables), "table_count": len(self.tables),
                "total_rows": sum(self.tables.values()), "counted": "dump"}


def table_counts(expected: t.Mapping[str, int], actual: t.Mapping[str, int]) -> list[Count]:
    """Every table's row count against the manifest's, for ``_restore.compare``."""
    return [Count("table %s" % n, "rows", actual.get(n), expected.get(n)) for n in sorted(set(expected) | set(actual))]


def scratch_name(base: str, tag: str) -> str:
    """A database name derived from ``base`` that fits PostgreSQL's 63-byte limit."""
    suffix = "__%s" % tag
    return base.encode()[: MAX_IDENTIFIER - len(suffix)].decode("utf-8", errors="ignore") + suffix


def create_database(conn: Connection, name: str, like: t.Mapping[str, str] | None) -> None:
    """Create an empty database from template0, with the owner, encoding, locale and
    privileges of ``like`` (an existing database) when given."""
    like = like or {}
    sql = (
        "SELECT format('CREATE DATABASE %I TEMPLATE template0' || CASE WHEN :'owner' <> '' THEN format(' OWNER %I', :'owner') ELSE '' END"
        " || CASE WHEN :'encoding' <> '' THEN format(' ENCODING %L LC_COLLATE %L LC_CTYPE %L', :'encoding', :'collate', :'ctype') ELSE '' END,"
        " :'db') \\gexec\n"
    )
    if like.get("acl"):
        sql += (
            "SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'db') \\gexec\n"
            "SELECT format('GRANT %s ON DATABASE %I TO %s', a.privilege_type, :'db',"
            " CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END)"
            " FROM aclexplode(:'acl'::aclitem[]) a \\gexec\n"
        )
    query(
        conn,
        sql,
        variables=[
            ("db", name),
            ("owner", like.get("owner", "")),
            ("encoding", like.get("encoding", "")),
            ("collate", like.get("collate", "")),
            ("ctype", like.get("ctype", "")),
            ("acl", like.get("acl") or "{}"),
        ],
    )


def drop_database(conn: Connection, name: str) -> None:
    query(conn, "SELECT format('DROP DATABASE IF EXISTS %I WITH (FORCE)', :'db') \\gexec\n", variables=[("db", name)])


def load(conn: Connection, database: str, chunks: t.Iterable[bytes]) -> None:
    """Feed a plain SQL dump to psql in one transaction; any error rolls all of it back."""
    cmd = conn.command("psql", psql_args() + ["--single-transaction", "-f", "-"], database)
    with start(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL) as child:
        try:
            for chunk in chunks:
                child.stdin.write(chunk)
            child.stdin.close()
        except BrokenPipeError:
            pass  # psql stopped reading: its exit status and stderr say why
        child.wait()
        if child.returncode != 0:
            raise StageError("loading the dump into %s failed: %s" % (database, child.stderr() or "(no error output)"), stage="psql")


def swap(conn: Connection, database: str, replacement: str, previous: str, wait_seconds: float = 30.0) -> None:
    """Put ``replacement`` in the place of ``database``, keeping the old one as ``previous``.

    New connections to ``database`` are refused first and open ones ended; the two renames
    run in one transaction, so either both happen or neither. On failure, connections are
    allowed again and ``database`` is as it was.
    """
    variables = [("db", database), ("new", replacement), ("old", previous)]
    query(conn, "SELECT format('ALTER DATABASE %I ALLOW_CONNECTIONS false', :'db') \\gexec\n", variables=variables)
    try:
        deadline = time.monotonic() + wait_seconds
        while True:
            left = query(
                conn,
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = :'db' AND pid <> pg_backend_pid();",
                variables=variables,
            )
            if left and left[0].strip() == "0":
                break
            if time.monotonic() > deadline:
                raise RestoreError(
                    "sessions on %s did not end within %g seconds; stop the application and run again" % (database, wait_seconds)
                )
            time.sleep(0.5)
        query(
            conn,
            "BEGIN;\n"
            "SELECT format('ALTER DATABASE %I RENAME TO %I', :'db', :'old') \\gexec\n"
            "SELECT format('ALTER DATABASE %I RENAME TO %I', :'new', :'db') \\gexec\n"
            "COMMIT;\n",
            variables=variables,
        )
    except BaseException:
        query(
            conn,
            "SELECT format('ALTER DATABASE %I ALLOW_CONNECTIONS true', :'db') \\gexec\n",
            variables=variables,
        )
        raise


def analyze(conn: Connection, database: str) -> None:
    query(conn, "ANALYZE;", database)


def connection_argument_spec() -> dict[str, t.Any]:
    """Connection options shared by every PostgreSQL module (doc fragment cclite.backup.postgresql)."""
    return {
        "mode": {"type": "str", "default": "docker", "choices": ["docker", "host"]},
        "container": {"type": "str", "default": "cc-lite-postgres"},
        "container_user": {"type": "str", "default": "postgres"},
        "run_as": {"type": "str", "default": ""},
        "login_host": {"type": "str", "default": ""},
        "login_port": {"type": "int", "default": 5432, "aliases": ["port"]},
        "login_user": {"type": "str", "default": "postgres"},
        "login_password": {"type": "str", "default": "", "no_log": True},
        "login_unix_socket": {"type": "str", "default": ""},
        "ssl_mode": {
            "type": "str",
            "default": "prefer",
            "choices": ["allow", "disable", "prefer", "require", "verify-ca", "verify-full"],
        },
        "ca_cert": {"type": "str", "default": "", "aliases": ["ssl_rootcert"]},
        "maintenance_db": {"type": "str", "default": "postgres"},
        "connect_timeout": {"type": "int", "default": 10},
    }


def connection_from(params: t.Mapping[str, t.Any]) -> Connection:
    return Connection(**{name: params[name] for name in connection_argument_spec()})
