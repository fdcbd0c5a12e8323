# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PostgreSQL helpers that need no server: connection argv/env, parsing, names, content check.

Where a test needs a client tool (docker, psql), a stand-in script on PATH records what it was
given: argv and environment are checked at the real process boundary.
"""

from __future__ import annotations

import pytest

from ansible_collections.cclite.backup.plugins.module_utils._core._restore import compare
from ansible_collections.cclite.backup.plugins.module_utils._engines.postgresql import _client as pg
from ansible_collections.cclite.backup.plugins.module_utils._engines.postgresql import _engine as pg_ops
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import BackupError, ConfigError, StageError
from ansible_collections.cclite.backup.plugins.module_utils._core._process import GUARD, REDACTED, run

PASSWORD = "pa55-w0rd-that-must-not-leak"


@pytest.fixture(autouse=True)
def no_pg_wrapper(monkeypatch):
    """The commands these tests expect name the tool as given, whatever this machine has installed."""
    monkeypatch.setattr(pg, "PG_WRAPPER", "/nonexistent/pg_wrapper")
    pg.host_tool.cache_clear()
    yield
    pg.host_tool.cache_clear()


def test_host_tool_skips_debians_wrapper_only_when_it_has_one_version_to_pick(tmp_path, monkeypatch):
    wrapper, lib, path = tmp_path / "pg_wrapper", tmp_path / "lib", tmp_path / "bin"
    wrapper.write_text("#!/bin/sh\n")
    wrapper.chmod(0o755)
    path.mkdir()
    (path / "psql").symlink_to(wrapper)
    (path / "pg_dump").write_text("#!/bin/sh\n")  # not the wrapper: a build of its own
    (path / "pg_dump").chmod(0o755)
    for version in ("15",):
        (lib / version / "bin").mkdir(parents=True)
        for tool in ("psql", "pg_dump"):
            (lib / version / "bin" / tool).write_text("#!/bin/sh\n")
            (lib / version / "bin" / tool).chmod(0o755)
    monkeypatch.setattr(pg, "PG_WRAPPER", str(wrapper))
    monkeypatch.setattr(pg, "PG_LIB", str(lib))
    monkeypatch.setenv("PATH", str(path))
    monkeypatch.delenv("PGCLUSTER", raising=False)

    def tool(name):
        pg.host_tool.cache_clear()
        return pg.host_tool(name)

    assert tool("psql") == str(lib / "15" / "bin" / "psql")
    assert pg.Connection(mode="host").command("psql", ["-X"]).argv == (str(lib / "15" / "bin" / "psql"), "-X")
    assert pg.Connection(mode="docker").command("psql", ["-X"]).argv[-2:] == ("psql", "-X")  # the container's own
    assert tool("pg_dump") == "pg_dump"  # what PATH finds first is not the wrapper
    assert tool("pg_restore") == "pg_restore"  # not on PATH: the error names it as before
    monkeypatch.setenv("PGCLUSTER", "15/main")
    assert tool("psql") == "psql"  # the wrapper decides
    monkeypatch.delenv("PGCLUSTER")
    (lib / "16" / "bin").mkdir(parents=True)
    assert tool("psql") == "psql"  # two versions: the wrapper picks


def test_docker_command_passes_the_password_by_name_only():
    conn = pg.Connection(mode="docker", container="cc-lite-postgres", login_password=PASSWORD)
    cmd = conn.command("pg_dump", ["--format=plain", "--no-password"], "app")
    assert cmd.argv == (
        "docker", "exec", "-i", "-u", "postgres",
        "-e", "PGAPPNAME", "-e", "PGCONNECT_TIMEOUT", "-e", "PGDATABASE", "-e", "PGPASSWORD",
        "-e", "PGPORT", "-e", "PGSSLMODE", "-e", "PGUSER",
        "cc-lite-postgres", "pg_dump", "--format=plain", "--no-password",
    )
    assert not any(PASSWORD in arg for arg in cmd.argv)
    assert cmd.env == {
        "PGDATABASE": "app", "PGPORT": "5432", "PGUSER": "postgres", "PGSSLMODE": "prefer",
        "PGAPPNAME": "cclite.backup", "PGCONNECT_TIMEOUT": "10", "PGPASSWORD": PASSWORD,
    }
    assert cmd.environ()["PGPASSWORD"] == PASSWORD
    assert cmd.secrets() == [PASSWORD] and conn.secrets() == [PASSWORD]
    assert PASSWORD not in cmd.display() and cmd.name == "pg_dump"


def test_docker_command_at_the_process_boundary(tmp_path, fake_program):
    argv_file, password_file = tmp_path / "argv", tmp_path / "password"
    fake_program("docker", 'printf "%%s\\n" "$@" > "%s"; printf "%%s" "$PGPASSWORD" > "%s"' % (argv_file, password_file))
    conn = pg.Connection(mode="docker", container="db", login_password=PASSWORD)
    run(conn.command("psql", ["-c", "SELECT 1"], "app"))
    assert password_file.read_text() == PASSWORD  # docker exec -e PGPASSWORD copies it from its environment
    argv = argv_file.read_text().splitlines()
    assert PASSWORD not in argv_file.read_text()
    assert argv[:4] == ["exec", "-i", "-u", "postgres"]
    # with no input of ours, the command runs under the guard that kills it when docker exec dies
    assert argv[argv.index("db"):] == ["db", "sh", "-c", GUARD, "sh", "psql", "-c", "SELECT 1"]
    assert "PGPASSWORD" in argv


def test_no_password_no_variable():
    cmd = pg.Connection(mode="docker", container="db", container_user="").command("psql", [])
    assert "PGPASSWORD" not in cmd.env and "PGPASSWORD" not in cmd.argv and "-u" not in cmd.argv
    assert cmd.env["PGDATABASE"] == "postgres"  # the maintenance database by default
    assert cmd.secrets() == []


def test_host_mode_argv():
    conn = pg.Connection(mode="host", login_host="db.example.org", login_port=5433, login_password=PASSWORD,
                         ca_cert="/etc/ssl/ca.pem", ssl_mode="verify-full")
    cmd = conn.command("pg_dump", ["--format=plain"], "app")
    assert cmd.argv == ("pg_dump", "--format=plain")
    assert cmd.env["PGHOST"] == "db.example.org" and cmd.env["PGPORT"] == "5433"
    assert cmd.env["PGSSLROOTCERT"] == "/etc/ssl/ca.pem" and cmd.env["PGSSLMODE"] == "verify-full"
    assert cmd.env["PGPASSWORD"] == PASSWORD


def test_host_mode_with_run_as_uses_runuser():
    conn = pg.Connection(mode="host", run_as="postgres", login_unix_socket="/var/run/postgresql")
    cmd = conn.command("psql", ["-X", "-c", "SELECT 1"], "app")
    assert cmd.argv == ("runuser", "-u", "postgres", "--", "psql", "-X", "-c", "SELECT 1")
    assert cmd.env["PGHOST"] == "/var/run/postgresql" and cmd.name == "psql"


def test_login_host_wins_over_the_socket():
    conn = pg.Connection(mode="host", login_host="10.0.0.5", login_unix_socket="/tmp")
    assert conn.env("x")["PGHOST"] == "10.0.0.5"
    assert "PGHOST" not in pg.Connection(mode="host").env("x")


@pytest.mark.parametrize("kwargs, message", [
    ({"mode": "docker", "container": ""}, "mode docker needs the container's name"),
    ({"mode": "kubernetes"}, "unknown mode 'kubernetes'"),
])
def test_bad_connection(kwargs, message):
    with pytest.raises(ConfigError) as err:
        pg.Connection(**kwargs).command("psql", [])
    assert message in err.value.msg


def test_describe():
    assert pg.Connection(container="db").describe() == "PostgreSQL at the local socket (port 5432) from container db"
    assert pg.Connection(mode="host", login_host="h", login_port=6543).describe() == "PostgreSQL at h (port 6543) from this host"


def test_connection_from_the_argument_spec_defaults():
    params = {name: spec.get("default") for name, spec in pg.connection_argument_spec().items()}
    assert pg.connection_from(params) == pg.Connection()
    assert pg.connection_argument_spec()["login_password"]["no_log"] is True


def test_psql_args():
    assert pg.psql_args() == ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "--no-password"]
    assert pg.psql_args(("db", "app"), ("owner", "")) == [
        "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "--no-password", "-v", "db=app", "-v", "owner=",
    ]


def test_query_at_the_process_boundary(tmp_path, fake_program):
    sql_seen = tmp_path / "stdin.sql"
    fake_program("psql", 'cat > "%s"; printf \'{"table": "public.a", "rows": 2}\\n\\n{"table": "s.b", "rows": 0}\\n\'' % sql_seen)
    conn = pg.Connection(mode="host")
    lines = pg.query(conn, "SELECT 1;", "app", variables=[("db", "app")])
    assert lines == ['{"table": "public.a", "rows": 2}', '{"table": "s.b", "rows": 0}']  # empty lines dropped
    assert sql_seen.read_text() == "SELECT 1;"
    assert pg.parse_counts(lines) == {"public.a": 2, "s.b": 0}


def test_query_failure_is_explained_and_redacted(fake_program):
    fake_program("psql", 'echo "psql: error: FATAL:  password authentication failed for user \\"postgres\\" (tried $PGPASSWORD)" >&2; exit 2')
    conn = pg.Connection(mode="host", login_password=PASSWORD)
    with pytest.raises(StageError) as err:
        pg.query(conn, "SELECT 1;")
    assert err.value.msg == (
        'psql failed with exit status 2: psql: error: FATAL:  password authentication failed for user "postgres" (tried %s)'
        " (check postgresql_backup_login_password (it is never shown))" % REDACTED
    )
    assert err.value.details == {"rc": 2, "stage": "psql"}


def test_parse_counts():
    lines = ['{"table": "public.users", "rows": 3}', '{"table": "sales.\\"Order\\"", "rows": "12"}']
    assert pg.parse_counts(lines) == {"public.users": 3, 'sales."Order"': 12}
    assert pg.parse_counts([]) == {}


def test_compare_counts():
    expected = {"public.a": 3, "public.b": 5, "public.c": 1}
    actual = {"public.a": 3, "public.b": 4, "public.d": 0}
    assert compare(pg.table_counts(expected, actual)) == [
        "table public.b has 4 rows, the manifest says 5",
        "table public.c is missing (1 rows expected)",
    ]
    # an empty table that is not in the manifest (its data was left out of the dump) is fine;
    # one with rows is not
    assert compare(pg.table_counts(expected, dict(actual, **{"public.d": 2})))[-1] == "table public.d is not in the manifest"
    assert compare(pg.table_counts(expected, dict(expected))) == []


@pytest.mark.parametrize("base, tag, expected", [
    ("app", "restore", "app__restore"),
    ("a" * 100, "restore", "a" * 54 + "__restore"),
    ("x" * 63, "pre_restore_20250101_120000", "x" * 34 + "__pre_restore_20250101_120000"),
])
def test_scratch_name(base, tag, expected):
    name = pg.scratch_name(base, tag)
    assert name == expected and len(name.encode()) <= pg.MAX_IDENTIFIER


def test_scratch_name_never_cuts_a_character():
    base = "datenbank_" + "ü" * 40  # two bytes each
    name = pg.scratch_name(base, "restore")
    assert len(name.encode()) <= 63 and name.endswith("__restore")
    assert name == "datenbank_" + "ü" * 22 + "__restore"  # 10 + 44 bytes; the 23rd ü would not fit whole


def test_dump_complete():
    check = pg.DumpComplete()
    for chunk in (b"CREATE TABLE t (id int);\n" * 1000, b"--\n-- PostgreSQL database dump com", b"plete\n--\n\n"):
        check.feed(chunk)  # the closing line split across two chunks
    assert check.result() is None
    assert check.size == 25 * 1000 + len(b"--\n-- PostgreSQL database dump complete\n--\n\n")


def test_dump_complete_missing_or_not_at_the_end():
    cut = pg.DumpComplete()
    cut.feed(b"CREATE TABLE t (id int);\nCOPY t (id) FROM stdin;\n1\n")
    assert cut.result() == "the SQL does not end with pg_dump's 'dump complete' line: the dump was cut short"
    buried = pg.DumpComplete()
    buried.feed(b"-- PostgreSQL database dump complete\n")
    buried.feed(b"x" * (pg.DumpComplete.WINDOW + 1))  # a second dump appended and cut
    assert buried.result() is not None
    assert pg.DumpComplete().result() is not None  # nothing at all


@pytest.mark.parametrize("message, hint", [
    ('FATAL:  password authentication failed for user "postgres"', "check postgresql_backup_login_password (it is never shown)"),
    ("fe_sendauth: no password supplied", "set postgresql_backup_login_password, or use peer authentication"),
    ('FATAL:  database "nope" does not exist', "check the database and role names"),
    ("Error response from daemon: No such container: cc-lite-postgres", "start the container (docker compose up -d) or set"),
    ("Error response from daemon: container 0123 is not running", "start the container (docker compose up -d)"),
    ("connection to server failed: Connection refused", "is PostgreSQL running and listening on that host and port?"),
    ("psql: error: could not connect to server", "is PostgreSQL running? check login_host"),
])
def test_explain(message, hint):
    explained = pg.explain(message, pg.Connection())
    assert explained.startswith(message + " (") and hint in explained


def test_explain_leaves_other_messages_alone():
    assert pg.explain("ERROR:  syntax error at or near \"SELEC\"", pg.Connection()) == 'ERROR:  syntax error at or near "SELEC"'


# row counts from the dump itself ------------------------------------------------------------

DUMP = (
    b"--\n-- PostgreSQL database dump\n--\n\nSET statement_timeout = 0;\n"
    b"CREATE TABLE public.users (id integer, name text);\n\n"
    b"COPY public.users (id, name) FROM stdin;\n1\talice\n2\tbob\\nwith a newline\n3\t\\\\.\n\\.\n\n"
    b'COPY sales."Order" (id, "Note") FROM stdin;\n' + b"".join(b"%d\tnote %d\n" % (i, i) for i in range(500)) + b"\\.\n\n"
    b'COPY "we""ird".t2 ("Q")  FROM stdin;\n\\.\n\n'
    b"COPY public.empty (id) FROM stdin;\n\\.\n\n"
    b"SELECT pg_catalog.setval('public.users_id_seq', 3, true);\n"
    b"--\n-- PostgreSQL database dump complete\n--\n\n"
)
EXPECTED = {"public.users": 3, 'sales.Order': 500, 'we"ird.t2': 0, "public.empty": 0}


@pytest.mark.parametrize("size", [1, 2, 3, 4, 7, 64, 4096, len(DUMP)])
def test_dump_stats_counts_copy_rows_whatever_the_chunks(size):
    check = pg.DumpStats()
    for start in range(0, len(DUMP), size):
        check.feed(DUMP[start:start + size])
    assert check.result() is None
    assert check.stats() == {"tables": EXPECTED, "table_count": 4, "total_rows": 503, "counted": "dump"}


def test_dump_stats_keeps_constant_memory_on_a_huge_row():
    check = pg.DumpStats()
    check.feed(b"COPY public.blob (b) FROM stdin;\n1\t")
    for _part in range(5):
        check.feed(b"x" * pg.DumpStats.LINE_CAP)  # one row of 5 MiB, no newline yet
    assert len(check._line) <= pg.DumpStats.LINE_CAP
    check.feed(b"\n2\ty\n\\.\n-- PostgreSQL database dump complete\n")
    assert check.result() is None and check.stats()["tables"] == {"public.blob": 2}


def test_dump_stats_reports_a_copy_block_cut_short():
    check = pg.DumpStats()
    check.feed(b"COPY public.users (id) FROM stdin;\n1\n2\n")
    assert "dump complete" in check.result()
    check.feed(b"-- PostgreSQL database dump complete\n")  # the marker inside the data: still cut
    assert check.result() == "the data of public.users is cut short: its COPY block has no end"


@pytest.mark.parametrize("line, table", [
    (b"COPY public.users (id, name) FROM stdin;", "public.users"),
    (b'COPY "My Schema"."My ""Table""" (a) FROM stdin;', 'My Schema.My "Table"'),
    (b"COPY public.nocols  FROM stdin;", "public.nocols"),
    (b"COPY (SELECT 1) TO stdout;", None),
    (b"-- COPY public.users (id) FROM stdin;", None),
    (b'COPY "unterminated.t (a) FROM stdin;', None),
])
def test_copy_table(line, table):
    assert pg.copy_table(line) == table


