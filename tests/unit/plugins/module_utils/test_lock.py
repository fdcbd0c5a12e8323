# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The store lock, held by a real second process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from ansible_collections.cclite.backup.plugins.module_utils._core._errors import LockTimeout
from ansible_collections.cclite.backup.plugins.module_utils._core._lock import LOCK_NAME, StoreLock

HOLDER = """
import sys
from ansible_collections.cclite.backup.plugins.module_utils._core._lock import StoreLock
with StoreLock(sys.argv[1], "postgresql", "postgresql backup", timeout=10):
    sys.stdout.write("locked\\n")
    sys.stdout.flush()
    sys.stdin.read()  # hold until the test closes our stdin (or kills us)
"""


@pytest.fixture
def holder(tmp_path, child_env):
    """A child process that holds the lock of tmp_path/store until its stdin closes."""
    directory = tmp_path / "store"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(directory)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env, text=True,
    )
    try:
        line = proc.stdout.readline()
        if line != "locked\n":
            proc.kill()
            pytest.fail("the lock holder did not start: %s" % proc.stderr.read())
        yield proc, str(directory)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()


def test_second_lock_times_out_naming_the_holder(holder):
    proc, directory = holder
    started = time.monotonic()
    with pytest.raises(LockTimeout) as err:
        with StoreLock(directory, "postgresql", "postgresql restore", timeout=0.5, poll=0.05):
            pytest.fail("got a lock another process holds")
    waited = time.monotonic() - started
    assert 0.5 <= waited < 5
    msg = err.value.msg
    assert "another cclite.backup run holds the postgresql lock %s" % os.path.join(directory, LOCK_NAME) in msg
    assert "pid %d on %s, running postgresql backup since " % (proc.pid, socket.gethostname()) in msg
    assert "gave up after 0.5 seconds" in msg
    assert proc.poll() is None  # the holder is untouched


def test_lock_is_free_once_the_holder_is_killed(holder):
    proc, directory = holder
    proc.kill()  # SIGKILL: no cleanup code runs in the holder
    proc.wait()
    assert json.loads(open(os.path.join(directory, LOCK_NAME), encoding="utf-8").read())["pid"] == proc.pid  # its note is left
    started = time.monotonic()
    with StoreLock(directory, "postgresql", "postgresql restore", timeout=5, poll=0.05) as lock:
        assert time.monotonic() - started < 1.0
        info = lock.holder()
        assert info["pid"] == os.getpid() and info["purpose"] == "postgresql restore"
        assert info["host"] == socket.gethostname()
    assert lock.holder() == {}  # released: the note is cleared


def test_lock_is_free_once_the_holder_finishes(holder):
    proc, directory = holder
    proc.stdin.close()
    assert proc.wait(timeout=10) == 0
    with StoreLock(directory, "postgresql", "postgresql backup", timeout=1, poll=0.05) as lock:
        assert lock.holder()["pid"] == os.getpid()


def test_lock_file_is_private_and_directory_is_created(tmp_path):
    directory = tmp_path / "new" / "store"
    with StoreLock(str(directory), "postgresql", "postgresql backup", timeout=1) as lock:
        assert lock.path == str(directory / LOCK_NAME)
        assert os.stat(lock.path).st_mode & 0o777 == 0o600
    with StoreLock(str(directory), "postgresql", "postgresql backup", timeout=0):  # reusable at once
        pass
