# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Commands, targets, redaction and running small programs for real."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time

import pytest

from ansible_collections.cclite.backup.plugins.module_utils._core._errors import ConfigError, StageError
from ansible_collections.cclite.backup.plugins.module_utils._core._process import (
    GUARD,
    PIPE_SIZE,
    REDACTED,
    Command,
    Target,
    redact,
    require_program,
    run,
    start,
    tail,
    widen_pipes,
)

F_GETPIPE_SZ = 1032

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


# Issue 18.5: children must not outlive a killed module. The writer runs in its own Python
# process; its children carry a token in their environment, so /proc shows which are alive.
WRITER = """
import sys
from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import Compression, write_artifact
from ansible_collections.cclite.backup.plugins.module_utils._core._process import Command
dest, started = sys.argv[1], sys.argv[2]
# a dump that waits (as pg_dump on a lock) and then completes; gzip waits for its input
source = Command(("sh", "-c", 'printf "CREATE TABLE t ();\\\\n"; echo go > "$1"; exec sleep 3', "sh", started), stage="dump")
write_artifact(source, dest, Compression("gzip", 1, threads=1))
"""


def _alive_with(token: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/environ" % entry, "rb") as handle:
                if token.encode() in handle.read():  # a zombie's environ reads empty
                    pids.append(int(entry))
        except OSError:
            continue
    return pids


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
def test_children_die_with_a_killed_writer(tmp_path):
    token = "CCLITE_KILL_TEST_%d=%s" % (os.getpid(), tmp_path.name)
    name, value = token.split("=")
    dest, started = tmp_path / "backup.sql.gz", tmp_path / "started"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    env[name] = value
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(dest), str(started)], env=env)
    try:
        deadline = time.monotonic() + 20
        while not started.exists():
            assert writer.poll() is None, "the writer ended before its source started"
            assert time.monotonic() < deadline, "the source never started"
            time.sleep(0.02)
        while len([p for p in _alive_with(token) if p != writer.pid]) < 2:  # the dump (sh, then sleep) and gzip
            assert time.monotonic() < deadline, "the compressor never started"
            time.sleep(0.02)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        deadline = time.monotonic() + 1.0
        while _alive_with(token) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _alive_with(token) == []  # on a kernel without the parent-death signal they ran on for 3 s
        time.sleep(3.5)  # past the end the dump would have had
        assert [n for n in os.listdir(tmp_path) if not n.startswith(".")] == ["started"]  # at most a hidden .partial
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
        for pid in _alive_with(token):
            os.kill(pid, signal.SIGKILL)


def test_the_container_guard_kills_the_command_when_its_pipe_ends():
    # what runs inside the container under docker exec: "$@" dies when the exec's stdin ends
    read, write = os.pipe()
    guard = subprocess.Popen(["sh", "-c", GUARD, "sh", "sleep", "30"], stdin=read)
    os.close(read)
    time.sleep(0.3)
    assert guard.poll() is None
    os.close(write)  # the docker CLI died: the daemon closes the exec's stdin
    assert guard.wait(timeout=5) == 137  # sh reports sleep killed by SIGKILL


def test_the_container_guard_keeps_exit_status_and_output():
    read, write = os.pipe()
    done = subprocess.run(["sh", "-c", GUARD, "sh", "sh", "-c", "echo out; echo err >&2; exit 3"],
                          stdin=read, capture_output=True, timeout=10, check=False)
    os.close(read)
    os.close(write)
    assert (done.returncode, done.stdout, done.stderr) == (3, b"out\n", b"err\n")


def test_start_wraps_container_commands_without_input_in_the_guard(tmp_path, fake_program):
    argv_file = tmp_path / "argv"
    fake_program("docker", 'printf "%%s\\n" "$@" > "%s"' % argv_file)
    target = Target(container="db")
    with start(target.command(["pg_dump", "x"])) as child:
        assert child.wait(timeout=10) == 0
    assert argv_file.read_text().splitlines() == ["exec", "-i", "db", "sh", "-c", GUARD, "sh", "pg_dump", "x"]
    # fed input of ours, a command stops by itself when that input ends: no guard
    with start(target.command(["psql", "-f", "-"]), stdin=subprocess.PIPE) as child:
        child.stdin.close()
        assert child.wait(timeout=10) == 0
    assert argv_file.read_text().splitlines() == ["exec", "-i", "db", "psql", "-f", "-"]


