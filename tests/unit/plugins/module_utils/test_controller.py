# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Noticing that the Ansible run is gone: a real process tree shaped like ansible-core's
(a controller, a forked worker that called setsid, the module under it), real pipes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from ansible_collections.cclite.backup.plugins.module_utils._core import _controller

PROBE = """
import json, sys, time
from ansible_collections.cclite.backup.plugins.module_utils._core import _controller
found = _controller.find_controller()
with open(sys.argv[1] + ".tmp", "w") as handle:
    json.dump(None if found is None else [found.pid, found.started, found.worker], handle)
import os; os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(60)
"""

# what ansible-playbook does: fork a worker that calls setsid, which runs the module
CONTROLLER = """
import os, subprocess, sys, time
if os.fork() == 0:
    os.setsid()
    subprocess.run([sys.executable, "-c", sys.argv[2], sys.argv[1]])
    os._exit(0)
time.sleep(60)
"""


def _wait_json(path: str) -> object:
    deadline = time.monotonic() + 30
    while not os.path.exists(path):
        assert time.monotonic() < deadline, "the probe never wrote %s" % path
        time.sleep(0.02)
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


@pytest.mark.parametrize("reap", [True, False], ids=["reaped", "zombie"])
def test_the_controller_above_a_worker_is_found_and_its_death_seen(tmp_path, child_env, reap):
    script = tmp_path / "ansible-playbook"  # the name ansible-core's command line carries
    script.write_text(CONTROLLER)
    out = str(tmp_path / "found.json")
    controller = subprocess.Popen([sys.executable, str(script), out, PROBE], env=child_env)
    found = _wait_json(out)
    try:
        assert isinstance(found, list), "no controller found above the probe"
        pid, started, worker = found
        assert pid == controller.pid and worker != pid
        assert _controller.proc_stat(worker).sid == worker  # the worker leads its own session
        watched = _controller.Controller(pid, started, worker)
        assert watched.gone() is None
        controller.kill()
        if reap:
            controller.wait()
        else:
            while _controller.proc_stat(pid).state != "Z":
                time.sleep(0.01)
        assert watched.gone() == "its ansible-playbook process (pid %d) ended" % pid
    finally:
        if controller.poll() is None:
            controller.kill()
        controller.wait()
        os.killpg(found[2] if isinstance(found, list) else controller.pid, signal.SIGKILL)


ORPHAN = """
import os, subprocess, sys, time
controller = os.getpid()
if os.fork() == 0:
    os.setsid()
    while os.getppid() == controller:
        time.sleep(0.01)
    subprocess.run([sys.executable, "-c", sys.argv[2], sys.argv[1]])
    os._exit(0)
"""


def test_a_worker_whose_controller_ended_before_the_module_looked_counts_as_gone(tmp_path, child_env):
    script = tmp_path / "ansible-playbook"
    script.write_text(ORPHAN)
    out = str(tmp_path / "found.json")
    controller = subprocess.Popen([sys.executable, str(script), out, PROBE], env=child_env)
    controller.wait()  # it ends at once; its worker runs the module afterwards
    found = _wait_json(out)
    try:
        assert isinstance(found, list) and found[:2] == [0, 0], found
        assert _controller.Controller(*found).gone() == "its ansible-playbook process ended"
    finally:
        os.killpg(found[2] if isinstance(found, list) else controller.pid, signal.SIGKILL)


def test_no_controller_without_an_ansible_worker_above(tmp_path, child_env):
    out = str(tmp_path / "found.json")
    probe = subprocess.Popen([sys.executable, "-c", PROBE, out], env=child_env)
    try:
        assert _wait_json(out) is None
    finally:
        probe.kill()
        probe.wait()


def test_a_pipe_without_reader_is_seen():
    read, write = os.pipe()
    try:
        assert _controller.reader_gone(write) is False
        os.close(read)
        assert _controller.reader_gone(write) is True
    finally:
        os.close(write)


def test_a_regular_file_stdout_is_not_watched(tmp_path):
    with open(tmp_path / "out", "wb") as handle:
        assert _controller.reader_gone(handle.fileno()) is False


def test_watch_kills_the_pipeline_and_refuses_to_publish_once_the_run_is_gone():
    read, write = os.pipe()
    child = subprocess.Popen(["sleep", "30"])
    try:
        with _controller.Watch(interval=0.05, stdout=write) as watch:
            watch.check("renaming")  # the run is there: nothing raised
            os.close(read)
            read = -1
            assert child.wait(timeout=5) == -signal.SIGKILL
            with pytest.raises(_controller.RunGone) as err:
                watch.check("renaming x.sql.gz into place")
        assert err.value.msg == (
            "the Ansible run that started this backup ended (nobody reads its result any more (the ansible-playbook run "
            "or its connection ended)); renaming x.sql.gz into place was not done and nothing was published")
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        os.close(write)
        if read >= 0:
            os.close(read)
