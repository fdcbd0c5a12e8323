# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Commands, targets, redaction and running small programs for real."""

from __future__ import annotations

import os

import pytest

from ansible_collections.cclite.backup.plugins.module_utils._core._errors import ConfigError, StageError
from ansible_collections.cclite.backup.plugins.module_utils._core._process import (
    REDACTED,
    Command,
    Target,
    redact,
    require_program,
    run,
    tail,
)

SECRET = "hunter2-but-longer"


def test_redact_longest_first():
    assert redact("pw=abcdef short=abc", ["abc", "abcdef", ""]) == "pw=%s short=%s" % (REDACTED, REDACTED)
    assert redact("nothing here", []) == "nothing here"


def test_command_basics(monkeypatch):
    monkeypatch.setenv("CCLITE_TEST_INHERITED", "yes")
    cmd = Command(("/usr/bin/pg_dump", "--version"), env={"PGPASSWORD": SECRET, "PGUSER": "me"}, secret_env=frozenset({"PGPASSWORD"}))
    assert cmd.name == "pg_dump"
    assert Command(("sh",), stage="dump").name == "dump"
    assert cmd.secrets() == [SECRET]
    environ = cmd.environ()
    assert environ["PGPASSWORD"] == SECRET and environ["PGUSER"] == "me" and environ["CCLITE_TEST_INHERITED"] == "yes"
    assert Command(("x",), env={"PGPASSWORD": ""}, secret_env=frozenset({"PGPASSWORD"})).secrets() == []


def test_target_in_a_container():
    target = Target(container="db", container_user="postgres", docker_bin="podman")
    cmd = target.command(["psql", "-c", "SELECT 1"], env={"B": "2", "A": "1", "DROPPED": None}, secret_env=["A"])
    assert cmd.argv == ("podman", "exec", "-i", "-u", "postgres", "-e", "A", "-e", "B", "db", "psql", "-c", "SELECT 1")
    assert cmd.env == {"A": "1", "B": "2"} and cmd.secret_env == frozenset({"A"}) and cmd.name == "psql"
    assert target.describe() == "container db"


def test_target_on_this_host():
    assert Target().command(["pg_dump", "x"]).argv == ("pg_dump", "x")
    assert Target(run_as="postgres").command(["pg_dump"], stage="dump").argv == ("runuser", "-u", "postgres", "--", "pg_dump")
    assert Target().describe() == "this host"


def test_run_returns_output_and_feeds_stdin():
    result = run(Command(("sh", "-c", "cat; echo warn >&2")), stdin=b"hello\n")
    assert (result.rc, result.stdout, result.stderr) == (0, b"hello\n", "warn")


def test_run_failure_is_redacted():
    cmd = Command(("sh", "-c", 'echo "auth with $PGPASSWORD failed" >&2; exit 3'), env={"PGPASSWORD": SECRET},
                  secret_env=frozenset({"PGPASSWORD"}), stage="psql")
    with pytest.raises(StageError) as err:
        run(cmd)
    assert err.value.msg == "psql failed with exit status 3: auth with %s failed" % REDACTED
    assert err.value.details == {"rc": 3, "stage": "psql"}
    unchecked = run(cmd, check=False)
    assert unchecked.rc == 3 and unchecked.stderr == "auth with %s failed" % REDACTED


def test_run_redacts_a_secret_cut_by_the_tail():
    cmd = Command(("sh", "-c", 'printf "%s" "$PGPASSWORD" >&2; head -c 4088 /dev/zero | tr "\\0" "y" >&2; exit 1'),
                  env={"PGPASSWORD": SECRET}, secret_env=frozenset({"PGPASSWORD"}))
    with pytest.raises(StageError) as err:
        run(cmd)
    assert SECRET[-8:] not in err.value.msg


def test_run_timeout_and_missing_program():
    with pytest.raises(StageError) as err:
        run(Command(("sleep", "5")), timeout=0.2)
    assert err.value.msg == "sleep did not finish within 0.2 seconds"
    with pytest.raises(ConfigError) as err:
        run(Command(("cclite-no-such-tool",)))
    assert "cclite-no-such-tool is not installed or not on PATH" in err.value.msg


def test_tail():
    assert tail(b"  a" + b"x" * 10 + b"\n", limit=5) == "xxxx"
    assert tail(b"caf\xc3\xa9 \xff\n") == "caf\u00e9 \ufffd"


def test_require_program():
    assert os.path.basename(require_program("sh", "install a shell")) == "sh"
    with pytest.raises(ConfigError) as err:
        require_program("cclite-no-such-tool", "install it with apt")
    assert err.value.msg == "cclite-no-such-tool is not installed on the managed host: install it with apt"
