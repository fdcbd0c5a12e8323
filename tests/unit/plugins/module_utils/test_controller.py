# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Noticing that the Ansible run is gone: a real process tree shaped like ansible-core's
(a controller, a forked worker that called setsid, the module under it), real pipes; and the
heartbeat of a job run in the background (real files, real producer processes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import typing as t

import pytest

from ansible_collections.cclite.backup.plugins.module_utils._core import _controller, _progress, _restore
from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import Command
from ansible_collections.cclite.backup.plugins.module_utils._core._catalog import POSTGRESQL, Catalog, Entry
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import RestoreError, StageError
from ansible_collections.cclite.backup.plugins.module_utils._core._ops import make_backup
from ansible_collections.cclite.backup.tests.unit.plugins.module_utils.test_ops import FakeProducer, spec_for
from ansible_collections.cclite.backup.tests.unit.plugins.module_utils.test_restore import OLD, FakeEngine, backup
from ansible_collections.cclite.backup.tests.unit.plugins.module_utils.test_restore import spec_for as restore_spec_for

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


# --- the heartbeat of a job the backup_job action runs in the background ---------------------


def test_a_heartbeat_is_fresh_while_touched_and_gone_once_removed_or_stale(tmp_path):
    path = tmp_path / "p.json.alive"
    path.write_text("")
    beat = _controller.Heartbeat(str(path), timeout=120)
    assert beat.gone() is None
    old = time.time() - 121
    os.utime(path, (old, old))  # the action last touched it 121 s ago: its controller vanished
    assert beat.gone() == "nothing touched the heartbeat %s for 120 s: its controller is gone" % path
    os.utime(path)  # touched again
    assert beat.gone() is None
    path.unlink()
    assert beat.gone() == "its backup_job task removed the heartbeat %s: its ansible-playbook process ended" % path
    assert _controller.heartbeat_of(None) is None


def test_a_removed_heartbeat_kills_the_pipeline_and_refuses_to_publish(tmp_path):
    alive = tmp_path / "p.json.alive"
    alive.write_text("")
    child = subprocess.Popen(["sleep", "30"])
    try:
        with _controller.Watch(interval=0.05, heartbeat=_controller.Heartbeat(str(alive))) as watch:
            watch.check("renaming")
            alive.unlink()
            assert child.wait(timeout=5) == -signal.SIGKILL
            with pytest.raises(_controller.RunGone) as err:
                watch.check("renaming x.sql.gz into place")
        assert "its backup_job task removed the heartbeat" in err.value.msg and err.value.msg.endswith("nothing was published")
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()


# a producer streaming for about 3 s: long enough to remove the heartbeat half-way
SLOW = "import os,sys,time\nfor _ in range(30):\n    sys.stdout.buffer.write(b'-- x\\n' * 2000); sys.stdout.flush(); time.sleep(0.1)\n"


def _slow_backup(tmp_path, remove_after: float | None) -> tuple[Catalog, str, t.Any]:
    """A real backup (a real producer process) under a progress file with a heartbeat, the
    heartbeat removed ``remove_after`` seconds in (None: never): (catalog, progress file, outcome)."""
    catalog = Catalog(str(tmp_path / "backups"), POSTGRESQL)
    path = str(tmp_path / "backups" / ".progress" / "postgresql-app.json")
    os.makedirs(os.path.dirname(path), mode=0o700)
    with open(path + _progress.ALIVE, "w", encoding="utf-8"):
        pass
    timer = threading.Timer(remove_after, os.unlink, [path + _progress.ALIVE]) if remove_after is not None else None
    producer = FakeProducer(command=Command((sys.executable, "-c", SLOW), stage="pg_dump"))
    started = time.monotonic()
    with _progress.reporting(path, "postgresql", "backup", "app", interval=0.1):
        if timer is not None:
            timer.start()
        try:
            outcome: t.Any = make_backup(spec_for(catalog, verify_after=False), producer, {})
        except _controller.RunGone as exc:
            outcome = exc
        finally:
            if timer is not None:
                timer.cancel()
    return catalog, path, (outcome, time.monotonic() - started)


def test_a_background_backup_whose_heartbeat_is_removed_publishes_nothing(tmp_path):
    catalog, path, (outcome, took) = _slow_backup(tmp_path, remove_after=0.5)
    assert isinstance(outcome, _controller.RunGone), outcome
    assert "its backup_job task removed the heartbeat" in outcome.msg and "nothing was published" in outcome.msg
    assert took < 2.0  # the producer (3 s) was killed, not waited for
    assert catalog.entries() == [] and not os.path.lexists(os.path.join(catalog.directory, catalog.latest_name(".gz")))
    assert sorted(os.listdir(os.path.dirname(path))) == []  # status file removed


def test_a_background_backup_with_its_heartbeat_kept_publishes_and_removes_the_heartbeat(tmp_path):
    catalog, path, (outcome, _took) = _slow_backup(tmp_path, remove_after=None)
    assert isinstance(outcome, dict) and outcome["latest"], outcome
    assert [e.name for e in catalog.entries()] == [outcome["artifact"]["name"]]
    assert sorted(os.listdir(os.path.dirname(path))) == []  # status file and heartbeat removed at the end


class SlowLoad(FakeEngine):
    """A staged engine whose load is a real process (30 s unless killed)."""

    def prepare(self, entry: Entry) -> None:
        self._step("prepare")
        done = subprocess.run(["sleep", "30"], check=False)
        if done.returncode:
            raise StageError("the load was killed (exit status %d)" % done.returncode)
        super().prepare(entry)


def test_a_background_restore_whose_heartbeat_is_removed_stops_before_its_swap(tmp_path):
    catalog = Catalog(str(tmp_path / "backups"), POSTGRESQL)
    backup(catalog, 1, 3, latest=True)
    path = str(tmp_path / "restore.json")
    with open(path + _progress.ALIVE, "w", encoding="utf-8"):
        pass
    engine = SlowLoad()
    started = time.monotonic()
    with _progress.reporting(path, "postgresql", "restore", "app", interval=0.1):
        timer = threading.Timer(0.5, os.unlink, [path + _progress.ALIVE])
        timer.start()
        with pytest.raises(RestoreError) as err:
            _restore.restore(restore_spec_for(catalog, safety_backup=False), engine, check_mode=False)
        timer.cancel()
    assert time.monotonic() - started < 5  # the load was killed, not waited for
    assert "swap" not in engine.calls and engine.live == OLD
    assert err.value.msg.startswith("the restore failed at step 'prepare': the Ansible run that started this restore ended "
                                    "(its backup_job task removed the heartbeat")
    assert err.value.msg.endswith("; the swap was not done and the backup's data was not put in place. "
                                  "Nothing was changed: the fake store holds the data it had")
    assert not os.path.lexists(path)


def test_a_held_backup_stops_holding_once_its_heartbeat_is_gone(tmp_path):
    path = str(tmp_path / "p.json")
    for name in (path + ".hold", path + _progress.ALIVE):
        with open(name, "w", encoding="utf-8"):
            pass
    with _progress.reporting(path, "redis", "backup"):
        threading.Timer(0.3, os.unlink, [path + _progress.ALIVE]).start()
        started = time.monotonic()
        _progress.hold()  # would wait 300 s for the release
        assert time.monotonic() - started < 3
    assert os.listdir(str(tmp_path)) == ["p.json.hold"]  # the action's, removed by its release


def test_a_heartbeat_naming_a_controller_on_this_machine_watches_that_process(tmp_path):
    controller = subprocess.Popen(["sleep", "30"])  # stands for ansible-playbook
    try:
        path = tmp_path / "p.json.alive"
        said = dict(_controller.machine(), pid=controller.pid, started=_controller.proc_stat(controller.pid).started)
        path.write_text(json.dumps(said))
        beat = _controller.heartbeat_of(str(path))
        assert beat is not None and beat.controller == (said["pid"], said["started"]) and beat.gone() is None
        path.write_text(json.dumps(dict(said, boot_id="another machine")))
        assert _controller.heartbeat_of(str(path)).controller is None  # elsewhere: the file alone
        path.write_text(json.dumps(dict(said, started=said["started"] + 1)))
        assert _controller.heartbeat_of(str(path)).controller is None  # not that process: the file alone
        controller.kill()
        controller.wait()
        assert os.path.exists(path) and beat.gone() == "its ansible-playbook process (pid %d) ended" % said["pid"]  # at once
    finally:
        if controller.poll() is None:
            controller.kill()
        controller.wait()