def test_child_failure_names_the_stage_and_redacts():
    cmd = Command(("sh", "-c", 'echo "bad $PGPASSWORD" >&2; exit 4'), env={"PGPASSWORD": SECRET},
                  secret_env=frozenset({"PGPASSWORD"}), stage="pg_dump")
    with start(cmd) as child:
        with pytest.raises(StageError) as err:
            child.check()
    assert err.value.msg == "pg_dump failed with exit status 4: bad %s" % REDACTED
    with pytest.raises(ConfigError, match=r"cannot run x: cclite-no-such-tool is not installed or not on PATH \(install x\)"):
        start(Command(("cclite-no-such-tool",), stage="x"), hint=" (install x)")


IMAGE = os.environ.get("CCLITE_TEST_IMAGE", "cclite-backup-test:bookworm")


def _docker_ready() -> bool:
    try:
        return subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True, timeout=20, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _in_container(name: str) -> list[str]:
    ps = subprocess.run(["docker", "exec", name, "ps", "-eo", "args"], capture_output=True, text=True, timeout=30, check=True)
    return [line.strip() for line in ps.stdout.splitlines()]


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _docker_ready(), reason="needs Docker and the test image")
def test_a_command_in_a_container_dies_with_a_killed_writer(tmp_path):
    # killing the docker CLI leaves the process in the container running; the guard ends it
    name = "cclite-process-test-%d" % os.getpid()
    subprocess.run(["docker", "run", "-d", "--rm", "--name", name, IMAGE, "sleep", "infinity"], capture_output=True, check=True)
    try:
        script = (
            "import sys\n"
            "from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import Compression, write_artifact\n"
            "from ansible_collections.cclite.backup.plugins.module_utils._core._process import Target\n"
            "write_artifact(Target(container=sys.argv[2]).command(['sleep', '37']), sys.argv[1], Compression('gzip', 1, threads=1))\n"
        )
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        writer = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "b.sql.gz"), name], env=env)
        deadline = time.monotonic() + 30
        while "sleep 37" not in _in_container(name):
            assert writer.poll() is None and time.monotonic() < deadline, "the command never started in the container"
            time.sleep(0.1)
        writer.kill()
        writer.wait()
        deadline = time.monotonic() + 5
        while "sleep 37" in _in_container(name) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "sleep 37" not in _in_container(name)  # without the guard it sleeps on for 37 s
        assert [n for n in os.listdir(tmp_path) if not n.startswith(".")] == []
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def test_widen_pipes_gives_a_data_pipe_a_whole_chunk_of_room():
    with start(Command(("cat",), stage="cat"), stdin=subprocess.PIPE) as child:
        assert fcntl.fcntl(child.proc.stdout.fileno(), F_GETPIPE_SZ) < PIPE_SIZE  # the kernel's default
        widen_pipes(child)
        for handle in (child.proc.stdin, child.proc.stdout):
            assert fcntl.fcntl(handle.fileno(), F_GETPIPE_SZ) >= PIPE_SIZE
        child.proc.stdin.write(b"x" * 1000)
        child.proc.stdin.close()
        assert child.proc.stdout.read() == b"x" * 1000
        child.check()


def test_the_standard_modules_with_fork_hooks_are_imported_with_it():
    # A module that registers os.register_at_fork hooks on its first import, in one thread
    # while another starts a child with a preexec_fn, can get its after-fork hook run without
    # its before hook: concurrent.futures.thread then releases the lock a ThreadPoolExecutor
    # .submit of the importing thread holds ("release unlocked lock", seen once in CI in a
    # directory restore). Importing _process (which every module starting a child does, before
    # any thread) registers them first.
    probe = (
        "import sys\n"
        "from ansible_collections.cclite.backup.plugins.module_utils._core import _process\n"
        "print(sorted(m for m in ('concurrent.futures.thread', 'logging') if m in sys.modules))\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", probe], env=env, check=True, capture_output=True, text=True).stdout
    assert out.split("\n")[0] == "['concurrent.futures.thread', 'logging']"