def test_server_facts_in_one_query(fake_program):
    fake_program("psql", """cat >/dev/null; echo '{"version" : "15.8 (Debian 15.8-1)", "database" : {"owner" : "app", "encoding" : "UTF8"}}'""")
    facts = pg.server_facts(pg.Connection(mode="host"), "app")
    assert facts == pg.ServerFacts("15.8 (Debian 15.8-1)", {"owner": "app", "encoding": "UTF8"})


def test_probe_runs_the_query_and_pg_dump_side_by_side(fake_program, tmp_path):
    # each fake waits for the other to have started: run one after the other, they would time out
    started = tmp_path / "started"
    started.mkdir()
    wait = 'touch "%s/$1"; for i in $(seq 50); do [ -e "%s/$2" ] && break; sleep 0.1; done; [ -e "%s/$2" ] || exit 9' % (
        (started,) * 3)
    fake_program("psql", 'cat >/dev/null; set -- psql pg_dump; %s; echo \'{"version": "15.8", "database": null}\'' % wait)
    fake_program("pg_dump", 'set -- pg_dump psql; %s; echo "pg_dump (PostgreSQL) 15.8"' % wait)
    with pytest.raises(BackupError, match="database gone does not exist on PostgreSQL at the local socket"):
        pg_ops.probe(pg.Connection(mode="host"), "gone")
    fake_program("psql", 'cat >/dev/null; set -- psql pg_dump; %s; echo \'{"version": "15.8", "database": {"owner": "app"}}\'' % wait)
    (started / "psql").unlink()
    (started / "pg_dump").unlink()
    assert pg_ops.probe(pg.Connection(mode="host"), "app") == (
        {"server": "15.8", "tool": "pg_dump (PostgreSQL) 15.8"}, {"owner": "app"},
    )


