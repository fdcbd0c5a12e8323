# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A whole ansible-playbook run killed (SIGKILL to its process group, as a terminal's or cron's
kill does) during a PostgreSQL backup: ansible-core's worker calls setsid() and survives, so the
module must notice its run ended; nothing may be published after the kill, and nothing of the run
may live on (issue 18.5)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import typing as t

from tests.faults.conftest import PG_PASSWORD, Postgres
from tests.faults.harness import FIGURES, RANDOM, TREE, TRIALS, _state, descendants, files, partials

PLAYBOOK = """\
- name: Back up one database
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Back up the database
      cclite.backup.postgresql_backup:
        database: app
        mode: host
        login_host: 127.0.0.1
        login_port: "{{ port }}"
        login_password: "{{ lookup('ansible.builtin.env', 'FAULTS_PG_PASSWORD') }}"
        backup_root: "{{ root }}"
"""


def _start(tmp: str, postgres: Postgres, root: str) -> subprocess.Popen:
    playbook = os.path.join(tmp, "backup.yml")
    with open(playbook, "w", encoding="utf-8") as handle:
        handle.write(PLAYBOOK)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=TREE, FAULTS_PG_PASSWORD=PG_PASSWORD, ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
    ansible_playbook = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    return subprocess.Popen(
        [ansible_playbook, "-i", "localhost,", "-c", "local", "-e", "ansible_python_interpreter=%s" % sys.executable,
         "-e", "port=%d" % postgres.port, "-e", "root=%s" % root, playbook],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, cwd=tmp, env=env,
    )


def _published(root: str) -> dict[str, str]:
    return files(os.path.join(root, "postgresql"))


def _wait_for(proc: subprocess.Popen, what: str, timeout: float = 60) -> list[tuple[int, str]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        found = descendants(proc.pid)
        if any(comm == what for _pid, comm in found):
            return found
        time.sleep(0.01)
    raise AssertionError("the backup never started: %s" % (proc.communicate()[0] or b"").decode(errors="replace")[-2000:])


def test_killed_playbook_publishes_nothing_and_leaves_nothing_running(postgres: Postgres, tmp_path: t.Any) -> None:
    root = str(tmp_path / "root")
    first = _start(str(tmp_path), postgres, root)
    out = first.communicate(timeout=300)[0].decode(errors="replace")
    assert first.returncode == 0, out[-3000:]
    started = time.monotonic()
    for trial in range(TRIALS):
        run = _start(str(tmp_path), postgres, root)
        _wait_for(run, "pg_dump")
        if trial == 0:
            started = time.monotonic()
        time.sleep(RANDOM.uniform(0, 0.3))
        tree = descendants(run.pid)  # worker, sh, the module, pg_dump, the compressor
        os.killpg(run.pid, signal.SIGKILL)
        before = _published(root)  # a backup renamed before the kill is no fault
        run.wait()
        assert run.returncode == -9
        # the module checks every 0.2 s and kills its pipeline; ansible-core's worker ends once its
        # module has returned (on a busy machine that can take a second more)
        killed = time.monotonic()
        survivors = tree
        while survivors and time.monotonic() - killed < 5.0:
            time.sleep(0.05)
            survivors = [(pid, comm) for pid, comm in tree if _state(pid) not in ("Z", "X", "")]
        ended = time.monotonic() - killed
        if not survivors and ended > 1.0:
            FIGURES.add("playbook killed: trials whose processes took 1-5 s to end")
        time.sleep(max(0.0, 3.0 - ended))  # an unwatched module finishes a backup of this size in about a second
        late = sorted(set(_published(root)) - set(before))
        FIGURES.add("playbook killed (SIGKILL to its process group): processes of the run alive 5 s later", len(survivors))
        FIGURES.add("playbook killed: backups published after the run exited -9", len([n for n in late if not n.startswith("latest")]))
        for pid, _comm in survivors:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        assert late == [] and _published(root) == before, "published after the run was killed: %s" % late
        assert survivors == [], "processes of the killed run still alive: %s" % survivors
    FIGURES.add("playbook killed: trials", TRIALS)
    assert time.monotonic() - started < 600
    # what the killed runs left behind is removed by the next run, which succeeds
    again = _start(str(tmp_path), postgres, root)
    out = again.communicate(timeout=300)[0].decode(errors="replace")
    assert again.returncode == 0, out[-3000:]
    assert partials(os.path.join(root, "postgresql")) == []
    assert PG_PASSWORD not in out