def test_probe_names_a_missing_pg_dump(fake_program):
    fake_program("psql", """cat >/dev/null; echo '{"version": "15.8", "database": {}}'""")
    fake_program("pg_dump", "exit 127")
    with pytest.raises(StageError, match="pg_dump failed with exit status 127"):
        pg_ops.probe(pg.Connection(mode="host"), "app")


def test_a_dump_counted_from_its_own_data_opens_no_session(fake_program, tmp_path):
    opened = tmp_path / "psql-ran"
    fake_program("psql", 'touch "%s"; exit 3' % opened)
    dump = pg.ConsistentDump(pg.Connection(mode="host"), "app", ["--no-owner"], count_rows=False)
    cmd = dump.start()
    assert cmd.argv == ("pg_dump", "--format=plain", "--no-password", "--no-owner")
    assert dump.finish() == {}
    dump.close()
    assert not opened.exists()


# pass-through options (issue 18, item 6) ---------------------------------------------------


@pytest.mark.parametrize(
    "options, refused",
    [
        (["--file=/srv/elsewhere.sql"], "pg_dump --file is refused"),
        (["--file", "/srv/elsewhere.sql"], "--file"),
        (["--fil=/srv/x.sql"], "--fil (--file)"),
        (["-f", "/srv/x.sql"], "pg_dump -f is refused"),
        (["-f/srv/x.sql"], "pg_dump -f is refused"),
        (["-vf", "/srv/x.sql"], "pg_dump -f is refused"),
        (["-Fd"], "pg_dump -F is refused"),
        (["--format=custom"], "--format"),
        (["-Z9"], "pg_dump -Z is refused"),
        (["--compress=gzip:9"], "--compress"),
        (["-j", "4"], "pg_dump -j is refused"),
        (["--jobs=4"], "--jobs"),
        (["--dbname=postgresql://u:secret@h/db"], "--dbname"),
        (["-dpostgresql://u:secret@h/db"], "pg_dump -d is refused"),
        (["-h", "other"], "pg_dump -h is refused"),
        (["--port=5433"], "--port"),
        (["-W"], "pg_dump -W is refused"),
        (["--snapshot=0001"], "--snapshot"),
        (["--help"], "--help"),
        (["otherdb"], "a bare argument is refused"),
        (["--exclude-table", "x", "otherdb"], "a bare argument is refused"),
    ],
)
def test_dump_options_that_move_or_reshape_the_output_are_refused(options, refused):
    with pytest.raises(ConfigError) as err:
        pg_ops.check_dump_options(options)
    assert refused in err.value.msg
    assert "secret" not in err.value.msg and "/srv" not in err.value.msg  # values are never echoed
    assert err.value.msg.startswith("dump_options (postgresql_backup_dump_options): ")


def test_the_file_option_says_why():
    with pytest.raises(ConfigError) as err:
        pg_ops.content_for("dump", ["--file=/srv/elsewhere.sql"])
    assert err.value.msg == (
        "dump_options (postgresql_backup_dump_options): pg_dump --file is refused: it writes the "
        "dump to a file of its own choosing, outside the backup directory, uncompressed and unchecked; the dump goes to "
        "pg_dump's standard output, which cclite.backup compresses, checks and renames into the backup directory. "
        "Remove it from dump_options (postgresql_backup_dump_options)."
    )


@pytest.mark.parametrize(
    "options",
    [
        [],
        ["--exclude-table-data=audit_log"],
        ["--exclude-table-data", "audit_log", "--no-owner"],
        ["-T", "-f"],  # -T takes the next element as its value: a table named "-f"
        ["-n", "public", "-v"],
        ["--filter=/etc/cclite/filter.txt"],  # reads a list of objects; writes nothing
        ["-a"], ["--schema-only"], ["-x", "-O"],
        ["--rows-per-insert", "100", "--inserts"],
    ],
)
def test_other_dump_options_pass(options):
    pg_ops.check_dump_options(options)


def test_a_restore_keeping_fewer_than_one_replaced_database_is_refused(tmp_path):
    from ansible_collections.cclite.backup.plugins.module_utils._core._restore import RestoreSpec

    spec = RestoreSpec(pg_ops.catalog(str(tmp_path)), "latest", True, safety_backup=False, keep_previous=True)
    with pytest.raises(ConfigError, match=r"keep_previous_count is 0: give 1 or more .*or set keep_previous false to keep none; nothing was changed"):
        pg_ops.Restore(pg_ops.RestoreRequest(pg.Connection(mode="host"), "app", spec, keep_previous_count=0))
    spec.keep_previous = False  # nothing is kept: the count does not matter
    pg_ops.Restore(pg_ops.RestoreRequest(pg.Connection(mode="host"), "app", spec, keep_previous_count=0))


def test_the_kept_databases_of_one_database_newest_first(fake_program):
    fake_program("psql", "cat >/dev/null; printf '%s\\n' app__pre_restore_20250101000000 app__pre_restore_20260101000000 "
                         "app__pre_restore_x app__pre_restore_202601010000001 app__restore")
    assert pg_ops.kept_databases(pg.Connection(mode="host"), "app") == ["app__pre_restore_20260101000000", "app__pre_restore_20250101000000"]
